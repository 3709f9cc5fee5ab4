package web

import (
	"bytes"
	"context"
	"flag"
	"image"
	"image/png"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var screenshotDir = flag.String("screenshot-dir", os.Getenv("RUNNERD_SCREENSHOTS"),
	"keep the headless-Chromium screenshots of the status page in this directory (default $RUNNERD_SCREENSHOTS)")

// keepScreenshot copies a screenshot into -screenshot-dir, if set.
func keepScreenshot(t *testing.T, path string) {
	t.Helper()
	if *screenshotDir == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(*screenshotDir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(*screenshotDir, filepath.Base(path)), data, 0o644)
	}
	if err != nil {
		t.Errorf("keep screenshot: %v", err)
	}
}

// findChromium returns the Chromium binary, or "" if there is none.
func findChromium() string {
	if _, err := os.Stat("/usr/bin/chromium"); err == nil {
		return "/usr/bin/chromium"
	}
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// needChromium returns the Chromium binary or skips the test; with
// RUNNERD_REQUIRE_CHROMIUM=1 (set by CI after installing it) a missing
// browser fails the test instead.
func needChromium(t *testing.T) string {
	t.Helper()
	bin := findChromium()
	if bin == "" {
		if os.Getenv("RUNNERD_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("RUNNERD_REQUIRE_CHROMIUM=1 but no chromium found (apt-get install -y chromium)")
		}
		t.Skip("chromium not installed; set RUNNERD_REQUIRE_CHROMIUM=1 to make this a failure")
	}
	return bin
}

// runChromium runs headless Chromium once on url with extra flags and returns
// its stdout and stderr. Its profile and HOME live under dir. Chromium's
// helper processes share its process group, which is killed on timeout.
func runChromium(t *testing.T, bin, dir, url string, extra ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	profile, err := os.MkdirTemp(dir, "profile-")
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{
		"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--disable-default-apps", "--disable-extensions", "--hide-scrollbars", "--force-color-profile=srgb",
		"--user-data-dir=" + profile,
		// Console messages (errors, CSP violations, uncaught exceptions)
		// are logged to stderr as "...:INFO:CONSOLE:N] "message", source: ...".
		"--enable-logging=stderr", "--v=0",
	}, extra...)
	args = append(args, url)
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_CONFIG_HOME="+dir, "XDG_CACHE_HOME="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %s: %v\nstderr:\n%s", strings.Join(extra, " "), err, errOut.String())
	}
	return out.String(), errOut.String()
}

// consoleLine matches Chromium's log line for a console message.
var consoleLine = regexp.MustCompile(`(?m)^.*:CONSOLE[:(].*$`)

// consoleMessages returns the console messages in a Chromium log.
func consoleMessages(log string) []string { return consoleLine.FindAllString(log, -1) }

// recorder notes every request the browser makes.
type recorder struct {
	mu   sync.Mutex
	reqs []string
	next http.Handler
}

func (r *recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.reqs = append(r.reqs, req.Method+" "+req.URL.RequestURI())
	r.mu.Unlock()
	r.next.ServeHTTP(w, req)
}

func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.reqs
	r.reqs = nil
	return out
}

// TestStatusPageChromium renders the status page in headless Chromium at a
// phone's width: the DOM has the chart and the job table, the browser logs
// no console message (CSP violations included) and fetches nothing but the
// page, and the screenshot is a real picture with the chart's bars in it.
func TestStatusPageChromium(t *testing.T) {
	bin := needChromium(t)
	dir := t.TempDir()

	t.Run("page", func(t *testing.T) {
		t.Parallel()
		src := newFakeSource()
		rec := &recorder{next: Handler(src, NewMetrics(), func() time.Time { return testNow })}
		srv := httptest.NewServer(rec) // listens on 127.0.0.1
		t.Cleanup(srv.Close)
		shot := filepath.Join(dir, "page.png")
		dom, log := runChromium(t, bin, dir, srv.URL+"/", "--dump-dom", "--screenshot="+shot, "--window-size=420,1200")

		if msgs := consoleMessages(log); len(msgs) > 0 {
			t.Errorf("console messages while loading the page:\n%s", strings.Join(msgs, "\n"))
		}
		if reqs := rec.take(); len(reqs) != 1 || reqs[0] != "GET /" {
			t.Errorf("the browser requested %q; want only \"GET /\" (no external or extra assets)", reqs)
		}

		for _, want := range []string{`<svg id="budget-chart"`, `<svg id="forecast-chart"`, `<table id="plan-table"`, `<table id="jobs-table"`, `<table id="runs-table"`, `<table id="calls-table"`} {
			if !strings.Contains(dom, want) {
				t.Errorf("dumped DOM has no %s", want)
			}
		}
		if got := strings.Count(dom, `<g class="hour"`); got != len(src.forecast.Hours) {
			t.Errorf("dumped DOM has %d forecast columns; want %d", got, len(src.forecast.Hours))
		}
		if got := strings.Count(dom, `class="seg high"`); got != 1 {
			t.Errorf("dumped DOM has %d high-priority reservations in the forecast; want 1 (the 01:00 deploy)", got)
		}
		if got := strings.Count(dom, `class="bar `); got != len(src.budget.Hours) {
			t.Errorf("dumped DOM has %d chart bars; want %d", got, len(src.budget.Hours))
		}
		if i := strings.Index(dom, `<table id="jobs-table"`); i >= 0 {
			jobs := dom[i:]
			jobs = jobs[:strings.Index(jobs, "</table>")+1]
			for _, j := range src.jobs {
				if !strings.Contains(jobs, "<strong>"+j.Name+"</strong>") {
					t.Errorf("jobs table in the DOM has no row for %q", j.Name)
				}
			}
		}
		if strings.Contains(dom, "<script") {
			t.Error("dumped DOM has a <script> element (the planted markup was not escaped)")
		}

		img := decodePNG(t, shot)
		if b := img.Bounds(); b.Dx() != 420 || b.Dy() < 600 {
			t.Errorf("screenshot is %dx%d; want 420 wide and at least 600 tall", b.Dx(), b.Dy())
		}
		if v := lumaVariance(img); v < 100 {
			t.Errorf("screenshot luminance variance = %.1f; want ≥ 100 (a blank page is about 0)", v)
		}
		// The bars are drawn in the chart's blue and, past the reserve
		// line, amber: both must be visibly present.
		for _, c := range []struct {
			name    string
			r, g, b uint8
			min     int
		}{{"blue (within budget)", 0x3b, 0x82, 0xc4, 400}, {"amber (into the reserve)", 0xd9, 0x91, 0x0b, 100}} {
			if got := countNear(img, c.r, c.g, c.b, 24); got < c.min {
				t.Errorf("screenshot has %d %s bar pixels; want at least %d", got, c.name, c.min)
			}
		}
		// The widths the page is made for: a 1,400-pixel desktop and a
		// 390-pixel phone, kept (with -screenshot-dir or
		// RUNNERD_SCREENSHOTS) as the test's artefacts.
		for _, w := range []struct {
			name, size string
			width      int
		}{{"status-page-1400.png", "1400,2200", 1400}, {"status-page-390.png", "390,7000", 390}} {
			path := filepath.Join(dir, w.name)
			_, log := runChromium(t, bin, dir, srv.URL+"/", "--screenshot="+path, "--window-size="+w.size)
			if msgs := consoleMessages(log); len(msgs) > 0 {
				t.Errorf("console messages at %d px:\n%s", w.width, strings.Join(msgs, "\n"))
			}
			if img := decodePNG(t, path); img.Bounds().Dx() != w.width || lumaVariance(img) < 100 {
				t.Errorf("%s: %d px wide, luminance variance %.1f; want %d and ≥ 100", w.name, img.Bounds().Dx(), lumaVariance(img), w.width)
			}
			keepScreenshot(t, path)
		}
		rec.take()
	})

	// A run's page: its decision and earliest time, no console message,
	// nothing fetched but the page.
	t.Run("run page", func(t *testing.T) {
		t.Parallel()
		src := newFakeSource()
		rec := &recorder{next: Handler(src, NewMetrics(), func() time.Time { return testNow })}
		srv := httptest.NewServer(rec)
		t.Cleanup(srv.Close)
		shot := filepath.Join(dir, "run-990-390.png")
		dom, log := runChromium(t, bin, dir, srv.URL+"/runs/990", "--dump-dom", "--screenshot="+shot, "--window-size=390,1200")
		if msgs := consoleMessages(log); len(msgs) > 0 {
			t.Errorf("console messages on the run page:\n%s", strings.Join(msgs, "\n"))
		}
		if reqs := rec.take(); len(reqs) != 1 || reqs[0] != "GET /runs/990" {
			t.Errorf("the browser requested %q; want only the run page", reqs)
		}
		for _, want := range []string{`id="run-decision"`, `id="run-not-before"`, "12 left after 300 held for high-priority runs"} {
			if !strings.Contains(dom, want) {
				t.Errorf("run page DOM has no %s", want)
			}
		}
		keepScreenshot(t, shot)
	})

	// A page that does log to the console, to show the detection works.
	t.Run("canary", func(t *testing.T) {
		t.Parallel()
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/html; charset=utf-8")
			w.Write([]byte(`<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body><p>canary</p>` +
				`<script>console.error("runnerd-canary"); undefinedFunction();</script></body></html>`))
		}))
		t.Cleanup(srv.Close)
		_, log := runChromium(t, bin, dir, srv.URL+"/", "--dump-dom")
		msgs := strings.Join(consoleMessages(log), "\n")
		for _, want := range []string{"runnerd-canary", "undefinedFunction"} {
			if !strings.Contains(msgs, want) {
				t.Errorf("console detection missed %q; console lines:\n%s\nfull log:\n%s", want, msgs, log)
			}
		}
	})
}

func decodePNG(t *testing.T, path string) image.Image {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot %s does not decode as PNG: %v", path, err)
	}
	return img
}

// lumaVariance is the variance of the pixels' luminance (0–255 scale).
func lumaVariance(img image.Image) float64 {
	var sum, sumSq, n float64
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			r, g, bl, _ := img.At(x, y).RGBA()
			l := (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
			sum += l
			sumSq += l * l
			n++
		}
	}
	if n == 0 {
		return 0
	}
	mean := sum / n
	return sumSq/n - mean*mean
}

// countNear counts the pixels within tol of the colour (r, g, b) on every channel.
func countNear(img image.Image, r, g, b uint8, tol int) int {
	near := func(a uint32, want uint8) bool {
		d := int(a>>8) - int(want)
		return d >= -tol && d <= tol
	}
	count := 0
	bounds := img.Bounds()
	for y := bounds.Min.Y; y < bounds.Max.Y; y++ {
		for x := bounds.Min.X; x < bounds.Max.X; x++ {
			pr, pg, pb, _ := img.At(x, y).RGBA()
			if near(pr, r) && near(pg, g) && near(pb, b) {
				count++
			}
		}
	}
	return count
}

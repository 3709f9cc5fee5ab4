package web

import (
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd/internal/browsertest"
)

var screenshotDir = flag.String("screenshot-dir", os.Getenv("RUNNERD_SCREENSHOTS"),
	"keep the headless-Chromium screenshots of the status page in this directory (default $RUNNERD_SCREENSHOTS)")

// keepScreenshot copies a screenshot into -screenshot-dir, if set.
func keepScreenshot(t *testing.T, path string) { browsertest.Keep(t, *screenshotDir, path) }

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
	bin := browsertest.Need(t)
	dir := t.TempDir()

	t.Run("page", func(t *testing.T) {
		t.Parallel()
		src := newFakeSource()
		rec := &recorder{next: Handler(src, NewMetrics(), func() time.Time { return testNow })}
		srv := httptest.NewServer(rec) // listens on 127.0.0.1
		t.Cleanup(srv.Close)
		shot := filepath.Join(dir, "page.png")
		dom, log := browsertest.Run(t, bin, dir, srv.URL+"/", "--dump-dom", "--screenshot="+shot, "--window-size=420,1200")

		if msgs := browsertest.ConsoleMessages(log); len(msgs) > 0 {
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

		img := browsertest.DecodePNG(t, shot)
		if b := img.Bounds(); b.Dx() != 420 || b.Dy() < 600 {
			t.Errorf("screenshot is %dx%d; want 420 wide and at least 600 tall", b.Dx(), b.Dy())
		}
		if v := browsertest.LumaVariance(img); v < 100 {
			t.Errorf("screenshot luminance variance = %.1f; want ≥ 100 (a blank page is about 0)", v)
		}
		// The bars are drawn in the chart's blue and, past the reserve
		// line, amber: both must be visibly present.
		for _, c := range []struct {
			name    string
			r, g, b uint8
			min     int
		}{{"blue (within budget)", 0x3b, 0x82, 0xc4, 400}, {"amber (into the reserve)", 0xd9, 0x91, 0x0b, 100}} {
			if got := browsertest.CountNear(img, c.r, c.g, c.b, 24); got < c.min {
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
			_, log := browsertest.Run(t, bin, dir, srv.URL+"/", "--screenshot="+path, "--window-size="+w.size)
			if msgs := browsertest.ConsoleMessages(log); len(msgs) > 0 {
				t.Errorf("console messages at %d px:\n%s", w.width, strings.Join(msgs, "\n"))
			}
			if img := browsertest.DecodePNG(t, path); img.Bounds().Dx() != w.width || browsertest.LumaVariance(img) < 100 {
				t.Errorf("%s: %d px wide, luminance variance %.1f; want %d and ≥ 100", w.name, img.Bounds().Dx(), browsertest.LumaVariance(img), w.width)
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
		dom, log := browsertest.Run(t, bin, dir, srv.URL+"/runs/990", "--dump-dom", "--screenshot="+shot, "--window-size=390,1200")
		if msgs := browsertest.ConsoleMessages(log); len(msgs) > 0 {
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
		_, log := browsertest.Run(t, bin, dir, srv.URL+"/", "--dump-dom")
		msgs := strings.Join(browsertest.ConsoleMessages(log), "\n")
		for _, want := range []string{"runnerd-canary", "undefinedFunction"} {
			if !strings.Contains(msgs, want) {
				t.Errorf("console detection missed %q; console lines:\n%s\nfull log:\n%s", want, msgs, log)
			}
		}
	})
}

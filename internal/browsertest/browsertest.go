// Package browsertest runs headless Chromium for the status page's tests:
// finding the browser (or skipping, unless RUNNERD_REQUIRE_CHROMIUM=1),
// loading a page with a fresh profile, reading its console messages, and
// checking its screenshots.
package browsertest

import (
	"bytes"
	"context"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Find returns the Chromium binary, or "" if there is none.
func Find() string {
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

// Need returns the Chromium binary or skips the test; with
// RUNNERD_REQUIRE_CHROMIUM=1 (set by CI after installing it) a missing
// browser fails the test instead.
func Need(t *testing.T) string {
	t.Helper()
	bin := Find()
	if bin == "" {
		if os.Getenv("RUNNERD_REQUIRE_CHROMIUM") == "1" {
			t.Fatal("RUNNERD_REQUIRE_CHROMIUM=1 but no chromium found (apt-get install -y chromium)")
		}
		t.Skip("chromium not installed; set RUNNERD_REQUIRE_CHROMIUM=1 to make this a failure")
	}
	return bin
}

// Run runs headless Chromium once on url with extra flags and returns
// its stdout and stderr. Its profile and HOME live under dir. Chromium's
// helper processes share its process group, which is killed on timeout.
func Run(t *testing.T, bin, dir, url string, extra ...string) (stdout, stderr string) {
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

// ConsoleMessages returns the console messages in a Chromium log.
func ConsoleMessages(log string) []string { return consoleLine.FindAllString(log, -1) }

// DecodePNG reads a screenshot.
func DecodePNG(t *testing.T, path string) image.Image {
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

// LumaVariance is the variance of the pixels' luminance (0–255 scale).
func LumaVariance(img image.Image) float64 {
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

// CountNear counts the pixels within tol of the colour (r, g, b) on every channel.
func CountNear(img image.Image, r, g, b uint8, tol int) int {
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

// Keep copies a screenshot into dir (the test's artefacts), if dir is set.
func Keep(t *testing.T, dir, path string) {
	t.Helper()
	if dir == "" {
		return
	}
	data, err := os.ReadFile(path)
	if err == nil {
		err = os.MkdirAll(dir, 0o755)
	}
	if err == nil {
		err = os.WriteFile(filepath.Join(dir, filepath.Base(path)), data, 0o644)
	}
	if err != nil {
		t.Errorf("keep screenshot: %v", err)
	}
}

package web

import (
	"bytes"
	"crypto/sha256"
	"embed"
	"encoding/base64"
	"fmt"
	"html/template"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

//go:embed page.gohtml run.gohtml style.css
var assets embed.FS

var (
	// pageCSS is inlined in the page; its hash is the only style the
	// Content-Security-Policy allows, and nothing else may load at all.
	pageCSS = mustRead("style.css")
	csp     = "default-src 'none'; style-src 'sha256-" + sha256Base64(pageCSS) + "'; img-src data:; " +
		"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
	funcs = template.FuncMap{
		"utc":    fmtUTC,
		"local":  fmtLocal,
		"utcs":   fmtUTCSeconds,
		"iso":    fmtISO,
		"rel":    fmtRel,
		"num":    fmtNum,
		"state":  stateClass,
		"status": statusClass,
		"took":   fmtTook,
		"ms":     fmtMS,
		"px":     fmtPx,
		"plus":   func(a, b float64) float64 { return a + b },
		"num64":  func(n int64) string { return fmtNum(int(n)) },
		"base":   filepath.Base,
		"evstate": func(s string) string {
			switch s {
			case "kept":
				return "st-ok"
			case "pending":
				return "st-run"
			case "given_up":
				return "st-bad"
			}
			return "st-none"
		},
	}
	pageTmpl = template.Must(template.New("page.gohtml").Funcs(funcs).ParseFS(assets, "page.gohtml"))
	runTmpl  = template.Must(template.New("run.gohtml").Funcs(funcs).ParseFS(assets, "run.gohtml"))
)

func mustRead(name string) string {
	b, err := assets.ReadFile(name)
	if err != nil {
		panic(err)
	}
	return string(b)
}

func sha256Base64(s string) string {
	sum := sha256.Sum256([]byte(s))
	return base64.StdEncoding.EncodeToString(sum[:])
}

// pageData is what page.gohtml renders.
type pageData struct {
	Now    time.Time
	CSS    template.CSS
	Jobs   []JobStatus
	Budget BudgetStatus
	Cap    int // daily_limit − reserve: what ordinary work may use
	Chart  chart
	// Forecast is the next 24 hours (Plan its chart; PlanRows the runs the
	// table lists, PlanMore how many it leaves out).
	Forecast Forecast
	Plan     forecastChart
	PlanRows []ForecastRun
	PlanMore int
	Runs     []RunRow
	Calls    []CallRow
}

// pageHandler renders the status page. It renders into a buffer first, so a
// template error is a clean 500 rather than half a page.
func pageHandler(src Source, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		t := now().UTC()
		b := src.Budget(t)
		f := src.Forecast(t)
		d := pageData{
			Forecast: f,
			Plan:     layoutForecast(f),
			Now:      t,
			CSS:      template.CSS(pageCSS),
			Jobs:     src.Jobs(ctx),
			Budget:   b,
			Cap:      max(0, b.DailyLimit-b.Reserve),
			Chart:    budgetChart(b),
			Runs:     src.RecentRuns(ctx, DefaultRecentRuns),
			Calls:    src.RecentCalls(ctx, DefaultRecentCalls),
		}
		d.PlanRows, d.PlanMore = planRows(f.Runs, maxPlanRows)
		render(w, pageTmpl, d)
	})
}

// maxPlanRows bounds the planned-runs table: 1,000 hourly jobs plan 24,000
// runs a day.
const maxPlanRows = 200

// planRows picks at most n of runs for the table, in their order: every run
// foreseen deferred and every high-priority run first, then the earliest of
// the others; it returns how many it left out.
func planRows(runs []ForecastRun, n int) ([]ForecastRun, int) {
	if len(runs) <= n {
		return runs, 0
	}
	keep := make([]bool, len(runs))
	kept := 0
	for pass := 0; pass < 2; pass++ {
		for i, r := range runs {
			if kept == n {
				break
			}
			if !keep[i] && (pass == 1 || !r.Admit || r.Priority == "high") {
				keep[i] = true
				kept++
			}
		}
	}
	out := make([]ForecastRun, 0, kept)
	for i, r := range runs {
		if keep[i] {
			out = append(out, r)
		}
	}
	return out, len(runs) - kept
}

// runData is what run.gohtml renders.
type runData struct {
	Now time.Time
	CSS template.CSS
	Run RunDetail
}

// runHandler renders one run's page: /runs/{id}.
func runHandler(src Source, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			http.Error(w, "no such run: want /runs/ID with a run number", http.StatusNotFound)
			return
		}
		run, ok := src.Run(r.Context(), id)
		if !ok {
			http.Error(w, fmt.Sprintf("no run %d in the ledger", id), http.StatusNotFound)
			return
		}
		render(w, runTmpl, runData{Now: now().UTC(), CSS: template.CSS(pageCSS), Run: run})
	})
}

// evidenceHandler serves a run's kept evidence file:
// /runs/{id}/evidence/log or …/artifacts, as a ZIP download. Until it is
// kept the answer is 404 with where it stands.
func evidenceHandler(src Source) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id, err := strconv.ParseInt(r.PathValue("id"), 10, 64)
		if err != nil || id <= 0 {
			http.Error(w, "no such run: want /runs/ID/evidence/log with a run number", http.StatusNotFound)
			return
		}
		run, ok := src.Run(r.Context(), id)
		if !ok {
			http.Error(w, fmt.Sprintf("no run %d in the ledger", id), http.StatusNotFound)
			return
		}
		kind := r.PathValue("kind")
		for _, x := range run.Evidence {
			if x.Kind != kind {
				continue
			}
			if x.State != "kept" || x.Path == "" {
				http.Error(w, fmt.Sprintf("run %d: the %s is %s: %s", id, kind, strings.ReplaceAll(x.State, "_", " "), x.Reason), http.StatusNotFound)
				return
			}
			f, err := os.Open(x.Path)
			if err != nil {
				http.Error(w, fmt.Sprintf("run %d: the kept %s cannot be read", id, kind), http.StatusInternalServerError)
				return
			}
			defer f.Close()
			st, err := f.Stat()
			if err != nil {
				http.Error(w, fmt.Sprintf("run %d: the kept %s cannot be read", id, kind), http.StatusInternalServerError)
				return
			}
			h := w.Header()
			h.Set("Content-Type", "application/zip")
			h.Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"run-%d-%s\"", id, filepath.Base(x.Path)))
			h.Set("X-Content-Type-Options", "nosniff")
			h.Set("Cache-Control", "no-store")
			http.ServeContent(w, r, "", st.ModTime(), f)
			return
		}
		http.Error(w, fmt.Sprintf("run %d has no %s evidence", id, kind), http.StatusNotFound)
	})
}

// render executes t into a buffer first, so a template error is a clean 500
// rather than half a page, and sends it with the page's security headers.
func render(w http.ResponseWriter, t *template.Template, data any) {
	var buf bytes.Buffer
	if err := t.Execute(&buf, data); err != nil {
		http.Error(w, "render "+t.Name()+": "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

// The chart's coordinate system (SVG user units; it scales to the page).
const (
	chartW     = 480.0
	chartH     = 250.0
	plotLeft   = 44.0
	plotRight  = 8.0
	plotTop    = 14.0
	plotBottom = 30.0
	barGap     = 1.5
)

// chart is the budget chart, laid out in Go so the template only prints it.
// Each bar is one hour's calls stacked on the hours before it (a waterfall),
// so the bars share a scale with the daily limit and the reserve band, and
// the top of the last bar is the window's total.
type chart struct {
	frame
	Bars []bar
}

// frame is what both charts share: the plot area, the y axis and the
// daily limit, cap and reserve band, on a scale from 0 to top.
type frame struct {
	W, H                       float64
	PlotX, PlotY, PlotW, PlotH float64
	XLabels                    []label
	YTicks                     []label
	LimitY                     float64 // the daily limit line
	CapY                       float64 // daily_limit − reserve: bottom of the reserve band
	ReserveH                   float64 // height of the reserve band
	LimitText, CapText         string
	Desc                       string // the chart in words, for screen readers
	top                        float64
}

// newFrame lays out a frame tall enough for limit and peak.
func newFrame(limit, capacity, peak int, capText string) frame {
	f := frame{W: chartW, H: chartH, PlotX: plotLeft, PlotY: plotTop,
		PlotW: chartW - plotLeft - plotRight, PlotH: chartH - plotTop - plotBottom}
	f.top = niceCeil(float64(max(limit, peak, 1)) * 1.05)
	f.LimitY, f.CapY = f.y(float64(limit)), f.y(float64(capacity))
	f.ReserveH = f.CapY - f.LimitY
	f.LimitText, f.CapText = "limit "+fmtNum(limit), capText
	step := niceStep(f.top / 4)
	for v := 0.0; v <= f.top+step/1e6; v += step {
		f.YTicks = append(f.YTicks, label{X: f.PlotX - 4, Y: f.y(v), Text: fmtShort(v)})
	}
	return f
}

// y is the vertical position of value v.
func (f *frame) y(v float64) float64 { return f.PlotY + f.PlotH*(1-v/f.top) }

// hourLabel labels every sixth hour under the column at x.
func (f *frame) hourLabel(hour time.Time, x float64) {
	if hr := hour.UTC().Hour(); hr%6 == 0 {
		f.XLabels = append(f.XLabels, label{X: x, Y: f.PlotY + f.PlotH + 14, Text: fmt.Sprintf("%02d:00", hr)})
	}
}

type bar struct {
	X, Y, W, H float64
	Class      string // ok | reserve | over
	Title      string
}

type label struct {
	X, Y float64
	Text string
}

// budgetChart lays out the chart for b.
func budgetChart(b BudgetStatus) chart {
	total := 0
	for _, h := range b.Hours {
		total += max(0, h.Calls)
	}
	limit := max(0, b.DailyLimit)
	capacity := max(0, limit-b.Reserve)
	c := chart{frame: newFrame(limit, capacity, total, "reserve "+fmtNum(limit-capacity))}
	y := c.y

	if n := len(b.Hours); n > 0 {
		slot := c.PlotW / float64(n)
		cum := 0
		for i, h := range b.Hours {
			calls := max(0, h.Calls)
			base := cum
			cum += calls
			class := "ok"
			switch {
			case cum > limit:
				class = "over"
			case cum > capacity:
				class = "reserve"
			}
			x := c.PlotX + float64(i)*slot
			bh := y(float64(base)) - y(float64(cum))
			if calls > 0 && bh < 1 {
				bh = 1 // a non-empty hour stays visible
			}
			c.Bars = append(c.Bars, bar{
				X: x + barGap/2, W: math.Max(slot-barGap, 0.5),
				Y: y(float64(base)) - bh, H: bh,
				Class: class,
				Title: fmt.Sprintf("%s: %s calls (window total %s)", h.Hour.UTC().Format("2006-01-02 15:04 UTC"), fmtNum(calls), fmtNum(cum)),
			})
			c.hourLabel(h.Hour, x+slot/2)
		}
	}
	c.Desc = fmt.Sprintf("%s calls used in the rolling 24 hours, of %s available to runnerd (daily limit %s, reserve %s).",
		fmtNum(total), fmtNum(capacity), fmtNum(limit), fmtNum(limit-capacity))
	return c
}

// niceStep rounds x up to 1, 2, 2.5 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 2.5, 5, 10} {
		if m*p >= x {
			return math.Max(m*p, 1)
		}
	}
	return 10 * p
}

// niceCeil rounds x up to a multiple of a quarter of a nice step, so the top
// tick lands on the axis.
func niceCeil(x float64) float64 {
	s := niceStep(x / 4)
	return math.Ceil(x/s) * s
}

// Template helpers. Zero times print as a dash.

func fmtUTC(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// fmtLocal is t in the zone a job is scheduled in ("2025-03-05 02:00 CET"),
// so that a job set for 02:00 Europe/Berlin reads 02:00; UTC when the zone
// is UTC, empty or unknown.
func fmtLocal(t time.Time, zone string) string {
	if t.IsZero() {
		return "—"
	}
	loc, err := loadZone(zone)
	if err != nil || loc == time.UTC {
		return fmtUTC(t)
	}
	return t.In(loc).Format("2006-01-02 15:04 MST")
}

// zones caches loaded time zones: a page lists every job, and LoadLocation
// reads the zone database each time.
var zones sync.Map // name → *time.Location

func loadZone(name string) (*time.Location, error) {
	if name == "" || name == "UTC" {
		return time.UTC, nil
	}
	if l, ok := zones.Load(name); ok {
		return l.(*time.Location), nil
	}
	l, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	zones.Store(name, l)
	return l, nil
}

func fmtUTCSeconds(t time.Time) string {
	if t.IsZero() {
		return "—"
	}
	return t.UTC().Format("01-02 15:04:05")
}

func fmtISO(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// fmtRel says how far t is from now: "in 2h 5m", "3m ago", "now".
func fmtRel(now, t time.Time) string {
	if t.IsZero() {
		return ""
	}
	d := t.Sub(now)
	if d > -time.Minute && d < time.Minute {
		return "now"
	}
	if d > 0 {
		return "in " + fmtSpan(d)
	}
	return fmtSpan(-d) + " ago"
}

// fmtSpan is a coarse duration: "2d 3h", "4h 5m", "7m".
func fmtSpan(d time.Duration) string {
	d = d.Truncate(time.Minute)
	days, hours, mins := int(d/(24*time.Hour)), int(d%(24*time.Hour)/time.Hour), int(d%time.Hour/time.Minute)
	switch {
	case days > 0:
		return fmt.Sprintf("%dd %dh", days, hours)
	case hours > 0:
		return fmt.Sprintf("%dh %dm", hours, mins)
	}
	return fmt.Sprintf("%dm", mins)
}

// fmtTook is the time between start and finish of a run.
func fmtTook(start, finish time.Time) string {
	if start.IsZero() || finish.IsZero() || finish.Before(start) {
		return "—"
	}
	d := finish.Sub(start)
	if d < time.Minute {
		return strconv.FormatFloat(d.Seconds(), 'f', 1, 64) + " s"
	}
	return fmtSpan(d)
}

func fmtMS(ms int64) string {
	if ms < 1000 {
		return strconv.FormatInt(ms, 10) + " ms"
	}
	return strconv.FormatFloat(float64(ms)/1000, 'f', 1, 64) + " s"
}

// fmtNum groups thousands: 12345 → "12,345".
func fmtNum(n int) string {
	s := strconv.Itoa(n)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, r := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(r)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}

// fmtShort is an axis label: 2500 → "2.5k".
func fmtShort(v float64) string {
	switch {
	case v >= 1e6:
		return strconv.FormatFloat(v/1e6, 'f', -1, 64) + "M"
	case v >= 1e4:
		return strconv.FormatFloat(v/1e3, 'f', -1, 64) + "k"
	case v == math.Trunc(v):
		return fmtNum(int(v))
	}
	return strconv.FormatFloat(v, 'f', -1, 64)
}

func fmtPx(v float64) string { return strconv.FormatFloat(v, 'f', 1, 64) }

// stateClass maps a run state to a CSS class from a fixed set.
func stateClass(s string) string {
	switch s {
	case "succeeded":
		return "st-ok"
	case "failed":
		return "st-bad"
	case "deferred", "unknown":
		return "st-warn"
	case "running", "admitted", "planned":
		return "st-run"
	}
	return "st-none" // missed, skipped, never ran
}

// statusClass maps an HTTP status to a CSS class.
func statusClass(code int) string {
	switch {
	case code >= 200 && code < 400:
		return "st-ok"
	case code == 503 || code == 429:
		return "st-warn"
	}
	return "st-bad"
}

// forecast is the next-24-hours chart, laid out in Go: a column per hour
// whose height is the projected rolling window at its end, split into the
// calls already spent that are still inside that window, the admitted runs
// of earlier hours, and this hour's admitted runs by priority; the cap and
// the daily limit as lines; a mark over an hour where a run is foreseen to
// be deferred.
type forecastChart struct {
	frame
	Cols []forecastCol
}

type forecastCol struct {
	Hour     time.Time
	Window   int
	Segs     []bar
	Title    string
	Deferred int
	MarkX    float64
	MarkY    float64
}

func layoutForecast(f Forecast) forecastChart {
	peak := 0
	for _, h := range f.Hours {
		peak = max(peak, h.Window)
	}
	c := forecastChart{frame: newFrame(max(0, f.Limit), max(0, f.Cap), peak, "cap "+fmtNum(f.Cap))}
	y := c.y
	deferred := 0
	if n := len(f.Hours); n > 0 {
		slot := c.PlotW / float64(n)
		earlier := 0
		for i, h := range f.Hours {
			x := c.PlotX + float64(i)*slot
			col := forecastCol{Hour: h.Hour, Window: h.Window, Deferred: h.Deferred, MarkX: x + slot/2}
			base := 0
			for _, s := range []struct {
				n     int
				class string
			}{{h.Real, "real"}, {earlier, "earlier"}, {h.High, "high"}, {h.Normal, "normal"}, {h.Low, "low"}} {
				if s.n <= 0 {
					continue
				}
				bh := math.Max(y(float64(base))-y(float64(base+s.n)), 1)
				col.Segs = append(col.Segs, bar{X: x + barGap/2, W: math.Max(slot-barGap, 0.5), Y: y(float64(base)) - bh, H: bh, Class: s.class})
				base += s.n
			}
			col.MarkY = y(float64(base)) - 4
			col.Title = fmt.Sprintf("%s: projected window %s of cap %s (spent %s; planned earlier %s; this hour high %s, normal %s, low %s)",
				h.Hour.UTC().Format("15:04 UTC"), fmtNum(h.Window), fmtNum(f.Cap), fmtNum(h.Real), fmtNum(earlier),
				fmtNum(h.High), fmtNum(h.Normal), fmtNum(h.Low))
			if h.Deferred > 0 {
				col.Title += fmt.Sprintf("; %d run(s) foreseen deferred", h.Deferred)
			}
			c.Cols = append(c.Cols, col)
			earlier += h.High + h.Normal + h.Low
			deferred += h.Deferred
			c.hourLabel(h.Hour, x+slot/2)
		}
	}
	c.Desc = fmt.Sprintf("The next 24 hours: the projected rolling window peaks at %s of a cap of %s; %s calls are held for high-priority runs; %d run(s) are foreseen deferred.",
		fmtNum(peak), fmtNum(f.Cap), fmtNum(f.Held), deferred)
	return c
}

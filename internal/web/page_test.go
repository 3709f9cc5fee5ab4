package web

import (
	"context"
	"encoding/xml"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// node is an element of the parsed page.
type node struct {
	name     string
	attr     map[string]string
	children []*node
	text     strings.Builder // character data directly inside, and below
}

func (n *node) class() []string { return strings.Fields(n.attr["class"]) }

func (n *node) hasClass(c string) bool {
	for _, k := range n.class() {
		if k == c {
			return true
		}
	}
	return false
}

// all returns the descendants of n (n included) for which match is true.
func (n *node) all(match func(*node) bool) []*node {
	var out []*node
	var walk func(*node)
	walk = func(m *node) {
		if match(m) {
			out = append(out, m)
		}
		for _, c := range m.children {
			walk(c)
		}
	}
	walk(n)
	return out
}

func (n *node) byID(id string) *node {
	found := n.all(func(m *node) bool { return m.attr["id"] == id })
	if len(found) != 1 {
		return nil
	}
	return found[0]
}

func byName(name string) func(*node) bool { return func(m *node) bool { return m.name == name } }

// parsePage parses the page strictly as XML: the template writes well-formed
// markup (self-closed void elements, numeric escapes), so any unbalanced tag
// or broken escape is an error here. Element names are lower-cased local
// names (svg children included).
func parsePage(t *testing.T, page string) *node {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(page))
	d.Strict = true
	root := &node{name: "#document", attr: map[string]string{}}
	stack := []*node{root}
	for {
		tok, err := d.Token()
		if err == io.EOF {
			break
		}
		if err != nil {
			line, _ := d.InputPos()
			lines := strings.Split(page, "\n")
			ctx := ""
			if line-1 < len(lines) && line > 0 {
				ctx = lines[line-1]
			}
			t.Fatalf("the status page does not parse: %v\nline %d: %s", err, line, ctx)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			n := &node{name: strings.ToLower(tok.Name.Local), attr: map[string]string{}}
			for _, a := range tok.Attr {
				n.attr[a.Name.Local] = a.Value
			}
			top := stack[len(stack)-1]
			top.children = append(top.children, n)
			stack = append(stack, n)
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		case xml.CharData:
			for _, n := range stack {
				n.text.Write(tok)
			}
		}
	}
	if len(stack) != 1 {
		t.Fatalf("the status page leaves %d elements open", len(stack)-1)
	}
	return root
}

func TestStatusPage(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)
	resp, page := get(t, srv, "/")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET / = %d; want 200\n%s", resp.StatusCode, page)
	}
	for header, want := range map[string]string{
		"Content-Type":            "text/html; charset=utf-8",
		"Content-Security-Policy": csp,
		"X-Content-Type-Options":  "nosniff",
	} {
		if got := resp.Header.Get(header); got != want {
			t.Errorf("GET / %s = %q; want %q", header, got, want)
		}
	}
	if src.runsN != DefaultRecentRuns || src.callsN != DefaultRecentCalls {
		t.Errorf("page asked for %d runs and %d calls; want %d and %d", src.runsN, src.callsN, DefaultRecentRuns, DefaultRecentCalls)
	}
	doc := parsePage(t, page)

	t.Run("head", func(t *testing.T) {
		var viewport, charset bool
		for _, m := range doc.all(byName("meta")) {
			viewport = viewport || (m.attr["name"] == "viewport" && strings.Contains(m.attr["content"], "width=device-width"))
			charset = charset || m.attr["charset"] == "utf-8"
		}
		if !viewport || !charset {
			t.Errorf("head: viewport meta %v, charset meta %v; want both", viewport, charset)
		}
		styles := doc.all(byName("style"))
		if len(styles) != 1 {
			t.Fatalf("page has %d <style> elements; want 1", len(styles))
		}
		// The CSP allows exactly this stylesheet, by hash.
		if got := "'sha256-" + sha256Base64(styles[0].text.String()) + "'"; !strings.Contains(csp, got) {
			t.Errorf("the inline stylesheet's hash %s is not in the CSP %q", got, csp)
		}
	})

	t.Run("no scripts or external assets", func(t *testing.T) {
		if s := doc.all(byName("script")); len(s) != 0 {
			t.Errorf("page has %d <script> elements; want none", len(s))
		}
		for _, n := range doc.all(func(*node) bool { return true }) {
			for _, a := range []string{"src", "href", "action", "srcset", "style"} {
				v, ok := n.attr[a]
				if !ok {
					continue
				}
				if a == "style" || strings.Contains(v, "//") || strings.HasPrefix(v, "/") && v != "/" {
					t.Errorf("<%s %s=%q>: want no inline style attributes and no absolute or external URLs", n.name, a, v)
				}
			}
		}
	})

	t.Run("escaping", func(t *testing.T) {
		if strings.Contains(page, xss) || strings.Contains(page, "<script") {
			t.Errorf("the planted %q reached the page unescaped", xss)
		}
		// It is shown, escaped, wherever it was planted.
		if got := strings.Count(page, "&lt;script&gt;alert("); got < 4 {
			t.Errorf("escaped marker appears %d times; want at least 4 (job error, run error, call path, 503 reason)", got)
		}
	})

	t.Run("jobs table", func(t *testing.T) {
		table := doc.byID("jobs-table")
		if table == nil {
			t.Fatal("no table#jobs-table")
		}
		rows := table.all(byName("tbody"))[0].all(byName("tr"))
		if len(rows) != len(src.jobs) {
			t.Fatalf("jobs table has %d rows; want %d", len(rows), len(src.jobs))
		}
		for i, j := range src.jobs {
			cells := rows[i].all(byName("td"))
			if len(cells) != 7 {
				t.Fatalf("job row %d has %d cells; want 7", i, len(cells))
			}
			if est := cells[6].text.String(); !strings.Contains(est, fmtNum(j.Estimate)+" calls") || !strings.Contains(est, j.Basis) {
				t.Errorf("job %s estimate cell = %q; want %d calls and the basis %q", j.Name, est, j.Estimate, j.Basis)
			}
			for _, c := range cells {
				if c.attr["data-label"] == "" {
					t.Errorf("job row %d: a cell has no data-label (needed by the phone layout)", i)
				}
			}
			if got := strings.TrimSpace(cells[0].text.String()); !strings.HasPrefix(got, j.Name) {
				t.Errorf("job row %d name cell = %q; want it to start with %q", i, got, j.Name)
			}
			next := cells[4].text.String()
			if j.Next.IsZero() {
				if strings.TrimSpace(next) != "—" {
					t.Errorf("job %s next run = %q; want a dash", j.Name, next)
				}
			} else {
				// In the job's own zone, UTC on hover.
				loc, err := time.LoadLocation(j.Timezone)
				if err != nil {
					t.Fatal(err)
				}
				local := j.Next.In(loc).Format("2006-01-02 15:04 MST")
				if j.Timezone == "UTC" {
					local = fmtUTC(j.Next)
				}
				tm := cells[4].all(byName("time"))
				if !strings.Contains(next, local) || !strings.Contains(next, fmtRel(testNow, j.Next)) ||
					len(tm) != 1 || tm[0].attr["title"] != fmtUTC(j.Next) {
					t.Errorf("job %s (%s) next run = %q; want %q, %q and %q on hover", j.Name, j.Timezone, next, local,
						fmtRel(testNow, j.Next), fmtUTC(j.Next))
				}
			}
			last := cells[5]
			if j.LastState == "" {
				if !strings.Contains(last.text.String(), "never ran") {
					t.Errorf("job %s last run = %q; want \"never ran\"", j.Name, last.text.String())
				}
				continue
			}
			badges := last.all(func(n *node) bool { return n.hasClass("badge") })
			if len(badges) != 1 || badges[0].text.String() != j.LastState || !badges[0].hasClass(stateClass(j.LastState)) {
				t.Errorf("job %s last-state badge = %+v; want one %q badge with class %s", j.Name, badges, j.LastState, stateClass(j.LastState))
			}
		}
		if !strings.Contains(rows[3].text.String(), "paused") {
			t.Errorf("paused job row = %q; want a paused badge", rows[3].text.String())
		}
	})

	t.Run("runs and calls", func(t *testing.T) {
		for _, tt := range []struct {
			id   string
			want int
		}{{"runs-table", min(len(src.runs), DefaultRecentRuns)}, {"calls-table", min(len(src.calls), DefaultRecentCalls)}} {
			table := doc.byID(tt.id)
			if table == nil {
				t.Fatalf("no table#%s", tt.id)
			}
			if got := len(table.all(byName("tbody"))[0].all(byName("tr"))); got != tt.want {
				t.Errorf("%s has %d rows; want %d", tt.id, got, tt.want)
			}
		}
		calls := doc.byID("calls-table").text.String()
		for _, want := range []string{"no answer", "503", "ExecutionRecord.query", fmtMS(src.calls[0].DurationMS)} {
			if !strings.Contains(calls, want) {
				t.Errorf("calls table does not show %q", want)
			}
		}
	})

	t.Run("budget chart", func(t *testing.T) {
		svg := doc.byID("budget-chart")
		if svg == nil || svg.name != "svg" {
			t.Fatal("no svg#budget-chart")
		}
		checkChart(t, svg, src.budget)
		facts := doc.byID("budget").text.String()
		for _, want := range []string{fmtNum(src.budget.Used), fmtNum(src.budget.Remaining), fmtNum(src.budget.DailyLimit), "requests/s"} {
			if !strings.Contains(facts, want) {
				t.Errorf("budget section does not show %q", want)
			}
		}
	})
}

// checkChart checks the chart's geometry against the budget it draws: one
// bar per hour, stacked, on the same scale as the limit line and reserve band.
func checkChart(t *testing.T, svg *node, b BudgetStatus) {
	t.Helper()
	num := func(n *node, a string) float64 {
		t.Helper()
		v, err := strconv.ParseFloat(n.attr[a], 64)
		if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
			t.Fatalf("<%s %s=%q>: not a finite number", n.name, a, n.attr[a])
		}
		return v
	}
	bars := svg.all(func(n *node) bool { return n.name == "rect" && n.hasClass("bar") })
	if len(bars) != len(b.Hours) {
		t.Fatalf("chart has %d bars; want %d (one per hour)", len(bars), len(b.Hours))
	}
	limits := svg.all(func(n *node) bool { return n.name == "line" && n.hasClass("limit") })
	bands := svg.all(func(n *node) bool { return n.name == "rect" && n.hasClass("reserve-band") })
	if len(limits) != 1 || len(bands) != 1 {
		t.Fatalf("chart has %d limit lines and %d reserve bands; want 1 and 1", len(limits), len(bands))
	}
	limitY := num(limits[0], "y1")
	bandTop, bandH := num(bands[0], "y"), num(bands[0], "height")
	if math.Abs(bandTop-limitY) > 0.15 {
		t.Errorf("reserve band top %v; want it at the limit line %v", bandTop, limitY)
	}
	// Pixels per call from the limit line; the axis sits at the bottom bar's base.
	base := num(bars[0], "y") + num(bars[0], "height")
	scale := (base - limitY) / float64(b.DailyLimit)
	if scale <= 0 {
		t.Fatalf("limit line y=%v is not above the axis y=%v", limitY, base)
	}
	if want := float64(b.Reserve) * scale; math.Abs(bandH-want) > 0.3 {
		t.Errorf("reserve band height %v; want %v (reserve %d)", bandH, want, b.Reserve)
	}
	cum, capacity := 0, b.DailyLimit-b.Reserve
	prevX := -1.0
	for i, h := range b.Hours {
		r := bars[i]
		cum += h.Calls
		x, y, height := num(r, "x"), num(r, "y"), num(r, "height")
		if x <= prevX {
			t.Errorf("bar %d x=%v; want bars left to right", i, x)
		}
		prevX = x
		// A non-empty hour is at least one unit tall, so it stays visible.
		wantH := float64(h.Calls) * scale
		if h.Calls > 0 {
			wantH = math.Max(wantH, 1)
		}
		if math.Abs(height-wantH) > 0.3 {
			t.Errorf("bar %d (%d calls) height %v; want %v", i, h.Calls, height, wantH)
		}
		// The bar stands on the running total of the hours before it.
		if want := base - float64(cum-h.Calls)*scale; math.Abs(y+height-want) > 0.3 {
			t.Errorf("bar %d bottom y=%v; want %v (running total before it %d)", i, y+height, want, cum-h.Calls)
		}
		wantClass := "ok"
		if cum > b.DailyLimit {
			wantClass = "over"
		} else if cum > capacity {
			wantClass = "reserve"
		}
		if !r.hasClass(wantClass) {
			t.Errorf("bar %d (running total %d) class %q; want %q", i, cum, r.attr["class"], wantClass)
		}
		title := r.all(byName("title"))
		if len(title) != 1 || !strings.Contains(title[0].text.String(), h.Hour.UTC().Format("15:04")) ||
			!strings.Contains(title[0].text.String(), fmt.Sprintf("%s calls", fmtNum(h.Calls))) {
			t.Errorf("bar %d title = %v; want the hour and its calls", i, title)
		}
	}
	texts := svg.text.String()
	for _, want := range []string{"limit " + fmtNum(b.DailyLimit), "reserve " + fmtNum(b.Reserve), "hour (UTC)"} {
		if !strings.Contains(texts, want) {
			t.Errorf("chart has no label %q", want)
		}
	}
}

func TestBudgetChart(t *testing.T) {
	start := testNow.Truncate(time.Hour).Add(-23 * time.Hour)
	hours := func(calls ...int) []HourCalls {
		var hs []HourCalls
		for i, c := range calls {
			hs = append(hs, HourCalls{Hour: start.Add(time.Duration(i) * time.Hour), Calls: c})
		}
		return hs
	}
	flat := make([]int, 24)
	for i := range flat {
		flat[i] = 10
	}
	tests := []struct {
		name string
		b    BudgetStatus
	}{
		{"typical", newFakeSource().budget},
		{"empty window", BudgetStatus{DailyLimit: 1000, Reserve: 100, Hours: hours(make([]int, 24)...)}},
		{"over the limit", BudgetStatus{DailyLimit: 200, Reserve: 20, Hours: hours(append(flat[:23:23], 9)...)}},
		{"reached exactly", BudgetStatus{DailyLimit: 240, Reserve: 24, Hours: hours(flat...)}},
		{"no reserve", BudgetStatus{DailyLimit: 100000, Reserve: 0, Hours: hours(flat...)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tt.b
			b.Used = 0
			for _, h := range b.Hours {
				b.Used += h.Calls
			}
			src := newFakeSource()
			src.budget = b
			srv := serve(t, src, nil)
			_, page := get(t, srv, "/")
			svg := parsePage(t, page).byID("budget-chart")
			if svg == nil {
				t.Fatal("no svg#budget-chart")
			}
			checkChart(t, svg, b)
		})
	}
	// A budget with no limit and no hours still lays out finite numbers.
	c := budgetChart(BudgetStatus{})
	for _, v := range []float64{c.LimitY, c.CapY, c.ReserveH} {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			t.Errorf("budgetChart(zero) = %+v; want finite coordinates", c)
		}
	}
	if len(c.Bars) != 0 {
		t.Errorf("budgetChart(zero) has %d bars; want 0", len(c.Bars))
	}
}

// TestStatusPageEmpty renders a daemon with nothing configured yet.
func TestStatusPageEmpty(t *testing.T) {
	srv := serve(t, &fakeSource{budget: BudgetStatus{DailyLimit: 1000, Reserve: 100, Remaining: 900, Rate: 5}}, nil)
	_, page := get(t, srv, "/")
	doc := parsePage(t, page)
	for _, want := range []string{"No jobs configured.", "No runs yet.", "No calls recorded yet."} {
		if !strings.Contains(page, want) {
			t.Errorf("empty page does not say %q", want)
		}
	}
	if doc.byID("budget-chart") == nil {
		t.Error("empty page has no budget chart")
	}
	if ok, _ := regexp.MatchString(`NaN|Inf`, page); ok {
		t.Error("empty page has NaN or Inf in it")
	}
}

// TestStatusPageLookups: a run's recovery lookups are shown with its calls.
func TestStatusPageLookups(t *testing.T) {
	src := newFakeSource()
	src.runs[5].Lookups = 2
	srv := serve(t, src, nil)
	_, page := get(t, srv, "/")
	if n := strings.Count(page, "(2 lookups)"); n != 1 || !strings.Contains(page, "6 (2 lookups)") {
		t.Errorf("page shows \"(2 lookups)\" %d times; want once, after the run's 6 calls", n)
	}
	if strings.Count(page, "lookups)") != 1 {
		t.Error("runs without lookups show a lookups count")
	}
}

// TestStatusPageOversubscribed: the jobs the allowance cannot hold are named
// on the page.
func TestStatusPageOversubscribed(t *testing.T) {
	src := newFakeSource()
	src.budget.Oversubscribed = []string{"low priority: about 720 calls a day needed by audit; 0 left after higher priorities: none of their runs can run"}
	srv := serve(t, src, nil)
	_, page := get(t, srv, "/")
	if !strings.Contains(page, "Over-subscribed") || !strings.Contains(page, "needed by audit; 0 left") {
		t.Errorf("the page does not name the over-subscribed jobs")
	}
}

// TestRunPage: /runs/{id} tells a run's story — its decision with the
// earliest time for a deferred run, every ledger row of it in order with the
// platform ids, its detail — escaped, under the page's headers; the status
// page links to it; an unknown or malformed id is a 404.
// TestNextRunInJobZone: 02:00 Europe/Berlin reads 02:00, not 01:00 UTC.
func TestNextRunInJobZone(t *testing.T) {
	next := time.Date(2025, 3, 5, 1, 0, 0, 0, time.UTC)
	for _, tc := range []struct{ zone, want string }{
		{"Europe/Berlin", "2025-03-05 02:00 CET"}, {"America/New_York", "2025-03-04 20:00 EST"},
		{"UTC", "2025-03-05 01:00 UTC"}, {"", "2025-03-05 01:00 UTC"}, {"Not/AZone", "2025-03-05 01:00 UTC"},
	} {
		if got := fmtLocal(next, tc.zone); got != tc.want {
			t.Errorf("fmtLocal(%v, %q) = %q; want %q", next, tc.zone, got, tc.want)
		}
	}
	if got := fmtLocal(time.Time{}, "Europe/Berlin"); got != "—" {
		t.Errorf("fmtLocal(zero) = %q; want a dash", got)
	}
}

func TestRunPage(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)

	resp, body := get(t, srv, "/runs/1000")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Security-Policy") != csp {
		t.Fatalf("GET /runs/1000 = %d, CSP %q", resp.StatusCode, resp.Header.Get("Content-Security-Policy"))
	}
	if strings.Contains(body, xss) {
		t.Errorf("run page carries unescaped markup")
	}
	want := src.details[1000]
	rows := strings.Count(body[strings.Index(body, `id="run-calls-table"`):], "<tr>") - 1 // less the header
	if rows != len(want.Ledger) {
		t.Errorf("run page lists %d calls; want the ledger's %d", rows, len(want.Ledger))
	}
	last := -1
	for _, c := range want.Ledger {
		i := strings.Index(body, fmt.Sprintf(`<td data-label="Call" class="num">%d`, c.ID))
		if i < 0 {
			t.Errorf("call %d missing", c.ID)
			continue
		}
		if i < last {
			t.Errorf("call %d out of order (the ledger's order is oldest first)", c.ID)
		}
		last = i
	}
	for _, s := range []string{"executionrecord-abc", `badge st-run">lookup`, "attempt 2", `id="run-detail"`, "execution_id"} {
		if !strings.Contains(body, s) {
			t.Errorf("run page lacks %q", s)
		}
	}

	_, body = get(t, srv, "/runs/990")
	for _, s := range []string{`id="run-decision"`, "12 left after 300 held for high-priority runs",
		`<time id="run-not-before" datetime="2025-03-04T17:42:00Z">2025-03-04 17:42 UTC</time> (in 3h 5m)`,
		"This run made no API calls."} {
		if !strings.Contains(body, s) {
			t.Errorf("deferred run's page lacks %q", s)
		}
	}

	_, page := get(t, srv, "/")
	// A deferral is a state with a reason, not an error.
	if !strings.Contains(page, `<td data-label="Why" class="why"><span class="muted">40 calls do not fit`) {
		t.Errorf("the deferred run's reason is not shown as a muted note in the runs table")
	}
	if !strings.Contains(page, `<a href="runs/1000">1000</a>`) || !strings.Contains(page, `href="runs/1000">run 1000</a>`) {
		t.Errorf("status page does not link runs to their pages")
	}
	for _, path := range []string{"/runs/4242", "/runs/abc", "/runs/-1"} {
		if resp, _ := get(t, srv, path); resp.StatusCode != http.StatusNotFound {
			t.Errorf("GET %s = %d; want 404", path, resp.StatusCode)
		}
	}
}

// TestForecastChart: the next-24-hours chart has a column per hour carrying
// the projected window (data-window) whose segments add up to it, the high
// run's reservation drawn in its hour, a mark where a deferral is foreseen;
// the cards show what is held for high priority and what is left now; the
// planned runs are listed with the deferral's reason, escaped.
func TestForecastChart(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)
	_, page := get(t, srv, "/")
	doc := parsePage(t, page)
	svg := doc.byID("forecast-chart")
	if svg == nil {
		t.Fatal("no svg#forecast-chart")
	}
	cols := svg.all(func(n *node) bool { return n.name == "g" && n.hasClass("hour") })
	f := src.forecast
	if len(cols) != len(f.Hours) {
		t.Fatalf("forecast chart has %d columns; want %d", len(cols), len(f.Hours))
	}
	top := niceCeil(float64(f.Limit) * 1.05) // the fake peaks below the limit
	unit := (chartH - plotTop - plotBottom) / top
	for i, col := range cols {
		h := f.Hours[i]
		if col.attr["data-hour"] != fmtISO(h.Hour) || col.attr["data-window"] != fmt.Sprint(h.Window) {
			t.Errorf("column %d = hour %s window %s; want %s, %d", i, col.attr["data-hour"], col.attr["data-window"], fmtISO(h.Hour), h.Window)
		}
		sum := 0.0
		classes := map[string]bool{}
		for _, r := range col.all(byName("rect")) {
			hgt, _ := strconv.ParseFloat(r.attr["height"], 64)
			sum += hgt
			classes[strings.TrimPrefix(r.attr["class"], "seg ")] = true
		}
		if math.Abs(sum-float64(h.Window)*unit) > float64(len(classes)) { // a thin segment is drawn 1 unit high
			t.Errorf("column %d segments are %.1f units high; want the window %d (%.1f)", i, sum, h.Window, float64(h.Window)*unit)
		}
		if classes["high"] != (h.High > 0) {
			t.Errorf("column %d (%s): high segment %v; want %v", i, h.Hour.Format("15:04"), classes["high"], h.High > 0)
		}
		marks := col.all(func(n *node) bool { return n.hasClass("deferred-mark") })
		if (len(marks) > 0) != (h.Deferred > 0) {
			t.Errorf("column %d (%s): %d deferral marks; want one iff %d deferred", i, h.Hour.Format("15:04"), len(marks), h.Deferred)
		}
	}
	if got := strings.TrimSpace(doc.byID("card-held").text.String()); got != fmtNum(f.Held) {
		t.Errorf("held card = %q; want %q", got, fmtNum(f.Held))
	}
	if got := strings.TrimSpace(doc.byID("card-left").text.String()); got != fmtNum(f.LeftNow) {
		t.Errorf("left-now card = %q; want %q", got, fmtNum(f.LeftNow))
	}
	plan := doc.byID("plan-table")
	if plan == nil {
		t.Fatal("no plan table")
	}
	if rows := plan.all(byName("tbody"))[0].all(byName("tr")); len(rows) != len(f.Runs) {
		t.Errorf("plan table has %d rows; want %d", len(rows), len(f.Runs))
	}
	if txt := plan.text.String(); !strings.Contains(txt, "deferred") || !strings.Contains(txt, "40 calls do not fit") {
		t.Errorf("plan table does not show the foreseen deferral with its reason")
	}

	empty := serve(t, healthFunc(func(context.Context) error { return nil }), nil)
	if _, body := get(t, empty, "/"); !strings.Contains(body, "Nothing is planned in the next 24 hours.") {
		t.Errorf("an empty forecast does not say so")
	}
}

// TestAuthCard: the credentials card says whether the auth breaker is open
// and when the probe comes.
func TestAuthCard(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)
	if _, page := get(t, srv, "/"); !strings.Contains(doc(t, page, "card-auth"), "accepted") {
		t.Errorf("closed breaker: the card does not say the credentials are accepted")
	}
	src.mu.Lock()
	src.budget.AuthOpen, src.budget.AuthNextProbe = true, testNow.Add(5*time.Minute)
	src.mu.Unlock()
	_, page := get(t, srv, "/")
	if card := doc(t, page, "card-auth"); !strings.Contains(card, "rejected") || !strings.Contains(card, "2025-03-04 14:42 UTC") {
		t.Errorf("open breaker: card = %q; want rejected and the probe's time", card)
	}
}

// doc is the text of the element with id in page.
func doc(t *testing.T, page, id string) string {
	t.Helper()
	n := parsePage(t, page).byID(id)
	if n == nil {
		t.Fatalf("no element %q", id)
	}
	return n.text.String()
}

// TestRateCard: the rate card shows the last minute's calls per second
// beside the configured rate.
func TestRateCard(t *testing.T) {
	src := newFakeSource()
	src.budget.RateUsed = 0.4
	srv := serve(t, src, nil)
	_, page := get(t, srv, "/")
	if card := strings.TrimSpace(doc(t, page, "card-rate")); card != "0.40 of 5 requests/s" {
		t.Errorf("rate card = %q; want %q", card, "0.40 of 5 requests/s")
	}
}

// TestPlanRows: a day of many runs is cut to the table's size keeping every
// foreseen deferral and every high-priority run, in time order.
func TestPlanRows(t *testing.T) {
	var runs []ForecastRun
	for i := range 500 {
		r := ForecastRun{Job: fmt.Sprintf("j%d", i), Time: testNow.Add(time.Duration(i) * time.Minute), Priority: "normal", Admit: true}
		switch {
		case i%50 == 7:
			r.Admit = false
		case i%100 == 42:
			r.Priority = "high"
		}
		runs = append(runs, r)
	}
	got, more := planRows(runs, 20)
	if len(got) != 20 || more != 480 {
		t.Fatalf("planRows(500, 20) = %d rows, %d more; want 20, 480", len(got), more)
	}
	deferred, high := 0, 0
	for i, r := range got {
		if i > 0 && r.Time.Before(got[i-1].Time) {
			t.Errorf("row %d out of time order", i)
		}
		if !r.Admit {
			deferred++
		}
		if r.Priority == "high" {
			high++
		}
	}
	if deferred != 10 || high != 5 {
		t.Errorf("kept %d deferrals and %d high runs; want all 10 and 5", deferred, high)
	}
	if got, more := planRows(runs[:5], 20); len(got) != 5 || more != 0 {
		t.Errorf("planRows(5, 20) = %d, %d; want all 5", len(got), more)
	}
}

// TestRunEvidence: the run page shows a failed execution's evidence and
// links the kept ZIP, which /runs/{id}/evidence/log serves as an attachment;
// a piece still pending answers 404 with where it stands.
func TestRunEvidence(t *testing.T) {
	src := newFakeSource()
	path := filepath.Join(t.TempDir(), "process-log.zip")
	zipData := []byte("PK\x03\x04 not really, but served as it is")
	if err := os.WriteFile(path, zipData, 0o600); err != nil {
		t.Fatal(err)
	}
	d := src.details[1000]
	d.Evidence = []EvidenceRow{
		{Kind: "log", State: "kept", ExecutionID: "execution-1", Path: path, Bytes: int64(len(zipData)), Reason: "1 files in the ZIP"},
		{Kind: "artifacts", State: "pending", ExecutionID: "execution-1", Reason: "deferred: budget exhausted: " + xss, NextAt: testNow.Add(time.Hour)},
	}
	src.details[1000] = d
	srv := serve(t, src, nil)

	resp, body := get(t, srv, "/runs/1000")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /runs/1000 = %d", resp.StatusCode)
	}
	for _, s := range []string{`id="run-evidence"`, `<a href="1000/evidence/log">process-log.zip</a>`, "deferred: budget exhausted",
		`next attempt <time datetime="2025-03-04T15:37:00Z">`} {
		if !strings.Contains(body, s) {
			t.Errorf("run page lacks %q", s)
		}
	}
	if strings.Contains(body, xss) {
		t.Errorf("run page carries unescaped markup from an evidence reason")
	}
	resp, body = get(t, srv, "/runs/1000/evidence/log")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/zip" ||
		!strings.Contains(resp.Header.Get("Content-Disposition"), "attachment") || body != string(zipData) {
		t.Errorf("GET evidence/log = %d %q %q, %d bytes; want the kept file as a ZIP attachment",
			resp.StatusCode, resp.Header.Get("Content-Type"), resp.Header.Get("Content-Disposition"), len(body))
	}
	resp, body = get(t, srv, "/runs/1000/evidence/artifacts")
	if resp.StatusCode != http.StatusNotFound || !strings.Contains(body, "pending") {
		t.Errorf("GET evidence/artifacts = %d %q; want 404 saying it is pending", resp.StatusCode, body)
	}
	if resp, _ = get(t, srv, "/runs/1001/evidence/log"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("evidence of a run without any = %d; want 404", resp.StatusCode)
	}
}

// TestOwedCard: a resume a release still owes is shown until it is done.
func TestOwedCard(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)
	if _, page := get(t, srv, "/"); strings.Contains(page, "Owes a resume") {
		t.Errorf("nothing owed, yet the page shows an owed resume")
	}
	src.mu.Lock()
	src.budget.Owed = []string{"schedules of proc-orders on atom-prod (job rel, run 3): resumed first at the next start"}
	src.mu.Unlock()
	_, page := get(t, srv, "/")
	if card := doc(t, page, "card-owed-0"); !strings.Contains(card, "paused") || !strings.Contains(card, "schedules of proc-orders on atom-prod (job rel, run 3)") {
		t.Errorf("owed card = %q; want the paused schedule and its run", card)
	}
}

// TestInstanceCards: on a shared ledger, each instance has its line.
func TestInstanceCards(t *testing.T) {
	src := newFakeSource()
	srv := serve(t, src, nil)
	if _, page := get(t, srv, "/"); strings.Contains(page, "card-instance-") {
		t.Errorf("no shared ledger, yet the page shows an instance")
	}
	src.mu.Lock()
	src.budget.Instances = []string{"a (host h1, pid 10): running, heartbeat 1s ago, 2 job lease(s), 30 call(s) in 24 h (75% of the window's)",
		"b (host h2, pid 11): silent, heartbeat 40s ago, 0 job lease(s), 10 call(s) in 24 h (25% of the window's)"}
	src.mu.Unlock()
	_, page := get(t, srv, "/")
	if card := doc(t, page, "card-instance-1"); !strings.Contains(card, "b (host h2, pid 11): silent") {
		t.Errorf("instance card = %q; want b's line", card)
	}
}

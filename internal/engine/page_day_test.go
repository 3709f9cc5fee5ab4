package engine

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/browsertest"
	"runnerd/internal/store"
	"runnerd/internal/web"
)

// capturedPage is a page as the daemon's handler served it.
type capturedPage struct {
	header http.Header
	body   []byte
}

var (
	windowAttr = regexp.MustCompile(`data-hour="([^"]+)" data-window="(\d+)"`)
	cardValue  = func(id string) *regexp.Regexp {
		return regexp.MustCompile(`id="` + id + `"><strong>([0-9,]+)</strong>`)
	}
)

func atoiGrouped(t *testing.T, s string) int {
	t.Helper()
	n, err := strconv.Atoi(strings.ReplaceAll(s, ",", ""))
	if err != nil {
		t.Fatalf("%q is not a number", s)
	}
	return n
}

// TestStatusPageScriptedDay drives the daemon through a day on the
// simulator with its status page: at 01:55 the next-24-hours chart is, hour
// by hour, what `runnerd plan` foresees from the ledger (PlanFromLedger, as
// plan -json prints it), the high-priority 02:00 deploy's estimate is held
// in its hour and on the card, and the Used and Remaining cards are
// `runnerd budget`'s and `runnerd status`'s (LoadBudgetView, LoadStatus, as
// their -json print them); at 18:10 the low export that did not fit has a
// page with its reason and earliest time, and the deploy's page lists
// exactly the ledger's calls of that run. Then headless Chromium loads the
// pages — no console message — at 1,400 and 390 px; the screenshots are
// kept in $RUNNERD_SCREENSHOTS.
func TestStatusPageScriptedDay(t *testing.T) {
	pages := map[string]capturedPage{}
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 55)))
		r := newRig(t, 1000, forecastJobs, func(db *store.DB) {
			spend(t, db, atHour(day, 0, 30), 850) // in the window until 00:00 tomorrow: 150 left
			history(t, db, "promote", "deploy", day, 120)
			history(t, db, "sync", "execute", day, 10)
			history(t, db, "audit", "export", day, 200)
		})
		ctx := context.Background()
		if err := r.e.Start(ctx); err != nil {
			t.Fatal(err)
		}
		h := web.Handler(r.e, nil, time.Now)
		get := func(name, path string) string {
			t.Helper()
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
			if rec.Code != http.StatusOK {
				t.Fatalf("GET %s = %d: %s", path, rec.Code, rec.Body)
			}
			pages[name] = capturedPage{rec.Header().Clone(), rec.Body.Bytes()}
			return rec.Body.String()
		}

		// 01:55: will the 02:00 deployment run?
		synctest.Wait()
		now := time.Now().UTC()
		page := get("status-0155", "/")
		plan, err := PlanFromLedger(ctx, r.e.Config(), r.e.db, nil, now, 24)
		if err != nil {
			t.Fatal(err)
		}
		st := plan.Window.Status(now)
		start := now.Truncate(time.Hour)
		cols := windowAttr.FindAllStringSubmatch(page, -1)
		if len(cols) != 24 {
			t.Fatalf("01:55: the forecast chart has %d columns; want 24", len(cols))
		}
		high := 0
		for _, s := range plan.Steps {
			if s.Admit && s.Priority == runnerd.PriorityHigh {
				high += s.Estimate
			}
		}
		for i, c := range cols {
			hour, err := time.Parse(time.RFC3339, c[1])
			if err != nil || !hour.Equal(start.Add(time.Duration(i)*time.Hour)) {
				t.Fatalf("column %d is hour %q; want %v", i, c[1], start.Add(time.Duration(i)*time.Hour))
			}
			want := 0
			for _, b := range st.Hours {
				if b.Hour.After(hour.Add(-24*time.Hour)) && !b.Hour.After(hour) {
					want += b.Calls
				}
			}
			for _, s := range plan.Steps {
				at := s.Nominal.Truncate(time.Hour)
				if at.Before(start) {
					at = start
				}
				if s.Admit && !at.After(hour) {
					want += s.Estimate
				}
			}
			if got := atoiGrouped(t, c[2]); got != want {
				t.Errorf("01:55: the page's projected window at %s is %d; runnerd plan's is %d", hour.Format("15:04"), got, want)
			}
		}
		if !strings.Contains(page, `class="seg high"`) || high != 120 {
			t.Errorf("01:55: the deploy's reservation is not drawn (plan holds %d for high priority)", high)
		}
		if m := cardValue("card-held").FindStringSubmatch(page); m == nil || atoiGrouped(t, m[1]) != high {
			t.Errorf("01:55: held-for-high card = %v; want the plan's %d", m, high)
		}
		view, err := LoadBudgetView(ctx, r.e.Config(), r.e.db, now)
		if err != nil {
			t.Fatal(err)
		}
		status, err := LoadStatus(ctx, r.e.Config(), r.e.db, now)
		if err != nil {
			t.Fatal(err)
		}
		bs, ss := view.Window.Status(now), status.Budget.Window.Status(now)
		if bs.Used != ss.Used || bs.Remaining != ss.Remaining {
			t.Fatalf("budget and status disagree: %d/%d vs %d/%d", bs.Used, bs.Remaining, ss.Used, ss.Remaining)
		}
		if want := fmt.Sprintf("<dd><strong>%s</strong> of %s</dd>", group(bs.Used), group(bs.DailyLimit-bs.Reserve)); !strings.Contains(page, want) {
			t.Errorf("01:55: the Used card is not budget/status's %q", want)
		}
		if want := fmt.Sprintf("<dt>Remaining</dt><dd><strong>%s</strong></dd>", group(bs.Remaining)); !strings.Contains(page, want) {
			t.Errorf("01:55: the Remaining card is not budget/status's %q", want)
		}

		// The day goes on: the deploy runs at 02:00, the syncs every hour,
		// the export does not fit at 18:00.
		time.Sleep(time.Until(atHour(day, 18, 10)))
		synctest.Wait()
		get("status-1810", "/")
		deferred := r.runs("audit")
		if len(deferred) != 1 || deferred[0].State != runnerd.StateDeferred {
			t.Fatalf("18:10: audit runs = %+v; want one deferred", deferred)
		}
		dp := get("run-deferred", fmt.Sprintf("/runs/%d", deferred[0].ID))
		if !strings.Contains(dp, `id="run-decision"`) || !strings.Contains(dp, htmlText(deferred[0].Reason)) {
			t.Errorf("the deferred run's page does not give its reason %q", deferred[0].Reason)
		}
		if nb := deferred[0].NotBefore; !nb.IsZero() && !strings.Contains(dp, `datetime="`+nb.UTC().Format(time.RFC3339)+`"`) {
			t.Errorf("the deferred run's page does not give its earliest time %v", nb)
		}
		deploys := r.runs("promote")
		if len(deploys) != 1 || deploys[0].State != runnerd.StateSucceeded {
			t.Fatalf("18:10: promote runs = %+v; want one succeeded", deploys)
		}
		calls, err := r.e.db.ListCalls(ctx, store.CallFilter{RunID: deploys[0].ID, Status: -1})
		if err != nil || len(calls) == 0 {
			t.Fatalf("the deploy's calls: %d, %v", len(calls), err)
		}
		rp := get("run-deploy", fmt.Sprintf("/runs/%d", deploys[0].ID))
		table := rp[strings.Index(rp, `id="run-calls-table"`):]
		if got := strings.Count(table, `<td data-label="Call" class="num">`); got != len(calls) {
			t.Errorf("the deploy's page lists %d calls; the ledger has %d", got, len(calls))
		}
		for _, c := range calls {
			if !strings.Contains(table, fmt.Sprintf(`<td data-label="Call" class="num">%d`, c.ID)) {
				t.Errorf("the deploy's page lacks ledger call %d", c.ID)
			}
		}
		r.e.Close()
	})

	// The captured pages in a real browser.
	bin := browsertest.Need(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		p, ok := pages[strings.TrimPrefix(req.URL.Path, "/")]
		if !ok {
			http.NotFound(w, req)
			return
		}
		for k, v := range p.header {
			w.Header()[k] = v
		}
		w.Write(p.body)
	}))
	defer srv.Close()
	dir := t.TempDir()
	for _, name := range []string{"status-0155", "status-1810", "run-deferred", "run-deploy"} {
		for _, width := range []int{1400, 390} {
			shot := filepath.Join(dir, fmt.Sprintf("day-%s-%d.png", name, width))
			_, log := browsertest.Run(t, bin, dir, srv.URL+"/"+name, "--screenshot="+shot, fmt.Sprintf("--window-size=%d,2400", width))
			if msgs := browsertest.ConsoleMessages(log); len(msgs) > 0 {
				t.Errorf("%s at %d px: console messages:\n%s", name, width, strings.Join(msgs, "\n"))
			}
			if img := browsertest.DecodePNG(t, shot); img.Bounds().Dx() != width || browsertest.LumaVariance(img) < 100 {
				t.Errorf("%s at %d px: screenshot %d px wide, variance %.1f", name, width, img.Bounds().Dx(), browsertest.LumaVariance(img))
			}
			browsertest.Keep(t, os.Getenv("RUNNERD_SCREENSHOTS"), shot)
		}
	}
}

// group is the page's thousands grouping.
func group(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// htmlText is s as html/template writes it in text.
func htmlText(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace(s)
}

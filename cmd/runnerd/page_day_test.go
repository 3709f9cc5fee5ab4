package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
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
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/browsertest"
	"runnerd/internal/config"
	"runnerd/internal/report"
	"runnerd/internal/store"
	"runnerd/internal/web"
)

const dayJobs = `[account]
id = "sim-account"
url = "http://sim.invalid/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000
reserve = 0
rate = 5

[store]
path = %q

[[job]]
name = "promote"
kind = "deploy"
priority = "high"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "sync"
kind = "execute"
schedule = "30 * * * *"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "audit"
kind = "export"
priority = "low"
schedule = "0 18 * * *"
object = "AuditLog"
output = "%s/{job}/{window_start}.jsonl"
`

// capturedPage is a page as the daemon's handler served it.
type capturedPage struct {
	header http.Header
	body   []byte
}

var windowAttr = regexp.MustCompile(`data-hour="([^"]+)" data-window="(\d+)"`)

// cliJSON runs `runnerd ARGS -json -config conf` in-process (inside the
// bubble, so on its clock) and decodes each output line into a T.
func cliJSON[T any](t *testing.T, conf string, args ...string) []T {
	t.Helper()
	out, errOut, err := runCmd(t, append(args, "-json", "-config", conf)...)
	if err != nil && exitCode(err) != exitFailed {
		t.Fatalf("runnerd %s -json: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	var got []T
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v T
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			t.Fatalf("runnerd %s -json: %q: %v", strings.Join(args, " "), sc.Text(), err)
		}
		got = append(got, v)
	}
	return got
}

// seedDay writes into a new ledger at path what came before the day: 850
// calls at 00:30 (in the window until midnight: 150 left) and three
// finished runs of each job a day apart, which set the estimates: the deploy
// 120 calls, a sync 10, the export 200.
func seedDay(t *testing.T, path string, day time.Time) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	call := func(runID int64, job string, at time.Time, i int) {
		id, err := db.BeginCall(ctx, store.Call{RunID: runID, Job: job, RequestID: fmt.Sprintf("seed-%d-%s-%d-%d", runID, job, at.Unix(), i),
			Operation: "Process.query", Method: "POST", Path: "/Process/query", Safe: true, Attempt: 1, StartedAt: at})
		if err == nil {
			err = db.EndCall(ctx, store.Call{ID: id, Status: 200})
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	for i := range 850 {
		call(0, "earlier", day.Add(30*time.Minute), i)
	}
	for _, h := range []struct {
		job, kind string
		calls     int
	}{{"promote", "deploy", 120}, {"sync", "execute", 10}, {"audit", "export", 200}} {
		for d := 2; d <= 4; d++ {
			nominal := day.Add(-time.Duration(d) * 24 * time.Hour)
			r, _, err := db.CreateRun(ctx, runnerd.Run{Job: h.job, Kind: h.kind, NominalTime: nominal, State: runnerd.StatePlanned})
			if err != nil {
				t.Fatal(err)
			}
			for i := range h.calls {
				call(r.ID, h.job, nominal, i)
			}
			if r, err = db.GetRun(ctx, r.ID); err != nil {
				t.Fatal(err)
			}
			r.State, r.StartedAt, r.FinishedAt = runnerd.StateSucceeded, nominal, nominal.Add(time.Minute)
			if err := db.UpdateRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestStatusPageScriptedDay drives the daemon through a day on the
// simulator's clock (a synctest bubble) with its status page, and asks the
// CLI beside it:
//
//   - 01:55: every hour of the next-24-hours chart is the projected window
//     recomputed from `runnerd plan -json` (each step's time, estimate and
//     admission) and `runnerd budget -json`'s hours; the high-priority 02:00
//     deploy is drawn and carded as held; the Used and Remaining cards are
//     budget -json's and status -json's;
//   - 18:10: the export that did not fit has a page with its reason and
//     earliest time; the deploy's page lists exactly the ledger's calls of it.
//
// Then headless Chromium loads the pages at 1,400 and 390 px: no console
// message; the screenshots are kept in $RUNNERD_SCREENSHOTS.
func TestStatusPageScriptedDay(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "sim-password")
	pages := map[string]capturedPage{}
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		dir := t.TempDir()
		conf := filepath.Join(dir, "jobs.toml")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(dayJobs, filepath.Join(dir, "runnerd.db"), dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		seedDay(t, filepath.Join(dir, "runnerd.db"), day)
		time.Sleep(time.Until(day.Add(time.Hour + 50*time.Minute)))

		sim := atomsim.New(atomsim.Options{Rate: 5, DailyLimit: 1000, AuditLogs: 200, AuditDays: 2, ExecutionRecords: -1,
			Events: -1, ExecDuration: 30 * time.Second, RecordDelay: time.Second})
		e := faultEnv()
		cfg, err := config.Load(conf, config.LoadOptions{Getenv: e.getenv})
		if err != nil {
			t.Fatal(err)
		}
		d, err := newDaemon(context.Background(), e, cfg, slog.New(slog.DiscardHandler), daemonOptions{client: func(c *atomapi.Config) {
			c.HTTPClient = &http.Client{Transport: memTransport{sim}}
		}})
		if err != nil {
			t.Fatalf("newDaemon() = %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		h := web.Handler(d.Engine, nil, time.Now)
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
		time.Sleep(time.Until(day.Add(time.Hour + 55*time.Minute)))
		synctest.Wait()
		page := get("status-0155", "/")
		plan := cliJSON[report.Plan](t, conf, "plan")
		budgets := cliJSON[budgetJSON](t, conf, "budget")
		statuses := cliJSON[report.Status](t, conf, "status")
		if len(plan) == 0 || len(budgets) != 1 || len(statuses) != 1 {
			t.Fatalf("plan/budget/status -json gave %d/%d/%d lines", len(plan), len(budgets), len(statuses))
		}
		b, st := budgets[0], statuses[0]
		start := time.Now().UTC().Truncate(time.Hour)
		cols := windowAttr.FindAllStringSubmatch(page, -1)
		if len(cols) != 24 {
			t.Fatalf("01:55: the forecast chart has %d columns; want 24", len(cols))
		}
		high := 0
		for _, p := range plan {
			if p.Admit && p.Priority == "high" {
				high += p.Estimate
			}
		}
		for i, c := range cols {
			hour := start.Add(time.Duration(i) * time.Hour)
			if c[1] != hour.Format(time.RFC3339) {
				t.Fatalf("column %d is hour %s; want %s", i, c[1], hour.Format(time.RFC3339))
			}
			want := 0
			for _, bk := range b.Hours {
				if bk.Hour.After(hour.Add(-24*time.Hour)) && !bk.Hour.After(hour) {
					want += bk.Calls
				}
			}
			for _, p := range plan {
				at, err := time.Parse(time.RFC3339, p.Time)
				if err != nil {
					t.Fatal(err)
				}
				if at = at.Truncate(time.Hour); at.Before(start) {
					at = start
				}
				if p.Admit && !at.After(hour) {
					want += p.Estimate
				}
			}
			if got, _ := strconv.Atoi(c[2]); got != want {
				t.Errorf("01:55: the page's projected window at %s is %d; from plan -json and budget -json it is %d",
					hour.Format("15:04"), got, want)
			}
		}
		if high != 120 || !strings.Contains(page, `class="seg high"`) ||
			!strings.Contains(page, fmt.Sprintf(`id="card-held"><strong>%d</strong>`, high)) {
			t.Errorf("01:55: the deploy's %d calls are not drawn and carded as held for high priority", high)
		}
		if b.Used != st.Used || b.Remaining != st.Remaining {
			t.Fatalf("budget -json (%d used, %d left) and status -json (%d, %d) disagree", b.Used, b.Remaining, st.Used, st.Remaining)
		}
		if want := fmt.Sprintf("<dd><strong>%s</strong> of %s</dd>", grouped(b.Used), grouped(b.DailyLimit-b.Reserve)); !strings.Contains(page, want) {
			t.Errorf("01:55: the Used card is not budget -json's and status -json's %q", want)
		}
		if want := fmt.Sprintf("<dt>Remaining</dt><dd><strong>%s</strong></dd>", grouped(b.Remaining)); !strings.Contains(page, want) {
			t.Errorf("01:55: the Remaining card is not budget -json's and status -json's %q", want)
		}

		// The day goes on: the deploy at 02:00, a sync every hour, and the
		// export that does not fit at 18:00.
		time.Sleep(time.Until(day.Add(18*time.Hour + 10*time.Minute)))
		synctest.Wait()
		get("status-1810", "/")
		runs := func(job string) []runnerd.Run {
			rs, err := d.DB().ListRuns(context.Background(), store.RunFilter{Job: job, Since: day})
			if err != nil {
				t.Fatal(err)
			}
			return rs
		}
		deferred := runs("audit")
		if len(deferred) != 1 || deferred[0].State != runnerd.StateDeferred {
			t.Fatalf("18:10: today's audit runs = %+v; want one deferred", deferred)
		}
		dp := get("run-deferred", fmt.Sprintf("/runs/%d", deferred[0].ID))
		if !strings.Contains(dp, `id="run-decision"`) || !strings.Contains(dp, htmlText(deferred[0].Reason)) {
			t.Errorf("the deferred run's page does not give its reason %q", deferred[0].Reason)
		}
		if nb := deferred[0].NotBefore; nb.IsZero() || !strings.Contains(dp, `id="run-not-before" datetime="`+nb.UTC().Format(time.RFC3339)+`"`) {
			t.Errorf("the deferred run's page does not give its earliest time %v", nb)
		}
		deploys := runs("promote")
		if len(deploys) != 1 || deploys[0].State != runnerd.StateSucceeded {
			t.Fatalf("18:10: today's promote runs = %+v; want one succeeded", deploys)
		}
		calls, err := d.DB().ListCalls(context.Background(), store.CallFilter{RunID: deploys[0].ID, Status: -1})
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
		if err := d.Scheduler().Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		cancel()
		synctest.Wait()
		d.close()
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

// grouped is the page's thousands grouping.
func grouped(n int) string {
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

package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

var stormMinutes = flag.Int("storm.minutes", 10, "simulated minutes of the 503 storm in TestFaultStorm503")

// stormJobs: an execute job of each priority that follows its execution, and
// an export, every 2 simulated minutes; the budget affords a day of them,
// even at the estimate the storm inflates (a high run that spans it spends 30
// calls, and the planner projects that for the next 24 h). The
// high-priority job passes the classifier's pause, so the storm meets its
// calls: its retries (backoff 30 s·2^n, 15.5 min in all) outlast a 10-minute
// storm.
const stormJobs = `
[account]
id = "sim-account"
url = "http://sim.invalid/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 60000
reserve = 6000
rate = 5

[store]
path = "%s"

[[job]]
name = "exec"
kind = "execute"
schedule = "@every 2m"
overlap = "allow"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "exec-high"
kind = "execute"
schedule = "@every 2m"
priority = "high"
retries = 5
process_id = "proc-invoices"
atom_id = "atom-test"

[[job]]
name = "audit"
kind = "export"
schedule = "@every 2m"
object = "AuditLog"
first_window = "1h"
output = "%s/exports/{job}/{window_start}.jsonl"
`

// memTransport hands each request to h in the calling goroutine: inside a
// synctest bubble the simulator then reads the bubble's clock.
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

// TestFaultStorm503 runs the whole daemon — scheduler and cron, planner,
// gate and rate limiter, 503 classifier, client with its default retry
// policy, ledger, execute and export kinds — on simulated time (a synctest
// bubble: every clock and timer in it is fake), while the simulator answers
// every request with 503 for 10 simulated minutes, then recovers. Checked: no
// run ends (or is left) unknown, so no unsafe call became unknown because of
// a 503; requests at the simulator never exceed the rate in any 1-second
// window; every run that was pending (deferred, planned) completes after the
// storm; the ledger never exceeds the budget's cap, and the simulator never
// refused a call for the rate or the daily limit.
func TestFaultStorm503(t *testing.T) {
	var logs lockedBuffer
	synctest.Test(t, func(t *testing.T) {
		start := time.Now() // the bubble's epoch
		stormFrom := start.Add(5 * time.Minute)
		stormTo := stormFrom.Add(time.Duration(*stormMinutes) * time.Minute)
		sim := atomsim.New(atomsim.Options{Rate: 5, DailyLimit: 60000, AuditLogs: 500, AuditDays: 1, ExecutionRecords: -1,
			Events: -1, ExecDuration: 20 * time.Second, RecordDelay: time.Second})
		storm := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if now := sim.Now(); !now.Before(stormFrom) && now.Before(stormTo) {
				sim.Inject(atomsim.Fault{Kind: atomsim.Fault503Storm}) // this request's
			}
			sim.ServeHTTP(w, r)
		})

		dir := t.TempDir()
		path := filepath.Join(dir, "jobs.toml")
		if err := os.WriteFile(path, []byte(fmt.Sprintf(stormJobs, filepath.Join(dir, "runnerd.db"), dir)), 0o600); err != nil {
			t.Fatal(err)
		}
		e := faultEnv()
		cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
		if err != nil {
			t.Fatal(err)
		}
		log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
		// The daemon's client with the simulator in-process (so that it reads
		// the bubble's clock); everything else as the engine builds it: the
		// paced gate, the recorder, the default timeout and retry policy.
		d, err := newDaemon(context.Background(), e, cfg, log, daemonOptions{client: func(c *atomapi.Config) {
			c.HTTPClient = &http.Client{Transport: memTransport{storm}}
		}})
		if err != nil {
			t.Fatalf("newDaemon() = %v", err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		// Storm, then the classifier's pause until the next hour boundary,
		// then the deferred runs go: stop well after.
		end := stormTo.Truncate(time.Hour).Add(time.Hour + 20*time.Minute)
		time.Sleep(time.Until(end))
		if err := d.Scheduler().Stop(context.Background()); err != nil {
			t.Fatalf("Stop() = %v", err)
		}
		cancel()
		synctest.Wait()

		checkStorm(t, d, sim, stormFrom, stormTo, deferredRuns(logs.String()))
		d.close()
	})
	if t.Failed() {
		s := logs.String()
		if len(s) > 30000 {
			s = "…" + s[len(s)-30000:]
		}
		t.Logf("daemon log (tail):\n%s", s)
	}
}

// deferredRuns reads the ids of the runs the scheduler logged as deferred.
func deferredRuns(logs string) map[int64]bool {
	out := map[int64]bool{}
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, `msg="run deferred"`) {
			continue
		}
		_, rest, _ := strings.Cut(line, " run_id=")
		id, _, _ := strings.Cut(rest, " ")
		if n, err := strconv.ParseInt(id, 10, 64); err == nil {
			out[n] = true
		}
	}
	return out
}

func checkStorm(t *testing.T, d *daemon, sim *atomsim.Server, stormFrom, stormTo time.Time, deferred map[int64]bool) {
	t.Helper()
	ctx := context.Background()
	runs, err := d.DB().ListRuns(ctx, store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	calls, err := d.DB().ListCalls(ctx, store.CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	states := map[string]int{}
	byID := map[int64]runnerd.Run{}
	for _, r := range runs {
		states[string(r.State)]++
		byID[r.ID] = r
		switch r.State {
		case runnerd.StateSucceeded:
		case runnerd.StateSkipped:
			if !strings.Contains(r.Reason, "overlap") {
				t.Errorf("run %d (%s) skipped: %s; want only overlap skips", r.ID, r.Job, r.Reason)
			}
		case runnerd.StateFailed:
			// Only a run whose every attempt fell inside the storm may fail,
			// and only for the 503s (the job's retries were spent).
			if !strings.Contains(r.Error, "HTTP 503") || !r.FinishedAt.Before(stormTo) {
				t.Errorf("run %d (%s, nominal %s) failed at %s: %s; want succeeded (a run may fail only when the storm outlasts its retries)",
					r.ID, r.Job, r.NominalTime.Format("15:04:05"), r.FinishedAt.Format("15:04:05"), r.Error)
			}
		default:
			t.Errorf("run %d (%s, nominal %s) ended %s: %s %s; want succeeded", r.ID, r.Job,
				r.NominalTime.Format("15:04:05"), r.State, r.Reason, r.Error)
		}
	}
	// Every run that was pending during the storm (deferred by the planner or
	// held back by the classifier) completed after it.
	if len(deferred) == 0 {
		t.Errorf("no run was deferred; the storm did not hold normal work back")
	}
	// (With overlap = skip, the runs of one job that wake together at the
	// end of the pause go one at a time: the others are skipped, by policy.)
	deferredDone := 0
	for id := range deferred {
		switch r := byID[id]; {
		case r.State == runnerd.StateSucceeded:
			deferredDone++
		case r.State == runnerd.StateSkipped && strings.HasPrefix(r.Reason, "overlap = skip"):
		default:
			t.Errorf("run %d (%s), deferred during the storm, ended %s (%s %s); want succeeded", id, r.Job, r.State, r.Reason, r.Error)
		}
	}
	// Unsafe calls answered 503: each was retried (its run did not become
	// unknown) and its run completed.
	unsafe503, stormCalls := 0, 0
	runsWith503 := map[int64]bool{}
	for _, c := range calls {
		if c.Status == 503 {
			stormCalls++
			if !c.Safe {
				unsafe503++
				runsWith503[c.RunID] = true
			}
		}
	}
	for id := range runsWith503 {
		if r := byID[id]; r.State == runnerd.StateUnknown || r.Detail != "" && strings.Contains(r.Detail, `"reconciled"`) {
			t.Errorf("run %d (%s) had an unsafe call answered 503 and became unknown (%s); want it retried", id, r.Job, r.State)
		}
	}
	if unsafe503 == 0 {
		t.Errorf("no unsafe call was answered 503; the storm missed the unsafe calls")
	}
	// The rate: at most 5 requests in any 1-second window at the simulator,
	// and no refusal of its own (rate or daily limit) besides the storm.
	reqs := sim.Requests()
	times := make([]time.Time, len(reqs))
	simRefused := 0
	for i, q := range reqs {
		times[i] = q.Time
		if q.Status == 503 && q.Fault == "" {
			simRefused++
		}
	}
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	peak := 0
	for i, j := 0, 0; i < len(times); i++ {
		for times[i].Sub(times[j]) >= time.Second {
			j++
		}
		peak = max(peak, i-j+1)
	}
	if peak > 5 {
		t.Errorf("peak requests in a 1-second window = %d; want ≤ 5 (rate)", peak)
	}
	if simRefused != 0 {
		t.Errorf("the simulator refused %d requests for its own limits; want 0", simRefused)
	}
	// The budget: the ledger never beyond the cap (daily_limit − reserve),
	// and the simulator's count agrees.
	capacity := d.Limits().Cap()
	used, _ := sim.Usage()
	if len(calls) > capacity {
		t.Errorf("ledger holds %d calls in 24 h; want ≤ cap %d", len(calls), capacity)
	}
	stormReq := 0
	for _, q := range reqs {
		if !q.Time.Before(stormFrom) && q.Time.Before(stormTo) {
			stormReq++
		}
	}
	t.Logf("storm %s..%s: %d requests during it (%d calls answered 503, %d of them unsafe, in %d runs); "+
		"%d requests in all, peak %d in 1 s; ledger %d calls (cap %d), simulator counted %d; runs %v, %d deferred, %d of them then succeeded; executions %d",
		stormFrom.Format("15:04"), stormTo.Format("15:04"), stormReq, stormCalls, unsafe503, len(runsWith503),
		len(reqs), peak, len(calls), capacity, used, states, len(deferred), deferredDone, len(sim.Executions()))
}

// lockedBuffer is a bytes.Buffer safe for concurrent writes, for log capture.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/pgtest"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// memTransport hands each request to h in the calling goroutine: inside a
// synctest bubble the simulator then reads the bubble's clock, and no
// goroutine waits on a socket.
type memTransport struct{ h http.Handler }

func (m memTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rec := httptest.NewRecorder()
	m.h.ServeHTTP(rec, req)
	resp := rec.Result()
	resp.Request = req
	return resp, nil
}

const testAccount = `
[account]
id = "sim-account"
url = "http://sim.invalid/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = %d
reserve = 0
rate = 5

[store]
path = %q
`

// rig is an engine on a simulator, inside a synctest bubble.
type rig struct {
	t      *testing.T
	dir    string
	sim    *atomsim.Server
	e      *Engine
	log    *lockedLog
	opened time.Time
}

type lockedLog struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *lockedLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// newRig writes the configuration (limit, then jobs), seeds the ledger with
// seed (calls per hour, and runs with their calls for the estimates) and
// opens the engine. now is the bubble's clock.
func newRig(t *testing.T, limit int, jobs string, seed func(db *store.DB)) *rig {
	t.Helper()
	return newRigSim(t, limit, jobs, seed, atomsim.Options{Rate: 5, DailyLimit: limit, AuditLogs: 200, AuditDays: 2,
		ExecutionRecords: -1, Events: -1, ExecDuration: 30 * time.Second, RecordDelay: time.Second}, slog.LevelInfo)
}

func newRigSim(t *testing.T, limit int, jobs string, seed func(db *store.DB), so atomsim.Options, level slog.Level) *rig {
	t.Helper()
	r := &rig{t: t, dir: t.TempDir(), log: &lockedLog{}, opened: time.Now()}
	r.sim = atomsim.New(so)
	dbPath := filepath.Join(r.dir, "runnerd.db")
	path := filepath.Join(r.dir, "jobs.toml")
	conf := fmt.Sprintf(testAccount, limit, dbPath) + strings.ReplaceAll(jobs, "DIR", r.dir)
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(k string) string {
		if k == "RUNNERD_PASSWORD" {
			return "sim-password"
		}
		return ""
	}
	cfg, err := config.Load(path, config.LoadOptions{Getenv: getenv})
	if err != nil {
		t.Fatal(err)
	}
	if seed != nil {
		db, err := store.Open(t.Context(), dbPath, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		seed(db)
		db.Close()
	}
	r.e, err = Open(t.Context(), Options{
		Config: cfg, Getenv: getenv,
		Logger: slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: level})),
		Client: func(c *atomapi.Config) { c.HTTPClient = &http.Client{Transport: memTransport{r.sim}} },
	})
	if err != nil {
		t.Fatalf("Open() = %v", err)
	}
	t.Cleanup(func() { r.e.Close() }) // inside the bubble: its goroutines end with it
	return r
}

// spend records n finished calls at t in db (another process's, earlier).
func spend(t *testing.T, db *store.DB, at time.Time, n int) {
	t.Helper()
	for i := range n {
		id, err := db.BeginCall(t.Context(), store.Call{Job: "earlier", RequestID: fmt.Sprintf("seed-%d-%d", at.Unix(), i),
			Operation: "Process.query", Method: "POST", Path: "/Process/query", Safe: true, Attempt: 1, StartedAt: at})
		if err != nil {
			t.Fatal(err)
		}
		if err := db.EndCall(t.Context(), store.Call{ID: id, Status: 200}); err != nil {
			t.Fatal(err)
		}
	}
}

// history records three finished runs of job with calls each, so that the
// estimator's p90 is calls.
func history(t *testing.T, db *store.DB, job, kind string, before time.Time, calls int) {
	t.Helper()
	for i := range 3 {
		finishedRun(t, db, job, kind, before.Add(-time.Duration(i+1)*24*time.Hour), calls, 0)
	}
}

// runs returns job's runs since the rig opened (not the seeded history),
// newest first.
func (r *rig) runs(job string) []runnerd.Run {
	r.t.Helper()
	runs, err := r.e.db.ListRuns(context.Background(), store.RunFilter{Job: job})
	if err != nil {
		r.t.Fatal(err)
	}
	var out []runnerd.Run
	for _, x := range runs {
		if !x.NominalTime.Before(r.opened) {
			out = append(out, x)
		}
	}
	return out
}

// day is a Monday at 00:00 UTC, the bubble's clock is set to it at start.
func atHour(day time.Time, h, m int) time.Time {
	return day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute)
}

const deferJobs = `
[[job]]
name = "promote"
kind = "deploy"
schedule = "0 2 * * *"
priority = "high"
catch_up_window = "6h"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "audit"
kind = "export"
schedule = "30 2 * * *"
priority = "low"
catch_up_window = "6h"
object = "AuditLog"
window_property = "date"
first_window = "1h"
output = "DIR/exports/{job}/{window_start}.jsonl"
`

// TestDeferredHighRunKeepsItsShare: limit 100, 90 spent (15 in yesterday's
// 03:00 hour, 75 in its 05:00 hour). At 02:00 the high deploy (estimate 20)
// is deferred; at 02:30 the low export (estimate 10), which alone would fit,
// is deferred too, naming the waiting deploy; at 03:00 the deploy runs, and
// the export only after it (at 04:00: the deploy spent less than its 20).
func TestDeferredHighRunKeepsItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		r := newRig(t, 100, deferJobs, func(db *store.DB) {
			spend(t, db, atHour(day, -21, 10), 15) // yesterday 03:10
			spend(t, db, atHour(day, -19, 10), 75) // yesterday 05:10
			history(t, db, "promote", "deploy", atHour(day, 1, 0), 20)
			history(t, db, "audit", "export", atHour(day, 1, 0), 10)
		})
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(atHour(day, 2, 45)))
		synctest.Wait()
		pr, au := r.runs("promote"), r.runs("audit")
		if len(pr) != 1 || pr[0].State != runnerd.StateDeferred || !pr[0].NotBefore.Equal(atHour(day, 3, 0)) {
			t.Fatalf("02:45: promote runs = %+v; want one deferred until 03:00", pr)
		}
		if len(au) != 1 || au[0].State != runnerd.StateDeferred {
			t.Fatalf("02:45: audit runs = %+v; want one deferred (not admitted)", au)
		}
		if !strings.Contains(au[0].Reason, "high-priority") || !strings.Contains(au[0].Reason, "promote (deferred)") {
			t.Errorf("the export's deferral = %q; want it to name the waiting high run promote (deferred)", au[0].Reason)
		}
		time.Sleep(time.Until(atHour(day, 6, 0)))
		synctest.Wait()
		pr, au = r.runs("promote"), r.runs("audit")
		if pr[0].State != runnerd.StateSucceeded || au[0].State != runnerd.StateSucceeded {
			t.Fatalf("06:00: promote %s (%s), audit %s (%s); want both succeeded", pr[0].State, pr[0].Error, au[0].State, au[0].Error)
		}
		if !pr[0].StartedAt.Before(au[0].StartedAt) || pr[0].StartedAt.Before(atHour(day, 3, 0)) {
			t.Errorf("promote started %v, audit %v; want promote first, at 03:00 or later", pr[0].StartedAt, au[0].StartedAt)
		}
		// The deploy spent less than its estimate, so the export fits once
		// the deploy is done (it is asked again hourly), not only at 05:00.
		if au[0].StartedAt.Before(pr[0].FinishedAt) || au[0].StartedAt.Before(atHour(day, 4, 0)) {
			t.Errorf("audit started %v, promote finished %v; want the export after the deploy, at 04:00 or later", au[0].StartedAt, pr[0].FinishedAt)
		}
		if err := r.e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

// slowKind spends a safe call a minute, n times, through the real client:
// a long-running high run.
type slowKind struct {
	c *atomapi.Client
	n int
}

func (k slowKind) Run(ctx context.Context, rc *scheduler.RunContext) scheduler.Outcome {
	for i := range k.n {
		if i > 0 {
			if err := runnerd.Sleep(ctx, time.Minute); err != nil {
				return scheduler.Outcome{State: runnerd.StateFailed, Err: err}
			}
		}
		if _, err := k.c.QueryDeployedPackages(ctx, atomapi.And(atomapi.Eq("environmentId", atomsim.EnvProd))); err != nil {
			return scheduler.Outcome{State: runnerd.StateFailed, Err: err}
		}
	}
	return scheduler.Outcome{State: runnerd.StateSucceeded}
}

// TestRunningHighRunKeepsItsShare: limit 100, 70 spent yesterday at 03:10.
// At 02:00 the high run (estimate 20) is admitted and spends a call a
// minute; at 02:05 a low export (estimate 15) would fit the window alone, but
// not beside the high run's 14 remaining calls: it is deferred, and the high
// run spends all 20 calls without a refusal.
func TestRunningHighRunKeepsItsShare(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(atHour(day, 1, 50)))
		jobs := strings.Replace(deferJobs, `schedule = "30 2 * * *"`, `schedule = "5 2 * * *"`, 1)
		r := newRig(t, 100, jobs, func(db *store.DB) {
			spend(t, db, atHour(day, -21, 10), 70)
			history(t, db, "promote", "deploy", atHour(day, 1, 0), 20)
			history(t, db, "audit", "export", atHour(day, 1, 0), 15)
		})
		sj, err := r.e.buildJobs(r.e.Config())
		if err != nil {
			t.Fatal(err)
		}
		for i := range sj {
			if sj[i].Name == "promote" {
				sj[i].Runner = slowKind{c: r.e.client, n: 20}
			}
		}
		if err := r.e.sched.SetJobs(context.Background(), sj); err != nil {
			t.Fatal(err)
		}
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(atHour(day, 2, 10)))
		synctest.Wait()
		au := r.runs("audit")
		if len(au) != 1 || au[0].State != runnerd.StateDeferred {
			t.Fatalf("02:10: audit runs = %+v; want one deferred while the high run spends", au)
		}
		if !strings.Contains(au[0].Reason, "promote (running)") {
			t.Errorf("the export's deferral = %q; want it to name the running high run", au[0].Reason)
		}
		time.Sleep(time.Until(atHour(day, 2, 30)))
		synctest.Wait()
		pr := r.runs("promote")
		if len(pr) != 1 || pr[0].State != runnerd.StateSucceeded || pr[0].Calls != 20 {
			t.Fatalf("02:30: promote = %+v; want succeeded with all 20 calls", pr)
		}
		if err := r.e.Close(); err != nil {
			t.Fatal(err)
		}
	})
}

const oversubscribedJobs = `
[[job]]
name = "promote"
kind = "deploy"
schedule = "0 */4 * * *"
priority = "high"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "nightly"
kind = "execute"
schedule = "30 */2 * * *"
priority = "high"
process_id = "proc-invoices"
atom_id = "atom-test"

[[job]]
name = "orders"
kind = "execute"
schedule = "*/5 * * * *"
catch_up_window = "30m"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "orders-low"
kind = "execute"
schedule = "2-59/10 * * * *"
priority = "low"
catch_up_window = "30m"
process_id = "proc-orders"
atom_id = "atom-prod"
`

// TestOversubscribedDay: a whole simulated day whose jobs ask for several
// times the allowance (executions followed to their end every 5 and every 10
// minutes, beside the high deploys and executions). Every high run is served
// at its slot (their estimates from their history); lower runs are deferred
// or missed, never at the expense of a high one; no rolling window ever holds more than the cap, and the
// simulator refuses nothing.
func TestOversubscribedDay(t *testing.T) {
	const limit = 300
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		time.Sleep(time.Until(day.Add(-time.Minute)))
		// The high jobs have run before: their estimates come from history
		// (a new job's default can be below what it spends, and the shares
		// held for it with it).
		seed := func(db *store.DB) {
			history(t, db, "promote", "deploy", day.Add(-time.Hour), 4)
			history(t, db, "nightly", "execute", day.Add(-time.Hour), 12)
		}
		r := newRigSim(t, limit, oversubscribedJobs, seed, atomsim.Options{Rate: 5, DailyLimit: limit, AuditLogs: 1000,
			AuditDays: 2, ExecutionRecords: -1, Events: -1, ExecDuration: 2 * time.Minute, RecordDelay: time.Second}, slog.LevelInfo)
		sim := r.sim
		if err := r.e.Start(context.Background()); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Until(day.Add(24*time.Hour + 50*time.Minute)))
		if err := r.e.Stop(context.Background(), time.Second); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()

		end := day.Add(24 * time.Hour)
		demand, servedCalls := 0, 0
		lower := map[runnerd.RunState]int{}
		for _, job := range []string{"promote", "nightly", "orders", "orders-low"} {
			for _, run := range r.runs(job) {
				if run.NominalTime.Before(day) || !run.NominalTime.Before(end) {
					continue
				}
				if job == "promote" || job == "nightly" {
					if run.State != runnerd.StateSucceeded || run.StartedAt.Sub(run.NominalTime) > time.Minute {
						t.Errorf("high run %s at %s: %s, started %v (%s %s); want succeeded at its slot",
							job, run.NominalTime.Format("15:04"), run.State, run.StartedAt.Sub(run.NominalTime), run.Reason, run.Error)
					}
					continue
				}
				lower[run.State]++
				if run.State == runnerd.StateSucceeded {
					servedCalls += run.Calls
				}
			}
		}
		served := lower[runnerd.StateSucceeded]
		if served > 0 {
			for _, n := range lower {
				demand += n * servedCalls / served // what every lower run would have cost
			}
		}
		if demand < 2*limit {
			t.Fatalf("lower-priority demand %d calls; the test wants at least twice the allowance of %d", demand, limit)
		}
		if lower[runnerd.StateSucceeded] == 0 || lower[runnerd.StateMissed] == 0 {
			t.Errorf("lower runs by state %v; want some served and some missed on an over-subscribed day", lower)
		}
		// No rolling window over the cap, hour by hour, from the ledger.
		usage, err := r.e.db.HourlyUsage(context.Background(), day.Add(-24*time.Hour))
		if err != nil {
			t.Fatal(err)
		}
		byHour := map[time.Time]int{}
		for _, u := range usage {
			byHour[u.Hour] += u.Calls
		}
		for h := day; !h.After(end); h = h.Add(time.Hour) {
			sum := 0
			for k := h.Add(-23 * time.Hour); !k.After(h); k = k.Add(time.Hour) {
				sum += byHour[k]
			}
			if sum > limit {
				t.Errorf("the window of %s holds %d calls; cap %d", h.Format("15:04"), sum, limit)
			}
		}
		refused := 0
		for _, q := range sim.Requests() {
			if q.Status == 503 {
				refused++
			}
		}
		if refused != 0 {
			t.Errorf("the simulator refused %d requests (503); want 0", refused)
		}
		t.Logf("lower runs: %v; lower demand %d calls against an allowance of %d", lower, demand, limit)
		if dumpLog || t.Failed() {
			os.WriteFile(filepath.Join(os.TempDir(), "oversubscribed.log"), []byte(r.log.String()), 0o644)
		}
	})
}

func TestMain(m *testing.M) {
	if os.Getenv("RUNNERD_ENGINE_LOG") != "" {
		dumpLog = true
	}
	pgtest.Main(m)
}

var dumpLog bool

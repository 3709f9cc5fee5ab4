package main

// The daemon-level fault suite (issue 7): every HTTP fault atomsim can inject,
// against the daemon's own wiring — newDaemon's ledger, budget gate, 503
// classifier, call recorder, scheduler and kinds — with the simulator on
// 127.0.0.1; SQLite faults in the daemon's store; and the export's atomicity
// under kill -9. Each case checks the run's state and error, the simulator
// against the ledger, and that no runnerd goroutine is left behind.

import (
	"context"
	"database/sql"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// faultJobs is the configuration of the in-process fault daemon: an execute
// job whose ExecutionRequest is the unsafe call, and an AuditLog export whose
// QUERY is the safe one. Schedules are far away: runs are started by RunNow,
// as `runnerd run` does.
const faultJobs = `
[account]
id = "sim-account"
url = "%s"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"
%s

[budget]
daily_limit = 100000
rate = 50

[store]
path = "%s"

[[job]]
name = "exec"
kind = "execute"
schedule = "0 3 1 1 *"
process_id = "proc-orders"
atom_id = "atom-test"
wait = false
%s

[[job]]
name = "audit"
kind = "export"
schedule = "0 3 1 1 *"
object = "AuditLog"
first_window = "2h"
output = "%s/exports/{job}/{window_start}.jsonl"
%s
`

// faultRig is one simulator and one in-process daemon wired by newDaemon.
type faultRig struct {
	t   *testing.T
	sim *atomsim.Server
	srv *httptest.Server
	dir string
	d   *daemon
	hc  *http.Client // the fast client's, for CloseIdleConnections
}

type faultRigOpts struct {
	tls     bool
	caFile  bool   // write the TLS server's certificate as PEM and set account.ca_file
	jobKeys string // extra keys for both jobs (e.g. timeout)
	// fast replaces the daemon's client by one with the same gate, recorder,
	// URL and credentials but a short Timeout and quick retries (DESIGN's
	// defaults are a 60 s timeout and up to ~15 s of backoff): the daemon has
	// no configuration key for them. 0 keeps newDaemon's client as built.
	fast time.Duration
	// recorder, if set, wraps the daemon's call recorder in the fast client.
	recorder func(next atomapi.Recorder) atomapi.Recorder
}

func newFaultRig(t *testing.T, o faultRigOpts) *faultRig {
	t.Helper()
	r := &faultRig{t: t, dir: t.TempDir()}
	r.sim = atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, AuditLogs: 300, AuditDays: 1, ExecutionRecords: 20,
		Events: -1, ExecDuration: 100 * time.Millisecond, RecordDelay: 50 * time.Millisecond})
	if o.tls {
		r.srv = httptest.NewTLSServer(r.sim)
	} else {
		r.srv = httptest.NewServer(r.sim)
	}
	t.Cleanup(r.srv.Close)
	ca := ""
	if o.caFile {
		path := filepath.Join(r.dir, "ca.pem")
		b := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ca = fmt.Sprintf("ca_file = %q", path)
	}
	conf := fmt.Sprintf(faultJobs, r.srv.URL+"/api/rest/v1", ca, filepath.Join(r.dir, "runnerd.db"), o.jobKeys, r.dir, o.jobKeys)
	r.d = r.newDaemon(conf, r.fastClient(o.fast, o.recorder))
	return r
}

// faultEnv is the environment of the fault daemon: the password, and short
// reconciliation knobs.
func faultEnv() *env {
	return &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		switch k {
		case "RUNNERD_PASSWORD":
			return "sim-password"
		case envReconcileGrace:
			return "1500ms"
		case envReconcileSkew:
			return "2s"
		}
		return ""
	}}
}

func (r *faultRig) newDaemon(conf string, client func(*atomapi.Config)) *daemon {
	t := r.t
	t.Helper()
	path := filepath.Join(r.dir, "jobs.toml")
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	e := faultEnv()
	cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
	if err != nil {
		t.Fatalf("config.Load() = %v", err)
	}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := newDaemon(context.Background(), e, cfg, log, daemonOptions{client: client})
	if err != nil {
		t.Fatalf("newDaemon() = %v", err)
	}
	t.Cleanup(func() {
		if r.hc != nil {
			r.hc.CloseIdleConnections()
		}
		d.close()
	})
	return d
}

// fastClient returns the engine's client options with a short timeout and
// fast retries, and the engine's recorder wrapped by wrap; nil for timeout 0
// (the client as the engine builds it).
func (r *faultRig) fastClient(timeout time.Duration, wrap func(atomapi.Recorder) atomapi.Recorder) func(*atomapi.Config) {
	if timeout <= 0 {
		return nil
	}
	return func(c *atomapi.Config) {
		if wrap != nil {
			c.Recorder = wrap(c.Recorder)
		}
		r.hc = &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
		c.HTTPClient = r.hc
		c.Timeout = timeout
		c.Retry = atomapi.RetryPolicy{MaxAttempts: 4, Base: 10 * time.Millisecond, Max: 50 * time.Millisecond}
	}
}

// run runs job now, as `runnerd run JOB` does in-process.
func (r *faultRig) run(job string) runnerd.Run {
	r.t.Helper()
	run, err := r.d.RunNow(context.Background(), job, time.Time{}, time.Time{})
	if err != nil {
		r.t.Fatalf("RunNow(%q) = %v", job, err)
	}
	return run
}

// reconcile runs reconciliation passes until run id is no longer unknown,
// or the deadline (real time) passes; it returns the run as last read.
func (r *faultRig) reconcile(id int64, within time.Duration) runnerd.Run {
	r.t.Helper()
	rc := r.d.NewReconciler()
	deadline := time.Now().Add(within)
	for {
		rc.Pass(context.Background())
		run, err := r.d.DB().GetRun(context.Background(), id)
		if err != nil {
			r.t.Fatal(err)
		}
		if run.State != runnerd.StateUnknown || time.Now().After(deadline) {
			return run
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ledgerMatches: every request the simulator received has exactly one ledger
// row with its request id (0 requests without a row), and no row says it was
// answered when the simulator never saw it.
func (r *faultRig) ledgerMatches() {
	t := r.t
	t.Helper()
	calls, err := r.d.DB().ListCalls(context.Background(), store.CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]store.Call{}
	for _, c := range calls {
		rows[c.RequestID] = c
	}
	seen := map[string]int{}
	for _, q := range r.sim.Requests() {
		seen[q.RequestID]++
		if _, ok := rows[q.RequestID]; !ok {
			t.Errorf("request %s %s (id %q, fault %q) at the simulator has no ledger row", q.Method, q.Path, q.RequestID, q.Fault)
		}
		if seen[q.RequestID] > 1 {
			t.Errorf("request id %q reached the simulator %d times", q.RequestID, seen[q.RequestID])
		}
	}
	for id, c := range rows {
		if seen[id] == 0 && c.Status != 0 {
			t.Errorf("ledger row %q (%s) says HTTP %d, but the simulator never saw it", id, c.Operation, c.Status)
		}
	}
}

// runnerdGoroutines returns the goroutines started by runnerd code (or by
// database/sql and cron on its behalf), keyed by id, with their stacks. The
// simulator's handlers and net/http's connection goroutines are not counted.
func runnerdGoroutines() map[string]string {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	out := map[string]string{}
	for i, g := range strings.Split(string(buf), "\n\n") {
		if i == 0 {
			continue // this goroutine
		}
		_, created, ok := strings.Cut(g, "\ncreated by ")
		if !ok {
			continue
		}
		if strings.Contains(created, "atomsim") || strings.Contains(created, "testing.") {
			continue
		}
		if strings.HasPrefix(created, "runnerd/") || strings.HasPrefix(created, "main.") ||
			strings.HasPrefix(created, "database/sql") || strings.HasPrefix(created, "github.com/robfig/cron") {
			id, _, _ := strings.Cut(strings.TrimPrefix(g, "goroutine "), " ")
			out[id] = g
		}
	}
	return out
}

// noLeak fails the test if, once it has cleaned up, goroutines started by
// runnerd during the test are still alive (a settle loop of up to 3 s allows
// for those that are on their way out). Register it first: cleanups run last
// registered first, so it runs after the daemon is closed.
func noLeak(t *testing.T) {
	t.Helper()
	before := runnerdGoroutines()
	t.Cleanup(func() {
		var left []string
		for range 60 {
			left = left[:0]
			for id, g := range runnerdGoroutines() {
				if _, ok := before[id]; !ok {
					left = append(left, g)
				}
			}
			if len(left) == 0 {
				return
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Errorf("%d runnerd goroutines leaked:\n%s", len(left), strings.Join(left, "\n\n"))
	})
}

// requestsWith counts the simulator's requests whose path contains s.
func requestsWith(sim *atomsim.Server, s string) (n, faulted int) {
	for _, q := range sim.Requests() {
		if strings.Contains(q.Path, s) {
			n++
			if q.Fault != "" {
				faulted++
			}
		}
	}
	return n, faulted
}

// httpFault is one row of TestFaultHTTP.
type httpFault struct {
	name  string
	fault atomsim.Fault
	job   string // exec (unsafe ExecutionRequest) or audit (safe AuditLog QUERY)
	// priority of the jobs: "high" passes the 503 classifier's pause for
	// external usage (a lone 503 on an idle account reads as someone else
	// spending it), so the client's own retries show; "" is normal.
	priority string
	// timeout is the fast client's per-attempt timeout (default 400ms).
	timeout time.Duration
	// state is the run's state as RunNow returns it; errHas, if set, must be
	// in its error.
	state  runnerd.RunState
	errHas []string
	// reconciled, for an unknown run: the state reconciliation settles it in,
	// and how ("window" when the execution was found and claimed; "" when none
	// was found and on_unknown = skip decided).
	reconciled runnerd.RunState
	how        string
	// executions at the simulator when the case is over.
	executions int
}

// TestFaultHTTP injects each HTTP fault into the daemon's path. A safe call
// (the export's QUERY) is retried where the fault is transient and otherwise
// fails the run with a clear error; an unsafe ExecutionRequest whose answer
// is lost or unreadable makes the run unknown, and reconciliation then finds
// the execution (claimed: no second one is started) or, when the request
// never took effect, skips the run after the grace period.
func TestFaultHTTP(t *testing.T) {
	const q, x = "/AuditLog/query", "/ExecutionRequest"
	cases := []httpFault{
		{name: "503-storm/safe-high-retried", job: "audit", priority: "high", fault: atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 2, PathContains: q},
			state: runnerd.StateSucceeded},
		{name: "503-storm/unsafe-high-retried", job: "exec", priority: "high", fault: atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 3, PathContains: x},
			state: runnerd.StateSucceeded, executions: 1},
		{name: "503-storm/unsafe-high-exhausted", job: "exec", priority: "high", fault: atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 50, PathContains: x},
			state: runnerd.StateFailed, errHas: []string{"HTTP 503", "after 4 attempts"}},
		{name: "503-storm/unsafe-normal-deferred", job: "exec", fault: atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 50, PathContains: x},
			state: runnerd.StateDeferred, errHas: []string{"HTTP 503", "paused for external usage"}},
		// Slow headers: the answer comes 1 s after the request, beyond the
		// 400 ms timeout; the simulator then handles the request all the same
		// (the client has gone), as a slow platform would.
		{name: "slow-headers/safe", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultLatency, Latency: time.Second, Count: 50, PathContains: q},
			state: runnerd.StateFailed, errHas: []string{"transport error", "deadline exceeded", "after 4 attempts"}},
		{name: "slow-headers/safe-once-retried", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultLatency, Latency: time.Second, PathContains: q},
			state: runnerd.StateSucceeded},
		{name: "slow-headers/unsafe-taken-late", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultLatency, Latency: time.Second, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"may have been sent", "deadline exceeded"}, reconciled: runnerd.StateSucceeded, how: "window", executions: 1},
		{name: "trickle/safe", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultTrickle, Latency: 20 * time.Millisecond, PathContains: q},
			state: runnerd.StateFailed, errHas: []string{"answer unreadable", "deadline exceeded"}},
		{name: "trickle/unsafe", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultTrickle, Latency: 60 * time.Millisecond, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"answer unreadable"}, reconciled: runnerd.StateSucceeded, how: "window", executions: 1},
		{name: "reset/safe-retried", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultReset, PathContains: q},
			state: runnerd.StateSucceeded},
		{name: "reset/unsafe-after-handling", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultReset, AfterHandling: true, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"may have been sent"}, reconciled: runnerd.StateSucceeded, how: "window", executions: 1},
		{name: "reset/unsafe-before-handling", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultReset, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"may have been sent"}, reconciled: runnerd.StateSkipped},
		{name: "truncated-json/safe", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultTruncatedJSON, PathContains: q},
			state: runnerd.StateFailed, errHas: []string{"answer unreadable"}},
		{name: "truncated-json/unsafe", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultTruncatedJSON, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"answer unreadable"}, reconciled: runnerd.StateSucceeded, how: "window", executions: 1},
		{name: "malformed-json/safe", job: "audit", fault: atomsim.Fault{Kind: atomsim.FaultMalformedJSON, PathContains: q},
			state: runnerd.StateFailed, errHas: []string{"answer unreadable", "invalid character"}},
		{name: "malformed-json/unsafe", job: "exec", fault: atomsim.Fault{Kind: atomsim.FaultMalformedJSON, AfterHandling: true, PathContains: x},
			state: runnerd.StateUnknown, errHas: []string{"answer unreadable"}, reconciled: runnerd.StateSucceeded, how: "window", executions: 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			noLeak(t)
			timeout := c.timeout
			if timeout == 0 {
				timeout = 400 * time.Millisecond
			}
			keys := ""
			if c.priority != "" {
				keys = fmt.Sprintf("priority = %q", c.priority)
			}
			r := newFaultRig(t, faultRigOpts{fast: timeout, jobKeys: keys})
			r.sim.Inject(c.fault)
			run := r.run(c.job)
			if run.State != c.state {
				t.Fatalf("run %s = %s (error %q, reason %q); want %s", c.job, run.State, run.Error, run.Reason, c.state)
			}
			for _, s := range c.errHas {
				if !strings.Contains(run.Error, s) {
					t.Errorf("run error = %q; want it to contain %q", run.Error, s)
				}
			}
			if c.state != runnerd.StateSucceeded && run.Error == "" {
				t.Errorf("run %s has no error; want a clear one", run.State)
			}
			if _, faulted := requestsWith(r.sim, c.fault.PathContains); faulted == 0 {
				t.Errorf("the fault %s was never applied", c.fault.Kind)
			}
			if c.state == runnerd.StateUnknown {
				settled := r.reconcile(run.ID, 15*time.Second)
				if settled.State != c.reconciled {
					t.Fatalf("after reconciliation run = %s (reason %q, error %q); want %s", settled.State, settled.Reason, settled.Error, c.reconciled)
				}
				if c.how != "" && !strings.Contains(settled.Detail, fmt.Sprintf(`"reconciled":%q`, c.how)) {
					t.Errorf("settled run detail = %s; want reconciled %q", settled.Detail, c.how)
				}
				if c.reconciled == runnerd.StateSkipped && !strings.Contains(settled.Reason, "on_unknown = skip") {
					t.Errorf("skipped run reason = %q; want it to say on_unknown = skip", settled.Reason)
				}
			}
			if got := len(r.sim.Executions()); got != c.executions {
				t.Errorf("executions at the simulator = %d; want %d", got, c.executions)
			}
			r.ledgerMatches()
		})
	}
}

// TestFaultHugeBody: a 1 GiB answer to the export's QUERY is read up to the
// client's 64 MiB limit and no further; the run fails with a clear error, and
// the memory allocated while reading stays far below the body's size.
func TestFaultHugeBody(t *testing.T) {
	if testing.Short() {
		t.Skip("-short: reads 64 MiB")
	}
	noLeak(t)
	r := newFaultRig(t, faultRigOpts{fast: 30 * time.Second})
	r.sim.Inject(atomsim.Fault{Kind: atomsim.FaultHugeBody, PathContains: "/AuditLog/query"}) // 1 GiB
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	run := r.run("audit")
	runtime.ReadMemStats(&after)
	if run.State != runnerd.StateFailed || !strings.Contains(run.Error, "answer unreadable") || !strings.Contains(run.Error, "body exceeds the size limit") {
		t.Fatalf("run = %s (%q); want failed: answer unreadable: body exceeds the size limit", run.State, run.Error)
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("1 GiB body: allocated %d MiB while reading; heap in use after %d MiB", alloc>>20, after.HeapInuse>>20)
	if alloc > 512<<20 {
		t.Errorf("allocated %d MiB reading a 1 GiB body; want the read bounded (64 MiB limit)", alloc>>20)
	}
	calls, _ := r.d.DB().ListCalls(context.Background(), store.CallFilter{Status: -1})
	if len(calls) != 1 || calls[0].Status != 200 || calls[0].Bytes > 64<<20 {
		t.Errorf("ledger = %+v; want one row, HTTP 200, at most 64 MiB read", calls)
	}
	r.ledgerMatches()
}

// TestFaultRedirect: a 302 to another host is never followed (the other host
// sees nothing, so the credentials never travel), and the run fails with an
// error naming the redirect.
func TestFaultRedirect(t *testing.T) {
	noLeak(t)
	var elsewhere atomic.Int64
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		elsewhere.Add(1)
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(other.Close)
	for _, tc := range []struct{ name, job, path string }{
		{"safe", "audit", "/AuditLog/query"},
		{"unsafe", "exec", "/ExecutionRequest"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			noLeak(t)
			r := newFaultRig(t, faultRigOpts{fast: 400 * time.Millisecond})
			r.sim.Inject(atomsim.Fault{Kind: atomsim.FaultRedirect, Location: other.URL + "/api/rest/v1/sim-account" + tc.path, PathContains: tc.path})
			run := r.run(tc.job)
			if run.State == runnerd.StateSucceeded || !strings.Contains(run.Error, "HTTP 302") ||
				!strings.Contains(run.Error, "redirect to "+other.URL+" not followed") {
				t.Errorf("run = %s (%q); want not succeeded, HTTP 302: redirect to %s not followed", run.State, run.Error, other.URL)
			}
			if n := elsewhere.Load(); n != 0 {
				t.Errorf("the other host got %d requests; want 0", n)
			}
			if n := len(r.sim.Executions()); n != 0 {
				t.Errorf("executions = %d; want 0", n)
			}
			r.ledgerMatches()
		})
	}
}

// TestFaultTLS: the simulator behind TLS with a certificate no system root
// vouches for. Without account.ca_file the daemon's own client (as newDaemon
// builds it) fails closed with the x509 error and nothing reaches the
// simulator; with ca_file naming the server's certificate in PEM it works.
// There is no option to skip verification: the configuration refuses one.
func TestFaultTLS(t *testing.T) {
	t.Run("unknown-CA", func(t *testing.T) {
		noLeak(t)
		// timeout = 1s bounds the run: TLS failures count as "not sent", and
		// the client retries them with its default backoff (seconds).
		r := newFaultRig(t, faultRigOpts{tls: true, jobKeys: `timeout = "1s"`})
		for _, job := range []string{"audit", "exec"} {
			run := r.run(job)
			if run.State != runnerd.StateFailed || !strings.Contains(run.Error, "x509: certificate signed by unknown authority") ||
				!strings.Contains(run.Error, "not sent") {
				t.Errorf("run %s = %s (%q); want failed with the x509 error, not sent", job, run.State, run.Error)
			}
		}
		if n := len(r.sim.Requests()); n != 0 {
			t.Errorf("the simulator received %d requests; want 0 (the handshake fails first)", n)
		}
	})
	t.Run("ca_file", func(t *testing.T) {
		noLeak(t)
		r := newFaultRig(t, faultRigOpts{tls: true, caFile: true})
		for _, job := range []string{"audit", "exec"} {
			if run := r.run(job); run.State != runnerd.StateSucceeded {
				t.Errorf("run %s with ca_file = %s (%q); want succeeded", job, run.State, run.Error)
			}
		}
		if len(r.sim.Executions()) != 1 {
			t.Errorf("executions = %d; want 1", len(r.sim.Executions()))
		}
		r.ledgerMatches()
	})
	t.Run("no-skip-verify-option", func(t *testing.T) {
		for _, key := range []string{"insecure_skip_verify = true", "skip_verify = true", "insecure = true", "tls_skip_verify = true"} {
			dir := t.TempDir()
			path := filepath.Join(dir, "jobs.toml")
			conf := fmt.Sprintf(faultJobs, "https://127.0.0.1:1/api/rest/v1", key, filepath.Join(dir, "runnerd.db"), "", dir, "")
			if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := config.Load(path, config.LoadOptions{Getenv: faultEnv().getenv})
			if err == nil || !strings.Contains(err.Error(), "unknown key") {
				t.Errorf("config with %q: Load() = %v; want an unknown-key error", key, err)
			}
		}
	})
}

// beginHook runs around, once, around the daemon's Begin of the ledger row
// of the armed operation: the fault is in place exactly while that row is
// written, and gone for the run's own bookkeeping before and after.
type beginHook struct {
	next   atomapi.Recorder
	op     string
	armed  atomic.Bool
	around func(ctx context.Context, begin func() error) error
	err    error // what Begin returned under the fault
}

func (h *beginHook) Begin(ctx context.Context, c *atomapi.Call) error {
	if c.Operation != h.op || !h.armed.CompareAndSwap(true, false) {
		return h.next.Begin(ctx, c)
	}
	h.err = h.around(ctx, func() error { return h.next.Begin(ctx, c) })
	return h.err
}

func (h *beginHook) End(ctx context.Context, c *atomapi.Call, r atomapi.Result) {
	h.next.End(ctx, c, r)
}

func newBeginHook(op string, around func(ctx context.Context, begin func() error) error) (*beginHook, func(atomapi.Recorder) atomapi.Recorder) {
	h := &beginHook{op: op, around: around}
	return h, func(next atomapi.Recorder) atomapi.Recorder { h.next = next; return h }
}

// TestFaultSQLiteLocked: another connection holds the ledger's write lock
// (BEGIN IMMEDIATE) longer than the busy timeout right when the unsafe call's
// ledger row is begun. The row cannot be written, so the request is not sent
// (the simulator sees nothing), and the run fails with an error saying so;
// once the lock is released the next run works.
func TestFaultSQLiteLocked(t *testing.T) {
	noLeak(t)
	var path string
	var held time.Duration
	h, wrap := newBeginHook("ExecutionRequest.create", func(ctx context.Context, begin func() error) error {
		other, err := sql.Open("sqlite3", path+"?_busy_timeout=1")
		if err != nil {
			return err
		}
		defer other.Close()
		conn, err := other.Conn(ctx)
		if err != nil {
			return err
		}
		defer conn.Close()
		if _, err := conn.ExecContext(ctx, "BEGIN IMMEDIATE"); err != nil {
			return fmt.Errorf("test: take the write lock: %w", err)
		}
		start := time.Now()
		err = begin()
		held = time.Since(start)
		conn.ExecContext(ctx, "ROLLBACK")
		return err
	})
	r := newFaultRig(t, faultRigOpts{fast: 2 * time.Second, recorder: wrap})
	path = r.d.DB().Path()
	lr := h
	lr.armed.Store(true)
	run := r.run("exec")
	t.Logf("Begin under the lock returned after %s: %v", held.Round(time.Millisecond), lr.err)
	if lr.err == nil || !strings.Contains(lr.err.Error(), "locked") {
		t.Fatalf("Begin under another connection's write lock = %v; want database is locked", lr.err)
	}
	if n := len(r.sim.Requests()); n != 0 {
		t.Errorf("the simulator received %d requests; want 0 (no ledger row, no request)", n)
	}
	if run.State != runnerd.StateFailed || !strings.Contains(run.Error, "record call") || !strings.Contains(run.Error, "locked") {
		t.Errorf("run = %s (%q); want failed: record call: … database is locked", run.State, run.Error)
	}
	if again := r.run("exec"); again.State != runnerd.StateSucceeded {
		t.Errorf("run after the lock was released = %s (%q); want succeeded", again.State, again.Error)
	}
	if n := len(r.sim.Executions()); n != 1 {
		t.Errorf("executions = %d; want 1", n)
	}
	r.ledgerMatches()
}

// limitFileSize caps the size of every file this process writes
// (RLIMIT_FSIZE) at the current size of the ledger's largest file, so that
// the ledger cannot grow: the kernel refuses the write (EFBIG; Go ignores
// SIGXFSZ) as it would refuse one on a full disk. It returns the undo.
func limitFileSize(t *testing.T, dbPath string) (undo func()) {
	t.Helper()
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
		t.Fatal(err)
	}
	var limit int64
	for _, p := range []string{dbPath, dbPath + "-wal"} {
		if fi, err := os.Stat(p); err == nil {
			limit = max(limit, fi.Size())
		}
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &syscall.Rlimit{Cur: uint64(limit), Max: old.Max}); err != nil {
		t.Fatal(err)
	}
	return func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &old); err != nil {
			t.Fatal(err)
		}
	}
}

// TestFaultSQLiteFull: the ledger cannot grow (its files are capped at their
// current size, as on a full disk). While the run's own record can be
// written and the unsafe call's ledger row cannot, the request is not sent
// and the run fails saying why; while nothing can be written, the run is not
// even created and RunNow says why. When space returns the next run works and
// integrity_check is ok.
//
// The process-wide file size limit stands in for a full disk because the
// daemon's store has no hook for PRAGMA max_page_count (a per-connection
// setting; internal/store's TestDiskFull uses it on the store's own writer).
func TestFaultSQLiteFull(t *testing.T) {
	noLeak(t)
	var dbPath string
	h, wrap := newBeginHook("ExecutionRequest.create", func(ctx context.Context, begin func() error) error {
		undo := limitFileSize(t, dbPath)
		defer undo()
		return begin()
	})
	r := newFaultRig(t, faultRigOpts{fast: 2 * time.Second, recorder: wrap})
	dbPath = r.d.DB().Path()
	if run := r.run("exec"); run.State != runnerd.StateSucceeded { // the ledger has rows and a WAL
		t.Fatalf("first run = %s (%q)", run.State, run.Error)
	}

	h.armed.Store(true)
	run := r.run("exec")
	t.Logf("Begin on a full ledger: %v", h.err)
	if h.err == nil {
		t.Fatal("Begin on a ledger that cannot grow succeeded; want an error")
	}
	if run.State != runnerd.StateFailed || !strings.Contains(run.Error, "not sent") || !strings.Contains(run.Error, "record call") {
		t.Errorf("run = %s (%q); want failed: not sent: record call: …", run.State, run.Error)
	}

	undo := limitFileSize(t, dbPath)
	_, err := r.d.RunNow(context.Background(), "exec", time.Time{}, time.Time{})
	undo()
	t.Logf("RunNow on a full ledger: %v", err)
	if err == nil {
		t.Error("RunNow on a ledger that cannot grow = nil error; want the store's error")
	}

	if n := len(r.sim.Executions()); n != 1 {
		t.Errorf("executions = %d; want 1 (only the first run's)", n)
	}
	if again := r.run("exec"); again.State != runnerd.StateSucceeded {
		t.Errorf("run after space returned = %s (%q); want succeeded", again.State, again.Error)
	}
	if res, err := r.d.DB().IntegrityCheck(context.Background()); err != nil || res != "ok" {
		t.Errorf("IntegrityCheck() = %q, %v; want ok", res, err)
	}
	r.ledgerMatches()
}

// exportOnly is the configuration of TestCrashExportAtomic: one AuditLog
// export of a 2-hour first window (several pages), run by `runnerd run`.
const exportOnly = `
[account]
id = "sim-account"
url = "%s"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 100000
rate = 20

[store]
path = "runnerd.db"

[[job]]
name = "audit"
kind = "export"
schedule = "0 3 1 1 *"
object = "AuditLog"
first_window = "2h"
output = "exports/{job}/{window_start}.jsonl"
`

// runChild runs `runnerd ARGS...` in the rig's directory and waits for it.
func (r *crashRig) runChild(extraEnv []string, args ...string) (string, error) {
	r.t.Helper()
	cmd := exec.Command("runnerd", args...)
	cmd.Dir = r.dir
	cmd.Env = append(append([]string(nil), r.env...), extraEnv...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// exportFiles lists the final and the hidden temporary files under exports/.
func exportFiles(t *testing.T, dir string) (final, temp []string) {
	t.Helper()
	filepath.WalkDir(filepath.Join(dir, "exports"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.HasPrefix(d.Name(), ".") && strings.HasSuffix(d.Name(), ".tmp") {
			temp = append(temp, path)
		} else {
			final = append(final, path)
		}
		return nil
	})
	return final, temp
}

// TestCrashExportAtomic: runnerd is killed (SIGKILL, at the mid-export
// failpoint, after the second page of the window was written to the
// temporary file). Left behind: no final file, the watermark not advanced,
// the ledger intact, and a hidden temporary file. The next run removes that
// file, exports the window into one final file holding each record of the
// window exactly once, and advances the watermark to the window's end.
func TestCrashExportAtomic(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r := newCrashRig(t, atomsim.Options{Rate: 40, DailyLimit: -1, AuditLogs: 3000, AuditDays: 1, ExecutionRecords: -1, Events: -1})
	if err := os.WriteFile(r.config, []byte(fmt.Sprintf(exportOnly, r.url)), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := r.runChild([]string{envFailpoint + "=" + atomapi.FailMidExport + ":2"}, "run", "-config", r.config, "audit")
	var ee *exec.ExitError
	if !errorsAs(err, &ee) || ee.ExitCode() != -1 || !strings.Contains(out, "failpoint mid-export: kill -9") {
		t.Fatalf("runnerd run with the mid-export failpoint: %v\n%s\nwant killed by SIGKILL at the failpoint", err, out)
	}
	r.integrity(0)
	final, temp := exportFiles(t, r.dir)
	if len(final) != 0 || len(temp) != 1 {
		t.Fatalf("after kill -9 mid-export: final files %v, temporary files %v; want none final, one temporary", final, temp)
	}
	db := r.openDB()
	st, err := db.JobState(context.Background(), "audit")
	db.Close()
	if err != nil || !st.Watermark.IsZero() {
		t.Fatalf("watermark after kill -9 mid-export = %v, %v; want not advanced (zero)", st.Watermark, err)
	}

	out, err = r.runChild(nil, "run", "-config", r.config, "audit")
	if err != nil {
		t.Fatalf("runnerd run after the kill: %v\n%s", err, out)
	}
	final, temp2 := exportFiles(t, r.dir)
	if len(final) != 1 || len(temp2) != 0 {
		t.Fatalf("after the next run: final files %v, temporary files %v; want one final, none temporary", final, temp2)
	}
	db = r.openDB()
	defer db.Close()
	st, _ = db.JobState(context.Background(), "audit")
	runs, _ := db.ListRuns(context.Background(), store.RunFilter{Job: "audit", Limit: 1})
	if len(runs) != 1 || runs[0].State != runnerd.StateSucceeded || !strings.Contains(runs[0].Detail, filepath.Base(temp[0])) {
		t.Errorf("latest run = %+v; want succeeded, its detail naming the stale %s it removed", runs, filepath.Base(temp[0]))
	}
	from := st.Watermark.Add(-2 * time.Hour)
	b, err := os.ReadFile(final[0])
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		var rec struct {
			DocumentID string `json:"documentId"`
		}
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: %v in %q", final[0], err, line)
		}
		seen[rec.DocumentID]++
	}
	want := 0
	for _, a := range r.sim.Data().AuditLogs {
		at, err := atomapi.ParseTime(a.Date)
		if err != nil || at.Before(from) || !at.Before(st.Watermark) {
			if seen[a.DocumentID] != 0 {
				t.Errorf("record %s (%s) outside the window %s..%s is in the file", a.DocumentID, a.Date, from, st.Watermark)
			}
			continue
		}
		want++
		if seen[a.DocumentID] != 1 {
			t.Errorf("record %s (%s) exported %d times; want once", a.DocumentID, a.Date, seen[a.DocumentID])
		}
	}
	if want < 2*atomapi.PageSize/2 || len(seen) != want {
		t.Errorf("window %s..%s: %d records in the file, %d at the simulator; want equal, and more than one page", from, st.Watermark, len(seen), want)
	}
	t.Logf("kill -9 after page 2 left %s; the next run removed it and exported %d records of %s..%s once each",
		filepath.Base(temp[0]), want, from.Format(time.RFC3339), st.Watermark.Format(time.RFC3339))
}

package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/pgtest"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

var failoverRounds = flag.Int("failover.rounds", 3, "kill -9 rounds of TestFailover (RELIABILITY.md's figures: 50)")

// failoverConfig is one of the pair: %[1]s the simulator, %[2]s the ledger,
// %[3]s the instance, %[4]s its directory.
const failoverConfig = `
[account]
id = "sim-account"
url = %[1]q
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 100000
reserve = 0
rate = 40

[store]
path = "%[4]s/runnerd.db"
url = %[2]q
instance = %[3]q
lease = "2s"

[[job]]
name = "promote"
kind = "deploy"
priority = "high"
schedule = "0 3 1 1 *"
catch_up = "none"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
on_unknown = "refire"
`

// newSharedRig is a crash rig whose runnerd share a PostgreSQL ledger of
// their own server: the simulator on 127.0.0.1 (simOpts), the server, the
// ledger's URL; env is added to every runnerd's environment. The runnerd's
// logs are shown when the test fails.
func newSharedRig(t *testing.T, simOpts atomsim.Options, env ...string) (*crashRig, *pgtest.Server, string) {
	t.Helper()
	if _, err := exec.LookPath("runnerd"); err != nil {
		t.Skip("runnerd is not on PATH (run through go test, which sets it up in TestMain)")
	}
	pg := pgtest.Start(t)
	ledger := pg.NewDatabase(t)
	r := &crashRig{t: t, sim: atomsim.New(simOpts), dir: t.TempDir()}
	srv := httptest.NewServer(r.sim)
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/api/rest/v1"
	r.env = append(append(os.Environ(), "RUNNERD_PASSWORD=sim-password"), env...)
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			logs := r.logs.String()
			if len(logs) > 30000 {
				logs = "…" + logs[len(logs)-30000:]
			}
			t.Logf("runnerd logs (tail):\n%s", logs)
		}
	})
	return r, pg, ledger
}

// TestFailover: two runnerd share a PostgreSQL ledger, one holding the lease
// of a high-priority deploy job. It is killed (SIGKILL, at the failpoint
// after the deploy request was written, or after its answer came: the
// ledger has no answer) in the middle of the deploy; the other takes the job over
// within the lease time and reconciles the run by lookup: it finds the
// deployment and claims it, or (the request died with the process) finds
// none and deploys (on_unknown = refire). Either way the platform sees
// exactly one deployment and the run succeeds, and every request
// the simulator received has its ledger row. Repeated -failover.rounds times,
// the roles swapping; the killed one comes back as the standby.
func TestFailover(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r, _, ledger := newSharedRig(t, atomsim.Options{Rate: 40, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: -1, Events: -1},
		"RUNNERD_RECONCILE_GRACE=1s", "RUNNERD_RECONCILE_EVERY=200ms", "RUNNERD_RECONCILE_SKEW=1s")
	cfgs := map[string]string{}
	for _, name := range []string{"a", "b"} {
		d := filepath.Join(r.dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		cfgs[name] = filepath.Join(d, "jobs.toml")
		if err := os.WriteFile(cfgs[name], fmt.Appendf(nil, failoverConfig, r.url, ledger, name, d), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	db, err := store.Open(context.Background(), ledger, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holder := func() string {
		ls, err := db.Leases(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range ls {
			if l.Job == "promote" && l.ExpiresAt.After(time.Now()) {
				return l.Instance
			}
		}
		return ""
	}
	waitFor := func(what string, d time.Duration, ok func() bool) time.Duration {
		t.Helper()
		start := time.Now()
		for !ok() {
			if time.Since(start) > d {
				t.Fatalf("%s: not within %s", what, d)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(start)
	}
	// Each process is armed by a file of its own: it dies at the failpoint
	// only in the round it owns the job.
	arm := func(name string) string { return filepath.Join(r.dir, name, "arm") }
	serve := func(name string) *child {
		return r.startConfig(cfgs[name], envFailpoint+"=*@"+arm(name))
	}

	kids := map[string]*child{}
	// The owner starts first and takes the lease; the standby after it.
	kids["a"] = serve("a")
	waitFor("a holds the lease", 30*time.Second, func() bool { return holder() == "a" })
	kids["b"] = serve("b")
	defer func() {
		for _, c := range kids {
			c.kill9()
		}
	}()
	var takeovers []time.Duration
	deploysBefore, claimed, refired := 0, 0, 0
	for round := range *failoverRounds {
		owner := holder()
		standby := map[string]string{"a": "b", "b": "a"}[owner]
		r.newSourcePackage(round)
		// Killed after the request was written (the platform may not have
		// it), or after its answer (it has it; the ledger does not).
		fp := []string{atomapi.FailAfterWrite, atomapi.FailAfterAnswer}[round%2]
		if err := os.WriteFile(arm(owner), []byte(fp), 0o600); err != nil {
			t.Fatal(err)
		}
		// The deploy, run by hand on the owner (the control socket): the
		// owner dies at the failpoint, mid-deploy.
		run := exec.Command("runnerd", "run", "-config", cfgs[owner], "promote")
		run.Env = r.env
		run.Start()
		if !kids[owner].waitOrKill(30 * time.Second) {
			t.Fatalf("round %d: %s did not die at the failpoint", round, owner)
		}
		run.Wait()
		os.Remove(arm(owner))
		took := waitFor(fmt.Sprintf("round %d: %s takes the job", round, standby), 30*time.Second,
			func() bool { return holder() == standby })
		takeovers = append(takeovers, took)
		// The run is reconciled: the deployment found, not made again.
		waitFor(fmt.Sprintf("round %d: the run is reconciled", round), 60*time.Second, func() bool {
			runs, err := db.ListRuns(context.Background(), store.RunFilter{Job: "promote", Limit: 1})
			if err != nil || len(runs) != 1 || runs[0].State != "succeeded" {
				return false
			}
			if runs[0].Attempt == 0 {
				claimed++ // the lookup found the deployment the dead owner made
			} else {
				refired++ // the request died with the owner: deployed once by the new one
			}
			return true
		})
		deploys := 0
		for _, d := range r.sim.Deploys() {
			if !d.Duplicate && !strings.HasPrefix(d.RequestID, "test-") {
				deploys++
			}
		}
		if deploys-deploysBefore != 1 {
			t.Fatalf("round %d: %d deployments by runnerd; want exactly 1", round, deploys-deploysBefore)
		}
		deploysBefore = deploys
		// The killed one comes back as the standby, armed for its turn.
		kids[owner] = serve(owner)
	}
	// Every request runnerd sent has its ledger row.
	calls, err := db.ListCalls(context.Background(), store.CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]bool{}
	for _, c := range calls {
		rows[c.RequestID] = true
	}
	missing := 0
	for _, q := range r.sim.Requests() {
		if q.RequestID != "" && !strings.HasPrefix(q.RequestID, "test-") && !rows[q.RequestID] {
			missing++
		}
	}
	sort.Slice(takeovers, func(i, j int) bool { return takeovers[i] < takeovers[j] })
	t.Logf("failover: %d rounds, lease 2s: takeover after the kill min %s, median %s, max %s; runs reconciled by finding the deployment %d, refired %d; duplicate deployments 0; requests without a ledger row %d",
		len(takeovers), takeovers[0].Round(time.Millisecond), takeovers[len(takeovers)/2].Round(time.Millisecond),
		takeovers[len(takeovers)-1].Round(time.Millisecond), claimed, refired, missing)
	if missing != 0 {
		t.Errorf("%d requests at the simulator have no ledger row", missing)
	}
	// runnerd status shows both instances, who holds the job, and the
	// share of the window each spent.
	out, err := exec.Command("runnerd", "status", "-json", "-config", cfgs[holder()]).Output()
	var st report.Status
	if jerr := json.Unmarshal(out, &st); jerr != nil {
		t.Fatalf("status -json: %v, %v\n%s", err, jerr, out)
	}
	if len(st.Instances) != 2 || len(st.Leases) != 1 || st.Leases[0].Job != "promote" || st.Leases[0].Instance != holder() ||
		!strings.HasPrefix(st.DB, "postgres://runnerd@127.0.0.1:") {
		t.Errorf("status -json: db %s, instances %+v, leases %+v; want a and b, and promote held by %s", st.DB, st.Instances, st.Leases, holder())
	}
	share := 0.0
	for _, in := range st.Instances {
		share += in.Share
	}
	if share < 0.99 || share > 1.01 {
		t.Errorf("the instances' shares add up to %.2f; want 1", share)
	}
	if worst := takeovers[len(takeovers)-1]; worst > 2*time.Second+time.Second {
		t.Errorf("a takeover took %s; want within the lease (2s) and a heartbeat", worst)
	}
}

// TestLedgerLossFailsClosed: while the shared ledger does not answer, a
// runnerd starts no new call (nothing can be recorded before it is sent)
// and says so; once the database is back, it goes on.
func TestLedgerLossFailsClosed(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	r, pg, ledger := newSharedRig(t, atomsim.Options{Rate: 40, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: -1, Events: -1,
		ExecDuration: 200 * time.Millisecond, RecordDelay: 50 * time.Millisecond})
	cfg := filepath.Join(r.dir, "jobs.toml")
	conf := fmt.Sprintf(failoverConfig, r.url, ledger, "a", r.dir)
	conf = conf[:strings.Index(conf, "[[job]]")] + `[[job]]
name = "often"
kind = "execute"
schedule = "@every 1s"
overlap = "skip"
process_id = "proc-orders"
atom_id = "atom-test"
`
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	c := r.startConfig(cfg)
	defer c.kill9()
	requests := func() int { return len(r.sim.Requests()) }
	deadline := time.Now().Add(30 * time.Second)
	for requests() < 5 {
		if time.Now().After(deadline) {
			t.Fatal("runnerd made no calls")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := pg.StopKeep(); err != nil {
		t.Fatal(err)
	}
	// What was in flight may finish; after that nothing new goes.
	time.Sleep(1500 * time.Millisecond)
	during := requests()
	time.Sleep(4 * time.Second)
	if n := requests() - during; n != 0 {
		t.Errorf("%d requests sent while the ledger did not answer; want none", n)
	}
	r.mu.Lock()
	logs := r.logs.String()
	r.mu.Unlock()
	if !strings.Contains(logs, "no new call is started until it does") {
		t.Errorf("the daemon did not say that the ledger is gone")
	}
	select {
	case <-c.done:
		t.Fatalf("runnerd exited while the ledger was away: %v", c.err)
	default:
	}
	if err := pg.StartAgain(); err != nil {
		t.Fatal(err)
	}
	back := requests()
	deadline = time.Now().Add(30 * time.Second)
	for requests() < back+3 {
		if time.Now().After(deadline) {
			t.Fatal("runnerd did not resume its calls after the ledger came back")
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.mu.Lock()
	logs = r.logs.String()
	r.mu.Unlock()
	if !strings.Contains(logs, "the shared ledger answers again") {
		t.Errorf("the daemon did not say that the ledger is back")
	}
	c.stop(t)
}

// TestInstanceNameInUse: a second runnerd started under the name of one
// that runs (its own directory, the same [store] instance) is refused with
// a message naming the other, and does not take its jobs; after a clean
// stop of the first the name is free.
func TestInstanceNameInUse(t *testing.T) {
	r, _, ledger := newSharedRig(t, atomsim.Options{Rate: 40, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	var cfgs []string
	for _, d := range []string{"one", "two"} {
		dir := filepath.Join(r.dir, d)
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(dir, "jobs.toml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, failoverConfig, r.url, ledger, "same", dir), 0o600); err != nil {
			t.Fatal(err)
		}
		cfgs = append(cfgs, cfg)
	}
	first := r.startConfig(cfgs[0])
	defer first.kill9()
	waitLedger(t, ledger, "the first runnerd takes the lease", func(db *store.DB) bool {
		ls, _ := db.Leases(context.Background())
		return len(ls) == 1
	})
	cmd := exec.Command("runnerd", "serve", "-config", cfgs[1])
	cmd.Dir, cmd.Env = filepath.Dir(cfgs[1]), r.env
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), `instance name "same" is in use by pid`) {
		t.Fatalf("a second runnerd under the same name: %v\n%s", err, out)
	}
	first.stop(t)
	cmd = exec.Command("runnerd", "run", "-config", cfgs[1], "promote")
	cmd.Dir, cmd.Env = filepath.Dir(cfgs[1]), r.env
	r.newSourcePackage(0)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("after the first stopped, its name is free: %v\n%s", err, out)
	}
}

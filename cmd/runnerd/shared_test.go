package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/pgtest"
	"runnerd/internal/store"
)

// sharedInstance is the configuration of one runnerd on a shared ledger:
// %[1]s the simulator, %[2]d the allowance, %[3]s the ledger's URL, %[4]s the
// instance's name, %[5]s its directory.
const sharedInstance = `
[account]
id = "sim-account"
url = %[1]q
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = %[2]d
reserve = 0
rate = 5

[store]
path = "%[5]s/runnerd.db"
url = %[3]q
instance = %[4]q

[[job]]
name = "audit-%[4]s"
kind = "export"
schedule = "0 3 1 1 *"
catch_up = "none"
object = "AuditLog"
first_window = "768h"
output = "%[5]s/exports/{window_start}.jsonl"
`

// sharedRun runs, at once, one `runnerd run` per instance, each exporting
// the simulator's audit log on the one PostgreSQL ledger, and returns the
// simulator's requests and each process's exit error and output.
func sharedRun(t *testing.T, instances, limit int) ([]atomsim.Request, []error, []string) {
	t.Helper()
	if _, err := exec.LookPath("runnerd"); err != nil {
		t.Skip("runnerd is not on PATH (run through go test, which sets it up in TestMain)")
	}
	pg := pgtest.Start(t)
	ledger := pg.NewDatabase(t)
	sim := atomsim.New(atomsim.Options{Rate: 5, DailyLimit: limit, AuditLogs: 1500, AuditDays: 30,
		ExecutionRecords: -1, Events: -1})
	srv := httptest.NewServer(sim) // 127.0.0.1
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	cmds := make([]*exec.Cmd, instances)
	outs := make([]*bytes.Buffer, instances)
	for i := range cmds {
		name := "i" + strconv.Itoa(i+1)
		d := filepath.Join(dir, name)
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
		cfg := filepath.Join(d, "jobs.toml")
		if err := os.WriteFile(cfg, fmt.Appendf(nil, sharedInstance, srv.URL+"/api/rest/v1", limit, ledger, name, d), 0o600); err != nil {
			t.Fatal(err)
		}
		cmds[i] = exec.Command("runnerd", "run", "-config", cfg, "audit-"+name)
		cmds[i].Dir = d
		cmds[i].Env = append(os.Environ(), "RUNNERD_PASSWORD=sim-password")
		outs[i] = &bytes.Buffer{}
		cmds[i].Stdout, cmds[i].Stderr = outs[i], outs[i]
	}
	// The first run migrates the ledger; the others must not race it into
	// a half-made schema (they would wait on the migration lock, but a
	// first run alone keeps the figures about the budget).
	errs := make([]error, instances)
	var wg sync.WaitGroup
	for i, c := range cmds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.Run()
		}()
	}
	wg.Wait()
	out := make([]string, instances)
	for i, b := range outs {
		out[i] = b.String()
	}
	return sim.Requests(), errs, out
}

// waitLedger waits up to 30 s until ok holds of the PostgreSQL ledger at url
// (which a runnerd starting meanwhile creates and migrates).
func waitLedger(t *testing.T, url, what string, ok func(*store.DB) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		db, err := store.Open(context.Background(), url, store.Options{NoMigrate: true})
		if err == nil {
			done := ok(db)
			db.Close()
			if done {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s (%v)", what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// maxInAnySecond is the most requests that arrived within one second of
// each other.
func maxInAnySecond(reqs []atomsim.Request) int {
	ts := make([]time.Time, len(reqs))
	for i, r := range reqs {
		ts[i] = r.Time
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	most := 0
	for i, j := 0, 0; j < len(ts); j++ {
		for ts[j].Sub(ts[i]) >= time.Second {
			i++
		}
		most = max(most, j-i+1)
	}
	return most
}

// TestSharedLedgerRate: two and three runnerd on one account and one
// PostgreSQL ledger, each exporting at full speed, together keep the
// account's rate (5 a second in any sliding second at the simulator) and
// are never answered 503.
func TestSharedLedgerRate(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			reqs, errs, outs := sharedRun(t, n, 100_000)
			for i, err := range errs {
				if err != nil {
					t.Errorf("instance %d: %v\n%s", i+1, err, outs[i])
				}
			}
			var rejected int
			for _, r := range reqs {
				if r.Status == 503 || r.Status == 429 {
					rejected++
				}
			}
			most := maxInAnySecond(reqs)
			t.Logf("%d instances: %d requests, at most %d in any second, %d × 503", n, len(reqs), most, rejected)
			if rejected != 0 || most > 5 {
				t.Errorf("%d requests answered 503/429, %d in one second: the instances did not share the rate", rejected, most)
			}
			if want := n * 15; len(reqs) < want {
				t.Errorf("%d requests; want at least %d (every instance's export)", len(reqs), want)
			}
		})
	}
}

// TestSharedLedgerCap: three runnerd that together want more than the
// account's allowance stop at it: the simulator never sees more calls than
// the cap, none is answered 503, and the runs that could not go are refused
// by the budget, not by the platform.
func TestSharedLedgerCap(t *testing.T) {
	const limit = 30
	reqs, errs, outs := sharedRun(t, 3, limit)
	var rejected int
	for _, r := range reqs {
		if r.Status == 503 || r.Status == 429 {
			rejected++
		}
	}
	failed := 0
	for _, err := range errs {
		if err != nil {
			failed++
		}
	}
	t.Logf("3 instances, cap %d: %d requests, %d × 503, %d runs did not finish", limit, len(reqs), rejected, failed)
	if len(reqs) > limit || len(reqs) < limit/2 || rejected != 0 {
		t.Errorf("%d requests (cap %d), %d answered 503: the instances did not share the window\n%s\n%s\n%s",
			len(reqs), limit, rejected, outs[0], outs[1], outs[2])
	}
	if failed == 0 {
		t.Errorf("every run finished on a cap of %d for ~48 calls: the cap was not reached?", limit)
	}
}

// sharedHigh is an instance holding a high-priority execute job due within
// the day (%[1]s the simulator, %[2]s the ledger, %[3]s its directory).
const sharedHigh = `
[account]
id = "sim-account"
url = %[1]q
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 20
reserve = 0
rate = 5

[store]
path = "%[3]s/runnerd.db"
url = %[2]q
instance = "hi"
lease = "2s"

[[job]]
name = "nightly"
kind = "execute"
priority = "high"
schedule = "@daily"
process_id = "proc-orders"
atom_id = "atom-prod"
`

// TestSharedLedgerPriorities: the high-priority runs of one instance keep
// their share against another instance's low-priority work: instance "hi"
// has a high-priority execute due within the day (7 calls by the default
// estimate), instance "i1" runs a low-priority export that wants ~30 calls
// on an allowance of 20. The export stops at 13 calls, deferred to keep the
// other instance's share.
func TestSharedLedgerPriorities(t *testing.T) {
	r, _, ledger := newSharedRig(t, atomsim.Options{Rate: 5, DailyLimit: 20, AuditLogs: 1500, AuditDays: 30, ExecutionRecords: -1, Events: -1})
	sim, url := r.sim, r.url
	hiDir, loDir := filepath.Join(r.dir, "hi"), filepath.Join(r.dir, "i1")
	for _, d := range []string{hiDir, loDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	hiCfg := filepath.Join(hiDir, "jobs.toml")
	if err := os.WriteFile(hiCfg, fmt.Appendf(nil, sharedHigh, url, ledger, hiDir), 0o600); err != nil {
		t.Fatal(err)
	}
	loCfg := filepath.Join(loDir, "jobs.toml")
	lo := fmt.Sprintf(sharedInstance, url, 20, ledger, "i1", loDir) + "priority = \"low\"\n"
	if err := os.WriteFile(loCfg, []byte(lo), 0o600); err != nil {
		t.Fatal(err)
	}
	hi := r.startConfig(hiCfg)
	defer hi.kill9()
	waitLedger(t, ledger, "instance hi publishes its look-ahead", func(db *store.DB) bool {
		d, err := db.OthersDemand(context.Background(), "test", time.Minute)
		return err == nil && strings.Contains(d["hi"], "nightly")
	})
	run := exec.Command("runnerd", "run", "-config", loCfg, "audit-i1")
	run.Dir, run.Env = loDir, r.env
	out, _ := run.CombinedOutput()
	calls := len(sim.Requests())
	t.Logf("low-priority export beside a high-priority run on another instance: %d calls of 20\n%s", calls, out)
	if calls > 13 {
		t.Errorf("the export made %d calls; want at most 13 (20 less the other instance's high-priority 7)", calls)
	}
	if calls < 5 {
		t.Errorf("the export made %d calls: it should have spent what the high-priority run leaves", calls)
	}
	if !strings.Contains(string(out), "higher-priority") {
		t.Errorf("the export's refusal does not say it keeps a higher-priority share:\n%s", out)
	}
}

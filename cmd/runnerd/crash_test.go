package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/store"
)

var (
	crashIterations = flag.Int("crash.iterations", 50, "kill -9 iterations of TestCrashKill9 (500 for the long run)")
	crashSeed       = flag.Uint64("crash.seed", 0, "seed of TestCrashKill9's choices (failpoint counts, kill moments); 0 = from the clock, logged")
)

// envFailpoint arms a failpoint in a runnerd started by the crash suite:
// RUNNERD_FAILPOINT=name[:count][@file] kills the process (SIGKILL, as kill
// -9) at the count-th hit (default 1) of the named failpoint; with @file,
// only hits while file exists count (a test arms a running process by
// creating it), and name * means the one the file names. It is read here, in a _test.go file, so only the test binary
// acting as runnerd honours it; a runnerd built with `go build` ignores the
// variable.
const envFailpoint = "RUNNERD_FAILPOINT"

func init() {
	v := os.Getenv(envFailpoint)
	if v == "" {
		return
	}
	v, armFile, _ := strings.Cut(v, "@")
	name, n, _ := strings.Cut(v, ":")
	count := int64(1)
	if n != "" {
		c, err := strconv.ParseInt(n, 10, 64)
		if err != nil || c < 1 {
			fmt.Fprintf(os.Stderr, "%s=%q: want name[:count][@file]\n", envFailpoint, v)
			os.Exit(2)
		}
		count = c
	}
	var hits atomic.Int64
	atomapi.SetFailpoint(func(at string) {
		if armFile != "" {
			b, err := os.ReadFile(armFile)
			if err != nil {
				return
			}
			if name == "*" { // the file names the failpoint
				if at != strings.TrimSpace(string(b)) {
					return
				}
			} else if at != name {
				return
			}
		} else if at != name {
			return
		}
		if hits.Add(1) == count {
			fmt.Fprintf(os.Stderr, "failpoint %s: kill -9\n", at)
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // never returns: the signal is on its way
		}
	})
}

// crashRig is the simulator in the test process and a directory in which a
// runnerd child process is started, killed and started again.
type crashRig struct {
	t      *testing.T
	sim    *atomsim.Server
	url    string
	dir    string
	config string
	env    []string
	logs   bytes.Buffer // every child's stderr, for the failure message
	mu     sync.Mutex
}

const crashJobs = `
[account]
id = "sim-account"
url = "%s"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 5000000
rate = 20

[store]
path = "runnerd.db"

[log]
level = "debug"
format = "text"

[[job]]
name = "exec-orders"
kind = "execute"
schedule = "@every 2s"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "exec-legacy"
kind = "execute"
schedule = "@every 3s"
method = "executeProcess"
process_id = "proc-invoices"
atom_id = "atom-prod"

[[job]]
name = "promote"
kind = "deploy"
schedule = "@every 2s"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "audit"
kind = "export"
schedule = "@every 2s"
object = "AuditLog"
first_window = "745h"
output = "exports/{job}/{window_start}.jsonl"
`

func newCrashRig(t *testing.T, simOpts atomsim.Options) *crashRig {
	t.Helper()
	if _, err := exec.LookPath("runnerd"); err != nil {
		t.Skip("runnerd is not on PATH (run through go test, which sets it up in TestMain)")
	}
	r := &crashRig{t: t, sim: atomsim.New(simOpts), dir: t.TempDir()}
	srv := httptest.NewServer(r.sim) // 127.0.0.1
	t.Cleanup(srv.Close)
	r.url = srv.URL + "/api/rest/v1"
	r.config = filepath.Join(r.dir, "jobs.toml")
	if err := os.WriteFile(r.config, []byte(fmt.Sprintf(crashJobs, r.url)), 0o600); err != nil {
		t.Fatal(err)
	}
	r.env = append(os.Environ(), "RUNNERD_PASSWORD=sim-password",
		"RUNNERD_RECONCILE_GRACE=3s", "RUNNERD_RECONCILE_EVERY=300ms", "RUNNERD_RECONCILE_SKEW=1s")
	t.Cleanup(func() {
		if t.Failed() {
			r.mu.Lock()
			defer r.mu.Unlock()
			logs := r.logs.String()
			if len(logs) > 20000 {
				logs = "…" + logs[len(logs)-20000:]
			}
			t.Logf("runnerd logs (tail):\n%s", logs)
		}
	})
	return r
}

// child is one runnerd process.
type child struct {
	cmd  *exec.Cmd
	done chan struct{}
	err  error
}

func (r *crashRig) start(extraEnv ...string) *child {
	r.t.Helper()
	return r.startConfig(r.config, extraEnv...)
}

// startConfig is start with the configuration file config (its directory
// the process's working directory).
func (r *crashRig) startConfig(config string, extraEnv ...string) *child {
	r.t.Helper()
	cmd := exec.Command("runnerd", "serve", "-config", config)
	cmd.Dir = filepath.Dir(config)
	cmd.Env = append(append([]string(nil), r.env...), extraEnv...)
	pr, pw, err := os.Pipe()
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stderr, cmd.Stdout = pw, pw
	if err := cmd.Start(); err != nil {
		r.t.Fatalf("start runnerd: %v", err)
	}
	pw.Close()
	c := &child{cmd: cmd, done: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			r.mu.Lock()
			fmt.Fprintf(&r.logs, "[%d] %s\n", cmd.Process.Pid, sc.Text())
			r.mu.Unlock()
		}
		pr.Close()
	}()
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c
}

// kill9 sends SIGKILL (if the process still runs) and waits for it.
func (c *child) kill9() {
	c.cmd.Process.Signal(syscall.SIGKILL)
	<-c.done
}

// waitOrKill waits up to d for the child to die on its own (a failpoint), then
// kills it; it reports whether the child died by itself.
func (c *child) waitOrKill(d time.Duration) bool {
	select {
	case <-c.done:
		return true
	case <-time.After(d):
		c.kill9()
		return false
	}
}

// stop ends the child with SIGTERM, as systemd does, and waits.
func (c *child) stop(t *testing.T) {
	t.Helper()
	c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
	case <-time.After(90 * time.Second):
		c.kill9()
		t.Fatalf("runnerd did not stop within 90s of SIGTERM")
	}
	if c.err != nil {
		t.Fatalf("runnerd after SIGTERM: %v; want exit 0", c.err)
	}
}

func (r *crashRig) openDB() *store.DB {
	r.t.Helper()
	db, err := store.Open(context.Background(), filepath.Join(r.dir, "runnerd.db"), store.Options{NoMigrate: true})
	if err != nil {
		r.t.Fatalf("open the ledger after a kill: %v", err)
	}
	return db
}

// integrity checks the ledger the way the next start finds it.
func (r *crashRig) integrity(i int) {
	r.t.Helper()
	if _, err := os.Stat(filepath.Join(r.dir, "runnerd.db")); err != nil {
		return // killed before it was created
	}
	db := r.openDB()
	defer db.Close()
	res, err := db.IntegrityCheck(context.Background())
	if err != nil || res != "ok" {
		r.t.Fatalf("iteration %d: integrity_check = %q, %v; want ok", i, res, err)
	}
}

// newSourcePackage gives the deploy job something to promote: a new package
// of proc-orders, deployed to env-test, made by the test (request ids
// "test-…", which the ledger comparison ignores).
func (r *crashRig) newSourcePackage(n int) {
	post := func(path, body string) map[string]any {
		req, _ := http.NewRequest("POST", r.url+"/sim-account"+path, strings.NewReader(body))
		req.SetBasicAuth("runnerd@sim", "sim-password")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json")
		req.Header.Set(atomapi.RequestIDHeader, fmt.Sprintf("test-%s-%d-%d", strings.Trim(path, "/"), n, rand.N(1<<30)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return nil
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		return m
	}
	pkg := post("/PackagedComponent", `{"componentId":"proc-orders"}`)
	if id, _ := pkg["packageId"].(string); id != "" {
		post("/DeployedPackage", fmt.Sprintf(`{"environmentId":"env-test","packageId":%q}`, id))
	}
}

// TestCrashKill9 kills runnerd with SIGKILL at every failpoint and at random
// moments while execute (ExecutionRequest and executeProcess), deploy and
// export jobs run, restarting it each time, then lets it reconcile and stops
// it. The simulator lives in this process, so it outlives every kill.
// Checked: integrity_check = ok after every kill; at most one execution and
// one deployment per run (slot) at the simulator; no request at the
// simulator without a ledger row; no run left unknown (or mid-flight) after
// the grace period; the export files hold every record once.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	iters := *crashIterations
	r := newCrashRig(t, atomsim.Options{Rate: 40, DailyLimit: -1, ExecDuration: 700 * time.Millisecond, RecordDelay: 100 * time.Millisecond,
		AuditLogs: 1500, ExecutionRecords: 50, Events: -1})
	points := []string{atomapi.FailAfterBegin, atomapi.FailAfterWrite, atomapi.FailAfterAnswer, atomapi.FailMidExport}
	seed := *crashSeed
	if seed == 0 {
		seed = uint64(time.Now().UnixNano())
	}
	// The seed fixes the failpoint counts and kill moments; what the daemon
	// is doing at a moment still depends on the machine.
	t.Logf("seed %d (rerun with -crash.seed=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, 7))
	stopMut := make(chan struct{})
	var mutWG sync.WaitGroup
	mutWG.Add(1)
	go func() { // a new source package now and then, so deploys keep happening
		defer mutWG.Done()
		for n := 0; ; n++ {
			select {
			case <-stopMut:
				return
			case <-time.After(1500 * time.Millisecond):
				r.newSourcePackage(n)
			}
		}
	}()
	byFailpoint, random := map[string]int{}, 0
	for i := 0; i < iters; i++ {
		var c *child
		if i%2 == 0 {
			fp := points[(i/2)%len(points)]
			c = r.start(envFailpoint + "=" + fp + ":" + strconv.Itoa(1+rng.IntN(2)))
			// A run picked up after a kill waits out the reconcile grace
			// (1.5 s here) before its first call, so a failpoint at the
			// second export page comes ~3.5 s in; under -race on two busy
			// cores it came after 4 s, and mid-export fired in none of its
			// turns (CI, seed 1796314678836810618). 8 s is the budget.
			if c.waitOrKill(8 * time.Second) {
				byFailpoint[fp]++
			}
		} else {
			c = r.start()
			time.Sleep(time.Duration(150+rng.IntN(1500)) * time.Millisecond)
			c.kill9()
			random++
		}
		r.integrity(i)
	}
	close(stopMut)
	mutWG.Wait()
	t.Logf("kills: %d at failpoints %v, %d at random moments", sumMap(byFailpoint), byFailpoint, random)
	for _, fp := range points {
		if byFailpoint[fp] == 0 && iters >= 2*len(points) {
			t.Errorf("failpoint %s never fired in %d iterations", fp, iters)
		}
	}

	// Recovery: no failpoint, reconcile past the grace period, stop cleanly.
	unknownAtStart := -1
	recStart := time.Now()
	c := r.start()
	deadline := time.Now().Add(60 * time.Second)
	var settled time.Duration // until no run was unknown (to a 1 s poll)
	for {
		time.Sleep(time.Second)
		db := r.openDB()
		left, err := db.ListRuns(context.Background(), store.RunFilter{States: []runnerd.RunState{runnerd.StateUnknown}})
		db.Close()
		if err != nil {
			t.Fatal(err)
		}
		if unknownAtStart < 0 {
			unknownAtStart = len(left)
		}
		if len(left) == 0 && settled == 0 {
			settled = time.Since(recStart)
		}
		if len(left) == 0 && time.Since(deadline.Add(-60*time.Second)) > 5*time.Second {
			break
		}
		if time.Now().After(deadline) {
			break
		}
	}
	c.stop(t)
	r.integrity(iters)
	db := r.openDB()
	calls, err := db.ListCalls(context.Background(), store.CallFilter{Status: -1})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	lookups := 0
	for _, x := range calls {
		if x.Recovery {
			lookups++
		}
	}
	t.Logf("reconciliation: %d recovery lookups over the whole test (every restart's passes); "+
		"after the last start %d runs were still unknown a second in, none after %s", lookups, unknownAtStart, settled.Round(time.Second))
	r.checkLedger()
}

func sumMap(m map[string]int) int {
	n := 0
	for _, v := range m {
		n += v
	}
	return n
}

// checkLedger compares the simulator with the ledger after the kills.
func (r *crashRig) checkLedger() {
	t := r.t
	t.Helper()
	ctx := context.Background()
	db := r.openDB()
	defer db.Close()
	calls, err := db.ListCalls(ctx, store.CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	runOf := map[string]int64{}
	for _, c := range calls {
		runOf[c.RequestID] = c.RunID
	}
	var problems []string
	// 0 requests at the simulator without a ledger row.
	noRow := 0
	for _, q := range r.sim.Requests() {
		if strings.HasPrefix(q.RequestID, "test-") {
			continue
		}
		if _, ok := runOf[q.RequestID]; !ok {
			noRow++
			if noRow <= 3 {
				problems = append(problems, fmt.Sprintf("request %s %s (id %q) at the simulator has no ledger row", q.Method, q.Path, q.RequestID))
			}
		}
	}
	// 0 duplicate executions or deploys per run (a run is a slot).
	execs := map[int64][]string{}
	for _, x := range r.sim.Executions() {
		id := runOf[x.RequestID]
		execs[id] = append(execs[id], x.ExecutionID)
	}
	deploys := map[int64][]string{}
	nDeploys := 0
	for _, d := range r.sim.Deploys() {
		if d.Duplicate || strings.HasPrefix(d.RequestID, "test-") {
			continue
		}
		nDeploys++
		id := runOf[d.RequestID]
		deploys[id] = append(deploys[id], d.DeploymentID)
	}
	for id, xs := range execs {
		if len(xs) > 1 {
			problems = append(problems, fmt.Sprintf("run %d started %d executions: %v", id, len(xs), xs))
		}
	}
	for id, ds := range deploys {
		if len(ds) > 1 {
			problems = append(problems, fmt.Sprintf("run %d made %d deployments: %v", id, len(ds), ds))
		}
	}
	// No run unknown or mid-flight after the grace period.
	runs, err := db.ListRuns(ctx, store.RunFilter{})
	if err != nil {
		t.Fatal(err)
	}
	states := map[runnerd.RunState]int{}
	reconciled := 0
	for _, run := range runs {
		states[run.State]++
		if strings.Contains(run.Detail, `"reconciled"`) {
			reconciled++
		}
		switch run.State {
		case runnerd.StateUnknown, runnerd.StateAdmitted, runnerd.StateRunning:
			problems = append(problems, fmt.Sprintf("run %d (%s) left %s: %s", run.ID, run.Job, run.State, run.Reason))
		}
	}
	r.checkExports(db, &problems)
	t.Logf("simulator: %d requests, %d executions, %d deploys; ledger: %d calls; runs %v, %d settled by reconciliation",
		len(r.sim.Requests()), len(r.sim.Executions()), nDeploys, len(calls), states, reconciled)
	if len(problems) > 0 {
		t.Errorf("%d problems:\n%s", len(problems), strings.Join(problems, "\n"))
	}
}

// checkExports: every final export file parses completely (no partial file),
// no temporary file is left as a final name, and every AuditLog record dated
// before the watermark is in exactly one file.
func (r *crashRig) checkExports(db *store.DB, problems *[]string) {
	st, err := db.JobState(context.Background(), "audit")
	if err != nil {
		r.t.Fatal(err)
	}
	seen := map[string]int{}
	files := 0
	filepath.WalkDir(filepath.Join(r.dir, "exports"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".jsonl") {
			return err
		}
		files++
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if len(b) > 0 && b[len(b)-1] != '\n' {
			*problems = append(*problems, fmt.Sprintf("%s: partial file (no final newline)", path))
		}
		for _, line := range bytes.Split(bytes.TrimSuffix(b, []byte("\n")), []byte("\n")) {
			if len(line) == 0 {
				continue
			}
			var rec struct {
				DocumentID string `json:"documentId"`
			}
			if err := json.Unmarshal(line, &rec); err != nil {
				*problems = append(*problems, fmt.Sprintf("%s: partial file: %v", path, err))
				break
			}
			seen[rec.DocumentID]++
		}
		return nil
	})
	want := 0
	for _, a := range r.sim.Data().AuditLogs {
		at, err := atomapi.ParseTime(a.Date)
		if err != nil || !at.Before(st.Watermark) {
			continue
		}
		want++
		if seen[a.DocumentID] != 1 {
			*problems = append(*problems, fmt.Sprintf("audit record %s (%s) exported %d times", a.DocumentID, a.Date, seen[a.DocumentID]))
		}
	}
	if st.Watermark.IsZero() || want == 0 {
		*problems = append(*problems, "the export never advanced its watermark")
	}
	r.t.Logf("exports: %d files, %d records before the watermark %s, each exactly once",
		files, want, st.Watermark.Format(time.RFC3339))
}

// TestCrashCorruptLedger: a corrupt database file at start-up stops runnerd
// with exit 2 and a clear message, and the file is left exactly as it was.
func TestCrashCorruptLedger(t *testing.T) {
	r := newCrashRig(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	path := filepath.Join(r.dir, "runnerd.db")
	junk := bytes.Repeat([]byte("this is not an SQLite database\n"), 200)
	copy(junk, "SQLite format 3\x00") // the magic, then garbage: corrupt, not foreign
	if err := os.WriteFile(path, junk, 0o600); err != nil {
		t.Fatal(err)
	}
	c := r.start()
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.kill9()
		t.Fatal("runnerd kept running on a corrupt ledger")
	}
	var ee *exec.ExitError
	if !errorsAs(c.err, &ee) || ee.ExitCode() != 2 {
		t.Fatalf("runnerd serve on a corrupt ledger: %v; want exit status 2", c.err)
	}
	r.mu.Lock()
	logs := r.logs.String()
	r.mu.Unlock()
	if !strings.Contains(logs, "corrupt") || !strings.Contains(logs, "runnerd.db") {
		t.Errorf("stderr = %q; want a message naming the file and saying it is corrupt", logs)
	}
	after, err := os.ReadFile(path)
	if err != nil || !bytes.Equal(after, junk) {
		t.Errorf("the corrupt file was changed (%d bytes, err %v); want it untouched", len(after), err)
	}
	if _, err := os.Stat(path + "-wal"); err == nil {
		t.Errorf("%s-wal was created; want nothing written next to a corrupt file", path)
	}
}

func errorsAs(err error, target any) bool { return errors.As(err, target) }

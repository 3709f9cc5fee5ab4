package main

// Script commands for the ops scripts (testdata/script/ops_*.txtar), and the
// canary run: every end-to-end script again, with the API password a canary
// that must appear in no output of any command and in no file the scripts
// leave behind.

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io/fs"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/control"
	"runnerd/internal/store"
)

// simrate N: no 1-second window of the simulator's arrival times holds more
// than N requests, and none was answered 503.
func cmdScriptSimRate(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: simrate N")
	}
	var rate int
	if _, err := fmt.Sscan(args[0], &rate); err != nil {
		ts.Fatalf("simrate: %v", err)
	}
	reqs := simOf(ts).Requests()
	times := make([]time.Time, len(reqs))
	n503 := 0
	for i, r := range reqs {
		times[i] = r.Time
		if r.Status == 503 {
			n503++
		}
	}
	worst, at := maxInWindow(times, time.Second)
	ok := worst <= rate && n503 == 0
	if !ok {
		for _, r := range reqs {
			if !r.Time.Before(at.Add(-time.Second)) && r.Time.Before(at.Add(2*time.Second)) {
				ts.Logf("  %s %d %s %s", r.Time.Format("15:04:05.000"), r.Status, r.RequestID, r.Path)
			}
		}
	}
	if ok == neg {
		ts.Fatalf("simrate: %d requests, at most %d in one second (from %s), %d answered 503; want at most %d and no 503",
			len(reqs), worst, at.Format("15:04:05.000"), n503, rate)
	}
	ts.Logf("simrate: %d requests, at most %d in any 1-second window, %d × 503", len(reqs), worst, n503)
}

// maxInWindow returns the largest number of times within any half-open window
// [t, t+w) and where it starts.
func maxInWindow(times []time.Time, w time.Duration) (int, time.Time) {
	ts := append([]time.Time(nil), times...)
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	best, at := 0, time.Time{}
	j := 0
	for i := range ts {
		for j < len(ts) && ts[j].Sub(ts[i]) < w {
			j++
		}
		if j-i > best {
			best, at = j-i, ts[i]
		}
	}
	return best, at
}

// runsdisjoint DB: no two runs in the database were running at the same time
// (each started after the previous one finished).
func cmdScriptRunsDisjoint(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: runsdisjoint DB")
	}
	db, err := scriptStore(ts, args[0], store.Options{NoMigrate: true})
	ts.Check(err)
	defer db.Close()
	runs, err := db.ListRuns(context.Background(), store.RunFilter{})
	ts.Check(err)
	sort.Slice(runs, func(i, j int) bool { return runs[i].StartedAt.Before(runs[j].StartedAt) })
	var overlaps []string
	for i := 1; i < len(runs); i++ {
		if p := runs[i-1]; p.FinishedAt.IsZero() || runs[i].StartedAt.Before(p.FinishedAt) {
			overlaps = append(overlaps, fmt.Sprintf("run %d (%s) started at %s before run %d (%s) finished at %s",
				runs[i].ID, runs[i].Job, runs[i].StartedAt.Format(time.StampMilli), p.ID, p.Job, p.FinishedAt.Format(time.StampMilli)))
		}
	}
	if len(runs) < 2 {
		ts.Fatalf("runsdisjoint: %d runs; want at least 2 to compare", len(runs))
	}
	if (len(overlaps) == 0) == neg {
		ts.Fatalf("runsdisjoint: %d runs: %s", len(runs), strings.Join(overlaps, "; "))
	}
}

// waitsock PATH [TIMEOUT]: wait until a daemon answers a ping on the control
// socket at PATH.
func cmdScriptWaitSock(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitsock PATH [TIMEOUT]")
	}
	timeout := 30 * time.Second
	if len(args) == 2 {
		d, err := time.ParseDuration(args[1])
		ts.Check(err)
		timeout = d
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, ok, err := control.Call(ctx, path, control.Request{Op: "ping"})
		cancel()
		if ok && err == nil && resp.OK {
			fi, err := os.Stat(path)
			ts.Check(err)
			if fi.Mode().Perm() != 0o600 {
				ts.Fatalf("waitsock: %s has mode %v; want 0600", args[0], fi.Mode().Perm())
			}
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("waitsock: no daemon answered on %s within %s", args[0], timeout)
}

// cmdScriptCanarySim is `sim` for the canary run: the same flags, the canary
// as the password.
func cmdScriptCanarySim(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	rate := fs.Int("rate", 5, "")
	daily := fs.Int("daily", 10000, "")
	exec := fs.Duration("exec", 2*time.Second, "")
	audit := fs.Int("audit", 25000, "")
	if err := fs.Parse(args); err != nil {
		ts.Fatalf("sim (canary run; keep its flags in step with cmdScriptSim): %v", err)
	}
	s := atomsim.New(atomsim.Options{Password: canary, Rate: *rate, DailyLimit: *daily, ExecDuration: *exec,
		AuditLogs: *audit, RecordDelay: 200 * time.Millisecond})
	srv := httptest.NewServer(s)
	ts.Defer(srv.Close)
	sims.Store(ts, s)
	ts.Setenv("SIM_URL", srv.URL+"/api/rest/v1")
}

// canaryT is testscript's T that sees each script's whole log: it reports
// itself verbose, so testscript keeps every command's stdout and stderr
// (background ones included) in the log it hands to Log.
type canaryT struct {
	*testing.T
	mu   *sync.Mutex
	logs map[string]string
}

func (c canaryT) Verbose() bool { return true }

func (c canaryT) Log(args ...any) {
	c.T.Helper()
	c.mu.Lock()
	c.logs[c.T.Name()] += fmt.Sprint(args...)
	c.mu.Unlock()
	if testing.Verbose() {
		c.T.Log(args...)
	}
}

func (c canaryT) Run(name string, f func(testscript.T)) {
	c.T.Run(name, func(t *testing.T) { f(canaryT{T: t, mu: c.mu, logs: c.logs}) })
}

// scriptBuiltins are testscript's own commands.
var scriptBuiltins = map[string]bool{
	"cd": true, "chmod": true, "cmp": true, "cmpenv": true, "cp": true, "env": true, "exec": true, "exists": true,
	"grep": true, "kill": true, "mkdir": true, "mv": true, "rm": true, "skip": true, "stdin": true, "stderr": true,
	"stdout": true, "stop": true, "symlink": true, "unquote": true, "wait": true, "ttyin": true, "ttyout": true,
}

// scriptCommands returns the commands a script uses (the first word of each
// line, after any "!" and [condition]).
func scriptCommands(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var cmds []string
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "-- ") {
			break
		}
		for {
			switch {
			case strings.HasPrefix(line, "!"):
				line = strings.TrimSpace(line[1:])
				continue
			case strings.HasPrefix(line, "["):
				if i := strings.Index(line, "]"); i >= 0 {
					line = strings.TrimSpace(line[i+1:])
					continue
				}
			}
			break
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cmds = append(cmds, strings.Fields(line)[0])
	}
	return cmds, sc.Err()
}

// TestCanaryScripts runs the end-to-end scripts again with the API password a
// canary (the simulator accepts only it; RUNNERD_PASSWORD carries it) and
// checks that it appears in no command's stdout or stderr and in no file a
// script leaves in its work directory: the database, its WAL, exports,
// backups, logs. A script that uses a command this run does not know is
// skipped, and said so.
func TestCanaryScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("reruns the end-to-end scripts; -short skips it")
	}
	cmds := map[string]func(ts *testscript.TestScript, neg bool, args []string){
		"sim":          cmdScriptCanarySim,
		"simcount":     cmdScriptSimCount,
		"ledgermatch":  cmdScriptLedgerMatch,
		"waitrun":      cmdScriptWaitRun,
		"expand":       cmdScriptExpand,
		"auditfiles":   cmdScriptAuditFiles,
		"simrate":      cmdScriptSimRate,
		"runsdisjoint": cmdScriptRunsDisjoint,
		"waitsock":     cmdScriptWaitSock,
	}
	all, err := filepath.Glob("testdata/script/*.txtar")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, f := range all {
		used, err := scriptCommands(f)
		if err != nil {
			t.Fatal(err)
		}
		var unknown []string
		for _, c := range used {
			if !scriptBuiltins[c] && cmds[c] == nil {
				unknown = append(unknown, c)
			}
		}
		if len(unknown) > 0 {
			t.Logf("canary run skips %s: it uses %v (add them to this test's commands)", f, unknown)
			continue
		}
		files = append(files, f)
	}
	if len(files) == 0 {
		t.Fatal("no script to run")
	}

	logs := map[string]string{}
	var mu sync.Mutex
	leaks := map[string][]string{}
	t.Run("scripts", func(t *testing.T) {
		testscript.RunT(canaryT{T: t, mu: &mu, logs: logs}, testscript.Params{
			Files:               files,
			RequireExplicitExec: true,
			Condition:           scriptCondition, // the scripts' own [pg]; this rerun is SQLite's
			Setup: func(e *testscript.Env) error {
				e.Setenv("RUNNERD_PASSWORD", canary)
				example, err := filepath.Abs(filepath.Join("..", "..", "jobs.example.toml"))
				if err != nil {
					return err
				}
				e.Setenv("EXAMPLE", example) // as TestScript sets it (demo.txtar)
				e.Defer(func() {
					// The work directory, before testscript removes it.
					var found []string
					filepath.WalkDir(e.WorkDir, func(path string, d fs.DirEntry, err error) error {
						if err != nil || !d.Type().IsRegular() {
							return nil
						}
						if b, err := os.ReadFile(path); err == nil && bytes.Contains(b, []byte(canary)) {
							found = append(found, strings.TrimPrefix(path, e.WorkDir+"/"))
						}
						return nil
					})
					mu.Lock()
					leaks[e.WorkDir] = found
					mu.Unlock()
				})
				return nil
			},
			Cmds: cmds,
		})
	})
	mu.Lock()
	defer mu.Unlock()
	for dir, found := range leaks {
		for _, f := range found {
			t.Errorf("canary secret in %s (work directory %s)", f, filepath.Base(dir))
		}
	}
	if len(logs) != len(files) {
		t.Errorf("saw the logs of %d scripts; want %d", len(logs), len(files))
	}
	for name, log := range logs {
		if !strings.Contains(log, "> exec runnerd") {
			t.Errorf("%s: the log shows no runnerd command; the canary check would see nothing", name)
		}
		for _, line := range strings.Split(log, "\n") {
			// The environment listing at the top shows the variable the
			// test itself set; everything else is output.
			if strings.Contains(line, canary) && !strings.HasPrefix(strings.TrimSpace(line), "RUNNERD_PASSWORD=") {
				t.Errorf("%s: canary secret in the output: %q", name, line)
			}
		}
	}
	t.Logf("canary run: %d scripts, %d work directories, no canary in any output or file", len(files), len(leaks))
}

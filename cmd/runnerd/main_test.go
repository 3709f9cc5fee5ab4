package main

import (
	"bufio"
	"context"
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/store"
)

var update = flag.Bool("update", false, "update testscript golden output in testdata/script")

// TestMain makes the test binary act as runnerd when testscript execs it, so
// end-to-end scripts run the real command in its own process.
func TestMain(m *testing.M) {
	testscript.Main(runThenStop{m}, map[string]func(){
		"runnerd": func() { os.Exit(mainExit()) },
	})
}

// TestScript runs the end-to-end scripts in testdata/script against the
// simulated AtomSphere on 127.0.0.1.
func TestScript(t *testing.T) {
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		UpdateScripts:       *update,
		Setup: func(e *testscript.Env) error {
			if os.Getenv("RUNNERD_REQUIRE_UNZIP") != "" {
				if _, err := exec.LookPath("unzip"); err != nil {
					return fmt.Errorf("RUNNERD_REQUIRE_UNZIP is set but unzip is not installed: %w", err)
				}
			}
			e.Setenv("RUNNERD_PASSWORD", "sim-password")
			if scriptsOnPostgres() {
				u, err := scriptDatabase(e)
				if err != nil {
					return err
				}
				e.Setenv(envScriptLedger, u)
			}
			example, err := filepath.Abs(filepath.Join("..", "..", "jobs.example.toml"))
			e.Setenv("EXAMPLE", example)
			return err
		},
		Condition: scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"sim":         cmdScriptSim,
			"simcount":    cmdScriptSimCount,
			"ledgermatch": cmdScriptLedgerMatch,
			"waitrun":     cmdScriptWaitRun,
			"expand":      cmdScriptExpand,
			"sqlexec":     cmdScriptSQLExec,
			"auditfiles":  cmdScriptAuditFiles,
			// ops_cmds_test.go
			"simrate":      cmdScriptSimRate,
			"runsdisjoint": cmdScriptRunsDisjoint,
			"waitsock":     cmdScriptWaitSock,
			// evidence_script_test.go
			"simset":       cmdScriptSimSet,
			"foreigncount": cmdScriptForeignCount,
			"simcancels":   cmdScriptSimCancels,
			"waitevidence": cmdScriptWaitEvidence,
			// release_script_test.go
			"simstate":  cmdScriptSimState,
			"ledgerops": cmdScriptLedgerOps,
			"siminject": cmdScriptSimInject,
		},
	})
}

var sims sync.Map // *testscript.TestScript → *atomsim.Server

// sim [-rate N] [-daily N] [-exec D] [-audit N]: start the simulated AtomSphere
// on 127.0.0.1 and set SIM_URL (the API base, without the account).
func cmdScriptSim(ts *testscript.TestScript, neg bool, args []string) {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	rate := fs.Int("rate", 5, "")
	daily := fs.Int("daily", 10000, "")
	exec := fs.Duration("exec", 2*time.Second, "")
	audit := fs.Int("audit", 25000, "")
	instant := fs.Bool("instant-listeners", false, "listener changes and ListenerStatus answers take effect at once")
	if err := fs.Parse(args); err != nil {
		ts.Fatalf("sim: %v", err)
	}
	o := atomsim.Options{Rate: *rate, DailyLimit: *daily, ExecDuration: *exec, AuditLogs: *audit, RecordDelay: 200 * time.Millisecond}
	if *instant {
		o.ListenerDelay, o.ListenerStatusDelay = -1, -1
	}
	s := atomsim.New(o)
	srv := httptest.NewServer(s)
	ts.Defer(srv.Close)
	sims.Store(ts, s)
	ts.Setenv("SIM_URL", srv.URL+"/api/rest/v1")
}

func simOf(ts *testscript.TestScript) *atomsim.Server {
	s, ok := sims.Load(ts)
	if !ok {
		ts.Fatalf("no simulator: run `sim` first")
	}
	return s.(*atomsim.Server)
}

// simcount executions|deploys|duplicates|requests|PATH-SUBSTRING N: the
// simulator saw exactly N of them.
func cmdScriptSimCount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: simcount WHAT N")
	}
	want, err := strconv.Atoi(args[1])
	if err != nil {
		ts.Fatalf("simcount: %v", err)
	}
	s := simOf(ts)
	got := 0
	switch args[0] {
	case "executions":
		got = len(s.Executions())
	case "deploys", "duplicates":
		for _, d := range s.Deploys() {
			if d.Duplicate == (args[0] == "duplicates") {
				got++
			}
		}
	case "requests":
		got = len(s.Requests())
	case "503":
		for _, r := range s.Requests() {
			if r.Status == 503 {
				got++
			}
		}
	default:
		for _, r := range s.Requests() {
			if strings.Contains(r.Method+" "+r.Path, args[0]) {
				got++
			}
		}
	}
	if (got == want) == neg {
		ts.Fatalf("simcount %s: got %d, want %s%d", args[0], got, map[bool]string{true: "not ", false: ""}[neg], want)
	}
}

// ledgermatch DB: every request the simulator received has exactly one ledger
// row with its request id, and every ledger row was received once.
func cmdScriptLedgerMatch(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: ledgermatch DB")
	}
	db, err := scriptStore(ts, args[0], store.Options{})
	ts.Check(err)
	defer db.Close()
	calls, err := db.ListCalls(context.Background(), store.CallFilter{Status: -1})
	ts.Check(err)
	ledger := map[string]int{}
	for _, c := range calls {
		ledger[c.RequestID]++
	}
	seen := map[string]int{}
	for _, r := range simOf(ts).Requests() {
		seen[r.RequestID]++
	}
	var problems []string
	for id, n := range seen {
		if ledger[id] != 1 || n != 1 {
			problems = append(problems, fmt.Sprintf("request %q: %d at the simulator, %d in the ledger", id, n, ledger[id]))
		}
	}
	for id := range ledger {
		if seen[id] == 0 {
			problems = append(problems, fmt.Sprintf("ledger row %q never reached the simulator", id))
		}
	}
	if (len(problems) == 0) == neg {
		ts.Fatalf("ledgermatch: %d requests, %d rows: %s", len(seen), len(calls), strings.Join(problems, "; "))
	}
	ts.Logf("ledgermatch: %d requests = %d ledger rows", len(seen), len(calls))
}

// waitrun DB JOB STATE [TIMEOUT]: wait until the job's latest run is in STATE.
func cmdScriptWaitRun(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: waitrun DB JOB STATE [TIMEOUT]")
	}
	timeout := 30 * time.Second
	if len(args) > 3 {
		d, err := time.ParseDuration(args[3])
		ts.Check(err)
		timeout = d
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	var last string
	for time.Now().Before(deadline) {
		if _, err := os.Stat(path); err == nil || scriptLedger(ts) != "" {
			db, err := scriptStore(ts, args[0], store.Options{NoMigrate: true})
			if err == nil {
				runs, _ := db.ListRuns(context.Background(), store.RunFilter{Job: args[1], Limit: 1})
				db.Close()
				if len(runs) > 0 {
					last = string(runs[0].State)
					if last == args[2] {
						return
					}
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("waitrun: job %s in %s: last state %q, want %q after %s", args[1], filepath.Base(path), last, args[2], timeout)
}

// expand FILE...: replace $VAR and ${VAR} in each file with the script's
// environment (config files need the simulator's URL).
func cmdScriptExpand(ts *testscript.TestScript, neg bool, args []string) {
	for _, f := range args {
		b, err := os.ReadFile(ts.MkAbs(f))
		ts.Check(err)
		ts.Check(os.WriteFile(ts.MkAbs(f), []byte(os.Expand(string(b), ts.Getenv)), 0o644))
	}
}

// auditfiles DIR: the JSONL files under DIR hold every AuditLog record the
// simulator has, each exactly once, and nothing else.
func cmdScriptAuditFiles(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: auditfiles DIR")
	}
	seen := map[string]int{}
	files := 0
	err := filepath.WalkDir(ts.MkAbs(args[0]), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".jsonl") {
			return err
		}
		files++
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var rec struct {
				DocumentID string `json:"documentId"`
			}
			if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
				return fmt.Errorf("%s: %v", path, err)
			}
			seen[rec.DocumentID]++
		}
		return sc.Err()
	})
	ts.Check(err)
	var problems []string
	want := simOf(ts).Data().AuditLogs
	for _, a := range want {
		if seen[a.DocumentID] != 1 {
			problems = append(problems, fmt.Sprintf("%s exported %d times", a.DocumentID, seen[a.DocumentID]))
		}
		delete(seen, a.DocumentID)
	}
	for id := range seen {
		problems = append(problems, fmt.Sprintf("%s is not a simulator record", id))
	}
	if len(problems) > 5 {
		problems = append(problems[:5], fmt.Sprintf("… %d more", len(problems)-5))
	}
	if (len(problems) == 0) == neg {
		ts.Fatalf("auditfiles: %d records in %d files: %s", len(want), files, strings.Join(problems, "; "))
	}
	ts.Logf("auditfiles: %d records, each exactly once, in %d files", len(want), files)
}

// sqlexec DB SQL: run one statement on the database directly (to set up a
// database the binary must refuse, say).
func cmdScriptSQLExec(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: sqlexec DB SQL")
	}
	var db *sql.DB
	var err error
	if u := scriptLedger(ts); u != "" {
		db, err = sql.Open("pgx", u)
	} else {
		db, err = sql.Open("sqlite3", ts.MkAbs(args[0]))
	}
	ts.Check(err)
	defer db.Close()
	_, err = db.Exec(args[1])
	if (err == nil) == neg {
		ts.Fatalf("sqlexec: %v", err)
	}
}

// TestHelpScriptCoversEveryCommand: help.txtar asks every subcommand for -h;
// a command added to the table without it fails here.
func TestHelpScriptCoversEveryCommand(t *testing.T) {
	b, err := os.ReadFile("testdata/script/help.txtar")
	if err != nil {
		t.Fatal(err)
	}
	for name := range commands {
		if !strings.Contains(string(b), "exec runnerd "+name+" -h\n") {
			t.Errorf("help.txtar does not ask %q for -h", name)
		}
	}
}

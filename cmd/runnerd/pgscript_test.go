package main

import (
	"context"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"runnerd/internal/config"
	"runnerd/internal/pgtest"
	"runnerd/internal/store"
)

// The end-to-end scripts run against the PostgreSQL ledger too:
// RUNNERD_TEST_STORE=postgres (as .ci/run sets for a second run of
// TestScript) gives each script a fresh database on one server the test
// binary starts, names it in the script's $RUNNERD_TEST_LEDGER, and every
// runnerd the script starts (this binary, acting as runnerd) moves its
// configuration's ledger there (testConfigHook): [store] url, the same
// path for its socket and lock. The scripts' own ledger commands
// (ledgermatch, waitrun, sqlexec, …) open it too (scriptStore). A script
// step about SQLite's file is marked [!pg].

const envScriptLedger = "RUNNERD_TEST_LEDGER"

func init() {
	if u := os.Getenv(envScriptLedger); u != "" {
		testConfigHook = func(c *config.Config) {
			c.Store.URL, c.Store.Instance = u, "script"
			if c.Store.Lease.Duration == 0 {
				c.Store.Lease.Duration = config.DefaultLease
			}
		}
	}
}

// scriptCondition answers the scripts' own conditions: [pg] while they run
// against PostgreSQL.
func scriptCondition(cond string) (bool, error) {
	if cond == "pg" {
		return scriptsOnPostgres(), nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

// scriptsOnPostgres reports whether TestScript runs the scripts against the
// PostgreSQL ledger.
func scriptsOnPostgres() bool { return os.Getenv("RUNNERD_TEST_STORE") == "postgres" }

var (
	scriptPG     *pgtest.Server
	scriptPGOnce sync.Once
	scriptPGErr  error
	scriptDBs    atomic.Int64
)

// scriptDatabase creates a database for one script and returns its URL; it
// is dropped when the script ends.
func scriptDatabase(e *testscript.Env) (string, error) {
	scriptPGOnce.Do(func() { scriptPG, scriptPGErr = pgtest.Shared() })
	if scriptPGErr != nil {
		return "", fmt.Errorf("RUNNERD_TEST_STORE=postgres: %w", scriptPGErr)
	}
	name := fmt.Sprintf("s%d_%d", os.Getpid(), scriptDBs.Add(1))
	if err := scriptPG.Exec("CREATE DATABASE " + name); err != nil {
		return "", err
	}
	e.Defer(func() { scriptPG.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)") })
	return scriptPG.URL(name), nil
}

// stopScriptPG stops the scripts' server, if one was started.
func stopScriptPG() {
	if scriptPG != nil {
		scriptPG.Stop()
	}
}

// scriptLedger is the script's PostgreSQL ledger ("" for SQLite files).
func scriptLedger(ts *testscript.TestScript) string { return ts.Getenv(envScriptLedger) }

// scriptStore opens a script's ledger: the file at path, or its PostgreSQL
// database.
func scriptStore(ts *testscript.TestScript, path string, opts store.Options) (*store.DB, error) {
	if u := scriptLedger(ts); u != "" {
		opts.ReadOnly = false // a read-only open is a SQLite file's
		return store.Open(context.Background(), u, opts)
	}
	return store.Open(context.Background(), ts.MkAbs(path), opts)
}

// runThenStop is testscript.Main's testing.M: the tests, then the scripts'
// server stopped.
type runThenStop struct{ m *testing.M }

func (r runThenStop) Run() int {
	code := r.m.Run()
	stopScriptPG()
	return code
}

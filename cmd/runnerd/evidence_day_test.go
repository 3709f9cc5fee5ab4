package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

const windowJobs = `[account]
id = "sim-account"
url = "http://sim.invalid/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 20
reserve = 2

[store]
path = %q

[evidence]
dir = %q

[[job]]
name = "fails"
kind = "execute"
priority = "high"
schedule = "@daily"
process_id = "proc-fails"
atom_id = "atom-test"
`

// TestEvidenceWaitsForTheWindow runs the daemon on the simulator in a
// synctest bubble. At 00:40, 16 calls made at 01:30 the day before are still
// in the rolling window (18 for runnerd); the job's three earlier runs cost 2
// each, so its run is admitted and spends the last 2. Its process log — one
// more call — does not fit: the fetch is deferred, with no request sent, to
// 01:00, when those 16 calls leave the window; at 01:00 it is fetched and
// kept.
func TestEvidenceWaitsForTheWindow(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "sim-password")
	synctest.Test(t, func(t *testing.T) {
		day := time.Now().UTC().Truncate(24 * time.Hour).Add(24 * time.Hour)
		dir := t.TempDir()
		dbPath := filepath.Join(dir, "runnerd.db")
		conf := filepath.Join(dir, "jobs.toml")
		if err := os.WriteFile(conf, []byte(fmt.Sprintf(windowJobs, dbPath, filepath.Join(dir, "evidence"))), 0o600); err != nil {
			t.Fatal(err)
		}
		db, err := store.Open(context.Background(), dbPath, store.Options{})
		if err != nil {
			t.Fatal(err)
		}
		seq := 0
		call := func(runID int64, job string, at time.Time) {
			seq++
			id, err := db.BeginCall(context.Background(), store.Call{RunID: runID, Job: job, RequestID: fmt.Sprintf("seed-%d", seq),
				Operation: "Process.query", Method: "POST", Path: "/Process/query", Safe: true, Attempt: 1, StartedAt: at})
			if err == nil {
				err = db.EndCall(context.Background(), store.Call{ID: id, Status: 200})
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		for range 16 {
			call(0, "earlier", day.Add(90*time.Minute))
		}
		for n := 2; n <= 4; n++ {
			nominal := day.Add(-time.Duration(n) * 24 * time.Hour)
			r, _, err := db.CreateRun(context.Background(), runnerd.Run{Job: "fails", Kind: "execute", NominalTime: nominal, State: runnerd.StatePlanned})
			if err != nil {
				t.Fatal(err)
			}
			call(r.ID, "fails", nominal)
			call(r.ID, "fails", nominal)
			r, _ = db.GetRun(context.Background(), r.ID)
			r.State, r.StartedAt, r.FinishedAt = runnerd.StateSucceeded, nominal, nominal.Add(time.Minute)
			if err := db.UpdateRun(context.Background(), r); err != nil {
				t.Fatal(err)
			}
		}
		db.Close()
		time.Sleep(time.Until(day.Add(24*time.Hour + 40*time.Minute)))
		frees := day.Add(25 * time.Hour)

		sim := atomsim.New(atomsim.Options{Rate: 5, DailyLimit: 1000, AuditLogs: -1, ExecutionRecords: -1, Events: -1,
			ExecDuration: time.Second, RecordDelay: 200 * time.Millisecond})
		cfg, err := config.Load(conf, config.LoadOptions{Getenv: faultEnv().getenv})
		if err != nil {
			t.Fatal(err)
		}
		d, err := newDaemon(context.Background(), faultEnv(), cfg, slog.New(slog.DiscardHandler), daemonOptions{client: func(c *atomapi.Config) {
			c.HTTPClient = &http.Client{Transport: memTransport{sim}}
		}})
		if err != nil {
			t.Fatal(err)
		}
		defer d.close()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		if err := d.Start(ctx); err != nil {
			t.Fatal(err)
		}
		run, err := d.RunNow(ctx, "fails", time.Time{}, time.Time{})
		if err != nil || run.State != "failed" || run.Calls != 2 {
			t.Fatalf("RunNow = %+v, %v; want failed after 2 calls", run, err)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		es, err := d.RunEvidence(ctx, run.ID)
		if err != nil || len(es) != 1 {
			t.Fatalf("evidence = %+v, %v", es, err)
		}
		if e := es[0]; e.State != store.EvidencePending || !strings.HasPrefix(e.Reason, "deferred: budget exhausted") ||
			!e.NextAt.Equal(frees) {
			t.Fatalf("at %s: %s %q next %s; want deferred to %s", time.Now().UTC().Format("15:04"), e.State, e.Reason,
				e.NextAt.Format("15:04:05"), frees.Format("15:04:05"))
		}
		countLogs := func() (n int, first time.Time) {
			for _, r := range sim.Requests() {
				if strings.HasSuffix(r.Path, "/ProcessLog") {
					if n == 0 {
						first = r.Time
					}
					n++
				}
			}
			return n, first
		}
		if n, _ := countLogs(); n != 0 {
			t.Fatalf("%d ProcessLog requests while deferred; want 0", n)
		}

		time.Sleep(time.Until(frees.Add(time.Minute)))
		synctest.Wait()
		es, _ = d.RunEvidence(ctx, run.ID)
		if e := es[0]; e.State != store.EvidenceKept {
			t.Fatalf("at %s: %s %q; want kept once the window freed", time.Now().UTC().Format("15:04"), e.State, e.Reason)
		}
		if n, at := countLogs(); n != 1 || at.Before(frees) {
			t.Errorf("%d ProcessLog requests, the first at %s; want 1, at or after %s", n, at.Format("15:04:05"), frees.Format("15:04:05"))
		}
	})
}

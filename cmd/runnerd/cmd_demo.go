package main

import (
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/logging"
	"runnerd/internal/store"
)

// cmdDemo runs the simulated AtomSphere and the daemon together on the example
// jobs, fires each job once at start, and after -for prints what happened.
func cmdDemo(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "demo", &c, false)
	if e.getenv("RUNNERD_CONFIG") == "" {
		fs.Lookup("config").DefValue = "jobs.example.toml"
		fs.Set("config", "jobs.example.toml")
	}
	dur := fs.Duration("for", time.Minute, "how long to run before printing the results")
	dir := fs.String("dir", "", "`directory` for the database and the exports (default: a new temporary one)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	if *dir == "" {
		d, err := os.MkdirTemp("", "runnerd-demo-")
		if err != nil {
			return err
		}
		*dir = d
	}

	// The simulated AtomSphere on loopback, with executions that finish in 10 s.
	opts := atomsim.Options{ExecDuration: 10 * time.Second}
	sim := atomsim.New(opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	defer srv.Close()
	base := "http://" + ln.Addr().String() + "/api/rest/v1"

	// The example configuration, pointed at the simulator and the demo directory.
	const pwEnv = "RUNNERD_DEMO_SIM_PASSWORD"
	demoEnv := &env{stdout: e.stdout, stderr: e.stderr, getenv: func(k string) string {
		if k == pwEnv {
			return "sim-password"
		}
		return e.getenv(k)
	}}
	cfg, err := loadConfig(demoEnv, c.config)
	if err != nil {
		return err
	}
	cfg.Account.ID, cfg.Account.URL, cfg.Account.User = "sim-account", base, "runnerd@sim"
	cfg.Account.PasswordFile, cfg.Account.PasswordEnv, cfg.Account.Credential = "", pwEnv, ""
	cfg.Store.Path = filepath.Join(*dir, "runnerd.db")
	cfg.HTTP.Listen = ""
	cfg.Notify = nil // the example's targets point at hosts the demo does not run
	logger, _, err := logging.New(e.stderr, "info", "text", e.getenv)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "runnerd demo: simulated AtomSphere at %s; database and exports in %s\n", base, *dir)
	fmt.Fprintf(e.stdout, "running %d jobs from %s once now, then on their schedules, for %s\n\n", len(cfg.Jobs), cfg.File, *dur)

	d, err := newDaemon(ctx, demoEnv, cfg, logger, daemonOptions{outputDir: *dir})
	if err != nil {
		return err
	}
	defer d.close()
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	if err := d.Start(runCtx); err != nil {
		return err
	}
	var wg sync.WaitGroup
	for _, j := range cfg.Jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := d.RunNow(runCtx, j.Name, time.Time{}, time.Time{}); err != nil {
				logger.Warn("demo: run", "job", j.Name, "err", err)
			}
		}()
	}
	select {
	case <-ctx.Done():
	case <-time.After(*dur):
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d.Stop(sctx, stopGrace)
	cancelRuns()
	wg.Wait()
	if err := d.report(context.WithoutCancel(ctx), e, len(sim.Requests())); err != nil {
		return err
	}
	// Leave a configuration beside the database, so the ledger can be looked
	// at with the ordinary commands afterwards.
	conf := filepath.Join(*dir, "demo.toml")
	if f, err := os.OpenFile(conf, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
		werr := cfg.Encode(f)
		if cerr := f.Close(); werr == nil && cerr == nil {
			fmt.Fprintf(e.stdout, "\nlook again later: runnerd history -config %s   (also calls, budget, audit, plan)\n", conf)
		}
	}
	return nil
}

// report prints the demo's history, a summary of the ledger, and the budget.
func (d *daemon) report(ctx context.Context, e *env, simRequests int) error {
	w := e.stdout
	fmt.Fprintln(w, "\n== history (runnerd history)")
	runs, err := d.DB().ListRuns(ctx, store.RunFilter{})
	if err != nil {
		return err
	}
	if err := writeRuns(e, false, runs); err != nil {
		return err
	}
	fmt.Fprintln(w, "\n== calls by job and operation (runnerd calls)")
	groups, err := d.DB().CallSummary(ctx)
	if err != nil {
		return err
	}
	t := newTable(w, "JOB", "OPERATION", "STATUS", "CALLS")
	total := 0
	for _, g := range groups {
		t.row(dash(g.Job), g.Operation, fmt.Sprint(g.Status), fmt.Sprint(g.Calls))
		total += g.Calls
	}
	t.flush()
	fmt.Fprintf(w, "%d calls in the ledger; the simulator received %d requests\n", total, simRequests)
	fmt.Fprintln(w, "\n== budget (runnerd budget)")
	j, err := budgetOf(ctx, d.Config(), d.DB(), d.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "daily limit %d, reserve %d, rate %g/s: used %d in the rolling 24 h, %d left for runnerd's work\n",
		j.DailyLimit, j.Reserve, j.Rate, j.Used, j.Remaining)
	fmt.Fprintf(w, "503 classification: %s\n", j.Classification)
	return nil
}

package main

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"runnerd"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/engine"
	"runnerd/internal/logging"
	"runnerd/internal/store"
)

// cmdDemo runs the simulated AtomSphere and the daemon together on the
// example's jobs with an allowance small enough that the budget has to
// choose: each enabled job is fired once, highest priority first; the high
// and normal runs are served and the low exports deferred with their reason.
// It prints the status page's URL first and ends as soon as the story is told
// (or at -for), with what happened.
func cmdDemo(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "demo", &c, false)
	if e.getenv("RUNNERD_CONFIG") == "" {
		fs.Lookup("config").DefValue = "jobs.example.toml"
		fs.Set("config", "jobs.example.toml")
	}
	dur := fs.Duration("for", time.Minute, "at most this long, then stop and print the results")
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
	} else if err := os.MkdirAll(*dir, 0o700); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
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
	cfg.HTTP.Listen = "" // served below, on a free port
	cfg.Notify = nil     // the example's targets point at hosts the demo does not run
	// An allowance a tenth below what the high and normal jobs need in a day:
	// the budget has to choose, and the low exports are the ones that wait.
	need, err := engine.DailyNeed(ctx, cfg, nil, runnerd.PriorityNormal, time.Now())
	if err != nil {
		return configErr(err)
	}
	capacity := max(1, need-need/10)
	cfg.Budget.DailyLimit = capacity + capacity/10 + 1
	cfg.Budget.Reserve = cfg.Budget.DailyLimit - capacity

	// The simulated AtomSphere on loopback, with the same allowance and
	// executions that finish in 10 s.
	sim := atomsim.New(atomsim.Options{ExecDuration: 10 * time.Second, DailyLimit: cfg.Budget.DailyLimit})
	srv := &http.Server{Handler: sim, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(ln)
	defer srv.Close()
	logger, _, err := logging.New(e.stderr, "info", "text", e.getenv)
	if err != nil {
		return err
	}
	d, err := newDaemon(ctx, demoEnv, cfg, logger, daemonOptions{outputDir: *dir})
	if err != nil {
		return err
	}
	defer d.close()
	pageLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	d.Serve(pageLn)
	page := "http://" + pageLn.Addr().String() + "/"
	fmt.Fprintf(e.stdout, "status page: %s   (open it while the demo runs)\n", page)
	fmt.Fprintf(e.stdout, "runnerd demo: simulated AtomSphere at %s; database and exports in %s\n", base, *dir)
	fmt.Fprintf(e.stdout, "allowance %d calls a day, %d kept in reserve: %d for runnerd, less than the %d its high and normal jobs need\n",
		cfg.Budget.DailyLimit, cfg.Budget.Reserve, capacity, need)
	fmt.Fprintf(e.stdout, "firing each enabled job once, highest priority first: the budget serves the high run and defers the low ones\n\n")

	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	if err := d.Start(runCtx); err != nil {
		return err
	}
	storyCtx, cancelStory := context.WithTimeout(ctx, *dur)
	defer cancelStory()
	jobs := slices.Clone(cfg.Jobs)
	prio := func(j config.Job) runnerd.Priority { p, _ := runnerd.ParsePriority(j.Priority); return p }
	slices.SortStableFunc(jobs, func(a, b config.Job) int { return cmp.Compare(prio(b), prio(a)) })
	for _, j := range jobs {
		if !j.Enabled {
			fmt.Fprintf(e.stdout, "%-18s %-6s not fired: enabled = false\n", j.Name, j.Priority)
			continue
		}
		r, err := d.RunNow(storyCtx, j.Name, time.Time{}, time.Time{})
		if err != nil {
			fmt.Fprintf(e.stdout, "%-18s %-6s %v\n", j.Name, j.Priority, err)
			if storyCtx.Err() != nil {
				break
			}
			continue
		}
		why := r.Error
		if r.State == runnerd.StateDeferred {
			why = r.Reason
		}
		fmt.Fprintf(e.stdout, "%-18s %-6s %s, %d calls%s\n", j.Name, j.Priority, r.State, r.Calls, strings.TrimRight(": "+why, ": "))
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	d.Stop(sctx, stopGrace)
	cancelRuns()
	if err := d.report(context.WithoutCancel(ctx), e, len(sim.Requests())); err != nil {
		return err
	}
	if resp, err := http.Get(page); err != nil {
		fmt.Fprintf(e.stdout, "\nstatus page %s: %v\n", page, err)
	} else {
		n, _ := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		fmt.Fprintf(e.stdout, "\nstatus page %s answered %d (%d bytes)\n", page, resp.StatusCode, n)
	}
	// Leave a configuration beside the database, so the ledger can be looked
	// at with the ordinary commands afterwards.
	conf := filepath.Join(*dir, "demo.toml")
	if f, err := os.OpenFile(conf, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644); err == nil {
		werr := cfg.Encode(f)
		if cerr := f.Close(); werr == nil && cerr == nil {
			fmt.Fprintf(e.stdout, "look again later: runnerd history -config %s   (also status, calls, budget, audit, plan)\n", conf)
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

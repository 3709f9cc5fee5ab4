package main

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/config"
	"runnerd/internal/control"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/store"
	"runnerd/internal/timespec"
)

// cmdRun runs one job now. With a daemon running, the run is handed to it
// through the control socket (one budget spender); otherwise this process takes
// the spender lock and runs the job through the same planner and ledger.
func cmdRun(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "run", &c, true)
	from := fs.String("from", "", "export backfill: window start `T` (RFC 3339 or an age such as 7d)")
	to := fs.String("to", "", "export backfill: window end `T` (RFC 3339 or an age; default now)")
	yes := fs.Bool("yes", false, "export backfill: proceed although the estimate is above the threshold")
	evWait := fs.Duration("evidence-wait", 2*time.Minute, "without a daemon: wait up to `D` for a failed execution's process log before exiting (0s: the daemon fetches it later)")
	maxCalls := fs.Int("max-calls", 0, "export backfill: ask for -yes above `N` estimated calls (default: 10% of the budget remaining)")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("run: want exactly one JOB")
	}
	now := time.Now()
	var fromT, toT time.Time
	if *from != "" || *to != "" {
		if fromT, err = timespec.Parse(*from, now); err != nil || fromT.IsZero() {
			return usagef("run: -from: want a time when -to is given: %v", err)
		}
		if toT, err = timespec.Parse(*to, now); err != nil {
			return usagef("run: -to: %v", err)
		}
		if toT.IsZero() {
			toT = now
		}
		if !fromT.Before(toT) {
			return usagef("run: -from %s is not before -to %s", report.RFC3339(fromT), report.RFC3339(toT))
		}
	}
	if *maxCalls < 0 {
		return usagef("run: -max-calls %d: want a positive number", *maxCalls)
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	if !fromT.IsZero() {
		if err := checkBackfill(ctx, e, cfg, pos[0], fromT, toT, now, *maxCalls, *yes); err != nil {
			return err
		}
	}
	req := control.Request{Op: "run", Job: pos[0], From: report.RFC3339(fromT), To: report.RFC3339(toT)}
	resp, viaDaemon, lock, err := handOverOrLock(ctx, e, cfg, req)
	if err != nil {
		return err
	}
	if !viaDaemon {
		d, err := localDaemon(ctx, e, cfg, lock)
		if err != nil {
			return err
		}
		defer d.close()
		resp = d.handleControl(ctx, req)
		if resp.Run != nil && resp.Run.State == string(runnerd.StateFailed) && *evWait > 0 {
			// No daemon will fetch it soon: fetch the evidence now, within a
			// bound, through the same budget. What is not done by then stays
			// queued for the next daemon or run.
			wctx, cancel := context.WithTimeout(ctx, *evWait)
			d.FetchEvidence(wctx, resp.Run.ID)
			cancel()
			if es, err := d.RunEvidence(ctx, resp.Run.ID); err == nil {
				for _, x := range es {
					resp.Run.Evidence = append(resp.Run.Evidence, report.ToEvidence(x))
				}
			}
		}
		if resp.Run != nil && cfg.Job(pos[0]) != nil && len(cfg.Chain(pos[0])) > 1 {
			// No daemon goes on with the chain: its steps run here, before
			// this process exits, and are reported after the first.
			d.Scheduler().WaitChains(ctx)
			err := reportRun(e, c.json, resp)
			if !reportChain(ctx, e, d, c.json, cfg, resp.Run) && err == nil {
				err = errSilent
			}
			return err
		}
	}
	return reportRun(e, c.json, resp)
}

// reportRun prints the outcome of a run and maps it to the exit code: 0 when it
// succeeded, 1 when it failed or was deferred, 2 for a usage error.
func reportRun(e *env, asJSON bool, resp control.Response) error {
	if !resp.OK && resp.Run == nil {
		if resp.Usage {
			return usageError{errors.New(resp.Error)}
		}
		return errors.New(resp.Error)
	}
	r := resp.Run
	if asJSON {
		if err := jsonLines(e.stdout, r); err != nil {
			return err
		}
	} else {
		fmt.Fprintf(e.stdout, "run %d: job %s %s: %s, %d calls", r.ID, r.Job, r.NominalTime, r.State, r.Calls)
		if r.Error != "" {
			fmt.Fprintf(e.stdout, ": %s", r.Error)
		} else if r.Reason != "" {
			fmt.Fprintf(e.stdout, ": %s", r.Reason)
		}
		fmt.Fprintln(e.stdout)
		for _, x := range r.Evidence {
			switch x.State {
			case store.EvidenceKept:
				fmt.Fprintf(e.stdout, "evidence: %s kept in %s (%d bytes): runnerd logs %d\n", x.Kind, x.Path, x.Bytes, r.ID)
			default:
				fmt.Fprintf(e.stdout, "evidence: %s %s: %s\n", x.Kind, strings.ReplaceAll(x.State, "_", " "), x.Reason)
			}
		}
	}
	if r.State != string(runnerd.StateSucceeded) {
		return errSilent
	}
	return nil
}

// reportChain prints the runs the chain steps after first made, in chain
// order; ok is false when one did not succeed.
func reportChain(ctx context.Context, e *env, d *daemon, asJSON bool, cfg *config.Config, first *report.Run) (ok bool) {
	runs, err := d.ChainRuns(ctx, first.ID)
	if err != nil {
		fmt.Fprintf(e.stderr, "runnerd run: the chain's runs cannot be read: %v\n", err)
		return false
	}
	ok = true
	for _, x := range runs {
		r := report.ToRun(x)
		ok = ok && x.State == runnerd.StateSucceeded
		if asJSON {
			jsonLines(e.stdout, r)
			continue
		}
		after := ""
		if j := cfg.Job(x.Job); j != nil {
			after = " (after " + j.After + ")"
		}
		fmt.Fprintf(e.stdout, "run %d: job %s %s%s: %s, %d calls", r.ID, r.Job, r.NominalTime, after, r.State, r.Calls)
		if r.Error != "" {
			fmt.Fprintf(e.stdout, ": %s", r.Error)
		} else if r.Reason != "" {
			fmt.Fprintf(e.stdout, ": %s", r.Reason)
		}
		fmt.Fprintln(e.stdout)
	}
	return ok
}

func cmdPause(ctx context.Context, e *env, args []string) error {
	return pauseResume(ctx, e, "pause", args)
}
func cmdResume(ctx context.Context, e *env, args []string) error {
	return pauseResume(ctx, e, "resume", args)
}

func pauseResume(ctx context.Context, e *env, op string, args []string) error {
	var c common
	fs := newFlagSet(e, op, &c, false)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("%s: want exactly one JOB", op)
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	if cfg.Job(pos[0]) == nil {
		return usagef("%s: no job %q in %s (%s)", op, pos[0], cfg.File, cfg.JobHint(pos[0]))
	}
	req := control.Request{Op: op, Job: pos[0]}
	resp, viaDaemon, lock, err := handOverOrLock(ctx, e, cfg, req)
	if err != nil {
		return err
	}
	if !viaDaemon {
		defer lock.Release()
		db, err := openStore(ctx, cfg, store.Options{})
		if err != nil {
			return err
		}
		defer db.Close()
		if err := db.SetPaused(ctx, pos[0], op == "pause"); err != nil {
			return err
		}
		resp.OK = true
	}
	if !resp.OK {
		if resp.Usage {
			return usageError{errors.New(resp.Error)}
		}
		return errors.New(resp.Error)
	}
	fmt.Fprintf(e.stdout, "%s: %sd\n", pos[0], op)
	return nil
}

// cmdResumeAuth closes the running daemon's auth breaker. The breaker lives
// in the daemon's memory: with no daemon there is nothing to close (a new
// process starts with it closed).
func cmdResumeAuth(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "resume-auth", &c, false)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("resume-auth: takes no arguments")
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	resp, ok, err := control.Call(ctx, socketPath(e.getenv, cfg.Store.Path), control.Request{Op: "resume-auth"})
	switch {
	case err != nil:
		return err
	case !ok:
		fmt.Fprintln(e.stdout, "no daemon is running: nothing to resume (a new runnerd starts with the auth breaker closed)")
		return nil
	case !resp.OK:
		return errors.New(resp.Error)
	case resp.Was == "open":
		fmt.Fprintln(e.stdout, "auth breaker closed: the next call tries the credential (two more rejections open it again)")
	default:
		fmt.Fprintln(e.stdout, "the auth breaker was not open: nothing to do")
	}
	return nil
}

// checkBackfill vets runnerd run JOB -from -to before anything is sent
// (engine.PlanBackfill), prints the estimate, and asks for -yes above the
// threshold.
func checkBackfill(ctx context.Context, e *env, cfg *config.Config, name string, from, to, now time.Time, maxCalls int, yes bool) error {
	// Read-only, and a host with no ledger yet has no history: the defaults.
	db, err := readLedger(ctx, cfg)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	p, err := engine.PlanBackfill(ctx, cfg, db, name, from, to, now, maxCalls)
	if err != nil {
		if errors.As(err, new(engine.ConfigError)) {
			return usagef("run: %v", err)
		}
		return err
	}
	est := p.Estimate
	fmt.Fprintf(e.stderr, "backfill %s: %s from %s to %s (%s, %d window(s)): ≈ %.0f records → ≈ %d calls (%s); threshold %d (%s)\n",
		name, p.Job.Object, report.RFC3339(from), report.RFC3339(to), to.Sub(from).Round(time.Second), est.Windows, est.Records, est.Calls,
		est.Basis, p.Threshold, p.Why)
	if p.NeedsConfirm() && !yes {
		return usagef("run: the backfill of %s is estimated at %d calls, above the threshold of %d; nothing was sent: add -yes to proceed (or narrow -from/-to)",
			name, est.Calls, p.Threshold)
	}
	if est.Calls > p.Remaining {
		fmt.Fprintf(e.stderr, "backfill %s: only %d calls remain in the budget: the export will stop there, keep what it completed and be deferred\n",
			name, p.Remaining)
	}
	return nil
}

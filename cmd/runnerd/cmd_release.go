package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"runnerd/internal/config"
	"runnerd/internal/control"
	"runnerd/internal/scheduler/kinds"
)

// cmdRelease runs a release job now (as `runnerd run`), or with -dry-run
// shows its steps, what each would change and what the run would cost,
// making only the lookups it lists.
func cmdRelease(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "release", &c, true)
	dry := fs.Bool("dry-run", false, "change nothing: show the steps, what each would change, the calls the run would cost, and the lookups made")
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("release: want exactly one JOB")
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	j := cfg.Job(pos[0])
	if j == nil {
		return usagef("release: no job %q in %s (%s)", pos[0], cfg.File, cfg.JobHint(pos[0]))
	}
	if j.Kind != config.KindRelease {
		return usagef("release: job %q is a %s job; runnerd run %s runs it", j.Name, j.Kind, j.Name)
	}
	if !*dry {
		runArgs := []string{"-config", c.config}
		if c.json {
			runArgs = append(runArgs, "-json")
		}
		return cmdRun(ctx, e, append(runArgs, j.Name))
	}
	req := control.Request{Op: "release-plan", Job: j.Name}
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
	}
	if !resp.OK {
		if resp.Usage {
			return usageError{errors.New(resp.Error)}
		}
		return errors.New(resp.Error)
	}
	var plan kinds.ReleasePlan
	if err := json.Unmarshal(resp.Plan, &plan); err != nil {
		return err
	}
	if c.json {
		return jsonLines(e.stdout, plan)
	}
	fmt.Fprintf(e.stdout, "release %s (dry run: nothing changed)\n\n", j.Name)
	t := newTable(e.stdout, "STEP", "WHAT IT WOULD CHANGE", "CALLS")
	for _, s := range plan.Steps {
		t.row(s.Step, s.Change, fmt.Sprint(s.Calls))
	}
	if err := t.flush(); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "\nthe run would cost about %d calls; this plan made %d lookups:\n", plan.Cost, len(plan.Lookups))
	for _, l := range plan.Lookups {
		fmt.Fprintf(e.stdout, "  %s\n", l)
	}
	return nil
}

package main

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/config"
	"runnerd/internal/scheduler"
	"runnerd/internal/scheduler/kinds"
)

// buildJobs maps the configuration's jobs to the scheduler's, each with its kind.
func (d *daemon) buildJobs(cfg *config.Config) ([]scheduler.Job, error) {
	var jobs []scheduler.Job
	for i := range cfg.Jobs {
		cj := &cfg.Jobs[i]
		loc, err := cj.Location()
		if err != nil {
			return nil, fmt.Errorf("job %q: %w", cj.Name, err)
		}
		prio := priorityOf(cj.Priority)
		j := scheduler.Job{
			Name: cj.Name, Kind: cj.Kind, Schedule: cj.Schedule, Location: loc, Priority: prio,
			Timeout: cj.Timeout.Duration, Overlap: cj.Overlap, CatchUp: cj.CatchUp,
			CatchUpWindow: cj.CatchUpWindow.Duration, Jitter: cj.Jitter.Duration, Retries: cj.Retries, Enabled: cj.Enabled,
		}
		switch cj.Kind {
		case "execute":
			j.Runner = &kinds.Execute{
				Client: d.client, ProcessID: cj.ProcessID, ProcessName: cj.ProcessName, AtomID: cj.AtomID,
				Method: cj.Method, Wait: cj.Wait, Properties: cj.Properties, Priority: prio, Poller: d.poller, Now: d.now,
			}
		case "deploy":
			j.Runner = &kinds.Deploy{
				Client: d.client, ProcessID: cj.ProcessID, FromEnv: cj.FromEnvironment, ToEnv: cj.ToEnvironment,
				Method: cj.Method, ListenerStatus: cj.ListenerStatus, Priority: prio,
			}
		case "export":
			var filters []atomapi.Expression
			for _, f := range cj.Filters {
				filters = append(filters, atomapi.Simple(f.Operator, f.Property, f.Arguments...))
			}
			out := cj.Output
			if d.outputDir != "" && !filepath.IsAbs(out) {
				out = filepath.Join(d.outputDir, out)
			}
			ex := &kinds.Export{
				Client: d.client, State: d.db, Object: cj.Object, WindowProperty: cj.WindowProperty,
				FirstWindow: cj.FirstWindow.Duration, Output: out, Format: cj.Format, Filters: filters,
				Priority: prio, Now: d.now,
			}
			if cj.Object == "AuditLog" {
				ex.Sink = d.db
			}
			j.Runner = ex
		default:
			return nil, fmt.Errorf("job %q: unknown kind %q", cj.Name, cj.Kind)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

// handleControl serves one control-socket request (and `runnerd run` in-process).
func (d *daemon) handleControl(ctx context.Context, req controlRequest) controlResponse {
	if req.Op == "ping" {
		return controlResponse{OK: true}
	}
	if _, err := d.findJob(req.Job); err != nil {
		return controlResponse{Error: err.Error(), Usage: true}
	}
	switch req.Op {
	case "pause", "resume":
		var err error
		if req.Op == "pause" {
			err = d.sched.Pause(ctx, req.Job)
		} else {
			err = d.sched.Resume(ctx, req.Job)
		}
		if err != nil {
			return controlResponse{Error: err.Error()}
		}
		return controlResponse{OK: true}
	case "run":
		var from, to time.Time
		var err error
		if req.From != "" {
			if from, err = time.Parse(time.RFC3339, req.From); err != nil {
				return controlResponse{Error: "from: " + err.Error(), Usage: true}
			}
		}
		if req.To != "" {
			if to, err = time.Parse(time.RFC3339, req.To); err != nil {
				return controlResponse{Error: "to: " + err.Error(), Usage: true}
			}
		}
		r, err := d.sched.RunNow(ctx, req.Job, from, to)
		if err != nil {
			return controlResponse{Error: err.Error(), Usage: errors.Is(err, scheduler.ErrPaused) || errors.Is(err, scheduler.ErrUnknownJob)}
		}
		j := toRunJSON(r)
		return controlResponse{OK: r.State == runnerd.StateSucceeded, Run: &j}
	}
	return controlResponse{Error: fmt.Sprintf("unknown operation %q", req.Op), Usage: true}
}

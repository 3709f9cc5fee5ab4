package engine

import (
	"fmt"
	"path/filepath"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/config"
	"runnerd/internal/scheduler"
	"runnerd/internal/scheduler/kinds"
)

// buildJobs maps the configuration's jobs to the scheduler's, each with its kind.
func (e *Engine) buildJobs(cfg *config.Config) ([]scheduler.Job, error) {
	var jobs []scheduler.Job
	for i := range cfg.Jobs {
		cj := &cfg.Jobs[i]
		loc, err := cj.Location()
		if err != nil {
			return nil, fmt.Errorf("job %q: %w", cj.Name, err)
		}
		prio, err := runnerd.ParsePriority(cj.Priority)
		if err != nil {
			return nil, fmt.Errorf("job %q: %w", cj.Name, err)
		}
		j := scheduler.Job{
			Name: cj.Name, Kind: cj.Kind, Schedule: cj.Schedule, Location: loc, Priority: prio,
			Timeout: cj.Timeout.Duration, Overlap: cj.Overlap, CatchUp: cj.CatchUp,
			CatchUpWindow: cj.CatchUpWindow.Duration, Jitter: cj.Jitter.Duration, Retries: cj.Retries, Enabled: cj.Enabled,
			After: cj.After, AfterStatus: cj.AfterStatus,
		}
		switch cj.Kind {
		case "execute":
			j.Runner = &kinds.Execute{
				Client: e.client, ProcessID: cj.ProcessID, ProcessName: cj.ProcessName, AtomID: cj.AtomID,
				Method: cj.Method, Wait: cj.Wait, Properties: cj.Properties, Priority: prio, Poller: e.poller, Now: e.now,
				Timeout: cj.Timeout.Duration, OnTimeout: cj.OnTimeout,
			}
		case "deploy":
			j.Runner = &kinds.Deploy{
				Client: e.client, ProcessID: cj.ProcessID, FromEnv: cj.FromEnvironment, ToEnv: cj.ToEnvironment,
				Method: cj.Method, ListenerStatus: cj.ListenerStatus, Priority: prio,
			}
		case "release":
			deploy := &kinds.Deploy{
				Client: e.client, ProcessID: cj.ProcessID, FromEnv: cj.FromEnvironment, ToEnv: cj.ToEnvironment,
				Method: cj.Method, ListenerStatus: cj.ListenerStatus, Priority: prio,
			}
			j.Runner = e.releaseKind(cj, deploy)
		case "export":
			var filters []atomapi.Expression
			for _, f := range cj.Filters {
				filters = append(filters, atomapi.Simple(f.Operator, f.Property, f.Arguments...))
			}
			out := cj.Output
			if e.opts.OutputDir != "" && !filepath.IsAbs(out) {
				out = filepath.Join(e.opts.OutputDir, out)
			}
			ex := &kinds.Export{
				Client: e.client, State: e.db, Object: cj.Object, WindowProperty: cj.WindowProperty,
				FirstWindow: cj.FirstWindow.Duration, Output: out, Format: cj.Format, Filters: filters,
				Priority: prio, Now: e.now,
			}
			if cj.Object == "AuditLog" {
				ex.Sink = e.db
			}
			j.Runner = ex
		default:
			return nil, fmt.Errorf("job %q: unknown kind %q", cj.Name, cj.Kind)
		}
		jobs = append(jobs, j)
	}
	return jobs, nil
}

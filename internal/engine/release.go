package engine

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/config"
	"runnerd/internal/scheduler/kinds"
	"runnerd/internal/store"
)

// releaseKind builds a release job's kind.
func (e *Engine) releaseKind(cj *config.Job, deploy *kinds.Deploy) *kinds.Release {
	r := &kinds.Release{
		Client: e.client, Obligations: e.db, ProcessID: cj.ProcessID, Atoms: cj.Atoms, PauseSchedules: cj.PauseSchedules,
		Listeners: cj.Listeners, ListenerTimeout: cj.ListenerTimeout.Duration, ToEnv: cj.ToEnvironment, Deploy: deploy,
		SmokeTimeout: cj.SmokeTimeout.Duration, Now: e.now,
	}
	r.Priority = deploy.Priority
	if cj.Extensions != nil {
		x := *cj.Extensions
		opts := config.LoadOptions{Getenv: e.getenv}
		r.Extensions = func(cur atomapi.EnvironmentExtensions) (atomapi.EnvironmentExtensions, []string, error) {
			return ExtensionsUpdate(cj.ToEnvironment, x, cur, opts)
		}
	}
	if cj.SmokeProcessID != "" {
		atom := cj.SmokeAtomID
		if atom == "" && len(cj.Atoms) > 0 {
			atom = cj.Atoms[0]
		}
		r.Smoke = &kinds.Execute{Client: e.client, ProcessID: cj.SmokeProcessID, AtomID: atom, Method: kinds.MethodRequest,
			Wait: true, Priority: deploy.Priority, Poller: e.poller, Now: e.now, Timeout: cj.SmokeTimeout.Duration}
	}
	return r
}

// ExtensionsUpdate builds the partial update that sets x on environment env,
// given its current extensions, and says what it changes. Only what x names
// is sent: the connection fields given, each process-property component
// given (whole, as the platform needs it: its other values as they are), the
// properties given. A value equal to the current one is no change; an
// encrypted value (from a secret file) is never compared — the platform does
// not return it — and always sent. Secrets are read from their files here,
// at each run, with password_file's rules.
func ExtensionsUpdate(env string, x config.Extensions, cur atomapi.EnvironmentExtensions, opts config.LoadOptions) (atomapi.EnvironmentExtensions, []string, error) {
	upd := atomapi.EnvironmentExtensions{ID: cur.ID, EnvironmentID: env, ExtensionGroupID: cur.ExtensionGroupID, Partial: true}
	if upd.ID == "" {
		upd.ID = env
	}
	var changes []string
	secret := func(path string) (*string, error) {
		s, err := config.ReadSecretFile(path, opts)
		if err != nil {
			return nil, err
		}
		v := s.Reveal()
		return &v, nil
	}
	if len(x.Connections) > 0 {
		upd.Connections = &atomapi.ExtConnections{}
		for _, c := range x.Connections {
			var have *atomapi.ExtConnection
			if cur.Connections != nil {
				for i := range cur.Connections.Connection {
					if cur.Connections.Connection[i].ID == c.ID {
						have = &cur.Connections.Connection[i]
					}
				}
			}
			if have == nil {
				return upd, nil, fmt.Errorf("connection %q is not among %s's extensions", c.ID, env)
			}
			out := atomapi.ExtConnection{ID: c.ID, Name: have.Name}
			for _, name := range sortedKeys(c.Fields) {
				v := c.Fields[name]
				f, ok := field(have.Field, name)
				if !ok {
					return upd, nil, fmt.Errorf("connection %q has no field %q", c.ID, name)
				}
				if f.Value != nil && *f.Value == v && !bool(f.UseDefault) {
					continue
				}
				out.Field = append(out.Field, atomapi.ExtField{ID: name, Value: &v})
				changes = append(changes, fmt.Sprintf("connection %s field %s: %q → %q", c.ID, name, deref(f.Value), v))
			}
			for _, name := range sortedKeys(c.SecretFiles) {
				if _, ok := field(have.Field, name); !ok {
					return upd, nil, fmt.Errorf("connection %q has no field %q", c.ID, name)
				}
				v, err := secret(c.SecretFiles[name])
				if err != nil {
					return upd, nil, fmt.Errorf("connection %q field %q: secret_files: %w", c.ID, name, err)
				}
				out.Field = append(out.Field, atomapi.ExtField{ID: name, Value: v, UsesEncryption: true})
				changes = append(changes, fmt.Sprintf("connection %s field %s: encrypted value set from its file (never compared)", c.ID, name))
			}
			if len(out.Field) > 0 {
				upd.Connections.Connection = append(upd.Connections.Connection, out)
			}
		}
		if len(upd.Connections.Connection) == 0 {
			upd.Connections = nil
		}
	}
	if len(x.ProcessProperties) > 0 {
		upd.ProcessProperties = &atomapi.ExtProcessProperties{}
		for _, pp := range x.ProcessProperties {
			var have *atomapi.ExtProcessProperty
			if cur.ProcessProperties != nil {
				for i := range cur.ProcessProperties.ProcessProperty {
					if cur.ProcessProperties.ProcessProperty[i].ID == pp.ID {
						have = &cur.ProcessProperties.ProcessProperty[i]
					}
				}
			}
			if have == nil {
				return upd, nil, fmt.Errorf("process property %q is not among %s's extensions", pp.ID, env)
			}
			// The component is sent whole: every current value, with the given ones set.
			whole := atomapi.ExtProcessProperty{ID: pp.ID, Name: have.Name}
			changed := false
			given := map[string]bool{}
			for k := range pp.Values {
				given[k] = true
			}
			for k := range pp.SecretFiles {
				given[k] = true
			}
			for k := range given {
				found := false
				for _, v := range have.ProcessPropertyValue {
					found = found || v.Key == k
				}
				if !found {
					return upd, nil, fmt.Errorf("process property %q has no key %q", pp.ID, k)
				}
			}
			for _, v := range have.ProcessPropertyValue {
				nv := atomapi.ExtPropertyValue{Key: v.Key, Label: v.Label, Value: v.Value, UseDefault: v.UseDefault, UsesEncryption: v.UsesEncryption}
				if bool(v.UsesEncryption) && !given[v.Key] {
					// Not returned, not ours to set: sent without a value, so it is kept.
					nv.Value = nil
				}
				if val, ok := pp.Values[v.Key]; ok {
					if v.Value == nil || *v.Value != val || bool(v.UseDefault) {
						changed = true
						changes = append(changes, fmt.Sprintf("process property %s %s: %q → %q", pp.ID, v.Key, deref(v.Value), val))
					}
					nv.Value, nv.UseDefault = &val, false
				}
				if path, ok := pp.SecretFiles[v.Key]; ok {
					s, err := secret(path)
					if err != nil {
						return upd, nil, fmt.Errorf("process property %q key %q: secret_files: %w", pp.ID, v.Key, err)
					}
					nv.Value, nv.UseDefault, nv.UsesEncryption = s, false, true
					changed = true
					changes = append(changes, fmt.Sprintf("process property %s %s: encrypted value set from its file (never compared)", pp.ID, v.Key))
				}
				whole.ProcessPropertyValue = append(whole.ProcessPropertyValue, nv)
			}
			if changed {
				upd.ProcessProperties.ProcessProperty = append(upd.ProcessProperties.ProcessProperty, whole)
			}
		}
		if len(upd.ProcessProperties.ProcessProperty) == 0 {
			upd.ProcessProperties = nil
		}
	}
	if len(x.Properties) > 0 {
		curProps := map[string]string{}
		if cur.Properties != nil {
			for _, p := range cur.Properties.Property {
				curProps[p.Name] = p.Value
			}
		}
		upd.Properties = &atomapi.ExtProperties{}
		for _, name := range sortedKeys(x.Properties) {
			v := x.Properties[name]
			if old, ok := curProps[name]; ok && old == v {
				continue
			}
			upd.Properties.Property = append(upd.Properties.Property, atomapi.ExtProperty{Name: name, Value: v})
			changes = append(changes, fmt.Sprintf("property %s: %q → %q", name, curProps[name], v))
		}
		if len(upd.Properties.Property) == 0 {
			upd.Properties = nil
		}
	}
	return upd, changes, nil
}

func field(fs []atomapi.ExtField, id string) (atomapi.ExtField, bool) {
	for _, f := range fs {
		if f.ID == id {
			return f, true
		}
	}
	return atomapi.ExtField{}, false
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func sortedKeys(m map[string]string) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// ResumeObligations carries out every open resume obligation — a release's
// pause that a crash (or a failed resume) left — before anything else runs:
// Start calls it first. Each is one call, a recovery call of its run.
func (e *Engine) ResumeObligations(ctx context.Context) (done int, err error) {
	return e.resumeObligations(ctx, "")
}

// resumeObligations is ResumeObligations for job's obligations only ("": all).
func (e *Engine) resumeObligations(ctx context.Context, job string) (done int, err error) {
	obs, err := e.db.OpenObligations(ctx, job)
	if err != nil {
		return 0, err
	}
	var failed []string
	for _, o := range obs {
		if !e.owns(o.Job) {
			continue // another instance's (a shared ledger): it resumes them
		}
		octx := atomapi.WithCallInfo(ctx, atomapi.CallInfo{RunID: o.RunID, Job: o.Job, Priority: runnerd.PriorityHigh, Recovery: true})
		if err := kinds.Resume(octx, e.client, e.db, o); err != nil {
			failed = append(failed, fmt.Sprintf("%s %s on %s (run %d): %v", o.Kind, o.ProcessID, o.Container, o.RunID, err))
			e.log.Error("release: an open resume obligation could not be carried out; it stays open", "job", o.Job,
				"run_id", o.RunID, "kind", o.Kind, "process", o.ProcessID, "atom", o.Container, "err", err)
			continue
		}
		done++
		e.log.Warn("release: resumed what an interrupted release had paused", "job", o.Job, "run_id", o.RunID,
			"kind", o.Kind, "process", o.ProcessID, "atom", o.Container)
	}
	if len(failed) > 0 {
		return done, fmt.Errorf("%d resume obligation(s) still open: %s", len(failed), strings.Join(failed, "; "))
	}
	return done, nil
}

// OpenObligations lists the resumes still owed (status, the status page).
func (e *Engine) OpenObligations(ctx context.Context) ([]store.Obligation, error) {
	return e.db.OpenObligations(ctx, "")
}

// ReleasePlan is `runnerd release JOB -dry-run`: what a run of release job
// name would do, change and cost now, found with the lookups it lists (as
// calls of no run, at the job's priority, through the gate and the ledger).
func (e *Engine) ReleasePlan(ctx context.Context, name string) (kinds.ReleasePlan, error) {
	cj, err := e.Job(name)
	if err != nil {
		return kinds.ReleasePlan{}, err
	}
	if cj.Kind != config.KindRelease {
		return kinds.ReleasePlan{}, fmt.Errorf("job %q is a %s job, not a release", name, cj.Kind)
	}
	prio, err := runnerd.ParsePriority(cj.Priority)
	if err != nil {
		return kinds.ReleasePlan{}, err
	}
	deploy := &kinds.Deploy{Client: e.client, ProcessID: cj.ProcessID, FromEnv: cj.FromEnvironment, ToEnv: cj.ToEnvironment,
		Method: cj.Method, ListenerStatus: cj.ListenerStatus, Priority: prio}
	ctx = atomapi.WithCallInfo(ctx, atomapi.CallInfo{Job: name, Priority: prio})
	return e.releaseKind(cj, deploy).Plan(ctx)
}

// ChainRuns returns, in chain order, the runs the steps after run id's job
// made for its slot (a chain's steps share their first step's slot); a
// step that made none is left out.
func (e *Engine) ChainRuns(ctx context.Context, id int64) ([]runnerd.Run, error) {
	first, err := e.db.GetRun(ctx, id)
	if err != nil {
		return nil, err
	}
	steps := e.Config().Chain(first.Job)
	if len(steps) < 2 {
		return nil, nil
	}
	var out []runnerd.Run
	for _, j := range steps[1:] {
		r, err := e.db.RunByNominal(ctx, j.Name, first.NominalTime)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return out, err
		}
		out = append(out, r)
	}
	return out, nil
}

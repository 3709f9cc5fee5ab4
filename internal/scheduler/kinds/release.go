package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// ReleaseClient is what the release kind needs from the AtomSphere client.
type ReleaseClient interface {
	DeployClient
	ExecuteClient
	Get(ctx context.Context, object, id string, out any) error
	QueryProcessScheduleStatus(ctx context.Context, atomID, processID string) ([]atomapi.ProcessScheduleStatus, error)
	SetProcessScheduleStatus(ctx context.Context, s atomapi.ProcessScheduleStatus) (atomapi.ProcessScheduleStatus, error)
	ChangeListenerStatus(ctx context.Context, containerID, listenerID, action string) error
	QueryListenerStatus(ctx context.Context, containerID, listenerID string) (string, error)
	ListenerStatusResponse(ctx context.Context, token string) ([]atomapi.ListenerStatus, bool, error)
	GetEnvironmentExtensions(ctx context.Context, environmentID string) (atomapi.EnvironmentExtensions, error)
	UpdateEnvironmentExtensions(ctx context.Context, x atomapi.EnvironmentExtensions) (atomapi.EnvironmentExtensions, error)
}

// Obligations keeps the resumes a release owes: recorded before each pause is
// sent (the store commits it), closed once the resume was accepted.
type Obligations interface {
	OpenObligation(ctx context.Context, o store.Obligation) (int64, error)
	CloseObligation(ctx context.Context, id int64) error
	ObligationFailed(ctx context.Context, id int64, why string) error
}

// FailReleasePaused is the crash suite's failpoint: a release has paused
// what it pauses and resumed nothing yet.
const FailReleasePaused = "release-paused"

// resumeBound is how long the resumes may take after the run's context ended
// (a failure, the timeout, a stop).
const resumeBound = 2 * time.Minute

// Release is a guarded promotion (see jobs.example.toml): pre-checks, pause,
// extensions, deploy, resume and verify, smoke test.
type Release struct {
	Client         ReleaseClient
	Obligations    Obligations
	ProcessID      string
	Atoms          []string
	PauseSchedules bool
	Listeners      []string
	// ListenerTimeout bounds the wait until the paused listeners listen again.
	ListenerTimeout time.Duration
	// Extensions builds the partial update for to_environment from the
	// current extensions (nil: none). It reads the secret files at each run.
	Extensions func(current atomapi.EnvironmentExtensions) (update atomapi.EnvironmentExtensions, changes []string, err error)
	ToEnv      string
	Deploy     *Deploy  // the deploy step
	Smoke      *Execute // nil: no smoke test
	// SmokeTimeout bounds the smoke test (0: the run's own timeout only).
	SmokeTimeout time.Duration
	Priority     runnerd.Priority
	Now          func() time.Time
	Sleep        func(ctx context.Context, d time.Duration) error
}

// ReleaseDetail is a release run's Detail.
type ReleaseDetail struct {
	Steps      []string          `json:"steps"` // what was done, in order
	Paused     []string          `json:"paused,omitempty"`
	Resumed    []string          `json:"resumed,omitempty"`
	Extensions []string          `json:"extensions,omitempty"` // what the update changed
	Deploy     json.RawMessage   `json:"deploy,omitempty"`     // the deploy step's detail
	Smoke      json.RawMessage   `json:"smoke,omitempty"`      // the smoke test's detail
	Unresumed  []string          `json:"unresumed,omitempty"`  // resumes that did not go (the obligation stays open)
	Listeners  map[string]string `json:"listeners,omitempty"`
}

// pause is one thing the release paused, with its open obligation.
type pause struct {
	obligation int64
	kind       string
	atom       string
	process    string
	status     atomapi.ProcessScheduleStatus
}

func (p pause) String() string {
	if p.kind == store.ObligationSchedule {
		return "schedules of " + p.process + " on " + p.atom
	}
	return "listener " + p.process + " on " + p.atom
}

// Run implements scheduler.Kind.
func (k *Release) Run(ctx context.Context, rc *scheduler.RunContext) scheduler.Outcome {
	ctx = callCtx(ctx, rc, k.Priority)
	d := &ReleaseDetail{}
	step := func(s string) { d.Steps = append(d.Steps, s) }

	// Pre-checks: nothing is changed unless every target runtime is online.
	for _, a := range k.Atoms {
		var atom atomapi.Atom
		if err := k.Client.Get(ctx, "Atom", a, &atom); err != nil {
			return readFailure("release pre-check: atom "+a, err, defaultIsBudgetStop, d)
		}
		if !strings.EqualFold(atom.Status, "ONLINE") {
			return scheduler.Outcome{State: runnerd.StateFailed, Detail: toJSON(d),
				Err: fmt.Errorf("release pre-check: atom %s is %s (%s); nothing was changed", a, atom.Status, atom.StatusDetail)}
		}
	}
	step("pre-check: " + strings.Join(k.Atoms, ", ") + " online")

	// Pre-check the package, with the lookup the deploy itself needs (made
	// once: the deploy step of this run uses its answer).
	dep := *k.Deploy
	deploy := true
	if dep.Method == "" || dep.Method == MethodPackage {
		pkgs, err := dep.activePackages(ctx)
		if err != nil {
			return readFailure("release pre-check: active packages", err, defaultIsBudgetStop, d)
		}
		from, to, found, done := dep.pending(pkgs)
		switch {
		case !found:
			return scheduler.Outcome{State: runnerd.StateFailed, Detail: toJSON(d),
				Err: fmt.Errorf("release pre-check: process %s has no active package in %s; nothing was changed", k.ProcessID, dep.FromEnv)}
		case done:
			deploy = false
			step(fmt.Sprintf("pre-check: %s already runs package %s (version %s): nothing to deploy, nothing paused", dep.ToEnv, from.PackageID, from.PackageVersion))
		default:
			cur := "nothing"
			if to.PackageID != "" {
				cur = "package " + to.PackageID + " (version " + to.PackageVersion + ")"
			}
			step(fmt.Sprintf("pre-check: %s: %s → package %s (version %s)", dep.ToEnv, cur, from.PackageID, from.PackageVersion))
		}
		dep.known = &pkgs
	}

	var paused []pause
	var out *scheduler.Outcome
	if deploy {
		out = k.pauseAll(ctx, rc, d, &paused)
	}
	changed := deploy
	if out == nil {
		var extChanged bool
		out, extChanged = k.rest(ctx, rc, d, &dep, deploy)
		changed = changed || extChanged
	}
	// Resume exactly what was paused, whatever happened: on a context the
	// run's end did not cancel.
	k.resumeAll(ctx, d, paused)
	if len(d.Unresumed) > 0 && out.State == runnerd.StateSucceeded {
		out = &scheduler.Outcome{State: runnerd.StateFailed,
			Err: fmt.Errorf("release: resumed everything but %s; the obligation stays open and is retried at the next start", strings.Join(d.Unresumed, ", "))}
	}
	if out.State == runnerd.StateSucceeded && len(paused) > 0 {
		if err := k.verifyListeners(ctx, d, paused); err != nil {
			out = &scheduler.Outcome{State: runnerd.StateFailed, Err: err}
		}
	}
	if out.State == runnerd.StateSucceeded && k.Smoke != nil && !changed {
		step("smoke test: skipped, nothing changed")
	}
	if out.State == runnerd.StateSucceeded && k.Smoke != nil && changed {
		sctx, cancel := ctx, context.CancelFunc(func() {})
		if k.SmokeTimeout > 0 {
			sctx, cancel = context.WithTimeout(ctx, k.SmokeTimeout)
		}
		so := k.Smoke.Run(sctx, rc)
		cancel()
		d.Smoke = detailJSON(so.Detail)
		step("smoke test: " + string(so.State))
		if so.State != runnerd.StateSucceeded {
			err := so.Err
			if err == nil {
				err = errors.New(string(so.State))
			}
			out = &scheduler.Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("release: deployed, but the smoke test %s: %w", so.State, err)}
		}
	}
	out.Detail = toJSON(d)
	return *out
}

// pauseAll pauses the process's schedules and the listeners on every target
// atom, each after its obligation is recorded. A non-nil outcome ends the
// release (what was paused is resumed by the caller).
func (k *Release) pauseAll(ctx context.Context, rc *scheduler.RunContext, d *ReleaseDetail, paused *[]pause) *scheduler.Outcome {
	for _, a := range k.Atoms {
		if k.PauseSchedules {
			sts, err := k.Client.QueryProcessScheduleStatus(ctx, a, k.ProcessID)
			if err != nil {
				o := readFailure("release: schedules of "+k.ProcessID+" on "+a, err, defaultIsBudgetStop, d)
				return &o
			}
			for _, st := range sts {
				if !bool(st.Enabled) {
					continue // not ours to resume: it was off before the release
				}
				p := pause{kind: store.ObligationSchedule, atom: a, process: k.ProcessID, status: st}
				if o := k.pauseOne(ctx, rc, d, &p); o != nil {
					return o
				}
				*paused = append(*paused, p)
			}
		}
		for _, l := range k.Listeners {
			p := pause{kind: store.ObligationListener, atom: a, process: l}
			if o := k.pauseOne(ctx, rc, d, &p); o != nil {
				return o
			}
			*paused = append(*paused, p)
		}
	}
	if len(*paused) > 0 {
		atomapi.Failpoint(FailReleasePaused)
	}
	return nil
}

func (k *Release) pauseOne(ctx context.Context, rc *scheduler.RunContext, d *ReleaseDetail, p *pause) *scheduler.Outcome {
	id, err := k.Obligations.OpenObligation(ctx, store.Obligation{RunID: rc.Run.ID, Job: rc.Run.Job, Kind: p.kind,
		Container: p.atom, ProcessID: p.process, ObjectID: p.status.ID})
	if err != nil {
		return &scheduler.Outcome{State: runnerd.StateFailed, Retryable: true, Detail: toJSON(d),
			Err: fmt.Errorf("release: could not record the resume of %s, so it was not paused: %w", p, err)}
	}
	p.obligation = id
	if p.kind == store.ObligationSchedule {
		st := p.status
		st.Enabled = false
		_, err = k.Client.SetProcessScheduleStatus(ctx, st)
	} else {
		err = k.Client.ChangeListenerStatus(ctx, p.atom, p.process, atomapi.ListenerPause)
	}
	if err != nil {
		// It may have been paused all the same: the obligation stays, and
		// resuming what was not paused is harmless.
		o := readFailure("release: pausing "+p.String(), err, defaultIsBudgetStop, d)
		d.Paused = append(d.Paused, p.String()+" (uncertain)")
		return &o
	}
	d.Paused = append(d.Paused, p.String())
	d.Steps = append(d.Steps, "paused "+p.String())
	return nil
}

// rest applies the extensions and, with deploy, deploys (dep: this run's
// copy of the deploy step). changed reports whether the extensions changed.
func (k *Release) rest(ctx context.Context, rc *scheduler.RunContext, d *ReleaseDetail, dep *Deploy, deploy bool) (_ *scheduler.Outcome, changed bool) {
	if k.Extensions != nil {
		cur, err := k.Client.GetEnvironmentExtensions(ctx, k.ToEnv)
		if err != nil {
			o := readFailure("release: extensions of "+k.ToEnv, err, defaultIsBudgetStop, d)
			return &o, false
		}
		upd, changes, err := k.Extensions(cur)
		if err != nil {
			return &scheduler.Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("release: extensions: %w", err)}, false
		}
		if len(changes) == 0 {
			d.Steps = append(d.Steps, "extensions: unchanged")
		} else {
			if _, err := k.Client.UpdateEnvironmentExtensions(ctx, upd); err != nil {
				o := readFailure("release: updating the extensions of "+k.ToEnv, err, defaultIsBudgetStop, d)
				return &o, false
			}
			d.Extensions = changes
			changed = true
			d.Steps = append(d.Steps, fmt.Sprintf("extensions: %d values set (partial update)", len(changes)))
		}
	}
	if !deploy {
		return &scheduler.Outcome{State: runnerd.StateSucceeded}, changed
	}
	do := dep.Run(ctx, rc)
	d.Deploy = detailJSON(do.Detail)
	d.Steps = append(d.Steps, "deploy: "+string(do.State))
	if do.State != runnerd.StateSucceeded {
		if do.Err != nil {
			do.Err = fmt.Errorf("release: %w", do.Err) // the deploy kind's errors start "deploy: "
		}
		return &do, changed
	}
	return &scheduler.Outcome{State: runnerd.StateSucceeded}, changed
}

// resumeAll resumes every pause, newest first, and closes its obligation.
func (k *Release) resumeAll(ctx context.Context, d *ReleaseDetail, paused []pause) {
	if len(paused) == 0 {
		return
	}
	info := atomapi.CallInfoFrom(ctx)
	info.Recovery = true // an obligation: it may use the reserve
	rctx, cancel := context.WithTimeout(atomapi.WithCallInfo(context.WithoutCancel(ctx), info), resumeBound)
	defer cancel()
	for i := len(paused) - 1; i >= 0; i-- {
		p := paused[i]
		if err := Resume(rctx, k.Client, k.Obligations, store.Obligation{ID: p.obligation, Kind: p.kind, Container: p.atom,
			ProcessID: p.process, ObjectID: p.status.ID}); err != nil {
			d.Unresumed = append(d.Unresumed, p.String()+": "+err.Error())
			continue
		}
		d.Resumed = append(d.Resumed, p.String())
		d.Steps = append(d.Steps, "resumed "+p.String())
	}
}

// ResumeClient is what resuming an obligation needs.
type ResumeClient interface {
	SetProcessScheduleStatus(ctx context.Context, s atomapi.ProcessScheduleStatus) (atomapi.ProcessScheduleStatus, error)
	ChangeListenerStatus(ctx context.Context, containerID, listenerID, action string) error
}

// Resume carries out obligation o (enable the schedules again, resume the
// listener) and closes it; on failure it stays open with the error.
func Resume(ctx context.Context, c ResumeClient, obs Obligations, o store.Obligation) error {
	var err error
	switch o.Kind {
	case store.ObligationSchedule:
		_, err = c.SetProcessScheduleStatus(ctx, atomapi.ProcessScheduleStatus{ID: o.ObjectID, AtomID: o.Container,
			ProcessID: o.ProcessID, Enabled: true})
	case store.ObligationListener:
		err = c.ChangeListenerStatus(ctx, o.Container, o.ProcessID, atomapi.ListenerResume)
	default:
		err = fmt.Errorf("unknown obligation kind %q", o.Kind)
	}
	if err != nil {
		obs.ObligationFailed(context.WithoutCancel(ctx), o.ID, err.Error())
		return err
	}
	return obs.CloseObligation(context.WithoutCancel(ctx), o.ID)
}

// verifyListeners waits until every listener the release paused reports
// listening again, asking ListenerStatus per atom, within ListenerTimeout.
func (k *Release) verifyListeners(ctx context.Context, d *ReleaseDetail, paused []pause) error {
	want := map[string][]string{}
	for _, p := range paused {
		if p.kind == store.ObligationListener {
			want[p.atom] = append(want[p.atom], p.process)
		}
	}
	if len(want) == 0 {
		return nil
	}
	timeout := k.ListenerTimeout
	if timeout <= 0 {
		timeout = 5 * time.Minute
	}
	now := clock(k.Now)
	deadline := now().Add(timeout)
	sleep := k.Sleep
	if sleep == nil {
		sleep = runnerd.Sleep
	}
	atoms := make([]string, 0, len(want))
	for a := range want {
		atoms = append(atoms, a)
	}
	sort.Strings(atoms)
	d.Listeners = map[string]string{}
	wait := 2 * time.Second
	for {
		pending := 0
		for _, a := range atoms {
			statuses, err := k.listenerStatus(ctx, a, sleep)
			if err != nil {
				return fmt.Errorf("release: verifying the listeners on %s: %w", a, err)
			}
			for _, l := range want[a] {
				st := "unknown"
				for _, s := range statuses {
					if s.ListenerID == l {
						st = s.Status
					}
				}
				d.Listeners[l+" on "+a] = st
				if st != atomapi.ListenerListening {
					pending++
				}
			}
		}
		if pending == 0 {
			d.Steps = append(d.Steps, "verified: the paused listeners are listening")
			return nil
		}
		if !now().Before(deadline) {
			return fmt.Errorf("release: %d paused listener(s) not listening %s after the resume (listener_timeout): %v", pending, timeout, d.Listeners)
		}
		if err := sleep(ctx, wait); err != nil {
			return fmt.Errorf("release: verifying the listeners: %w", err)
		}
		wait = min(wait*2, 30*time.Second)
	}
}

// listenerStatus asks for the listeners of atom a: a token, then its answer.
func (k *Release) listenerStatus(ctx context.Context, a string, sleep func(context.Context, time.Duration) error) ([]atomapi.ListenerStatus, error) {
	token, err := k.Client.QueryListenerStatus(ctx, a, "")
	if err != nil {
		return nil, err
	}
	for i := 0; ; i++ {
		sts, pending, err := k.Client.ListenerStatusResponse(ctx, token)
		if err != nil || !pending {
			return sts, err
		}
		if i >= 10 {
			return nil, fmt.Errorf("the ListenerStatus answer was not ready after %d polls", i+1)
		}
		if err := sleep(ctx, time.Second); err != nil {
			return nil, err
		}
	}
}

// detailJSON is a kind's Detail kept inside the release's (nil: none).
func detailJSON(detail string) json.RawMessage {
	if detail == "" || !json.Valid([]byte(detail)) {
		return nil
	}
	return json.RawMessage(detail)
}

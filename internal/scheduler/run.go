package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
)

// runOpts say how a run enters its life.
type runOpts struct {
	jitter bool // wait a random delay up to Job.Jitter before the first admission
	// manual (RunNow) returns at the first deferral; the deferred run goes on
	// in the background if the scheduler is started.
	manual bool
	// resumeAt: a run picked up from the store waits until then before it is
	// offered to the planner.
	resumeAt time.Time
	// byHand: the run was asked for by RunNow, and keeps that in its
	// background continuation; a disabled job does not stop it (RunNow runs
	// disabled jobs), a removed one does.
	byHand bool
	// chained: a chain's step after the first, whose share its first step's
	// admission reserved: it is not asked again at its first admission.
	chained  bool
	ctx      context.Context // parent of the Kind's context; the scheduler's if nil
	from, to time.Time       // RunContext.WindowFrom/WindowTo; kept in the run's Detail (see backfill.go)
}

// storeCtx is the context of the scheduler's own store writes: a run's record
// is written even while runnerd stops.
var storeCtx = context.Background()

// fire is cron's job for entry e: one slot of one job.
func (s *Scheduler) fire(e *entry) {
	slot, ok := e.rec.take()
	if !ok {
		slot = s.now().Truncate(time.Second)
	}
	if !s.enter() {
		return
	}
	defer s.wg.Done()
	s.mu.Lock()
	j, removed := e.job, e.removed
	s.mu.Unlock()
	if removed {
		return
	}
	s.fireSlot(j, e.rt, slot.UTC())
}

// fireSlot handles one scheduled slot: unless the job is paused or the slot
// already has a run, it creates the run and carries it to its outcome.
func (s *Scheduler) fireSlot(j Job, rt *jobRT, nominal time.Time) {
	if !s.owns(j.Name) {
		s.log.Debug("slot passed: another instance holds the job's lease", "job", j.Name, "nominal", nominal)
		return
	}
	ctx := storeCtx
	st, err := s.store.JobState(ctx, j.Name)
	if err != nil {
		s.log.Error("could not read the job's state; firing as not paused", "job", j.Name, "err", err)
	} else {
		rt.paused.Store(st.Paused)
	}
	if st.Paused {
		s.advance(ctx, j.Name, rt, nominal)
		s.log.Info("slot passed: job paused", "job", j.Name, "nominal", nominal)
		return
	}
	r, created, err := s.store.CreateRun(ctx, runnerd.Run{Job: j.Name, Kind: j.Kind, NominalTime: nominal, State: runnerd.StatePlanned})
	if err != nil {
		s.log.Error("could not record the run; slot not fired", "job", j.Name, "nominal", nominal, "err", err)
		return
	}
	if !created {
		s.log.Debug("slot already has a run; not fired again", "job", j.Name, "nominal", nominal, "run_id", r.ID, "state", r.State)
		return
	}
	s.advance(ctx, j.Name, rt, nominal)
	s.lifecycle(j, rt, r, runOpts{jitter: true})
}

// advance records t as the job's last handled slot, if it is later than the
// one recorded.
func (s *Scheduler) advance(ctx context.Context, job string, rt *jobRT, t time.Time) {
	s.mu.Lock()
	if !t.After(rt.lastNominal) {
		s.mu.Unlock()
		return
	}
	rt.lastNominal = t
	s.mu.Unlock()
	if err := s.store.SetLastNominal(ctx, job, t.UTC()); err != nil {
		s.log.Error("could not record the last slot", "job", job, "nominal", t, "err", err)
	}
}

// lifecycle carries a created run to an outcome: overlap, jitter, admission
// (with deferrals until the catch-up window closes), execution and retries.
// It returns the run as last recorded.
func (s *Scheduler) lifecycle(j Job, rt *jobRT, r runnerd.Run, o runOpts) runnerd.Run {
	ctx := storeCtx
	if o.from.IsZero() && o.to.IsZero() {
		// A backfill picked up again (deferred, interrupted, refired) gets its
		// window back from the run's Detail; one whose window is lost is not
		// run at all, never as a normal export.
		from, to, err := backfillWindow(r.Detail)
		if err != nil {
			return s.end(ctx, r, runnerd.StateSkipped, fmt.Sprintf("a backfill whose window cannot be restored (%v); "+
				"not run as a normal export: run it again with -from/-to", err))
		}
		o.from, o.to = from, to
	}
	nb := o.resumeAt
	if r.State == runnerd.StateDeferred && r.NotBefore.After(nb) {
		nb = r.NotBefore
	}
	arr, leave := s.arrive(j, rt, r, nb)
	defer leave()
	if !o.resumeAt.IsZero() && !s.sleepUntil(o.resumeAt) {
		return r
	}
	first, firstAdmit := true, true
	for {
		// Each wake-up (a resumed run, after a deferral) reads the job again:
		// a reload may have removed, disabled or changed it.
		cur, why, ok := s.current(j, o)
		if !ok {
			return s.end(ctx, r, runnerd.StateSkipped, why)
		}
		j = cur
		if !o.manual && rt.paused.Load() {
			return s.end(ctx, r, runnerd.StateSkipped, "the job is paused")
		}
		wait, reason, ok := s.acquire(rt, j.Overlap)
		if !ok {
			return s.end(ctx, r, runnerd.StateSkipped, reason)
		}
		if wait != nil && !s.waitTurn(rt, wait) {
			return r // stopping: still planned, the next Start picks it up
		}
		waited := wait != nil
		if first && o.jitter && j.Jitter > 0 {
			if !s.sleep(time.Duration(s.rand(int64(j.Jitter)))) {
				s.release(rt)
				return r
			}
			waited = true
		}
		first = false
		if waited {
			cur, why, ok := s.current(j, o)
			if !ok {
				s.release(rt)
				return s.end(ctx, r, runnerd.StateSkipped, why)
			}
			j = cur
		}

		var dec budget.Decision
		var est int
		if o.chained && firstAdmit {
			est, dec = s.estimate(ctx, j, rt), budget.Decision{Admit: true}
		} else {
			dec, est = s.admit(ctx, j, rt, r)
		}
		firstAdmit = false
		if dec.Admit {
			s.set(arr, runnerd.StateRunning, time.Time{}, est)
			r = s.execute(ctx, j, r, est, o)
			s.release(rt)
			s.estimate(ctx, j, rt)
			if r.State != runnerd.StateDeferred {
				s.chainNext(j, r, o)
				return r
			}
			// The budget ran out mid-way: the kind stopped at a safe point.
			dec = budget.Decision{Reason: r.Reason}
		} else {
			s.release(rt)
		}

		var next time.Time
		if r, next, ok = s.deferRun(ctx, j, r, dec); !ok {
			return r
		}
		s.set(arr, runnerd.StateDeferred, r.NotBefore, est)
		if o.manual {
			bg := o
			bg.manual, bg.ctx, bg.jitter, bg.resumeAt = false, nil, false, next // bg.byHand, bg.from/to stay
			deferred := r
			s.continueLater(func() { s.lifecycle(j, rt, deferred, bg) })
			return r
		}
		if !s.sleepUntil(next) {
			return r // stopping: still deferred, the next Start picks it up
		}
	}
}

// current returns the job as the last reload left it, for a run that waited
// (jitter, a queue, the budget, a retry's backoff): ok false, with the reason,
// when the run must not go on because the job was removed, or disabled (unless
// the run was asked for by hand).
func (s *Scheduler) current(j Job, o runOpts) (_ Job, reason string, ok bool) {
	cur, _, ok := s.lookup(j.Name)
	switch {
	case !ok:
		return j, "the job was removed by a reload while the run waited", false
	case !cur.Enabled && !o.byHand:
		return j, "the job was disabled by a reload while the run waited", false
	}
	return cur, "", true
}

// admit asks the planner about r, with a fresh estimate and the look-ahead.
func (s *Scheduler) admit(ctx context.Context, j Job, rt *jobRT, r runnerd.Run) (budget.Decision, int) {
	est := s.estimate(ctx, j, rt)
	if s.planner == nil {
		return budget.Decision{Admit: true}, est
	}
	now := s.now()
	s.estimateRest(ctx, j.Name)
	rest := s.chainRest(j.Name)
	c := budget.Candidate{Job: j.Name, Nominal: r.NominalTime, Priority: j.Priority, Estimate: est + rest, Seq: r.ID,
		Duration: s.duration(j.Name)}
	return s.chainDecision(j.Name, est, rest, s.planner.Admit(now, c, s.LookAhead(now, LookAhead))), est
}

// deferRun records a refused run as deferred and returns when to ask again,
// or records it as missed (ok false) when its catch-up window has closed. The
// last offer is made at the window's end.
func (s *Scheduler) deferRun(ctx context.Context, j Job, r runnerd.Run, dec budget.Decision) (_ runnerd.Run, next time.Time, ok bool) {
	now := s.now()
	deadline := r.NominalTime.Add(j.CatchUpWindow)
	reason := dec.Reason
	if reason == "" {
		reason = "the budget cannot afford it now"
	}
	if !now.Before(deadline) {
		return s.end(ctx, r, runnerd.StateMissed, fmt.Sprintf("deferred until its catch-up window closed at %s: %s",
			describeSlot(deadline), reason)), time.Time{}, false
	}
	next = dec.EarliestAt
	if !next.After(now) {
		next = now.Add(s.deferCheck)
	}
	// EarliestAt holds for today's estimate; a waiting run's estimate may
	// come down (budget.Decay) and other runs may finish under theirs, so
	// the run is asked again at the next hour boundary at the latest.
	if hb := now.Truncate(time.Hour).Add(time.Hour); next.After(hb) {
		next = hb
	}
	if next.After(deadline) {
		next = deadline
	}
	again := r.State == runnerd.StateDeferred
	r.State, r.Reason, r.NotBefore = runnerd.StateDeferred, reason, dec.EarliestAt
	s.update(ctx, &r)
	// The first deferral of a run is a warning (journalctl -p warning shows
	// it); asking again each hour is not news.
	lvl := slog.LevelWarn
	if again {
		lvl = slog.LevelInfo
	}
	s.log.Log(ctx, lvl, "run deferred", "job", j.Name, "run_id", r.ID, "nominal", r.NominalTime, "state", r.State,
		"reason", reason, "not_before", dec.EarliestAt, "next_check", next, "calls", r.Calls)
	return r, next, true
}

// execute runs an admitted run: admitted → running → the Kind's outcome, with
// retries of retryable failures.
func (s *Scheduler) execute(ctx context.Context, j Job, r runnerd.Run, est int, o runOpts) runnerd.Run {
	r.State, r.Estimate, r.Reason, r.NotBefore, r.FinishedAt = runnerd.StateAdmitted, est, "", time.Time{}, time.Time{}
	s.update(ctx, &r)
	r.State = runnerd.StateRunning
	if r.StartedAt.IsZero() {
		r.StartedAt = s.now()
	}
	s.update(ctx, &r)
	s.log.Info("run started", "job", j.Name, "run_id", r.ID, "nominal", r.NominalTime, "state", r.State,
		"attempt", r.Attempt, "estimate", est)

	var out Outcome
	for {
		out = s.callKind(j, r, o)
		if out.State != runnerd.StateFailed || !out.Retryable || r.Attempt >= j.Retries {
			break
		}
		d := s.backoff(r.Attempt)
		until := s.now().Add(d)
		r.Error = errText(out.Err)
		r.Reason = fmt.Sprintf("attempt %d of %d failed; retrying in %s", r.Attempt+1, j.Retries+1, d)
		if out.Detail != "" {
			r.Detail = withBackfill(out.Detail, o.from, o.to)
		}
		s.update(ctx, &r)
		s.log.Warn("run attempt failed; retrying", "job", j.Name, "run_id", r.ID, "nominal", r.NominalTime,
			"attempt", r.Attempt, "backoff", d, "err", r.Error)
		if !s.sleep(d) {
			// Stopping: nothing unsafe was sent (the failure is retryable), so
			// the next attempt is left to the next Start, not lost.
			r.Attempt++
			r.State, r.NotBefore = runnerd.StatePlanned, until
			r.Reason = fmt.Sprintf("attempt %d of %d failed and runnerd stopped during the retry backoff; "+
				"attempt %d is made after the next start, not before %s", r.Attempt, j.Retries+1, r.Attempt+1, describeSlot(until))
			s.update(ctx, &r)
			s.log.Info("retry left for the next start", "job", j.Name, "run_id", r.ID, "nominal", r.NominalTime,
				"attempt", r.Attempt, "not_before", until, "err", r.Error)
			return r
		}
		cur, why, ok := s.current(j, o)
		if !ok {
			r.FinishedAt = s.now()
			return s.end(ctx, r, runnerd.StateSkipped, fmt.Sprintf("%s; attempt %d of %d is not made", why, r.Attempt+2, j.Retries+1))
		}
		j = cur
		r.Attempt++
		r.Error, r.Reason = "", ""
		s.update(ctx, &r)
	}

	r.State, r.FinishedAt, r.Error, r.Reason = out.State, s.now(), errText(out.Err), ""
	if out.Detail != "" {
		r.Detail = withBackfill(out.Detail, o.from, o.to)
	}
	if out.State == runnerd.StateDeferred || out.State == runnerd.StateUnknown {
		r.Reason = r.Error
	}
	s.update(ctx, &r)
	level := slog.LevelInfo
	if out.State != runnerd.StateSucceeded {
		level = slog.LevelWarn
	}
	attrs := []any{"job", j.Name, "run_id", r.ID, "nominal", r.NominalTime, "state", r.State,
		"attempt", r.Attempt, "calls", r.Calls, "duration", r.FinishedAt.Sub(r.StartedAt)}
	if r.Error != "" {
		attrs = append(attrs, "err", r.Error)
	}
	s.log.Log(ctx, level, "run finished", attrs...)
	return r
}

// callKind runs one attempt under the job's timeout, with the run's CallInfo
// in the context. A panic is a failed attempt, not a dead daemon.
func (s *Scheduler) callKind(j Job, r runnerd.Run, o runOpts) (out Outcome) {
	parent := o.ctx
	if parent == nil {
		parent = s.baseCtx()
	}
	ctx, cancel := context.WithTimeout(parent, j.Timeout)
	defer cancel()
	ctx = atomapi.WithCallInfo(ctx, atomapi.CallInfo{RunID: r.ID, Job: j.Name, Priority: j.Priority})
	defer func() {
		if p := recover(); p != nil {
			s.log.Error("job kind panicked", "job", j.Name, "run_id", r.ID, "panic", p, "stack", string(debug.Stack()))
			out = Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("job kind panicked: %v", p)}
		}
	}()
	out = j.Runner.Run(ctx, &RunContext{Run: r, WindowFrom: o.from, WindowTo: o.to, Now: s.now})
	switch out.State {
	case runnerd.StateSucceeded, runnerd.StateFailed, runnerd.StateDeferred, runnerd.StateUnknown:
	case "":
		out.State = runnerd.StateSucceeded
		if out.Err != nil {
			out.State = runnerd.StateFailed
		}
	default:
		out = Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("job kind returned state %q", out.State), Detail: out.Detail}
	}
	return out
}

// end records a run that ends without running: skipped or missed.
func (s *Scheduler) end(ctx context.Context, r runnerd.Run, state runnerd.RunState, reason string) runnerd.Run {
	r.State, r.Reason = state, reason
	s.update(ctx, &r)
	s.log.Info("run "+string(state), "job", r.Job, "run_id", r.ID, "nominal", r.NominalTime, "state", state,
		"reason", reason, "calls", r.Calls)
	return r
}

// update writes r's state. Calls is not written: the store keeps it in step
// with the ledger, and the scheduler never counts calls; for an outcome or a
// waiting state it is read back into r.
func (s *Scheduler) update(ctx context.Context, r *runnerd.Run) {
	if err := s.store.UpdateRun(ctx, *r); err != nil {
		s.log.Error("could not record the run", "job", r.Job, "run_id", r.ID, "state", r.State, "err", err)
	}
	switch r.State {
	case runnerd.StatePlanned, runnerd.StateAdmitted, runnerd.StateRunning:
	default:
		// The ledger counted the run's calls: an outcome is logged and told
		// (metrics, notifications) with them.
		s.refreshCalls(ctx, r)
		if s.onRun != nil {
			s.onRun(*r)
		}
	}
}

// refreshCalls reads the calls the ledger counted for r, for the log line.
func (s *Scheduler) refreshCalls(ctx context.Context, r *runnerd.Run) {
	if cur, err := s.store.GetRun(ctx, r.ID); err == nil {
		r.Calls = cur.Calls
	}
}

func errText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// acquire takes the job's overlap slot. With overlap=queue it may instead
// return a channel to wait on (see waitTurn); ok false means the run is
// skipped, for reason.
func (s *Scheduler) acquire(rt *jobRT, overlap string) (wait chan struct{}, reason string, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.holders == 0 || overlap == OverlapAllow {
		rt.holders++
		s.inflight.Add(1)
		return nil, "", true
	}
	if overlap == OverlapQueue {
		if rt.waiting == nil {
			rt.waiting = make(chan struct{})
			return rt.waiting, "", true
		}
		return nil, "overlap = queue: a run is in flight and another is already waiting", false
	}
	return nil, "overlap = skip: the previous run is still in flight", false
}

// release gives the overlap slot back, or hands it to the waiting run.
func (s *Scheduler) release(rt *jobRT) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if rt.waiting != nil && !s.stopping {
		close(rt.waiting)
		rt.waiting = nil
		return
	}
	rt.holders--
	s.inflight.Add(-1)
}

// waitTurn waits for the slot a queued run was promised. It reports false if
// the scheduler stops first; then the run holds no slot.
func (s *Scheduler) waitTurn(rt *jobRT, ch chan struct{}) bool {
	select {
	case <-ch:
	case <-s.stopCh:
	}
	s.mu.Lock()
	if rt.waiting == ch {
		rt.waiting = nil
		s.mu.Unlock()
		return false
	}
	stopping := s.stopping
	s.mu.Unlock()
	if stopping {
		s.release(rt)
		return false
	}
	return true
}

// sleep waits d on the scheduler's timers; false if the scheduler stops.
func (s *Scheduler) sleep(d time.Duration) bool {
	if d > 0 {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.stopCh:
			return false
		}
	}
	select {
	case <-s.stopCh:
		return false
	default:
		return true
	}
}

func (s *Scheduler) sleepUntil(t time.Time) bool { return s.sleep(t.Sub(s.now())) }

// continueLater runs f in the background if the scheduler is started and not
// stopping (a foreground `runnerd run` leaves a deferred run to the daemon).
func (s *Scheduler) continueLater(f func()) {
	s.mu.Lock()
	started := s.started
	s.mu.Unlock()
	if started {
		s.track(f)
	}
}

// RunNow runs a job now, outside its schedule (`runnerd run JOB`): the nominal
// time is now, to the millisecond, the run goes through the same overlap
// policy, planner and ledger, and RunNow returns its outcome. A deferred run is
// returned as such at once; in a started scheduler it goes on waiting for the
// budget in the background. from/to set the export window (zero: none); the
// window is kept in the run's Detail, so a run resumed later (after a
// deferral, a stop, a refire) exports the same window.
// Cancelling ctx cancels the run. A paused job is refused with ErrPaused; a job
// with overlap = skip and a run in flight with ErrBusy.
func (s *Scheduler) RunNow(ctx context.Context, job string, from, to time.Time) (runnerd.Run, error) {
	j, rt, ok := s.lookup(job)
	if !ok {
		return runnerd.Run{}, fmt.Errorf("run %q: %w", job, ErrUnknownJob)
	}
	st, err := s.store.JobState(ctx, job)
	if err != nil {
		return runnerd.Run{}, fmt.Errorf("run %q: %w", job, err)
	}
	rt.paused.Store(st.Paused)
	if st.Paused {
		return runnerd.Run{}, fmt.Errorf("run %q: %w; Try: runnerd resume %s", job, ErrPaused, job)
	}
	s.mu.Lock()
	busy := rt.holders > 0
	s.mu.Unlock()
	if busy && j.Overlap == OverlapSkip {
		return runnerd.Run{}, fmt.Errorf("run %q: %w (overlap = skip)", job, ErrBusy)
	}
	if !s.enter() {
		return runnerd.Run{}, fmt.Errorf("run %q: %w", job, ErrStopped)
	}
	defer s.wg.Done()
	// A manual run is not a cron slot: its nominal time is now, to the
	// millisecond (the ledger's precision), moved on a millisecond if an
	// earlier manual run or a fire already holds it.
	nominal := s.now().Truncate(time.Millisecond).UTC()
	var r runnerd.Run
	for try := 0; ; try++ {
		var created bool
		var err error
		r, created, err = s.store.CreateRun(ctx, runnerd.Run{Job: job, Kind: j.Kind, NominalTime: nominal, State: runnerd.StatePlanned,
			Detail: withBackfill("", from, to)})
		if err != nil {
			return runnerd.Run{}, fmt.Errorf("run %q: %w", job, err)
		}
		if created {
			break
		}
		if try == 9 {
			return r, fmt.Errorf("run %q at %s: %w", job, describeSlot(nominal), ErrSlotTaken)
		}
		nominal = nominal.Add(time.Millisecond)
	}
	kctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(s.baseCtx(), cancel)()
	return s.lifecycle(j, rt, r, runOpts{manual: true, byHand: true, ctx: kctx, from: from, to: to}), nil
}

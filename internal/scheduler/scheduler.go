package scheduler

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"runnerd"

	"github.com/robfig/cron/v3"

	"runnerd/internal/budget"
	"runnerd/internal/schedule"
	"runnerd/internal/store"
)

// Store is what the scheduler needs from the ledger. *store.DB implements it.
type Store interface {
	// CreateRun inserts r unless a run for (r.Job, r.NominalTime) exists; then
	// created is false and the existing run is returned.
	CreateRun(ctx context.Context, r runnerd.Run) (runnerd.Run, bool, error)
	UpdateRun(ctx context.Context, r runnerd.Run) error
	GetRun(ctx context.Context, id int64) (runnerd.Run, error)
	// ListRuns returns the runs matching f, newest nominal time first.
	ListRuns(ctx context.Context, f store.RunFilter) ([]runnerd.Run, error)
	JobState(ctx context.Context, job string) (store.JobState, error)
	SetPaused(ctx context.Context, job string, paused bool) error
	SetLastNominal(ctx context.Context, job string, t time.Time) error
}

// Planner decides whether a run may start now. The wiring binds the budget
// window to it.
type Planner interface {
	Admit(now time.Time, c budget.Candidate, upcoming []budget.Candidate) budget.Decision
}

// Estimator says how many calls a run of a job is expected to spend.
type Estimator interface {
	Estimate(ctx context.Context, job, kind string) int
}

// Overlap policies: what a fire does while a run of the same job is in flight.
const (
	OverlapSkip  = runnerd.OverlapSkip  // record the new run as skipped
	OverlapQueue = runnerd.OverlapQueue // let at most one run wait; skip any further one
	OverlapAllow = runnerd.OverlapAllow // run side by side
)

// Catch-up policies: what Start does with slots missed while runnerd was down.
const (
	CatchUpNone   = runnerd.CatchUpNone   // record them as missed
	CatchUpLatest = runnerd.CatchUpLatest // run the latest one, record the others as missed
	CatchUpAll    = runnerd.CatchUpAll    // run each, oldest first
)

// Defaults for zero values in Job and Options.
const (
	DefaultTimeout       = time.Hour
	DefaultCatchUpWindow = 24 * time.Hour
	// DefaultDeferCheck is how soon a deferred run is offered to the planner
	// again when the planner named no time at which it fits.
	DefaultDeferCheck = 5 * time.Minute
	// LookAhead is the horizon of the Upcoming runs shown to the planner.
	LookAhead = 24 * time.Hour
	// maxCatchUpSlots bounds the slots recorded per job after a long downtime
	// (@every 1m for a month is 43,200): older ones are counted in the log only.
	maxCatchUpSlots = 2000
)

// Errors returned by the scheduler's methods; test with errors.Is.
var (
	ErrUnknownJob = errors.New("scheduler: no such job")
	ErrPaused     = errors.New("scheduler: job is paused")
	ErrBusy       = errors.New("scheduler: a run of the job is in flight")
	ErrStopped    = errors.New("scheduler: stopped")
	ErrSlotTaken  = errors.New("scheduler: a run for this time already exists")
	ErrStarted    = errors.New("scheduler: already started")
)

// Job is one configured job, as the scheduler needs it. Zero values take the
// defaults: Location UTC, Timeout DefaultTimeout, Overlap "skip", CatchUp
// "latest", CatchUpWindow DefaultCatchUpWindow.
type Job struct {
	Name     string
	Kind     string // execute | deploy | export (recorded on runs and passed to the Estimator)
	Schedule string // see schedule.Parse
	Location *time.Location
	Priority runnerd.Priority
	// Timeout bounds each attempt of Runner.Run, polls included.
	Timeout time.Duration
	Overlap string // skip | queue | allow
	CatchUp string // none | latest | all
	// CatchUpWindow is how late a slot may still start: after downtime, and
	// while deferred for budget.
	CatchUpWindow time.Duration
	// Jitter is the upper bound of a random delay before admission.
	Jitter time.Duration
	// Retries is how many times a failed run whose Outcome is Retryable is
	// tried again, with backoff, as further attempts of the same run.
	Retries int
	// Enabled jobs are scheduled; disabled ones can still be run by RunNow.
	Enabled bool
	// After makes the job a step of a chain (see chain.go): it runs when job
	// After's run ends in AfterStatus (AfterSucceeded by default), and has
	// no schedule of its own.
	After, AfterStatus string
	Runner             Kind
}

// Options configure New. Store is required; the rest have defaults.
type Options struct {
	Store     Store
	Planner   Planner   // nil: every run is admitted
	Estimator Estimator // nil: every estimate is 0
	Logger    *slog.Logger
	Now       func() time.Time // time.Now if nil
	// Rand returns a number in [0, n); it draws the jitter. math/rand/v2 if nil.
	Rand func(n int64) int64
	// RetryBackoff is the wait after failed attempt n (0 for the first).
	// Default: 30s·2^n, capped at 10m.
	RetryBackoff func(attempt int) time.Duration
	// DeferCheck: see DefaultDeferCheck.
	DeferCheck time.Duration
	// OnRun, if set, is told of every run that reaches an outcome or a waiting
	// state (succeeded, failed, deferred, missed, unknown, skipped), after it is
	// recorded. It must not block: metrics and notifications hang off it.
	OnRun func(runnerd.Run)
	// Spent, if set, returns the calls a run has spent so far (the engine
	// counts them in its ledger hooks): an admitted or running run keeps
	// the share of its estimate less what it spent (see LookAhead).
	Spent func(runID int64) int
	// Duration, if set, returns how long a job's runs typically take (the
	// engine's estimate); the planner spreads a run's calls over those hours.
	// nil: every run's calls in its start hour.
	Duration func(job string) time.Duration
	// Owns, if set, says whether this scheduler runs job now: on a ledger
	// shared by several runnerd, the job's lease is this instance's. A job
	// it does not own is not fired, caught up or recovered here (its owner
	// does that); Adopt takes over the jobs it comes to own. nil: every job.
	Owns func(job string) bool
}

// DefaultRetryBackoff is 30s·2^attempt, capped at 10 minutes.
func DefaultRetryBackoff(attempt int) time.Duration {
	if attempt >= 5 {
		return 10 * time.Minute
	}
	return min(30*time.Second<<max(attempt, 0), 10*time.Minute)
}

// Scheduler fires jobs on their schedules and carries each run through its
// states. Its methods are safe for concurrent use.
type Scheduler struct {
	store      Store
	planner    Planner
	est        Estimator
	log        *slog.Logger
	now        func() time.Time
	rand       func(int64) int64
	backoff    func(int) time.Duration
	deferCheck time.Duration
	onRun      func(runnerd.Run)

	cron *cron.Cron

	setMu sync.Mutex // serializes SetJobs

	mu       sync.Mutex
	entries  map[string]*entry
	next     map[string][]string // chain steps by the job they follow, sorted; rebuilt by SetJobs
	rts      map[string]*jobRT   // per-job runtime state; kept across SetJobs
	gen      uint64              // bumped by SetJobs, invalidates the Upcoming cache
	started  bool
	stopping bool
	stopCh   chan struct{}
	wg       sync.WaitGroup // every goroutine carrying a run
	chains   sync.WaitGroup // the chain steps started (see WaitChains)
	runCtx   context.Context
	cancels  []context.CancelFunc // of runCtx, and of the one before Start

	inflight atomic.Int64

	upMu sync.Mutex
	up   upcomingCache

	arrMu   sync.Mutex
	arrived map[int64]*arrival // every arrived, unfinished run (see LookAhead)
	spent   func(runID int64) int
	dur     func(job string) time.Duration
	ownsFn  func(job string) bool
}

// entry is one configured job and its place in cron.
type entry struct {
	job     Job
	sched   cron.Schedule // the job's own schedule (pure)
	rec     *slotRecorder // what cron sees; nil when the job is not in cron
	id      cron.EntryID
	rt      *jobRT
	removed bool // guarded by Scheduler.mu

	// Guarded by Scheduler.upMu: the slots in (slotsFrom, slotsTo].
	slots              []time.Time
	slotsFrom, slotsTo time.Time
}

// jobRT is the state of a job that outlives a reload.
type jobRT struct {
	paused   atomic.Bool  // cached from the store; the store decides at fire time
	estimate atomic.Int64 // the latest estimate, for Upcoming

	// Guarded by Scheduler.mu.
	holders     int           // runs holding the overlap slot
	waiting     chan struct{} // overlap=queue: closed when the waiting run may go
	lastNominal time.Time     // the latest slot recorded with SetLastNominal
}

// New returns a scheduler with no jobs. Call SetJobs, then Start.
func New(o Options) *Scheduler {
	s := &Scheduler{
		store:      o.Store,
		planner:    o.Planner,
		est:        o.Estimator,
		log:        o.Logger,
		now:        o.Now,
		rand:       o.Rand,
		backoff:    o.RetryBackoff,
		deferCheck: o.DeferCheck,
		onRun:      o.OnRun,
		spent:      o.Spent,
		dur:        o.Duration,
		ownsFn:     o.Owns,
		arrived:    map[int64]*arrival{},
		entries:    map[string]*entry{},
		rts:        map[string]*jobRT{},
		stopCh:     make(chan struct{}),
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.rand == nil {
		s.rand = rand.Int64N
	}
	if s.backoff == nil {
		s.backoff = DefaultRetryBackoff
	}
	if s.deferCheck <= 0 {
		s.deferCheck = DefaultDeferCheck
	}
	var cancel context.CancelFunc
	s.runCtx, cancel = context.WithCancel(context.Background())
	s.cancels = append(s.cancels, cancel)
	cl := cronLogger{s.log}
	s.cron = cron.New(
		cron.WithLocation(time.UTC),
		cron.WithLogger(cl),
		// Recover only: overlap is the scheduler's business, not cron's.
		cron.WithChain(cron.Recover(cl)),
	)
	return s
}

// cronLogger adapts slog to cron.Logger, so that cron does not print to
// stdout. cron's routine messages (every wake-up) are debug.
type cronLogger struct{ l *slog.Logger }

func (c cronLogger) Info(msg string, kv ...any) { c.l.Debug("cron: "+msg, kv...) }
func (c cronLogger) Error(err error, msg string, kv ...any) {
	c.l.Error("cron: "+msg, append([]any{"err", err}, kv...)...)
}

// normalize fills a job's defaults and checks it.
func normalize(j Job) (Job, cron.Schedule, error) {
	var errs []error
	if j.Name == "" {
		errs = append(errs, errors.New("name: empty"))
	}
	if j.Location == nil {
		j.Location = time.UTC
	}
	var sched cron.Schedule = schedule.Never{}
	if j.After == "" {
		var err error
		if sched, err = schedule.Parse(j.Schedule, j.Location); err != nil {
			errs = append(errs, fmt.Errorf("schedule %q: %w", j.Schedule, err))
		}
	} else if j.AfterStatus == "" {
		j.AfterStatus = AfterSucceeded
	}
	if j.Timeout <= 0 {
		j.Timeout = DefaultTimeout
	}
	switch j.Overlap {
	case "":
		j.Overlap = OverlapSkip
	case OverlapSkip, OverlapQueue, OverlapAllow:
	default:
		errs = append(errs, fmt.Errorf("overlap %q: want skip, queue or allow", j.Overlap))
	}
	switch j.CatchUp {
	case "":
		j.CatchUp = CatchUpLatest
	case CatchUpNone, CatchUpLatest, CatchUpAll:
	default:
		errs = append(errs, fmt.Errorf("catch_up %q: want none, latest or all", j.CatchUp))
	}
	if j.CatchUpWindow <= 0 {
		j.CatchUpWindow = DefaultCatchUpWindow
	}
	j.Jitter = max(j.Jitter, 0)
	j.Retries = max(j.Retries, 0)
	if j.Runner == nil {
		errs = append(errs, errors.New("no runner for its kind"))
	}
	if err := errors.Join(errs...); err != nil {
		return j, nil, fmt.Errorf("job %q: %w", j.Name, err)
	}
	return j, sched, nil
}

// cronKey is what decides whether a reloaded job keeps its cron entry.
func cronKey(j Job) string {
	return fmt.Sprintf("%t\x00%s\x00%s\x00%s", j.Enabled, j.Schedule, j.Location, j.After)
}

// jobKey renders a job's settings (not its Runner, which may not be
// comparable) to tell whether a reload changed it.
func jobKey(j Job) string {
	j.Runner = nil
	return fmt.Sprintf("%+v|%s", j, j.Location)
}

// SetJobs installs the job set: the initial one, and each reload. Jobs are
// matched by name. A new job starts firing at its next slot; a removed job
// stops firing, and its runs in flight finish; a changed job fires on its new
// schedule from now on. A run still waiting (jitter, a queue, the budget, a
// retry's backoff) reads its job again when it wakes: it is skipped if the job
// was removed or disabled (a RunNow run only if removed), and goes on with the
// new settings and Runner if the job was changed. History and pause state live in the store and are
// kept. If any job is invalid nothing changes.
func (s *Scheduler) SetJobs(ctx context.Context, jobs []Job) error {
	s.setMu.Lock()
	defer s.setMu.Unlock()
	type prepared struct {
		job   Job
		sched cron.Schedule
	}
	next := make(map[string]prepared, len(jobs))
	var errs []error
	for _, j := range jobs {
		nj, sched, err := normalize(j)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := next[nj.Name]; dup {
			errs = append(errs, fmt.Errorf("job %q: defined twice", nj.Name))
			continue
		}
		next[nj.Name] = prepared{nj, sched}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("set jobs: %w", err)
	}

	// Read what the store knows about the new jobs before taking the lock.
	states := make(map[string]store.JobState, len(next))
	s.mu.Lock()
	for name := range next {
		if _, ok := s.entries[name]; !ok {
			states[name] = store.JobState{}
		}
	}
	s.mu.Unlock()
	if err := s.readStates(ctx, states); err != nil {
		return fmt.Errorf("set jobs: %w", err)
	}

	s.mu.Lock()
	var added, removed, changed int
	var toRemove []cron.EntryID
	var toAdd, reestimate []*entry
	for name, old := range s.entries {
		if _, keep := next[name]; keep {
			continue
		}
		old.removed = true
		if old.rec != nil {
			toRemove = append(toRemove, old.id)
		}
		delete(s.entries, name)
		removed++
	}
	for name, p := range next {
		old := s.entries[name]
		if old != nil && cronKey(old.job) == cronKey(p.job) {
			if jobKey(old.job) != jobKey(p.job) {
				changed++
				reestimate = append(reestimate, old)
			}
			old.job = p.job // same slots: keep the cron entry
			continue
		}
		rt := s.rts[name]
		if rt == nil {
			rt = &jobRT{}
			s.rts[name] = rt
		}
		if st, ok := states[name]; ok {
			rt.paused.Store(st.Paused)
			if st.LastNominal.After(rt.lastNominal) {
				rt.lastNominal = st.LastNominal
			}
		}
		e := &entry{job: p.job, sched: p.sched, rt: rt}
		if old != nil {
			old.removed = true
			if old.rec != nil {
				toRemove = append(toRemove, old.id)
			}
			changed++
		} else {
			added++
		}
		s.entries[name] = e
		if p.job.Enabled {
			e.rec = &slotRecorder{sched: p.sched}
			toAdd = append(toAdd, e)
		}
	}
	s.next = map[string][]string{}
	for name, e := range s.entries {
		if e.job.After != "" {
			s.next[e.job.After] = append(s.next[e.job.After], name)
		}
	}
	for _, names := range s.next {
		slices.Sort(names)
	}
	s.gen++
	s.mu.Unlock()

	// cron has its own lock and its own goroutine; talk to it outside ours.
	for _, id := range toRemove {
		s.cron.Remove(id)
	}
	for _, e := range toAdd {
		e.id = s.cron.Schedule(e.rec, cron.FuncJob(func() { s.fire(e) }))
	}
	for _, e := range append(toAdd, reestimate...) {
		s.estimate(ctx, e.job, e.rt)
	}
	s.log.Info("jobs set", "jobs", len(next), "added", added, "removed", removed, "changed", changed)
	return nil
}

// Start marks the runs the last process left admitted or running as unknown
// (an unsafe call may have taken effect) or planned (nothing unsafe was sent),
// catches up on slots missed while runnerd was down, picks up runs left
// planned or deferred by the last process, and then starts cron; slots that
// fell while it did all that are fired as cron would have. Runs use ctx
// (and its values): cancelling it cancels runs in flight, so pass a context
// that outlives the shutdown signal and let Stop end the runs.
func (s *Scheduler) Start(ctx context.Context) error {
	s.mu.Lock()
	if s.started {
		s.mu.Unlock()
		return ErrStarted
	}
	if s.stopping {
		s.mu.Unlock()
		return ErrStopped
	}
	s.started = true
	var cancel context.CancelFunc
	s.runCtx, cancel = context.WithCancel(ctx)
	s.cancels = append(s.cancels, cancel)
	s.mu.Unlock()

	now := s.now()
	// Runs the last process left mid-flight first: unknown, or planned again
	// (and then resumed with the others).
	err := errors.Join(s.recoverInterrupted(ctx, s.owns), s.resume(ctx, now, s.owns), s.resumeChains(ctx, now, s.owns),
		s.catchUp(ctx, now, s.owns))
	s.cron.Start()
	// cron computes its first fires from the time its goroutine starts;
	// Entries waits until it has. The slots that fell in between — after the
	// catch-up's now, up to cron's — are fired here, as cron would have.
	s.cron.Entries()
	s.fireGap(now, s.now())
	s.log.Info("scheduler started", "jobs", len(s.snapshot()))
	return err
}

// fireGap fires the slots of each enabled job in (from, to]: those that fell
// while Start was catching up, which neither the catch-up nor cron saw. A
// slot that already has a run (cron fired it too) is not fired twice.
func (s *Scheduler) fireGap(from, to time.Time) {
	if !to.After(from) {
		return
	}
	for _, e := range s.snapshot() {
		if !e.job.Enabled {
			continue
		}
		slots, dropped := slotsBetween(e.sched, from, to, maxCatchUpSlots)
		if len(slots) == 0 {
			continue
		}
		s.log.Info("slots fell while starting; fired late", "job", e.job.Name, "slots", len(slots)+dropped,
			"from", from, "to", to)
		for _, t := range slots {
			j, rt, slot := e.job, e.rt, t.UTC()
			s.track(func() { s.fireSlot(j, rt, slot) })
		}
	}
}

// owns reports whether this scheduler runs job (Options.Owns).
func (s *Scheduler) owns(job string) bool { return s.ownsFn == nil || s.ownsFn(job) }

// Adopt takes over jobs this scheduler has just come to own (another
// instance on a shared ledger stopped renewing their leases): as Start does
// for its own jobs, it marks their runs left admitted or running as unknown
// or planned (their owner died mid-run: reconciliation looks them up), picks
// up their planned and deferred runs, their chains' next steps, and catches
// up on the slots their owner missed, within each job's catch-up window. A
// scheduler not started yet adopts nothing (Start does all of it).
func (s *Scheduler) Adopt(ctx context.Context, jobs []string) error {
	s.mu.Lock()
	started, stopping := s.started, s.stopping
	s.mu.Unlock()
	if !started || stopping || len(jobs) == 0 {
		return nil
	}
	set := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		set[j] = true
	}
	only := func(job string) bool { return set[job] && s.owns(job) }
	now := s.now()
	s.log.Info("adopting jobs another instance held", "jobs", jobs)
	return errors.Join(s.recoverInterrupted(ctx, only), s.resume(ctx, now, only), s.resumeChains(ctx, now, only),
		s.catchUp(ctx, now, only))
}

// Stop stops new dispatch — no more fires, no new attempts, no waiting run is
// started — and waits for the runs in flight until ctx is done. Then it
// cancels their contexts (a Kind stops at a safe point and reports how it
// ended) and returns ctx's error. Runs waiting for jitter, a queue or the
// budget stay planned or deferred in the store, and a run in a retry's backoff
// is planned again with its next attempt counted; the next Start picks them up.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.mu.Lock()
	if !s.stopping {
		s.stopping = true
		close(s.stopCh)
	}
	s.mu.Unlock()
	cronDone := s.cron.Stop()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		<-cronDone.Done()
		close(done)
	}()
	select {
	case <-done:
		s.cancelRuns()
		s.log.Info("scheduler stopped")
		return nil
	case <-ctx.Done():
		n := s.inflight.Load()
		s.cancelRuns()
		return fmt.Errorf("stop scheduler: %d runs in flight cancelled: %w", n, context.Cause(ctx))
	}
}

// cancelRuns cancels the contexts of the runs in flight.
func (s *Scheduler) cancelRuns() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, c := range s.cancels {
		c()
	}
}

// isStopping reports whether Stop has been called.
func (s *Scheduler) isStopping() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stopping
}

// Pause stops a job from firing, persistently: fires while paused create no
// runs, and RunNow refuses the job. A run in flight is not touched.
func (s *Scheduler) Pause(ctx context.Context, job string) error { return s.setPaused(ctx, job, true) }

// Resume undoes Pause. Slots that passed while paused are not caught up.
func (s *Scheduler) Resume(ctx context.Context, job string) error {
	return s.setPaused(ctx, job, false)
}

func (s *Scheduler) setPaused(ctx context.Context, job string, paused bool) error {
	s.mu.Lock()
	e := s.entries[job]
	s.mu.Unlock()
	op := map[bool]string{true: "pause", false: "resume"}[paused]
	if e == nil {
		return fmt.Errorf("%s %q: %w", op, job, ErrUnknownJob)
	}
	if err := s.store.SetPaused(ctx, job, paused); err != nil {
		return fmt.Errorf("%s %q: %w", op, job, err)
	}
	e.rt.paused.Store(paused)
	s.log.Info("job "+op+"d", "job", job)
	return nil
}

// Next returns the next fire time of each enabled, unpaused job.
func (s *Scheduler) Next() map[string]time.Time {
	now := s.now()
	out := map[string]time.Time{}
	for _, e := range s.snapshot() {
		if e.job.Enabled && !e.rt.paused.Load() {
			if t := e.sched.Next(now); !t.IsZero() {
				out[e.job.Name] = t
			}
		}
	}
	return out
}

// InFlight returns the number of runs holding their job's overlap slot: from
// the fire (jitter included) to the outcome.
func (s *Scheduler) InFlight() int { return int(s.inflight.Load()) }

// snapshot returns the current entries with a copy of their jobs.
func (s *Scheduler) snapshot() []entry {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]entry, 0, len(s.entries))
	for _, e := range s.entries {
		out = append(out, entry{job: e.job, sched: e.sched, rt: e.rt})
	}
	slices.SortFunc(out, func(a, b entry) int { return cmp.Compare(a.job.Name, b.job.Name) })
	return out
}

// baseCtx is the context runs derive from.
func (s *Scheduler) baseCtx() context.Context {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runCtx
}

// lookup returns a job's current configuration.
func (s *Scheduler) lookup(job string) (Job, *jobRT, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[job]
	if e == nil {
		return Job{}, nil, false
	}
	return e.job, e.rt, true
}

// track runs f on a goroutine counted by Stop, unless the scheduler is
// stopping; it reports whether f was started.
func (s *Scheduler) track(f func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		f()
	}()
	return true
}

// enter counts the calling goroutine as carrying a run, unless the scheduler
// is stopping. The caller defers s.wg.Done() when ok.
func (s *Scheduler) enter() (ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopping {
		return false
	}
	s.wg.Add(1)
	return true
}

// estimate asks the Estimator for a job's next run and caches the answer for
// Upcoming.
func (s *Scheduler) estimate(ctx context.Context, j Job, rt *jobRT) int {
	n := 0
	if s.est != nil {
		n = s.est.Estimate(ctx, j.Name, j.Kind)
	}
	rt.estimate.Store(int64(n))
	return n
}

// duration is how long job's runs typically take (Options.Duration), or 0.
func (s *Scheduler) duration(job string) time.Duration {
	if s.dur == nil {
		return 0
	}
	return s.dur(job)
}

// Upcoming returns the slots of every enabled, unpaused job in (now,
// now+horizon], oldest first, with the job's priority and latest estimate: the
// planner's look-ahead and `runnerd plan`. Seq is 0. The result is the
// caller's to keep.
func (s *Scheduler) Upcoming(now time.Time, horizon time.Duration) []budget.Candidate {
	end := now.Add(horizon)
	s.mu.Lock()
	gen := s.gen
	s.mu.Unlock()

	s.upMu.Lock()
	defer s.upMu.Unlock()
	c := &s.up
	if c.gen != gen || c.from.After(now) || c.to.Before(end) {
		// An hour more than asked on both sides: the admissions of the next
		// hour are answered from the cache, even when their clocks are read
		// a little out of order.
		s.buildUpcoming(gen, now.Add(-time.Hour), end.Add(time.Hour))
	}
	after := func(x budget.Candidate, t time.Time) int { return cmpAfter(x.Nominal, t) }
	lo, _ := slices.BinarySearchFunc(c.cands, now, after)
	hi, _ := slices.BinarySearchFunc(c.cands, end, after)
	// Pause and estimates are read once per job, not once per slot.
	paused := make([]bool, len(c.jobs))
	est := make([]int, len(c.jobs))
	dur := make([]time.Duration, len(c.jobs))
	have := make([]bool, len(c.jobs))
	// A chain's first step holds the whole chain; without chains (the
	// common case) there is nothing to add.
	s.mu.Lock()
	chains := len(s.next) > 0
	s.mu.Unlock()
	rest := make([]int, len(c.jobs))
	for i := range rest {
		rest[i] = -1
		if !chains {
			rest[i] = 0
		}
	}
	for i, rt := range c.jobs {
		paused[i], est[i] = rt.paused.Load(), int(rt.estimate.Load())
	}
	out := make([]budget.Candidate, 0, hi-lo)
	for i := lo; i < hi; i++ {
		j := c.job[i]
		if paused[j] {
			continue
		}
		cand := c.cands[i]
		if !have[j] {
			dur[j], have[j] = s.duration(cand.Job), true
		}
		if rest[j] < 0 {
			rest[j] = s.chainRest(cand.Job)
		}
		cand.Estimate, cand.Duration = est[j]+rest[j], dur[j]
		out = append(out, cand)
	}
	return out
}

// upcomingCache holds every enabled job's slots in (from, to], sorted by
// nominal time; pause and estimates are read at query time.
type upcomingCache struct {
	gen      uint64
	from, to time.Time
	cands    []budget.Candidate
	job      []int32  // job[i] indexes jobs: cands[i]'s job
	jobs     []*jobRT // the enabled jobs
}

// buildUpcoming merges the enabled jobs' slots in (from, to]. Each entry
// keeps its own slots between builds, so a build after a reload recomputes
// only the changed jobs, and one an hour later only the hour added.
func (s *Scheduler) buildUpcoming(gen uint64, from, to time.Time) {
	s.mu.Lock()
	type live struct {
		e        *entry
		name     string
		priority runnerd.Priority
	}
	var ents []live
	for _, e := range s.entries {
		if e.job.Enabled {
			ents = append(ents, live{e, e.job.Name, e.job.Priority})
		}
	}
	s.mu.Unlock()

	type slot struct {
		c   budget.Candidate
		job int32
	}
	var slots []slot
	jobs := make([]*jobRT, len(ents))
	for i, l := range ents {
		jobs[i] = l.e.rt
		for _, t := range l.e.slotsIn(from, to) {
			slots = append(slots, slot{budget.Candidate{Job: l.name, Nominal: t, Priority: l.priority}, int32(i)})
		}
	}
	slices.SortFunc(slots, func(a, b slot) int {
		if c := a.c.Nominal.Compare(b.c.Nominal); c != 0 {
			return c
		}
		if c := cmp.Compare(b.c.Priority, a.c.Priority); c != 0 {
			return c
		}
		return cmp.Compare(a.c.Job, b.c.Job)
	})
	c := &s.up
	c.gen, c.from, c.to, c.jobs = gen, from, to, jobs
	c.cands = make([]budget.Candidate, len(slots))
	c.job = make([]int32, len(slots))
	for i, sl := range slots {
		c.cands[i], c.job[i] = sl.c, sl.job
	}
}

// slotsIn returns the entry's slots in (from, to], in UTC, extending its cache
// (guarded by Scheduler.upMu) as needed.
func (e *entry) slotsIn(from, to time.Time) []time.Time {
	if e.slotsTo.IsZero() || from.Before(e.slotsFrom) || from.After(e.slotsTo) {
		e.slots, e.slotsFrom, e.slotsTo = nil, from, from
	}
	i, _ := slices.BinarySearchFunc(e.slots, from, cmpAfter)
	e.slots, e.slotsFrom = e.slots[i:], from
	if to.After(e.slotsTo) {
		for t := e.sched.Next(e.slotsTo); !t.IsZero() && !t.After(to); t = e.sched.Next(t) {
			e.slots = append(e.slots, t.UTC())
		}
		e.slotsTo = to
	}
	j, _ := slices.BinarySearchFunc(e.slots, to, cmpAfter)
	return e.slots[:j]
}

// cmpAfter orders x after t only if it is strictly later: a binary search
// with it finds the first element after t.
func cmpAfter(x, t time.Time) int {
	if x.After(t) {
		return 1
	}
	return -1
}

// readStates fills states (keyed by job name) from the store: with a
// BatchStore and more than one job in a single query, so that loading 1,000
// jobs at start-up costs one read, not one per job.
func (s *Scheduler) readStates(ctx context.Context, states map[string]store.JobState) error {
	if bs, ok := s.store.(BatchStore); ok && len(states) > 1 {
		all, err := bs.JobStates(ctx)
		if err != nil {
			return fmt.Errorf("read the jobs' state: %w", err)
		}
		for name := range states {
			states[name] = store.JobState{Job: name}
		}
		for _, st := range all {
			if _, want := states[st.Job]; want {
				states[st.Job] = st
			}
		}
		return nil
	}
	for name := range states {
		st, err := s.store.JobState(ctx, name)
		if err != nil {
			return fmt.Errorf("job %q: %w", name, err)
		}
		states[name] = st
	}
	return nil
}

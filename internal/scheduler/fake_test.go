package scheduler

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// The real store implements the scheduler's interface.
var _ Store = (*store.DB)(nil)

// fakeStore is an in-memory Store with the real one's semantics: (job,
// nominal) unique, UpdateRun leaves Calls alone, LastNominal only moves
// forward. It keeps every state a run went through, with the time.
type fakeStore struct {
	mu      sync.Mutex
	runs    []runnerd.Run // runs[id-1]
	byKey   map[runKey]int64
	jobs    map[string]store.JobState
	history map[int64][]stateAt
	// failCreate, if set, makes CreateRun fail; panicCreate makes the next
	// n calls panic.
	failCreate  error
	panicCreate int
}

type runKey struct {
	job string
	ms  int64
}

type stateAt struct {
	State runnerd.RunState
	At    time.Time
}

func newFakeStore() *fakeStore {
	return &fakeStore{byKey: map[runKey]int64{}, jobs: map[string]store.JobState{}, history: map[int64][]stateAt{}}
}

func (f *fakeStore) CreateRun(_ context.Context, r runnerd.Run) (runnerd.Run, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failCreate != nil {
		return runnerd.Run{}, false, f.failCreate
	}
	if f.panicCreate > 0 {
		f.panicCreate--
		panic("fake store: boom")
	}
	if r.Job == "" || r.NominalTime.IsZero() {
		return runnerd.Run{}, false, errors.New("fake: need a job and a nominal time")
	}
	k := runKey{r.Job, r.NominalTime.UnixMilli()}
	if id, ok := f.byKey[k]; ok {
		return f.runs[id-1], false, nil
	}
	if r.State == "" {
		r.State = runnerd.StatePlanned
	}
	r.ID = int64(len(f.runs) + 1)
	r.Calls = 0
	r.NominalTime = time.UnixMilli(r.NominalTime.UnixMilli()).UTC()
	f.runs = append(f.runs, r)
	f.byKey[k] = r.ID
	f.history[r.ID] = append(f.history[r.ID], stateAt{r.State, time.Now()})
	return r, true, nil
}

func (f *fakeStore) UpdateRun(_ context.Context, r runnerd.Run) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.ID < 1 || int(r.ID) > len(f.runs) {
		return fmt.Errorf("fake: run %d: %w", r.ID, store.ErrNotFound)
	}
	if r.State == "" {
		return errors.New("fake: empty state")
	}
	cur := &f.runs[r.ID-1]
	r.Job, r.Kind, r.NominalTime, r.Calls = cur.Job, cur.Kind, cur.NominalTime, cur.Calls
	if cur.State != r.State {
		f.history[r.ID] = append(f.history[r.ID], stateAt{r.State, time.Now()})
	}
	*cur = r
	return nil
}

func (f *fakeStore) GetRun(_ context.Context, id int64) (runnerd.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if id < 1 || int(id) > len(f.runs) {
		return runnerd.Run{}, fmt.Errorf("fake: run %d: %w", id, store.ErrNotFound)
	}
	return f.runs[id-1], nil
}

func (f *fakeStore) ListRuns(_ context.Context, flt store.RunFilter) ([]runnerd.Run, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runnerd.Run
	for _, r := range f.runs {
		if flt.Job != "" && r.Job != flt.Job ||
			len(flt.States) > 0 && !slices.Contains(flt.States, r.State) ||
			!flt.Since.IsZero() && r.NominalTime.Before(flt.Since) {
			continue
		}
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b runnerd.Run) int { return b.NominalTime.Compare(a.NominalTime) })
	if flt.Limit > 0 && len(out) > flt.Limit {
		out = out[:flt.Limit]
	}
	return out, nil
}

func (f *fakeStore) JobState(_ context.Context, job string) (store.JobState, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.jobs[job]
	st.Job = job
	return st, nil
}

func (f *fakeStore) SetPaused(_ context.Context, job string, paused bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.jobs[job]
	st.Paused = paused
	f.jobs[job] = st
	return nil
}

func (f *fakeStore) SetLastNominal(_ context.Context, job string, t time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	st := f.jobs[job]
	if t.After(st.LastNominal) {
		st.LastNominal = t
	}
	f.jobs[job] = st
	return nil
}

// addCalls plays the ledger: n calls begun for run id.
func (f *fakeStore) addCalls(id int64, n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runs[id-1].Calls += n
}

// runsOf returns job's runs, oldest nominal first.
func (f *fakeStore) runsOf(job string) []runnerd.Run {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []runnerd.Run
	for _, r := range f.runs {
		if r.Job == job {
			out = append(out, r)
		}
	}
	slices.SortFunc(out, func(a, b runnerd.Run) int { return a.NominalTime.Compare(b.NominalTime) })
	return out
}

func (f *fakeStore) states(id int64) []stateAt {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.history[id])
}

// summary renders a job's runs as "HH:MM state" lines (UTC), for comparisons.
func (f *fakeStore) summary(job string) []string {
	var out []string
	for _, r := range f.runsOf(job) {
		out = append(out, r.NominalTime.UTC().Format("01-02 15:04")+" "+string(r.State))
	}
	return out
}

// fakeKind records each attempt and answers with fn (succeeded if nil).
type fakeKind struct {
	mu    sync.Mutex
	calls []kindCall
	fn    func(ctx context.Context, rc *RunContext, n int) Outcome
}

type kindCall struct {
	Run         runnerd.Run
	At          time.Time
	Deadline    time.Time
	From, To    time.Time
	RunIDInCtx  int64
	JobInCtx    string
	NominalTime time.Time
}

func (k *fakeKind) Run(ctx context.Context, rc *RunContext) Outcome {
	dl, _ := ctx.Deadline()
	info := atomapi.CallInfoFrom(ctx)
	k.mu.Lock()
	n := len(k.calls)
	k.calls = append(k.calls, kindCall{Run: rc.Run, At: rc.Now(), Deadline: dl, From: rc.WindowFrom, To: rc.WindowTo,
		RunIDInCtx: info.RunID, JobInCtx: info.Job, NominalTime: rc.Run.NominalTime})
	k.mu.Unlock()
	if k.fn == nil {
		return Outcome{State: runnerd.StateSucceeded}
	}
	return k.fn(ctx, rc, n)
}

func (k *fakeKind) Calls() []kindCall {
	k.mu.Lock()
	defer k.mu.Unlock()
	return slices.Clone(k.calls)
}

// sleepKind returns a kind that works for d (or until its context ends) and
// then succeeds (or reports the context's end as a failure).
func sleepKind(d time.Duration) *fakeKind {
	return &fakeKind{fn: func(ctx context.Context, _ *RunContext, _ int) Outcome {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-t.C:
			return Outcome{State: runnerd.StateSucceeded}
		case <-ctx.Done():
			return Outcome{State: runnerd.StateFailed, Err: ctx.Err()}
		}
	}}
}

// fakePlanner answers with fn (admit if nil) and records each question.
type fakePlanner struct {
	mu   sync.Mutex
	asks []plannerAsk
	fn   func(now time.Time, c budget.Candidate, n int) budget.Decision
}

type plannerAsk struct {
	Now      time.Time
	C        budget.Candidate
	Upcoming int
}

func (p *fakePlanner) Admit(now time.Time, c budget.Candidate, upcoming []budget.Candidate) budget.Decision {
	p.mu.Lock()
	n := len(p.asks)
	p.asks = append(p.asks, plannerAsk{now, c, len(upcoming)})
	p.mu.Unlock()
	if p.fn == nil {
		return budget.Decision{Admit: true}
	}
	return p.fn(now, c, n)
}

func (p *fakePlanner) Asks() []plannerAsk {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.asks)
}

// fixedEstimator estimates every run at n calls, or per job from m.
type fixedEstimator struct {
	n int
	m map[string]int
}

func (e fixedEstimator) Estimate(_ context.Context, job, _ string) int {
	if v, ok := e.m[job]; ok {
		return v
	}
	return e.n
}

// testLogger logs at info to the test's output.
func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelInfo}))
}

// newTestScheduler returns a scheduler over st with the fakes, on the
// bubble's clock. Options given in o override the defaults.
func newTestScheduler(t testing.TB, st Store, o Options) *Scheduler {
	t.Helper()
	o.Store = st
	if o.Logger == nil {
		o.Logger = testLogger(t)
	}
	return New(o)
}

// inBubble runs f in a synctest bubble whose clock has been moved to start.
func inBubble(t *testing.T, start time.Time, f func(t *testing.T)) {
	t.Helper()
	synctest.Test(t, func(t *testing.T) {
		time.Sleep(time.Until(start))
		f(t)
	})
}

// sleepUntil moves the bubble's clock to at and lets every goroutine settle.
func sleepUntil(t *testing.T, at time.Time) {
	t.Helper()
	if d := time.Until(at); d > 0 {
		time.Sleep(d)
	}
	synctest.Wait()
}

// mustSetJobs calls SetJobs and fails the test on error.
func mustSetJobs(t *testing.T, s *Scheduler, jobs ...Job) {
	t.Helper()
	if err := s.SetJobs(t.Context(), jobs); err != nil {
		t.Fatalf("SetJobs: %v", err)
	}
}

// mustStop stops s with a generous bound.
func mustStop(t *testing.T, s *Scheduler) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}
}

func mustLoad(t testing.TB, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Skipf("time zone %s not available: %v", name, err)
	}
	return loc
}

// utc parses "2006-01-02 15:04" (optionally with :05) in UTC.
func utc(t testing.TB, s string) time.Time {
	t.Helper()
	for _, layout := range []string{"2006-01-02 15:04:05", "2006-01-02 15:04"} {
		if v, err := time.Parse(layout, s); err == nil {
			return v
		}
	}
	t.Fatalf("bad time %q", s)
	return time.Time{}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes, for log capture.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

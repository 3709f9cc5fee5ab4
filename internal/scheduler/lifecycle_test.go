package scheduler

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// A run that waits — deferred, queued, in its retry backoff, in its jitter —
// reads its job again when it wakes: a reload that removed or disabled the
// job skips it, one that changed the job (its Runner) runs the new one.
func TestReloadReachesWaitingRuns(t *testing.T) {
	errBoom := errors.New("503")
	type reload int
	const (
		remove reload = iota
		disable
		newRunner
	)
	for _, tc := range []struct {
		name     string
		deferred bool                                   // the planner defers until 03:00
		job      func(j Job, old *fakeKind) Job         // the job before the reload
		old      func() *fakeKind                       // its Runner
		reloadAt string                                 // when the reload comes
		reload   reload                                 // what it does
		check    string                                 // when to look
		want     runnerd.RunState                       // the state of the 01:00 run
		reason   string                                 // in its reason
		oldCalls int                                    // attempts of the old Runner
		newCalls int                                    // attempts of the new one
		extra    func(t *testing.T, runs []runnerd.Run) // further checks
	}{
		{name: "deferred, job removed", deferred: true, old: func() *fakeKind { return &fakeKind{} },
			reloadAt: "2026-01-10 01:30", reload: remove, check: "2026-01-10 04:00",
			want: runnerd.StateSkipped, reason: "removed by a reload"},
		{name: "deferred, job disabled", deferred: true, old: func() *fakeKind { return &fakeKind{} },
			reloadAt: "2026-01-10 01:30", reload: disable, check: "2026-01-10 04:00",
			want: runnerd.StateSkipped, reason: "disabled by a reload"},
		{name: "deferred, runner changed", deferred: true, old: func() *fakeKind { return &fakeKind{} },
			reloadAt: "2026-01-10 01:30", reload: newRunner, check: "2026-01-10 04:00",
			want: runnerd.StateSucceeded, newCalls: 1},
		{name: "queued, job removed", old: func() *fakeKind { return sleepKind(90 * time.Minute) },
			job: func(j Job, _ *fakeKind) Job {
				j.Schedule, j.Overlap, j.Timeout = "0 1,2 * * *", OverlapQueue, 3*time.Hour
				return j
			},
			reloadAt: "2026-01-10 02:10", reload: remove, check: "2026-01-10 04:00",
			want: runnerd.StateSucceeded, oldCalls: 1,
			extra: func(t *testing.T, runs []runnerd.Run) {
				if len(runs) != 2 || runs[1].State != runnerd.StateSkipped || !strings.Contains(runs[1].Reason, "removed by a reload") {
					t.Errorf("runs = %+v; want the 02:00 run, queued behind 01:00, skipped as removed", runs)
				}
			}},
		{name: "retry backoff, job removed", old: func() *fakeKind {
			return &fakeKind{fn: func(context.Context, *RunContext, int) Outcome {
				return Outcome{State: runnerd.StateFailed, Err: errBoom, Retryable: true}
			}}
		}, job: func(j Job, _ *fakeKind) Job { j.Retries = 3; return j },
			reloadAt: "2026-01-10 01:00:10", reload: remove, check: "2026-01-10 02:00",
			want: runnerd.StateSkipped, reason: "removed by a reload", oldCalls: 1,
			extra: func(t *testing.T, runs []runnerd.Run) {
				if r := runs[0]; r.Error != "503" || r.FinishedAt.IsZero() {
					t.Errorf("run error %q finished %v; want the last attempt's error, and a finish time", r.Error, r.FinishedAt)
				}
			}},
		{name: "retry backoff, runner changed", old: func() *fakeKind {
			return &fakeKind{fn: func(context.Context, *RunContext, int) Outcome {
				return Outcome{State: runnerd.StateFailed, Err: errBoom, Retryable: true}
			}}
		}, job: func(j Job, _ *fakeKind) Job { j.Retries = 3; return j },
			reloadAt: "2026-01-10 01:00:10", reload: newRunner, check: "2026-01-10 02:00",
			want: runnerd.StateSucceeded, oldCalls: 1, newCalls: 1},
		{name: "jitter, job disabled", old: func() *fakeKind { return &fakeKind{} },
			job:      func(j Job, _ *fakeKind) Job { j.Jitter = 10 * time.Minute; return j },
			reloadAt: "2026-01-10 01:02", reload: disable, check: "2026-01-10 02:00",
			want: runnerd.StateSkipped, reason: "disabled by a reload"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
				st := newFakeStore()
				o := Options{Rand: func(int64) int64 { return int64(5 * time.Minute) }}
				if tc.deferred {
					o.Planner = &fakePlanner{fn: func(now time.Time, _ budget.Candidate, _ int) budget.Decision {
						if now.Before(utc(t, "2026-01-10 03:00")) {
							return budget.Decision{Reason: "window full until 03:00", EarliestAt: utc(t, "2026-01-10 03:00")}
						}
						return budget.Decision{Admit: true}
					}}
				}
				s := newTestScheduler(t, st, o)
				old, nk := tc.old(), &fakeKind{}
				j := Job{Name: "deploy", Kind: "deploy", Schedule: "0 1 * * *", CatchUpWindow: 6 * time.Hour, Enabled: true, Runner: old}
				if tc.job != nil {
					j = tc.job(j, old)
				}
				other := Job{Name: "other", Schedule: "@daily", Enabled: true, Runner: &fakeKind{}}
				mustSetJobs(t, s, j, other)
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, tc.reloadAt))
				switch tc.reload {
				case remove:
					mustSetJobs(t, s, other)
				case disable:
					j.Enabled = false
					mustSetJobs(t, s, j, other)
				case newRunner:
					j.Runner = nk
					mustSetJobs(t, s, j, other)
				}
				sleepUntil(t, utc(t, tc.check))
				mustStop(t, s)

				runs := st.runsOf("deploy")
				if len(runs) == 0 {
					t.Fatal("no run recorded")
				}
				if r := runs[0]; r.State != tc.want || !strings.Contains(r.Reason, tc.reason) {
					t.Errorf("01:00 run = %s (%q); want %s with a reason containing %q", r.State, r.Reason, tc.want, tc.reason)
				}
				if got := len(old.Calls()); got != tc.oldCalls {
					t.Errorf("old Runner ran %d times; want %d", got, tc.oldCalls)
				}
				if got := len(nk.Calls()); got != tc.newCalls {
					t.Errorf("new Runner ran %d times; want %d", got, tc.newCalls)
				}
				if tc.extra != nil {
					tc.extra(t, runs)
				}
			})
		})
	}
}

// A manual run of a disabled job (RunNow runs those) that the budget defers
// goes on in the background: the job being disabled does not skip it.
func TestDeferredManualRunOfDisabledJobGoesOn(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		p := &fakePlanner{fn: func(now time.Time, _ budget.Candidate, _ int) budget.Decision {
			if now.Before(utc(t, "2026-01-10 02:00")) {
				return budget.Decision{Reason: "full", EarliestAt: utc(t, "2026-01-10 02:00")}
			}
			return budget.Decision{Admit: true}
		}}
		s := newTestScheduler(t, st, Options{Planner: p})
		mustSetJobs(t, s, Job{Name: "off", Schedule: "0 5 * * *", Enabled: false, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		r, err := s.RunNow(t.Context(), "off", time.Time{}, time.Time{})
		if err != nil || r.State != runnerd.StateDeferred {
			t.Fatalf("RunNow = %s, %v; want deferred", r.State, err)
		}
		sleepUntil(t, utc(t, "2026-01-10 03:00"))
		mustStop(t, s)
		if got, _ := st.GetRun(t.Context(), r.ID); got.State != runnerd.StateSucceeded || len(k.Calls()) != 1 {
			t.Errorf("run = %s (%q), kind calls %d; want succeeded once", got.State, got.Reason, len(k.Calls()))
		}
	})
}

// A backfill (RunNow with -from/-to) that the daemon carries on later — after
// a deferral and a restart, or after the kind stopped at a safe point —
// exports the window it was asked for, never the next incremental one.
func TestBackfillWindowSurvivesResume(t *testing.T) {
	from, to := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 12, 3, 12, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		// kind answers attempt n; budgetUntil: the planner defers before it.
		kind        func(ctx context.Context, rc *RunContext, n int) Outcome
		budgetUntil string
	}{
		{name: "deferred at admission, resumed after a restart", budgetUntil: "2026-01-10 02:00"},
		{name: "deferred mid-way by the kind, resumed after a restart", budgetUntil: "2026-01-10 00:30",
			kind: func(_ context.Context, _ *RunContext, n int) Outcome {
				if n == 0 {
					return Outcome{State: runnerd.StateDeferred, Err: errors.New("budget exhausted"),
						Detail: `{"object":"AuditLog","files":[{"path":"a.jsonl"}]}`}
				}
				return Outcome{State: runnerd.StateSucceeded, Detail: `{"object":"AuditLog","rows":3}`}
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
				st := newFakeStore()
				k := &fakeKind{fn: tc.kind}
				var mu sync.Mutex
				offers := 0
				p := &fakePlanner{fn: func(now time.Time, _ budget.Candidate, _ int) budget.Decision {
					mu.Lock()
					defer mu.Unlock()
					offers++
					if offers > 1 && now.Before(utc(t, "2026-01-10 02:00")) || now.Before(utc(t, tc.budgetUntil)) {
						return budget.Decision{Reason: "full", EarliestAt: utc(t, "2026-01-10 02:00")}
					}
					return budget.Decision{Admit: true}
				}}
				job := Job{Name: "exp", Kind: "export", Schedule: "0 5 * * *", Enabled: true, Runner: k}
				s1 := newTestScheduler(t, st, Options{Planner: p})
				mustSetJobs(t, s1, job)
				if err := s1.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				r, err := s1.RunNow(t.Context(), "exp", from, to)
				if err != nil || r.State != runnerd.StateDeferred {
					t.Fatalf("RunNow = %s, %v; want deferred", r.State, err)
				}
				sleepUntil(t, utc(t, "2026-01-10 01:00"))
				mustStop(t, s1)

				s2 := newTestScheduler(t, st, Options{Planner: p})
				mustSetJobs(t, s2, job)
				if err := s2.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, "2026-01-10 03:00"))
				mustStop(t, s2)

				got, _ := st.GetRun(t.Context(), r.ID)
				if got.State != runnerd.StateSucceeded {
					t.Fatalf("run = %s (%q); want succeeded", got.State, got.Reason)
				}
				calls := k.Calls()
				last := calls[len(calls)-1]
				if !last.At.Equal(utc(t, "2026-01-10 02:00")) || !last.From.Equal(from) || !last.To.Equal(to) {
					t.Errorf("resumed attempt at %v window [%v, %v); want at 02:00 with the window [%v, %v)", last.At, last.From, last.To, from, to)
				}
				// The Detail keeps both the window and what the kind recorded.
				var d map[string]any
				if err := json.Unmarshal([]byte(got.Detail), &d); err != nil {
					t.Fatalf("Detail %q: %v", got.Detail, err)
				}
				if d[keyBackfillFrom] != "2025-12-01T00:00:00Z" || d[keyBackfillTo] != "2025-12-03T12:30:00Z" ||
					tc.kind != nil && d["rows"] != float64(3) {
					t.Errorf("Detail = %s; want the backfill window (and the kind's rows)", got.Detail)
				}
			})
		})
	}
}

// A run whose Detail says it is a backfill, with a window that cannot be read
// back, is skipped, never run as a normal export.
func TestBackfillWindowLostIsSkipped(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		r, _, err := st.CreateRun(t.Context(), runnerd.Run{Job: "exp", Kind: "export", NominalTime: utc(t, "2026-01-10 00:10:00.123"),
			State: runnerd.StateDeferred, Detail: `{"backfill_from":"the first of December"}`})
		if err != nil {
			t.Fatal(err)
		}
		k := &fakeKind{}
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "exp", Kind: "export", Schedule: "0 5 * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:00"))
		mustStop(t, s)
		got, _ := st.GetRun(t.Context(), r.ID)
		if got.State != runnerd.StateSkipped || !strings.Contains(got.Reason, "window cannot be restored") || len(k.Calls()) != 0 {
			t.Errorf("run = %s (%q), kind calls %d; want skipped, naming the lost window, never run", got.State, got.Reason, len(k.Calls()))
		}
	})
}

func TestBackfillDetail(t *testing.T) {
	from, to := time.Date(2025, 12, 1, 0, 0, 0, 0, time.UTC), time.Date(2025, 12, 2, 0, 0, 0, 5, time.FixedZone("X", 3600))
	for _, tc := range []struct {
		name, detail string
		from, to     time.Time
		wantKey      string // a key of detail that must survive
	}{
		{"empty", "", from, to, ""},
		{"kind detail", `{"object":"AuditLog","rows":3}`, from, to, "rows"},
		{"replaces an old window", `{"backfill_from":"2020-01-01T00:00:00Z","x":1}`, from, to, "x"},
		{"from only", `{"x":1}`, from, time.Time{}, "x"},
		{"not an object", `not json`, from, to, "detail"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := withBackfill(tc.detail, tc.from, tc.to)
			f, tt, err := backfillWindow(d)
			if err != nil || !f.Equal(tc.from) || !tt.Equal(tc.to) {
				t.Errorf("backfillWindow(withBackfill(%q)) = %v, %v, %v; want %v, %v", tc.detail, f, tt, err, tc.from, tc.to)
			}
			if tc.wantKey != "" {
				var m map[string]any
				if err := json.Unmarshal([]byte(d), &m); err != nil || m[tc.wantKey] == nil {
					t.Errorf("withBackfill(%q) = %s; want it to keep %q", tc.detail, d, tc.wantKey)
				}
			}
		})
	}
	if got := withBackfill(`{"rows":3}`, time.Time{}, time.Time{}); got != `{"rows":3}` {
		t.Errorf("withBackfill(no window) = %s; want the detail unchanged", got)
	}
	for _, d := range []string{"", `{"rows":3,"path":"backfill_2025.csv"}`, "plain text"} {
		if f, tt, err := backfillWindow(d); err != nil || !f.IsZero() || !tt.IsZero() {
			t.Errorf("backfillWindow(%q) = %v, %v, %v; want no window, no error", d, f, tt, err)
		}
	}
	for _, d := range []string{`{"backfill_from":"someday"}`, `{"backfill_to":5}`, `{"backfill_from":"x"`} {
		if _, _, err := backfillWindow(d); err == nil {
			t.Errorf("backfillWindow(%q) error = nil; want one", d)
		}
	}
}

// Stop during a retry's backoff leaves the run planned with the next attempt
// counted, not failed: nothing unsafe was sent, and the next start goes on
// with the retries that are left.
func TestStopDuringRetryBackoffKeepsTheRetry(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{fn: func(_ context.Context, rc *RunContext, n int) Outcome {
			if n == 0 {
				return Outcome{State: runnerd.StateFailed, Err: errors.New("503"), Retryable: true}
			}
			return Outcome{State: runnerd.StateSucceeded}
		}}
		var mu sync.Mutex
		var heard []runnerd.RunState
		onRun := func(r runnerd.Run) {
			mu.Lock()
			defer mu.Unlock()
			heard = append(heard, r.State)
		}
		job := Job{Name: "r", Schedule: "0 1 * * *", Retries: 2, Enabled: true, Runner: k}
		s1 := newTestScheduler(t, st, Options{OnRun: onRun})
		mustSetJobs(t, s1, job)
		if err := s1.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:00:10")) // in the 30s backoff
		mustStop(t, s1)
		r := st.runsOf("r")[0]
		if r.State != runnerd.StatePlanned || r.Attempt != 1 || !r.NotBefore.Equal(utc(t, "2026-01-10 01:00:30")) ||
			!strings.Contains(r.Reason, "retry backoff") {
			t.Fatalf("after Stop: run = %s attempt %d not before %v (%q); want planned, attempt 1, not before 01:00:30",
				r.State, r.Attempt, r.NotBefore, r.Reason)
		}
		mu.Lock()
		if len(heard) != 0 {
			t.Errorf("OnRun heard %v during the stop; want nothing (no failed notification)", heard)
		}
		mu.Unlock()

		s2 := newTestScheduler(t, st, Options{OnRun: onRun})
		mustSetJobs(t, s2, job)
		if err := s2.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:30"))
		mustStop(t, s2)
		calls := k.Calls()
		if len(calls) != 2 || calls[1].Run.Attempt != 1 || !calls[1].At.Equal(utc(t, "2026-01-10 01:00:30")) {
			t.Fatalf("kind calls = %+v; want the second attempt (attempt 1) at 01:00:30, after the restart", calls)
		}
		if r := st.runsOf("r")[0]; r.State != runnerd.StateSucceeded || r.Attempt != 1 {
			t.Errorf("run = %s attempt %d; want succeeded on attempt 1", r.State, r.Attempt)
		}
		mu.Lock()
		defer mu.Unlock()
		if !slices.Equal(heard, []runnerd.RunState{runnerd.StateSucceeded}) {
			t.Errorf("OnRun heard %v; want [succeeded]", heard)
		}
	})
}

// slowStore makes the first ListRuns take a while: Start's recovery is slow,
// and a slot falls before cron starts.
type slowStore struct {
	*fakeStore
	once  sync.Once
	delay time.Duration
}

func (s *slowStore) ListRuns(ctx context.Context, f store.RunFilter) ([]runnerd.Run, error) {
	s.once.Do(func() { time.Sleep(s.delay) })
	return s.fakeStore.ListRuns(ctx, f)
}

// A slot that falls while Start recovers and catches up is fired, whatever
// the catch-up policy: runnerd was not down.
func TestSlotDuringStartIsFired(t *testing.T) {
	for _, catchUp := range []string{CatchUpNone, CatchUpLatest} {
		t.Run(catchUp, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-10 00:59:30"), func(t *testing.T) {
				fs := newFakeStore()
				fs.jobs["h"] = store.JobState{LastNominal: utc(t, "2026-01-10 00:00")}
				st := &slowStore{fakeStore: fs, delay: time.Minute}
				k := &fakeKind{}
				s := newTestScheduler(t, st, Options{})
				mustSetJobs(t, s, Job{Name: "h", Schedule: "0 * * * *", CatchUp: catchUp, Enabled: true, Runner: k})
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				if got := time.Now(); !got.Equal(utc(t, "2026-01-10 01:00:30")) {
					t.Fatalf("Start returned at %v; want 01:00:30 (the slow store)", got)
				}
				sleepUntil(t, utc(t, "2026-01-10 02:30"))
				mustStop(t, s)
				if got, want := fs.summary("h"), []string{"01-10 01:00 succeeded", "01-10 02:00 succeeded"}; !slices.Equal(got, want) {
					t.Errorf("runs = %v; want %v", got, want)
				}
				if got, want := nominals(k.Calls()), []string{"01-10 01:00", "01-10 02:00"}; !slices.Equal(got, want) {
					t.Errorf("kind ran %v; want %v (each slot once)", got, want)
				}
			})
		})
	}
}

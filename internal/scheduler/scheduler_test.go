package scheduler

import (
	"context"
	"errors"
	"log/slog"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

func nominals(calls []kindCall) []string {
	var out []string
	for _, c := range calls {
		out = append(out, c.NominalTime.UTC().Format("01-02 15:04"))
	}
	return out
}

func TestFiresAtNominalTimesInZone(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	inBubble(t, utc(t, "2026-01-10 00:00"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		// A fixed jitter of 7 minutes: the run starts later than its slot,
		// and the nominal time is still the slot.
		s := newTestScheduler(t, st, Options{Rand: func(n int64) int64 { return int64(7 * time.Minute) }})
		mustSetJobs(t, s, Job{Name: "daily", Kind: "execute", Schedule: "0 9 * * *", Location: berlin,
			Jitter: 10 * time.Minute, Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-12 12:00"))
		mustStop(t, s)

		calls := k.Calls()
		if got, want := nominals(calls), []string{"01-10 08:00", "01-11 08:00", "01-12 08:00"}; !slices.Equal(got, want) {
			t.Fatalf("nominal times = %v; want %v", got, want)
		}
		for _, c := range calls {
			if got, want := c.At, c.NominalTime.Add(7*time.Minute); !got.Equal(want) {
				t.Errorf("run for %v started at %v; want %v (slot + jitter)", c.NominalTime, got, want)
			}
			if c.RunIDInCtx != c.Run.ID || c.JobInCtx != "daily" {
				t.Errorf("CallInfo in the kind's context = run %d job %q; want run %d job %q", c.RunIDInCtx, c.JobInCtx, c.Run.ID, "daily")
			}
		}
		for _, r := range st.runsOf("daily") {
			if r.State != runnerd.StateSucceeded || r.StartedAt.IsZero() || r.FinishedAt.IsZero() {
				t.Errorf("run %d = %s started %v finished %v; want succeeded with both times", r.ID, r.State, r.StartedAt, r.FinishedAt)
			}
			if got := st.jobs["daily"].LastNominal; got.Before(r.NominalTime) {
				t.Errorf("LastNominal = %v; want at least %v", got, r.NominalTime)
			}
		}
	})
}

func TestDuplicateSlotDoesNothing(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:00"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		s := newTestScheduler(t, st, Options{})
		// Another incarnation already handled 01:00.
		prior, _, _ := st.CreateRun(t.Context(), runnerd.Run{Job: "hourly", NominalTime: utc(t, "2026-01-10 01:00"), State: runnerd.StateSucceeded})
		mustSetJobs(t, s, Job{Name: "hourly", Schedule: "0 * * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 02:30"))
		// A second fire of a slot that has a run does nothing either.
		j, rt, _ := s.lookup("hourly")
		s.fireSlot(j, rt, utc(t, "2026-01-10 02:00"))
		mustStop(t, s)

		if got, want := nominals(k.Calls()), []string{"01-10 02:00"}; !slices.Equal(got, want) {
			t.Errorf("kind ran for %v; want %v", got, want)
		}
		if got, _ := st.GetRun(t.Context(), prior.ID); got.State != runnerd.StateSucceeded || len(st.states(prior.ID)) != 1 {
			t.Errorf("the existing run was touched: %+v, states %v", got, st.states(prior.ID))
		}
		if got := len(st.runsOf("hourly")); got != 2 {
			t.Errorf("runs = %d; want 2", got)
		}
	})
}

func TestDaylightSavingBerlin(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	for _, tc := range []struct {
		name      string
		spec      string
		from, to  string
		localDay  string // the day of the change, in Berlin
		wantOnDay int
		want      []string
	}{
		{"spring forward 02:30", "30 2 * * *", "2026-03-27 12:00", "2026-03-31 12:00", "2026-03-29", 1,
			[]string{"03-28 01:30 succeeded", "03-29 01:30 succeeded", "03-30 00:30 succeeded", "03-31 00:30 succeeded"}},
		{"fall back 02:30", "30 2 * * *", "2026-10-23 12:00", "2026-10-27 12:00", "2026-10-25", 1,
			[]string{"10-24 00:30 succeeded", "10-25 00:30 succeeded", "10-26 01:30 succeeded", "10-27 01:30 succeeded"}},
		{"fall back hourly", "0 * * * *", "2026-10-24 21:30", "2026-10-25 03:30", "2026-10-25", 5,
			[]string{"10-24 22:00 succeeded", "10-24 23:00 succeeded", "10-25 00:00 succeeded", "10-25 02:00 succeeded", "10-25 03:00 succeeded"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, utc(t, tc.from), func(t *testing.T) {
				st := newFakeStore()
				k := &fakeKind{}
				s := newTestScheduler(t, st, Options{})
				mustSetJobs(t, s, Job{Name: "dst", Schedule: tc.spec, Location: berlin, Enabled: true, Runner: k})
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, tc.to))
				mustStop(t, s)
				if got := st.summary("dst"); !slices.Equal(got, tc.want) {
					t.Errorf("runs = %v; want %v", got, tc.want)
				}
				onDay := map[string]int{}
				for _, c := range k.Calls() {
					local := c.NominalTime.In(berlin)
					if local.Format("2006-01-02") == tc.localDay {
						onDay[local.Format("15:04")]++
					}
				}
				n := 0
				for wall, c := range onDay {
					n += c
					if c > 1 {
						t.Errorf("wall time %s ran %d times on %s; want once", wall, c, tc.localDay)
					}
				}
				if n != tc.wantOnDay {
					t.Errorf("runs on %s (Berlin) = %d %v; want %d", tc.localDay, n, onDay, tc.wantOnDay)
				}
			})
		})
	}
}

func TestOverlap(t *testing.T) {
	// Every minute, each run takes 150s: runs at :00, :01, :02, :03 …
	for _, tc := range []struct {
		overlap string
		want    []string
		started []string // when the kind started, mm:ss
	}{
		{OverlapSkip, []string{"01-10 00:00 succeeded", "01-10 00:01 skipped", "01-10 00:02 skipped", "01-10 00:03 succeeded"},
			[]string{"00:00", "03:00"}},
		// 00:00 runs 00:00–02:30; 00:01 waits and runs 02:30–05:00; 00:02
		// finds the queue full; 00:03 fires while 00:01 runs with nobody
		// waiting, so it waits and runs 05:00–07:30.
		{OverlapQueue, []string{"01-10 00:00 succeeded", "01-10 00:01 succeeded", "01-10 00:02 skipped", "01-10 00:03 succeeded"},
			[]string{"00:00", "02:30", "05:00"}},
		{OverlapAllow, []string{"01-10 00:00 succeeded", "01-10 00:01 succeeded", "01-10 00:02 succeeded", "01-10 00:03 succeeded"},
			[]string{"00:00", "01:00", "02:00", "03:00"}},
	} {
		t.Run(tc.overlap, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-09 23:59:30"), func(t *testing.T) {
				st := newFakeStore()
				k := sleepKind(150 * time.Second)
				s := newTestScheduler(t, st, Options{})
				mustSetJobs(t, s, Job{Name: "busy", Schedule: "* * * * *", Overlap: tc.overlap, Enabled: true, Runner: k})
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, "2026-01-10 00:03:15"))
				if got, want := s.InFlight(), map[string]int{OverlapSkip: 1, OverlapQueue: 1, OverlapAllow: 3}[tc.overlap]; got != want {
					t.Errorf("InFlight() at 00:03:15 = %d; want %d", got, want)
				}
				s.cron.Stop() // no more fires; let the runs finish
				sleepUntil(t, utc(t, "2026-01-10 00:10"))
				mustStop(t, s)

				got := st.summary("busy")
				if !slices.Equal(got, tc.want) {
					t.Errorf("runs = %v; want %v", got, tc.want)
				}
				var started []string
				for _, c := range k.Calls() {
					started = append(started, c.At.Format("04:05"))
				}
				if !slices.Equal(started, tc.started) {
					t.Errorf("kind started at %v; want %v", started, tc.started)
				}
				for _, r := range st.runsOf("busy") {
					if r.State == runnerd.StateSkipped && !strings.Contains(r.Reason, "overlap") {
						t.Errorf("skipped run %v reason = %q; want it to name the overlap policy", r.NominalTime, r.Reason)
					}
				}
			})
		})
	}
}

func TestCatchUp(t *testing.T) {
	// Down from 00:00 (the last handled slot) to 10:05; hourly; window 6h:
	// 01:00–04:00 are older than 04:05, 05:00–10:00 are inside.
	old := []string{"01-10 01:00 missed", "01-10 02:00 missed", "01-10 03:00 missed", "01-10 04:00 missed"}
	for _, tc := range []struct {
		catchUp string
		want    []string
		ran     []string
	}{
		{CatchUpNone, append(slices.Clone(old), "01-10 05:00 missed", "01-10 06:00 missed", "01-10 07:00 missed",
			"01-10 08:00 missed", "01-10 09:00 missed", "01-10 10:00 missed"), nil},
		{CatchUpLatest, append(slices.Clone(old), "01-10 05:00 missed", "01-10 06:00 missed", "01-10 07:00 missed",
			"01-10 08:00 missed", "01-10 09:00 missed", "01-10 10:00 succeeded"), []string{"01-10 10:00"}},
		{CatchUpAll, append(slices.Clone(old), "01-10 05:00 succeeded", "01-10 06:00 succeeded", "01-10 07:00 succeeded",
			"01-10 08:00 succeeded", "01-10 09:00 succeeded", "01-10 10:00 succeeded"),
			[]string{"01-10 05:00", "01-10 06:00", "01-10 07:00", "01-10 08:00", "01-10 09:00", "01-10 10:00"}},
	} {
		t.Run(tc.catchUp, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-10 10:05"), func(t *testing.T) {
				st := newFakeStore()
				st.jobs["h"] = store.JobState{LastNominal: utc(t, "2026-01-10 00:00")}
				k := sleepKind(time.Minute)
				s := newTestScheduler(t, st, Options{})
				// A job the store has never seen does not backfill.
				fresh := &fakeKind{}
				mustSetJobs(t, s,
					Job{Name: "h", Schedule: "0 * * * *", CatchUp: tc.catchUp, CatchUpWindow: 6 * time.Hour, Enabled: true, Runner: k},
					Job{Name: "fresh", Schedule: "0 * * * *", CatchUp: CatchUpAll, Enabled: true, Runner: fresh})
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, "2026-01-10 10:30"))
				mustStop(t, s)
				if got := st.summary("h"); !slices.Equal(got, tc.want) {
					t.Errorf("runs = %v; want %v", got, tc.want)
				}
				if got := nominals(k.Calls()); !slices.Equal(got, tc.ran) {
					t.Errorf("kind ran %v; want %v (in order)", got, tc.ran)
				}
				if got, want := st.jobs["h"].LastNominal, utc(t, "2026-01-10 10:00"); !got.Equal(want) {
					t.Errorf("LastNominal = %v; want %v", got, want)
				}
				if n := len(st.runsOf("fresh")); n != 0 || len(fresh.Calls()) != 0 {
					t.Errorf("new job: %d runs, %d kind calls; want none", n, len(fresh.Calls()))
				}
				for _, r := range st.runsOf("h") {
					if r.State == runnerd.StateMissed && r.Reason == "" {
						t.Errorf("missed run %v has no reason", r.NominalTime)
					}
				}
			})
		})
	}
}

func TestDeferralRunsAtEarliestAt(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		p := &fakePlanner{fn: func(now time.Time, c budget.Candidate, n int) budget.Decision {
			if now.Before(utc(t, "2026-01-10 03:00")) {
				return budget.Decision{Reason: "window full until 03:00", EarliestAt: utc(t, "2026-01-10 03:00")}
			}
			return budget.Decision{Admit: true}
		}}
		s := newTestScheduler(t, st, Options{Planner: p, Estimator: fixedEstimator{n: 7}})
		mustSetJobs(t, s, Job{Name: "exp", Kind: "export", Schedule: "0 1 * * *", CatchUpWindow: 6 * time.Hour, Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:00"))
		runs := st.runsOf("exp")
		if len(runs) != 1 || runs[0].State != runnerd.StateDeferred || !runs[0].NotBefore.Equal(utc(t, "2026-01-10 03:00")) ||
			runs[0].Reason != "window full until 03:00" {
			t.Fatalf("after the fire: runs = %+v; want one deferred until 03:00 with the planner's reason", runs)
		}
		sleepUntil(t, utc(t, "2026-01-10 04:00"))
		mustStop(t, s)

		calls := k.Calls()
		if len(calls) != 1 || !calls[0].At.Equal(utc(t, "2026-01-10 03:00")) {
			t.Fatalf("kind calls = %+v; want one at 03:00", calls)
		}
		asks := p.Asks()
		// Asked at the fire, then at each hour boundary (an estimate may
		// come down while the run waits), admitted at 03:00.
		if len(asks) != 3 || asks[0].C.Estimate != 7 || asks[0].C.Job != "exp" || !asks[0].C.Nominal.Equal(utc(t, "2026-01-10 01:00")) ||
			!asks[1].Now.Equal(utc(t, "2026-01-10 02:00")) || !asks[2].Now.Equal(utc(t, "2026-01-10 03:00")) {
			t.Errorf("planner asks = %+v; want 3 (01:00, 02:00, 03:00), the candidate exp@01:00 estimate 7", asks)
		}
		if asks[0].Upcoming == 0 {
			t.Errorf("planner got no look-ahead")
		}
		var seq []runnerd.RunState
		for _, x := range st.states(calls[0].Run.ID) {
			seq = append(seq, x.State)
		}
		want := []runnerd.RunState{runnerd.StatePlanned, runnerd.StateDeferred, runnerd.StateAdmitted, runnerd.StateRunning, runnerd.StateSucceeded}
		if !slices.Equal(seq, want) {
			t.Errorf("states = %v; want %v", seq, want)
		}
	})
}

func TestDeferralNeverFitsIsMissed(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		p := &fakePlanner{fn: func(time.Time, budget.Candidate, int) budget.Decision {
			return budget.Decision{Reason: "no room in the next 24h"}
		}}
		s := newTestScheduler(t, st, Options{Planner: p, DeferCheck: 10 * time.Minute})
		mustSetJobs(t, s, Job{Name: "x", Schedule: "0 1 * * *", CatchUpWindow: time.Hour, Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 05:00"))
		mustStop(t, s)
		runs := st.runsOf("x")
		if len(runs) != 1 || runs[0].State != runnerd.StateMissed || !strings.Contains(runs[0].Reason, "no room") {
			t.Fatalf("runs = %+v; want one missed, naming the planner's reason", runs)
		}
		h := st.states(runs[0].ID)
		if last := h[len(h)-1]; !last.At.Equal(utc(t, "2026-01-10 02:00")) {
			t.Errorf("missed at %v; want 02:00, when the catch-up window closed", last.At)
		}
		// Offered at 01:00, 01:10 … 02:00.
		if n := len(p.Asks()); n != 7 {
			t.Errorf("planner asked %d times; want 7", n)
		}
		if len(k.Calls()) != 0 {
			t.Errorf("kind ran %d times; want 0", len(k.Calls()))
		}
	})
}

func TestRetries(t *testing.T) {
	errBoom := errors.New("boom")
	for _, tc := range []struct {
		name      string
		retries   int
		retryable bool
		failures  int // failed attempts before success
		state     runnerd.RunState
		at        []string // attempt start times, mm:ss after 01:00
		attempt   int
	}{
		{"retryable then success", 3, true, 2, runnerd.StateSucceeded, []string{"00:00", "00:30", "01:30"}, 2},
		{"retryable exhausted", 1, true, 9, runnerd.StateFailed, []string{"00:00", "00:30"}, 1},
		{"not retryable", 3, false, 9, runnerd.StateFailed, []string{"00:00"}, 0},
		{"no retries configured", 0, true, 9, runnerd.StateFailed, []string{"00:00"}, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
				st := newFakeStore()
				k := &fakeKind{fn: func(_ context.Context, rc *RunContext, n int) Outcome {
					st.addCalls(rc.Run.ID, 2)
					if n < tc.failures {
						return Outcome{State: runnerd.StateFailed, Err: errBoom, Retryable: tc.retryable}
					}
					return Outcome{State: runnerd.StateSucceeded, Detail: `{"ok":true}`}
				}}
				s := newTestScheduler(t, st, Options{})
				mustSetJobs(t, s, Job{Name: "r", Schedule: "0 1 * * *", Retries: tc.retries, Enabled: true, Runner: k})
				if err := s.Start(t.Context()); err != nil {
					t.Fatal(err)
				}
				sleepUntil(t, utc(t, "2026-01-10 02:00"))
				mustStop(t, s)
				var at []string
				for i, c := range k.Calls() {
					at = append(at, time.Time{}.Add(c.At.Sub(utc(t, "2026-01-10 01:00"))).Format("04:05"))
					if c.Run.Attempt != i {
						t.Errorf("attempt %d: RunContext.Run.Attempt = %d", i, c.Run.Attempt)
					}
				}
				if !slices.Equal(at, tc.at) {
					t.Errorf("attempts at %v; want %v", at, tc.at)
				}
				runs := st.runsOf("r")
				if len(runs) != 1 {
					t.Fatalf("runs = %d; want 1 (retries are attempts of the same run)", len(runs))
				}
				r := runs[0]
				if r.State != tc.state || r.Attempt != tc.attempt || r.Calls != 2*len(tc.at) {
					t.Errorf("run = %s attempt %d calls %d; want %s attempt %d calls %d", r.State, r.Attempt, r.Calls, tc.state, tc.attempt, 2*len(tc.at))
				}
				if tc.state == runnerd.StateFailed && r.Error != "boom" {
					t.Errorf("run error = %q; want %q", r.Error, "boom")
				}
			})
		})
	}
}

func TestTimeoutReachesKind(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		var sawErr error
		var sawAt time.Time
		k := &fakeKind{fn: func(ctx context.Context, rc *RunContext, _ int) Outcome {
			<-ctx.Done() // a poll that never ends
			sawErr, sawAt = ctx.Err(), time.Now()
			return Outcome{State: runnerd.StateUnknown, Err: errors.New("execution outcome unknown at timeout")}
		}}
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "t", Schedule: "0 1 * * *", Timeout: 90 * time.Second, Retries: 2, Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 02:00"))
		mustStop(t, s)
		calls := k.Calls()
		if len(calls) != 1 || !calls[0].Deadline.Equal(utc(t, "2026-01-10 01:01:30")) {
			t.Fatalf("kind calls = %+v; want one with deadline 01:01:30", calls)
		}
		if !errors.Is(sawErr, context.DeadlineExceeded) || !sawAt.Equal(utc(t, "2026-01-10 01:01:30")) {
			t.Errorf("kind's context ended with %v at %v; want deadline exceeded at 01:01:30", sawErr, sawAt)
		}
		r := st.runsOf("t")[0]
		if r.State != runnerd.StateUnknown || r.Reason == "" || r.Error == "" {
			t.Errorf("run = %s reason %q error %q; want unknown (as the kind said) with reason", r.State, r.Reason, r.Error)
		}
	})
}

func TestPauseSurvivesRestart(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		job := Job{Name: "p", Schedule: "0 * * * *", Enabled: true, Runner: k}
		s1 := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s1, job)
		if err := s1.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:30"))
		if err := s1.Pause(t.Context(), "p"); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 02:30"))
		mustStop(t, s1)

		// Down 02:30–05:30, then a new process.
		sleepUntil(t, utc(t, "2026-01-10 05:30"))
		s2 := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s2, job)
		if err := s2.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		if _, err := s2.RunNow(t.Context(), "p", time.Time{}, time.Time{}); !errors.Is(err, ErrPaused) {
			t.Errorf("RunNow(paused) error = %v; want ErrPaused", err)
		}
		if got := s2.Upcoming(time.Now(), 24*time.Hour); len(got) != 0 {
			t.Errorf("Upcoming() = %d candidates; want none for a paused job", len(got))
		}
		if _, ok := s2.Next()["p"]; ok {
			t.Errorf("Next() lists the paused job")
		}
		sleepUntil(t, utc(t, "2026-01-10 07:30"))
		if got, want := nominals(k.Calls()), []string{"01-10 01:00"}; !slices.Equal(got, want) {
			t.Fatalf("while paused: kind ran %v; want %v", got, want)
		}
		if err := s2.Resume(t.Context(), "p"); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 08:30"))
		mustStop(t, s2)
		if got, want := nominals(k.Calls()), []string{"01-10 01:00", "01-10 08:00"}; !slices.Equal(got, want) {
			t.Errorf("kind ran %v; want %v (paused slots are not fired, nor caught up)", got, want)
		}
		if got, want := st.summary("p"), []string{"01-10 01:00 succeeded", "01-10 08:00 succeeded"}; !slices.Equal(got, want) {
			t.Errorf("runs = %v; want %v", got, want)
		}
	})
}

func TestSetJobsReload(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:50"), func(t *testing.T) {
		st := newFakeStore()
		ka, kb, kc := &fakeKind{}, sleepKind(20*time.Minute), &fakeKind{}
		s := newTestScheduler(t, st, Options{})
		a := Job{Name: "a", Schedule: "0 * * * *", Enabled: true, Runner: ka}
		b := Job{Name: "b", Schedule: "0 * * * *", Enabled: true, Runner: kb}
		mustSetJobs(t, s, a, b)
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:05"))
		if s.InFlight() != 1 {
			t.Fatalf("InFlight() = %d; want 1 (b)", s.InFlight())
		}
		// Reload: a moves to :30, b is removed (its run in flight finishes),
		// c is added.
		a.Schedule = "30 * * * *"
		c := Job{Name: "c", Schedule: "15 * * * *", Enabled: true, Runner: kc}
		mustSetJobs(t, s, a, c)
		if _, err := s.RunNow(t.Context(), "b", time.Time{}, time.Time{}); !errors.Is(err, ErrUnknownJob) {
			t.Errorf("RunNow(removed) error = %v; want ErrUnknownJob", err)
		}
		sleepUntil(t, utc(t, "2026-01-10 03:00"))
		// An invalid set changes nothing.
		if err := s.SetJobs(t.Context(), []Job{a, {Name: "bad", Schedule: "nope", Enabled: true, Runner: kc}}); err == nil ||
			!strings.Contains(err.Error(), `job "bad"`) {
			t.Errorf("SetJobs(invalid) error = %v; want one naming the job", err)
		}
		sleepUntil(t, utc(t, "2026-01-10 03:50"))
		mustStop(t, s)

		if got, want := st.summary("a"), []string{"01-10 01:00 succeeded", "01-10 01:30 succeeded", "01-10 02:30 succeeded", "01-10 03:30 succeeded"}; !slices.Equal(got, want) {
			t.Errorf("a runs = %v; want %v", got, want)
		}
		if got, want := st.summary("b"), []string{"01-10 01:00 succeeded"}; !slices.Equal(got, want) {
			t.Errorf("b runs = %v; want %v (the run in flight finished; no further fires)", got, want)
		}
		if got, want := st.summary("c"), []string{"01-10 01:15 succeeded", "01-10 02:15 succeeded", "01-10 03:15 succeeded"}; !slices.Equal(got, want) {
			t.Errorf("c runs = %v; want %v", got, want)
		}
	})
}

func TestSetJobsValidation(t *testing.T) {
	k := &fakeKind{}
	for _, tc := range []struct {
		name string
		jobs []Job
		want string
	}{
		{"duplicate", []Job{{Name: "a", Schedule: "@daily", Runner: k}, {Name: "a", Schedule: "@daily", Runner: k}}, "defined twice"},
		{"schedule", []Job{{Name: "a", Schedule: "0 25 * * *", Runner: k}}, "schedule"},
		{"overlap", []Job{{Name: "a", Schedule: "@daily", Overlap: "sometimes", Runner: k}}, "overlap"},
		{"catch_up", []Job{{Name: "a", Schedule: "@daily", CatchUp: "most", Runner: k}}, "catch_up"},
		{"runner", []Job{{Name: "a", Schedule: "@daily"}}, "runner"},
		{"name", []Job{{Schedule: "@daily", Runner: k}}, "name"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := newTestScheduler(t, newFakeStore(), Options{})
			err := s.SetJobs(t.Context(), tc.jobs)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("SetJobs(%s) error = %v; want one mentioning %q", tc.name, err, tc.want)
			}
		})
	}
}

func TestRunNow(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30:20.5"), func(t *testing.T) {
		st := newFakeStore()
		k := sleepKind(2 * time.Minute)
		p := &fakePlanner{}
		s := newTestScheduler(t, st, Options{Planner: p})
		mustSetJobs(t, s, Job{Name: "n", Kind: "export", Schedule: "0 1 * * *", Jitter: time.Hour, Enabled: false, Runner: k})
		from, to := utc(t, "2026-01-01 00:00"), utc(t, "2026-01-02 00:00")
		r, err := s.RunNow(t.Context(), "n", from, to)
		if err != nil {
			t.Fatal(err)
		}
		if r.State != runnerd.StateSucceeded || !r.NominalTime.Equal(utc(t, "2026-01-10 00:30:20.5")) {
			t.Errorf("RunNow = %s at %v; want succeeded at 00:30:20.5 (now, to the millisecond)", r.State, r.NominalTime)
		}
		if got := time.Now(); !got.Equal(utc(t, "2026-01-10 00:32:20.5")) {
			t.Errorf("RunNow returned at %v; want after the run (00:32:20.5), with no jitter", got)
		}
		calls := k.Calls()
		if len(calls) != 1 || !calls[0].From.Equal(from) || !calls[0].To.Equal(to) {
			t.Errorf("kind calls = %+v; want one with the window", calls)
		}
		if len(p.Asks()) != 1 {
			t.Errorf("planner asked %d times; want 1", len(p.Asks()))
		}
		// The same second again: that slot has its run.
		sleepUntil(t, utc(t, "2026-01-10 00:40:00"))
		if _, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		if _, err := s.RunNow(t.Context(), "nope", time.Time{}, time.Time{}); !errors.Is(err, ErrUnknownJob) {
			t.Errorf("RunNow(unknown) error = %v; want ErrUnknownJob", err)
		}
		mustStop(t, s)
		if _, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{}); !errors.Is(err, ErrStopped) {
			t.Errorf("RunNow after Stop error = %v; want ErrStopped", err)
		}
	})
}

func TestRunNowSlotTakenAndBusy(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := sleepKind(time.Minute)
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "n", Schedule: "0 1 * * *", Enabled: true, Runner: k})
		st.CreateRun(t.Context(), runnerd.Run{Job: "n", NominalTime: utc(t, "2026-01-10 00:30"), State: runnerd.StateSucceeded})
		// A slot that is taken moves the manual run on by a millisecond: two
		// `runnerd run` in the same instant are two runs, never one answer twice.
		r, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{})
		if err != nil || !r.NominalTime.Equal(utc(t, "2026-01-10 00:30").Add(time.Millisecond)) {
			t.Errorf("RunNow(taken instant) = %v, %v; want a new run at 00:30:00.001", r.NominalTime, err)
		}
		for i := range 10 {
			st.CreateRun(t.Context(), runnerd.Run{Job: "n", NominalTime: utc(t, "2026-01-10 00:31").Add(time.Duration(i) * time.Millisecond), State: runnerd.StateSucceeded})
		}
		sleepUntil(t, utc(t, "2026-01-10 00:31"))
		if _, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{}); !errors.Is(err, ErrSlotTaken) {
			t.Errorf("RunNow(ten taken instants) error = %v; want ErrSlotTaken", err)
		}
		time.Sleep(time.Second)
		done := make(chan error, 1)
		go func() {
			_, err := s.RunNow(context.Background(), "n", time.Time{}, time.Time{})
			done <- err
		}()
		synctest.Wait()
		time.Sleep(time.Second)
		if _, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{}); !errors.Is(err, ErrBusy) {
			t.Errorf("RunNow(in flight, overlap skip) error = %v; want ErrBusy", err)
		}
		if err := <-done; err != nil {
			t.Errorf("first RunNow error = %v", err)
		}
		mustStop(t, s)
	})
}

func TestRunNowDeferredGoesOnInBackground(t *testing.T) {
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
		mustSetJobs(t, s, Job{Name: "n", Schedule: "0 5 * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		r, err := s.RunNow(t.Context(), "n", time.Time{}, time.Time{})
		if err != nil || r.State != runnerd.StateDeferred || !time.Now().Equal(utc(t, "2026-01-10 00:30")) {
			t.Fatalf("RunNow = %s, %v at %v; want deferred, at once", r.State, err, time.Now())
		}
		sleepUntil(t, utc(t, "2026-01-10 03:00"))
		mustStop(t, s)
		if got, _ := st.GetRun(t.Context(), r.ID); got.State != runnerd.StateSucceeded || !got.StartedAt.Equal(utc(t, "2026-01-10 02:00")) {
			t.Errorf("run = %s started %v; want succeeded at 02:00", got.State, got.StartedAt)
		}
	})
}

func TestDeferredRunSurvivesRestart(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		p := &fakePlanner{fn: func(now time.Time, _ budget.Candidate, _ int) budget.Decision {
			if now.Before(utc(t, "2026-01-10 04:00")) {
				return budget.Decision{Reason: "full", EarliestAt: utc(t, "2026-01-10 04:00")}
			}
			return budget.Decision{Admit: true}
		}}
		job := Job{Name: "d", Schedule: "0 1 * * *", CatchUpWindow: 6 * time.Hour, Enabled: true, Runner: k}
		s1 := newTestScheduler(t, st, Options{Planner: p})
		mustSetJobs(t, s1, job)
		if err := s1.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 02:00"))
		mustStop(t, s1)
		sleepUntil(t, utc(t, "2026-01-10 03:00"))
		s2 := newTestScheduler(t, st, Options{Planner: p})
		mustSetJobs(t, s2, job)
		if err := s2.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 05:00"))
		mustStop(t, s2)
		calls := k.Calls()
		if len(calls) != 1 || !calls[0].At.Equal(utc(t, "2026-01-10 04:00")) {
			t.Fatalf("kind calls = %+v; want one at 04:00, after the restart", calls)
		}
		if got := st.summary("d"); !slices.Equal(got, []string{"01-10 01:00 succeeded"}) {
			t.Errorf("runs = %v; want the one deferred run, succeeded", got)
		}
	})
}

func TestStopWaitsForRunsInFlight(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:59"), func(t *testing.T) {
		st := newFakeStore()
		k := sleepKind(10 * time.Minute)
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "long", Schedule: "0 * * * *", Enabled: true, Runner: k},
			Job{Name: "later", Schedule: "5 * * * *", Enabled: true, Runner: &fakeKind{}})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:02"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if got := time.Now(); !got.Equal(utc(t, "2026-01-10 01:10")) {
			t.Errorf("Stop returned at %v; want 01:10, when the run ended", got)
		}
		if got := st.summary("long"); !slices.Equal(got, []string{"01-10 01:00 succeeded"}) {
			t.Errorf("runs = %v; want the run in flight succeeded", got)
		}
		if n := len(st.runsOf("later")); n != 0 {
			t.Errorf("a job fired after Stop: %d runs", n)
		}
		checkNoLeak(t)
	})
}

func TestStopBoundCancelsRuns(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:59"), func(t *testing.T) {
		st := newFakeStore()
		k := sleepKind(10 * time.Minute)
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "long", Schedule: "0 * * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:02"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		err := s.Stop(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Stop error = %v; want deadline exceeded", err)
		}
		if got := time.Now(); !got.Equal(utc(t, "2026-01-10 01:03")) {
			t.Errorf("Stop returned at %v; want 01:03, at its bound", got)
		}
		synctest.Wait()
		r := st.runsOf("long")[0]
		if r.State != runnerd.StateFailed || !strings.Contains(r.Error, "context canceled") {
			t.Errorf("run = %s %q; want the kind's report of the cancellation", r.State, r.Error)
		}
		checkNoLeak(t)
	})
}

func TestUpcoming(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:00"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{}
		s := newTestScheduler(t, st, Options{Estimator: fixedEstimator{n: 1, m: map[string]int{"big": 40}}})
		mustSetJobs(t, s,
			Job{Name: "big", Schedule: "0 */6 * * *", Priority: runnerd.PriorityHigh, Enabled: true, Runner: k},
			Job{Name: "small", Schedule: "30 */4 * * *", Priority: runnerd.PriorityLow, Enabled: true, Runner: k},
			Job{Name: "off", Schedule: "* * * * *", Enabled: false, Runner: k})
		now := time.Now()
		got := s.Upcoming(now, 12*time.Hour)
		var lines []string
		for _, c := range got {
			lines = append(lines, c.Nominal.Format("15:04")+" "+c.Job+" "+c.Priority.String()+" "+strconv.Itoa(c.Estimate))
		}
		want := []string{"00:30 small low 1", "04:30 small low 1", "06:00 big high 40", "08:30 small low 1", "12:00 big high 40"}
		if !slices.Equal(lines, want) {
			t.Errorf("Upcoming(00:00, 12h) = %v; want %v", lines, want)
		}
		// From the cache, later, and after a pause.
		if err := s.Pause(t.Context(), "small"); err != nil {
			t.Fatal(err)
		}
		got = s.Upcoming(now.Add(5*time.Hour), 2*time.Hour)
		if len(got) != 1 || got[0].Job != "big" || !got[0].Nominal.Equal(utc(t, "2026-01-10 06:00")) {
			t.Errorf("Upcoming(05:00, 2h) after pausing small = %+v; want big@06:00", got)
		}
		got[0].Job = "mutated" // the result is the caller's
		// A reload is seen at once.
		mustSetJobs(t, s, Job{Name: "big", Schedule: "0 */6 * * *", Enabled: true, Runner: k},
			Job{Name: "new", Schedule: "0 1 * * *", Enabled: true, Runner: k})
		got = s.Upcoming(now, 2*time.Hour)
		if len(got) != 1 || got[0].Job != "new" {
			t.Errorf("Upcoming(00:00, 2h) after reload = %+v; want new@01:00", got)
		}
		next := s.Next()
		if len(next) != 2 || !next["big"].Equal(utc(t, "2026-01-10 06:00")) || !next["new"].Equal(utc(t, "2026-01-10 01:00")) {
			t.Errorf("Next() = %v; want big 06:00, new 01:00", next)
		}
		mustStop(t, s)
	})
}

func TestKindPanicIsAFailedRun(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		k := &fakeKind{fn: func(context.Context, *RunContext, int) Outcome { panic("kaboom") }}
		s := newTestScheduler(t, st, Options{})
		mustSetJobs(t, s, Job{Name: "p", Schedule: "0 1 * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 01:30"))
		mustStop(t, s)
		r := st.runsOf("p")[0]
		if r.State != runnerd.StateFailed || !strings.Contains(r.Error, "kaboom") {
			t.Errorf("run = %s %q; want failed with the panic", r.State, r.Error)
		}
	})
}

// checkNoLeak fails if a goroutine of the scheduler or of cron is still alive
// once everything in the bubble has settled.
func checkNoLeak(t *testing.T) {
	t.Helper()
	synctest.Wait()
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	for _, g := range strings.Split(string(buf), "\n\n") {
		if strings.Contains(g, "scheduler.(*Scheduler)") || strings.Contains(g, "robfig/cron") {
			t.Errorf("goroutine left after Stop:\n%s", g)
		}
	}
}

func TestCronRecoversAndLogsThroughSlog(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		st.panicCreate = 1
		k := &fakeKind{}
		var logs syncBuffer
		s := newTestScheduler(t, st, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
		mustSetJobs(t, s, Job{Name: "c", Schedule: "0 * * * *", Enabled: true, Runner: k})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 02:30"))
		mustStop(t, s)
		if got, want := nominals(k.Calls()), []string{"01-10 02:00"}; !slices.Equal(got, want) {
			t.Errorf("kind ran %v; want %v (the 01:00 fire panicked, the next one ran)", got, want)
		}
		out := logs.String()
		for _, want := range []string{`msg="cron: panic"`, "fake store: boom", `msg="cron: wake"`} {
			if !strings.Contains(out, want) {
				t.Errorf("log lacks %q:\n%s", want, out)
			}
		}
		if s.InFlight() != 0 {
			t.Errorf("InFlight() = %d after a panic; want 0", s.InFlight())
		}
	})
}

// The scheduler over the real store (SQLite, or PostgreSQL in .ci/run's
// second pass): a run's life as history shows it.
func TestRunNowWithSQLiteStore(t *testing.T) {
	ctx := t.Context()
	db, err := ledger.Open(t, t.TempDir()+"/runnerd.db", store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	k := &fakeKind{fn: func(ctx context.Context, rc *RunContext, n int) Outcome {
		info := atomapi.CallInfoFrom(ctx)
		if _, err := db.BeginCall(ctx, store.Call{RunID: info.RunID, Job: info.Job, Operation: "AuditLog.query", StartedAt: rc.Now()}); err != nil {
			return Outcome{State: runnerd.StateFailed, Err: err}
		}
		if n == 0 {
			return Outcome{State: runnerd.StateFailed, Err: errors.New("503"), Retryable: true}
		}
		return Outcome{State: runnerd.StateSucceeded, Detail: `{"rows":3}`}
	}}
	s := newTestScheduler(t, db, Options{RetryBackoff: func(int) time.Duration { return 0 }})
	mustSetJobs(t, s, Job{Name: "sql", Kind: "export", Schedule: "@daily", Retries: 1, Enabled: true, Runner: k})
	r, err := s.RunNow(ctx, "sql", time.Time{}, time.Time{})
	if err != nil {
		t.Fatal(err)
	}
	got, err := db.GetRun(ctx, r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.State != runnerd.StateSucceeded || got.Attempt != 1 || got.Detail != `{"rows":3}` || got.Kind != "export" || got.Calls != 2 ||
		got.StartedAt.IsZero() || got.FinishedAt.IsZero() {
		t.Errorf("stored run = %+v; want succeeded on attempt 1, 2 calls, with the detail", got)
	}
	if err := s.Pause(ctx, "sql"); err != nil {
		t.Fatal(err)
	}
	if st, err := db.JobState(ctx, "sql"); err != nil || !st.Paused {
		t.Errorf("JobState after Pause = %+v, %v; want paused", st, err)
	}
	if _, err := s.RunNow(ctx, "sql", time.Time{}, time.Time{}); !errors.Is(err, ErrPaused) {
		t.Errorf("RunNow(paused) error = %v; want ErrPaused", err)
	}
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
}

// OnRun hears each outcome once it is recorded, and nothing while a run is on its way.
func TestOnRunHook(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		var mu sync.Mutex
		var seen []runnerd.RunState
		s := newTestScheduler(t, st, Options{OnRun: func(r runnerd.Run) {
			mu.Lock()
			defer mu.Unlock()
			if got, err := st.GetRun(context.Background(), r.ID); err != nil || got.State != r.State {
				t.Errorf("OnRun(%s) before the store had it (store: %s, %v)", r.State, got.State, err)
			}
			seen = append(seen, r.State)
		}})
		mustSetJobs(t, s, Job{Name: "ok", Schedule: "0 1 * * *", Runner: sleepKind(time.Second)})
		if _, err := s.RunNow(t.Context(), "ok", time.Time{}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		mustStop(t, s)
		mu.Lock()
		defer mu.Unlock()
		if len(seen) != 1 || seen[0] != runnerd.StateSucceeded {
			t.Errorf("OnRun saw %v; want [succeeded]", seen)
		}
	})
}

// TestFirstDeferralIsAWarning: a run's first deferral is logged at WARN (so
// `journalctl -p warning` shows it); asking it again each hour, at INFO.
func TestFirstDeferralIsAWarning(t *testing.T) {
	inBubble(t, utc(t, "2026-01-10 00:30"), func(t *testing.T) {
		st := newFakeStore()
		p := &fakePlanner{fn: func(now time.Time, c budget.Candidate, n int) budget.Decision {
			if now.Before(utc(t, "2026-01-10 03:00")) {
				return budget.Decision{Reason: "window full until 03:00", EarliestAt: utc(t, "2026-01-10 03:00")}
			}
			return budget.Decision{Admit: true}
		}}
		var log syncBuffer
		s := newTestScheduler(t, st, Options{Planner: p, Estimator: fixedEstimator{n: 7},
			Logger: slog.New(slog.NewTextHandler(&log, nil))})
		mustSetJobs(t, s, Job{Name: "exp", Kind: "export", Schedule: "0 1 * * *", CatchUpWindow: 6 * time.Hour, Enabled: true, Runner: &fakeKind{}})
		if err := s.Start(t.Context()); err != nil {
			t.Fatal(err)
		}
		sleepUntil(t, utc(t, "2026-01-10 04:00"))
		mustStop(t, s)
		out := log.String()
		if w, i := strings.Count(out, `level=WARN msg="run deferred"`), strings.Count(out, `level=INFO msg="run deferred"`); w != 1 || i < 1 {
			t.Errorf("deferral lines: %d at WARN, %d at INFO; want the first at WARN and the re-asks at INFO:\n%s", w, i, out)
		}
	})
}

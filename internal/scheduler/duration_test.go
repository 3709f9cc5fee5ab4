package scheduler

import (
	"testing"
	"time"
)

// TestUpcomingCarriesDuration: the look-ahead's slots carry how long their
// job's runs take (Options.Duration), so the planner spreads their calls;
// without Duration they stay in their start hour.
func TestUpcomingCarriesDuration(t *testing.T) {
	now := time.Date(2026, 3, 28, 12, 0, 0, 0, time.UTC)
	jobs := benchJobs(t, 4)
	asked := map[string]int{}
	took := func(job string) time.Duration {
		asked[job]++
		if job == jobs[1].Name {
			return 3 * time.Hour
		}
		return 0
	}
	for _, tc := range []struct {
		name string
		dur  func(string) time.Duration
		want time.Duration
	}{{"with Duration", took, 3 * time.Hour}, {"without", nil, 0}} {
		s := New(Options{Store: newFakeStore(), Estimator: fixedEstimator{n: 3}, Duration: tc.dur})
		if err := s.SetJobs(t.Context(), jobs); err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, c := range s.Upcoming(now, LookAhead) {
			want := time.Duration(0)
			if c.Job == jobs[1].Name {
				want, n = tc.want, n+1
			}
			if c.Duration != want {
				t.Errorf("%s: slot %s at %v: Duration %v; want %v", tc.name, c.Job, c.Nominal, c.Duration, want)
			}
		}
		if n == 0 {
			t.Fatalf("%s: no slot of %s in the look-ahead", tc.name, jobs[1].Name)
		}
	}
	for job, k := range asked {
		if k != 1 {
			t.Errorf("Duration(%s) asked %d times for one look-ahead; want once per job", job, k)
		}
	}
}

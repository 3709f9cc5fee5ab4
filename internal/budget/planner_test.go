package budget

import (
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"runnerd"
)

const (
	low    = runnerd.PriorityLow
	normal = runnerd.PriorityNormal
	high   = runnerd.PriorityHigh
)

func cand(job string, at time.Time, p runnerd.Priority, est int, seq int64) Candidate {
	return Candidate{Job: job, Nominal: at, Priority: p, Estimate: est, Seq: seq}
}

func TestAdmit(t *testing.T) {
	l := Limits{DailyLimit: 440, Reserve: 40} // Cap 400
	now := mon.Add(34 * time.Hour)            // Tuesday 10:00
	hr := func(n int) time.Time { return now.Add(time.Duration(n) * time.Hour) }
	tests := []struct {
		name     string
		real     map[int]int // hour offset from now → calls
		c        Candidate
		upcoming []Candidate
		admit    bool
		earliest time.Time
		reason   string // exact when set
	}{
		{
			name:  "empty window",
			c:     cand("export", now, low, 120, 10),
			admit: true,
		},
		{
			name: "high runs keep their share",
			real: map[int]int{-20: 60}, // Monday 14:00: falls out at Tuesday 14:00
			c:    cand("export", now, low, 100, 10),
			upcoming: []Candidate{
				cand("deploy", hr(1), high, 150, 3),
				cand("promote", hr(3), high, 150, 4),
			},
			earliest: hr(4),
			reason:   "needs 100 calls; 40 left in the window until 14:00 after 300 reserved for 2 high-priority runs",
		},
		{
			name: "lower priority and later arrivals are not counted",
			real: map[int]int{-20: 60},
			c:    cand("export", now, normal, 100, 10),
			upcoming: []Candidate{
				cand("cleanup", hr(1), low, 300, 3),
				cand("export-2", hr(2), normal, 300, 11),
			},
			admit: true,
		},
		{
			name: "equal priority first come first served",
			real: map[int]int{-20: 60},
			c:    cand("export", now, normal, 100, 10),
			upcoming: []Candidate{
				cand("export-1", hr(2), normal, 250, 9),
				cand("deploy", hr(1), high, 50, 12),
			},
			earliest: hr(4),
			reason:   "needs 100 calls; 40 left in the window until 14:00 after 50 reserved for 1 high-priority run and 250 for 1 earlier normal-priority run",
		},
		{
			name:     "the candidate itself in upcoming is ignored",
			c:        cand("export", now, high, 300, 10),
			upcoming: []Candidate{cand("export", now, high, 300, 10)},
			admit:    true,
		},
		{
			name:     "never within 24 hours",
			real:     map[int]int{0: 10},
			c:        cand("export", now, low, 100, 10),
			upcoming: []Candidate{cand("deploy", hr(23), high, 340, 1)},
			reason:   "needs 100 calls; 50 left in the window for the next 24 h after 340 reserved for 1 high-priority run",
			earliest: time.Time{},
		},
		{
			name:     "room exactly 24 hours ahead",
			real:     map[int]int{0: 350},
			c:        cand("export", now, low, 100, 10),
			earliest: hr(24),
		},
		{
			name:   "bigger than the cap",
			c:      cand("export", now, high, 401, 10),
			reason: "needs 401 calls, more than the cap of 400 in any window",
		},
		{
			name:     "a future candidate is projected in its own hour",
			real:     map[int]int{-23: 350}, // falls out at 11:00
			c:        cand("export", hr(1), low, 100, 10),
			upcoming: []Candidate{cand("deploy", hr(5), high, 20, 1)},
			admit:    true,
		},
		{
			name:     "a candidate due now does not fit before the old bucket falls out",
			real:     map[int]int{-23: 350},
			c:        cand("export", now, low, 100, 10),
			earliest: hr(1),
			reason:   "needs 100 calls; 50 left in the window until 11:00",
		},
		{
			name:     "an overdue candidate is projected now",
			real:     map[int]int{-23: 350},
			c:        cand("export", hr(-5), low, 100, 10),
			earliest: hr(1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(l)
			for off, n := range tt.real {
				w.Add(hr(off).Add(5*time.Minute), n)
			}
			got := NewPlanner(l).Admit(now, w, tt.c, tt.upcoming)
			if got.Admit != tt.admit || !got.EarliestAt.Equal(tt.earliest) {
				t.Fatalf("Admit(%+v) = %+v; want admit=%v earliest=%v", tt.c, got, tt.admit, tt.earliest)
			}
			if tt.reason != "" && got.Reason != tt.reason {
				t.Errorf("Admit(%+v).Reason = %q; want %q", tt.c, got.Reason, tt.reason)
			}
			if !got.Admit && got.Reason == "" {
				t.Errorf("Admit(%+v): a deferral without a reason", tt.c)
			}
			// Check EarliestAt the slow way: admitted when placed there, and not
			// at any earlier hour.
			if !got.Admit && !got.EarliestAt.IsZero() {
				c := tt.c
				c.Nominal = got.EarliestAt
				if d := NewPlanner(l).Admit(now, w, c, tt.upcoming); !d.Admit {
					t.Errorf("placed at EarliestAt %v: %+v; want admitted", got.EarliestAt, d)
				}
				c.Nominal = got.EarliestAt.Add(-time.Hour)
				if d := NewPlanner(l).Admit(now, w, c, tt.upcoming); d.Admit && c.Nominal.After(now) {
					t.Errorf("placed an hour before EarliestAt: admitted; EarliestAt is not the earliest")
				}
			}
		})
	}
}

func TestPlan(t *testing.T) {
	l := Limits{DailyLimit: 110, Reserve: 10} // Cap 100
	now := mon.Add(10*time.Hour + 30*time.Minute)
	hr := func(n int) time.Time { return mon.Add(time.Duration(10+n) * time.Hour) }
	w := NewWindow(l)
	w.Add(mon.Add(-13*time.Hour), 30) // Sunday 11:00: falls out at Monday 11:00
	w.Add(now, 10)
	upcoming := []Candidate{
		cand("deploy", hr(5), high, 40, 1),
		cand("export-a", hr(1), low, 30, 2),
		cand("export-b", hr(2), low, 30, 3),
		cand("sync", hr(1).Add(10*time.Minute), normal, 10, 4),
		cand("far", hr(30), low, 5, 5),
	}
	steps := NewPlanner(l).Plan(now, w, 24, upcoming)
	type row struct {
		job       string
		admit     bool
		remaining int
	}
	want := []row{
		// 11:00: 10 used; sync (normal) goes first in its hour, then export-a.
		{"sync", true, 80},
		{"export-a", true, 50},
		// 12:00: 50 used, 40 kept for the deploy: export-b (30) does not fit.
		{"export-b", false, 50},
		{"deploy", true, 10},
	}
	if len(steps) != len(want) {
		t.Fatalf("Plan: %d steps; want %d: %+v", len(steps), len(want), steps)
	}
	for i, s := range steps {
		w := want[i]
		if s.Job != w.job || s.Admit != w.admit || s.RemainingAfter != w.remaining {
			t.Errorf("step %d = %s admit=%v remaining=%d (%s); want %s admit=%v remaining=%d",
				i, s.Job, s.Admit, s.RemainingAfter, s.Reason, w.job, w.admit, w.remaining)
		}
		if i > 0 && s.Hour.Before(steps[i-1].Hour) {
			t.Errorf("step %d at %v before step %d at %v", i, s.Hour, i-1, steps[i-1].Hour)
		}
	}
	if r := steps[2].Reason; !strings.Contains(r, "reserved for 1 high-priority run") {
		t.Errorf("deferral reason = %q; want it to name the high-priority run", r)
	}
}

// upcomingRuns makes n runs spread over the next 24 hours.
func upcomingRuns(n int, now time.Time) []Candidate {
	rng := rand.New(rand.NewPCG(7, 7))
	out := make([]Candidate, n)
	for i := range out {
		out[i] = cand(fmt.Sprintf("job-%d", i), now.Add(time.Duration(rng.Int64N(int64(24*time.Hour)))),
			runnerd.Priority(rng.IntN(3)), 1+rng.IntN(20), int64(i))
	}
	return out
}

func BenchmarkAdmit(b *testing.B) {
	l := Limits{DailyLimit: 10000, Reserve: 1000}
	now := mon.Add(50 * time.Hour)
	w := NewWindow(l)
	for h := 0; h < 24; h++ {
		w.Add(now.Add(-time.Duration(h)*time.Hour), 200)
	}
	upcoming := upcomingRuns(1000, now)
	p := NewPlanner(l)
	c := cand("export", now, normal, 300, 500)
	b.ReportAllocs()
	for b.Loop() {
		p.Admit(now, w, c, upcoming)
	}
}

func BenchmarkPlan(b *testing.B) {
	l := Limits{DailyLimit: 10000, Reserve: 1000}
	now := mon.Add(50 * time.Hour)
	w := NewWindow(l)
	upcoming := upcomingRuns(1000, now)
	p := NewPlanner(l)
	b.ReportAllocs()
	for b.Loop() {
		p.Plan(now, w, 24, upcoming)
	}
}

// A job's own future slots (the look-ahead, Seq 0) never defer its run that is
// due now: an @every job costing more than the cap in a day still runs, and
// the later slots are the ones that wait.
func TestAdmitOwnLaterSlotsDoNotDefer(t *testing.T) {
	now := time.Date(2024, 1, 2, 10, 0, 0, 0, time.UTC)
	l := Limits{DailyLimit: 1000, Reserve: 100, Rate: 5}
	w := NewWindow(l)
	var upcoming []Candidate
	for i := 1; i <= 24*60; i++ { // every minute for a day, 10 calls each: 16x the cap
		upcoming = append(upcoming, Candidate{Job: "poll", Nominal: now.Add(time.Duration(i) * time.Minute), Priority: runnerd.PriorityHigh, Estimate: 10})
	}
	c := Candidate{Job: "poll", Nominal: now, Priority: runnerd.PriorityHigh, Estimate: 10, Seq: 7}
	if d := NewPlanner(l).Admit(now, w, c, upcoming); !d.Admit {
		t.Fatalf("Admit(run due now) = %+v; want admitted: its own later slots must not hold it back", d)
	}
	// A slot due earlier than the candidate still counts ahead of it.
	early := append([]Candidate{{Job: "other", Nominal: now.Add(-time.Minute), Priority: runnerd.PriorityHigh, Estimate: 895}}, upcoming...)
	if d := NewPlanner(l).Admit(now, w, c, early); d.Admit {
		t.Fatalf("Admit with an earlier slot taking the whole cap = %+v; want deferred", d)
	}
}

func TestAdmitReasonNamesLabels(t *testing.T) {
	l := Limits{DailyLimit: 440, Reserve: 40} // Cap 400
	now := mon.Add(34 * time.Hour)            // Tuesday 10:00
	hr := func(n int) time.Time { return now.Add(time.Duration(n) * time.Hour) }
	lab := func(c Candidate, s string) Candidate { c.Label = s; return c }
	w := NewWindow(l)
	w.Add(hr(-20), 60)
	c := cand("export", now, low, 100, 10)

	one := []Candidate{lab(cand("promote-orders", hr(-2), high, 20, 3), "promote-orders, deferred"),
		cand("big", hr(2), normal, 300, 0)}
	got := NewPlanner(l).Admit(now, w, c, one).Reason
	want := "needs 100 calls; 20 left in the window until Wed 10:00 after 20 reserved for 1 high-priority run (promote-orders, deferred) and 300 reserved for 1 normal-priority run"
	if got != want {
		t.Errorf("one label:\n got %q\nwant %q", got, want)
	}

	var many []Candidate
	many = append(many, lab(cand("a", now, high, 10, 1), "a, running"))
	for i := range 3 {
		many = append(many, lab(cand("b", hr(i+1), high, 10, 0), "b, scheduled"))
	}
	many = append(many, lab(cand("c", hr(1), high, 10, 2), "c, waiting"))
	many = append(many, lab(cand("d", hr(2), high, 10, 4), "d, deferred"))
	many = append(many, cand("e", hr(2), high, 10, 5))
	many = append(many, cand("f", hr(3), high, 240, 6))
	got = NewPlanner(l).Admit(now, w, c, many).Reason
	want = "needs 100 calls; 30 left in the window until Wed 10:00 after 310 reserved for 8 high-priority runs (a, running; b, scheduled ×3; c, waiting and 3 more)"
	if got != want {
		t.Errorf("many labels:\n got %q\nwant %q", got, want)
	}
}

func TestSpread(t *testing.T) {
	for _, tc := range []struct {
		calls     int
		d, into   time.Duration
		want      []int
		wantHours int
	}{
		{10, 0, 0, []int{10}, 1},
		{10, 20 * time.Minute, 30 * time.Minute, []int{10}, 1},          // within its hour
		{60, 3 * time.Hour, 30 * time.Minute, []int{10, 20, 20, 10}, 4}, // 01:30 to 04:30
		{7, 2 * time.Hour, 0, []int{4, 3}, 2},                           // rounding keeps the sum: 3.5 → 4, then 3
		{48, 100 * time.Hour, 0, nil, 24},                               // longer than a window: 24 hours
	} {
		hours, parts := Spread(tc.calls, tc.d, tc.into)
		sum := 0
		for _, n := range parts {
			sum += n
		}
		if hours != tc.wantHours || len(parts) != hours || sum != tc.calls || (tc.want != nil && fmt.Sprint(parts) != fmt.Sprint(tc.want)) {
			t.Errorf("Spread(%d, %v, %v) = %d %v (sum %d); want %d hours %v summing to %d",
				tc.calls, tc.d, tc.into, hours, parts, sum, tc.wantHours, tc.want, tc.calls)
		}
	}
}

// TestPlanSpreadsLongRuns: a high run from 01:30 to 04:30 (60 calls) still
// spends in the 03:00 and 04:00 buckets, which the next day's 02:00 window
// holds. Counted only in its start hour, it would leave that window seemingly
// free, and a low run of 80 there would be admitted into 30 + 80 > 100.
func TestPlanSpreadsLongRuns(t *testing.T) {
	l := Limits{DailyLimit: 110, Reserve: 10} // Cap 100
	now := mon.Add(time.Hour)                 // Monday 01:00
	for _, tc := range []struct {
		name  string
		d     time.Duration
		admit bool
	}{{"start hour only", 0, true}, {"spread over 3 h", 3 * time.Hour, false}} {
		t.Run(tc.name, func(t *testing.T) {
			deploy := cand("deploy", now.Add(30*time.Minute), high, 60, 1)
			deploy.Duration = tc.d
			steps := NewPlanner(l).Plan(now, NewWindow(l), 26, []Candidate{deploy, cand("export", now.Add(25*time.Hour), low, 80, 2)})
			if len(steps) != 2 || !steps[0].Admit {
				t.Fatalf("Plan = %+v; want the deploy admitted, then the export", steps)
			}
			if steps[1].Admit != tc.admit {
				t.Errorf("export at Tuesday 02:00: admit = %v (%s); want %v", steps[1].Admit, steps[1].Reason, tc.admit)
			}
		})
	}
}

// TestAdmitSpreadsTheCandidate: a run of 60 calls over 4 h, due at 10:00
// with 50 calls of Sunday 11:00 still in the window until 11:00, fits: only
// its first quarter (15) meets them. Counted all in 10:00, it would be
// deferred (50 + 60 > 100). The gate still refuses any call over the cap
// should it go faster than its estimate.
func TestAdmitSpreadsTheCandidate(t *testing.T) {
	l := Limits{DailyLimit: 110, Reserve: 10} // Cap 100
	now := mon.Add(10 * time.Hour)
	w := NewWindow(l)
	w.Add(mon.Add(-13*time.Hour), 50) // Sunday 11:00: in the window of Monday 10:00, not 11:00
	for _, tc := range []struct {
		d     time.Duration
		admit bool
	}{{0, false}, {4 * time.Hour, true}} {
		c := cand("export", now, low, 60, 1)
		c.Duration = tc.d
		if d := NewPlanner(l).Admit(now, w, c, nil); d.Admit != tc.admit {
			t.Errorf("Admit(60 calls over %v) = %v (%s); want %v", tc.d, d.Admit, d.Reason, tc.admit)
		}
	}
}

func TestRemaining(t *testing.T) {
	for _, tc := range []struct {
		est, spent int
		d          time.Duration
		left       int
		leftD      time.Duration
	}{
		{60, 30, 4 * time.Hour, 30, 2 * time.Hour},
		{60, 0, 0, 60, 0},
		{60, 80, 4 * time.Hour, 0, 0}, // spent more than its estimate: nothing held
		{0, 0, time.Hour, 0, 0},
	} {
		if left, d := Remaining(tc.est, tc.spent, tc.d); left != tc.left || d != tc.leftD {
			t.Errorf("Remaining(%d, %d, %v) = %d, %v; want %d, %v", tc.est, tc.spent, tc.d, left, d, tc.left, tc.leftD)
		}
	}
}

package budget

import (
	"strings"
	"testing"
	"time"
)

func TestEstimateRun(t *testing.T) {
	d := DefaultEstimates()
	tests := []struct {
		kind   string
		recent []int
		calls  int
		basis  string
	}{
		{RunExecute, nil, 7, "default for execute (1 + 6 polls)"},
		{RunExecuteNoWait, nil, 1, "default for execute without wait"},
		{RunDeploy, nil, 4, "default for deploy (3 lookups + the deploy)"},
		{RunExport, nil, 5, "default for export (5 pages)"},
		{"nonsense", nil, 1, `default for unknown kind "nonsense"`},
		{RunExport, []int{3, 40}, 40, "largest of last 2 runs (above the default for export (5 pages))"},
		{RunExport, []int{2, 3}, 5, "default for export (5 pages)"},
		{RunExport, []int{10, 20, 30}, 30, "p90 of last 3 runs"},
		// Nearest rank: the 9th of 10.
		{RunExecute, []int{1, 2, 3, 4, 5, 6, 7, 8, 9, 100}, 9, "p90 of last 10 runs"},
		// Newest first; only the last 12 count: the old 1000s are forgotten.
		{RunExecute, []int{6, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 5, 1000, 1000}, 5, "p90 of last 12 runs"},
		{RunExecute, []int{0, 0, 0}, 1, "p90 of last 3 runs"},
	}
	for _, tt := range tests {
		got := EstimateRun(tt.kind, tt.recent, d)
		if got.Calls != tt.calls || got.Basis != tt.basis {
			t.Errorf("EstimateRun(%q, %v) = %+v; want {%d %q}", tt.kind, tt.recent, got, tt.calls, tt.basis)
		}
	}
}

func TestDecay(t *testing.T) {
	// Ten runs of 5 calls and two of 30: p90 is 30, the median 5.
	recent := []int{30, 5, 5, 30, 5, 5, 5, 5, 5, 5, 5, 5}
	e := EstimateRun(RunDeploy, recent, DefaultEstimates())
	if e.Calls != 30 {
		t.Fatalf("EstimateRun = %+v; want 30", e)
	}
	for _, tc := range []struct {
		waited time.Duration
		want   int
	}{
		{0, 30},
		{-time.Hour, 30},
		{DecayHalfLife, 18}, // 5 + 25/2, rounded
		{2 * DecayHalfLife, 11},
		{24 * time.Hour, 5}, // 5 + 25/64, rounded: back to normal within a day
		{100 * time.Hour, 5},
	} {
		got := Decay(e, recent, tc.waited)
		if got.Calls != tc.want {
			t.Errorf("Decay(30, waited %s) = %d; want %d", tc.waited, got.Calls, tc.want)
		}
		if tc.waited > 0 && !strings.Contains(got.Basis, "decayed toward the median 5") {
			t.Errorf("Decay(waited %s) basis = %q; want it to say it decayed", tc.waited, got.Basis)
		}
	}
	// A default (fewer than 3 runs) and an estimate at the median stay.
	if got := Decay(Estimate{Calls: 40, Basis: "x"}, []int{40, 1}, 48*time.Hour); got.Calls != 40 {
		t.Errorf("Decay of a default-based estimate = %d; want 40", got.Calls)
	}
	if got := Decay(Estimate{Calls: 5}, []int{5, 5, 5}, 48*time.Hour); got.Calls != 5 {
		t.Errorf("Decay at the median = %d; want 5", got.Calls)
	}
}

func TestTypicalDuration(t *testing.T) {
	m := time.Minute
	for _, tc := range []struct {
		recent []time.Duration
		want   time.Duration
	}{
		{nil, 0},
		{[]time.Duration{90 * m, 100 * m}, 0}, // too little history
		{[]time.Duration{100 * m, 10 * m, 90 * m}, 90 * m},
		{[]time.Duration{100 * m, 10 * m, 90 * m, 20 * m}, 20 * m}, // the lower middle
	} {
		if got := TypicalDuration(tc.recent); got != tc.want {
			t.Errorf("TypicalDuration(%v) = %v; want %v", tc.recent, got, tc.want)
		}
	}
}

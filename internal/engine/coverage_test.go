package engine

import (
	"slices"
	"testing"
	"time"
)

// TestCoverageRanges checks the layout of windows and failures by hand.
func TestCoverageRanges(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	cov := AuditCoverage{
		Windows: []Interval{{h(0), h(2), "a"}, {h(1), h(3), "b"}, {h(3), h(4), "a"}, {h(6), h(7), "a"}, {h(9), h(10), "a"}},
		Failures: []Interval{
			{h(4), h(5), "run 1"},           // part of the gap 4..6
			{h(6), h(7), "run 2"},           // later covered: not a gap
			{h(8), h(11), "run 3"},          // around a covered hour
			{h(12), h(13), "run 4 (later)"}, // after every window
		},
	}
	type r struct {
		from, to int
		state    string
	}
	got := func(rs []CoverageRange) []r {
		var out []r
		for _, c := range rs {
			out = append(out, r{int(c.From.Sub(t0).Hours()), int(c.To.Sub(t0).Hours()), c.State})
		}
		return out
	}
	for _, tc := range []struct {
		name     string
		from, to time.Time
		want     []r
	}{
		{"all", time.Time{}, time.Time{}, []r{{0, 4, CoverageCovered}, {4, 5, CoverageFailed}, {5, 6, CoverageGap}, {6, 7, CoverageCovered},
			{7, 8, CoverageGap}, {8, 9, CoverageFailed}, {9, 10, CoverageCovered}, {10, 11, CoverageFailed}, {11, 12, CoverageGap}, {12, 13, CoverageFailed}}},
		{"clipped", h(1), h(6), []r{{1, 4, CoverageCovered}, {4, 5, CoverageFailed}, {5, 6, CoverageGap}}},
		{"before and after", h(-2), h(15), []r{{-2, 0, CoverageGap}, {0, 4, CoverageCovered}, {4, 5, CoverageFailed}, {5, 6, CoverageGap}, {6, 7, CoverageCovered},
			{7, 8, CoverageGap}, {8, 9, CoverageFailed}, {9, 10, CoverageCovered}, {10, 11, CoverageFailed}, {11, 12, CoverageGap}, {12, 13, CoverageFailed}, {13, 15, CoverageGap}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if g := got(cov.Ranges(tc.from, tc.to)); !slices.Equal(g, tc.want) {
				t.Errorf("ranges(%v, %v) = %v; want %v", tc.from, tc.to, g, tc.want)
			}
		})
	}
	if rs := (AuditCoverage{}).Ranges(time.Time{}, time.Time{}); rs != nil {
		t.Errorf("ranges of nothing = %v; want none", rs)
	}
}

// TestCoverageHoles checks why each uncovered part is reported.
func TestCoverageHoles(t *testing.T) {
	t0 := time.Date(2026, 1, 5, 0, 0, 0, 0, time.UTC)
	h := func(n int) time.Time { return t0.Add(time.Duration(n) * time.Hour) }
	if _, recorded := (AuditCoverage{}).Holes(time.Time{}, h(5)); recorded {
		t.Error("Holes() of no windows: recorded = true")
	}
	cov := AuditCoverage{
		Windows:  []Interval{{h(0), h(2), "a"}, {h(4), h(6), "a"}},
		Failures: []Interval{{h(3), h(4), "run 1"}},
	}
	hs, recorded := cov.Holes(h(0), h(9))
	if !recorded {
		t.Fatal("Holes(): recorded = false")
	}
	type hole struct {
		from, to int
		why      string
	}
	var got []hole
	for _, x := range hs {
		got = append(got, hole{int(x.From.Sub(t0).Hours()), int(x.To.Sub(t0).Hours()), x.Why})
	}
	want := []hole{{2, 3, "never exported"}, {3, 4, "export failed"}, {6, 9, "not exported yet"}}
	if !slices.Equal(got, want) {
		t.Errorf("Holes() = %v; want %v", got, want)
	}
	if last := LastCovered(cov.Ranges(h(0), h(9))); !last.Equal(h(6)) {
		t.Errorf("LastCovered() = %v; want %v", last, h(6))
	}
}

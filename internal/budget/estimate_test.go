package budget

import "testing"

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

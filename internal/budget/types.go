package budget

import (
	"time"

	"runnerd"
)

// Candidate is a run the planner is asked about, or one already scheduled in the
// look-ahead horizon.
type Candidate struct {
	Job      string
	Nominal  time.Time        // when it is (or was) due
	Priority runnerd.Priority // high runs keep their share first
	Estimate int              // calls it is expected to spend
	// Duration is how long its calls are expected to take from its start (a
	// running run: what is left of it). Zero: all in its start hour. A run
	// that spans hours has its estimate spread over them in proportion to
	// the time in each (Spread), so the windows after its start hour see the
	// calls it still makes there.
	Duration time.Duration
	Seq      int64 // arrival order, for first come, first served among equals
	// Label names the run in a deferral's reason when the planner keeps its
	// share, e.g. "promote-orders, deferred" (the job and its state). Up to 3
	// labels are printed per group, then "and N more"; runs with the same label
	// are printed once with "×N". Empty: the run is counted but not named.
	Label string
}

// Decision is the planner's answer for one candidate.
type Decision struct {
	Admit      bool
	Reason     string    // in words, for the run's record and the log; set on deferral
	EarliestAt time.Time // deferral: the earliest hour at which it fits; zero if never within the horizon
}

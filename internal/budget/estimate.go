package budget

import (
	"fmt"
	"math"
	"slices"
	"time"
)

// Run kinds for EstimateRun: the job kinds of the configuration, and an
// execute job with wait = false.
const (
	RunExecute       = "execute"
	RunExecuteNoWait = "execute-nowait"
	RunDeploy        = "deploy"
	RunExport        = "export"
)

// Estimator settings.
const (
	estimateRuns = 12   // how many recent runs the percentile looks at
	estimateMin  = 3    // fewer recent runs than this: the kind's default, raised to the largest seen
	estimatePct  = 0.90 // the percentile

	// DecayHalfLife: while a job's run waits deferred, its estimate's excess
	// over the median of its recent runs halves every DecayHalfLife, so that
	// an estimate one bad run inflated cannot keep the job out for good (a
	// deferred run makes no new history to bring it down). After a day of
	// waiting the excess is 1/64 of what it was.
	DecayHalfLife = 4 * time.Hour
)

// Estimate is the expected number of calls of one run.
type Estimate struct {
	Calls int
	Basis string // in words: "p90 of last 12 runs", "default for execute (1 + 6 polls)"
	// Duration is how long the job's runs typically take (TypicalDuration):
	// the planner spreads Calls over those hours. Zero: in the start hour.
	Duration time.Duration
}

// TypicalDuration is the median of a job's recent run durations (newest
// first; the last 12 count) once there are at least 3, else zero: with less
// history a run's calls are all projected in its start hour.
func TypicalDuration(recent []time.Duration) time.Duration {
	if len(recent) > estimateRuns {
		recent = recent[:estimateRuns]
	}
	if len(recent) < estimateMin {
		return 0
	}
	s := slices.Clone(recent)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// Defaults are the per-kind estimates used until a job has a history.
type Defaults struct {
	Execute       int // the ExecutionRequest, then polls of ExecutionRecord/async to a terminal status
	ExecuteNoWait int // the ExecutionRequest (or executeProcess) alone
	Deploy        int // lookups of the component, its package and the active deployment, then the write
	Export        int // the pages of one window: the QUERY, then queryMore
}

// DefaultEstimates returns the defaults: execute 1 + 6 polls (a run of a few
// minutes polled at ≥ 10 s with back-off), execute without wait 1, deploy 3
// lookups + the deploy, export 1 query + 4 queryMore pages (500 records).
func DefaultEstimates() Defaults {
	return Defaults{Execute: 7, ExecuteNoWait: 1, Deploy: 4, Export: 5}
}

// EstimateRun estimates the calls of a run of the given kind from recent, the
// calls of the job's latest runs (newest first, as store.JobHistory's Costs
// gives them; only the first 12 are used): the
// 90th percentile (nearest rank) once there are at least 3 of them, else the
// kind's default from d, raised to the largest recent run. An estimate is at
// least 1.
func EstimateRun(kind string, recent []int, d Defaults) Estimate {
	if len(recent) > estimateRuns {
		recent = recent[:estimateRuns]
	}
	if len(recent) >= estimateMin {
		s := slices.Clone(recent)
		slices.Sort(s)
		i := int(math.Ceil(estimatePct*float64(len(s)))) - 1
		return Estimate{
			Calls: max(1, s[i]),
			Basis: fmt.Sprintf("p%d of last %d runs", int(estimatePct*100), len(s)),
		}
	}
	n, basis := defaultFor(kind, d)
	if len(recent) > 0 {
		if m := slices.Max(recent); m > n {
			return Estimate{Calls: m, Basis: fmt.Sprintf("largest of last %d runs (above the %s)", len(recent), basis)}
		}
	}
	return Estimate{Calls: max(1, n), Basis: basis}
}

func defaultFor(kind string, d Defaults) (int, string) {
	switch kind {
	case RunExecute:
		return d.Execute, fmt.Sprintf("default for execute (1 + %d polls)", max(0, d.Execute-1))
	case RunExecuteNoWait:
		return d.ExecuteNoWait, "default for execute without wait"
	case RunDeploy:
		return d.Deploy, fmt.Sprintf("default for deploy (%d lookups + the deploy)", max(0, d.Deploy-1))
	case RunExport:
		return d.Export, fmt.Sprintf("default for export (%d pages)", d.Export)
	default:
		return 1, fmt.Sprintf("default for unknown kind %q", kind)
	}
}

// Decay lowers e toward the median of recent (the same input as
// EstimateRun) by the time the job's run has waited deferred: the excess
// over the median is halved every DecayHalfLife. No wait, or fewer than 3
// recent runs (e is then a default), leaves e as it is; e never goes below
// the median.
func Decay(e Estimate, recent []int, waited time.Duration) Estimate {
	if len(recent) > estimateRuns {
		recent = recent[:estimateRuns]
	}
	if waited <= 0 || len(recent) < estimateMin {
		return e
	}
	s := slices.Clone(recent)
	slices.Sort(s)
	median := max(1, s[(len(s)-1)/2])
	if e.Calls <= median {
		return e
	}
	f := math.Exp2(-float64(waited) / float64(DecayHalfLife))
	n := median + int(math.Round(float64(e.Calls-median)*f))
	if n == e.Calls {
		return e
	}
	return Estimate{Calls: n, Basis: fmt.Sprintf("%s, decayed toward the median %d after %s deferred",
		e.Basis, median, waited.Round(time.Minute))}
}

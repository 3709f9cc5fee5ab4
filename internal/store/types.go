package store

import "time"

// RunState is where a run is in its life (DESIGN 3.4):
// planned → admitted → running → succeeded | failed | deferred | missed | unknown | skipped.
type RunState string

// Run states.
const (
	StatePlanned   RunState = "planned"
	StateAdmitted  RunState = "admitted"
	StateRunning   RunState = "running"
	StateSucceeded RunState = "succeeded"
	StateFailed    RunState = "failed"
	StateDeferred  RunState = "deferred"
	StateMissed    RunState = "missed"
	StateUnknown   RunState = "unknown"
	StateSkipped   RunState = "skipped"
)

// Terminal reports whether no further transition is expected from s.
// deferred is not terminal (it runs later if it still fits its catch-up window);
// unknown is not terminal (it is reconciled).
func (s RunState) Terminal() bool {
	switch s {
	case StateSucceeded, StateFailed, StateMissed, StateSkipped:
		return true
	}
	return false
}

// Run is one scheduled occurrence of a job, keyed by (Job, NominalTime).
// Zero times mean "not yet".
type Run struct {
	ID          int64
	Job         string
	Kind        string // execute | deploy | export
	NominalTime time.Time
	State       RunState
	Reason      string    // why deferred/skipped/missed/unknown, in words
	NotBefore   time.Time // deferred: the earliest time the planner said it fits
	Estimate    int       // estimated calls, at admission
	Calls       int       // calls spent (kept in step with the ledger)
	Attempt     int       // job-level retry number, 0 for the first
	StartedAt   time.Time
	FinishedAt  time.Time
	Error       string
	// Detail carries kind-specific results: the platform requestId/executionId,
	// the export file, its row count and sha256, the window. JSON text.
	Detail string
}

// Call is one HTTP attempt in the ledger (DESIGN 3.3). Never headers, never
// bodies beyond a capped excerpt of an error body.
type Call struct {
	ID         int64
	RunID      int64 // 0 = not part of a run
	Job        string
	RequestID  string // the X-Runnerd-Request-Id sent with the attempt
	Operation  string
	Method     string
	Path       string
	Safe       bool
	Recovery   bool
	Attempt    int
	StartedAt  time.Time
	FinishedAt time.Time // zero while the attempt is open (sent, not answered)
	Status     int       // 0 = no answer
	DurationMS int64
	Bytes      int64
	Error      string // capped excerpt
	PlatformID string // e.g. the ExecutionRequest requestId
}

// JobState is what is persisted per job between restarts.
type JobState struct {
	Job         string
	Paused      bool
	LastNominal time.Time // the last slot handled (run, missed or skipped)
	Watermark   time.Time // exports: the end of the last window safely on disk
}

// HourUsage is the number of calls begun in one UTC hour bucket.
type HourUsage struct {
	Hour  time.Time // truncated to the hour, UTC
	Calls int
}

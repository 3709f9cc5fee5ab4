package scheduler

import (
	"context"
	"time"

	"runnerd"
)

// RunContext is what a job kind gets for one run.
type RunContext struct {
	Run runnerd.Run
	// WindowFrom/WindowTo are set for an export backfill (runnerd run -from -to);
	// zero otherwise.
	WindowFrom, WindowTo time.Time
	// Now is the scheduler's clock.
	Now func() time.Time
}

// Outcome is how a run ended, as the job kind reports it.
type Outcome struct {
	State runnerd.RunState // succeeded, failed, deferred (budget stop at a safe point) or unknown
	Err   error            // the failure or the reason, shown on the run
	// Retryable marks a failure that is safe to retry at job level (no unsafe call
	// may have been accepted).
	Retryable bool
	// Detail is kind-specific JSON for the run record (request ids, files, rows, sha256, window).
	Detail string
}

// Kind runs one job kind (execute, deploy, export). Implementations live in
// internal/scheduler/kinds; the scheduler only sees this interface.
type Kind interface {
	Run(ctx context.Context, rc *RunContext) Outcome
}

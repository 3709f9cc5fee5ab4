// Package runnerd holds the domain types that every layer of runnerd shares:
// a run and its states, a job's priority, and the small enumerations of the
// configuration that the scheduler and the reconciler act on. It imports
// nothing of runnerd's, so the store, the budget, the client and the scheduler
// can all speak of the same run without importing each other.
//
// The layers, from the bottom: internal/store (the SQLite ledger),
// internal/budget (window, rate, planner), internal/atomapi (the AtomSphere
// client), internal/scheduler (cron and the run lifecycle) with its kinds,
// internal/reconcile, internal/notify, internal/web; internal/engine wires
// them into the daemon; cmd/runnerd is the command line around the engine.
package runnerd

import (
	"context"
	"fmt"
	"time"
)

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

// Priority orders work when the budget is short: higher priorities keep
// their share of the window first (DESIGN 3.5).
type Priority int

// Priorities, lowest first.
const (
	PriorityLow    Priority = 0
	PriorityNormal Priority = 1
	PriorityHigh   Priority = 2
)

// String returns "low", "normal" or "high".
func (p Priority) String() string {
	switch p {
	case PriorityLow:
		return "low"
	case PriorityHigh:
		return "high"
	default:
		return "normal"
	}
}

// ParsePriority reads a configuration's priority: "high", "normal", "low";
// "" is normal.
func ParsePriority(s string) (Priority, error) {
	switch s {
	case "high":
		return PriorityHigh, nil
	case "normal", "":
		return PriorityNormal, nil
	case "low":
		return PriorityLow, nil
	}
	return PriorityNormal, fmt.Errorf("priority %q: want high, normal or low", s)
}

// Overlap policies: what a fire does while a run of the same job is in flight.
const (
	OverlapSkip  = "skip"  // record the new run as skipped
	OverlapQueue = "queue" // let at most one run wait; skip any further one
	OverlapAllow = "allow" // run side by side
)

// Catch-up policies: what start-up does with slots missed while runnerd was down.
const (
	CatchUpNone   = "none"   // record them as missed
	CatchUpLatest = "latest" // run the latest one, record the others as missed
	CatchUpAll    = "all"    // run each, oldest first
)

// What reconciliation does with an unknown run whose unsafe call left no
// trace on the platform after the grace period.
const (
	OnUnknownSkip   = "skip"   // record it as skipped
	OnUnknownRefire = "refire" // run it again
)

// DeployNotes is the notes a deploy run writes on its DeployedPackage, and
// reconciliation looks for after a crash: "runnerd JOB NOMINAL", NOMINAL in
// the API's time format (nominalAPI).
func DeployNotes(job, nominalAPI string) string { return "runnerd " + job + " " + nominalAPI }

// Sleep waits d, or until ctx ends; it returns ctx's error then. A d of zero
// or less returns at once (nil unless ctx has ended).
func Sleep(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return ctx.Err()
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

package store

import "time"

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
	StartedAt  time.Time // when BeginCall recorded it; after EndCall with SentAt, when it was sent
	FinishedAt time.Time // zero while the attempt is open (sent, not answered)
	// SentAt, given to EndCall, is when the first byte actually left (after
	// pacing). When set, EndCall makes it the row's StartedAt and moves the
	// call to SentAt's hour in the hourly rollup if that differs. Never read
	// back: ListCalls returns it as StartedAt.
	SentAt     time.Time
	Status     int // 0 = no answer
	DurationMS int64
	Bytes      int64
	Error      string // capped excerpt
	PlatformID string // e.g. the ExecutionRequest requestId
	// Limit, given to BeginCall on a shared (PostgreSQL) ledger, is the
	// window's cap for this call: BeginCall refuses with ErrWindowFull when
	// the account's calls, every instance's, would exceed it. 0: no check
	// (SQLite's single runnerd checks in its own gate).
	Limit int
	// Instance, given to BeginCall on a shared ledger, is the calling
	// runnerd's name: a call for Job is recorded only if Instance holds the
	// job's lease (ErrLeaseLost otherwise). "": no check.
	Instance string
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

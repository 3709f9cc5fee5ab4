// Package scheduler fires jobs on their cron schedules (robfig/cron/v3, per-job
// time zones, jitter), owns each run's life and state machine (overlap, catch-up,
// deferral, timeouts, retries, pause), and hands the work to a job Kind. It
// speaks neither HTTP nor SQL: it declares the store and planner it needs.
// Schedules are read by internal/schedule, the same reading validate and plan
// use. Every arrived, unfinished run (waiting, deferred, running) is kept for
// LookAhead, so the planner weighs a run against those before the future
// slots. internal/engine wires it to the ledger and the budget.
package scheduler

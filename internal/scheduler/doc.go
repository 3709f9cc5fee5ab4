// Package scheduler fires jobs on their cron schedules (robfig/cron/v3, per-job
// time zones, jitter), owns each run's life and state machine (overlap, catch-up,
// deferral, timeouts, retries, pause), and hands the work to a job Kind. It
// speaks neither HTTP nor SQL: it declares the store and planner it needs.
package scheduler

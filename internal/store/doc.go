// Package store is runnerd's SQLite ledger: runs, every API call (recorded
// before it is sent), hourly usage rollups, job state (pause, last slot,
// watermarks) and audit records. It knows nothing about cron or HTTP.
//
// Writes go through one connection with BEGIN IMMEDIATE, so in-process
// writers queue instead of meeting SQLITE_BUSY; another process holding the
// lock longer than Options.BusyTimeout makes the write fail with an error,
// never silently. Reads use a separate query_only pool that never waits for
// the writer (WAL). Times are stored as UTC unix milliseconds, NULL for the
// zero time, and come back in UTC with millisecond precision.
//
// The schema lives in runnerd/migrations, applied by Open (or Migrate) one
// file per transaction and recorded in schema_migrations.
package store

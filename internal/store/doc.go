// Package store is runnerd's SQLite ledger: runs, every API call (recorded
// before it is sent), hourly usage rollups, job state (pause, last slot,
// watermarks) and audit records. It knows nothing about cron or HTTP.
package store

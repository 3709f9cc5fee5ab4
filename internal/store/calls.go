package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxErrorExcerpt caps the error text kept on a call row.
const MaxErrorExcerpt = 1024

// BeginCall records an attempt before it is sent: it inserts the row, bumps
// the hour rollup and (if c.RunID != 0) the run's call count in one
// transaction, and returns the row id only once that transaction has
// committed. c.StartedAt defaults to Now(). An error means nothing was
// recorded, and the request must not be sent.
func (db *DB) BeginCall(ctx context.Context, c Call) (int64, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: begin call: %w", err)
	}
	defer tx.Rollback()
	id, err := beginCall(ctx, tx, c)
	if err != nil {
		return 0, fmt.Errorf("store: begin call: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: begin call: %w", err)
	}
	return id, nil
}

// The statements of the per-call path, prepared once on the writer
// connection (stmtCache) instead of parsed at every call.
const (
	qBumpRunCalls = `UPDATE runs SET calls = calls + 1 WHERE id = ?`
	qInsertCall   = `INSERT INTO calls
		(run_id, job, request_id, operation, method, path, safe, recovery, attempt,
		 started_at, finished_at, status, duration_ms, bytes, error, platform_id)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`
	qBumpHour = `INSERT INTO hourly_usage (hour, calls) VALUES (?, 1)
		ON CONFLICT (hour) DO UPDATE SET calls = hourly_usage.calls + 1`
	qDropHour    = `UPDATE hourly_usage SET calls = calls - 1 WHERE hour = ? AND calls > 0`
	qCallStarted = `SELECT started_at FROM calls WHERE id = ?`
	qEndCall     = `UPDATE calls SET finished_at = ?, status = ?, duration_ms = ?, bytes = ?,
		error = ?, platform_id = ?, started_at = COALESCE(?, started_at) WHERE id = ?`
)

func beginCall(ctx context.Context, tx *tx, c Call) (int64, error) {
	if c.StartedAt.IsZero() {
		c.StartedAt = tx.now
	}
	if tx.db.pg && c.Limit > 0 {
		// A shared ledger: the window check and the insert are one step for
		// every instance (the lock is held to the commit).
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(pgBudgetLock)); err != nil {
			return 0, err
		}
		if err := checkWindow(ctx, tx, c.StartedAt, c.Limit); err != nil {
			return 0, err
		}
	}
	if tx.db.pg && c.Instance != "" && c.Job != "" {
		if err := checkLease(ctx, tx, c.Job, c.Instance); err != nil {
			return 0, err
		}
	}
	if c.RunID != 0 {
		res, err := tx.exec(ctx, qBumpRunCalls, c.RunID)
		if err != nil {
			return 0, err
		}
		if n, err := res.RowsAffected(); err != nil {
			return 0, err
		} else if n == 0 {
			return 0, fmt.Errorf("run %d: %w", c.RunID, ErrNotFound)
		}
	}
	var id int64
	if err := tx.queryRow(ctx, qInsertCall,
		nullID(c.RunID), c.Job, nullString(c.RequestID), c.Operation, c.Method, c.Path,
		boolInt(c.Safe), boolInt(c.Recovery), c.Attempt,
		ms(c.StartedAt), ms(c.FinishedAt), c.Status, c.DurationMS, c.Bytes, excerpt(c.Error), c.PlatformID).Scan(&id); err != nil {
		return 0, err
	}
	if _, err := tx.exec(ctx, qBumpHour, hourMS(c.StartedAt)); err != nil {
		return 0, err
	}
	return id, nil
}

// EndCall completes the row c.ID: FinishedAt (default Now()), Status,
// DurationMS, Bytes, Error (capped at MaxErrorExcerpt bytes) and PlatformID.
//
// If c.SentAt is set (when the first byte actually left, after pacing), the
// row's started_at becomes c.SentAt, and if that is in another UTC hour than
// the one BeginCall counted, the call moves to SentAt's hour in the hourly
// rollup — all in the same transaction, so the rollup always sums to the
// rows. (A process that dies between sending and EndCall leaves the call in
// the hour it was begun in.)
func (db *DB) EndCall(ctx context.Context, c Call) error {
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: end call %d: %w", c.ID, err)
	}
	defer tx.Rollback()
	if c.FinishedAt.IsZero() {
		c.FinishedAt = tx.now
	}
	if !c.SentAt.IsZero() {
		var started int64
		if err := tx.queryRow(ctx, qCallStarted, c.ID).Scan(&started); errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("store: end call %d: %w", c.ID, ErrNotFound)
		} else if err != nil {
			return fmt.Errorf("store: end call %d: %w", c.ID, err)
		}
		if from, to := hourMS(time.UnixMilli(started)), hourMS(c.SentAt); from != to {
			if _, err := tx.exec(ctx, qDropHour, from); err != nil {
				return fmt.Errorf("store: end call %d: %w", c.ID, err)
			}
			if _, err := tx.exec(ctx, qBumpHour, to); err != nil {
				return fmt.Errorf("store: end call %d: %w", c.ID, err)
			}
		}
	}
	res, err := tx.exec(ctx, qEndCall,
		ms(c.FinishedAt), c.Status, c.DurationMS, c.Bytes, excerpt(c.Error), c.PlatformID, ms(c.SentAt), c.ID)
	if err != nil {
		return fmt.Errorf("store: end call %d: %w", c.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: end call %d: %w", c.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: end call %d: %w", c.ID, ErrNotFound)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: end call %d: %w", c.ID, err)
	}
	return nil
}

// excerpt caps s at MaxErrorExcerpt bytes without splitting a UTF-8 sequence,
// marking the cut with "…".
func excerpt(s string) string {
	if len(s) <= MaxErrorExcerpt {
		return s
	}
	const mark = "…"
	cut := MaxErrorExcerpt - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

const hourlyUsageQuery = `SELECT hour, calls FROM hourly_usage WHERE hour >= ? ORDER BY hour`

// HourlyUsage returns the calls begun per UTC hour from the hour containing
// since onwards, oldest first. It reads the rollup, never the call rows, so
// its cost does not depend on how many calls are kept.
func (db *DB) HourlyUsage(ctx context.Context, since time.Time) ([]HourUsage, error) {
	rows, err := db.reader.QueryContext(ctx, hourlyUsageQuery, hourMS(since))
	if err != nil {
		return nil, fmt.Errorf("store: hourly usage: %w", err)
	}
	defer rows.Close()
	var out []HourUsage
	for rows.Next() {
		var h int64
		var u HourUsage
		if err := rows.Scan(&h, &u.Calls); err != nil {
			return nil, fmt.Errorf("store: hourly usage: %w", err)
		}
		u.Hour = time.UnixMilli(h).UTC()
		out = append(out, u)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: hourly usage: %w", err)
	}
	return out, nil
}

// CallFilter selects calls for ListCalls. Zero fields do not filter, except
// Status: -1 is any status, 0 is "no answer" (open, or ended without a
// response), anything else is that HTTP status.
type CallFilter struct {
	Job    string
	RunID  int64
	Since  time.Time // started at or after
	Status int
	Limit  int // 0: no limit
}

const callColumns = `id, COALESCE(run_id, 0), job, COALESCE(request_id, ''), operation, method, path, safe, recovery,
	attempt, started_at, finished_at, status, duration_ms, bytes, error, platform_id`

// ListCalls returns the calls matching f, newest first.
func (db *DB) ListCalls(ctx context.Context, f CallFilter) ([]Call, error) {
	q, args := listCallsQuery(f)
	calls, err := db.queryCalls(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list calls: %w", err)
	}
	return calls, nil
}

func listCallsQuery(f CallFilter) (string, []any) {
	var where []string
	var args []any
	if f.Job != "" {
		where, args = append(where, "job = ?"), append(args, f.Job)
	}
	if f.RunID != 0 {
		where, args = append(where, "run_id = ?"), append(args, f.RunID)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "started_at >= ?"), append(args, f.Since.UnixMilli())
	}
	if f.Status >= 0 {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	q := "SELECT " + callColumns + " FROM calls"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY started_at DESC, id DESC"
	if f.Limit > 0 {
		q, args = q+" LIMIT ?", append(args, f.Limit)
	}
	return q, args
}

// OpenCalls returns the calls of run runID that were begun and never ended,
// oldest first: after a crash, these are the attempts whose outcome is
// unknown. runID 0 returns the open calls of every run and of none.
func (db *DB) OpenCalls(ctx context.Context, runID int64) ([]Call, error) {
	q := "SELECT " + callColumns + " FROM calls WHERE finished_at IS NULL"
	var args []any
	if runID != 0 {
		q, args = q+" AND run_id = ?", append(args, runID)
	}
	q += " ORDER BY started_at, id"
	calls, err := db.queryCalls(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: open calls of run %d: %w", runID, err)
	}
	return calls, nil
}

func (db *DB) queryCalls(ctx context.Context, q string, args ...any) ([]Call, error) {
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Call
	for rows.Next() {
		var c Call
		var safe, recovery int
		var started, finished sql.NullInt64
		if err := rows.Scan(&c.ID, &c.RunID, &c.Job, &c.RequestID, &c.Operation, &c.Method, &c.Path,
			&safe, &recovery, &c.Attempt, &started, &finished, &c.Status, &c.DurationMS, &c.Bytes,
			&c.Error, &c.PlatformID); err != nil {
			return nil, err
		}
		c.Safe, c.Recovery = safe != 0, recovery != 0
		c.StartedAt, c.FinishedAt = fromMS(started), fromMS(finished)
		out = append(out, c)
	}
	return out, rows.Err()
}

// pruneBatch bounds how many rows one prune transaction deletes, so the writer
// is never held for long.
const pruneBatch = 5000

// Prune deletes call rows begun before Now()-olderThan and returns how many
// it deleted. The hour rollups are kept, so the budget's view of the past is
// unchanged. It deletes in small transactions so that BeginCall never waits
// long behind it.
func (db *DB) Prune(ctx context.Context, olderThan time.Duration) (int64, error) {
	if olderThan <= 0 {
		return 0, fmt.Errorf("store: prune: retention %v: want a positive age", olderThan)
	}
	cutoff := db.now().Add(-olderThan).UnixMilli()
	var total int64
	for {
		tx, err := db.begin(ctx)
		if err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
		res, err := tx.ExecContext(ctx, `DELETE FROM calls WHERE id IN
			(SELECT id FROM calls WHERE started_at < ? ORDER BY started_at LIMIT ?)`, cutoff, pruneBatch)
		if err != nil {
			tx.Rollback()
			return total, fmt.Errorf("store: prune: %w", err)
		}
		n, err := res.RowsAffected()
		if err != nil {
			tx.Rollback()
			return total, fmt.Errorf("store: prune: %w", err)
		}
		if err := tx.Commit(); err != nil {
			return total, fmt.Errorf("store: prune: %w", err)
		}
		total += n
		if n < pruneBatch {
			return total, nil
		}
	}
}

// RecoveryCalls returns, for each of the runs given that has any, how many
// of its calls were recovery lookups (reconciliation identifying what an
// unknown run did; CallInfo.Recovery). They are part of the run's Calls.
func (db *DB) RecoveryCalls(ctx context.Context, runIDs []int64) (map[int64]int, error) {
	out := map[int64]int{}
	const chunk = 500 // below SQLite's bound on parameters
	for len(runIDs) > 0 {
		n := min(len(runIDs), chunk)
		args := make([]any, n)
		for i, id := range runIDs[:n] {
			args[i] = id
		}
		q := `SELECT run_id, count(*) FROM calls WHERE recovery = 1 AND run_id IN (?` +
			strings.Repeat(",?", n-1) + `) GROUP BY run_id`
		rows, err := db.reader.QueryContext(ctx, q, args...)
		if err != nil {
			return nil, fmt.Errorf("store: recovery calls: %w", err)
		}
		for rows.Next() {
			var id int64
			var c int
			if err := rows.Scan(&id, &c); err != nil {
				rows.Close()
				return nil, fmt.Errorf("store: recovery calls: %w", err)
			}
			out[id] = c
		}
		err = errors.Join(rows.Err(), rows.Close())
		if err != nil {
			return nil, fmt.Errorf("store: recovery calls: %w", err)
		}
		runIDs = runIDs[n:]
	}
	return out, nil
}

// CallGroup is the number of ledger rows of one job, operation and status.
type CallGroup struct {
	Job, Operation string
	Status, Calls  int
}

// CallSummary counts the ledger's rows by job, operation and status, in that
// order: one aggregate query, not the rows themselves.
func (db *DB) CallSummary(ctx context.Context) ([]CallGroup, error) {
	rows, err := db.reader.QueryContext(ctx,
		"SELECT job, operation, status, count(*) FROM calls GROUP BY job, operation, status ORDER BY job, operation, status")
	if err != nil {
		return nil, fmt.Errorf("store: call summary: %w", err)
	}
	defer rows.Close()
	var out []CallGroup
	for rows.Next() {
		var g CallGroup
		if err := rows.Scan(&g.Job, &g.Operation, &g.Status, &g.Calls); err != nil {
			return nil, fmt.Errorf("store: call summary: %w", err)
		}
		out = append(out, g)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: call summary: %w", err)
	}
	return out, nil
}

// CallsSince counts the calls begun at or after t (through calls_started):
// the status page's rate use over the last minute.
func (db *DB) CallsSince(ctx context.Context, t time.Time) (int, error) {
	var n int
	if err := db.reader.QueryRowContext(ctx, `SELECT count(*) FROM calls WHERE started_at >= ?`, t.UnixMilli()).Scan(&n); err != nil {
		return 0, fmt.Errorf("store: calls since %s: %w", t.UTC().Format(time.RFC3339), err)
	}
	return n, nil
}

package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"

	"runnerd"
)

// Evidence kinds and states.
const (
	EvidenceLog       = "log"
	EvidenceArtifacts = "artifacts"

	EvidencePending = "pending"  // to be fetched at NextAt (Reason says why it waits)
	EvidenceKept    = "kept"     // the file is at Path
	EvidenceGivenUp = "given_up" // never will be: Reason says why
	EvidencePruned  = "pruned"   // was kept; its file was removed to stay within the total size
)

// Evidence is one piece of failure evidence of a run: its process log or its
// execution artifacts, to be fetched from the platform or already kept.
type Evidence struct {
	ID          int64
	RunID       int64
	Job         string
	Kind        string // EvidenceLog or EvidenceArtifacts
	ExecutionID string
	Level       string // the log level asked for (log only)
	State       string
	Reason      string
	URL         string    // the download link being polled ("" before one is asked for)
	URLAt       time.Time // when that link was made
	Links       int       // links asked for so far
	Polls       int       // downloads tried on the current link
	NextAt      time.Time // pending: not before this
	EndedAt     time.Time // when the run ended; the platform's purge counts from it
	Path        string    // kept: the file
	Bytes       int64
	SHA256      string
	CreatedAt   time.Time
	UpdatedAt   time.Time
}

const evidenceCols = `id, run_id, job, kind, execution_id, level, state, reason, url, url_at, links, polls,
	next_at, ended_at, path, bytes, sha256, created_at, updated_at`

// QueueEvidence records pending evidence to fetch; a (run, kind) already
// recorded is left as it is. It returns how many rows were added.
func (db *DB) QueueEvidence(ctx context.Context, es []Evidence) (int, error) {
	if len(es) == 0 {
		return 0, nil
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return 0, fmt.Errorf("store: queue evidence: %w", err)
	}
	defer tx.Rollback()
	added := 0
	for _, e := range es {
		next := e.NextAt
		if next.IsZero() {
			next = tx.now
		}
		res, err := tx.ExecContext(ctx, `INSERT INTO evidence (run_id, job, kind, execution_id, level, state, reason,
			next_at, ended_at, created_at, updated_at) VALUES (?, ?, ?, ?, ?, 'pending', ?, ?, ?, ?, ?)
			ON CONFLICT (run_id, kind) DO NOTHING`,
			e.RunID, e.Job, e.Kind, e.ExecutionID, e.Level, excerpt(e.Reason), next.UnixMilli(), e.EndedAt.UnixMilli(),
			tx.now.UnixMilli(), tx.now.UnixMilli())
		if err != nil {
			return 0, fmt.Errorf("store: queue evidence of run %d: %w", e.RunID, err)
		}
		n, _ := res.RowsAffected()
		added += int(n)
	}
	if err := tx.Commit(); err != nil {
		return 0, fmt.Errorf("store: queue evidence: %w", err)
	}
	return added, nil
}

// UpdateEvidence writes e's progress: state, reason, link, counters, next
// time and, once kept, the file's path, size and digest.
func (db *DB) UpdateEvidence(ctx context.Context, e Evidence) error {
	_, err := db.writer.ExecContext(ctx, `UPDATE evidence SET state = ?, reason = ?, url = ?, url_at = ?, links = ?,
		polls = ?, next_at = ?, path = ?, bytes = ?, sha256 = ?, updated_at = ? WHERE id = ?`,
		e.State, excerpt(e.Reason), e.URL, ms(e.URLAt), e.Links, e.Polls, e.NextAt.UnixMilli(), e.Path, e.Bytes, e.SHA256,
		db.now().UTC().UnixMilli(), e.ID)
	if err != nil {
		return fmt.Errorf("store: update evidence %d: %w", e.ID, err)
	}
	return nil
}

// ReconsiderDeferredEvidence makes the pending pieces the budget deferred
// (their reason starts "deferred") due at now; it returns how many.
func (db *DB) ReconsiderDeferredEvidence(ctx context.Context, now time.Time) (int, error) {
	res, err := db.writer.ExecContext(ctx, `UPDATE evidence SET next_at = ?, updated_at = ?
		WHERE state = 'pending' AND next_at > ? AND reason LIKE 'deferred%'`, now.UnixMilli(), db.now().UTC().UnixMilli(), now.UnixMilli())
	if err != nil {
		return 0, fmt.Errorf("store: reconsider deferred evidence: %w", err)
	}
	n, _ := res.RowsAffected()
	return int(n), nil
}

// DueEvidence returns up to limit pending pieces, soonest first.
func (db *DB) DueEvidence(ctx context.Context, limit int) ([]Evidence, error) {
	return db.queryEvidence(ctx, `SELECT `+evidenceCols+` FROM evidence WHERE state = 'pending'
		ORDER BY next_at, id LIMIT ?`, limit)
}

// RunEvidence returns a run's evidence, log first.
func (db *DB) RunEvidence(ctx context.Context, runID int64) ([]Evidence, error) {
	return db.queryEvidence(ctx, `SELECT `+evidenceCols+` FROM evidence WHERE run_id = ? ORDER BY kind DESC, id`, runID)
}

// EvidenceOfRuns returns the evidence of the given runs, by run.
func (db *DB) EvidenceOfRuns(ctx context.Context, runIDs []int64) (map[int64][]Evidence, error) {
	out := map[int64][]Evidence{}
	for len(runIDs) > 0 {
		n := min(len(runIDs), 500)
		args := make([]any, n)
		for i, id := range runIDs[:n] {
			args[i] = id
		}
		es, err := db.queryEvidence(ctx, `SELECT `+evidenceCols+` FROM evidence WHERE run_id IN (?`+
			strings.Repeat(", ?", n-1)+`) ORDER BY run_id, kind DESC`, args...)
		if err != nil {
			return nil, err
		}
		for _, e := range es {
			out[e.RunID] = append(out[e.RunID], e)
		}
		runIDs = runIDs[n:]
	}
	return out, nil
}

// KeptEvidence returns the evidence whose files are kept, oldest first.
func (db *DB) KeptEvidence(ctx context.Context) ([]Evidence, error) {
	return db.queryEvidence(ctx, `SELECT `+evidenceCols+` FROM evidence WHERE state = 'kept' ORDER BY updated_at, id`)
}

// EvidenceEndedBefore returns the evidence of runs that ended before t (the
// ledger's retention), whatever its state.
func (db *DB) EvidenceEndedBefore(ctx context.Context, t time.Time) ([]Evidence, error) {
	return db.queryEvidence(ctx, `SELECT `+evidenceCols+` FROM evidence WHERE ended_at < ? ORDER BY ended_at, id`, t.UnixMilli())
}

// DeleteEvidence deletes evidence rows (their files are the caller's).
func (db *DB) DeleteEvidence(ctx context.Context, ids []int64) error {
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: delete evidence: %w", err)
	}
	defer tx.Rollback()
	for _, id := range ids {
		if _, err := tx.ExecContext(ctx, `DELETE FROM evidence WHERE id = ?`, id); err != nil {
			return fmt.Errorf("store: delete evidence %d: %w", id, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: delete evidence: %w", err)
	}
	return nil
}

// FailedWithoutEvidence returns the failed runs of the given kind whose slot
// is at or after since and that have no evidence row: those a crash kept
// from being queued. It reads the runs_state index, so its cost is the
// number of failed runs in that span.
func (db *DB) FailedWithoutEvidence(ctx context.Context, kind string, since time.Time) ([]runnerd.Run, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT `+runColumns+` FROM runs r WHERE state = 'failed' AND nominal_time >= ?
		AND kind = ? AND NOT EXISTS (SELECT 1 FROM evidence e WHERE e.run_id = r.id) ORDER BY nominal_time`,
		since.UnixMilli(), kind)
	if err != nil {
		return nil, fmt.Errorf("store: failed runs without evidence: %w", err)
	}
	defer rows.Close()
	var out []runnerd.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("store: failed runs without evidence: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: failed runs without evidence: %w", err)
	}
	return out, nil
}

func (db *DB) queryEvidence(ctx context.Context, q string, args ...any) ([]Evidence, error) {
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		if db.readOnly && strings.Contains(err.Error(), "no such table: evidence") {
			return nil, nil // a ledger read-only before its 0006 migration: no evidence yet
		}
		return nil, fmt.Errorf("store: evidence: %w", err)
	}
	defer rows.Close()
	var out []Evidence
	for rows.Next() {
		var e Evidence
		var urlAt sql.NullInt64
		var next, ended, created, updated int64
		if err := rows.Scan(&e.ID, &e.RunID, &e.Job, &e.Kind, &e.ExecutionID, &e.Level, &e.State, &e.Reason, &e.URL,
			&urlAt, &e.Links, &e.Polls, &next, &ended, &e.Path, &e.Bytes, &e.SHA256, &created, &updated); err != nil {
			return nil, fmt.Errorf("store: evidence: %w", err)
		}
		e.URLAt = fromMS(urlAt)
		e.NextAt, e.EndedAt = time.UnixMilli(next).UTC(), time.UnixMilli(ended).UTC()
		e.CreatedAt, e.UpdatedAt = time.UnixMilli(created).UTC(), time.UnixMilli(updated).UTC()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: evidence: %w", err)
	}
	return out, nil
}

package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// Obligation kinds.
const (
	ObligationSchedule = "schedule" // re-enable a process's schedules on a runtime
	ObligationListener = "listener" // resume a listener on a runtime
)

// Obligation is a resume a release owes the platform: recorded before the
// pause is sent, done once the resume was accepted.
type Obligation struct {
	ID        int64
	RunID     int64
	Job       string
	Kind      string // ObligationSchedule or ObligationListener
	Container string // the runtime (atom) id
	ProcessID string // the process (schedule) or the listener process
	ObjectID  string // the ProcessScheduleStatus id (schedule)
	Open      bool
	Attempts  int
	Error     string
	CreatedAt time.Time
	DoneAt    time.Time
}

// OpenObligation records o as open and returns its id. It is committed when
// it returns: the pause it stands for may then be sent.
func (db *DB) OpenObligation(ctx context.Context, o Obligation) (int64, error) {
	var id int64
	err := db.writer.QueryRowContext(ctx, `INSERT INTO obligations (run_id, job, kind, container, process_id, object_id, state, created_at)
		VALUES (?, ?, ?, ?, ?, ?, 'open', ?) RETURNING id`, o.RunID, o.Job, o.Kind, o.Container, o.ProcessID, o.ObjectID,
		db.now().UTC().UnixMilli()).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: open obligation: %w", err)
	}
	return id, nil
}

// CloseObligation marks obligation id done.
func (db *DB) CloseObligation(ctx context.Context, id int64) error {
	_, err := db.writer.ExecContext(ctx, `UPDATE obligations SET state = 'done', done_at = ?, attempts = attempts + 1, error = ''
		WHERE id = ?`, db.now().UTC().UnixMilli(), id)
	if err != nil {
		return fmt.Errorf("store: close obligation %d: %w", id, err)
	}
	return nil
}

// ObligationFailed records a resume of obligation id that did not go; it stays open.
func (db *DB) ObligationFailed(ctx context.Context, id int64, why string) error {
	_, err := db.writer.ExecContext(ctx, `UPDATE obligations SET attempts = attempts + 1, error = ? WHERE id = ?`, excerpt(why), id)
	if err != nil {
		return fmt.Errorf("store: obligation %d: %w", id, err)
	}
	return nil
}

// OpenObligations returns the open obligations, of job only when job is not
// "", oldest first.
func (db *DB) OpenObligations(ctx context.Context, job string) ([]Obligation, error) {
	q := `SELECT id, run_id, job, kind, container, process_id, object_id, state, attempts, error, created_at, done_at
		FROM obligations WHERE state = 'open'`
	var args []any
	if job != "" {
		q, args = q+" AND job = ?", append(args, job)
	}
	rows, err := db.reader.QueryContext(ctx, q+" ORDER BY id", args...)
	if err != nil {
		if db.readOnly && strings.Contains(err.Error(), "no such table: obligations") {
			return nil, nil // a ledger read-only before its 0007 migration
		}
		return nil, fmt.Errorf("store: open obligations: %w", err)
	}
	defer rows.Close()
	var out []Obligation
	for rows.Next() {
		var o Obligation
		var state string
		var created int64
		var done sql.NullInt64
		if err := rows.Scan(&o.ID, &o.RunID, &o.Job, &o.Kind, &o.Container, &o.ProcessID, &o.ObjectID, &state, &o.Attempts,
			&o.Error, &created, &done); err != nil {
			return nil, fmt.Errorf("store: open obligations: %w", err)
		}
		o.Open, o.CreatedAt, o.DoneAt = state == "open", time.UnixMilli(created).UTC(), fromMS(done)
		out = append(out, o)
	}
	return out, rows.Err()
}

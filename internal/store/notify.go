package store

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"time"
)

// NotifyDelivery is the outcome of one notification at one target (or one
// batch of notifications a full queue dropped).
type NotifyDelivery struct {
	ID         int64
	Target     string
	EventID    string
	Event      string
	Job        string
	RunID      int64 // 0 = not about a run
	EventTime  time.Time
	FinishedAt time.Time
	Attempts   int
	Status     string // sent | failed | dropped
	HTTPStatus int
	Error      string // capped excerpt; never a URL or a secret
}

// NotifyFilter selects deliveries; zero fields select all.
type NotifyFilter struct {
	Target string
	Status string
	Since  time.Time // finished at or after
	Limit  int       // 0: no limit
}

// RecordNotifyDelivery stores d and returns its id. FinishedAt and EventTime
// default to Now().
func (db *DB) RecordNotifyDelivery(ctx context.Context, d NotifyDelivery) (int64, error) {
	now := db.now().UTC()
	if d.FinishedAt.IsZero() {
		d.FinishedAt = now
	}
	if d.EventTime.IsZero() {
		d.EventTime = d.FinishedAt
	}
	var id int64
	err := db.writer.QueryRowContext(ctx, `INSERT INTO notify_deliveries
		(target, event_id, event, job, run_id, event_time, finished_at, attempts, status, http_status, error)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id`,
		d.Target, d.EventID, d.Event, d.Job, nullID(d.RunID), d.EventTime.UnixMilli(), d.FinishedAt.UnixMilli(),
		d.Attempts, d.Status, d.HTTPStatus, excerpt(d.Error)).Scan(&id)
	if err != nil {
		return 0, fmt.Errorf("store: record notify delivery: %w", err)
	}
	return id, nil
}

// ListNotifyDeliveries returns the deliveries matching f, newest first.
func (db *DB) ListNotifyDeliveries(ctx context.Context, f NotifyFilter) ([]NotifyDelivery, error) {
	var where []string
	var args []any
	if f.Target != "" {
		where, args = append(where, "target = ?"), append(args, f.Target)
	}
	if f.Status != "" {
		where, args = append(where, "status = ?"), append(args, f.Status)
	}
	if !f.Since.IsZero() {
		where, args = append(where, "finished_at >= ?"), append(args, f.Since.UnixMilli())
	}
	q := `SELECT id, target, event_id, event, job, run_id, event_time, finished_at, attempts, status, http_status, error
		FROM notify_deliveries`
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY finished_at DESC, id DESC"
	if f.Limit > 0 {
		q, args = q+" LIMIT ?", append(args, f.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list notify deliveries: %w", err)
	}
	defer rows.Close()
	var out []NotifyDelivery
	for rows.Next() {
		var d NotifyDelivery
		var runID sql.NullInt64
		var at, fin int64
		if err := rows.Scan(&d.ID, &d.Target, &d.EventID, &d.Event, &d.Job, &runID, &at, &fin, &d.Attempts,
			&d.Status, &d.HTTPStatus, &d.Error); err != nil {
			return nil, fmt.Errorf("store: list notify deliveries: %w", err)
		}
		d.RunID = runID.Int64
		d.EventTime, d.FinishedAt = time.UnixMilli(at).UTC(), time.UnixMilli(fin).UTC()
		out = append(out, d)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list notify deliveries: %w", err)
	}
	return out, nil
}

// NotifyDeliveryCounts counts deliveries finished since the given time by
// target and status: counts[target][status].
func (db *DB) NotifyDeliveryCounts(ctx context.Context, since time.Time) (map[string]map[string]int, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT target, status, count(*) FROM notify_deliveries
		WHERE finished_at >= ? GROUP BY target, status`, since.UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: count notify deliveries: %w", err)
	}
	defer rows.Close()
	out := map[string]map[string]int{}
	for rows.Next() {
		var target, status string
		var n int
		if err := rows.Scan(&target, &status, &n); err != nil {
			return nil, fmt.Errorf("store: count notify deliveries: %w", err)
		}
		if out[target] == nil {
			out[target] = map[string]int{}
		}
		out[target][status] = n
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: count notify deliveries: %w", err)
	}
	return out, nil
}

// PruneNotifyDeliveries deletes deliveries finished more than olderThan ago.
func (db *DB) PruneNotifyDeliveries(ctx context.Context, olderThan time.Duration) (int64, error) {
	cut := db.now().Add(-olderThan).UnixMilli()
	res, err := db.writer.ExecContext(ctx, `DELETE FROM notify_deliveries WHERE finished_at < ?`, cut)
	if err != nil {
		return 0, fmt.Errorf("store: prune notify deliveries: %w", err)
	}
	return res.RowsAffected()
}

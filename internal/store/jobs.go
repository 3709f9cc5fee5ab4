package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"
)

// JobState returns what is persisted for job; the zero value (with Job set)
// if nothing is.
func (db *DB) JobState(ctx context.Context, job string) (JobState, error) {
	s, err := scanJobState(db.reader.QueryRowContext(ctx,
		`SELECT name, paused, last_nominal, watermark FROM jobs WHERE name = ?`, job))
	if errors.Is(err, sql.ErrNoRows) {
		return JobState{Job: job}, nil
	} else if err != nil {
		return JobState{}, fmt.Errorf("store: job state %q: %w", job, err)
	}
	return s, nil
}

// JobStates returns every job with persisted state, by name.
func (db *DB) JobStates(ctx context.Context) ([]JobState, error) {
	rows, err := db.reader.QueryContext(ctx, `SELECT name, paused, last_nominal, watermark FROM jobs ORDER BY name`)
	if err != nil {
		return nil, fmt.Errorf("store: job states: %w", err)
	}
	defer rows.Close()
	var out []JobState
	for rows.Next() {
		s, err := scanJobState(rows)
		if err != nil {
			return nil, fmt.Errorf("store: job states: %w", err)
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: job states: %w", err)
	}
	return out, nil
}

func scanJobState(s rowScanner) (JobState, error) {
	var js JobState
	var paused int
	var last, mark sql.NullInt64
	if err := s.Scan(&js.Job, &paused, &last, &mark); err != nil {
		return JobState{}, err
	}
	js.Paused = paused != 0
	js.LastNominal, js.Watermark = fromMS(last), fromMS(mark)
	return js, nil
}

// SetPaused persists whether job is paused.
func (db *DB) SetPaused(ctx context.Context, job string, paused bool) error {
	return db.setJob(ctx, "set paused", job, `INSERT INTO jobs (name, paused, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (name) DO UPDATE SET paused = ?2, updated_at = ?3`, boolInt(paused))
}

// SetLastNominal records t as the last slot handled for job. It only moves
// forward: an earlier t leaves the stored value as it is.
func (db *DB) SetLastNominal(ctx context.Context, job string, t time.Time) error {
	if t.IsZero() {
		return fmt.Errorf("store: set last nominal %q: zero time", job)
	}
	return db.setJob(ctx, "set last nominal", job, qSetLastNominal, t.UnixMilli())
}

var qSetLastNominal = pgQuery(`INSERT INTO jobs (name, last_nominal, updated_at) VALUES (?1, ?2, ?3)
	ON CONFLICT (name) DO UPDATE SET last_nominal = max(COALESCE(last_nominal, ?2), ?2), updated_at = ?3`,
	`INSERT INTO jobs (name, last_nominal, updated_at) VALUES ($1, $2, $3)
	ON CONFLICT (name) DO UPDATE SET last_nominal = GREATEST(COALESCE(jobs.last_nominal, $2), $2), updated_at = $3`)

// SetLastNominals is SetLastNominal for many jobs in one transaction (one
// fsync): the daemon's start-up records every job's last slot with it. Each
// value only moves forward, as with SetLastNominal. An empty map writes
// nothing.
func (db *DB) SetLastNominals(ctx context.Context, last map[string]time.Time) error {
	if len(last) == 0 {
		return nil
	}
	names := make([]string, 0, len(last))
	for job, t := range last {
		if job == "" {
			return fmt.Errorf("store: set last nominals: empty job name")
		}
		if t.IsZero() {
			return fmt.Errorf("store: set last nominals %q: zero time", job)
		}
		names = append(names, job)
	}
	sort.Strings(names) // a deterministic write order
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: set last nominals: %w", err)
	}
	defer tx.Rollback()
	for _, job := range names {
		if _, err := tx.exec(ctx, qSetLastNominal, job, last[job].UnixMilli(), tx.now.UnixMilli()); err != nil {
			return fmt.Errorf("store: set last nominals %q: %w", job, err)
		}
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: set last nominals: %w", err)
	}
	return nil
}

// SetWatermark records the end of job's last export window safely on disk.
// Unlike SetLastNominal it may move back (a re-export from an earlier point).
func (db *DB) SetWatermark(ctx context.Context, job string, t time.Time) error {
	return db.setJob(ctx, "set watermark", job, `INSERT INTO jobs (name, watermark, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (name) DO UPDATE SET watermark = ?2, updated_at = ?3`, ms(t))
}

func (db *DB) setJob(ctx context.Context, op, job, q string, v any) error {
	if job == "" {
		return fmt.Errorf("store: %s: empty job name", op)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: %s %q: %w", op, job, err)
	}
	defer tx.Rollback()
	if _, err := tx.exec(ctx, q, job, v, tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("store: %s %q: %w", op, job, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: %s %q: %w", op, job, err)
	}
	return nil
}

// SetMeta stores value under key, replacing any previous value.
func (db *DB) SetMeta(ctx context.Context, key, value string) error {
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: set meta %q: %w", key, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO meta (key, value, updated_at) VALUES (?1, ?2, ?3)
		ON CONFLICT (key) DO UPDATE SET value = ?2, updated_at = ?3`, key, value, tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("store: set meta %q: %w", key, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: set meta %q: %w", key, err)
	}
	return nil
}

// Meta returns the value stored under key, or ErrNotFound.
func (db *DB) Meta(ctx context.Context, key string) (string, error) {
	var v string
	err := db.reader.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, key).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", fmt.Errorf("store: meta %q: %w", key, ErrNotFound)
	} else if err != nil {
		return "", fmt.Errorf("store: meta %q: %w", key, err)
	}
	return v, nil
}

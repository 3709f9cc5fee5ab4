package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"
)

// ErrLeaseLost is BeginCall's refusal on a shared ledger when the call's job
// is not leased to the calling instance (any more): another instance runs
// the job now, and this one must not send anything for it. Nothing was
// recorded.
var ErrLeaseLost = errors.New("store: this instance does not hold the job's lease")

// qServerMS is the server's clock in unix milliseconds: every lease time
// is the server's, so that instances whose clocks differ agree.
const qServerMS = `(extract(epoch FROM clock_timestamp()) * 1000)::bigint`

// Instance is one runnerd on a shared ledger.
type Instance struct {
	Name, Host  string
	PID         int
	StartedAt   time.Time
	HeartbeatAt time.Time
	StoppedAt   time.Time // zero while it runs (or after a kill)
	Leases      int       // jobs it holds
	Calls       int       // calls it began in the last 24 hours
}

// Lease is who runs a job until when.
type Lease struct {
	Job, Instance string
	AcquiredAt    time.Time
	ExpiresAt     time.Time
}

// Heartbeat records that instance lives, renews its leases on the jobs of
// want for lease, gives up those it holds outside want (jobs no longer
// configured), takes every job of want whose lease is free or ran out, and
// returns the jobs it holds now, sorted. One transaction; the server's clock.
func (db *DB) Heartbeat(ctx context.Context, in Instance, want []string, lease time.Duration) ([]string, error) {
	if !db.pg {
		return nil, fmt.Errorf("store: heartbeat: %w", errors.ErrUnsupported)
	}
	t, err := db.begin(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	defer t.Rollback()
	var now int64
	if err := t.QueryRowContext(ctx, `SELECT `+qServerMS).Scan(&now); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	until := now + lease.Milliseconds()
	if _, err := t.ExecContext(ctx, `INSERT INTO instances (name, host, pid, started_at, heartbeat_at) VALUES (?1, ?2, ?3, ?4, ?4)
		ON CONFLICT (name) DO UPDATE SET host = ?2, pid = ?3, heartbeat_at = ?4, stopped_at = NULL,
			started_at = CASE WHEN instances.pid = ?3 THEN instances.started_at ELSE ?4 END`,
		in.Name, in.Host, in.PID, now); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	if want == nil {
		want = []string{}
	}
	if _, err := t.ExecContext(ctx, `DELETE FROM leases WHERE instance = ?1 AND NOT (job = ANY(?2))`, in.Name, want); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	if _, err := t.ExecContext(ctx, `INSERT INTO leases (job, instance, acquired_at, expires_at)
		SELECT j, ?1, ?2, ?3 FROM unnest(CAST(?4 AS TEXT[])) j
		ON CONFLICT (job) DO UPDATE SET instance = excluded.instance, expires_at = excluded.expires_at,
			acquired_at = CASE WHEN leases.instance = excluded.instance THEN leases.acquired_at ELSE excluded.acquired_at END
		WHERE leases.instance = excluded.instance OR leases.expires_at < ?2`, in.Name, now, until, want); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	rows, err := t.QueryContext(ctx, `SELECT job FROM leases WHERE instance = ? ORDER BY job`, in.Name)
	if err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	var held []string
	for rows.Next() {
		var j string
		if err := rows.Scan(&j); err != nil {
			rows.Close()
			return nil, fmt.Errorf("store: heartbeat: %w", err)
		}
		held = append(held, j)
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	if err := t.Commit(); err != nil {
		return nil, fmt.Errorf("store: heartbeat: %w", err)
	}
	return held, nil
}

// ReleaseLeases gives up every lease of instance and marks it stopped: a
// clean stop, after which another instance takes its jobs at its next
// heartbeat instead of waiting for the leases to run out.
func (db *DB) ReleaseLeases(ctx context.Context, instance string) error {
	if !db.pg {
		return nil
	}
	t, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: release leases: %w", err)
	}
	defer t.Rollback()
	if _, err := t.ExecContext(ctx, `DELETE FROM leases WHERE instance = ?`, instance); err != nil {
		return fmt.Errorf("store: release leases: %w", err)
	}
	if _, err := t.ExecContext(ctx, `UPDATE instances SET stopped_at = `+qServerMS+` WHERE name = ?`, instance); err != nil {
		return fmt.Errorf("store: release leases: %w", err)
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("store: release leases: %w", err)
	}
	return nil
}

// checkLease refuses, inside BeginCall's transaction, a call for job by an
// instance that does not hold the job's lease now.
func checkLease(ctx context.Context, tx *tx, job, instance string) error {
	var holder string
	var live bool
	err := tx.QueryRowContext(ctx, `SELECT instance, expires_at > `+qServerMS+` FROM leases WHERE job = ?`, job).Scan(&holder, &live)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return fmt.Errorf("%w: no instance holds job %q", ErrLeaseLost, job)
	case err != nil:
		return err
	case holder != instance:
		return fmt.Errorf("%w: job %q is held by instance %q", ErrLeaseLost, job, holder)
	case !live:
		return fmt.Errorf("%w: the lease on job %q ran out (no heartbeat reached the ledger in time)", ErrLeaseLost, job)
	}
	return nil
}

// Leases returns every job's lease, by job.
func (db *DB) Leases(ctx context.Context) ([]Lease, error) {
	if !db.pg {
		return nil, nil
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT job, instance, acquired_at, expires_at FROM leases ORDER BY job`)
	if err != nil {
		return nil, fmt.Errorf("store: leases: %w", err)
	}
	defer rows.Close()
	var out []Lease
	for rows.Next() {
		var l Lease
		var a, e int64
		if err := rows.Scan(&l.Job, &l.Instance, &a, &e); err != nil {
			return nil, fmt.Errorf("store: leases: %w", err)
		}
		l.AcquiredAt, l.ExpiresAt = time.UnixMilli(a).UTC(), time.UnixMilli(e).UTC()
		out = append(out, l)
	}
	return out, rows.Err()
}

// Instances returns the instances that use the ledger, with the leases they
// hold and the calls they began in the 24 hours before now (the share of the
// window each spends).
func (db *DB) Instances(ctx context.Context, now time.Time) ([]Instance, error) {
	if !db.pg {
		return nil, nil
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT i.name, i.host, i.pid, i.started_at, i.heartbeat_at, i.stopped_at,
			(SELECT count(*) FROM leases l WHERE l.instance = i.name),
			(SELECT count(*) FROM calls c WHERE c.instance = i.name AND c.started_at >= ?)
		FROM instances i ORDER BY i.name`, now.Add(-24*time.Hour).UnixMilli())
	if err != nil {
		return nil, fmt.Errorf("store: instances: %w", err)
	}
	defer rows.Close()
	var out []Instance
	for rows.Next() {
		var in Instance
		var s, h int64
		var stopped sql.NullInt64
		if err := rows.Scan(&in.Name, &in.Host, &in.PID, &s, &h, &stopped, &in.Leases, &in.Calls); err != nil {
			return nil, fmt.Errorf("store: instances: %w", err)
		}
		in.StartedAt, in.HeartbeatAt = time.UnixMilli(s).UTC(), time.UnixMilli(h).UTC()
		if stopped.Valid {
			in.StoppedAt = time.UnixMilli(stopped.Int64).UTC()
		}
		out = append(out, in)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, rows.Err()
}

// PublishDemand replaces instance's published look-ahead with runs (a JSON
// list the engine writes and reads; see migrations/postgres/0010).
func (db *DB) PublishDemand(ctx context.Context, instance, runs string) error {
	if !db.pg {
		return nil
	}
	if _, err := db.writer.ExecContext(ctx, `INSERT INTO demand (instance, runs, updated_at) VALUES (?1, ?2, `+qServerMS+`)
		ON CONFLICT (instance) DO UPDATE SET runs = ?2, updated_at = excluded.updated_at`, instance, runs); err != nil {
		return fmt.Errorf("store: publish demand: %w", err)
	}
	return nil
}

// OthersDemand returns the look-aheads the other instances published within
// fresh (by the server's clock), by instance.
func (db *DB) OthersDemand(ctx context.Context, instance string, fresh time.Duration) (map[string]string, error) {
	if !db.pg {
		return nil, nil
	}
	rows, err := db.reader.QueryContext(ctx, `SELECT instance, runs FROM demand WHERE instance <> ? AND updated_at > `+qServerMS+` - ?`,
		instance, fresh.Milliseconds())
	if err != nil {
		return nil, fmt.Errorf("store: others' demand: %w", err)
	}
	defer rows.Close()
	out := map[string]string{}
	for rows.Next() {
		var in, runs string
		if err := rows.Scan(&in, &runs); err != nil {
			return nil, fmt.Errorf("store: others' demand: %w", err)
		}
		out[in] = runs
	}
	return out, rows.Err()
}

// LookupInstance returns the row of instance name, whether there is one,
// and the server's clock now (to judge how fresh its heartbeat is).
func (db *DB) LookupInstance(ctx context.Context, name string) (in Instance, now time.Time, found bool, err error) {
	if !db.pg {
		return in, now, false, nil
	}
	var s, h, n int64
	var stopped sql.NullInt64
	err = db.reader.QueryRowContext(ctx, `SELECT i.name, i.host, i.pid, i.started_at, i.heartbeat_at, i.stopped_at, `+qServerMS+`
		FROM instances i WHERE i.name = ?`, name).Scan(&in.Name, &in.Host, &in.PID, &s, &h, &stopped, &n)
	if errors.Is(err, sql.ErrNoRows) {
		var now int64
		if err := db.reader.QueryRowContext(ctx, `SELECT `+qServerMS).Scan(&now); err != nil {
			return in, time.Time{}, false, fmt.Errorf("store: instance %q: %w", name, err)
		}
		return in, time.UnixMilli(now).UTC(), false, nil
	}
	if err != nil {
		return in, now, false, fmt.Errorf("store: instance %q: %w", name, err)
	}
	in.StartedAt, in.HeartbeatAt = time.UnixMilli(s).UTC(), time.UnixMilli(h).UTC()
	if stopped.Valid {
		in.StoppedAt = time.UnixMilli(stopped.Int64).UTC()
	}
	return in, time.UnixMilli(n).UTC(), true, nil
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"runnerd"
)

const runColumns = `id, job, kind, nominal_time, state, reason, not_before, estimate, calls, attempt,
	started_at, finished_at, error, detail`

type rowScanner interface{ Scan(dest ...any) error }

func scanRun(s rowScanner) (runnerd.Run, error) {
	var r runnerd.Run
	var state string
	var nominal int64
	var notBefore, started, finished sql.NullInt64
	if err := s.Scan(&r.ID, &r.Job, &r.Kind, &nominal, &state, &r.Reason, &notBefore, &r.Estimate, &r.Calls,
		&r.Attempt, &started, &finished, &r.Error, &r.Detail); err != nil {
		return runnerd.Run{}, err
	}
	r.State = runnerd.RunState(state)
	r.NominalTime = time.UnixMilli(nominal).UTC()
	r.NotBefore, r.StartedAt, r.FinishedAt = fromMS(notBefore), fromMS(started), fromMS(finished)
	return r, nil
}

// CreateRun stores a new run for (r.Job, r.NominalTime) and returns it with
// created=true. If that slot already has a run, nothing is written and the
// existing run is returned with created=false: a slot can never be started
// twice. State defaults to planned; r.ID and r.Calls are ignored.
func (db *DB) CreateRun(ctx context.Context, r runnerd.Run) (runnerd.Run, bool, error) {
	if r.Job == "" || r.NominalTime.IsZero() {
		return runnerd.Run{}, false, fmt.Errorf("store: create run: job %q at %v: need a job and a nominal time", r.Job, r.NominalTime)
	}
	if r.State == "" {
		r.State = runnerd.StatePlanned
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return runnerd.Run{}, false, fmt.Errorf("store: create run %q: %w", r.Job, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `INSERT INTO runs
		(job, kind, nominal_time, state, reason, not_before, estimate, calls, attempt,
		 started_at, finished_at, error, detail, created_at, updated_at)
		VALUES (?, ?, ?, ?, ?, ?, ?, 0, ?, ?, ?, ?, ?, ?, ?)
		ON CONFLICT (job, nominal_time) DO NOTHING`,
		r.Job, r.Kind, r.NominalTime.UnixMilli(), string(r.State), r.Reason, ms(r.NotBefore), r.Estimate, r.Attempt,
		ms(r.StartedAt), ms(r.FinishedAt), r.Error, r.Detail, tx.now.UnixMilli(), tx.now.UnixMilli())
	if err != nil {
		return runnerd.Run{}, false, fmt.Errorf("store: create run %q: %w", r.Job, err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return runnerd.Run{}, false, fmt.Errorf("store: create run %q: %w", r.Job, err)
	}
	stored, err := scanRun(tx.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE job = ? AND nominal_time = ?`,
		r.Job, r.NominalTime.UnixMilli()))
	if err != nil {
		return runnerd.Run{}, false, fmt.Errorf("store: create run %q: %w", r.Job, err)
	}
	if err := tx.Commit(); err != nil {
		return runnerd.Run{}, false, fmt.Errorf("store: create run %q: %w", r.Job, err)
	}
	return stored, n == 1, nil
}

// UpdateRun writes the mutable fields of run r.ID: State, Reason, NotBefore,
// Estimate, Attempt, StartedAt, FinishedAt, Error and Detail. Job, Kind and
// NominalTime are the run's identity and are not changed. Calls is not
// written either: it is kept in step with the ledger by BeginCall, and a
// caller's copy may be stale.
func (db *DB) UpdateRun(ctx context.Context, r runnerd.Run) error {
	if r.State == "" {
		return fmt.Errorf("store: update run %d: empty state", r.ID)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: update run %d: %w", r.ID, err)
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, `UPDATE runs SET state = ?, reason = ?, not_before = ?, estimate = ?,
		attempt = ?, started_at = ?, finished_at = ?, error = ?, detail = ?, updated_at = ? WHERE id = ?`,
		string(r.State), r.Reason, ms(r.NotBefore), r.Estimate, r.Attempt, ms(r.StartedAt), ms(r.FinishedAt),
		r.Error, r.Detail, tx.now.UnixMilli(), r.ID)
	if err != nil {
		return fmt.Errorf("store: update run %d: %w", r.ID, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("store: update run %d: %w", r.ID, err)
	} else if n == 0 {
		return fmt.Errorf("store: update run %d: %w", r.ID, ErrNotFound)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: update run %d: %w", r.ID, err)
	}
	return nil
}

// GetRun returns run id, or ErrNotFound.
func (db *DB) GetRun(ctx context.Context, id int64) (runnerd.Run, error) {
	r, err := scanRun(db.reader.QueryRowContext(ctx, `SELECT `+runColumns+` FROM runs WHERE id = ?`, id))
	if errors.Is(err, sql.ErrNoRows) {
		return runnerd.Run{}, fmt.Errorf("store: run %d: %w", id, ErrNotFound)
	} else if err != nil {
		return runnerd.Run{}, fmt.Errorf("store: run %d: %w", id, err)
	}
	return r, nil
}

// RunByNominal returns the run of job for the slot nominal, or ErrNotFound.
func (db *DB) RunByNominal(ctx context.Context, job string, nominal time.Time) (runnerd.Run, error) {
	r, err := scanRun(db.reader.QueryRowContext(ctx,
		`SELECT `+runColumns+` FROM runs WHERE job = ? AND nominal_time = ?`, job, nominal.UnixMilli()))
	if errors.Is(err, sql.ErrNoRows) {
		return runnerd.Run{}, fmt.Errorf("store: run %q at %s: %w", job, nominal.UTC().Format(time.RFC3339), ErrNotFound)
	} else if err != nil {
		return runnerd.Run{}, fmt.Errorf("store: run %q at %s: %w", job, nominal.UTC().Format(time.RFC3339), err)
	}
	return r, nil
}

// RunFilter selects runs for ListRuns. Zero fields do not filter.
type RunFilter struct {
	Job    string
	States []runnerd.RunState
	Since  time.Time // nominal time at or after
	Limit  int       // 0: no limit
}

// ListRuns returns the runs matching f, newest nominal time first.
func (db *DB) ListRuns(ctx context.Context, f RunFilter) ([]runnerd.Run, error) {
	var where []string
	var args []any
	if f.Job != "" {
		where, args = append(where, "job = ?"), append(args, f.Job)
	}
	if len(f.States) > 0 {
		marks := strings.TrimSuffix(strings.Repeat("?, ", len(f.States)), ", ")
		where = append(where, "state IN ("+marks+")")
		for _, s := range f.States {
			args = append(args, string(s))
		}
	}
	if !f.Since.IsZero() {
		where, args = append(where, "nominal_time >= ?"), append(args, f.Since.UnixMilli())
	}
	q := "SELECT " + runColumns + " FROM runs"
	if len(where) > 0 {
		q += " WHERE " + strings.Join(where, " AND ")
	}
	q += " ORDER BY nominal_time DESC, id DESC"
	if f.Limit > 0 {
		q, args = q+" LIMIT ?", append(args, f.Limit)
	}
	rows, err := db.reader.QueryContext(ctx, q, args...)
	if err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	defer rows.Close()
	var out []runnerd.Run
	for rows.Next() {
		r, err := scanRun(rows)
		if err != nil {
			return nil, fmt.Errorf("store: list runs: %w", err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("store: list runs: %w", err)
	}
	return out, nil
}

// JobHistory is what the estimator reads of one job's runs.
type JobHistory struct {
	// Costs is the normal cost of the job's most recent finished runs
	// (succeeded or failed), newest nominal time first: a run's calls less
	// those the platform answered 503 or 429. A rate-limit storm's refusals
	// and the retries they cause are not what the job costs (they are in the
	// ledger and the window as usual), and counting them would inflate the
	// estimate until the planner deferred everything. The retry that
	// succeeded is counted: it is the call the run needed.
	Costs []int
	// Durations is how long those runs took from start to finish, newest
	// first (runs without both times left out): what the planner spreads a
	// run's estimate over.
	Durations []time.Duration
	// OldestDeferred is the nominal time of the job's oldest deferred run;
	// zero if none.
	OldestDeferred time.Time
}

// HistoryRuns is how many of a job's latest finished runs JobHistory reads.
const HistoryRuns = 20

// qJobHistory reads a JobHistory in one statement: a first row with the
// oldest deferred run, then the last HistoryRuns finished runs, newest
// first, both through the (job, nominal_time) key.
//
// It is written so that go-sqlite3 can reuse the prepared statement: its
// driver clears the bindings before each run, which makes SQLite prepare
// again any statement whose plan looked at a bound value — a LIMIT ?, or a
// "col = ?" that some candidate index would only filter on. Hence the
// literal LIMIT, CAST(?1 AS TEXT) (a constant SQLite does not inspect, still
// used by the index) and +state (no index on state considered). Written
// plainly it was re-parsed at every call: ~60 µs instead of ~10, 1,000 times
// as the daemon starts with 1,000 jobs.
//
// PostgreSQL's text orders the rows explicitly (a UNION ALL's order is not
// promised there) and needs none of the tricks.
var qJobHistory = pgQuery(`SELECT min(nominal_time), NULL, NULL FROM runs WHERE job = CAST(?1 AS TEXT) AND +state = 'deferred'
	UNION ALL
	SELECT * FROM (SELECT NULL,
			r.calls - (SELECT count(*) FROM calls c WHERE c.run_id = r.id AND c.status IN (429, 503)),
			r.finished_at - r.started_at
		FROM runs r WHERE r.job = CAST(?1 AS TEXT) AND +r.state IN ('succeeded', 'failed')
		ORDER BY r.nominal_time DESC, r.id DESC LIMIT `+strconv.Itoa(HistoryRuns)+`)`,
	`SELECT oldest, cost, took FROM (
		SELECT 0 AS part, 0::bigint AS n, min(nominal_time) AS oldest, NULL::bigint AS cost, NULL::bigint AS took
		FROM runs WHERE job = $1 AND state = 'deferred'
		UNION ALL
		(SELECT 1, row_number() OVER (ORDER BY r.nominal_time DESC, r.id DESC), NULL,
			r.calls - (SELECT count(*) FROM calls c WHERE c.run_id = r.id AND c.status IN (429, 503)),
			r.finished_at - r.started_at
		FROM runs r WHERE r.job = $1 AND r.state IN ('succeeded', 'failed')
		ORDER BY r.nominal_time DESC, r.id DESC LIMIT `+strconv.Itoa(HistoryRuns)+`)) h ORDER BY part, n`)

// JobHistory returns job's oldest deferred run and the costs and durations
// of its last n finished runs (n at most HistoryRuns), in one query through a
// statement prepared once: the daemon estimates every job when it loads its
// configuration, so 1,000 jobs cost 1,000 short queries.
func (db *DB) JobHistory(ctx context.Context, job string, n int) (JobHistory, error) {
	var h JobHistory
	db.historyOnce.Do(func() { db.history, db.historyErr = db.reader.PrepareContext(context.WithoutCancel(ctx), qJobHistory) })
	if db.historyErr != nil {
		return h, fmt.Errorf("store: history of %q: %w", job, db.historyErr)
	}
	n = min(max(n, 0), HistoryRuns)
	rows, err := db.history.QueryContext(ctx, job)
	if err != nil {
		return h, fmt.Errorf("store: history of %q: %w", job, err)
	}
	defer rows.Close()
	for rows.Next() {
		var oldest, cost, took sql.NullInt64
		if err := rows.Scan(&oldest, &cost, &took); err != nil {
			return JobHistory{}, fmt.Errorf("store: history of %q: %w", job, err)
		}
		if oldest.Valid {
			h.OldestDeferred = fromMS(oldest)
		}
		if !cost.Valid || len(h.Costs) == n {
			continue
		}
		h.Costs = append(h.Costs, int(cost.Int64))
		if took.Valid {
			h.Durations = append(h.Durations, time.Duration(max(took.Int64, 0))*time.Millisecond)
		}
	}
	if err := rows.Err(); err != nil {
		return JobHistory{}, fmt.Errorf("store: history of %q: %w", job, err)
	}
	return h, nil
}

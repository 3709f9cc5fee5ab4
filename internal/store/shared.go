package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// ErrWindowFull is BeginCall's refusal on a shared (PostgreSQL) ledger: the
// call would take some rolling 24-hour window of the account beyond
// Call.Limit, counting every instance's calls. Nothing was recorded.
var ErrWindowFull = errors.New("store: the shared rolling window is full")

// pgBudgetLock is the advisory lock (pg_advisory_xact_lock) BeginCall holds
// on a shared ledger while it checks the window and inserts the row: the
// check and the insert are one step across every instance.
const pgBudgetLock = 0x72756e6e627564 // "runnbud"

// checkWindow refuses, on a shared ledger, a call that would take a window
// beyond limit: every window a call begun at hour h is counted in (h's
// through the one 23 hours later) is summed from the hourly rollup, which
// every instance keeps in the same transaction as its rows. It is called
// inside BeginCall's transaction, after the advisory lock.
func checkWindow(ctx context.Context, tx *tx, at time.Time, limit int) error {
	const hour = int64(time.Hour / time.Millisecond)
	const windowHours = 24
	h := hourMS(at)
	rows, err := tx.QueryContext(ctx, `SELECT hour, calls FROM hourly_usage WHERE hour > ? AND hour < ?`,
		h-windowHours*hour, h+windowHours*hour)
	if err != nil {
		return err
	}
	counts := map[int64]int{}
	for rows.Next() {
		var hr int64
		var n int
		if err := rows.Scan(&hr, &n); err != nil {
			rows.Close()
			return err
		}
		counts[hr] = n
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return err
	}
	worst := 0
	for k := int64(0); k < windowHours; k++ {
		end := h + k*hour
		sum := 0
		for j := int64(0); j < windowHours; j++ {
			sum += counts[end-j*hour]
		}
		worst = max(worst, sum)
	}
	if worst+1 > limit {
		return fmt.Errorf("%w: %d of %d calls used in the fullest window that a call begun at %s counts in",
			ErrWindowFull, worst, limit, time.UnixMilli(h).UTC().Format("15:04"))
	}
	return nil
}

// RateState is the shared rate limiter's log (budget.RateState in unix
// milliseconds).
type RateState struct {
	LastSched, LastStart int64
	Starts               []int64
}

// UpdateRateState runs fn on the shared rate limiter's log with its row
// locked, and writes the log back if fn returns true: one start handed out
// at a time across every instance. Only a PostgreSQL ledger has one.
func (db *DB) UpdateRateState(ctx context.Context, fn func(*RateState) bool) error {
	if !db.pg {
		return fmt.Errorf("store: rate state: %w", errors.ErrUnsupported)
	}
	t, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: rate state: %w", err)
	}
	defer t.Rollback()
	var st RateState
	var starts string
	if err := t.QueryRowContext(ctx, `SELECT last_sched, last_start, starts FROM rate_state WHERE id = 1 FOR UPDATE`).
		Scan(&st.LastSched, &st.LastStart, &starts); err != nil {
		return fmt.Errorf("store: rate state: %w", err)
	}
	for _, f := range strings.Split(starts, ",") {
		if v, err := strconv.ParseInt(f, 10, 64); err == nil {
			st.Starts = append(st.Starts, v)
		}
	}
	if !fn(&st) {
		return nil
	}
	parts := make([]string, len(st.Starts))
	for i, v := range st.Starts {
		parts[i] = strconv.FormatInt(v, 10)
	}
	if _, err := t.ExecContext(ctx, `UPDATE rate_state SET last_sched = ?, last_start = ?, starts = ?, updated_at = ? WHERE id = 1`,
		st.LastSched, st.LastStart, strings.Join(parts, ","), t.now.UnixMilli()); err != nil {
		return fmt.Errorf("store: rate state: %w", err)
	}
	if err := t.Commit(); err != nil {
		return fmt.Errorf("store: rate state: %w", err)
	}
	return nil
}

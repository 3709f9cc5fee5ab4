package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// ErrClaimed is returned by Claim when another run holds the platform object.
var ErrClaimed = errors.New("store: claimed by another run")

// Claim records that run runID is satisfied by the platform object id (an
// executionId or a deploymentId) of the given kind. An object can satisfy
// only one run: claiming it again for the same run is a no-op, for another
// run ErrClaimed (wrapped with the holder's id).
func (db *DB) Claim(ctx context.Context, id, kind string, runID int64) error {
	if id == "" || runID == 0 {
		return fmt.Errorf("store: claim %q for run %d: need an id and a run", id, runID)
	}
	tx, err := db.begin(ctx)
	if err != nil {
		return fmt.Errorf("store: claim %q: %w", id, err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, `INSERT INTO claims (platform_id, kind, run_id, claimed_at) VALUES (?, ?, ?, ?)
		ON CONFLICT (platform_id) DO NOTHING`, id, kind, runID, tx.now.UnixMilli()); err != nil {
		return fmt.Errorf("store: claim %q: %w", id, err)
	}
	var holder int64
	if err := tx.QueryRowContext(ctx, `SELECT run_id FROM claims WHERE platform_id = ?`, id).Scan(&holder); err != nil {
		return fmt.Errorf("store: claim %q: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("store: claim %q: %w", id, err)
	}
	if holder != runID {
		return fmt.Errorf("store: claim %q for run %d: %w %d", id, runID, ErrClaimed, holder)
	}
	return nil
}

// ClaimedBy returns the run holding the claim on id, or 0 if none does.
func (db *DB) ClaimedBy(ctx context.Context, id string) (int64, error) {
	var holder int64
	err := db.reader.QueryRowContext(ctx, `SELECT run_id FROM claims WHERE platform_id = ?`, id).Scan(&holder)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("store: claim %q: %w", id, err)
	}
	return holder, nil
}

package engine

// One budget spender per ledger: whoever spends the account's rate and
// allowance through a ledger holds an exclusive flock beside the database, so
// two processes (the daemon and a `runnerd run`, two daemons on one file) never
// spend without knowing of each other.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"
	"time"
)

// ErrLocked: another process holds the spender lock.
var ErrLocked = errors.New("another runnerd process is spending this account's budget (the lock beside the database is held)")

// SpenderLock is the exclusive lock held by whoever spends the budget.
type SpenderLock struct{ f *os.File }

// LockPath is the spender lock's file for the database at dbPath.
func LockPath(dbPath string) string { return dbPath + ".lock" }

// AcquireLock takes the spender lock. With wait, it blocks until the holder
// lets go (or ctx ends); without, it fails at once with ErrLocked.
func AcquireLock(ctx context.Context, dbPath string, wait bool) (*SpenderLock, error) {
	path := LockPath(dbPath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &SpenderLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !wait {
			f.Close()
			return nil, ErrLocked
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Release lets the lock go; it is safe on nil and more than once.
func (l *SpenderLock) Release() {
	if l != nil && l.f != nil {
		syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
		l.f = nil
	}
}

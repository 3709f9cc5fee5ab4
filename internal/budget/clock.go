package budget

import (
	"context"
	"time"

	"runnerd"
)

// Clock is the time source of the Gate: tests give a fake one, or run the real
// one inside a testing/synctest bubble.
type Clock interface {
	Now() time.Time
	// Sleep waits for d, or until ctx is done, and then returns ctx.Err().
	Sleep(ctx context.Context, d time.Duration) error
}

// RealClock returns the wall clock.
func RealClock() Clock { return realClock{} }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }

func (realClock) Sleep(ctx context.Context, d time.Duration) error { return runnerd.Sleep(ctx, d) }

package scheduler

import (
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// slotRecorder is the schedule cron sees for one job. cron does not tell a job
// which slot it fires for (and sets Entry.Prev after starting the job's
// goroutine), so the recorder keeps every time it hands to cron, in order: the
// n-th fire of an entry is for the n-th time Next returned.
type slotRecorder struct {
	sched cron.Schedule

	mu      sync.Mutex
	pending []time.Time
}

// maxPending bounds the recorder's queue; cron has at most one time pending per
// entry, so more means fires were lost (cron stopped) and the oldest are stale.
const maxPending = 8

// Next implements cron.Schedule.
func (r *slotRecorder) Next(t time.Time) time.Time {
	n := r.sched.Next(t)
	if n.IsZero() {
		return n
	}
	r.mu.Lock()
	if len(r.pending) >= maxPending {
		r.pending = r.pending[1:]
	}
	r.pending = append(r.pending, n)
	r.mu.Unlock()
	return n
}

// take returns the slot of the fire that is starting: the oldest time handed to
// cron. ok is false if cron fired without one (which it does not do).
func (r *slotRecorder) take() (slot time.Time, ok bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.pending) == 0 {
		return time.Time{}, false
	}
	slot = r.pending[0]
	r.pending = r.pending[1:]
	return slot, true
}

// slotsBetween returns the slots in (after, until], oldest first. When there
// are more than limit, it returns the newest limit of them and how many older
// ones it dropped.
func slotsBetween(s cron.Schedule, after, until time.Time, limit int) (slots []time.Time, dropped int) {
	for t := s.Next(after); !t.IsZero() && !t.After(until); t = s.Next(t) {
		if len(slots) == limit {
			// Shift rather than grow: a ring is not worth it for a rare path.
			copy(slots, slots[1:])
			slots = slots[:limit-1]
			dropped++
		}
		slots = append(slots, t)
	}
	return slots, dropped
}

// describeSlot formats a slot for reasons and logs: RFC 3339 in UTC.
func describeSlot(t time.Time) string { return t.UTC().Format(time.RFC3339) }

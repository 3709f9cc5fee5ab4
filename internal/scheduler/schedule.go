package scheduler

import (
	"fmt"
	"sync"
	"time"

	"github.com/robfig/cron/v3"
)

// ParseSchedule parses a job's schedule: a 5-field cron spec or a descriptor
// (@daily, @hourly, @every 10m), as cron.ParseStandard reads it, in the zone
// loc (UTC if nil) unless the spec names its own with "CRON_TZ=<zone> ".
//
// Specs in a zone with daylight saving time are read as wall-clock times, the
// way Vixie cron does: a slot whose wall time does not exist (the hour skipped
// when clocks go forward) runs once, at the same wall-clock distance after the
// change (02:30 → 03:30); a wall time that happens twice (the hour repeated
// when clocks go back) runs once, at its first occurrence. robfig/cron alone
// would drop the first and, for some specs, fire the second twice. @every
// schedules are durations of real time and ignore zones.
func ParseSchedule(spec string, loc *time.Location) (_ cron.Schedule, err error) {
	// robfig/cron v3.0.1 panics on some malformed specs ("TZ=" with no
	// space): a bad line in jobs.toml must be an error, not a crash.
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("malformed schedule: %v", p)
		}
	}()
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return nil, err
	}
	ss, ok := sched.(*cron.SpecSchedule)
	if !ok {
		return sched, nil // @every: a constant delay
	}
	if ss.Location == time.Local { // no CRON_TZ in the spec
		ss.Location = loc
		if loc == nil {
			ss.Location = time.UTC
		}
	}
	if ss.Location == time.UTC {
		return ss, nil
	}
	zone := ss.Location
	wall := *ss
	wall.Location = time.UTC
	return &wallSchedule{spec: &wall, loc: zone}, nil
}

// wallSchedule evaluates a cron spec on the wall clock of loc (the spec itself
// runs in UTC, where no hour is skipped or repeated) and maps each wall time to
// one instant (see instant).
type wallSchedule struct {
	spec *cron.SpecSchedule // Location is UTC: wall-clock arithmetic
	loc  *time.Location
}

// Next returns the first slot strictly after t, or the zero time.
func (w *wallSchedule) Next(t time.Time) time.Time {
	wall := wallOf(t.In(w.loc))
	// In a repeated hour the wall clock of t may lie before slots that were
	// already taken at their first occurrence; skip those. A 5-field spec has
	// at most 60 slots in an hour, so the loop is short.
	for range 200 {
		wall = w.spec.Next(wall)
		if wall.IsZero() {
			return time.Time{}
		}
		if r := instant(wall, w.loc); r.After(t) {
			return r
		}
	}
	return time.Time{}
}

// wallOf returns the wall clock of t as the same fields in UTC.
func wallOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// instant returns the instant at which loc's wall clock reads wall (given as
// fields in UTC). Of two such instants (clocks went back) it returns the first;
// if there is none (clocks went forward) it returns the instant the same
// distance after the change, using the offset in force before it. time.Date
// leaves both choices unspecified, and in practice differs between zones east
// and west of UTC.
func instant(wall time.Time, loc *time.Location) time.Time {
	r := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), wall.Nanosecond(), loc)
	_, o0 := r.Zone()
	_, o1 := r.Add(-3 * time.Hour).Zone()
	_, o2 := r.Add(3 * time.Hour).Zone()
	if o0 == o1 && o0 == o2 {
		return r // no change of offset nearby: the common case
	}
	var best time.Time
	for _, off := range [...]int{o0, o1, o2} {
		c := wall.Add(-time.Duration(off) * time.Second)
		if wallOf(c.In(loc)).Equal(wall) && (best.IsZero() || c.Before(best)) {
			best = c
		}
	}
	if !best.IsZero() {
		return best.In(loc)
	}
	return wall.Add(-time.Duration(min(o0, o1, o2)) * time.Second).In(loc)
}

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

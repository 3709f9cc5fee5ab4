// Package schedule reads a job's cron schedule the one way runnerd fires it:
// validate, plan, the status page and the daemon all walk the same slots,
// daylight-saving changes included.
package schedule

import (
	"fmt"
	"time"

	"github.com/robfig/cron/v3"
)

// Parse parses a job's schedule: a 5-field cron spec or a descriptor
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
func Parse(spec string, loc *time.Location) (_ cron.Schedule, err error) {
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

// Between returns the slots of s in (after, until], oldest first, at most
// limit of them (the oldest ones are kept).
func Between(s cron.Schedule, after, until time.Time, limit int) []time.Time {
	var out []time.Time
	for t := s.Next(after); !t.IsZero() && !t.After(until) && len(out) < limit; t = s.Next(t) {
		out = append(out, t)
	}
	return out
}

// Never is the schedule of a job that runs only when another job ends (a
// chain's step): it never fires on its own. cron treats its zero Next as
// never.
type Never struct{}

// Next implements cron.Schedule.
func (Never) Next(time.Time) time.Time { return time.Time{} }

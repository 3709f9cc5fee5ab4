package budget

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strings"
	"time"
)

// The projection covers hours h0-23 … h0+47 relative to now's hour h0: the past
// of the window, and a candidate placed as late as h0+24 with its 24 windows.
const (
	projPast  = WindowHours - 1   // 23 hours before h0
	projAhead = 2*WindowHours - 1 // 47 hours after h0
	projLen   = projPast + 1 + projAhead
)

// Planner admits or defers runs so that the rolling window stays within Cap
// over the next 24 hours after the shares of higher-priority runs (DESIGN 3.5).
// It holds no state besides the limits; it is safe for concurrent use.
type Planner struct {
	limits Limits
}

// NewPlanner returns a planner for l.
func NewPlanner(l Limits) *Planner { return &Planner{limits: l} }

// PlanStep is one run of Plan, in time order.
type PlanStep struct {
	Candidate
	Hour           time.Time // the hour bucket the run is projected in
	Admit          bool      // false: deferral foreseen
	Reason         string    // set when deferred
	RemainingAfter int       // Cap − the projected window at Hour after this run
}

// Admit decides whether c may start at now. c is projected in its nominal hour
// (now's hour if that has passed). It is admitted only if, for every hour X of
// the 24 windows it is counted in, the projected window — the real buckets of w
// still inside X's window plus the estimates of the runs in upcoming that come
// before it (higher priority, or equal priority and a lower Seq), each in its
// nominal hour — plus c's estimate stays within Cap. Runs of lower priority, and
// later arrivals of the same priority, are not counted: they must fit around c.
// upcoming may contain c itself (same Job and Seq); it is ignored.
//
// A deferral says why in words and gives EarliestAt, the earliest hour boundary
// within the next 24 hours at which c would fit, or zero.
func (p *Planner) Admit(now time.Time, w *Window, c Candidate, upcoming []Candidate) Decision {
	h0 := hourOf(now)
	real := w.snapshot(h0-projPast, h0+projAhead)
	return p.decide(h0, real, c, upcoming)
}

// all ranges over the candidates of several slices.
func all(lists [][]Candidate) func(func(int, Candidate) bool) {
	return func(yield func(int, Candidate) bool) {
		i := 0
		for _, l := range lists {
			for _, u := range l {
				if !yield(i, u) {
					return
				}
				i++
			}
		}
	}
}

// ahead reports whether u comes before c: it keeps its share.
func ahead(u, c Candidate) bool {
	if u.Priority != c.Priority {
		return u.Priority > c.Priority
	}
	// Equal priority: first come, first served. Runs that have arrived
	// (Seq > 0) go in arrival order. A slot that has not arrived yet (Seq 0:
	// the scheduler's look-ahead) is ahead only if it is due earlier: a job's
	// own later slots must never hold back its run that is due now, or an
	// @every job whose day costs more than the cap would defer itself forever.
	if u.Seq > 0 && c.Seq > 0 {
		return u.Seq < c.Seq
	}
	if !u.Nominal.Equal(c.Nominal) {
		return u.Nominal.Before(c.Nominal)
	}
	return u.Seq < c.Seq
}

func same(u, c Candidate) bool { return u.Seq == c.Seq && u.Job == c.Job }

// decide is Admit on a projection: real holds the buckets of hours
// h0-23 … h0+47.
// upcoming may come in several slices.
func (p *Planner) decide(h0 int64, real []int, c Candidate, upcoming ...[]Candidate) Decision {
	capacity := p.limits.Cap()
	hc := max(hourOf(c.Nominal), h0)
	if c.Estimate > capacity {
		return Decision{Reason: fmt.Sprintf("needs %d calls, more than the cap of %d in any window", c.Estimate, capacity)}
	}
	if hc-h0 > WindowHours {
		// Too far ahead to judge: the runs it must make room for are not known.
		return Decision{Admit: true}
	}

	// proj[i] is the projected bucket of hour h0-23+i.
	var proj [projLen]int
	copy(proj[:], real)
	for _, u := range all(upcoming) {
		if u.Estimate <= 0 || same(u, c) || !ahead(u, c) {
			continue
		}
		if u.Duration <= 0 { // the common case: all in its start hour
			if i := max(hourOf(u.Nominal), h0) - h0 + projPast; i < projLen {
				proj[i] += u.Estimate
			}
			continue
		}
		hu, hours, parts := u.spread(h0)
		for k, n := range parts[:hours] {
			if i := hu + int64(k) - h0 + projPast; i < projLen {
				proj[i] += n
			}
		}
	}
	// base[x] is the projected window of hour h0+x, x = 0 … 47.
	var base [projAhead + 1]int
	sum := 0
	for i := 0; i < projLen; i++ {
		sum += proj[i]
		if i >= WindowHours {
			sum -= proj[i-WindowHours]
		}
		if i >= projPast {
			base[i-projPast] = sum
		}
	}

	// c's calls per hour from its start hour: as due, and as started on a
	// later hour boundary (a deferral's earliest time).
	_, dueHours, dueParts := c.spread(h0)
	bHours, bParts := spread(c.Estimate, c.Duration, 0)
	due, onBoundary := dueParts[:dueHours], bParts[:bHours]
	fits := func(pos int64, parts []int) (ok bool, worst int64) {
		worst = -1
		// Window x holds c's hours pos+k with x-23 <= pos+k <= x.
		for x := pos; x < pos+WindowHours+int64(len(parts))-1 && x <= projAhead; x++ {
			in := 0
			for k, n := range parts {
				if h := pos + int64(k); h <= x && h > x-WindowHours {
					in += n
				}
			}
			if base[x]+in > capacity {
				if worst < 0 || base[x] > base[worst] {
					worst = x
				}
			}
		}
		return worst < 0, worst
	}
	off := hc - h0
	ok, worst := fits(off, due)
	if ok {
		return Decision{Admit: true}
	}
	var at time.Time
	for pos := off + 1; pos <= WindowHours; pos++ {
		if ok, _ := fits(pos, onBoundary); ok {
			at = hourTime(h0 + pos)
			break
		}
	}
	return Decision{Reason: p.reason(h0, worst, capacity-base[worst], at, c, upcoming), EarliestAt: at}
}

// Remaining is what a run under way still needs of its estimate once it has
// spent some calls, and the time that is left of its duration, in the same
// proportion (a run that spent half its calls has about half its time to go).
func Remaining(estimate, spent int, d time.Duration) (int, time.Duration) {
	left := max(0, estimate-spent)
	if estimate <= 0 || d <= 0 {
		return left, 0
	}
	return left, time.Duration(float64(d) * float64(left) / float64(estimate))
}

// spread is c's calls per hour from its start hour (its nominal hour, or h0
// if that has passed: then from h0's start).
func (c Candidate) spread(h0 int64) (start int64, hours int, parts [WindowHours]int) {
	start = hourOf(c.Nominal)
	var into time.Duration
	if start >= h0 {
		into = c.Nominal.Sub(hourTime(start))
	} else {
		start = h0
	}
	hours, parts = spread(c.Estimate, c.Duration, into)
	return start, hours, parts
}

// Spread divides calls over the hours of a run that starts into its first
// hour and lasts d: parts[k] is the share of hour k, in proportion to the
// run's time in it, summing to calls. A run of d <= 0 is all in hour 0; one
// longer than a window is spread over 24 hours (no window holds more of it
// than the estimate). hours is len(parts).
func Spread(calls int, d, into time.Duration) (hours int, parts []int) {
	hours, p := spread(calls, d, into)
	return hours, p[:hours:hours]
}

// spread is Spread into an array: the planner calls it for every run it
// weighs, and a slice each would be an allocation each.
func spread(calls int, d, into time.Duration) (hours int, parts [WindowHours]int) {
	into = min(max(into, 0), time.Hour-1)
	if d <= 0 || calls <= 0 || into+d <= time.Hour {
		parts[0] = calls
		return 1, parts
	}
	if into+d > WindowHours*time.Hour {
		d = WindowHours*time.Hour - into
	}
	hours = int((into + d + time.Hour - 1) / time.Hour)
	// Cumulative rounding: the calls made by the end of hour k, rounded,
	// less those by its start, so the parts add up to calls exactly.
	by := func(t time.Duration) int {
		f := float64(min(max(t-into, 0), d)) / float64(d)
		return int(math.Round(f * float64(calls)))
	}
	for k := range hours {
		parts[k] = by(time.Duration(k+1)*time.Hour) - by(time.Duration(k)*time.Hour)
	}
	return hours, parts
}

// reason explains a deferral whose tightest window is that of hour h0+x, with
// left calls left in it.
func (p *Planner) reason(h0, x int64, left int, at time.Time, c Candidate, upcoming [][]Candidate) string {
	var b strings.Builder
	fmt.Fprintf(&b, "needs %d calls; %d left in the window ", c.Estimate, max(0, left))
	if at.IsZero() {
		b.WriteString("for the next 24 h")
	} else {
		layout := "15:04"
		if hourOf(at)/24 != h0/24 {
			layout = "Mon 15:04" // another UTC day
		}
		fmt.Fprintf(&b, "until %s", at.UTC().Format(layout))
	}
	// The reserved shares counted in that window, by priority, highest first.
	type share struct {
		calls, runs int
		names       labels
	}
	var higher [3]share
	var equal share
	hx := h0 + x
	for _, u := range all(upcoming) {
		if u.Estimate <= 0 || same(u, c) || !ahead(u, c) {
			continue
		}
		if hu := max(hourOf(u.Nominal), h0); hu > hx || hu <= hx-WindowHours {
			continue
		}
		if u.Priority == c.Priority {
			equal.calls += u.Estimate
			equal.runs++
			equal.names.add(u.Label)
		} else if i := int(u.Priority); i >= 0 && i < len(higher) {
			higher[i].calls += u.Estimate
			higher[i].runs++
			higher[i].names.add(u.Label)
		}
	}
	var parts []string
	for i := len(higher) - 1; i >= 0; i-- {
		if s := higher[i]; s.runs > 0 {
			parts = append(parts, fmt.Sprintf("%d reserved for %d %s-priority %s", s.calls, s.runs, priorityName(i), plural(s.runs, "run"))+s.names.String(s.runs))
		}
	}
	if equal.runs > 0 {
		parts = append(parts, fmt.Sprintf("%d for %d earlier %s-priority %s", equal.calls, equal.runs, c.Priority, plural(equal.runs, "run"))+equal.names.String(equal.runs))
	}
	if n := len(parts); n > 0 {
		b.WriteString(" after ")
		if n > 1 {
			b.WriteString(strings.Join(parts[:n-1], ", "))
			b.WriteString(" and ")
		}
		b.WriteString(parts[n-1])
	}
	return b.String()
}

// maxLabels is how many distinct labels a reason names per group.
const maxLabels = 3

// labels collects the distinct Labels of a group in the order first seen,
// with how many runs carry each.
type labels struct {
	names []string
	count []int
}

func (l *labels) add(s string) {
	if s == "" {
		return
	}
	if i := slices.Index(l.names, s); i >= 0 {
		l.count[i]++
		return
	}
	l.names = append(l.names, s)
	l.count = append(l.count, 1)
}

// String returns " (a; b ×2; c and 4 more)" for a group of runs runs, or ""
// when none is labelled. "and N more" counts the runs not named, labelled or
// not.
func (l labels) String(runs int) string {
	if len(l.names) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" (")
	named := 0
	for i, s := range l.names {
		if i == maxLabels {
			break
		}
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
		if l.count[i] > 1 {
			fmt.Fprintf(&b, " ×%d", l.count[i])
		}
		named += l.count[i]
	}
	if more := runs - named; more > 0 {
		fmt.Fprintf(&b, " and %d more", more)
	}
	b.WriteString(")")
	return b.String()
}

func priorityName(i int) string {
	switch i {
	case 0:
		return "low"
	case 2:
		return "high"
	default:
		return "normal"
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return word
	}
	return word + "s"
}

// Plan foresees the runs of upcoming due before now + hours, in time order:
// each is decided by the Admit rule at its nominal hour, against the window as
// it will be by then (the real buckets plus the estimates of the runs admitted
// before it; foreseen deferrals spend nothing). RemainingAfter is Cap minus the
// projected window of the run's hour after it.
func (p *Planner) Plan(now time.Time, w *Window, hours int, upcoming []Candidate) []PlanStep {
	h0 := hourOf(now)
	end := now.Add(time.Duration(hours) * time.Hour)
	var runs, later []Candidate
	for _, u := range upcoming {
		if u.Nominal.Before(end) {
			runs = append(runs, u)
		} else {
			later = append(later, u)
		}
	}
	order := func(a, b Candidate) int {
		ha, hb := max(hourOf(a.Nominal), h0), max(hourOf(b.Nominal), h0)
		if ha != hb {
			return cmp.Compare(ha, hb)
		}
		if a.Priority != b.Priority {
			return cmp.Compare(b.Priority, a.Priority)
		}
		if c := a.Nominal.Compare(b.Nominal); c != 0 {
			return c
		}
		return cmp.Compare(a.Seq, b.Seq)
	}
	slices.SortStableFunc(runs, order)

	last := h0
	if len(runs) > 0 {
		last = max(h0, hourOf(runs[len(runs)-1].Nominal))
	}
	// sim holds the buckets of hours h0-23 … last+47.
	first := h0 - projPast
	sim := w.snapshot(first, last+projAhead)
	capacity := p.limits.Cap()
	steps := make([]PlanStep, 0, len(runs))
	for i, r := range runs {
		hr := max(hourOf(r.Nominal), h0)
		// The runs still to come, from this run's point of view.
		lo := hr - projPast - first
		d := p.decide(hr, sim[lo:lo+projLen], r, runs[i+1:], later)
		if d.Admit {
			hs, hours, parts := r.spread(hr)
			for k, n := range parts[:hours] {
				if j := hs + int64(k) - first; j < int64(len(sim)) {
					sim[j] += n
				}
			}
		}
		used := 0
		for k := hr - WindowHours + 1; k <= hr; k++ {
			used += sim[k-first]
		}
		steps = append(steps, PlanStep{Candidate: r, Hour: hourTime(hr), Admit: d.Admit, Reason: d.Reason, RemainingAfter: max(0, capacity-used)})
	}
	return steps
}

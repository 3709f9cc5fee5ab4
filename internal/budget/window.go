package budget

import (
	"sync"
	"time"
)

// WindowHours is the length of the rolling window in hour buckets.
const WindowHours = 24

// ringHours is how many hour buckets the Window keeps: the 24 of the window
// and as many again for calls counted ahead of time (a call reserved at 10:59
// that starts at 11:00) and for the hours just fallen out.
const ringHours = 2 * WindowHours

// HourCount is the number of calls started in one UTC hour.
type HourCount struct {
	Hour  time.Time `json:"hour"` // the start of the hour, UTC
	Calls int       `json:"calls"`
}

type bucket struct {
	hour int64 // hours since the epoch; meaningful only when n+hold != 0
	n    int
	// hold counts calls that were admitted in this hour and then paced into a
	// later one (counted there in n): the room they leave here is not given
	// back to other callers, in case one of them raced the move. Checks count
	// it; what the window shows (Used, Hours, Status) does not. A Load, the
	// ledger's truth, drops it.
	hold int
}

// Window counts calls in UTC hour buckets and answers for the rolling 24 hours:
// used(H) is the sum of the buckets H-23 … H. It is safe for concurrent use.
//
// A call counts in every window from its hour's to the one 23 hours later, so
// the window admits a call only if all 24 of them stay within the limit, with
// whatever buckets it holds for hours later than now (a clock stepped back, a
// ledger loaded after a restart, a call counted ahead): no clock step, restart
// or reordering can let the platform's count of any window exceed the limit.
type Window struct {
	limits Limits

	mu  sync.Mutex
	buf [ringHours]bucket
}

// NewWindow returns an empty window for l.
func NewWindow(l Limits) *Window {
	return &Window{limits: l}
}

// Limits returns the limits the window was made with.
func (w *Window) Limits() Limits { return w.limits }

// Load replaces the window's buckets with hours, the ledger's hourly rollup.
// Hours that repeat are summed; hours more than 48 hours older than the newest
// one are dropped, as they can no longer matter.
func (w *Window) Load(hours []HourCount) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = [ringHours]bucket{}
	for _, hc := range hours {
		w.addLocked(hourOf(hc.Hour), hc.Calls)
	}
}

// Add counts n calls in t's hour. A negative n takes calls back (a reservation
// that was not used); a bucket never goes below zero.
func (w *Window) Add(t time.Time, n int) {
	w.mu.Lock()
	w.addLocked(hourOf(t), n)
	w.mu.Unlock()
}

func (w *Window) addLocked(h int64, n int) {
	if n == 0 {
		return
	}
	b := &w.buf[slot(h)]
	switch {
	case b.n+b.hold == 0 || b.hour < h:
		// Empty, or an hour at least 48 hours older: it cannot be in any window
		// that h is in any more.
		if n < 0 {
			*b = bucket{}
			return
		}
		*b = bucket{hour: h, n: n}
	case b.hour == h:
		b.n = max(0, b.n+n)
		if b.n+b.hold == 0 {
			*b = bucket{}
		}
	default:
		// The slot holds an hour at least 48 hours newer: h is too old to matter.
	}
}

func slot(h int64) int {
	i := int(h % ringHours)
	if i < 0 {
		i += ringHours
	}
	return i
}

// count returns the calls in hour h as checks count them: held ones too.
func (w *Window) count(h int64) int {
	b := w.buf[slot(h)]
	if b.hour == h {
		return b.n + b.hold
	}
	return 0
}

// shown returns the calls started in hour h, without held ones.
func (w *Window) shown(h int64) int {
	b := w.buf[slot(h)]
	if b.hour == h {
		return b.n
	}
	return 0
}

// usedAt returns used(H) for hour h as checks count it: the sum of buckets
// h-23 … h, held calls included.
func (w *Window) usedAt(h int64) int {
	sum := 0
	for k := h - WindowHours + 1; k <= h; k++ {
		sum += w.count(k)
	}
	return sum
}

// worstFrom returns the largest used(X) over the 24 windows X = h … h+23
// that a call in hour h is counted in.
func (w *Window) worstFrom(h int64) int {
	sum := w.usedAt(h)
	worst := sum
	for x := h + 1; x < h+WindowHours; x++ {
		sum += w.count(x) - w.count(x-WindowHours)
		worst = max(worst, sum)
	}
	return worst
}

// Used returns the calls started in the rolling window that now is in.
func (w *Window) Used(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := hourOf(now)
	sum := 0
	for k := h - WindowHours + 1; k <= h; k++ {
		sum += w.shown(k)
	}
	return sum
}

// Remaining returns max(0, Cap − Used(now)): what is left for ordinary work.
func (w *Window) Remaining(now time.Time) int {
	return max(0, w.limits.Cap()-w.Used(now))
}

// NextFree returns when the oldest non-empty bucket of the window falls out
// (the start of that hour plus 24 hours) and how many calls that frees. It
// returns the zero time and 0 when the window is empty.
func (w *Window) NextFree(now time.Time) (at time.Time, frees int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := hourOf(now)
	for k := h - WindowHours + 1; k <= h; k++ {
		if n := w.shown(k); n > 0 {
			return hourTime(k + WindowHours), n
		}
	}
	return time.Time{}, 0
}

// Hours returns the 24 buckets H-23 … H of now's window, oldest first,
// including the empty ones.
func (w *Window) Hours(now time.Time) []HourCount {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := hourOf(now)
	out := make([]HourCount, 0, WindowHours)
	for k := h - WindowHours + 1; k <= h; k++ {
		out = append(out, HourCount{Hour: hourTime(k), Calls: w.shown(k)})
	}
	return out
}

// FitsAt returns the earliest hour boundary after now at which n more calls
// would fit within limit in every window they would be counted in, given the
// calls counted so far (nothing new added), or the zero time if that does not
// happen within 24 hours.
func (w *Window) FitsAt(now time.Time, n, limit int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fitsAtLocked(hourOf(now), n, limit)
}

func (w *Window) fitsAtLocked(h int64, n, limit int) time.Time {
	for k := h + 1; k <= h+WindowHours; k++ {
		if w.worstFrom(k)+n <= limit {
			return hourTime(k)
		}
	}
	return time.Time{}
}

// tryAdd counts n calls in t's hour if every window they are counted in (t's
// hour's through the one 23 hours later) stays within limit, and reports
// whether it did, with the fullest of those windows before the call.
func (w *Window) tryAdd(t time.Time, n, limit int) (ok bool, used int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := hourOf(t)
	used = w.worstFrom(h)
	if used+n > limit {
		return false, used
	}
	w.addLocked(h, n)
	return true, used
}

// move moves a call counted in from's hour to to's later hour, where it was
// sent. It is counted there; in from's hour it stays held (see bucket.hold),
// so the move frees nothing for a concurrent caller. The windows of to's hour
// that from's hour is not in (from+24 … to+23) must stay within limit; if they
// would not, nothing moves and move reports false (the call stays counted
// where it was admitted).
func (w *Window) move(from, to time.Time, limit int) bool {
	hf, ht := hourOf(from), hourOf(to)
	if ht <= hf {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	sum := w.usedAt(ht)
	for x := ht; x < ht+WindowHours; x++ {
		if x > ht {
			sum += w.count(x) - w.count(x-WindowHours)
		}
		if x >= hf+WindowHours && sum+1 > limit {
			return false
		}
	}
	b := &w.buf[slot(hf)]
	if b.hour == hf && b.n > 0 {
		b.n--
		b.hold++
	}
	w.addLocked(ht, 1)
	return true
}

// snapshot copies the buckets of hours from … to (inclusive) into a slice
// indexed from 0.
func (w *Window) snapshot(from, to int64) []int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]int, to-from+1)
	for k := from; k <= to; k++ {
		out[k-from] = w.count(k)
	}
	return out
}

// Merge raises each hour's count to the ledger's, hours (the hourly rollup
// of a ledger other processes write too: a shared PostgreSQL store). An hour
// this process counts more in — calls admitted and not yet recorded — keeps
// its own count. Held calls stay held.
func (w *Window) Merge(hours []HourCount) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, hc := range hours {
		h := hourOf(hc.Hour)
		if d := hc.Calls - w.shown(h); d > 0 {
			w.addLocked(h, d)
		}
	}
}

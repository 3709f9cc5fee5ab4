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
	hour int64 // hours since the epoch; meaningful only when n != 0
	n    int
}

// Window counts calls in UTC hour buckets and answers for the rolling 24 hours:
// used(H) is the sum of the buckets H-23 … H. It is safe for concurrent use.
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
	case b.n == 0 || b.hour < h:
		// Empty, or an hour at least 48 hours older: it cannot be in any window
		// that h is in any more.
		if n < 0 {
			*b = bucket{}
			return
		}
		*b = bucket{hour: h, n: n}
	case b.hour == h:
		b.n = max(0, b.n+n)
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

// count returns the calls in hour h.
func (w *Window) count(h int64) int {
	b := w.buf[slot(h)]
	if b.n != 0 && b.hour == h {
		return b.n
	}
	return 0
}

// usedAt returns used(H) for hour h: the sum of buckets h-23 … h.
func (w *Window) usedAt(h int64) int {
	sum := 0
	for k := h - WindowHours + 1; k <= h; k++ {
		sum += w.count(k)
	}
	return sum
}

// Used returns the calls counted in the rolling window that now is in.
func (w *Window) Used(now time.Time) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.usedAt(hourOf(now))
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
		if n := w.count(k); n > 0 {
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
		out = append(out, HourCount{Hour: hourTime(k), Calls: w.count(k)})
	}
	return out
}

// FitsAt returns the earliest hour boundary after now at which n more calls
// would fit within limit given the calls counted so far (nothing new added),
// or the zero time if that does not happen within 24 hours.
func (w *Window) FitsAt(now time.Time, n, limit int) time.Time {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.fitsAtLocked(hourOf(now), n, limit)
}

func (w *Window) fitsAtLocked(h int64, n, limit int) time.Time {
	for k := h + 1; k <= h+WindowHours; k++ {
		if w.usedAt(k)+n <= limit {
			return hourTime(k)
		}
	}
	return time.Time{}
}

// tryAdd counts n calls in t's hour if the window stays within limit, and
// reports whether it did, with the window's use before the call.
func (w *Window) tryAdd(t time.Time, n, limit int) (ok bool, used int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	h := hourOf(t)
	used = w.usedAt(h)
	if used+n > limit {
		return false, used
	}
	w.addLocked(h, n)
	return true, used
}

// move moves n calls counted in from's hour to to's hour, when they differ.
func (w *Window) move(from, to time.Time, n int) {
	hf, ht := hourOf(from), hourOf(to)
	if hf == ht {
		return
	}
	w.mu.Lock()
	w.addLocked(hf, -n)
	w.addLocked(ht, n)
	w.mu.Unlock()
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

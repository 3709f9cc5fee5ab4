package budget

import "time"

// Status is the window as `runnerd budget` shows it; its JSON field names are
// the contract of DESIGN 3.2.
type Status struct {
	DailyLimit  int         `json:"daily_limit"`
	Reserve     int         `json:"reserve"`
	Rate        float64     `json:"rate"`
	Used        int         `json:"used"`      // calls in the current rolling window
	Remaining   int         `json:"remaining"` // max(0, daily_limit − reserve − used)
	WindowStart time.Time   `json:"window_start"`
	Hours       []HourCount `json:"hours"`                 // the 24 buckets, oldest first
	NextFreeAt  time.Time   `json:"next_free_at,omitzero"` // when the oldest non-empty bucket falls out; absent when the window is empty
	NextFrees   int         `json:"-"`                     // how many calls that frees
}

// Status returns the window at now.
func (w *Window) Status(now time.Time) Status {
	hours := w.Hours(now)
	used := 0
	for _, h := range hours {
		used += h.Calls
	}
	at, frees := w.NextFree(now)
	return Status{
		DailyLimit:  w.limits.DailyLimit,
		Reserve:     w.limits.Reserve,
		Rate:        w.limits.Rate,
		Used:        used,
		Remaining:   max(0, w.limits.Cap()-used),
		WindowStart: hours[0].Hour,
		Hours:       hours,
		NextFreeAt:  at,
		NextFrees:   frees,
	}
}

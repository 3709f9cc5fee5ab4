package budget

import "time"

// Limits are the account's limits as runnerd spends them.
type Limits struct {
	DailyLimit int     // the account's allowance per rolling 24 hours
	Reserve    int     // kept for the account's other users and for recovery lookups; the caller's default is 10% of DailyLimit
	Rate       float64 // attempt starts per second, for all of runnerd together; ≤ 0 means unlimited
}

// Cap is what runnerd spends on ordinary work in one rolling window:
// DailyLimit − Reserve, never below zero.
func (l Limits) Cap() int {
	return max(0, l.DailyLimit-l.Reserve)
}

// hourOf returns the UTC hour bucket that t falls in, as hours since the Unix
// epoch. Hours are counted with floor division so that times before 1970 stay
// in the right bucket.
func hourOf(t time.Time) int64 {
	s := t.Unix()
	h := s / 3600
	if s%3600 < 0 {
		h--
	}
	return h
}

// hourTime returns the start of hour h as a UTC time.
func hourTime(h int64) time.Time {
	return time.Unix(h*3600, 0).UTC()
}

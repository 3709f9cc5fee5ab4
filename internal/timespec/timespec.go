// Package timespec reads the times runnerd's commands take: an RFC 3339
// time, a date, or an age such as 36h or 7d.
package timespec

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Parse reads a time as the command line takes it (-since, -until, -from,
// -to): an RFC 3339 time, a date (2006-01-02, UTC midnight), or an age back
// from now ("36h", "7d"). "" is the zero time (no bound).
func Parse(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	d, err := Age(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time, a date (2006-01-02) nor an age such as 36h or 7d", s)
	}
	return now.Add(-d), nil
}

// maxDays is the most days a time.Duration holds.
const maxDays = int(math.MaxInt64 / int64(24*time.Hour))

// Age is a Go duration or a whole number of days ("7d"), not negative.
func Age(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err == nil && days >= 0 && days <= maxDays && fmt.Sprint(days) == n {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad age %q", s)
	}
	return d, nil
}

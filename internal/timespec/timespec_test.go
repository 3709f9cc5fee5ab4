package timespec

import (
	"strings"
	"testing"
	"time"
)

var now = time.Date(2026, 12, 3, 12, 0, 0, 0, time.UTC)

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want time.Time
		err  string
	}{
		{"", time.Time{}, ""},
		{"2026-12-01T10:00:00+01:00", time.Date(2026, 12, 1, 9, 0, 0, 0, time.UTC), ""},
		{"2026-12-01", time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC), ""},
		{"36h", now.Add(-36 * time.Hour), ""},
		{"7d", now.Add(-7 * 24 * time.Hour), ""},
		{"0d", now, ""},
		{"-1h", time.Time{}, "neither"},
		{"7days", time.Time{}, "neither"},
		{"07d", time.Time{}, "neither"},
		{"999999999999d", time.Time{}, "neither"}, // more days than a duration holds
		{"yesterday", time.Time{}, `"yesterday" is neither`},
	} {
		got, err := Parse(tc.in, now)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("Parse(%q) = %v, %v; want an error with %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !got.Equal(tc.want) {
			t.Errorf("Parse(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// FuzzParse: any input is a time not after now (ages go back), an RFC 3339
// or date time, or an error that quotes it — never a panic.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"", "7d", "36h", "2026-12-01", "2026-12-01T10:00:00Z", "9223372036854775807d", "106751d", "106752d", "-0d"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := Parse(s, now)
		if err != nil {
			return
		}
		if _, perr := time.Parse(time.RFC3339, s); perr == nil {
			return
		}
		if _, perr := time.Parse("2006-01-02", s); perr == nil {
			return
		}
		if s != "" && got.After(now) {
			t.Errorf("Parse(%q) = %v: an age that lies in the future", s, got)
		}
	})
}

package scheduler

import (
	"slices"
	"testing"
	"time"

	"runnerd/internal/schedule"
)

// fireTimes returns the first n slots of spec (in zone) after from, in UTC.
func fireTimes(t *testing.T, spec string, zone *time.Location, from time.Time, n int) []string {
	t.Helper()
	s, err := schedule.Parse(spec, zone)
	if err != nil {
		t.Fatalf("schedule.Parse(%q) error: %v", spec, err)
	}
	var out []string
	for tt := from; len(out) < n; {
		tt = s.Next(tt)
		if tt.IsZero() {
			break
		}
		out = append(out, tt.UTC().Format("2006-01-02 15:04"))
	}
	return out
}

func TestParseScheduleZonesAndDST(t *testing.T) {
	berlin := mustLoad(t, "Europe/Berlin")
	newYork := mustLoad(t, "America/New_York")
	for _, tc := range []struct {
		name string
		spec string
		zone *time.Location
		from string
		want []string
	}{
		{
			name: "utc default",
			spec: "0 9 * * *", zone: nil, from: "2026-01-10 00:00",
			want: []string{"2026-01-10 09:00", "2026-01-11 09:00"},
		},
		{
			name: "zone shifts the slot",
			spec: "0 9 * * *", zone: berlin, from: "2026-01-10 00:00",
			want: []string{"2026-01-10 08:00", "2026-01-11 08:00"},
		},
		{
			name: "CRON_TZ in the spec wins over the job's zone",
			spec: "CRON_TZ=America/New_York 0 9 * * *", zone: berlin, from: "2026-01-10 00:00",
			want: []string{"2026-01-10 14:00", "2026-01-11 14:00"},
		},
		{
			// 02:30 does not exist on 2026-03-29 in Berlin: it runs once,
			// at 03:30 CEST (01:30 UTC). cron alone skips the day.
			name: "berlin spring forward: skipped slot runs once",
			spec: "30 2 * * *", zone: berlin, from: "2026-03-27 12:00",
			want: []string{"2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30", "2026-03-31 00:30"},
		},
		{
			// 02:30 happens twice on 2026-10-25 in Berlin: it runs at the
			// first (02:30 CEST, 00:30 UTC) only.
			name: "berlin fall back: repeated slot runs once",
			spec: "30 2 * * *", zone: berlin, from: "2026-10-23 12:00",
			want: []string{"2026-10-24 00:30", "2026-10-25 00:30", "2026-10-26 01:30", "2026-10-27 01:30"},
		},
		{
			// Every half hour: 02:00 and 02:30 fall into 03:00 and 03:30.
			name: "berlin spring forward: half-hourly",
			spec: "0,30 * * * *", zone: berlin, from: "2026-03-28 23:40",
			want: []string{"2026-03-29 00:00", "2026-03-29 00:30", "2026-03-29 01:00", "2026-03-29 01:30", "2026-03-29 02:00"},
		},
		{
			// Every half hour: the repeated 02:00 and 02:30 (CET) do not run again.
			name: "berlin fall back: half-hourly",
			spec: "0,30 * * * *", zone: berlin, from: "2026-10-24 23:40",
			want: []string{"2026-10-25 00:00", "2026-10-25 00:30", "2026-10-25 02:00", "2026-10-25 02:30"},
		},
		{
			// West of UTC time.Date resolves a gap backwards; the schedule
			// still runs the skipped slot after the change: 03:30 EDT.
			name: "new york spring forward",
			spec: "30 2 * * *", zone: newYork, from: "2026-03-07 12:00",
			want: []string{"2026-03-08 07:30", "2026-03-09 06:30"},
		},
		{
			name: "new york fall back",
			spec: "30 1 * * *", zone: newYork, from: "2026-10-31 12:00",
			want: []string{"2026-11-01 05:30", "2026-11-02 06:30"},
		},
		{
			name: "@every is real time",
			spec: "@every 90m", zone: berlin, from: "2026-03-29 00:00",
			want: []string{"2026-03-29 01:30", "2026-03-29 03:00"},
		},
		{
			name: "@daily in a zone",
			spec: "@daily", zone: berlin, from: "2026-03-28 12:00",
			want: []string{"2026-03-28 23:00", "2026-03-29 22:00"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := fireTimes(t, tc.spec, tc.zone, utc(t, tc.from), len(tc.want))
			if !slices.Equal(got, tc.want) {
				t.Errorf("schedule.Parse(%q).Next… from %s = %v; want %v", tc.spec, tc.from, got, tc.want)
			}
		})
	}
}

func TestParseScheduleErrors(t *testing.T) {
	for _, spec := range []string{"", "TZ=", "CRON_TZ=Europe/Berlin", "61 * * * *", "* * * *", "CRON_TZ=Nowhere/Else 0 9 * * *", "@every -1m x"} {
		if _, err := schedule.Parse(spec, time.UTC); err == nil {
			t.Errorf("schedule.Parse(%q) = nil error; want an error", spec)
		}
	}
}

// Around every change of offset in 2026, in zones with DST on both sides of
// UTC (and a 30-minute one), the wall-clock mapping is strictly increasing,
// leaves no gap longer than the change, and keeps to the spec's minutes.
func TestWallScheduleMonotonic(t *testing.T) {
	for _, name := range []string{"Europe/Berlin", "America/New_York", "Australia/Lord_Howe"} {
		loc := mustLoad(t, name)
		s, err := schedule.Parse("*/15 * * * *", loc)
		if err != nil {
			t.Fatal(err)
		}
		var changes []time.Time
		for h := utc(t, "2026-01-01 00:00"); h.Year() == 2026; h = h.Add(time.Hour) {
			_, o1 := h.In(loc).Zone()
			_, o2 := h.Add(time.Hour).In(loc).Zone()
			if o1 != o2 {
				changes = append(changes, h)
			}
		}
		if len(changes) != 2 {
			t.Fatalf("%s: found %d changes of offset in 2026; want 2", name, len(changes))
		}
		for _, c := range changes {
			prev := c.Add(-48 * time.Hour)
			for prev.Before(c.Add(48 * time.Hour)) {
				next := s.Next(prev)
				if !next.After(prev) {
					t.Fatalf("%s: Next(%v) = %v; want after it", name, prev, next)
				}
				if next.Sub(prev) > 75*time.Minute {
					t.Fatalf("%s: Next(%v) = %v; a gap of %v", name, prev, next, next.Sub(prev))
				}
				if m := next.In(loc).Minute(); m%15 != 0 {
					t.Fatalf("%s: Next(%v) = %v; wall minute %d", name, prev, next.In(loc), m)
				}
				prev = next
			}
		}
	}
}

func TestSlotsBetween(t *testing.T) {
	s, err := schedule.Parse("0 * * * *", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	from := utc(t, "2026-01-01 00:00")
	slots, dropped := slotsBetween(s, from, from.Add(10*time.Hour), 4)
	var got []string
	for _, x := range slots {
		got = append(got, x.Format("15:04"))
	}
	if want := []string{"07:00", "08:00", "09:00", "10:00"}; !slices.Equal(got, want) || dropped != 6 {
		t.Errorf("slotsBetween(hourly, 00:00, 10:00, 4) = %v, %d; want %v, 6", got, dropped, want)
	}
}

// FuzzParseSchedule: no spec panics the parser or the schedule, and a valid
// one yields strictly increasing slots in a zone with DST.
func FuzzParseSchedule(f *testing.F) {
	for _, seed := range []string{"30 2 * * *", "0,30 * * * *", "*/15 1-3 * * 0", "@daily", "@every 90m",
		"CRON_TZ=America/New_York 30 1 * * *", "0 0 29 2 *", "59 23 31 12 *", "TZ=Europe/Berlin @hourly"} {
		f.Add(seed, int64(1774735200)) // 2026-03-28 22:00 UTC
	}
	berlin, err := time.LoadLocation("Europe/Berlin")
	if err != nil {
		f.Skip(err)
	}
	f.Fuzz(func(t *testing.T, spec string, unix int64) {
		s, err := schedule.Parse(spec, berlin)
		if err != nil {
			return
		}
		prev := time.Unix(unix%(1<<34), 0).UTC()
		for range 8 {
			next := s.Next(prev)
			if next.IsZero() {
				return
			}
			if !next.After(prev) {
				t.Fatalf("schedule.Parse(%q).Next(%v) = %v; want after it", spec, prev, next)
			}
			prev = next
		}
	})
}

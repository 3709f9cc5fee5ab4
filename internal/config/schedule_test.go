package config

import (
	"testing"
	"time"

	"runnerd"
)

func utc(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04", s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestNextFires(t *testing.T) {
	tests := []struct {
		name     string
		schedule string
		zone     string
		after    string // UTC
		want     []string
	}{
		{"weekdays 02:00 Berlin, winter", "0 2 * * 1-5", "Europe/Berlin", "2026-01-09 12:00",
			[]string{"2026-01-12 01:00", "2026-01-13 01:00", "2026-01-14 01:00"}}, // Fri → Mon, CET = UTC+1
		{"weekdays 02:00 Berlin across spring DST", "0 2 * * 1-5", "Europe/Berlin", "2026-03-27 00:00",
			[]string{"2026-03-27 01:00", "2026-03-30 00:00", "2026-03-31 00:00"}}, // CET then CEST = UTC+2
		// As the daemon fires them (schedule.Parse): wall-clock times.
		{"daily 02:30 Berlin: the nonexistent 02:30 runs at 03:30", "30 2 * * *", "Europe/Berlin", "2026-03-27 12:00",
			[]string{"2026-03-28 01:30", "2026-03-29 01:30", "2026-03-30 00:30"}},
		{"daily 02:30 Berlin: the repeated 02:30 runs once", "30 2 * * *", "Europe/Berlin", "2026-10-24 12:00",
			[]string{"2026-10-25 00:30", "2026-10-26 01:30", "2026-10-27 01:30"}},
		{"hourly Berlin across fall-back: the repeated 02:00 runs once", "0 * * * *", "Europe/Berlin", "2026-10-24 22:30",
			[]string{"2026-10-24 23:00", "2026-10-25 00:00", "2026-10-25 02:00", "2026-10-25 03:00"}},
		{"hourly Berlin across spring-forward", "@hourly", "Europe/Berlin", "2026-03-28 23:30",
			[]string{"2026-03-29 00:00", "2026-03-29 01:00", "2026-03-29 02:00"}},
		{"daily New York", "@daily", "America/New_York", "2026-03-07 12:00",
			[]string{"2026-03-08 05:00", "2026-03-09 04:00"}}, // EST midnight, then EDT midnight
		{"every 90m is zone-free", "@every 90m", "America/New_York", "2026-03-08 05:00",
			[]string{"2026-03-08 06:30", "2026-03-08 08:00", "2026-03-08 09:30"}},
		{"UTC by default", "0 2 * * *", "", "2026-06-01 00:00",
			[]string{"2026-06-01 02:00", "2026-06-02 02:00"}},
		{"strictly after", "0 2 * * *", "UTC", "2026-06-01 02:00",
			[]string{"2026-06-02 02:00"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			j := Job{Schedule: tt.schedule, Timezone: tt.zone}
			got, err := j.NextFires(utc(tt.after), len(tt.want))
			if err != nil {
				t.Fatalf("NextFires() error = %v", err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("NextFires() = %v; want %v", got, tt.want)
			}
			loc, _ := j.Location()
			for i := range got {
				if !got[i].Equal(utc(tt.want[i])) {
					t.Errorf("NextFires(%q, %q)[%d] = %v; want %s UTC", tt.schedule, tt.zone, i, got[i].UTC(), tt.want[i])
				}
				if got[i].Location().String() != loc.String() {
					t.Errorf("NextFires()[%d] in %v; want the job's zone %v", i, got[i].Location(), loc)
				}
			}
		})
	}
}

func TestNextFiresErrors(t *testing.T) {
	for _, j := range []Job{
		{Schedule: "not a cron"},
		{Schedule: "@daily", Timezone: "Nowhere/Land"},
		{Schedule: "0 0 31 2 *"},
	} {
		if got, err := j.NextFires(utc("2026-01-01 00:00"), 3); err == nil {
			t.Errorf("NextFires(%q, %q) = %v, nil; want an error", j.Schedule, j.Timezone, got)
		}
	}
	j := Job{Schedule: "@daily"}
	if got, err := j.NextFires(utc("2026-01-01 00:00"), 0); err != nil || len(got) != 0 {
		t.Errorf("NextFires(n=0) = %v, %v; want none", got, err)
	}
}

func TestLocation(t *testing.T) {
	tests := []struct {
		zone    string
		want    string
		wantErr bool
	}{
		{"", "UTC", false},
		{"UTC", "UTC", false},
		{"Europe/Berlin", "Europe/Berlin", false},
		{"Local", "", true},
		{"Europe/Atlantis", "", true},
	}
	for _, tt := range tests {
		j := Job{Timezone: tt.zone}
		loc, err := j.Location()
		if (err != nil) != tt.wantErr || (err == nil && loc.String() != tt.want) {
			t.Errorf("Location(%q) = %v, %v; want %q (error %v)", tt.zone, loc, err, tt.want, tt.wantErr)
		}
	}
}

func TestPriorityLevel(t *testing.T) {
	for in, want := range map[string]runnerd.Priority{"high": runnerd.PriorityHigh, "normal": runnerd.PriorityNormal, "low": runnerd.PriorityLow} {
		j := Job{Priority: in}
		if got := j.PriorityLevel(); got != want {
			t.Errorf("PriorityLevel(%q) = %v; want %v", in, got, want)
		}
	}
}

package budget

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"
)

// TestOverviewExample replays the platform overview's worked example: limit
// 200 a day, 10 calls an hour from Monday 12:00. The account is full during the
// Tuesday 07:00 hour and has room again from Tuesday 12:00, when Monday's
// 12:00 bucket falls out.
func TestOverviewExample(t *testing.T) {
	l := Limits{DailyLimit: 200, Reserve: 0, Rate: 5}
	w := NewWindow(l)
	clock := newFakeClock(mon)
	g := NewGate(l, w, NewRateLimiter(l.Rate), clock, NewClassifier())
	ctx := context.Background()
	call := Ask{}

	start := mon.Add(12 * time.Hour)   // Monday 12:00
	tue07 := start.Add(19 * time.Hour) // Tuesday 07:00
	tue12 := start.Add(24 * time.Hour) // Tuesday 12:00
	firstRefusal := time.Time{}
	for h := start; h.Before(start.Add(30 * time.Hour)); h = h.Add(time.Hour) {
		clock.Set(h.Add(10 * time.Minute))
		for i := 0; i < 10; i++ {
			err := g.Wait(ctx, call)
			if err == nil {
				continue
			}
			var re *RefusedError
			if !errors.As(err, &re) || !errors.Is(err, ErrExhausted) {
				t.Fatalf("Wait at %v = %v; want a *RefusedError wrapping ErrExhausted", clock.Now(), err)
			}
			if firstRefusal.IsZero() {
				firstRefusal = clock.Now()
			}
			if h.Before(tue12) && !re.RetryAt.Equal(tue12) {
				t.Errorf("RetryAt at %v = %v; want %v", clock.Now(), re.RetryAt, tue12)
			}
		}
		if h.Equal(tue07) {
			// The 10 calls of the 07:00 hour went through and filled the window:
			// one more during that hour is refused.
			if got := w.Used(clock.Now()); got != 200 {
				t.Fatalf("Used(Tue 07:10) = %d; want 200", got)
			}
			clock.Set(h.Add(59 * time.Minute))
			if err := g.Wait(ctx, call); !errors.Is(err, ErrExhausted) {
				t.Fatalf("Wait(Tue 07:59) = %v; want ErrExhausted", err)
			}
			if firstRefusal.IsZero() {
				firstRefusal = clock.Now()
			}
			if at, frees := w.NextFree(clock.Now()); !at.Equal(tue12) || frees != 10 {
				t.Errorf("NextFree(Tue 07:59) = %v, %d; want %v, 10", at, frees, tue12)
			}
		}
		// Within the window the used count never passes the limit.
		if used := w.Used(clock.Now()); used > 200 {
			t.Fatalf("Used(%v) = %d; want ≤ 200", clock.Now(), used)
		}
	}
	if want := tue07.Add(59 * time.Minute); !firstRefusal.Equal(want) {
		t.Errorf("first refusal at %v; want %v (during the Tuesday 07:00 hour)", firstRefusal, want)
	}
	// From Tuesday 12:00 the account takes 10 calls an hour again.
	for _, h := range []time.Time{tue12, tue12.Add(time.Hour)} {
		clock.Set(h)
		got := w.Hours(h)
		if got[len(got)-1].Calls != 10 {
			t.Errorf("Hours(%v) last bucket = %+v; want 10 calls", h, got[len(got)-1])
		}
	}
	// Tuesday 08:00 … 11:00 got nothing.
	for h := tue07.Add(time.Hour); h.Before(tue12); h = h.Add(time.Hour) {
		if hs := w.Hours(h); hs[len(hs)-1].Calls != 0 {
			t.Errorf("bucket %v = %d; want 0 (refused)", h, hs[len(hs)-1].Calls)
		}
	}
}

func TestWindow(t *testing.T) {
	l := Limits{DailyLimit: 100, Reserve: 10}
	h := func(n int) time.Time { return mon.Add(time.Duration(n) * time.Hour) }
	tests := []struct {
		name      string
		load      []HourCount
		add       map[int]int // hour → calls
		now       time.Time
		used      int
		remaining int
		nextAt    time.Time
		frees     int
	}{
		{name: "empty", now: h(30), used: 0, remaining: 90},
		{name: "one bucket", add: map[int]int{30: 5}, now: h(30).Add(59 * time.Minute), used: 5, remaining: 85, nextAt: h(54), frees: 5},
		{name: "bucket 23 hours back still counts", add: map[int]int{7: 4, 30: 1}, now: h(30), used: 5, remaining: 85, nextAt: h(31), frees: 4},
		{name: "bucket 24 hours back fell out", add: map[int]int{6: 4, 30: 1}, now: h(30), used: 1, remaining: 89, nextAt: h(54), frees: 1},
		{name: "future bucket not counted", add: map[int]int{31: 7, 30: 2}, now: h(30), used: 2, remaining: 88, nextAt: h(54), frees: 2},
		{name: "remaining never negative", add: map[int]int{29: 95}, now: h(30), used: 95, remaining: 0, nextAt: h(53), frees: 95},
		{name: "load sums repeats", load: []HourCount{{h(20), 3}, {h(20).Add(30 * time.Minute), 2}, {h(1), 50}}, now: h(30), used: 5, remaining: 85, nextAt: h(44), frees: 5},
		{name: "taking back stops at zero", add: map[int]int{30: -3}, now: h(30), used: 0, remaining: 90},
		{name: "before 1970", add: map[int]int{0: 1}, now: time.Unix(-1800, 0), used: 0, remaining: 90},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w := NewWindow(l)
			w.Load(tt.load)
			for hr, n := range tt.add {
				w.Add(h(hr).Add(15*time.Minute), n)
			}
			if got := w.Used(tt.now); got != tt.used {
				t.Errorf("Used(%v) = %d; want %d", tt.now, got, tt.used)
			}
			if got := w.Remaining(tt.now); got != tt.remaining {
				t.Errorf("Remaining(%v) = %d; want %d", tt.now, got, tt.remaining)
			}
			at, frees := w.NextFree(tt.now)
			if !at.Equal(tt.nextAt) || frees != tt.frees {
				t.Errorf("NextFree(%v) = %v, %d; want %v, %d", tt.now, at, frees, tt.nextAt, tt.frees)
			}
			hours := w.Hours(tt.now)
			sum := 0
			for i, hc := range hours {
				sum += hc.Calls
				if want := hourTime(hourOf(tt.now) - 23 + int64(i)); !hc.Hour.Equal(want) {
					t.Fatalf("Hours(%v)[%d].Hour = %v; want %v", tt.now, i, hc.Hour, want)
				}
			}
			if len(hours) != 24 || sum != tt.used {
				t.Errorf("Hours(%v): %d buckets summing to %d; want 24 summing to %d", tt.now, len(hours), sum, tt.used)
			}
		})
	}
}

func TestWindowOldAddIgnored(t *testing.T) {
	w := NewWindow(Limits{DailyLimit: 10})
	now := mon.Add(100 * time.Hour)
	w.Add(now, 3)
	w.Add(now.Add(-48*time.Hour), 5) // shares the ring slot; too old to matter
	if got := w.Used(now); got != 3 {
		t.Errorf("Used = %d; want 3", got)
	}
}

func TestLimitsCap(t *testing.T) {
	tests := []struct {
		l    Limits
		want int
	}{
		{Limits{DailyLimit: 5000, Reserve: 500}, 4500},
		{Limits{DailyLimit: 200}, 200},
		{Limits{DailyLimit: 10, Reserve: 20}, 0},
	}
	for _, tt := range tests {
		if got := tt.l.Cap(); got != tt.want {
			t.Errorf("%+v.Cap() = %d; want %d", tt.l, got, tt.want)
		}
	}
}

func TestWindowStatusJSON(t *testing.T) {
	l := Limits{DailyLimit: 100, Reserve: 10, Rate: 5}
	w := NewWindow(l)
	now := mon.Add(30*time.Hour + 15*time.Minute) // Tuesday 06:15
	w.Add(mon.Add(8*time.Hour), 4)                // Monday 08:00
	w.Add(now, 2)
	b, err := json.Marshal(w.Status(now))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"daily_limit": 100.0, "reserve": 10.0, "rate": 5.0, "used": 6.0, "remaining": 84.0,
		"window_start": "2024-01-01T07:00:00Z", "next_free_at": "2024-01-02T08:00:00Z",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("Status JSON %q = %v; want %v", k, got[k], v)
		}
	}
	hours, _ := got["hours"].([]any)
	if len(hours) != 24 {
		t.Fatalf("Status JSON hours: %d; want 24", len(hours))
	}
	if h := hours[1].(map[string]any); h["hour"] != "2024-01-01T08:00:00Z" || h["calls"] != 4.0 {
		t.Errorf("Status JSON hours[1] = %v; want Monday 08:00 with 4 calls", h)
	}
	if b, _ := json.Marshal(NewWindow(l).Status(now)); strings.Contains(string(b), "next_free_at") {
		t.Errorf("Status JSON of an empty window = %s; want no next_free_at", b)
	}
}

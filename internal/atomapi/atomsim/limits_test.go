package atomsim_test

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"runnerd/internal/atomapi/atomsim"
)

var tiny = atomsim.Options{AuditLogs: -1, Events: -1, ExecutionRecords: -1}

func withLimits(rate, daily int) atomsim.Options {
	o := tiny
	o.Rate, o.DailyLimit = rate, daily
	return o
}

// get sends a cheap request and returns its status.
func (c *sim) get() int {
	c.t.Helper()
	return c.req("GET", "/Environment/"+atomsim.EnvTest, nil).status
}

func TestRateSlidingWindow(t *testing.T) {
	c := newSim(t, withLimits(5, -1))
	// A burst at twice the rate, all at one instant: exactly the rate passes.
	var ok, refused int
	for range 10 {
		switch st := c.get(); st {
		case http.StatusOK:
			ok++
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("status %d", st)
		}
	}
	if ok != 5 || refused != 5 {
		t.Fatalf("burst of 10 at rate 5: %d accepted, %d refused; want 5, 5", ok, refused)
	}
	// Any 1-second window: 0.6 s later the five are still inside the window.
	c.s.Advance(600 * time.Millisecond)
	if st := c.get(); st != http.StatusServiceUnavailable {
		t.Errorf("0.6 s after a full second's worth: status %d; want 503", st)
	}
	// 1 s after the burst they have left it (refusals were not logged as accepted).
	c.s.Advance(400 * time.Millisecond)
	for i := range 5 {
		if st := c.get(); st != http.StatusOK {
			t.Errorf("request %d one second after the burst: status %d; want 200", i, st)
		}
	}
	// Two requests at 0.5 s intervals straddle windows: at +0.5 s with 5 in the
	// window a 6th is refused even though the "calendar second" changed.
	c.s.Advance(500 * time.Millisecond)
	if st := c.get(); st != http.StatusServiceUnavailable {
		t.Errorf("5 in the last 0.5 s: status %d; want 503", st)
	}
}

// TestRateRealClock runs a short burst and a paced client on the real clock.
func TestRateRealClock(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time pacing test")
	}
	const rate = 20
	opts := withLimits(rate, -1)
	opts.Now = time.Now
	c := newSim(t, opts)

	t.Run("burst", func(t *testing.T) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		refused := 0
		start := make(chan struct{})
		for range 2 * rate {
			wg.Go(func() {
				<-start
				if c.get() == http.StatusServiceUnavailable {
					mu.Lock()
					refused++
					mu.Unlock()
				}
			})
		}
		close(start)
		wg.Wait()
		if refused == 0 {
			t.Errorf("burst of %d at rate %d: no 503; want some", 2*rate, rate)
		}
	})
	time.Sleep(1100 * time.Millisecond) // let the burst leave the window
	t.Run("paced", func(t *testing.T) {
		gap := time.Second/rate + 10*time.Millisecond
		for i := 0; i < 2*rate-rate/4; i++ { // about 2 s
			if st := c.get(); st != http.StatusOK {
				t.Fatalf("paced request %d: status %d; want 200", i, st)
			}
			time.Sleep(gap)
		}
	})
}

// TestDailyAllowance reproduces the overview's example: limit 200, 10 calls an
// hour from Monday 12:00 → refused during the Tuesday 07:00 hour, accepted
// again from Tuesday 12:00.
func TestDailyAllowance(t *testing.T) {
	c := newSim(t, withLimits(1000, 200))
	monday := t0 // 2025-03-03 12:00 UTC, a Monday
	if monday.Weekday() != time.Monday || monday.Hour() != 12 {
		t.Fatalf("t0 = %v; want a Monday noon", monday)
	}
	firstRefused := time.Time{}
	for h := range 30 { // Monday 12:00 … Tuesday 17:00
		hour := monday.Add(time.Duration(h) * time.Hour)
		c.s.SetNow(hour.Add(30 * time.Minute))
		accepted := 0
		for range 10 {
			if c.get() == http.StatusOK {
				accepted++
			}
		}
		switch {
		case hour.Before(monday.Add(20 * time.Hour)): // Monday 12:00 … Tuesday 07:00
			if accepted != 10 {
				t.Errorf("%s: %d of 10 accepted; want 10", hour.Format("Mon 15:04"), accepted)
			}
		case hour.Before(monday.Add(24 * time.Hour)): // Tuesday 08:00 … 11:00
			if accepted != 0 {
				t.Errorf("%s: %d of 10 accepted; want 0", hour.Format("Mon 15:04"), accepted)
			}
		default: // from Tuesday 12:00 each hour frees the bucket of 24 h before
			if accepted != 10 {
				t.Errorf("%s: %d of 10 accepted; want 10", hour.Format("Mon 15:04"), accepted)
			}
		}
		if accepted < 10 && firstRefused.IsZero() {
			firstRefused = hour
		}
		used, _ := c.s.Usage()
		if h == 19 { // the limit is reached during the 07:00 hour: an 11th call there is refused
			if used != 200 {
				t.Errorf("Tuesday 07:00 after 10 calls: used %d; want 200", used)
			}
			if st := c.get(); st != http.StatusServiceUnavailable {
				t.Errorf("11th call in the Tuesday 07:00 hour: status %d; want 503", st)
			}
		}
		used, buckets := c.s.Usage()
		if used > 200 {
			t.Errorf("%s: used %d; want ≤ 200", hour.Format("Mon 15:04"), used)
		}
		if len(buckets) > 24 {
			t.Errorf("%s: %d buckets in the window; want ≤ 24", hour.Format("Mon 15:04"), len(buckets))
		}
	}
	if want := monday.Add(20 * time.Hour); !firstRefused.Equal(want) {
		t.Errorf("first hour with refusals: %s; want %s", firstRefused.Format("Mon 15:04"), want.Format("Mon 15:04"))
	}
}

func TestAuthBeforeLimits(t *testing.T) {
	c := newSim(t, withLimits(2, 10))
	for range 3 {
		r, _ := http.NewRequest("GET", c.base+"/Environment/env-test", nil)
		r.SetBasicAuth(atomsim.DefaultUser, "wrong")
		r.Header.Set("Accept", "application/json")
		resp, err := c.hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("wrong password: status %d; want 401", resp.StatusCode)
		}
	}
	if used, _ := c.s.Usage(); used != 0 {
		t.Errorf("after three 401s used = %d; want 0", used)
	}
	if st := c.get(); st != http.StatusOK {
		t.Errorf("first good request after 401s: %d; want 200", st)
	}
}

package budget_test

import (
	"context"
	"errors"
	"flag"
	"net/http/httptest"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/budget/apigate"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/budget"
)

var flagMargin = flag.Duration("budget.margin", budget.DefaultRateMargin, "integration: the gate's rate margin")

var flagReal = flag.Bool("budget.real", false, "integration: the issue's full run (rate 5, 500 calls) instead of the short one (rate 20, 200 calls)")

// runSize returns the rate and the number of calls of an integration run.
func runSize() (rate, calls int) {
	switch {
	case *flagReal:
		return 5, 500
	case testing.Short():
		return 20, 60
	}
	return 20, 200
}

type simEnv struct {
	sim *atomsim.Server
	url string
}

// startSim serves a simulator with the given rate on 127.0.0.1.
func startSim(tb testing.TB, rate int) simEnv {
	tb.Helper()
	sim := atomsim.New(atomsim.Options{Rate: rate, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	ts := httptest.NewServer(sim)
	tb.Cleanup(ts.Close)
	return simEnv{sim: sim, url: ts.URL + "/api/rest/v1"}
}

func newClient(tb testing.TB, env simEnv, gate atomapi.Gate, rec atomapi.Recorder) *atomapi.Client {
	tb.Helper()
	c, err := atomapi.New(atomapi.Config{
		BaseURL:     env.url,
		AccountID:   atomsim.DefaultAccount,
		Credentials: atomapi.NewCredentials("runnerd@sim", "sim-password"),
		Gate:        gate,
		Recorder:    rec,
		Retry:       atomapi.RetryPolicy{MaxAttempts: 1}, // every 503 shows
	})
	if err != nil {
		tb.Fatalf("atomapi.New: %v", err)
	}
	return c
}

// drive makes calls GETs from workers goroutines, pacing each worker's calls
// with pause (0 for none), and returns the errors other than 503. With retry a
// call refused with 503 is made again (after the pause) until it succeeds, as a
// naive client would.
func drive(ctx context.Context, c *atomapi.Client, workers, calls int, pause time.Duration, retry bool) []error {
	var next atomic.Int64
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for next.Add(1) <= int64(calls) {
				for attempt := 1; ; attempt++ {
					var p atomapi.Process
					err := c.Get(ctx, "Process", "proc-orders", &p)
					if err != nil && !errors.Is(err, atomapi.ErrRateLimited) {
						mu.Lock()
						errs = append(errs, err)
						mu.Unlock()
					}
					if pause > 0 {
						time.Sleep(pause)
					}
					if err == nil || !retry || attempt == 1000 {
						break
					}
				}
			}
		})
	}
	wg.Wait()
	return errs
}

type figures struct {
	calls, ok, status503 int
	maxWindow            int
	perSecond            float64 // accepted calls per second over their span
}

// measure reads the simulator's request log.
func measure(env simEnv, rate int) figures {
	var f figures
	var times []time.Time
	for _, r := range env.sim.Requests() {
		f.calls++
		switch r.Status {
		case 503:
			f.status503++
		case 200:
			f.ok++
		}
		if r.Status != 503 {
			times = append(times, r.Time)
		}
	}
	var all []time.Time
	for _, r := range env.sim.Requests() {
		all = append(all, r.Time)
	}
	f.maxWindow = maxInWindow(all, time.Second)
	if len(times) > 1 {
		sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
		f.perSecond = float64(len(times)) / (times[len(times)-1].Sub(times[0]).Seconds() + 1/float64(rate))
	}
	return f
}

func maxInWindow(ts []time.Time, w time.Duration) int {
	s := append([]time.Time(nil), ts...)
	sort.Slice(s, func(i, j int) bool { return s[i].Before(s[j]) })
	best, j := 0, 0
	for i := range s {
		for j < len(s) && s[j].Before(s[i].Add(w)) {
			j++
		}
		best = max(best, j-i)
	}
	return best
}

// TestGateAgainstSimulator: 10 goroutines share one Gate in front of the
// client; the simulator sees no 1-second window above the rate and answers no
// 503.
func TestGateAgainstSimulator(t *testing.T) {
	rate, calls := runSize()
	env := startSim(t, rate)
	l := budget.Limits{DailyLimit: 100000, Reserve: 10000, Rate: float64(rate)}
	w := budget.NewWindow(l)
	gate := budget.NewGate(l, w, budget.NewRateLimiterMargin(l.Rate, *flagMargin), budget.RealClock(), budget.NewClassifier())
	// Note when the gate let each attempt go, to compare with its arrival.
	var mu sync.Mutex
	released := map[string]time.Time{}
	timed := atomapi.GateFunc(func(ctx context.Context, c *atomapi.Call) error {
		err := gate.Wait(ctx, apigate.Ask(c))
		mu.Lock()
		released[c.RequestID] = time.Now()
		mu.Unlock()
		return err
	})
	c := newClient(t, env, timed, apigate.Recorder(gate, nil))
	if errs := drive(context.Background(), c, 10, calls, 0, false); len(errs) > 0 {
		t.Fatalf("%d calls failed, the first: %v", len(errs), errs[0])
	}
	f := measure(env, rate)
	t.Logf("margin %v, rate %d, %d calls: %.2f calls/s = %.3f × rate, max %d in any 1 s window, %d × 503",
		*flagMargin, rate, f.calls, f.perSecond, f.perSecond/float64(rate), f.maxWindow, f.status503)
	var delays []time.Duration
	for _, r := range env.sim.Requests() {
		if at, ok := released[r.RequestID]; ok {
			delays = append(delays, r.Time.Sub(at))
		}
	}
	if n := len(delays); n > 0 {
		sort.Slice(delays, func(i, j int) bool { return delays[i] < delays[j] })
		t.Logf("gate → simulator delay: p50 %v, p90 %v, p99 %v, max %v", delays[n/2], delays[n*9/10], delays[n*99/100], delays[n-1])
	}
	if f.calls != calls || f.ok != calls {
		t.Errorf("simulator saw %d requests, %d OK; want %d, all OK", f.calls, f.ok, calls)
	}
	if f.status503 != 0 {
		t.Errorf("simulator answered 503 %d times; want 0", f.status503)
	}
	if f.maxWindow > rate {
		t.Errorf("max requests in a 1 s window at the simulator = %d; want ≤ %d", f.maxWindow, rate)
	}
	if got := w.Used(time.Now()); got != calls {
		t.Errorf("window Used = %d; want %d (one per attempt)", got, calls)
	}
	if s := gate.Observe(true, 200); s.Kind != budget.KindOK {
		t.Errorf("classification after the run = %q; want ok", s.Kind)
	}
}

// BenchmarkRateUtilisation compares, against the simulator, runnerd's gate (10
// goroutines; default margin, 50 ms, 100 ms), a client that sleeps 1/rate
// between calls (the Boomi CLI's 0.2 s at 5/s) alone and as 10 goroutines, and
// 10 unpaced goroutines; the last ones retry a 503 until the call succeeds.
// Each iteration is one successful call; run with -benchtime=200x (or 500x with
// -budget.real). Metrics: util = successful calls/s ÷ rate, max/1s = most
// requests the simulator received in any 1-second window, 503s = refusals.
func BenchmarkRateUtilisation(b *testing.B) {
	rate, _ := runSize()
	pause := time.Second / time.Duration(rate)
	cases := []struct {
		name    string
		workers int
		gated   bool
		margin  time.Duration
		pause   time.Duration
	}{
		{"gate/10", 10, true, budget.DefaultRateMargin, 0},
		{"gate+50ms/10", 10, true, 50 * time.Millisecond, 0},
		{"gate+100ms/10", 10, true, 100 * time.Millisecond, 0},
		{"sleep/1", 1, false, 0, pause},
		{"sleep/10", 10, false, 0, pause},
		{"unpaced/10", 10, false, 0, 0},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			env := startSim(b, rate)
			var gate atomapi.Gate
			if tc.gated {
				l := budget.Limits{DailyLimit: 1 << 30, Rate: float64(rate)}
				gate = apigate.Gate{G: budget.NewGate(l, budget.NewWindow(l), budget.NewRateLimiterMargin(l.Rate, tc.margin), budget.RealClock(), nil)}
			}
			c := newClient(b, env, gate, nil)
			b.ResetTimer()
			if errs := drive(context.Background(), c, tc.workers, b.N, tc.pause, true); len(errs) > 0 {
				b.Fatalf("%d calls failed, the first: %v", len(errs), errs[0])
			}
			b.StopTimer()
			f := measure(env, rate)
			b.ReportMetric(f.perSecond/float64(rate), "util")
			b.ReportMetric(float64(f.maxWindow), "max/1s")
			b.ReportMetric(float64(f.status503), "503s")
		})
	}
}

package budget_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/budget"
	"runnerd/internal/budget/apigate"
)

// jitterSim serves a simulator whose requests reach it after a random delay
// in [0, jitter): the spread between runnerd's pacing and the arrival at the
// platform that the rate margin is for. The simulator counts a request's
// arrival after the delay, as the platform would.
func jitterSim(tb testing.TB, rate int, jitter time.Duration, seed uint64) simEnv {
	tb.Helper()
	sim := atomsim.New(atomsim.Options{Rate: rate, DailyLimit: -1, AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	var mu sync.Mutex
	rng := rand.New(rand.NewPCG(seed, 3))
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if jitter > 0 {
			mu.Lock()
			d := time.Duration(rng.Int64N(int64(jitter)))
			mu.Unlock()
			time.Sleep(d)
		}
		sim.ServeHTTP(w, r)
	}))
	tb.Cleanup(ts.Close)
	return simEnv{sim: sim, url: ts.URL + "/api/rest/v1"}
}

// adaptiveRec feeds each answer's round trip to a MarginEstimator and the
// limiter, as the engine's call hooks do.
type adaptiveRec struct {
	est *budget.MarginEstimator
	lim *budget.RateLimiter
}

func (a adaptiveRec) Begin(context.Context, *atomapi.Call) error { return nil }
func (a adaptiveRec) End(_ context.Context, _ *atomapi.Call, r atomapi.Result) {
	if r.RoundTrip > 0 {
		a.est.Observe(r.RoundTrip)
		a.lim.SetMargin(a.est.Margin())
	}
}

// BenchmarkRateJitter: the daemon's paced gate, 10 goroutines, at rate 5 and
// 10 against a simulator with 0, 20 and 60 ms of arrival jitter, with the
// fixed 50 ms margin and with the adaptive one. util = successful calls/s ÷
// rate; max/1s at the simulator; 503s. Run with -benchtime=Nx (N calls).
func BenchmarkRateJitter(b *testing.B) {
	seed := uint64(time.Now().UnixNano())
	b.Logf("seed %d", seed)
	for _, rate := range []int{5, 10} {
		for _, jitter := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond} {
			for _, adaptive := range []bool{false, true} {
				name := "fixed50ms"
				if adaptive {
					name = "adaptive"
				}
				b.Run(fmtCase(rate, jitter, name), func(b *testing.B) {
					env := jitterSim(b, rate, jitter, seed)
					l := budget.Limits{DailyLimit: 1 << 30, Rate: float64(rate)}
					lim := budget.NewRateLimiterMargin(l.Rate, budget.DefaultRateMargin)
					gate := apigate.Gate{G: budget.NewGate(l, budget.NewWindow(l), lim, budget.RealClock(), nil), Paced: true}
					var rec atomapi.Recorder
					est := budget.NewMarginEstimator(budget.DefaultRateMargin)
					if adaptive {
						rec = adaptiveRec{est: est, lim: lim}
					}
					c := newClient(b, env, gate, rec)
					b.ResetTimer()
					if errs := drive(context.Background(), c, 10, b.N, 0, true); len(errs) > 0 {
						b.Fatalf("%d calls failed, the first: %v", len(errs), errs[0])
					}
					b.StopTimer()
					f := measure(env, rate)
					b.ReportMetric(f.perSecond/float64(rate), "util")
					b.ReportMetric(float64(f.maxWindow), "max/1s")
					b.ReportMetric(float64(f.status503), "503s")
					_, w := lim.Limit()
					b.ReportMetric(float64((w - time.Second).Milliseconds()), "margin-ms")
				})
			}
		}
	}
}

func fmtCase(rate int, jitter time.Duration, margin string) string {
	return fmt.Sprintf("rate%d/jitter%dms/%s", rate, jitter.Milliseconds(), margin)
}

package budget_test

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"runnerd/internal/budget/apigate"

	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
)

// slowRecorder is a ledger whose commits take a varying time, as SQLite's do
// with synchronous=FULL on a busy disk: one writer, so commits queue up.
type slowRecorder struct {
	mu  sync.Mutex
	rng *rand.Rand
}

func (s *slowRecorder) Begin(ctx context.Context, c *atomapi.Call) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	time.Sleep(time.Duration(s.rng.IntN(60)) * time.Millisecond)
	return nil
}

func (s *slowRecorder) End(context.Context, *atomapi.Call, atomapi.Result) {}

// TestPacedGateWithSlowLedger: with the rate wait after a slow ledger commit
// (PacedGate, what the daemon uses) the simulator sees no 1-second window above
// the rate; the same gate waiting before the commit is shown for comparison
// (logged, not asserted: it fails only sometimes, which is the point).
func TestPacedGateWithSlowLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("real-time rate test")
	}
	const rate, calls = 10, 40
	for _, paced := range []bool{true, false} {
		env := startSim(t, rate)
		l := budget.Limits{DailyLimit: 100000, Reserve: 10000, Rate: rate}
		g := budget.NewGate(l, budget.NewWindow(l), budget.NewRateLimiter(rate), budget.RealClock(), nil)
		gate := apigate.Gate{G: g, Paced: paced}
		c := newClient(t, env, gate, &slowRecorder{rng: rand.New(rand.NewPCG(1, 2))})
		if errs := drive(context.Background(), c, 8, calls, 0, false); len(errs) > 0 {
			t.Fatalf("%d calls failed, the first: %v", len(errs), errs[0])
		}
		f := measure(env, rate)
		t.Logf("paced=%v: %d calls, max %d in any 1 s window, %d × 503", paced, f.calls, f.maxWindow, f.status503)
		if paced && (f.status503 != 0 || f.maxWindow > rate) {
			t.Errorf("paced gate: %d × 503, max %d in a 1 s window; want 0 and ≤ %d", f.status503, f.maxWindow, rate)
		}
	}
}

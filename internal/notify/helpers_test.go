package notify

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"runnerd/internal/config"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// request is one POST a receiver got.
type request struct {
	header http.Header
	body   []byte
	fields map[string]any
}

// receiver is a webhook endpoint on 127.0.0.1.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []request
	status func(n int) int // the status for the n-th request (1-based); nil: 200
	hits   chan struct{}   // one per request, buffered
}

func newReceiver(t *testing.T, status func(n int) int) *receiver {
	t.Helper()
	r := &receiver{status: status, hits: make(chan struct{}, 1000)}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		var fields map[string]any
		json.Unmarshal(body, &fields)
		r.mu.Lock()
		r.got = append(r.got, request{header: req.Header.Clone(), body: body, fields: fields})
		n := len(r.got)
		r.mu.Unlock()
		code := 200
		if r.status != nil {
			code = r.status(n)
		}
		w.WriteHeader(code)
		r.hits <- struct{}{}
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *receiver) requests() []request {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]request(nil), r.got...)
}

// events returns the event names received, in order.
func (r *receiver) events() []string {
	var out []string
	for _, q := range r.requests() {
		s, _ := q.fields["event"].(string)
		out = append(out, s)
	}
	return out
}

// memRecorder keeps deliveries in memory.
type memRecorder struct {
	mu   sync.Mutex
	all  []Delivery
	each chan Delivery
}

func newMemRecorder() *memRecorder { return &memRecorder{each: make(chan Delivery, 1000)} }

func (m *memRecorder) RecordDelivery(_ context.Context, d Delivery) error {
	m.mu.Lock()
	m.all = append(m.all, d)
	m.mu.Unlock()
	m.each <- d
	return nil
}

func (m *memRecorder) deliveries() []Delivery {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Delivery(nil), m.all...)
}

// next waits for the next recorded delivery.
func (m *memRecorder) next(t *testing.T) Delivery {
	t.Helper()
	select {
	case d := <-m.each:
		return d
	case <-time.After(10 * time.Second):
		t.Fatalf("no delivery recorded within 10s")
		return Delivery{}
	}
}

// hookConfig is a webhook target at url receiving every event.
func hookConfig(name, url string) config.Notify {
	return config.Notify{
		Name: name, Kind: config.NotifyWebhook, URL: url,
		Events: append([]string(nil), config.Events...), MinPriority: "low",
		Timeout: config.Duration{Duration: 5 * time.Second}, Thresholds: []int{50, 80, 95},
	}
}

// newTestNotifier starts a notifier with fast retries and no budget ticker,
// closed (flushing its queues) when the test ends.
func newTestNotifier(t *testing.T, o Options) *Notifier {
	t.Helper()
	if o.Backoff == nil {
		o.Backoff = func(int) time.Duration { return time.Millisecond }
	}
	if o.BudgetEvery == 0 {
		o.BudgetEvery = -1
	}
	if o.Host == "" {
		o.Host = "testhost"
	}
	n, err := New(o)
	if err != nil {
		t.Fatalf("New() = %v", err)
	}
	t.Cleanup(func() { n.Close(context.Background()) })
	return n
}

// flush closes n, which delivers what is queued.
func flush(t *testing.T, n *Notifier) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	n.Close(ctx)
}

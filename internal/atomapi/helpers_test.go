package atomapi_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"runnerd/internal/atomapi"
)

const (
	testAccount  = "acct-1"
	testUser     = "BOOMI_TOKEN.user@example.com"
	testPassword = "tok+en/with=chars"
	testPrefix   = "/api/rest/v1/" + testAccount
)

// recorder is a Recorder that keeps every Begin and End.
type recorder struct {
	mu       sync.Mutex
	begun    []atomapi.Call
	ended    []atomapi.Result
	endCalls map[string]int // by RequestID
	beginErr error
}

func (r *recorder) Begin(_ context.Context, c *atomapi.Call) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.beginErr != nil {
		return r.beginErr
	}
	c.LedgerID = int64(len(r.begun) + 1)
	r.begun = append(r.begun, *c)
	return nil
}

func (r *recorder) End(_ context.Context, c *atomapi.Call, res atomapi.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.endCalls == nil {
		r.endCalls = map[string]int{}
	}
	r.endCalls[c.RequestID]++
	r.ended = append(r.ended, res)
}

// hasBegun reports whether Begin was called for the request id.
func (r *recorder) hasBegun(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.begun {
		if c.RequestID == id {
			return true
		}
	}
	return false
}

func (r *recorder) calls() ([]atomapi.Call, []atomapi.Result) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]atomapi.Call(nil), r.begun...), append([]atomapi.Result(nil), r.ended...)
}

// checkBalanced fails unless every Begin had exactly one End.
func (r *recorder) checkBalanced(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.ended) != len(r.begun) {
		t.Errorf("recorder: %d Begin, %d End; want equal", len(r.begun), len(r.ended))
	}
	for _, c := range r.begun {
		if n := r.endCalls[c.RequestID]; n != 1 {
			t.Errorf("recorder: End called %d times for attempt %d (%s); want 1", n, c.Attempt, c.RequestID)
		}
	}
}

// harness is a client wired to an httptest server, a recorder and a fake sleep.
type harness struct {
	c      *atomapi.Client
	srv    *httptest.Server
	rec    *recorder
	mu     sync.Mutex
	sleeps []time.Duration
}

func (h *harness) slept() []time.Duration {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]time.Duration(nil), h.sleeps...)
}

// newHarness starts srv with handler and a client for it. mod may adjust the
// config before New.
func newHarness(t *testing.T, handler http.HandlerFunc, mod ...func(*atomapi.Config)) *harness {
	t.Helper()
	h := &harness{rec: &recorder{}}
	h.srv = httptest.NewServer(handler)
	t.Cleanup(h.srv.Close)
	cfg := atomapi.Config{
		BaseURL:     h.srv.URL + "/api/rest/v1",
		AccountID:   testAccount,
		Credentials: atomapi.NewCredentials(testUser, testPassword),
		Recorder:    h.rec,
		Retry:       atomapi.RetryPolicy{MaxAttempts: 3, Base: 100 * time.Millisecond, Max: 5 * time.Second},
		Sleep: func(ctx context.Context, d time.Duration) error {
			h.mu.Lock()
			h.sleeps = append(h.sleeps, d)
			h.mu.Unlock()
			return ctx.Err()
		},
		Now: func() time.Time { return time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) },
	}
	for _, m := range mod {
		m(&cfg)
	}
	c, err := atomapi.New(cfg)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.c = c
	return h
}

// hijackClose drops the connection without an answer.
func hijackClose(w http.ResponseWriter) {
	conn, _, err := w.(http.Hijacker).Hijack()
	if err != nil {
		panic(err)
	}
	conn.Close()
}

func errorsAs[T error](err error) (T, bool) {
	var target T
	ok := errors.As(err, &target)
	return target, ok
}

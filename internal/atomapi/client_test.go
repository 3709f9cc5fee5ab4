package atomapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/atomapi"
)

// pagingServer serves n AuditLog records 100 per page; tokens contain + / =.
type pagingServer struct {
	t        *testing.T
	n        int
	requests atomic.Int64
	omitKey  bool // answer an empty result without the "result" key
	numberOf func(page, total int) int
}

func (s *pagingServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	s.requests.Add(1)
	body, _ := io.ReadAll(r.Body)
	offset := 0
	switch {
	case strings.HasSuffix(r.URL.Path, "/AuditLog/query"):
		if ct := r.Header.Get("Content-Type"); ct != "application/json" {
			s.t.Errorf("query Content-Type = %q; want application/json", ct)
		}
	case strings.HasSuffix(r.URL.Path, "/AuditLog/queryMore"):
		if ct := r.Header.Get("Content-Type"); ct != "text/plain" {
			s.t.Errorf("queryMore Content-Type = %q; want text/plain", ct)
		}
		tok := string(body)
		if !strings.HasPrefix(tok, "tok+/") || !strings.HasSuffix(tok, "==") {
			s.t.Errorf("queryMore body = %q; want the raw token", tok)
		}
		var err error
		offset, err = strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(tok, "tok+/"), "=="))
		if err != nil {
			s.t.Errorf("queryMore token %q: %v", tok, err)
		}
	default:
		s.t.Errorf("unexpected %s %s", r.Method, r.URL.Path)
	}
	end := min(offset+atomapi.PageSize, s.n)
	page := map[string]any{"@type": "QueryResult"}
	var recs []map[string]any
	for i := offset; i < end; i++ {
		recs = append(recs, map[string]any{"@type": "AuditLog", "documentId": fmt.Sprintf("doc-%d", i), "date": "2026-01-01T00:00:00Z"})
	}
	if len(recs) > 0 || !s.omitKey {
		page["result"] = recs
	}
	page["numberOfResults"] = s.n
	if s.numberOf != nil {
		page["numberOfResults"] = s.numberOf(len(recs), s.n)
	}
	if end < s.n {
		page["queryToken"] = fmt.Sprintf("tok+/%d==", end)
	}
	json.NewEncoder(w).Encode(page)
}

func TestQueryPaging(t *testing.T) {
	tests := []struct {
		name         string
		n            int
		omitKey      bool
		wantRequests int64
	}{
		{"empty, no result key", 0, true, 1},
		{"empty result", 0, false, 1},
		{"exactly 100", 100, false, 1},
		{"101", 101, false, 2},
		{"1234", 1234, false, 13},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := &pagingServer{t: t, n: tt.n, omitKey: tt.omitKey}
			h := newHarness(t, srv.ServeHTTP)
			got, err := atomapi.QueryAll[atomapi.AuditLog](t.Context(), h.c, "AuditLog", atomapi.QueryConfig{})
			if err != nil {
				t.Fatalf("QueryAll: %v", err)
			}
			if len(got) != tt.n {
				t.Fatalf("QueryAll returned %d records; want %d", len(got), tt.n)
			}
			for i, a := range got {
				if want := fmt.Sprintf("doc-%d", i); a.DocumentID != want {
					t.Fatalf("record %d = %q; want %q", i, a.DocumentID, want)
				}
			}
			if n := srv.requests.Load(); n != tt.wantRequests {
				t.Errorf("requests = %d; want %d", n, tt.wantRequests)
			}
			calls, _ := h.rec.calls()
			if int64(len(calls)) != tt.wantRequests {
				t.Errorf("ledger rows = %d; want %d", len(calls), tt.wantRequests)
			}
			for i, c := range calls {
				want := "AuditLog.queryMore"
				if i == 0 {
					want = "AuditLog.query"
				}
				if c.Operation != want || c.Attempt != 1 || !c.Safe {
					t.Errorf("call %d = %s attempt %d safe %v; want %s attempt 1 safe", i, c.Operation, c.Attempt, c.Safe, want)
				}
			}
			h.rec.checkBalanced(t)
		})
	}
}

func TestQueryStopsWhenConsumerStops(t *testing.T) {
	srv := &pagingServer{t: t, n: 1234}
	h := newHarness(t, srv.ServeHTTP)
	pages := 0
	for page, err := range h.c.Query(t.Context(), "AuditLog", atomapi.QueryConfig{}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		if len(page.Result) != 100 || page.QueryToken == "" {
			t.Errorf("page = %d records, token %q; want 100 and a token", len(page.Result), page.QueryToken)
		}
		if pages == 2 {
			break
		}
	}
	if n := srv.requests.Load(); n != 2 {
		t.Errorf("requests = %d; want 2 (no page fetched after the consumer stopped)", n)
	}
}

func TestQueryNumberOfResultsMismatchIsLogged(t *testing.T) {
	tests := []struct {
		name     string
		numberOf func(page, total int) int
		wantLog  bool
	}{
		{"total on every page", func(page, total int) int { return total }, false},
		{"page count", func(page, total int) int { return page }, false},
		{"neither", func(page, total int) int { return 7 }, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var logs bytes.Buffer
			srv := &pagingServer{t: t, n: 150, numberOf: tt.numberOf}
			h := newHarness(t, srv.ServeHTTP, func(c *atomapi.Config) {
				c.Logger = slog.New(slog.NewTextHandler(&logs, nil))
			})
			got, err := atomapi.QueryAll[atomapi.AuditLog](t.Context(), h.c, "AuditLog", atomapi.QueryConfig{})
			if err != nil || len(got) != 150 {
				t.Fatalf("QueryAll = %d records, %v; want 150, nil", len(got), err)
			}
			if logged := strings.Contains(logs.String(), "numberOfResults"); logged != tt.wantLog {
				t.Errorf("mismatch logged = %v; want %v; log:\n%s", logged, tt.wantLog, logs.String())
			}
		})
	}
}

func TestQueryMoreSameTokenStops(t *testing.T) {
	var n atomic.Int64
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 10 {
			t.Errorf("request %d: the client keeps paging", n.Load())
			http.Error(w, "stop", 400)
			return
		}
		io.WriteString(w, `{"numberOfResults":1,"result":[{}],"queryToken":"same"}`)
	})
	_, err := atomapi.QueryAll[atomapi.AuditLog](t.Context(), h.c, "AuditLog", atomapi.QueryConfig{})
	if !errors.Is(err, atomapi.ErrDecode) {
		t.Errorf("QueryAll = %v; want ErrDecode for a repeated token", err)
	}
	if n.Load() != 2 {
		t.Errorf("requests = %d; want 2", n.Load())
	}
}

func TestQueryAllBadRecord(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"numberOfResults":2,"result":[{"documentId":"a"},{"documentId":5}]}`)
	})
	got, err := atomapi.QueryAll[atomapi.AuditLog](t.Context(), h.c, "AuditLog", atomapi.QueryConfig{})
	if de, ok := errorsAs[*atomapi.DecodeError](err); !ok || de.Operation != "AuditLog.query" {
		t.Errorf("QueryAll = %v; want a DecodeError for AuditLog.query", err)
	}
	if len(got) != 1 {
		t.Errorf("QueryAll kept %d records; want the 1 decoded before the bad one", len(got))
	}
}

func TestGateRefusal(t *testing.T) {
	var hits atomic.Int64
	refused := errors.New("budget: deferred")
	var asked atomapi.Call
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }, func(c *atomapi.Config) {
		c.Gate = atomapi.GateFunc(func(ctx context.Context, call *atomapi.Call) error {
			asked = *call
			return refused
		})
	})
	ctx := atomapi.WithCallInfo(t.Context(), atomapi.CallInfo{RunID: 3, Job: "export", Recovery: true})
	_, err := h.c.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: "a", ProcessID: "p"})
	if !errors.Is(err, refused) {
		t.Errorf("CreateExecutionRequest = %v; want the gate's error", err)
	}
	if hits.Load() != 0 {
		t.Errorf("server requests = %d; want 0", hits.Load())
	}
	if calls, _ := h.rec.calls(); len(calls) != 0 {
		t.Errorf("Begin calls = %d; want 0", len(calls))
	}
	if asked.Operation != "ExecutionRequest.create" || asked.RunID != 3 || !asked.Recovery || asked.Safe || asked.RequestID == "" {
		t.Errorf("gate saw %+v; want the filled-in Call", asked)
	}
}

func TestRecorderBeginFailure(t *testing.T) {
	var hits atomic.Int64
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { hits.Add(1) })
	h.rec.beginErr = errors.New("disk full")
	_, err := h.c.CreateExecutionRequest(t.Context(), atomapi.ExecutionRequest{AtomID: "a", ProcessID: "p"})
	if !errors.Is(err, h.rec.beginErr) || !strings.Contains(err.Error(), "ExecutionRequest.create") {
		t.Errorf("CreateExecutionRequest = %v; want a wrapped Begin error", err)
	}
	if hits.Load() != 0 || len(h.rec.ended) != 0 {
		t.Errorf("requests = %d, End calls = %d; want 0, 0", hits.Load(), len(h.rec.ended))
	}
}

func TestRetriesAreRecordedPerAttempt(t *testing.T) {
	var mu sync.Mutex
	var seen []string
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		seen = append(seen, r.Header.Get(atomapi.RequestIDHeader))
		n := len(seen)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(503)
			return
		}
		io.WriteString(w, `{"requestId":"executionrecord-1"}`)
	})
	got, err := h.c.CreateExecutionRequest(t.Context(), atomapi.ExecutionRequest{AtomID: "a", ProcessID: "p"})
	if err != nil || got.RequestID != "executionrecord-1" {
		t.Fatalf("CreateExecutionRequest = %+v, %v; want success after two 503s", got, err)
	}
	calls, results := h.rec.calls()
	if len(calls) != 3 || len(seen) != 3 {
		t.Fatalf("attempts = %d recorded, %d received; want 3, 3", len(calls), len(seen))
	}
	ids := map[string]bool{}
	for i, c := range calls {
		if c.Attempt != i+1 || c.RequestID != seen[i] || ids[c.RequestID] {
			t.Errorf("attempt %d: Call %+v, header id %q; want Attempt %d, the header's id, unique", i, c, seen[i], i+1)
		}
		ids[c.RequestID] = true
	}
	wantStatus := []int{503, 503, 200}
	for i, r := range results {
		if r.Status != wantStatus[i] || !r.Sent || (i < 2) != errors.Is(r.Err, atomapi.ErrRateLimited) {
			t.Errorf("Result %d = %+v; want status %d", i, r, wantStatus[i])
		}
	}
	if results[2].PlatformID != "executionrecord-1" {
		t.Errorf("PlatformID = %q; want executionrecord-1", results[2].PlatformID)
	}
	h.rec.checkBalanced(t)
}

func TestDialRefusedIsRetriedForUnsafe(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	h := newHarness(t, nil, func(c *atomapi.Config) { c.BaseURL = "http://" + addr + "/api/rest/v1" })

	_, err = h.c.CreateDeployedPackage(t.Context(), atomapi.DeployedPackage{EnvironmentID: "e", PackageID: "p"})

	te, ok := errorsAs[*atomapi.TransportError](err)
	if !ok || te.Sent || !errors.Is(err, atomapi.ErrTransport) {
		t.Fatalf("CreateDeployedPackage = %v; want a TransportError with Sent false", err)
	}
	if strings.Contains(err.Error(), testPassword) {
		t.Errorf("error %q contains the password", err)
	}
	calls, results := h.rec.calls()
	if len(calls) != 3 {
		t.Errorf("attempts = %d; want 3 (nothing was sent, so an unsafe call may retry)", len(calls))
	}
	for i, r := range results {
		if r.Sent || r.Status != 0 {
			t.Errorf("Result %d = %+v; want Sent false, status 0", i, r)
		}
	}
	h.rec.checkBalanced(t)
}

func TestAttemptTimeout(t *testing.T) {
	tests := []struct {
		name     string
		call     func(ctx context.Context, c *atomapi.Client) error
		attempts int
	}{
		{"unsafe not retried", func(ctx context.Context, c *atomapi.Client) error {
			return c.ExecuteProcess(ctx, atomapi.ExecuteProcessRequest{AtomID: "a", ProcessID: "p"})
		}, 1},
		{"safe retried", func(ctx context.Context, c *atomapi.Client) error {
			_, err := c.GetDeployment(ctx, "d")
			return err
		}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { waitForClient(r) },
				func(c *atomapi.Config) { c.Timeout = 50 * time.Millisecond })
			err := tt.call(t.Context(), h.c)
			te, ok := errorsAs[*atomapi.TransportError](err)
			if !ok || !te.Sent || !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("err = %v; want a sent TransportError wrapping DeadlineExceeded", err)
			}
			if calls, _ := h.rec.calls(); len(calls) != tt.attempts {
				t.Errorf("attempts = %d; want %d", len(calls), tt.attempts)
			}
			h.rec.checkBalanced(t)
		})
	}
}

func TestCallerCancelEndsTheAttempt(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		cancel()
		waitForClient(r)
	})
	_, err := h.c.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: "a", ProcessID: "p"})
	if !errors.Is(err, context.Canceled) || !errors.Is(err, atomapi.ErrTransport) {
		t.Fatalf("err = %v; want a TransportError wrapping context.Canceled", err)
	}
	if calls, _ := h.rec.calls(); len(calls) != 1 {
		t.Errorf("attempts = %d; want 1", len(calls))
	}
	h.rec.checkBalanced(t)
}

func TestCancelDuringBackoff(t *testing.T) {
	ctx, cancel := context.WithCancel(t.Context())
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(503) }, func(c *atomapi.Config) {
		c.Sleep = func(context.Context, time.Duration) error { cancel(); return context.Canceled }
	})
	_, err := h.c.GetDeployment(ctx, "d")
	if !errors.Is(err, context.Canceled) || !errors.Is(err, atomapi.ErrRateLimited) {
		t.Errorf("err = %v; want both context.Canceled and the last 503", err)
	}
	if calls, _ := h.rec.calls(); len(calls) != 1 {
		t.Errorf("attempts = %d; want 1", len(calls))
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name       string
		header     string
		wantAfter  time.Duration
		wantSleeps []time.Duration
	}{
		{"seconds", "3", 3 * time.Second, []time.Duration{3 * time.Second, 3 * time.Second}},
		{"HTTP date", now.Add(4 * time.Second).Format(http.TimeFormat), 4 * time.Second, []time.Duration{4 * time.Second, 4 * time.Second}},
		{"beyond Max: not retried", "120", 120 * time.Second, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Retry-After", tt.header)
				w.WriteHeader(503)
			})
			_, err := h.c.GetDeployment(t.Context(), "d")
			ae, ok := errorsAs[*atomapi.APIError](err)
			if !ok || ae.RetryAfter != tt.wantAfter {
				t.Fatalf("err = %#v; want an APIError with RetryAfter %v", err, tt.wantAfter)
			}
			if s := h.slept(); fmt.Sprint(s) != fmt.Sprint(tt.wantSleeps) {
				t.Errorf("sleeps = %v; want %v", s, tt.wantSleeps)
			}
		})
	}
}

func TestAuthBreaker(t *testing.T) {
	var hits atomic.Int64
	var status atomic.Int64
	status.Store(401)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.WriteHeader(int(status.Load()))
		io.WriteString(w, `{"id":"d"}`)
	})
	get := func() error { _, err := h.c.GetDeployment(t.Context(), "d"); return err }

	for i := 1; i <= 2; i++ {
		if err := get(); !errors.Is(err, atomapi.ErrAuth) {
			t.Fatalf("call %d = %v; want ErrAuth", i, err)
		}
	}
	if hits.Load() != 2 {
		t.Fatalf("requests = %d; want 2 (401 is never retried)", hits.Load())
	}
	err := get()
	if !errors.Is(err, atomapi.ErrAuth) || hits.Load() != 2 {
		t.Fatalf("third call = %v after %d requests; want ErrAuth without sending", err, hits.Load())
	}
	if calls, _ := h.rec.calls(); len(calls) != 2 {
		t.Errorf("ledger rows = %d; want 2 (the breaker sends nothing)", len(calls))
	}
	status.Store(200)
	h.c.ResetAuth()
	if err := get(); err != nil || hits.Load() != 3 {
		t.Errorf("after ResetAuth: %v, %d requests; want success, 3", err, hits.Load())
	}

	// A success in between keeps the count below the trip point.
	status.Store(403)
	get()
	status.Store(200)
	get()
	status.Store(403)
	get()
	status.Store(200)
	if err := get(); err != nil {
		t.Errorf("after 403, 200, 403: %v; want the breaker still closed", err)
	}
}

func TestExecutionRecordAsyncAnswers(t *testing.T) {
	rec := `{"@type":"ExecutionRecord","executionId":"e1","status":"INPROCESS"}`
	tests := []struct {
		name        string
		status      int
		body        string
		wantPending bool
		wantStatus  string
		wantErr     error
	}{
		{"202 JSON", 202, `{"responseStatusCode":202,"result":[]}`, true, "", nil},
		{"202 empty", 202, ``, true, "", nil},
		{"202 HTML", 202, `<html>accepted</html>`, true, "", nil},
		{"wrapper with record", 200, `{"@type":"AsyncOperationResult","responseStatusCode":200,"numberOfResults":1,"result":[` + rec + `]}`, false, "INPROCESS", nil},
		{"wrapper without code", 200, `{"result":[` + rec + `]}`, false, "INPROCESS", nil},
		{"wrapper code 202", 200, `{"responseStatusCode":202,"result":[` + rec + `]}`, true, "", nil},
		{"wrapper empty result", 200, `{"responseStatusCode":200,"numberOfResults":0,"result":[]}`, true, "", nil},
		{"wrapper no result", 200, `{"responseStatusCode":200}`, true, "", nil},
		{"wrapper null result", 200, `{"responseStatusCode":200,"result":null}`, true, "", nil},
		{"bare record", 200, rec, false, "INPROCESS", nil},
		{"bare empty object", 200, `{}`, true, "", nil},
		{"wrapper code 404", 200, `{"responseStatusCode":404}`, false, "", atomapi.ErrNotFound},
		{"wrapper bad result", 200, `{"responseStatusCode":200,"result":{"x":1}}`, false, "", atomapi.ErrDecode},
		{"204 gone", 204, ``, false, "", atomapi.ErrNotFound},
		{"array", 200, `[]`, false, "", atomapi.ErrDecode},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(tt.status)
				io.WriteString(w, tt.body)
			})
			got, pending, err := h.c.ExecutionRecordAsync(t.Context(), "executionrecord-1")
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("ExecutionRecordAsync = %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil || pending != tt.wantPending || got.Status != tt.wantStatus {
				t.Errorf("ExecutionRecordAsync = %+v, %v, %v; want status %q, pending %v",
					got, pending, err, tt.wantStatus, tt.wantPending)
			}
			if calls, _ := h.rec.calls(); len(calls) != 1 {
				t.Errorf("attempts = %d; want 1 (pending is an answer, not a retry)", len(calls))
			}
		})
	}
}

func TestRedirects(t *testing.T) {
	t.Run("same host not followed either", func(t *testing.T) {
		var hits atomic.Int64
		var rec countingRecorder
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			if strings.HasSuffix(r.URL.Path, "/old") {
				http.Redirect(w, r, strings.TrimSuffix(r.URL.Path, "/old")+"/new", http.StatusMovedPermanently)
				return
			}
			io.WriteString(w, `{"id":"new"}`)
		}, func(c *atomapi.Config) { c.Recorder = &rec })
		_, err := h.c.GetDeployment(t.Context(), "old")
		if ae, ok := errorsAs[*atomapi.APIError](err); !ok || ae.Status != http.StatusMovedPermanently || !strings.Contains(ae.Message, "not followed") {
			t.Errorf("GetDeployment = %v; want an APIError 301 naming where it pointed", err)
		}
		if hits.Load() != 1 || rec.begun.Load() != 1 {
			t.Errorf("server saw %d requests, ledger %d rows; want 1 and 1: every request has its row", hits.Load(), rec.begun.Load())
		}
	})
	t.Run("another host refused with a caller's http.Client", func(t *testing.T) {
		var otherHits atomic.Int64
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { otherHits.Add(1) }))
		t.Cleanup(other.Close)
		h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
			http.Redirect(w, r, other.URL+"/steal", http.StatusFound)
		}, func(c *atomapi.Config) { c.HTTPClient = &http.Client{} })
		_, err := h.c.GetDeployment(t.Context(), "d")
		if ae, ok := errorsAs[*atomapi.APIError](err); !ok || ae.Status != 302 || !strings.Contains(ae.Message, other.URL) {
			t.Errorf("GetDeployment = %v; want an APIError 302 naming the refused host", err)
		}
		if otherHits.Load() != 0 {
			t.Errorf("other host requests = %d; want 0", otherHits.Load())
		}
	})
}

func TestNewValidatesConfig(t *testing.T) {
	creds := atomapi.NewCredentials("u", "canary-secret-1")
	tests := []struct {
		name string
		cfg  atomapi.Config
	}{
		{"no account", atomapi.Config{Credentials: creds}},
		{"no credentials", atomapi.Config{AccountID: "a"}},
		{"no password", atomapi.Config{AccountID: "a", Credentials: atomapi.NewCredentials("u", "")}},
		{"user info in URL", atomapi.Config{AccountID: "a", Credentials: creds, BaseURL: "https://u:canary-secret-1@h/api"}},
		{"bad URL with user info", atomapi.Config{AccountID: "a", Credentials: creds, BaseURL: "ht tp://u:canary-secret-1@h/%zz"}},
		{"ftp", atomapi.Config{AccountID: "a", Credentials: creds, BaseURL: "ftp://h/api"}},
		{"negative timeout", atomapi.Config{AccountID: "a", Credentials: creds, Timeout: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := atomapi.New(tt.cfg)
			if err == nil {
				t.Fatalf("New(%v) = %v, nil; want an error", tt.cfg, c)
			}
			if strings.Contains(err.Error(), "canary-secret-1") {
				t.Errorf("New error %q shows the password", err)
			}
		})
	}
	if c, err := atomapi.New(atomapi.Config{AccountID: "a", Credentials: creds}); err != nil || c == nil {
		t.Errorf("New(minimal) = %v, %v; want a client", c, err)
	}
}

// waitForClient blocks until the client gives up on r. The body must be read
// first: the server notices a closed connection only after that.
func waitForClient(r *http.Request) {
	io.Copy(io.Discard, r.Body)
	select {
	case <-r.Context().Done():
	case <-time.After(10 * time.Second): // a safety net, not an assertion
	}
}

// A server whose certificate the client does not trust fails at once: the
// handshake is refused (nothing sent) and never retried, for any operation.
func TestUntrustedCertificateIsFinal(t *testing.T) {
	var hits atomic.Int64
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	defer srv.Close()
	var sleeps atomic.Int64
	c, err := atomapi.New(atomapi.Config{
		BaseURL: srv.URL, AccountID: "acct", Credentials: atomapi.NewCredentials("u", "p"),
		Retry: atomapi.RetryPolicy{MaxAttempts: 5, Base: time.Millisecond, Max: time.Millisecond},
		Sleep: func(ctx context.Context, d time.Duration) error { sleeps.Add(1); return nil },
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.CreateExecutionRequest(context.Background(), atomapi.ExecutionRequest{AtomID: "a", ProcessID: "p"})
	var te *atomapi.TransportError
	if !errors.As(err, &te) || te.Sent || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("CreateExecutionRequest over an untrusted certificate = %v; want a TransportError, not sent, naming x509", err)
	}
	if n := sleeps.Load(); n != 0 {
		t.Errorf("retried %d times; want 0: an untrusted certificate is final", n)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("server handled %d requests; want 0", n)
	}
}

// countingRecorder counts Begin calls.
type countingRecorder struct{ begun atomic.Int64 }

func (r *countingRecorder) Begin(context.Context, *atomapi.Call) error         { r.begun.Add(1); return nil }
func (r *countingRecorder) End(context.Context, *atomapi.Call, atomapi.Result) {}

// TestAuthProbe: with the breaker open, one call is let through every
// AuthProbeEvery; a refused probe restarts the interval, an accepted one
// closes the breaker. SetCredentials closes it at once and the new
// credentials are what is sent.
func TestAuthProbe(t *testing.T) {
	var mu sync.Mutex
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	good := "Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":"+testPassword))
	var hits atomic.Int64
	var okAuth atomic.Value
	okAuth.Store("nobody")
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.Header.Get("Authorization") != okAuth.Load().(string) {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		io.WriteString(w, `{"id":"d"}`)
	}, func(c *atomapi.Config) {
		c.AuthProbeEvery = 15 * time.Minute
		c.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	})
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	get := func() error { _, err := h.c.GetDeployment(t.Context(), "d"); return err }

	get()
	get()
	if open, next := h.c.AuthBreaker(); !open || !next.Equal(now.Add(15*time.Minute)) {
		t.Fatalf("AuthBreaker() = %v, %v; want open, probe at %v", open, next, now.Add(15*time.Minute))
	}
	advance(14 * time.Minute)
	err := get()
	if !errors.Is(err, atomapi.ErrAuth) || hits.Load() != 2 {
		t.Fatalf("before the interval: %v after %d requests; want ErrAuth, nothing sent", err, hits.Load())
	}
	for _, want := range []string{"SIGHUP", "runnerd resume-auth", "probe", "12:15:00Z"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("breaker error %q does not name %q", err, want)
		}
	}
	// The interval passes; the credentials are still wrong: one probe, refused.
	advance(time.Minute)
	if err := get(); !errors.Is(err, atomapi.ErrAuth) || hits.Load() != 3 {
		t.Fatalf("probe with wrong credentials: %v after %d requests; want ErrAuth, 3", err, hits.Load())
	}
	if err := get(); !errors.Is(err, atomapi.ErrAuth) || hits.Load() != 3 {
		t.Fatalf("right after a refused probe: %v after %d requests; want ErrAuth, nothing sent", err, hits.Load())
	}
	// Fixed on the platform's side: the next probe, 15 min after the refused
	// one, succeeds and closes the breaker.
	okAuth.Store(good)
	advance(15 * time.Minute)
	if err := get(); err != nil || hits.Load() != 4 {
		t.Fatalf("probe with fixed credentials: %v after %d requests; want success, 4", err, hits.Load())
	}
	if open, _ := h.c.AuthBreaker(); open {
		t.Fatal("breaker still open after a successful probe")
	}
	if err := get(); err != nil || hits.Load() != 5 {
		t.Fatalf("after the probe: %v after %d requests; want success, 5", err, hits.Load())
	}

	// New credentials (a reload re-read them) are sent at once.
	okAuth.Store("Basic " + base64.StdEncoding.EncodeToString([]byte(testUser+":rotated")))
	get()
	get()
	if open, _ := h.c.AuthBreaker(); !open {
		t.Fatal("breaker not open after two 401")
	}
	h.c.SetCredentials(atomapi.NewCredentials(testUser, "rotated"))
	if err := get(); err != nil {
		t.Fatalf("after SetCredentials: %v; want success", err)
	}
}

// TestAuthProbeOne: while a probe is under way, other callers are refused
// without sending.
func TestAuthProbeOne(t *testing.T) {
	release := make(chan struct{})
	var hits atomic.Int64
	var fail atomic.Bool
	fail.Store(true)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if fail.Load() {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		<-release
		io.WriteString(w, `{"id":"d"}`)
	}, func(c *atomapi.Config) { c.AuthProbeEvery = time.Nanosecond; c.Now = time.Now })
	get := func() error { _, err := h.c.GetDeployment(t.Context(), "d"); return err }
	get()
	get()
	fail.Store(false)
	done := make(chan error, 1)
	go func() { done <- get() }() // the probe, held by the server
	for hits.Load() < 3 {
		select {
		case err := <-done:
			t.Fatalf("the probe ended before the server answered: %v", err)
		case <-time.After(time.Millisecond):
		}
	}
	if err := get(); !errors.Is(err, atomapi.ErrAuth) || hits.Load() != 3 {
		t.Errorf("during the probe: %v after %d requests; want ErrAuth, nothing sent", err, hits.Load())
	}
	close(release)
	if err := <-done; err != nil {
		t.Fatalf("probe = %v", err)
	}
}

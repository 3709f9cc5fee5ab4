package web

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"testing"
	"time"
)

// testNow is the fixed clock of these tests.
var testNow = time.Date(2025, 3, 4, 14, 37, 0, 0, time.UTC)

// xss is planted in every free-text field of the fake source.
const xss = `<script>alert("x")</script>`

// fakeSource is a Source with canned data. It records the now it was given.
type fakeSource struct {
	mu        sync.Mutex
	jobs      []JobStatus
	budget    BudgetStatus
	runs      []RunRow
	calls     []CallRow
	health    error
	budgetNow time.Time
	runsN     int
	callsN    int
	details   map[int64]RunDetail
	forecast  Forecast
}

func (f *fakeSource) Jobs(context.Context) []JobStatus { return f.jobs }
func (f *fakeSource) Budget(now time.Time) BudgetStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.budgetNow = now
	return f.budget
}
func (f *fakeSource) RecentRuns(_ context.Context, n int) []RunRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.runsN = n
	return f.runs[:min(n, len(f.runs))]
}
func (f *fakeSource) RecentCalls(_ context.Context, n int) []CallRow {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.callsN = n
	return f.calls[:min(n, len(f.calls))]
}
func (f *fakeSource) Healthy(context.Context) error { return f.health }
func (f *fakeSource) Forecast(time.Time) Forecast   { return f.forecast }
func (f *fakeSource) Run(_ context.Context, id int64) (RunDetail, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.details[id]
	return d, ok
}

// hourCalls is the fake window: 24 buckets ending in the current hour, with a
// burst that pushes the running total into the reserve.
var hourCalls = []int{40, 35, 0, 12, 60, 80, 120, 95, 30, 0, 0, 5, 900, 1100, 700, 350, 250, 100, 90, 85, 60, 40, 30, 600}

func newFakeSource() *fakeSource {
	start := testNow.Truncate(time.Hour).Add(-23 * time.Hour)
	b := BudgetStatus{
		DailyLimit:           5000,
		Reserve:              500,
		Rate:                 5,
		WindowStart:          start,
		NextFreeAt:           start.Add(24 * time.Hour),
		NextFrees:            hourCalls[0],
		Classification:       "normal",
		ClassificationReason: "no 503s in the last hour " + xss,
	}
	for i, c := range hourCalls {
		b.Hours = append(b.Hours, HourCalls{Hour: start.Add(time.Duration(i) * time.Hour), Calls: c})
		b.Used += c
	}
	b.Remaining = max(0, b.DailyLimit-b.Reserve-b.Used)

	f := &fakeSource{budget: b}
	f.jobs = []JobStatus{
		{Name: "promote-orders", Kind: "deploy", Priority: "high", Schedule: "0 2 * * 1-5", Timezone: "Europe/Berlin",
			Next: time.Date(2025, 3, 5, 1, 0, 0, 0, time.UTC), LastState: "succeeded", LastNominal: time.Date(2025, 3, 4, 1, 0, 0, 0, time.UTC)},
		{Name: "orders-sync", Kind: "execute", Priority: "normal", Schedule: "@every 10m", Timezone: "UTC",
			Next: testNow.Add(3 * time.Minute), LastState: "failed", LastNominal: testNow.Add(-7 * time.Minute), LastError: "execution ERROR: " + xss},
		{Name: "audit-export", Kind: "export", Priority: "low", Schedule: "@hourly", Timezone: "UTC",
			Next: testNow.Add(23 * time.Minute), LastState: "deferred", LastNominal: testNow.Add(-37 * time.Minute)},
		{Name: "invoice-export", Kind: "execute", Priority: "low", Schedule: "30 6 * * *", Timezone: "America/New_York",
			LastState: "unknown", LastNominal: testNow.Add(-8 * time.Hour), Paused: true},
		{Name: "never-ran", Kind: "export", Priority: "normal", Schedule: "@daily", Timezone: "UTC",
			Next: time.Date(2025, 3, 5, 0, 0, 0, 0, time.UTC)},
	}
	for i := range f.jobs {
		f.jobs[i].Estimate, f.jobs[i].Basis = 3+i*40, fmt.Sprintf("p90 of the last %d runs", 12-i)
	}
	for i := range 25 {
		nominal := testNow.Add(-time.Duration(i*10) * time.Minute).Truncate(10 * time.Minute)
		state, errText := "succeeded", ""
		if i%7 == 3 {
			state, errText = "failed", "poll ExecutionRecord: 503 "+xss
		}
		f.runs = append(f.runs, RunRow{ID: int64(1000 - i), Job: "orders-sync", Kind: "execute", State: state,
			Nominal: nominal, Started: nominal.Add(2 * time.Second), Finished: nominal.Add(48 * time.Second), Calls: 6, Error: errText})
	}
	for i := range 40 {
		status, errText := 200, ""
		switch i % 9 {
		case 4:
			status = 503
		case 7:
			status, errText = 0, "read: connection reset by peer"
		}
		f.calls = append(f.calls, CallRow{ID: int64(5000 - i), RunID: int64(1000 - i/6), Job: "orders-sync",
			Operation: "ExecutionRecord.query", Method: "POST", Path: "/api/rest/v1/sim-account/ExecutionRecord/query?x=" + xss,
			Status: status, Started: testNow.Add(-time.Duration(i*13) * time.Second), DurationMS: int64(80 + 37*i), Error: errText})
	}
	f.runs = slices.Insert(f.runs, 1, RunRow{ID: 990, Job: "audit-export", Kind: "export", State: "deferred", Nominal: testNow.Add(-37 * time.Minute),
		Reason: "40 calls do not fit: 12 left after 300 held for high-priority runs " + xss})
	f.forecast = fakeForecast(b)
	f.details = map[int64]RunDetail{
		1000: {RunRow: f.runs[0], Priority: "normal", Estimate: 6, Detail: "{\n  \"execution_id\": \"exec-1 " + xss + "\"\n}",
			Ledger: []CallRow{
				{ID: 7001, RunID: 1000, Operation: "executeProcess", Method: "POST", Path: "/executeProcess", Status: 200, Started: testNow.Add(-time.Minute), DurationMS: 120, PlatformID: "executionrecord-abc"},
				{ID: 7002, RunID: 1000, Operation: "ExecutionRecord.query", Method: "POST", Path: "/ExecutionRecord/query", Status: 503, Started: testNow.Add(-50 * time.Second), DurationMS: 40, Error: "503 " + xss},
				{ID: 7003, RunID: 1000, Operation: "ExecutionRecord.query", Method: "POST", Path: "/ExecutionRecord/query", Status: 200, Started: testNow.Add(-40 * time.Second), DurationMS: 90, Attempt: 2, Recovery: true},
			}},
		990: {RunRow: f.runs[1], Priority: "low", Estimate: 40, NotBefore: testNow.Add(3*time.Hour + 5*time.Minute)},
	}
	return f
}

// serve starts the handler on 127.0.0.1 for the test.
func serve(t *testing.T, src Source, m *Metrics) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(Handler(src, m, func() time.Time { return testNow }))
	t.Cleanup(srv.Close)
	return srv
}

// get fetches path from srv and returns the response with its body read.
func get(t *testing.T, srv *httptest.Server, path string) (*http.Response, string) {
	t.Helper()
	return do(t, srv, http.MethodGet, path)
}

func do(t *testing.T, srv *httptest.Server, method, path string) (*http.Response, string) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return resp, string(body)
}

var errStalled = errors.New("store: ping: context deadline exceeded")

// fakeForecast is 24 hours from testNow's hour over the fake window: a
// high-priority deploy at 01:00 tomorrow (as promote-orders), hourly
// normal syncs, and a low export foreseen deferred at 18:00.
func fakeForecast(b BudgetStatus) Forecast {
	start := testNow.Truncate(time.Hour)
	f := Forecast{Start: start, Cap: b.DailyLimit - b.Reserve, Limit: b.DailyLimit}
	planned, high := 0, 0
	f.LeftNow = f.Cap
	for i := range 24 {
		h := ForecastHour{Hour: start.Add(time.Duration(i) * time.Hour), Normal: 6}
		for j, c := range hourCalls {
			if j >= i { // bucket j (start-23h+j) is still inside hour i's window
				h.Real += c
			}
		}
		if i == 0 {
			h.Past = hourCalls[23]
		}
		f.Runs = append(f.Runs, ForecastRun{Job: "orders-sync", Time: h.Hour.Add(10 * time.Minute), Hour: h.Hour, Priority: "normal", Estimate: 6, Admit: true})
		if h.Hour.Equal(time.Date(2025, 3, 5, 1, 0, 0, 0, time.UTC)) {
			h.High = 300
			f.Held += 300
			f.Runs = append(f.Runs, ForecastRun{Job: "promote-orders", Time: h.Hour, Hour: h.Hour, Priority: "high", Estimate: 300, Admit: true})
		}
		if h.Hour.Hour() == 18 {
			h.Deferred = 1
			f.Runs = append(f.Runs, ForecastRun{Job: "audit-export", Time: h.Hour, Hour: h.Hour, Priority: "low", Estimate: 40,
				Reason: "40 calls do not fit " + xss})
		}
		planned += h.High + h.Normal + h.Low
		high += h.High
		h.Window = h.Real + planned
		f.LeftNow = min(f.LeftNow, f.Cap-h.Real-high)
		f.Hours = append(f.Hours, h)
	}
	f.LeftNow = max(0, f.LeftNow)
	return f
}

package web

import (
	"context"
	"math"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape fetches /metrics and parses it with the Prometheus text parser.
func scrape(t *testing.T, src Source, m *Metrics) map[string]*dto.MetricFamily {
	t.Helper()
	srv := serve(t, src, m)
	resp, body := get(t, srv, "/metrics")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics = %d; want 200\n%s", resp.StatusCode, body)
	}
	if ct := resp.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("GET /metrics Content-Type = %q; want text/plain", ct)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// sample finds the value of family name with exactly the given labels
// (name=value pairs). ok is false when there is no such series.
func sample(fams map[string]*dto.MetricFamily, name string, labels ...string) (v float64, ok bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	want := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
next:
	for _, m := range f.GetMetric() {
		if len(m.GetLabel()) != len(want) {
			continue
		}
		for _, l := range m.GetLabel() {
			if want[l.GetName()] != l.GetValue() {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Untyped != nil:
			return m.GetUntyped().GetValue(), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) {
	src := newFakeSource()
	m := NewMetrics()
	m.ObserveCall("orders-sync", "ExecutionRecord.query", 200)
	m.ObserveCall("orders-sync", "ExecutionRecord.query", 200)
	m.ObserveCall("orders-sync", "ExecutionRequest", 503)
	m.ObserveCall("promote-orders", "DeployedPackage", 0)
	m.ObserveRun("orders-sync", "execute", "succeeded", time.Time{}, time.Time{})
	m.ObserveRun("orders-sync", "execute", "failed", time.Time{}, time.Time{})
	m.ObserveRun("orders-sync", "execute", "succeeded", time.Time{}, time.Time{})
	m.Observe503("rate")
	m.Observe503("external")
	m.Observe503("external")
	m.ObserveRateWait(150 * time.Millisecond)
	m.ObserveRateWait(2 * time.Second)

	fams := scrape(t, src, m)
	if !src.budgetNow.Equal(testNow) {
		t.Errorf("Budget called with now = %v; want the handler's clock %v", src.budgetNow, testNow)
	}

	next := func(job string) float64 {
		for _, j := range src.jobs {
			if j.Name == job {
				return float64(j.Next.UnixNano()) / 1e9
			}
		}
		t.Fatalf("no job %q in the fake", job)
		return 0
	}
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"runnerd_calls_total", []string{JobLabel, "orders-sync", "operation", "ExecutionRecord.query", "status", "200"}, 2},
		{"runnerd_calls_total", []string{JobLabel, "orders-sync", "operation", "ExecutionRequest", "status", "503"}, 1},
		{"runnerd_calls_total", []string{JobLabel, "promote-orders", "operation", "DeployedPackage", "status", "none"}, 1},
		{"runnerd_runs_total", []string{JobLabel, "orders-sync", "state", "succeeded"}, 2},
		{"runnerd_runs_total", []string{JobLabel, "orders-sync", "state", "failed"}, 1},
		{"runnerd_503_total", []string{"classification", "rate"}, 1},
		{"runnerd_503_total", []string{"classification", "external"}, 2},
		{"runnerd_budget_daily_limit", nil, float64(src.budget.DailyLimit)},
		{"runnerd_budget_reserve", nil, float64(src.budget.Reserve)},
		{"runnerd_budget_used", nil, float64(src.budget.Used)},
		{"runnerd_budget_remaining", nil, float64(src.budget.Remaining)},
		{"runnerd_budget_rate", nil, src.budget.Rate},
		{"runnerd_budget_next_free_timestamp_seconds", nil, float64(src.budget.NextFreeAt.Unix())},
		{"runnerd_budget_next_frees", nil, float64(src.budget.NextFrees)},
		{"runnerd_budget_classification_info", []string{"classification", "normal"}, 1},
		{"runnerd_jobs_last_state", []string{"state", "deferred"}, 1},
		{"runnerd_jobs_last_state", []string{"state", "unknown"}, 1},
		{"runnerd_jobs_last_state", []string{"state", "missed"}, 0},
		{"runnerd_jobs_last_state", []string{"state", "failed"}, 1},
		{"runnerd_jobs_last_state", []string{"state", "succeeded"}, 1},
		{"runnerd_job_next_run_timestamp_seconds", []string{JobLabel, "promote-orders"}, next("promote-orders")},
		{"runnerd_job_next_run_timestamp_seconds", []string{JobLabel, "audit-export"}, next("audit-export")},
		{"runnerd_job_paused", []string{JobLabel, "invoice-export"}, 1},
		{"runnerd_job_paused", []string{JobLabel, "orders-sync"}, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name+"/"+strings.Join(tt.labels, ","), func(t *testing.T) {
			got, ok := sample(fams, tt.name, tt.labels...)
			if !ok || math.Abs(got-tt.want) > 1e-6 {
				t.Errorf("%s%v = %v (present %v); want %v", tt.name, tt.labels, got, ok, tt.want)
			}
		})
	}

	// A paused job without a next run has no next-run series.
	if v, ok := sample(fams, "runnerd_job_next_run_timestamp_seconds", JobLabel, "invoice-export"); ok {
		t.Errorf("runnerd_job_next_run_timestamp_seconds{job=invoice-export} = %v; want absent (no next run)", v)
	}
	// The rate-wait histogram saw both waits.
	h := fams["runnerd_rate_wait_seconds"].GetMetric()[0].GetHistogram()
	if h.GetSampleCount() != 2 || math.Abs(h.GetSampleSum()-2.15) > 1e-9 {
		t.Errorf("runnerd_rate_wait_seconds count, sum = %d, %v; want 2, 2.15", h.GetSampleCount(), h.GetSampleSum())
	}
	// The process and Go collectors are registered.
	for _, name := range []string{"go_goroutines", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if fams[name] == nil {
			t.Errorf("/metrics has no %s", name)
		}
	}
}

// TestMetricsEmpty checks the always-present states and absent optional
// series for a daemon with no jobs and an empty window.
func TestMetricsEmpty(t *testing.T) {
	src := &fakeSource{budget: BudgetStatus{DailyLimit: 1000, Reserve: 100, Remaining: 900, Rate: 5}}
	fams := scrape(t, src, nil)
	for _, s := range alwaysStates {
		if v, ok := sample(fams, "runnerd_jobs_last_state", "state", s); !ok || v != 0 {
			t.Errorf("runnerd_jobs_last_state{state=%q} = %v (present %v); want 0", s, v, ok)
		}
	}
	for _, name := range []string{"runnerd_budget_next_free_timestamp_seconds", "runnerd_budget_classification_info",
		"runnerd_job_next_run_timestamp_seconds", "runnerd_calls_total"} {
		if fams[name] != nil {
			t.Errorf("/metrics has %s; want it absent", name)
		}
	}
	if v, ok := sample(fams, "runnerd_budget_remaining"); !ok || v != 900 {
		t.Errorf("runnerd_budget_remaining = %v (present %v); want 900", v, ok)
	}
}

func TestNilMetrics(t *testing.T) {
	var m *Metrics
	// None of these may panic.
	m.ObserveCall("j", "op", 200)
	m.ObserveRun("j", "execute", "succeeded", time.Time{}, time.Time{})
	m.Observe503("rate")
	m.ObserveRateWait(time.Second)
}

func TestHealthz(t *testing.T) {
	exhausted := newFakeSource()
	exhausted.budget.Used, exhausted.budget.Remaining = 4800, 0
	stalled := newFakeSource()
	stalled.health = errStalled
	tests := []struct {
		name     string
		src      *fakeSource
		wantCode int
		wantBody string
	}{
		{"healthy", newFakeSource(), http.StatusOK, "ok\n"},
		{"budget exhausted is healthy", exhausted, http.StatusOK, "ok\n"},
		{"store stalled", stalled, http.StatusServiceUnavailable, "unhealthy: " + errStalled.Error() + "\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := serve(t, tt.src, nil)
			resp, body := get(t, srv, "/healthz")
			if resp.StatusCode != tt.wantCode || body != tt.wantBody {
				t.Errorf("GET /healthz = %d %q; want %d %q", resp.StatusCode, body, tt.wantCode, tt.wantBody)
			}
		})
	}
}

// TestHealthzDeadline checks that /healthz gives Healthy a deadline.
func TestHealthzDeadline(t *testing.T) {
	var deadline time.Duration
	src := healthFunc(func(ctx context.Context) error {
		d, ok := ctx.Deadline()
		if !ok {
			return nil
		}
		deadline = time.Until(d)
		return nil
	})
	srv := serve(t, src, nil)
	get(t, srv, "/healthz")
	if deadline <= 0 || deadline > healthTimeout {
		t.Errorf("Healthy's context deadline in %v; want within (0, %v]", deadline, healthTimeout)
	}
}

type healthFunc func(context.Context) error

func (f healthFunc) Jobs(context.Context) []JobStatus             { return nil }
func (f healthFunc) Budget(time.Time) BudgetStatus                { return BudgetStatus{} }
func (f healthFunc) RecentRuns(context.Context, int) []RunRow     { return nil }
func (f healthFunc) RecentCalls(context.Context, int) []CallRow   { return nil }
func (f healthFunc) Healthy(ctx context.Context) error            { return f(ctx) }
func (f healthFunc) Run(context.Context, int64) (RunDetail, bool) { return RunDetail{}, false }
func (f healthFunc) Forecast(time.Time) Forecast                  { return Forecast{} }

func TestRoutes(t *testing.T) {
	srv := serve(t, newFakeSource(), nil)
	tests := []struct {
		method, path string
		want         int
	}{
		{"GET", "/", http.StatusOK},
		{"HEAD", "/", http.StatusOK},
		{"GET", "/metrics", http.StatusOK},
		{"GET", "/healthz", http.StatusOK},
		{"GET", "/index.html", http.StatusNotFound},
		{"GET", "/metrics/x", http.StatusNotFound},
		{"POST", "/", http.StatusMethodNotAllowed},
		{"DELETE", "/healthz", http.StatusMethodNotAllowed},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+tt.path, func(t *testing.T) {
			resp, _ := do(t, srv, tt.method, tt.path)
			if resp.StatusCode != tt.want {
				t.Errorf("%s %s = %d; want %d", tt.method, tt.path, resp.StatusCode, tt.want)
			}
		})
	}
}

func TestFormatters(t *testing.T) {
	nums := []struct {
		in   int
		want string
	}{{0, "0"}, {999, "999"}, {1000, "1,000"}, {1234567, "1,234,567"}, {-4500, "-4,500"}}
	for _, tt := range nums {
		if got := fmtNum(tt.in); got != tt.want {
			t.Errorf("fmtNum(%d) = %q; want %q", tt.in, got, tt.want)
		}
	}
	rels := []struct {
		d    time.Duration
		want string
	}{
		{0, "now"}, {30 * time.Second, "now"}, {3 * time.Minute, "in 3m"}, {-7 * time.Minute, "7m ago"},
		{2*time.Hour + 5*time.Minute + 40*time.Second, "in 2h 5m"}, {-(50 * time.Hour), "2d 2h ago"},
	}
	for _, tt := range rels {
		if got := fmtRel(testNow, testNow.Add(tt.d)); got != tt.want {
			t.Errorf("fmtRel(now, now%+v) = %q; want %q", tt.d, got, tt.want)
		}
	}
	if got := fmtRel(testNow, time.Time{}); got != "" {
		t.Errorf("fmtRel(now, zero) = %q; want empty", got)
	}
	steps := []struct{ in, want float64 }{{0.3, 1}, {3, 5}, {1130, 2000}, {1250, 2000}, {2100, 2500}, {2400, 2500}, {6000, 10000}}
	for _, tt := range steps {
		if got := niceStep(tt.in); got != tt.want {
			t.Errorf("niceStep(%v) = %v; want %v", tt.in, got, tt.want)
		}
	}
}

// TestMetricsRunOutcomes: a job's last success and failure times, the run
// duration histogram by kind and outcome, and runnerd_build_info.
func TestMetricsRunOutcomes(t *testing.T) {
	m := NewMetrics()
	start := time.Date(2026, 12, 3, 2, 0, 0, 0, time.UTC)
	m.ObserveRun("promote", "deploy", "succeeded", start, start.Add(90*time.Second))
	m.ObserveRun("promote", "deploy", "failed", start.Add(time.Hour), start.Add(time.Hour+30*time.Second))
	m.ObserveRun("promote", "deploy", "deferred", time.Time{}, time.Time{})
	m.SetBuildInfo("1.2.3", "abc123", "go1.26")
	fams := scrape(t, newFakeSource(), m)
	if v, ok := sample(fams, "runnerd_job_last_success_timestamp_seconds", JobLabel, "promote"); !ok || v != float64(start.Add(90*time.Second).Unix()) {
		t.Errorf("last success = %v (%v); want %d", v, ok, start.Add(90*time.Second).Unix())
	}
	if v, ok := sample(fams, "runnerd_job_last_failure_timestamp_seconds", JobLabel, "promote"); !ok || v != float64(start.Add(time.Hour+30*time.Second).Unix()) {
		t.Errorf("last failure = %v (%v)", v, ok)
	}
	if v, ok := sample(fams, "runnerd_build_info", "commit", "abc123", "goversion", "go1.26", "version", "1.2.3"); !ok || v != 1 {
		t.Errorf("runnerd_build_info = %v (%v); want 1 with the labels", v, ok)
	}
	var n uint64
	for _, mm := range fams["runnerd_run_duration_seconds"].GetMetric() {
		n += mm.GetHistogram().GetSampleCount()
	}
	if n != 2 {
		t.Errorf("runnerd_run_duration_seconds observed %d runs; want 2 (the deferral is no outcome)", n)
	}
}

// TestMetricsLint: /metrics passes the checks of `promtool check metrics`
// (promlint, the library it runs), with every family present.
func TestMetricsLint(t *testing.T) {
	m := NewMetrics()
	m.ObserveCall("j", "ExecutionRequest", 200)
	m.ObserveRun("j", "execute", "succeeded", testNow.Add(-time.Minute), testNow)
	m.ObserveRun("j", "execute", "failed", testNow.Add(-time.Minute), testNow)
	m.Observe503("rate")
	m.ObserveRateWait(time.Millisecond)
	m.SetBuildInfo("v", "c", "go")
	srv := serve(t, newFakeSource(), m)
	_, body := get(t, srv, "/metrics")
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
	if strings.Contains(body, `{job="`) || strings.Contains(body, `,job="`) {
		t.Errorf("a series carries a job label, which Prometheus renames exported_job")
	}
	// And promtool itself, where it is installed (.ci/run installs Debian's
	// prometheus package and sets RUNNERD_REQUIRE_PROMTOOL).
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("RUNNERD_REQUIRE_PROMTOOL") != "" {
			t.Fatal("RUNNERD_REQUIRE_PROMTOOL is set but promtool is not on PATH")
		}
		t.Log("promtool not installed: checked with promlint only")
		return
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(body)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

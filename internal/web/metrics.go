package web

import (
	"context"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds runnerd's counters and histograms in a registry of its own
// (never the global one), with the process and Go runtime collectors. The
// Observe methods are safe for concurrent use and do nothing on a nil
// *Metrics, so callers without an HTTP listener can pass nil.
//
// Per-job series carry the label runnerd_job, not job: Prometheus gives
// every scraped series its own job label (the scrape job), and a target's
// job label would be renamed exported_job.
type Metrics struct {
	reg         *prometheus.Registry
	calls       *prometheus.CounterVec
	runs        *prometheus.CounterVec
	rejected    *prometheus.CounterVec
	rateWait    prometheus.Histogram
	lastSuccess *prometheus.GaugeVec
	lastFailure *prometheus.GaugeVec
	duration    *prometheus.HistogramVec
	build       *prometheus.GaugeVec
}

// JobLabel is the label per-job series carry.
const JobLabel = "runnerd_job"

// NewMetrics returns a Metrics with its own registry.
func NewMetrics() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		calls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_calls_total",
			Help: "AtomSphere API attempts by job, operation and HTTP status (\"none\": no answer).",
		}, []string{JobLabel, "operation", "status"}),
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_runs_total",
			Help: "Runs that reached a state, by job and state.",
		}, []string{JobLabel, "state"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "runnerd_503_total",
			Help: "HTTP 503 answers from the API, by the planner's classification.",
		}, []string{"classification"}),
		rateWait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "runnerd_rate_wait_seconds",
			Help:    "Time an attempt waited at the rate gate before it was sent.",
			Buckets: []float64{0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60},
		}),
		lastSuccess: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnerd_job_last_success_timestamp_seconds",
			Help: "When the job's latest run that succeeded finished (absent until one has, since the daemon started).",
		}, []string{JobLabel}),
		lastFailure: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnerd_job_last_failure_timestamp_seconds",
			Help: "When the job's latest run that failed finished (absent until one has, since the daemon started).",
		}, []string{JobLabel}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "runnerd_run_duration_seconds",
			Help:    "How long finished runs took from start to outcome, by kind and outcome.",
			Buckets: []float64{1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200, 14400},
		}, []string{"kind", "state"}),
		build: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "runnerd_build_info",
			Help: "Always 1; the labels say which runnerd is running.",
		}, []string{"version", "commit", "goversion"}),
	}
	m.reg.MustRegister(
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewGoCollector(),
		m.calls, m.runs, m.rejected, m.rateWait, m.lastSuccess, m.lastFailure, m.duration, m.build,
	)
	return m
}

// SetBuildInfo sets runnerd_build_info's labels (once, at start).
func (m *Metrics) SetBuildInfo(version, commit, goVersion string) {
	if m == nil {
		return
	}
	m.build.Reset()
	m.build.WithLabelValues(version, commit, goVersion).Set(1)
}

// Registry returns the registry, for callers that add collectors of their own.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// ObserveCall counts one API attempt. status is the HTTP status, or 0 (or
// less) when no answer came.
func (m *Metrics) ObserveCall(job, operation string, status int) {
	if m == nil {
		return
	}
	s := "none"
	if status > 0 {
		s = strconv.Itoa(status)
	}
	m.calls.WithLabelValues(job, operation, s).Inc()
}

// ObserveRun counts a run of kind reaching state; a run that succeeded or
// failed also sets the job's last success or failure time (finished) and,
// when it started, observes its duration.
func (m *Metrics) ObserveRun(job, kind, state string, started, finished time.Time) {
	if m == nil {
		return
	}
	m.runs.WithLabelValues(job, state).Inc()
	var last *prometheus.GaugeVec
	switch state {
	case "succeeded":
		last = m.lastSuccess
	case "failed":
		last = m.lastFailure
	default:
		return
	}
	if !finished.IsZero() {
		last.WithLabelValues(job).Set(float64(finished.UnixMilli()) / 1000)
		if !started.IsZero() && !finished.Before(started) {
			m.duration.WithLabelValues(kind, state).Observe(finished.Sub(started).Seconds())
		}
	}
}

// Observe503 counts one 503 answer and how the planner classified it.
func (m *Metrics) Observe503(classification string) {
	if m == nil {
		return
	}
	m.rejected.WithLabelValues(classification).Inc()
}

// ObserveRateWait records how long an attempt waited at the rate gate.
func (m *Metrics) ObserveRateWait(d time.Duration) {
	if m == nil {
		return
	}
	m.rateWait.Observe(d.Seconds())
}

// handler serves the registry plus the gauges read from src at scrape time.
// The source collector lives in a registry made per request, so it can use
// the request's context.
func (m *Metrics) handler(src Source, now func() time.Time) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scrape := prometheus.NewRegistry()
		scrape.MustRegister(&sourceCollector{ctx: r.Context(), src: src, now: now})
		promhttp.HandlerFor(prometheus.Gatherers{m.reg, scrape}, promhttp.HandlerOpts{
			ErrorHandling: promhttp.ContinueOnError, // a partial scrape beats none
		}).ServeHTTP(w, r)
	})
}

// Gauges read from the Source at scrape time.
var (
	descDailyLimit = prometheus.NewDesc("runnerd_budget_daily_limit",
		"The account's API allowance per rolling 24 hours.", nil, nil)
	descReserve = prometheus.NewDesc("runnerd_budget_reserve",
		"Calls of the allowance kept for others and for recovery lookups.", nil, nil)
	descUsed = prometheus.NewDesc("runnerd_budget_used",
		"Calls in the current rolling 24-hour window.", nil, nil)
	descRemaining = prometheus.NewDesc("runnerd_budget_remaining",
		"Calls runnerd may still spend on ordinary work: max(0, daily_limit - reserve - used).", nil, nil)
	descRate = prometheus.NewDesc("runnerd_budget_rate",
		"Requests per second allowed, for all of runnerd together.", nil, nil)
	descNextFree = prometheus.NewDesc("runnerd_budget_next_free_timestamp_seconds",
		"When the oldest non-empty hour bucket leaves the window (absent when the window is empty).", nil, nil)
	descNextFrees = prometheus.NewDesc("runnerd_budget_next_frees",
		"Calls freed at runnerd_budget_next_free_timestamp_seconds.", nil, nil)
	descClass = prometheus.NewDesc("runnerd_budget_classification_info",
		"The planner's current reading of 503s, as a label; the value is always 1.", []string{"classification"}, nil)
	descLastState = prometheus.NewDesc("runnerd_jobs_last_state",
		"Jobs whose most recent run is in this state (deferred, missed and unknown are always present).", []string{"state"}, nil)
	descNextRun = prometheus.NewDesc("runnerd_job_next_run_timestamp_seconds",
		"The job's next fire time (absent when it has none).", []string{JobLabel}, nil)
	descPaused = prometheus.NewDesc("runnerd_job_paused",
		"1 when the job is paused.", []string{JobLabel}, nil)
)

// alwaysStates are reported even at zero, so alerts on them never see gaps.
var alwaysStates = []string{"deferred", "missed", "unknown"}

// sourceCollector turns a Source into gauges on each scrape.
type sourceCollector struct {
	ctx context.Context
	src Source
	now func() time.Time
}

func (c *sourceCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descDailyLimit, descReserve, descUsed, descRemaining, descRate,
		descNextFree, descNextFrees, descClass, descLastState, descNextRun, descPaused} {
		ch <- d
	}
}

func (c *sourceCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	b := c.src.Budget(c.now())
	gauge(descDailyLimit, float64(b.DailyLimit))
	gauge(descReserve, float64(b.Reserve))
	gauge(descUsed, float64(b.Used))
	gauge(descRemaining, float64(b.Remaining))
	gauge(descRate, b.Rate)
	if !b.NextFreeAt.IsZero() {
		gauge(descNextFree, unixSeconds(b.NextFreeAt))
		gauge(descNextFrees, float64(b.NextFrees))
	}
	if b.Classification != "" {
		gauge(descClass, 1, b.Classification)
	}

	states := map[string]int{}
	for _, s := range alwaysStates {
		states[s] = 0
	}
	for _, j := range c.src.Jobs(c.ctx) {
		if j.LastState != "" {
			states[j.LastState]++
		}
		if !j.Next.IsZero() {
			gauge(descNextRun, unixSeconds(j.Next), j.Name)
		}
		paused := 0.0
		if j.Paused {
			paused = 1
		}
		gauge(descPaused, paused, j.Name)
	}
	names := make([]string, 0, len(states))
	for s := range states {
		names = append(names, s)
	}
	sort.Strings(names)
	for _, s := range names {
		gauge(descLastState, float64(states[s]), s)
	}
}

// unixSeconds is t as fractional Unix seconds.
func unixSeconds(t time.Time) float64 {
	return float64(t.UnixNano()) / 1e9
}

// Package web is runnerd's HTTP surface for [http] listen: Prometheus metrics
// at /metrics, a health check at /healthz and a server-rendered status page at
// /. It reads the daemon's state through the Source interface it declares, so
// it knows nothing about the store, the budget or the scheduler.
package web

import (
	"context"
	"net/http"
	"time"
)

// Source is what the HTTP surface needs from the daemon. Every method must be
// safe to call concurrently and return quickly; results should be in UTC.
type Source interface {
	// Jobs lists the configured jobs, in display order.
	Jobs(ctx context.Context) []JobStatus
	// Budget is the rolling-window view at now.
	Budget(now time.Time) BudgetStatus
	// RecentRuns returns up to n runs, newest first.
	RecentRuns(ctx context.Context, n int) []RunRow
	// RecentCalls returns up to n ledger rows, newest first.
	RecentCalls(ctx context.Context, n int) []CallRow
	// Forecast is the next 24 hours as the daemon plans them at now.
	Forecast(now time.Time) Forecast
	// Run returns run id with every ledger row of it; false if there is no
	// such run (or it cannot be read).
	Run(ctx context.Context, id int64) (RunDetail, bool)
	// Healthy reports whether the scheduler loop and the store are alive. An
	// exhausted budget is not ill health.
	Healthy(ctx context.Context) error
}

// JobStatus is one configured job and where it stands.
type JobStatus struct {
	Name     string `json:"name"`
	Kind     string `json:"kind"`     // execute | deploy | export
	Priority string `json:"priority"` // high | normal | low
	Schedule string `json:"schedule"`
	Timezone string `json:"timezone"`
	// Next is the next fire time; zero when none (paused, disabled).
	Next        time.Time `json:"next"`
	LastState   string    `json:"last_state"` // a runnerd.RunState, "" if it never ran
	LastNominal time.Time `json:"last_nominal"`
	LastError   string    `json:"last_error"`
	Paused      bool      `json:"paused"`
	// Estimate is the calls the job's next run is planned with, and Basis
	// how it was reached, in words.
	Estimate int    `json:"estimate"`
	Basis    string `json:"estimate_basis,omitempty"`
}

// HourCalls is one hour bucket of the rolling window.
type HourCalls struct {
	Hour  time.Time `json:"hour"`
	Calls int       `json:"calls"`
}

// BudgetStatus is the budget at a moment. The JSON names follow DESIGN 3.2.
type BudgetStatus struct {
	DailyLimit int     `json:"daily_limit"`
	Reserve    int     `json:"reserve"`
	Rate       float64 `json:"rate"`
	Used       int     `json:"used"`      // calls in the current rolling window
	Remaining  int     `json:"remaining"` // max(0, daily_limit − reserve − used)
	// WindowStart is the start of the oldest hour bucket in the window.
	WindowStart time.Time `json:"window_start"`
	// Hours are the window's buckets, oldest first (24 of them).
	Hours []HourCalls `json:"hours"`
	// NextFreeAt is when the oldest non-empty bucket leaves the window, and
	// NextFrees how many calls it frees then. Zero when the window is empty.
	NextFreeAt time.Time `json:"next_free_at"`
	NextFrees  int       `json:"next_frees"`
	// Classification is the planner's reading of recent 503s (e.g. whether
	// someone else is spending the account), with the reason in words.
	Classification       string `json:"classification"`
	ClassificationReason string `json:"classification_reason"`
	// RateUsed is the calls per second sent over the last minute, beside Rate.
	RateUsed float64 `json:"rate_used"`
	// AuthOpen is the auth breaker: the platform rejected the credentials
	// twice in a row and nothing is sent but a probe at AuthNextProbe.
	AuthOpen      bool      `json:"auth_open"`
	AuthNextProbe time.Time `json:"auth_next_probe,omitzero"`
	// Oversubscribed names, per priority class, the jobs the allowance
	// cannot hold a day, with the figures (an addition).
	Oversubscribed []string `json:"oversubscribed,omitempty"`
	// Owed lists the resumes releases still owe the platform (a schedule or
	// listener a release paused and an interruption left paused), until done.
	Owed []string `json:"owed,omitempty"`
	// Instances are the runnerd sharing a PostgreSQL ledger, one line each
	// with its state, leases and share of the window (none on SQLite).
	Instances []string `json:"instances,omitempty"`
}

// Forecast is the next 24 hours from Start (the current hour), as the plan
// the daemon admits with foresees them (`runnerd plan`).
type Forecast struct {
	Start   time.Time      `json:"start"`
	Cap     int            `json:"cap"` // daily_limit − reserve
	Limit   int            `json:"daily_limit"`
	Hours   []ForecastHour `json:"hours"`
	Runs    []ForecastRun  `json:"runs"`
	Held    int            `json:"held_for_high"` // the admitted high-priority runs' estimates
	LeftNow int            `json:"left_now"`      // what ordinary work may spend now around them
}

// ForecastHour is one hour of the forecast.
type ForecastHour struct {
	Hour time.Time `json:"hour"`
	// Window is the projected rolling window at the end of the hour: Real
	// plus every admitted run's estimate from Start up to this hour.
	Window int `json:"window"`
	// Real is the calls already spent that are still inside this hour's
	// window; Past those spent in this hour so far (the current hour only).
	Real, Past int
	// High, Normal and Low are the admitted runs' estimates in this hour.
	High, Normal, Low int
	Deferred          int // runs foreseen to be deferred in this hour
}

// ForecastRun is one planned run.
type ForecastRun struct {
	Job            string    `json:"job"`
	Time           time.Time `json:"time"` // its nominal time
	Hour           time.Time `json:"hour"` // the hour it is projected in
	Priority       string    `json:"priority"`
	Estimate       int       `json:"estimate"`
	Admit          bool      `json:"admit"`
	Reason         string    `json:"reason,omitempty"`
	RemainingAfter int       `json:"remaining_after"`
}

// RunRow is one run, as the status page lists it.
type RunRow struct {
	ID       int64     `json:"id"`
	Job      string    `json:"job"`
	Kind     string    `json:"kind"`
	State    string    `json:"state"`
	Nominal  time.Time `json:"nominal_time"`
	Started  time.Time `json:"started_at"`
	Finished time.Time `json:"finished_at"`
	Calls    int       `json:"calls"`
	Lookups  int       `json:"lookups,omitempty"` // of Calls: reconciliation's recovery lookups
	Error    string    `json:"error"`
	// Reason is why a run was deferred, skipped, missed or left unknown:
	// a state's explanation, not a failure.
	Reason string `json:"reason,omitempty"`
}

// CallRow is one ledger row (one HTTP attempt). Status 0: no answer.
type CallRow struct {
	ID         int64     `json:"id"`
	RunID      int64     `json:"run_id"`
	Job        string    `json:"job"`
	Operation  string    `json:"operation"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Status     int       `json:"status"`
	Started    time.Time `json:"started_at"`
	DurationMS int64     `json:"duration_ms"`
	Error      string    `json:"error"`
	Attempt    int       `json:"attempt,omitempty"`
	Recovery   bool      `json:"recovery,omitempty"`    // a reconciliation lookup
	PlatformID string    `json:"platform_id,omitempty"` // e.g. the ExecutionRequest requestId
}

// RunDetail is one run with its whole story: the decision on it (the
// planner's reason and, for a deferred run, the earliest time it fits), its
// outcome and detail, and every ledger row it spent (Ledger).
type RunDetail struct {
	RunRow
	Priority  string    `json:"priority,omitempty"`
	NotBefore time.Time `json:"not_before"`
	Estimate  int       `json:"estimate"`
	Attempt   int       `json:"attempt"`
	// Detail is the kind's result as indented JSON (platform ids, export
	// files and their sha256, windows); "" if none.
	Detail string    `json:"detail,omitempty"`
	Ledger []CallRow `json:"ledger"` // oldest first
	// Evidence is what is kept (or being fetched) of a failed execution.
	Evidence []EvidenceRow `json:"evidence,omitempty"`
}

// EvidenceRow is one piece of a run's failure evidence. Path is on the
// daemon's host; the page links the file as /runs/{id}/evidence/{kind}.
type EvidenceRow struct {
	Kind        string    `json:"kind"`  // log | artifacts
	State       string    `json:"state"` // pending | kept | given_up | pruned
	Reason      string    `json:"reason,omitempty"`
	ExecutionID string    `json:"execution_id"`
	Path        string    `json:"path,omitempty"`
	Bytes       int64     `json:"bytes,omitempty"`
	SHA256      string    `json:"sha256,omitempty"`
	NextAt      time.Time `json:"next_at,omitzero"`
}

// Page sizes of the status page's tables.
const (
	DefaultRecentRuns  = 20
	DefaultRecentCalls = 30
)

// healthTimeout bounds a /healthz check, so a stalled store answers 503
// instead of hanging the prober.
const healthTimeout = 5 * time.Second

// Handler serves GET /metrics, /healthz and the status page at /. now is the
// clock for the budget view and the page; m may be nil (no counters, only the
// gauges read from src).
func Handler(src Source, m *Metrics, now func() time.Time) http.Handler {
	if m == nil {
		m = NewMetrics()
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.handler(src, now))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		if err := src.Healthy(ctx); err != nil {
			w.WriteHeader(http.StatusServiceUnavailable)
			w.Write([]byte("unhealthy: " + err.Error() + "\n"))
			return
		}
		w.Write([]byte("ok\n"))
	})
	mux.Handle("GET /{$}", pageHandler(src, now))
	mux.Handle("GET /runs/{id}", runHandler(src, now))
	mux.Handle("GET /runs/{id}/evidence/{kind}", evidenceHandler(src))
	return mux
}

package main

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/budget/apigate"
	"runnerd/internal/config"
	"runnerd/internal/scheduler"
	"runnerd/internal/scheduler/kinds"
	"runnerd/internal/store"
	"runnerd/internal/web"
)

// daemon is everything that spends the budget, wired together: the ledger, the
// budget (window, rate, classifier, gate, planner), the client and the scheduler.
// serve, run and demo all build one, so every path spends through the same gate
// and records in the same ledger.
type daemon struct {
	e     *env
	log   *slog.Logger
	now   func() time.Time
	lock  *spenderLock
	db    *store.DB
	hooks *callHooks

	mu     sync.Mutex // guards cfg and the budget objects' replacement on reload
	cfg    *config.Config
	limits budget.Limits

	window     *budget.Window
	limiter    *budget.RateLimiter
	classifier *budget.Classifier
	gate       *budget.Gate
	planner    *budget.Planner
	client     *atomapi.Client
	poller     *kinds.Poller
	sched      *scheduler.Scheduler
	metrics    *web.Metrics
	notify     *daemonNotify // nil until started; see daemon_notify.go

	outputDir string      // relative export paths are resolved here (demo); "" = as given
	stopped   atomic.Bool // the scheduler has been stopped
}

type daemonOptions struct {
	now       func() time.Time
	outputDir string
	lock      *spenderLock // already held (handOverOrLock); the daemon releases it
}

// newDaemon opens the store under the spender lock and wires the budget, the
// client and the scheduler. It does not start cron.
func newDaemon(ctx context.Context, e *env, cfg *config.Config, log *slog.Logger, o daemonOptions) (d *daemon, err error) {
	if o.now == nil {
		o.now = time.Now
	}
	d = &daemon{e: e, log: log, now: o.now, cfg: cfg, outputDir: o.outputDir, metrics: web.NewMetrics()}
	// Every failure below returns (nil, err), which sets the named d to nil:
	// close what was opened through a copy of the pointer.
	opened := d
	defer func() {
		if err != nil {
			opened.close()
		}
	}()
	if d.lock = o.lock; d.lock == nil {
		if d.lock, err = acquireLock(ctx, cfg.Store.Path, false); err != nil {
			return nil, err
		}
	}
	if d.db, err = openStore(ctx, cfg, store.Options{Now: o.now}); err != nil {
		return nil, err
	}
	d.limits = budget.Limits{DailyLimit: cfg.Budget.DailyLimit, Reserve: cfg.Budget.Reserve, Rate: cfg.Budget.Rate}
	d.window = budget.NewWindow(d.limits)
	if err := d.loadWindow(ctx); err != nil {
		return nil, err
	}
	d.limiter = budget.NewRateLimiterMargin(cfg.Budget.Rate, cfg.Budget.RateMargin.Duration)
	d.classifier = budget.NewClassifier()
	if err := d.seedRecent(ctx); err != nil {
		return nil, err
	}
	d.gate = budget.NewGate(d.limits, d.window, d.limiter, budget.RealClock(), d.classifier)
	d.planner = budget.NewPlanner(d.limits)
	d.hooks = &callHooks{d: d}
	if err := d.startNotifier(cfg); err != nil {
		return nil, err
	}

	pw, err := cfg.Account.Password(e.getenv)
	if err != nil {
		return nil, usageError{err}
	}
	var roots *x509.CertPool
	if cfg.Account.CAFile != "" {
		pem, err := os.ReadFile(cfg.Account.CAFile)
		if err != nil {
			return nil, usagef("%s: account: ca_file: %v", cfg.File, err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, usagef("%s: account: ca_file: %s holds no PEM certificate", cfg.File, cfg.Account.CAFile)
		}
	}
	d.client, err = atomapi.New(atomapi.Config{
		BaseURL:     cfg.Account.URL,
		AccountID:   cfg.Account.ID,
		Credentials: atomapi.NewCredentials(cfg.Account.User, pw.Reveal()),
		Gate:        apigate.Gate{G: d.gate, Paced: true},
		Recorder:    d.hooks,
		RootCAs:     roots,
		Logger:      log,
	})
	if err != nil {
		return nil, usageError{err}
	}
	d.poller = &kinds.Poller{Client: d.client, Now: o.now}
	d.sched = scheduler.New(scheduler.Options{
		Store:     d.db,
		Planner:   plannerAdapter{d},
		Estimator: estimatorAdapter{d},
		Logger:    log,
		Now:       o.now,
		OnRun:     d.onRun,
	})
	d.gate.SetShares(d.shares)
	jobs, err := d.buildJobs(cfg)
	if err != nil {
		return nil, usageError{err}
	}
	if err := d.sched.SetJobs(ctx, jobs); err != nil {
		return nil, usageError{err}
	}
	return d, nil
}

const metaClassification = "budget.classification"

// loadWindow rebuilds the rolling window from the ledger's hourly rollup.
func (d *daemon) loadWindow(ctx context.Context) error {
	now := d.now()
	usage, err := d.db.HourlyUsage(ctx, now.Add(-25*time.Hour))
	if err != nil {
		return err
	}
	hours := make([]budget.HourCount, len(usage))
	for i, u := range usage {
		hours[i] = budget.HourCount{Hour: u.Hour, Calls: u.Calls}
	}
	d.window.Load(hours)
	return nil
}

// seedRecent tells the rate limiter and the 503 classifier of the calls an
// earlier process made in the last seconds (the ledger has them): one process
// after another must not spend the same second twice.
func (d *daemon) seedRecent(ctx context.Context) error {
	calls, err := d.db.ListCalls(ctx, store.CallFilter{Since: d.now().Add(-3 * time.Second), Status: -1})
	if err != nil {
		return err
	}
	// A row's started_at is taken before its commit and the rate wait; the
	// request went out at finished_at − duration. A row still open (its
	// process died mid-call) is taken as sent just now: the cautious reading.
	starts := make([]time.Time, 0, len(calls))
	for _, c := range calls {
		sent := d.now()
		if !c.FinishedAt.IsZero() {
			sent = c.FinishedAt.Add(-time.Duration(c.DurationMS) * time.Millisecond)
		}
		starts = append(starts, sent)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	d.limiter.Seed(starts)
	d.classifier.Seed(starts)
	return nil
}

func (d *daemon) close() {
	d.stopNotifier()
	if d.db != nil {
		d.db.Checkpoint(context.Background())
		d.db.Close()
	}
	d.lock.release()
}

// callHooks is the client's Recorder: the ledger row before the first byte,
// completed after the answer, and the answer shown to the 503 classifier.
type callHooks struct{ d *daemon }

func (h *callHooks) Begin(ctx context.Context, c *atomapi.Call) error {
	id, err := h.d.db.BeginCall(ctx, store.Call{
		RunID: c.RunID, Job: c.Job, RequestID: c.RequestID, Operation: c.Operation, Method: c.Method,
		Path: c.Path, Safe: c.Safe, Recovery: c.Recovery, Attempt: c.Attempt, StartedAt: c.StartedAt,
	})
	if err != nil {
		return err
	}
	c.LedgerID = id
	return nil
}

func (h *callHooks) End(ctx context.Context, c *atomapi.Call, r atomapi.Result) {
	ctx = context.WithoutCancel(ctx)
	row := store.Call{ID: c.LedgerID, Status: r.Status, DurationMS: r.Duration.Milliseconds(), Bytes: r.Bytes, PlatformID: r.PlatformID}
	if r.Err != nil {
		row.Error = r.Err.Error()
	}
	if err := h.d.db.EndCall(ctx, row); err != nil {
		h.d.log.Error("ledger: could not complete a call row; it still counts against the budget",
			"request_id", c.RequestID, "err", err)
	}
	h.d.metrics.ObserveCall(c.Job, c.Operation, r.Status)
	now := h.d.now()
	before := h.d.classifier.State(now)
	after := before
	if r.Sent || r.Status != 0 {
		// An attempt that never left says nothing about the platform.
		after = h.d.classifier.Observe(now, r.Status, h.d.window.Used(now), h.d.limits.Cap())
	}
	if r.Status == 503 || r.Status == 429 {
		h.d.metrics.Observe503(after.Kind)
	}
	h.d.notifyCall(r.Status, before, after)
	if after.Kind != before.Kind {
		h.d.log.Warn("budget: 503 classification changed", "from", before.Kind, "to", after.Kind, "reason", after.Reason)
		if b, err := json.Marshal(after); err == nil {
			h.d.db.SetMeta(ctx, metaClassification, string(b))
		}
	}
}

// shares is the gate's per-call check for normal and low calls: one more call
// must leave every higher-priority run of the next 24 hours its share, by the
// planner's own rule (DESIGN 3.5) — a run may spend beyond its estimate.
func (d *daemon) shares(now time.Time, p runnerd.Priority) *budget.RefusedError {
	var above []budget.Candidate
	for _, u := range d.sched.Upcoming(now, 24*time.Hour) {
		if u.Priority > p {
			above = append(above, u)
		}
	}
	if len(above) == 0 {
		return nil
	}
	dec := d.planner.Admit(now, d.window, budget.Candidate{Job: "(call)", Nominal: now, Priority: p, Estimate: 1, Seq: math.MaxInt64}, above)
	if dec.Admit {
		return nil
	}
	return &budget.RefusedError{Err: budget.ErrExhausted, RetryAt: dec.EarliestAt,
		Reason: "keeping the share of higher-priority runs: " + dec.Reason}
}

type plannerAdapter struct{ d *daemon }

func (p plannerAdapter) Admit(now time.Time, c budget.Candidate, upcoming []budget.Candidate) budget.Decision {
	return p.d.planner.Admit(now, p.d.window, c, upcoming)
}

type estimatorAdapter struct{ d *daemon }

func (a estimatorAdapter) Estimate(ctx context.Context, job, kind string) int {
	if j, err := a.d.findJob(job); err == nil {
		kind = estimateKind(j)
	}
	return a.d.estimate(ctx, job, kind).Calls
}

// estimateKind is the estimator's kind for a job: an execute job that does not
// wait costs one call, not a start and its polls.
func estimateKind(j *config.Job) string {
	if j.Kind == "execute" && !j.Wait {
		return budget.RunExecuteNoWait
	}
	return j.Kind
}

func (d *daemon) estimate(ctx context.Context, job, kind string) budget.Estimate {
	recent, err := d.db.RecentCallCounts(ctx, job, 20)
	if err != nil {
		recent = nil
	}
	return budget.EstimateRun(kind, recent, budget.DefaultEstimates())
}

// onRun hears every run outcome once it is recorded (metrics, notifications).
func (d *daemon) onRun(r runnerd.Run) {
	d.metrics.ObserveRun(r.Job, string(r.State))
	d.notifyRun(r)
}

var errNoSuchJob = errors.New("no such job")

func (d *daemon) findJob(name string) (*config.Job, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for i := range d.cfg.Jobs {
		if d.cfg.Jobs[i].Name == name {
			return &d.cfg.Jobs[i], nil
		}
	}
	return nil, fmt.Errorf("%w %q in %s", errNoSuchJob, name, d.cfg.File)
}

// Package engine is the daemon's core as one value: it wires the ledger
// (store), the budget (window, rate, classifier, gate, planner), the
// AtomSphere client, the scheduler and its kinds, the reconciler, the
// notifier and the metrics, and decides everything the daemon decides — the
// per-call hooks (ledger row, 503 classifier, metrics, notifications), the
// share check of every normal and low call, admission over the look-ahead of
// every arrived and planned run, estimates, reloads.
//
// An Engine is opened with Open, which takes the spender lock beside the
// database (one process spends a ledger's budget), started with Start, and
// closed with Close, which waits for every goroutine the engine started,
// closes the database, and then lets the lock go. Everything reads one clock, Options.Now, so a testing/synctest bubble
// can run a whole day of it. cmd/runnerd keeps flags, subcommands, signals,
// sd_notify, the control socket, listeners and printing.
package engine

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"reflect"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/budget/apigate"
	"runnerd/internal/config"
	"runnerd/internal/evidence"
	"runnerd/internal/notify"
	"runnerd/internal/scheduler"
	"runnerd/internal/scheduler/kinds"
	"runnerd/internal/store"
	"runnerd/internal/web"
)

// ConfigError marks a problem of the configuration or the database file that
// an operator must fix (cmd/runnerd maps it to exit code 2).
type ConfigError struct{ Err error }

func (e ConfigError) Error() string { return e.Err.Error() }
func (e ConfigError) Unwrap() error { return e.Err }

func configErrorf(format string, args ...any) error {
	return ConfigError{fmt.Errorf(format, args...)}
}

// Options configure Open. Config is required.
type Options struct {
	Config *config.Config
	Logger *slog.Logger // nil: discard
	// Now is the one clock of the engine: the gate, the planner, the client's
	// ledger times, the scheduler, the kinds, the reconciler and the notifier
	// all read it. time.Now if nil; timers are the runtime's, so a synctest
	// bubble fakes both.
	Now func() time.Time
	// Getenv reads the environment (password_env, $CREDENTIALS_DIRECTORY,
	// notification secrets). os.Getenv if nil.
	Getenv func(string) string
	// OutputDir resolves relative export paths (the demo); "" = as given.
	OutputDir string
	// Reconcile: how long an unknown run's unsafe call may take to show on
	// the platform, how often reconciliation passes run, and the clock skew
	// allowed in window searches. Zero values take reconcile's defaults.
	ReconcileGrace, ReconcileEvery, ReconcileSkew time.Duration
	// Client, if set, adjusts the client's configuration before it is built
	// (tests: timeouts, retries, the transport, a recorder wrapped around the
	// engine's).
	Client func(*atomapi.Config)
	// StoreOptions are passed to store.Open (Now is set from Now).
	StoreOptions store.Options
	// Lock is the spender lock, already held (a command that asked the
	// daemon first); nil: Open takes it, and fails with ErrLocked when
	// another process holds it. Close releases it, after the database.
	Lock *SpenderLock
}

// Engine is the running daemon. Its methods are safe for concurrent use.
type Engine struct {
	log    *slog.Logger
	now    func() time.Time
	getenv func(string) string
	opts   Options

	lock       *SpenderLock
	db         *store.DB
	leases     *leases // a shared ledger's leases; nil on SQLite
	renewOnce  sync.Once
	window     *budget.Window
	limiter    *budget.RateLimiter
	classifier *budget.Classifier
	gate       *budget.Gate
	planner    *budget.Planner
	client     *atomapi.Client
	poller     *kinds.Poller
	evidence   *evidence.Fetcher
	sched      *scheduler.Scheduler
	metrics    *web.Metrics
	notify     *engineNotify
	limits     budget.Limits

	// The adaptive rate margin (nil when [budget] rate_margin fixes it) and
	// the margin the limiter has now.
	margin    *budget.MarginEstimator
	marginNow atomicDuration

	// The status page's over-subscription figures (oversubscribed).
	oversubMu  sync.Mutex
	oversub    []Shortfall
	oversubAt  time.Time
	oversubCfg *config.Config

	mu  sync.Mutex // guards cfg
	cfg *config.Config

	spentMu sync.Mutex
	spent   map[int64]int // calls begun per run in flight, for the look-ahead

	estMu     sync.Mutex
	estimates map[string]budget.Estimate // per job, its last estimate (the scheduler's Duration, the status page)

	bg       context.Context // background goroutines' context; cancelled by Close
	cancelBG context.CancelFunc
	wg       sync.WaitGroup // every goroutine the engine started
	srvMu    sync.Mutex
	servers  []*http.Server
	conns    sync.WaitGroup // the status page's connections

	started   atomic.Bool
	stopped   atomic.Bool // the scheduler has been stopped
	closeOnce sync.Once

	// beforeDBClose is a test hook: called in Close after every goroutine
	// has ended, right before the database is closed.
	beforeDBClose func()
}

// clock is the gate's budget.Clock on the engine's Now.
type clock struct{ now func() time.Time }

func (c clock) Now() time.Time { return c.now() }
func (c clock) Sleep(ctx context.Context, d time.Duration) error {
	return runnerd.Sleep(ctx, d)
}

// Open opens the ledger and wires the budget, the client, the notifier and the
// scheduler with the configuration's jobs. It starts nothing that fires: call
// Start. On error everything opened is closed again.
func Open(ctx context.Context, o Options) (_ *Engine, err error) {
	if o.Config == nil {
		return nil, errors.New("engine: no configuration")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Getenv == nil {
		o.Getenv = os.Getenv
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	cfg := o.Config
	e := &Engine{log: o.Logger, now: o.Now, getenv: o.Getenv, opts: o, cfg: cfg, metrics: web.NewMetrics(),
		spent: map[int64]int{}, estimates: map[string]budget.Estimate{}, lock: o.Lock}
	e.bg, e.cancelBG = context.WithCancel(context.Background())
	defer func() {
		if err != nil {
			e.Close()
		}
	}()
	if e.lock == nil {
		if e.lock, err = AcquireLock(ctx, cfg.Store.Path, false); err != nil {
			return nil, err
		}
	}
	so := o.StoreOptions
	so.Now = o.Now
	if e.db, err = OpenStore(ctx, cfg, so); err != nil {
		return nil, err
	}
	e.limits = Limits(cfg)
	e.window = budget.NewWindow(e.limits)
	if err := e.loadWindow(ctx); err != nil {
		return nil, err
	}
	e.limiter = budget.NewRateLimiterMargin(cfg.Budget.Rate, cfg.Budget.RateMargin.Duration)
	if cfg.Budget.RateMarginAuto {
		// rate_margin not set: follow the round trips' spread.
		e.margin = budget.NewMarginEstimator(cfg.Budget.RateMargin.Duration)
		e.marginNow.Store(cfg.Budget.RateMargin.Duration)
	}
	e.classifier = budget.NewClassifier()
	if err := e.seedRecent(ctx); err != nil {
		return nil, err
	}
	e.gate = budget.NewGate(e.limits, e.window, e.limiter, clock{o.Now}, e.classifier)
	e.planner = budget.NewPlanner(e.limits)
	if err := e.startNotifier(cfg); err != nil {
		return nil, err
	}
	if e.client, err = e.newClient(cfg); err != nil {
		return nil, err
	}
	if err := e.metrics.Registry().Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "runnerd_rate_margin_seconds",
		Help: "The margin added to the rate's one-second window: [budget] rate_margin, or adapted to the spread of recent round trips when it is not set.",
	}, func() float64 {
		if e.margin != nil {
			return e.marginNow.Load().Seconds()
		}
		return cfg.Budget.RateMargin.Duration.Seconds()
	})); err != nil {
		return nil, err
	}
	if err := e.metrics.Registry().Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "runnerd_auth_breaker_open",
		Help: "1 while the credentials were rejected twice in a row and nothing but a probe is sent (closed by a reload, runnerd resume-auth or a successful probe).",
	}, func() float64 {
		if open, _ := e.client.AuthBreaker(); open {
			return 1
		}
		return 0
	})); err != nil {
		return nil, err
	}
	e.poller = &kinds.Poller{Client: e.client, Now: o.Now}
	e.evidence = e.newEvidence(cfg)
	e.restoreCancelRoute(ctx)
	e.sched = scheduler.New(scheduler.Options{
		Store:     e.db,
		Planner:   plannerAdapter{e},
		Estimator: estimatorAdapter{e},
		Logger:    e.log,
		Now:       o.Now,
		OnRun:     e.onRun,
		Spent:     e.spentBy,
		Duration:  e.duration,
		Owns:      e.owns,
	})
	e.gate.SetShares(e.shares)
	e.shareBudget()
	if err := e.initLeases(); err != nil {
		return nil, err
	}
	jobs, err := e.buildJobs(cfg)
	if err != nil {
		return nil, ConfigError{err}
	}
	if err := e.sched.SetJobs(ctx, jobs); err != nil {
		return nil, ConfigError{err}
	}
	return e, nil
}

// Limits are the budget limits of cfg.
func Limits(cfg *config.Config) budget.Limits {
	return budget.Limits{DailyLimit: cfg.Budget.DailyLimit, Reserve: cfg.Budget.Reserve, Rate: cfg.Budget.Rate}
}

// OpenStore opens cfg's database. Refusals (a corrupt file, a schema newer
// than this binary, no file for a read-only open) are ConfigErrors.
//
// With [store] url the ledger is that PostgreSQL database, its password read
// by [store]'s password_file, password_env or credential and handed to the
// driver apart from the URL.
func OpenStore(ctx context.Context, cfg *config.Config, opts store.Options) (*store.DB, error) {
	loc := cfg.Store.Path
	if cfg.Store.URL != "" {
		loc = cfg.Store.URL
		pw, err := cfg.Store.Password(config.LoadOptions{})
		if err != nil {
			return nil, ConfigError{fmt.Errorf("%s: %w", cfg.File, err)}
		}
		opts.Password = pw.Reveal()
		opts.Instance = instanceName(cfg.Store.Instance)
	}
	db, err := store.Open(ctx, loc, opts)
	if err != nil {
		if errors.Is(err, store.ErrCorrupt) || errors.Is(err, store.ErrSchemaTooNew) || errors.Is(err, store.ErrNoDatabase) ||
			errors.Is(err, store.ErrNotWritable) {
			key := "path"
			if cfg.Store.URL != "" {
				key = "url"
			}
			return nil, ConfigError{fmt.Errorf("%w (the database is [store] %s in %s)", err, key, cfg.File)}
		}
		return nil, err
	}
	return db, nil
}

func (e *Engine) newClient(cfg *config.Config) (*atomapi.Client, error) {
	pw, err := cfg.Account.Password(e.getenv)
	if err != nil {
		return nil, ConfigError{err}
	}
	var roots *x509.CertPool
	if cfg.Account.CAFile != "" {
		pem, err := os.ReadFile(cfg.Account.CAFile)
		if err != nil {
			return nil, configErrorf("%s: account: ca_file: %v", cfg.File, err)
		}
		if roots, err = x509.SystemCertPool(); err != nil || roots == nil {
			roots = x509.NewCertPool()
		}
		if !roots.AppendCertsFromPEM(pem) {
			return nil, configErrorf("%s: account: ca_file: %s holds no PEM certificate", cfg.File, cfg.Account.CAFile)
		}
	}
	cc := atomapi.Config{
		BaseURL:     cfg.Account.URL,
		AccountID:   cfg.Account.ID,
		Credentials: atomapi.NewCredentials(cfg.Account.User, pw.Reveal()),
		Gate:        apigate.Gate{G: e.gate, Paced: true},
		Recorder:    &callHooks{e: e},
		RootCAs:     roots,
		Logger:      e.log,
		Now:         e.now,
		// Where cancelExecution answers is found once and kept.
		OnCancelRoute: e.saveCancelRoute,
	}
	if e.opts.Client != nil {
		e.opts.Client(&cc)
	}
	c, err := atomapi.New(cc)
	if err != nil {
		return nil, ConfigError{err}
	}
	return c, nil
}

// MetaClassification is the meta row where the last 503 classification is
// kept, for `runnerd budget` and a restart.
const MetaClassification = "budget.classification"

// loadWindow rebuilds the rolling window from the ledger's hourly rollup,
// later hours included (a clock stepped back keeps counting them).
func (e *Engine) loadWindow(ctx context.Context) error {
	w, err := LoadWindow(ctx, e.db, e.limits, e.now())
	if err != nil {
		return err
	}
	e.window = w
	return nil
}

// LoadWindow builds a window from db's hourly rollup around now.
func LoadWindow(ctx context.Context, db *store.DB, l budget.Limits, now time.Time) (*budget.Window, error) {
	usage, err := db.HourlyUsage(ctx, now.Add(-25*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("budget: read the ledger's hourly usage: %w", err)
	}
	hours := make([]budget.HourCount, len(usage))
	for i, u := range usage {
		hours[i] = budget.HourCount{Hour: u.Hour, Calls: u.Calls}
	}
	w := budget.NewWindow(l)
	w.Load(hours)
	return w, nil
}

// seedRecent tells the rate limiter and the 503 classifier of the calls an
// earlier process made in the last seconds (the ledger has them): one process
// after another must not spend the same second twice.
func (e *Engine) seedRecent(ctx context.Context) error {
	calls, err := e.db.ListCalls(ctx, store.CallFilter{Since: e.now().Add(-3 * time.Second), Status: -1})
	if err != nil {
		return err
	}
	// A row's started_at is taken before its commit and the rate wait; the
	// request went out at finished_at − duration. A row still open (its
	// process died mid-call) is taken as sent just now: the cautious reading.
	starts := make([]time.Time, 0, len(calls))
	for _, c := range calls {
		sent := e.now()
		if !c.FinishedAt.IsZero() {
			sent = c.FinishedAt.Add(-time.Duration(c.DurationMS) * time.Millisecond)
		}
		starts = append(starts, sent)
	}
	sort.Slice(starts, func(i, j int) bool { return starts[i].Before(starts[j]) })
	e.limiter.Seed(starts)
	e.classifier.Seed(starts)
	return nil
}

// Start starts cron (with recovery of interrupted runs and catch-up), the
// reconciliation loop and housekeeping. Runs live on runCtx: cancelling it
// cancels them (Stop first lets them finish). Per-job problems of recovery
// and catch-up are returned after cron is running; the rest serves on.
func (e *Engine) Start(runCtx context.Context) error {
	if !e.started.CompareAndSwap(false, true) {
		return scheduler.ErrStarted
	}
	if e.leases != nil {
		// The jobs this instance runs are those it holds a lease on when
		// the scheduler starts, and those it takes over later.
		if err := e.checkInstanceName(runCtx); err != nil {
			e.started.Store(false)
			return &NotStartedError{ConfigError{err}}
		}
		if _, err := e.heartbeat(runCtx, e.jobNames()); err != nil {
			e.started.Store(false)
			return &NotStartedError{fmt.Errorf("the shared ledger: %w", err)}
		}
		e.goBG(e.leaseLoop)
	}
	// What an interrupted release paused is resumed before anything runs.
	var oerr error
	if n, err := e.ResumeObligations(runCtx); err != nil {
		oerr = err
	} else if n > 0 {
		e.log.Info("release: resume obligations carried out before the scheduler starts", "resumed", n)
	}
	err := errors.Join(e.sched.Start(runCtx), oerr)
	if errors.Is(err, scheduler.ErrStarted) || errors.Is(err, scheduler.ErrStopped) {
		return err
	}
	e.goBG(func(ctx context.Context) { e.reconciler().Loop(ctx, e.opts.ReconcileEvery) })
	e.goBG(e.housekeeping)
	e.goBG(func(ctx context.Context) {
		e.sweepEvidence(ctx)
		e.evidence.Loop(ctx)
	})
	return err
}

// NotStartedError is Start's error when nothing was started (not the
// scheduler either): the caller should not serve on. Err says why.
type NotStartedError struct{ Err error }

func (e *NotStartedError) Error() string { return e.Err.Error() }
func (e *NotStartedError) Unwrap() error { return e.Err }

// goBG runs f on a goroutine that Close cancels and waits for.
func (e *Engine) goBG(f func(ctx context.Context)) {
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		f(e.bg)
	}()
}

// Serve serves the status page, /metrics and /healthz on ln until Close,
// which shuts the server down within a bound.
func (e *Engine) Serve(ln net.Listener) {
	srv := &http.Server{Handler: web.Handler(e, e.metrics, e.now), ReadHeaderTimeout: 5 * time.Second,
		// Each connection's goroutine is counted, so that Close waits for its
		// handler to end (Shutdown alone does not wait for them to exit).
		ConnState: func(_ net.Conn, st http.ConnState) {
			switch st {
			case http.StateNew:
				e.conns.Add(1)
			case http.StateClosed, http.StateHijacked:
				e.conns.Done()
			}
		}}
	e.srvMu.Lock()
	e.servers = append(e.servers, srv)
	e.srvMu.Unlock()
	e.wg.Add(1)
	go func() {
		defer e.wg.Done()
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			e.log.Error("http: the status page stopped serving", "err", err)
		}
	}()
}

// Stop stops new dispatch and waits for the runs in flight until ctx ends;
// then they are cancelled and get grace to record how they ended.
func (e *Engine) Stop(ctx context.Context, grace time.Duration) error {
	err := e.sched.Stop(ctx)
	if err != nil {
		gctx, cancel := context.WithTimeout(context.Background(), grace)
		e.sched.Stop(gctx)
		cancel()
	}
	e.stopped.Store(true)
	return err
}

// httpShutdownBound is how long Close waits for the status page's requests.
const httpShutdownBound = 5 * time.Second

// Close stops everything the engine started — cron and the runs in flight
// (cancelled), reconciliation, housekeeping, the HTTP server, the notifier's
// workers — waits for every one of those goroutines, and then closes the
// database, last. It is safe to call more than once.
func (e *Engine) Close() error {
	var err error
	e.closeOnce.Do(func() {
		if e.sched != nil && !e.stopped.Load() {
			// Runs still in flight are cancelled at once and get a grace
			// to record how they ended; a caller that wants them to finish
			// calls Stop with its own bound first.
			ctx, cancel := context.WithCancel(context.Background())
			cancel()
			e.Stop(ctx, stopGraceOnClose)
		}
		if e.poller != nil {
			e.poller.Wait() // every run has ended, so every waiter has stopped
		}
		e.cancelBG()
		e.srvMu.Lock()
		servers := e.servers
		e.srvMu.Unlock()
		for _, srv := range servers {
			ctx, cancel := context.WithTimeout(context.Background(), httpShutdownBound)
			if serr := srv.Shutdown(ctx); serr != nil {
				srv.Close()
			}
			cancel()
		}
		e.wg.Wait()
		e.conns.Wait()
		e.stopNotifier()
		if e.db != nil {
			e.releaseLeases()
		}
		if e.beforeDBClose != nil {
			e.beforeDBClose()
		}
		if e.db != nil {
			if cerr := e.db.Checkpoint(context.Background()); cerr != nil {
				e.log.Warn("close: WAL checkpoint failed; the next open replays the WAL", "err", cerr)
			}
			err = e.db.Close()
		}
		e.lock.Release() // last: the next spender finds the ledger closed
	})
	return err
}

// stopGraceOnClose bounds the runs Close itself stops (a caller that wants
// runs to finish calls Stop with its own bound first).
const stopGraceOnClose = 5 * time.Second

// Reload applies a new configuration's jobs and log-independent settings.
// Sections that take effect only at a restart are named in the returned
// warnings; an error leaves the running jobs as they were.
func (e *Engine) Reload(ctx context.Context, cfg *config.Config) (warnings []string, err error) {
	e.mu.Lock()
	old := e.cfg
	e.mu.Unlock()
	for _, c := range []struct {
		section string
		changed bool
	}{
		// The credential (user, password_file, password_env, credential)
		// is re-read below; where the account is needs a restart.
		{"[account] id, url or ca_file", cfg.Account.ID != old.Account.ID || cfg.Account.URL != old.Account.URL ||
			cfg.Account.CAFile != old.Account.CAFile},
		{"[store]", cfg.Store != old.Store},
		{"[budget]", cfg.Budget != old.Budget},
		{"[http]", cfg.HTTP != old.HTTP},
		{"[evidence]", cfg.Evidence != old.Evidence},
		{"[log] format", cfg.Log.Format != old.Log.Format},
		{"[[notify]]", !reflect.DeepEqual(cfg.Notify, old.Notify)},
	} {
		if c.changed {
			warnings = append(warnings, "changes to "+c.section+" take effect at the next restart; the rest is applied")
		}
	}
	jobs, err := e.buildJobs(cfg)
	if err == nil {
		err = e.sched.SetJobs(ctx, jobs)
	}
	if err != nil {
		return warnings, err
	}
	defer e.reconsiderEvidence(ctx) // other jobs, other shares: deferred evidence may fit now
	e.mu.Lock()
	// [[notify]] stays as running (its targets' workers and secrets are
	// built at start); the warning above says so.
	next := *old
	next.Jobs, next.Defaults, next.Log.Level = cfg.Jobs, cfg.Defaults, cfg.Log.Level
	e.cfg = &next
	e.mu.Unlock()
	// A reload is the operator's word that the credential may have been
	// fixed: re-read it (the file may hold a rotated one) and close the auth
	// breaker, so the next call tries it. One that cannot be read now keeps
	// the running credential.
	acct := old.Account
	acct.User, acct.PasswordFile, acct.PasswordEnv, acct.Credential = cfg.Account.User, cfg.Account.PasswordFile,
		cfg.Account.PasswordEnv, cfg.Account.Credential
	if pw, perr := acct.Password(e.getenv); perr != nil {
		warnings = append(warnings, fmt.Sprintf("the credential could not be re-read; keeping the running one: %v", perr))
		e.client.ResetAuth()
	} else {
		e.client.SetCredentials(atomapi.NewCredentials(acct.User, pw.Reveal()))
		e.mu.Lock()
		next := *e.cfg
		next.Account.User, next.Account.PasswordFile, next.Account.PasswordEnv, next.Account.Credential =
			acct.User, acct.PasswordFile, acct.PasswordEnv, acct.Credential
		e.cfg = &next
		e.mu.Unlock()
	}
	return warnings, nil
}

// ResumeAuth closes the auth breaker (`runnerd resume-auth`): the operator
// says the credential was fixed on the platform's side. It reports whether
// the breaker was open.
func (e *Engine) ResumeAuth() bool {
	open, _ := e.client.AuthBreaker()
	e.client.ResetAuth()
	if open {
		e.log.Info("auth breaker closed by runnerd resume-auth; the next call tries the credential")
	}
	return open
}

// Config returns the configuration in force.
func (e *Engine) Config() *config.Config {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.cfg
}

// DB is the ledger.
func (e *Engine) DB() *store.DB { return e.db }

// Scheduler is the engine's scheduler.
func (e *Engine) Scheduler() *scheduler.Scheduler { return e.sched }

// Metrics is the registry behind /metrics.
func (e *Engine) Metrics() *web.Metrics { return e.metrics }

// Limits are the budget limits in force.
func (e *Engine) Limits() budget.Limits { return e.limits }

// Logger is the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.log }

// Now is the engine's clock.
func (e *Engine) Now() time.Time { return e.now() }

// ErrNoSuchJob: the configuration has no job of that name.
var ErrNoSuchJob = errors.New("no such job")

// Job returns the configured job name.
func (e *Engine) Job(name string) (*config.Job, error) {
	cfg := e.Config()
	if j := cfg.Job(name); j != nil {
		return j, nil
	}
	return nil, fmt.Errorf("%w %q in %s (%s)", ErrNoSuchJob, name, cfg.File, cfg.JobHint(name))
}

// RunNow runs job now, outside its schedule, through the same planner, gate
// and ledger (see scheduler.RunNow).
func (e *Engine) RunNow(ctx context.Context, job string, from, to time.Time) (runnerd.Run, error) {
	if _, err := e.Job(job); err != nil {
		return runnerd.Run{}, err
	}
	// On a shared ledger the run needs the job's lease.
	if err := e.holdForRun(ctx, job); err != nil {
		return runnerd.Run{}, err
	}
	// Before anything else of the job: what an interrupted run of it paused
	// is resumed (`runnerd run` after a crash, without a daemon).
	if _, err := e.resumeObligations(ctx, job); err != nil {
		return runnerd.Run{}, fmt.Errorf("job %q: %w; not run while it owes a resume", job, err)
	}
	return e.sched.RunNow(ctx, job, from, to)
}

// Pause and Resume persist a job's pause.
func (e *Engine) Pause(ctx context.Context, job string) error {
	if _, err := e.Job(job); err != nil {
		return err
	}
	if err := e.sched.Pause(ctx, job); err != nil {
		return err
	}
	e.reconsiderEvidence(ctx) // a paused job holds no share: deferred evidence may fit now
	return nil
}

// Resume: see Pause.
func (e *Engine) Resume(ctx context.Context, job string) error {
	if _, err := e.Job(job); err != nil {
		return err
	}
	return e.sched.Resume(ctx, job)
}

// StatusLine is the one-line STATUS= for systemctl status.
func (e *Engine) StatusLine() string {
	now := e.now()
	var next string
	var nextAt time.Time
	for job, t := range e.sched.Next() {
		if !t.IsZero() && (nextAt.IsZero() || t.Before(nextAt)) {
			next, nextAt = job, t
		}
	}
	s := fmt.Sprintf("%d jobs, %d running; budget %d of %d left", len(e.Config().Jobs), e.sched.InFlight(),
		e.window.Remaining(now), e.limits.Cap())
	if next != "" {
		s += fmt.Sprintf("; next %s at %s", next, nextAt.UTC().Format(time.RFC3339))
	}
	if _, down := e.leaseState(); down {
		s = "the shared ledger does not answer: no calls are started; " + s
	}
	return s
}

// Healthy: the store answers and the scheduler has not stopped. An exhausted
// budget is not ill health, and neither is a shared (PostgreSQL) ledger out
// of reach: the daemon then starts no call and waits for it (a restart by
// the watchdog would not bring it back sooner), saying so in its status.
func (e *Engine) Healthy(ctx context.Context) error {
	if err := e.db.Ping(ctx); err != nil && !e.db.IsPostgres() {
		return err
	}
	if e.stopped.Load() {
		return errors.New("scheduler stopped")
	}
	return nil
}

// saveClassification keeps the 503 classification for `runnerd budget`.
func (e *Engine) saveClassification(ctx context.Context, c budget.Classification) {
	b, err := json.Marshal(c)
	if err == nil {
		err = e.db.SetMeta(ctx, MetaClassification, string(b))
	}
	if err != nil {
		e.log.Warn("ledger: could not record the 503 classification; runnerd budget may show an older one", "err", err)
	}
}

// Notifier is the engine's notifier (nil without [[notify]] targets' workers).
func (e *Engine) Notifier() *notify.Notifier {
	if e.notify == nil {
		return nil
	}
	return e.notify.n
}

// FlushNotifications lets queued notifications go out, then stops the
// notifier's workers (Close would too).
func (e *Engine) FlushNotifications() { e.stopNotifier() }

// atomicDuration is a time.Duration read and swapped atomically.
type atomicDuration struct{ v atomic.Int64 }

func (a *atomicDuration) Store(d time.Duration) { a.v.Store(int64(d)) }
func (a *atomicDuration) Load() time.Duration   { return time.Duration(a.v.Load()) }
func (a *atomicDuration) Swap(d time.Duration) time.Duration {
	return time.Duration(a.v.Swap(int64(d)))
}

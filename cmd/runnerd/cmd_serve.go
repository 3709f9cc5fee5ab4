package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"reflect"
	"strings"
	"syscall"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/scheduler"
	"runnerd/internal/sdnotify"
	"runnerd/internal/web"
)

// stopBound is how long SIGTERM waits for runs in flight (an unsafe call's
// answer above all) before it gives up on them; below the unit's TimeoutStopSec=90.
const stopBound = 60 * time.Second

// stopGrace is how long runs cancelled at stopBound get to record their state.
const stopGrace = 5 * time.Second

func cmdServe(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "serve", &c, false)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	log, lv, err := newLogger(e.stderr, cfg.Log.Level, cfg.Log.Format, e.getenv)
	if err != nil {
		return usageError{err}
	}
	notifier := sdnotify.New(e.getenv)
	notifier.Logger = log
	d, err := newDaemon(ctx, e, cfg, log, daemonOptions{})
	if err != nil {
		return err
	}
	defer d.close()
	return d.serve(ctx, c.config, notifier, lv)
}

// serve runs the daemon until ctx ends (SIGINT/SIGTERM): control socket, HTTP,
// cron, sd_notify, SIGHUP reloads.
func (d *daemon) serve(ctx context.Context, configPath string, notifier *sdnotify.Notifier, lv *slog.LevelVar) error {
	log := d.log
	// SIGHUP is caught from the start: under systemd `systemctl reload` may
	// come the moment READY=1 is out, and SIGHUP's default action would end
	// the daemon.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	// Runs live on a context of their own: SIGTERM stops new dispatch, and the
	// runs in flight get stopBound to finish before they are cancelled. Runs
	// handed over by `runnerd run` through the control socket are runs in
	// flight like the others: they use this context too, not the signal's.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()

	// The socket answers from the start; requests wait until cron has started
	// (the scheduler takes no run before Start).
	started := make(chan struct{})
	handle := func(hctx context.Context, req controlRequest) controlResponse {
		if req.Op != "ping" {
			select {
			case <-started:
			case <-hctx.Done():
				return controlResponse{Error: "runnerd is stopping; the request was not carried out"}
			}
		}
		return d.handleControl(hctx, req)
	}
	stopCtl, err := serveControl(runCtx, socketPath(d.e.getenv, d.cfg.Store.Path), handle)
	if err != nil {
		return err
	}
	defer stopCtl()

	if addr := d.cfg.HTTP.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return usagef("%s: http: listen %q: %v", d.cfg.File, addr, err)
		}
		srv := &http.Server{Handler: web.Handler(d, d.metrics, d.now), ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		defer srv.Close()
		log.Info("http: serving /metrics, /healthz and the status page", "addr", ln.Addr().String())
	}

	if err := d.sched.Start(runCtx); err != nil {
		if errors.Is(err, scheduler.ErrStarted) || errors.Is(err, scheduler.ErrStopped) {
			return err
		}
		// Start reports per-job problems of recovery and catch-up after cron
		// is running and some runs may be under way: returning now would cut
		// them off unbounded, and systemd would restart into the same state.
		// The daemon serves on; each problem is in the log.
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("start-up: a job's recovery or catch-up failed; serving the rest", "problem", line)
		}
	}
	close(started)
	d.startBackground(runCtx)
	d.startReconcile(runCtx)

	notifier.Ready()
	notifier.Status(d.statusLine())
	log.Info("runnerd ready", "jobs", len(d.cfg.Jobs), "db", d.db.Path())
	if iv, err := sdnotify.WatchdogInterval(d.e.getenv); err != nil {
		log.Warn("watchdog: WATCHDOG_USEC unusable; not sending WATCHDOG=1", "err", err)
	} else if iv > 0 {
		go notifier.RunWatchdog(runCtx, iv, d.Healthy)
	}

	status := time.NewTicker(30 * time.Second)
	defer status.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-hup:
			notifier.Reloading()
			d.reload(runCtx, configPath, lv)
			notifier.Ready()
			notifier.Status(d.statusLine())
		case <-status.C:
			notifier.Status(d.statusLine())
		}
	}

	notifier.Stopping()
	// No new requests: a `runnerd run` from now on finds no daemon and waits
	// for the spender lock, which is released when this process exits.
	stopCtl()
	log.Info("stopping: no new runs; waiting for runs in flight", "in_flight", d.sched.InFlight(), "bound", stopBound)
	sctx, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	if err := d.sched.Stop(sctx); err != nil {
		log.Warn("runs still in flight at the stop bound were cancelled; their state is recorded", "err", err)
		// Let the cancelled runs record how they ended before the store closes.
		gctx, gcancel := context.WithTimeout(context.Background(), stopGrace)
		d.sched.Stop(gctx)
		gcancel()
	}
	cancelRuns()
	d.stopped.Store(true)
	log.Info("stopped")
	return nil
}

// reload re-reads the configuration on SIGHUP. A bad file is reported line by
// line and the running configuration kept.
func (d *daemon) reload(ctx context.Context, path string, lv *slog.LevelVar) {
	cfg, err := config.Load(path, config.LoadOptions{Getenv: d.e.getenv})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			d.log.Error("reload: configuration refused; keeping the running one", "problem", line)
		}
		return
	}
	for _, c := range []struct {
		section string
		changed bool
	}{
		{"[account]", cfg.Account != d.cfg.Account},
		{"[store]", cfg.Store != d.cfg.Store},
		{"[budget]", cfg.Budget != d.cfg.Budget},
		{"[http]", cfg.HTTP != d.cfg.HTTP},
		{"[log] format", cfg.Log.Format != d.cfg.Log.Format},
		{"[[notify]]", !reflect.DeepEqual(cfg.Notify, d.cfg.Notify)},
	} {
		if c.changed {
			d.log.Warn("reload: changes to " + c.section + " take effect at the next restart; the rest is applied")
		}
	}
	jobs, err := d.buildJobs(cfg)
	if err == nil {
		err = d.sched.SetJobs(ctx, jobs)
	}
	if err != nil {
		d.log.Error("reload: jobs refused; keeping the running ones", "err", err)
		return
	}
	if err := setLevel(lv, cfg.Log.Level); err != nil {
		d.log.Warn("reload: log level", "err", err)
	}
	d.mu.Lock()
	// [[notify]] stays as running (its targets' workers and secrets are
	// built at start); the warning above says so.
	d.cfg.Jobs, d.cfg.Defaults, d.cfg.Log.Level = cfg.Jobs, cfg.Defaults, cfg.Log.Level
	d.mu.Unlock()
	d.log.Info("reload: configuration applied", "jobs", len(cfg.Jobs))
}

// statusLine is the one-line STATUS= for systemctl status.
func (d *daemon) statusLine() string {
	now := d.now()
	var next string
	var nextAt time.Time
	for job, t := range d.sched.Next() {
		if !t.IsZero() && (nextAt.IsZero() || t.Before(nextAt)) {
			next, nextAt = job, t
		}
	}
	s := fmt.Sprintf("%d jobs, %d running; budget %d of %d left", len(d.cfg.Jobs), d.sched.InFlight(),
		d.window.Remaining(now), d.limits.Cap())
	if next != "" {
		s += fmt.Sprintf("; next %s at %s", next, nextAt.UTC().Format(time.RFC3339))
	}
	return s
}

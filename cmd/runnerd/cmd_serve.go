package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/sdnotify"
	"runnerd/internal/web"
)

// stopBound is how long SIGTERM waits for runs in flight (an unsafe call's
// answer above all) before it gives up on them; below the unit's TimeoutStopSec=90.
const stopBound = 60 * time.Second

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
	stopCtl, err := serveControl(ctx, socketPath(d.e.getenv, d.cfg.Store.Path), d.handleControl)
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

	// Runs live on a context of their own: SIGTERM stops new dispatch, and the
	// runs in flight get stopBound to finish before they are cancelled.
	runCtx, cancelRuns := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelRuns()
	if err := d.sched.Start(runCtx); err != nil {
		return err
	}
	d.startBackground(runCtx)

	notifier.Ready()
	notifier.Status(d.statusLine())
	log.Info("runnerd ready", "jobs", len(d.cfg.Jobs), "db", d.db.Path())
	if iv, err := sdnotify.WatchdogInterval(d.e.getenv); err != nil {
		log.Warn("watchdog: WATCHDOG_USEC unusable; not sending WATCHDOG=1", "err", err)
	} else if iv > 0 {
		go notifier.RunWatchdog(runCtx, iv, d.Healthy)
	}

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
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
	log.Info("stopping: no new runs; waiting for runs in flight", "in_flight", d.sched.InFlight(), "bound", stopBound)
	sctx, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	if err := d.sched.Stop(sctx); err != nil {
		log.Warn("runs still in flight at the stop bound were cancelled; their state is recorded", "err", err)
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
	if cfg.Store.Path != d.cfg.Store.Path || cfg.Account != d.cfg.Account {
		d.log.Warn("reload: [account] and [store] changes take effect at the next restart")
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
	d.cfg.Jobs, d.cfg.Notify, d.cfg.Defaults, d.cfg.HTTP = cfg.Jobs, cfg.Notify, cfg.Defaults, cfg.HTTP
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

package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/control"
	"runnerd/internal/engine"
	"runnerd/internal/logging"
	"runnerd/internal/scheduler"
	"runnerd/internal/sdnotify"
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
	log, lv, err := logging.New(e.stderr, cfg.Log.Level, cfg.Log.Format, e.getenv)
	if err != nil {
		return usageError{err}
	}
	notifier := sdnotify.New(e.getenv)
	notifier.Logger = log
	d, err := newDaemon(ctx, e, cfg, log, daemonOptions{serve: true})
	if err != nil {
		return err
	}
	defer d.close()
	return d.serve(ctx, e, c.config, notifier, lv)
}

// serve runs the daemon until ctx ends (SIGINT/SIGTERM): control socket, HTTP,
// cron, sd_notify, SIGHUP reloads. The engine decides; this loop only wires
// signals, listeners and systemd to it.
func (d *daemon) serve(ctx context.Context, e *env, configPath string, notifier *sdnotify.Notifier, lv *slog.LevelVar) error {
	log := d.Logger()
	cfg := d.Config()
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
	handle := func(hctx context.Context, req control.Request) control.Response {
		if req.Op != "ping" {
			select {
			case <-started:
			case <-hctx.Done():
				return control.Response{Error: "runnerd is stopping; the request was not carried out"}
			}
		}
		return d.handleControl(hctx, req)
	}
	stopCtl, err := control.Serve(runCtx, socketPath(e.getenv, cfg.Store.Path), handle)
	if err != nil {
		return err
	}
	defer stopCtl()

	if addr := cfg.HTTP.Listen; addr != "" {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			return usagef("%s: http: listen %q: %v", cfg.File, addr, err)
		}
		d.Serve(ln) // the engine shuts it down in Close
		log.Info("http: serving /metrics, /healthz and the status page", "addr", ln.Addr().String())
	}

	if err := d.Start(runCtx); err != nil {
		if errors.Is(err, scheduler.ErrStarted) || errors.Is(err, scheduler.ErrStopped) {
			return err
		}
		var ns *engine.NotStartedError
		if errors.As(err, &ns) {
			return configErr(ns.Err)
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

	notifier.Ready()
	notifier.Status(d.StatusLine())
	log.Info("runnerd ready", "jobs", len(cfg.Jobs), "db", d.DB().Path())
	var watchdog sync.WaitGroup
	defer watchdog.Wait()
	if iv, err := sdnotify.WatchdogInterval(e.getenv); err != nil {
		log.Warn("watchdog: WATCHDOG_USEC unusable; not sending WATCHDOG=1", "err", err)
	} else if iv > 0 {
		watchdog.Go(func() { notifier.RunWatchdog(runCtx, iv, d.Healthy) })
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
			d.reload(runCtx, e, configPath, lv)
			notifier.Ready()
			notifier.Status(d.StatusLine())
		case <-status.C:
			notifier.Status(d.StatusLine())
		}
	}

	notifier.Stopping()
	// No new requests: a `runnerd run` from now on finds no daemon and waits
	// for the spender lock, which is released when this process exits.
	stopCtl()
	log.Info("stopping: no new runs; waiting for runs in flight", "in_flight", d.Scheduler().InFlight(), "bound", stopBound)
	sctx, cancel := context.WithTimeout(context.Background(), stopBound)
	defer cancel()
	if err := d.Stop(sctx, stopGrace); err != nil {
		log.Warn("runs still in flight at the stop bound were cancelled; their state is recorded", "err", err)
	}
	cancelRuns()
	log.Info("stopped")
	return nil
}

// reload re-reads the configuration on SIGHUP. A bad file is reported line by
// line and the running configuration kept.
func (d *daemon) reload(ctx context.Context, e *env, path string, lv *slog.LevelVar) {
	log := d.Logger()
	cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
	if err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			log.Error("reload: configuration refused; keeping the running one", "problem", line)
		}
		return
	}
	warnings, err := d.Reload(ctx, cfg)
	for _, w := range warnings {
		log.Warn("reload: " + w)
	}
	if err != nil {
		log.Error("reload: jobs refused; keeping the running ones", "err", err)
		return
	}
	if err := logging.SetLevel(lv, cfg.Log.Level); err != nil {
		log.Warn("reload: log level", "err", err)
	}
	log.Info("reload: configuration applied", "jobs", len(cfg.Jobs))
}

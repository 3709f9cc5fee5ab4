package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/config"
	"runnerd/internal/control"
	"runnerd/internal/engine"
	"runnerd/internal/reconcile"
	"runnerd/internal/report"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// daemon is the engine as the command line holds it. serve, run and demo all
// build one, so every path spends through the same gate and records in the
// same ledger, under the engine's spender lock.
type daemon struct{ *engine.Engine }

type daemonOptions struct {
	now       func() time.Time
	outputDir string
	lock      *engine.SpenderLock // already held (handOverOrLock); the engine releases it
	serve     bool                // the long-running daemon: an unclean stop before it is checked in full
	client    func(*atomapi.Config)
}

// Reconciliation knobs. They are not configuration keys (DESIGN 3.1 has none):
// the defaults suit production; the environment overrides them for tests and
// for an operator who needs a longer grace period.
const (
	envReconcileGrace = "RUNNERD_RECONCILE_GRACE" // default reconcile.DefaultGrace (10m)
	envReconcileEvery = "RUNNERD_RECONCILE_EVERY" // default reconcile.DefaultEvery (1m)
	envReconcileSkew  = "RUNNERD_RECONCILE_SKEW"  // default reconcile.DefaultSkew (1m)
)

// newDaemon opens the engine (which takes the spender lock unless o holds
// it). It does not start cron.
func newDaemon(ctx context.Context, e *env, cfg *config.Config, log *slog.Logger, o daemonOptions) (*daemon, error) {
	eng, err := engine.Open(ctx, engine.Options{
		Lock:           o.lock,
		Config:         cfg,
		Logger:         log,
		Now:            o.now,
		Getenv:         e.getenv,
		OutputDir:      o.outputDir,
		ReconcileGrace: envDuration(e, log, envReconcileGrace, reconcile.DefaultGrace),
		ReconcileEvery: envDuration(e, log, envReconcileEvery, reconcile.DefaultEvery),
		ReconcileSkew:  envDuration(e, log, envReconcileSkew, reconcile.DefaultSkew),
		Client:         o.client,
		StoreOptions:   store.Options{Daemon: o.serve},
	})
	if err != nil {
		o.lock.Release()
		return nil, err
	}
	v, c := buildVersion()
	eng.Metrics().SetBuildInfo(v, c, runtime.Version())
	return &daemon{eng}, nil
}

// close closes the engine: every goroutine it started, the database, then
// the spender lock.
func (d *daemon) close() {
	if err := d.Close(); err != nil {
		d.Logger().Warn("close: the database did not close cleanly", "err", err)
	}
}

func envDuration(e *env, log *slog.Logger, name string, def time.Duration) time.Duration {
	v := e.getenv(name)
	if v == "" {
		return def
	}
	x, err := time.ParseDuration(v)
	if err != nil || x <= 0 {
		log.Warn("ignoring a bad duration; using the default", "var", name, "value", v, "default", def)
		return def
	}
	return x
}

// handleControl serves one control-socket request (and `runnerd run` in-process).
func (d *daemon) handleControl(ctx context.Context, req control.Request) control.Response {
	switch req.Op {
	case "ping":
		return control.Response{OK: true}
	case "resume-auth":
		if d.ResumeAuth() {
			return control.Response{OK: true, Was: "open"}
		}
		return control.Response{OK: true, Was: "closed"}
	}
	if _, err := d.Job(req.Job); err != nil {
		return control.Response{Error: err.Error(), Usage: true}
	}
	switch req.Op {
	case "pause", "resume":
		var err error
		if req.Op == "pause" {
			err = d.Pause(ctx, req.Job)
		} else {
			err = d.Resume(ctx, req.Job)
		}
		if err != nil {
			return control.Response{Error: err.Error()}
		}
		return control.Response{OK: true}
	case "run":
		var from, to time.Time
		var err error
		if req.From != "" {
			if from, err = time.Parse(time.RFC3339, req.From); err != nil {
				return control.Response{Error: "from: " + err.Error(), Usage: true}
			}
		}
		if req.To != "" {
			if to, err = time.Parse(time.RFC3339, req.To); err != nil {
				return control.Response{Error: "to: " + err.Error(), Usage: true}
			}
		}
		r, err := d.RunNow(ctx, req.Job, from, to)
		if err != nil {
			return control.Response{Error: err.Error(), Usage: errors.Is(err, scheduler.ErrPaused) || errors.Is(err, scheduler.ErrUnknownJob)}
		}
		j := report.ToRun(r)
		return control.Response{OK: r.State == runnerd.StateSucceeded, Run: &j}
	}
	if req.Op == "release-plan" {
		plan, err := d.ReleasePlan(ctx, req.Job)
		if err != nil {
			return control.Response{Error: err.Error(), Usage: errors.Is(err, engine.ErrNoSuchJob) || strings.Contains(err.Error(), "not a release")}
		}
		b, err := json.Marshal(plan)
		if err != nil {
			return control.Response{Error: err.Error()}
		}
		return control.Response{OK: true, Plan: b}
	}
	return control.Response{Error: fmt.Sprintf("unknown operation %q", req.Op), Usage: true}
}

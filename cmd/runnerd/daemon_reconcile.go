package main

import (
	"context"
	"time"

	"runnerd/internal/reconcile"
	"runnerd/internal/store"
)

// Reconciliation knobs. They are not configuration keys (DESIGN 3.1 has none):
// the defaults suit production; the environment overrides them for tests and
// for an operator who needs a longer grace period.
const (
	envReconcileGrace = "RUNNERD_RECONCILE_GRACE" // default reconcile.DefaultGrace (10m)
	envReconcileEvery = "RUNNERD_RECONCILE_EVERY" // default reconcile.DefaultEvery (1m)
	envReconcileSkew  = "RUNNERD_RECONCILE_SKEW"  // default reconcile.DefaultSkew (1m)
)

// The ledger is what reconciliation reads and writes.
var _ reconcile.Store = (*store.DB)(nil)

// startReconcile queues reconciliation of the runs left unknown (the
// scheduler's Start has marked the ones a crashed process left mid-call) and
// keeps reconciling on a timer until ctx ends. serve calls it before READY=1.
func (d *daemon) startReconcile(ctx context.Context) {
	rc := d.newReconciler()
	every := d.envDuration(envReconcileEvery, reconcile.DefaultEvery)
	go rc.Loop(ctx, every)
}

func (d *daemon) newReconciler() *reconcile.Reconciler {
	return reconcile.New(reconcile.Options{
		Client: d.client,
		Store:  d.db,
		Jobs:   d.reconcileTarget,
		Refire: d.sched.Refire,
		OnRun:  d.onRun,
		Now:    d.now,
		Grace:  d.envDuration(envReconcileGrace, reconcile.DefaultGrace),
		Skew:   d.envDuration(envReconcileSkew, reconcile.DefaultSkew),
		Logger: d.log,
	})
}

// reconcileTarget is what a job did, for reconciliation.
func (d *daemon) reconcileTarget(job string) (reconcile.Target, bool) {
	j, err := d.findJob(job)
	if err != nil {
		return reconcile.Target{}, false
	}
	return reconcile.Target{
		Kind: j.Kind, Method: j.Method, ProcessID: j.ProcessID, AtomID: j.AtomID, ToEnv: j.ToEnvironment,
		OnUnknown: j.OnUnknown, Priority: priorityOf(j.Priority),
	}, true
}

func (d *daemon) envDuration(name string, def time.Duration) time.Duration {
	v := d.e.getenv(name)
	if v == "" {
		return def
	}
	x, err := time.ParseDuration(v)
	if err != nil || x <= 0 {
		d.log.Warn("ignoring a bad duration; using the default", "var", name, "value", v, "default", def)
		return def
	}
	return x
}

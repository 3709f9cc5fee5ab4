package engine

import (
	"runnerd"
	"runnerd/internal/reconcile"
	"runnerd/internal/store"
)

// The ledger is what reconciliation reads and writes.
var _ reconcile.Store = (*store.DB)(nil)

// reconciler builds the reconciler of runs left unknown (Start runs its loop).
func (e *Engine) reconciler() *reconcile.Reconciler {
	return reconcile.New(reconcile.Options{
		Client: e.client,
		Store:  e.db,
		Jobs:   e.reconcileTarget,
		Refire: e.sched.Refire,
		OnRun:  e.onRun,
		Now:    e.now,
		Grace:  e.opts.ReconcileGrace,
		Skew:   e.opts.ReconcileSkew,
		Logger: e.log,
	})
}

// NewReconciler returns a reconciler on the engine's client and ledger, for a
// test or a one-off pass; the daemon's own runs in Start.
func (e *Engine) NewReconciler() *reconcile.Reconciler { return e.reconciler() }

// reconcileTarget is what a job did, for reconciliation.
// A job another instance runs (a shared ledger) is its to reconcile: none.
func (e *Engine) reconcileTarget(job string) (reconcile.Target, bool) {
	if !e.owns(job) {
		return reconcile.Target{}, false
	}
	j, err := e.Job(job)
	if err != nil {
		return reconcile.Target{}, false
	}
	prio, err := runnerd.ParsePriority(j.Priority)
	if err != nil {
		return reconcile.Target{}, false
	}
	return reconcile.Target{
		Kind: j.Kind, Method: j.Method, ProcessID: j.ProcessID, AtomID: j.AtomID, ToEnv: j.ToEnvironment,
		OnUnknown: j.OnUnknown, Priority: prio,
	}, true
}

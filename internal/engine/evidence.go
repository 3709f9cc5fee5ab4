package engine

import (
	"context"
	"path/filepath"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/config"
	"runnerd/internal/evidence"
	"runnerd/internal/store"
)

// metaCancelRoute keeps where cancelExecution answered (atomapi.CancelRoute)
// across restarts, as "route@RFC3339".
const metaCancelRoute = "cancel_execution_route"

// newEvidence builds the fetcher of failure evidence from [evidence].
func (e *Engine) newEvidence(cfg *config.Config) *evidence.Fetcher {
	return evidence.New(evidence.Options{
		DB: e.db, Client: e.client, Dir: evidenceDir(cfg),
		MaxRun: int64(cfg.Evidence.MaxRunMB) << 20, MaxTotal: int64(cfg.Evidence.MaxTotalMB) << 20,
		GiveUpAfter: cfg.Evidence.GiveUpAfter.Duration, Now: e.now, Logger: e.log,
	})
}

// evidenceWant is what a failed run of job wants fetched, by its current
// configuration (a job no longer configured: the log at the default level).
func (e *Engine) evidenceWant(job string) evidence.Want {
	j, err := e.Job(job)
	if err != nil {
		return evidence.Want{Level: config.DefaultLogLevelEvidence}
	}
	return evidence.Want{Level: j.LogLevel, Artifacts: j.Artifacts}
}

// queueEvidence queues a failed execution's evidence (from onRun).
func (e *Engine) queueEvidence(r runnerd.Run) {
	if e.evidence == nil || !evidence.Wants(r) {
		return
	}
	if _, err := e.evidence.Queue(e.bg, r, e.evidenceWant(r.Job)); err != nil {
		e.log.Warn("evidence: could not queue the failed run's process log; it is queued again at the next start",
			"job", r.Job, "run_id", r.ID, "err", err)
	}
}

// sweepEvidence queues the evidence of failed runs a crash kept from being
// queued (the run was recorded, the queue row was not), within the purge
// horizon.
func (e *Engine) sweepEvidence(ctx context.Context) {
	since := e.now().Add(-e.Config().Evidence.GiveUpAfter.Duration)
	runs, err := e.db.FailedWithoutEvidence(ctx, "execute", since)
	if err != nil {
		e.log.Warn("evidence: failed runs without evidence cannot be read", "err", err)
		return
	}
	for _, r := range runs {
		if e.owns(r.Job) {
			e.queueEvidence(r)
		}
	}
}

// evidenceFor returns where run r's process log is kept (or will be) and its
// link under [http] public_url, for a failure notification; "" when none is
// fetched.
func (e *Engine) evidenceFor(r runnerd.Run) (path, url string) {
	if e.evidence == nil || !evidence.Wants(r) {
		return "", ""
	}
	w := e.evidenceWant(r.Job)
	if w.Level == "" || w.Level == config.LogLevelOff {
		return "", ""
	}
	path = filepath.Join(evidence.RunDir(evidenceDir(e.Config()), r.ID), evidence.FileName(store.EvidenceLog))
	if u := e.runURL(r.ID); u != "" {
		url = u + "/evidence/" + store.EvidenceLog
	}
	return path, url
}

// FetchEvidence fetches run id's evidence until none of it is pending or ctx
// ends: `runnerd run` without a daemon waits for it before it exits.
func (e *Engine) FetchEvidence(ctx context.Context, id int64) error {
	if e.evidence == nil {
		return nil
	}
	return e.evidence.Drain(ctx, id)
}

// restoreCancelRoute gives the client what an earlier process learnt about
// where cancelExecution is offered.
func (e *Engine) restoreCancelRoute(ctx context.Context) {
	v, err := e.db.Meta(ctx, metaCancelRoute)
	if err != nil || v == "" {
		return
	}
	route, at, _ := strings.Cut(v, "@")
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return
	}
	e.client.SetCancelRoute(route, t)
}

// saveCancelRoute keeps where cancelExecution answered (the client's
// OnCancelRoute), for the next process.
func (e *Engine) saveCancelRoute(route string, at time.Time) {
	if err := e.db.SetMeta(context.Background(), metaCancelRoute, route+"@"+at.UTC().Format(time.RFC3339)); err != nil {
		e.log.Warn("could not remember where cancelExecution is offered", "err", err)
	}
}

// RunEvidence returns run id's evidence.
func (e *Engine) RunEvidence(ctx context.Context, id int64) ([]store.Evidence, error) {
	return e.db.RunEvidence(ctx, id)
}

// reconsiderEvidence asks the gate again, now, for evidence deferred by the
// budget: an operator's change (a paused job, a reload) may have freed the
// shares it waited behind.
func (e *Engine) reconsiderEvidence(ctx context.Context) {
	if e.evidence == nil {
		return
	}
	if n, err := e.evidence.Reconsider(ctx); err != nil {
		e.log.Warn("evidence: deferred pieces cannot be reconsidered", "err", err)
	} else if n > 0 {
		e.log.Info("evidence: deferred pieces are asked for again", "pieces", n)
	}
}

// evidenceDir is [evidence] dir made absolute, so that the paths the ledger,
// runnerd logs and notifications give do not depend on a working directory.
func evidenceDir(cfg *config.Config) string {
	if abs, err := filepath.Abs(cfg.Evidence.Dir); err == nil {
		return abs
	}
	return cfg.Evidence.Dir
}

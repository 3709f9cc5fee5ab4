package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"time"

	"runnerd"

	"github.com/prometheus/client_golang/prometheus"

	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/notify"
	"runnerd/internal/store"
)

// notifyStopGrace is how long closing the daemon waits for queued
// notifications (one attempt each) before dropping them.
const notifyStopGrace = 5 * time.Second

// engineNotify is the daemon's side of notifications: the notifier and what
// the call hooks keep to tell an opened auth breaker.
type engineNotify struct {
	n *notify.Notifier

	mu        sync.Mutex
	authFails int // consecutive 401/403 answers, as the client's breaker counts them
}

// NotifyTargets reads the [[notify]] targets' secret files.
func NotifyTargets(getenv func(string) string, cfg *config.Config) ([]notify.Target, error) {
	targets := make([]notify.Target, 0, len(cfg.Notify))
	for _, nc := range cfg.Notify {
		s, err := nc.Secret(config.LoadOptions{Getenv: getenv})
		if err != nil {
			return nil, ConfigError{fmt.Errorf("%s: %w", cfg.File, err)}
		}
		targets = append(targets, notify.Target{Config: nc, Secret: s})
	}
	return targets, nil
}

// startNotifier builds the notifier for cfg's targets and starts its workers.
// With no targets it is inert.
func (e *Engine) startNotifier(cfg *config.Config) error {
	targets, err := NotifyTargets(e.getenv, cfg)
	if err != nil {
		return err
	}
	n, err := notify.New(notify.Options{
		Targets:  targets,
		Now:      e.now,
		Recorder: deliveryRecorder{e.db},
		Logger:   e.log,
		Budget:   e.budgetUse,
		RunURL:   e.runURL,
	})
	if err != nil {
		return ConfigError{fmt.Errorf("%s: %w", cfg.File, err)}
	}
	e.notify = &engineNotify{n: n}
	if err := e.metrics.Registry().Register(newNotifyCollector(e)); err != nil {
		e.log.Warn("metrics: notification counters not exported", "err", err)
	}
	return nil
}

// stopNotifier lets queued notifications go out for a moment, then stops.
func (e *Engine) stopNotifier() {
	if e.notify == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), notifyStopGrace)
	defer cancel()
	e.notify.n.Close(ctx)
}

// budgetUse is the rolling window's use and capacity now.
func (e *Engine) budgetUse() (used, capacity int) {
	return e.window.Used(e.now()), e.limits.Cap()
}

// notifyRun hands a recorded run outcome to the notifier, with the job's
// priority. It never blocks on delivery.
func (e *Engine) notifyRun(r runnerd.Run) {
	if e.notify == nil {
		return
	}
	priority := ""
	if j, err := e.Job(r.Job); err == nil {
		priority = j.Priority
	}
	path, url := e.evidenceFor(r)
	e.notify.n.RunOutcome(notify.Run{
		ID: r.ID, Job: r.Job, Kind: r.Kind, Priority: priority, NominalTime: r.NominalTime,
		State: string(r.State), Reason: r.Reason, Error: r.Error, Calls: r.Calls,
		Evidence: path, EvidenceURL: url,
	})
}

// notifyCall hears each call's answer (from callHooks.End): budget
// thresholds, a change of the 503 classification to or from external, and the
// auth breaker opening at the second 401/403 in a row.
func (e *Engine) notifyCall(status int, before, after budget.Classification) {
	if e.notify == nil {
		return
	}
	n := e.notify.n
	n.BudgetUsage(e.budgetUse())
	if before.Kind != after.Kind {
		n.ClassificationChanged(before.Kind, after.Kind, after.Reason)
	}
	if status == 0 {
		return // no answer: the breaker counts answers only
	}
	e.notify.mu.Lock()
	opened := false
	if status == http.StatusUnauthorized || status == http.StatusForbidden {
		e.notify.authFails++
		opened = e.notify.authFails == authBreakerTrips
	} else {
		e.notify.authFails = 0
	}
	e.notify.mu.Unlock()
	if opened {
		n.AuthFailed(fmt.Sprintf("HTTP %d from the platform; check account.user and the password, then reload (systemctl reload runnerd) or run runnerd resume-auth; a probe call retries every %s", status, atomapi.DefaultAuthProbeEvery))
	}
}

// authBreakerTrips is the client's: consecutive 401/403 answers that open
// its auth breaker.
const authBreakerTrips = 2

// deliveryRecorder keeps notification outcomes in the ledger.
type deliveryRecorder struct{ db *store.DB }

func (r deliveryRecorder) RecordDelivery(ctx context.Context, d notify.Delivery) error {
	_, err := r.db.RecordNotifyDelivery(ctx, store.NotifyDelivery{
		Target: d.Target, EventID: d.EventID, Event: d.Event, Job: d.Job, RunID: d.RunID,
		EventTime: d.Time, FinishedAt: d.FinishedAt, Attempts: d.Attempts, Status: d.Status,
		HTTPStatus: d.HTTPStatus, Error: d.Error,
	})
	return err
}

var _ notify.Recorder = deliveryRecorder{}

// notifyStats returns each target's delivery counters (for /metrics); nil
// without targets.
func (e *Engine) notifyStats() []notify.Stats {
	if e.notify == nil {
		return nil
	}
	return e.notify.n.Stats()
}

// notifyCollector exposes the notifier's per-target counters in /metrics:
// runnerd_notify_deliveries_total{target,outcome} and
// runnerd_notify_queued{target}, read at scrape time.
type notifyCollector struct {
	e              *Engine
	total, pending *prometheus.Desc
}

func newNotifyCollector(e *Engine) *notifyCollector {
	return &notifyCollector{
		e: e,
		total: prometheus.NewDesc("runnerd_notify_deliveries_total",
			"Notifications by target and outcome: sent, failed (after the last attempt), retried (extra attempts), dropped (queue full or left at stop), suppressed (de-duplicated).",
			[]string{"target", "outcome"}, nil),
		pending: prometheus.NewDesc("runnerd_notify_queued", "Notifications waiting in a target's queue.", []string{"target"}, nil),
	}
}

func (c *notifyCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.total; ch <- c.pending }

func (c *notifyCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.e.notifyStats() {
		for _, o := range []struct {
			outcome string
			n       uint64
		}{{"sent", s.Sent}, {"failed", s.Failed}, {"retried", s.Retried}, {"dropped", s.Dropped}, {"suppressed", s.Suppressed}} {
			ch <- prometheus.MustNewConstMetric(c.total, prometheus.CounterValue, float64(o.n), s.Target, o.outcome)
		}
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(s.Queued), s.Target)
	}
}

// ErrNoNotifyTarget: the configuration has no [[notify]] target of that name.
var ErrNoNotifyTarget = errors.New("no [[notify]] target of that name")

// SendSample sends notify's sample event to cfg's target name now, with the
// usual retries, and returns how the delivery went (log: the notifier's
// warnings). It is `runnerd notify-test`.
func SendSample(ctx context.Context, getenv func(string) string, cfg *config.Config, name string, log *slog.Logger) (notify.Delivery, error) {
	targets, err := NotifyTargets(getenv, cfg)
	if err != nil {
		return notify.Delivery{}, err
	}
	i := slices.IndexFunc(targets, func(t notify.Target) bool { return t.Config.Name == name })
	if i < 0 {
		return notify.Delivery{}, ConfigError{fmt.Errorf("%s: %w: %q", cfg.File, ErrNoNotifyTarget, name)}
	}
	n, err := notify.New(notify.Options{Targets: targets[i : i+1], Logger: log, BudgetEvery: -1})
	if err != nil {
		return notify.Delivery{}, ConfigError{fmt.Errorf("%s: %w", cfg.File, err)}
	}
	defer n.Close(context.Background())
	return n.Send(ctx, name, n.SampleEvent())
}

// runURL is run id's status page under [http] public_url (as configured
// now: a reload may change it), or "" when none is set.
func (e *Engine) runURL(id int64) string {
	base := e.Config().HTTP.PublicURL
	if base == "" {
		return ""
	}
	return base + "runs/" + strconv.FormatInt(id, 10)
}

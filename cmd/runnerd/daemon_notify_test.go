package main

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// hookRecv is a webhook receiver on 127.0.0.1 that can be held stuck.
type hookRecv struct {
	srv     *httptest.Server
	mu      sync.Mutex
	bodies  []map[string]any
	raw     []string
	reached chan struct{} // closed at the first request
	release chan struct{} // requests wait for it
	once    sync.Once
}

func newHookRecv(t *testing.T) *hookRecv {
	t.Helper()
	h := &hookRecv{reached: make(chan struct{}), release: make(chan struct{})}
	h.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h.once.Do(func() { close(h.reached) })
		<-h.release
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		json.Unmarshal(b, &m)
		h.mu.Lock()
		h.bodies = append(h.bodies, m)
		h.raw = append(h.raw, string(b)+" "+strings.Join(r.Header.Values("X-Runnerd-Signature"), ","))
		h.mu.Unlock()
	}))
	t.Cleanup(h.srv.Close)
	return h
}

func (h *hookRecv) events() []map[string]any {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]map[string]any(nil), h.bodies...)
}

// notifyDaemon starts a daemon on the simulator with one failing deploy job
// and a webhook target.
func notifyDaemon(t *testing.T, hookURL, password string) *daemon {
	t.Helper()
	sim := atomsim.New(atomsim.Options{Rate: 100, DailyLimit: 10000})
	srv := httptest.NewServer(sim)
	t.Cleanup(srv.Close)
	dir := t.TempDir()
	path := filepath.Join(dir, "jobs.toml")
	conf := `[account]
id = "sim-account"
url = "` + srv.URL + `/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000

[store]
path = "` + filepath.Join(dir, "runnerd.db") + `"

[[notify]]
name = "hook"
kind = "webhook"
url = "` + hookURL + `"

[[job]]
name = "backwards"
kind = "deploy"
schedule = "0 2 * * *"
priority = "high"
process_id = "proc-orders"
from_environment = "env-prod"
to_environment = "env-test"
`
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &env{stdout: io.Discard, stderr: io.Discard, getenv: func(k string) string {
		if k == "RUNNERD_PASSWORD" {
			return password
		}
		return ""
	}}
	cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
	if err != nil {
		t.Fatal(err)
	}
	d, err := newDaemon(context.Background(), e, cfg, slog.New(slog.DiscardHandler), daemonOptions{})
	if err != nil {
		t.Fatalf("newDaemon() = %v", err)
	}
	t.Cleanup(d.close)
	return d
}

// TestNotifyStuckReceiverDoesNotDelayRun: a run fails while the webhook
// receiver is stuck on its first request; the run returns all the same, and
// the failure arrives once the receiver answers, with the job's priority and
// the budget, and without the password.
func TestNotifyStuckReceiverDoesNotDelayRun(t *testing.T) {
	h := newHookRecv(t)
	d := notifyDaemon(t, h.srv.URL, "sim-password")
	// Hold the receiver: an event nobody waits for takes the worker into it.
	d.Notifier().AuthFailed("primer")
	<-h.reached

	r, err := d.RunNow(context.Background(), "backwards", time.Time{}, time.Time{})
	if err != nil {
		t.Fatalf("RunNow() = %v", err)
	}
	if r.State != runnerd.StateFailed {
		t.Fatalf("run = %s (%s); want failed", r.State, r.Error)
	}
	select {
	case <-h.release:
		t.Fatal("receiver released early")
	default:
	}
	// The run finished while the receiver still held the primer.
	close(h.release)
	d.FlushNotifications()

	var failed map[string]any
	for _, ev := range h.events() {
		if ev["event"] == "failed" {
			if failed != nil {
				t.Errorf("two failed events")
			}
			failed = ev
		}
	}
	if failed == nil {
		t.Fatalf("no failed event; got %v", h.events())
	}
	if failed["job"] != "backwards" || failed["priority"] != "high" || failed["run_id"] != float64(r.ID) ||
		failed["state"] != "failed" || failed["error"] == "" {
		t.Errorf("failed event = %v; want job backwards, priority high, run %d, an error", failed, r.ID)
	}
	if b, _ := failed["budget"].(map[string]any); b == nil || b["used"].(float64) < 1 || b["cap"] != 900.0 {
		t.Errorf("failed event budget = %v; want used ≥ 1 of cap 900", failed["budget"])
	}
	for _, raw := range h.raw {
		if strings.Contains(raw, "sim-password") {
			t.Errorf("a notification holds the password: %s", raw)
		}
	}
	rows, err := d.DB().ListNotifyDeliveries(context.Background(), store.NotifyFilter{})
	if err != nil || len(rows) != 2 {
		t.Fatalf("ListNotifyDeliveries() = %d rows, %v; want 2 (primer and failed)", len(rows), err)
	}
	for _, row := range rows {
		if row.Status != "sent" {
			t.Errorf("delivery %+v; want sent", row)
		}
	}
	// The same counts are in /metrics.
	mfs, err := d.Metrics().Registry().Gather()
	if err != nil {
		t.Fatal(err)
	}
	sent := -1.0
	for _, mf := range mfs {
		if mf.GetName() != "runnerd_notify_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" && l.GetValue() == "sent" {
					sent = m.GetCounter().GetValue()
				}
			}
		}
	}
	if sent != 2 {
		t.Errorf("runnerd_notify_deliveries_total{outcome=\"sent\"} = %v; want 2", sent)
	}
}

// TestNotifyAuthBreaker: two runs rejected with 401 open the client's auth
// breaker; one auth event is sent.
func TestNotifyAuthBreaker(t *testing.T) {
	h := newHookRecv(t)
	close(h.release)
	d := notifyDaemon(t, h.srv.URL, "wrong-password")
	for range 3 {
		r, err := d.RunNow(context.Background(), "backwards", time.Time{}, time.Time{})
		if err != nil {
			t.Fatalf("RunNow() = %v", err)
		}
		if r.State != runnerd.StateFailed {
			t.Fatalf("run = %s; want failed", r.State)
		}
	}
	d.FlushNotifications()
	var got []string
	for _, ev := range h.events() {
		got = append(got, ev["event"].(string))
	}
	if strings.Count(strings.Join(got, ","), "auth") != 1 || strings.Count(strings.Join(got, ","), "failed") != 1 {
		t.Errorf("events = %v; want one failed and one auth", got)
	}
	for _, raw := range h.raw {
		if strings.Contains(raw, "wrong-password") {
			t.Errorf("a notification holds the password: %s", raw)
		}
	}
}

package notify

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"runnerd/internal/config"
)

const (
	canaryPassword = "CANARY-password-7f3a"
	canarySecret   = "CANARY-hook-secret-91bd"
	canaryToken    = "CANARY-url-token-55e0"
)

func failedRun(job string, id int64) Run {
	return Run{ID: id, Job: job, Kind: "execute", Priority: "high", NominalTime: t0, State: "failed",
		Error: "ExecutionRequest: process ended ERROR: disk full", Calls: 3}
}

// TestEventsDelivered: each event type is delivered once, with the fields
// the Event documentation promises, signed.
func TestEventsDelivered(t *testing.T) {
	run := []string{"job", "kind", "priority", "run_id", "nominal_time", "state", "calls"}
	tests := []struct {
		name   string
		event  string
		do     func(n *Notifier)
		fields []string
		want   map[string]any // exact values
	}{
		{"failed", EventFailed, func(n *Notifier) { n.RunOutcome(failedRun("orders", 11)) },
			append([]string{"error", "failures"}, run...),
			map[string]any{"job": "orders", "run_id": 11.0, "state": "failed", "priority": "high", "calls": 3.0, "failures": 1.0,
				"error": "ExecutionRequest: process ended ERROR: disk full"}},
		{"recovered", EventRecovered, func(n *Notifier) {
			n.RunOutcome(failedRun("orders", 11))
			n.RunOutcome(Run{ID: 12, Job: "orders", Kind: "execute", Priority: "high", NominalTime: t0, State: "succeeded", Calls: 2})
		}, append([]string{"failures", "since"}, run...), map[string]any{"run_id": 12.0, "state": "succeeded", "failures": 1.0}},
		{"deferred", EventDeferred, func(n *Notifier) {
			n.RunOutcome(Run{ID: 13, Job: "export", Kind: "export", Priority: "low", NominalTime: t0, State: "deferred",
				Reason: "needs 40 calls; 12 left until 11:00"})
		}, append([]string{"reason"}, run...), map[string]any{"reason": "needs 40 calls; 12 left until 11:00", "calls": 0.0}},
		{"missed", EventMissed, func(n *Notifier) {
			n.RunOutcome(Run{ID: 14, Job: "export", Kind: "export", Priority: "normal", NominalTime: t0, State: "missed",
				Reason: "outside catch_up_window"})
		}, append([]string{"reason"}, run...), map[string]any{"state": "missed"}},
		{"unknown", EventUnknown, func(n *Notifier) {
			n.RunOutcome(Run{ID: 15, Job: "promote", Kind: "deploy", Priority: "high", NominalTime: t0, State: "unknown",
				Reason: "runnerd stopped mid-run; the deployment may or may not exist"})
		}, append([]string{"reason"}, run...), map[string]any{"state": "unknown"}},
		{"budget up", EventBudget, func(n *Notifier) { n.BudgetUsage(810, 1000) },
			[]string{"threshold", "direction", "budget"}, map[string]any{"threshold": 80.0, "direction": "up"}},
		{"classification", EventClassification, func(n *Notifier) {
			n.ClassificationChanged("ok", "external", "5 503s in 40s with 70% headroom")
		}, []string{"classification", "previous_classification", "reason"},
			map[string]any{"classification": "external", "previous_classification": "ok"}},
		{"auth", EventAuth, func(n *Notifier) { n.AuthFailed("HTTP 401 twice in a row") },
			[]string{"reason"}, map[string]any{"reason": "HTTP 401 twice in a row"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, nil)
			clk := &clock{t: t0}
			n := newTestNotifier(t, Options{
				Targets: []Target{{Config: hookConfig("hook", rcv.URL), Secret: config.NewSecret(canarySecret)}},
				Now:     clk.Now, Budget: func() (int, int) { return 120, 1000 },
			})
			tt.do(n)
			flush(t, n)
			var got []request
			for _, q := range rcv.requests() {
				if q.fields["event"] == tt.event {
					got = append(got, q)
				}
			}
			if len(got) != 1 {
				t.Fatalf("received %v; want exactly one %q", rcv.events(), tt.event)
			}
			q := got[0]
			for _, f := range append([]string{"id", "event", "time", "host", "text", "budget"}, tt.fields...) {
				if _, ok := q.fields[f]; !ok {
					t.Errorf("%s event has no field %q: %s", tt.event, f, q.body)
				}
			}
			for k, v := range tt.want {
				if q.fields[k] != v {
					t.Errorf("%s event %s = %#v; want %#v", tt.event, k, q.fields[k], v)
				}
			}
			if ts, _ := q.fields["time"].(string); ts != t0.Format(time.RFC3339) {
				t.Errorf("time = %q; want %q", ts, t0.Format(time.RFC3339))
			}
			if text, _ := q.fields["text"].(string); !strings.HasPrefix(text, "runnerd on testhost: ") {
				t.Errorf("text = %q; want it to start with %q", text, "runnerd on testhost: ")
			}
			if got, want := q.header.Get(SignatureHeader), hmacHex(canarySecret, q.body); got != want {
				t.Errorf("%s = %q; want %q (HMAC-SHA256 of the body)", SignatureHeader, got, want)
			}
			if q.header.Get(EventHeader) != tt.event || q.header.Get(DeliveryHeader) != q.fields["id"] {
				t.Errorf("headers %s=%q %s=%q; want %q and the event id %v", EventHeader, q.header.Get(EventHeader),
					DeliveryHeader, q.header.Get(DeliveryHeader), tt.event, q.fields["id"])
			}
			if strings.Contains(string(q.body), canarySecret) || strings.Contains(fmt.Sprint(q.header), canarySecret) {
				t.Errorf("the webhook secret was sent: %s", q.body)
			}
		})
	}
}

// hmacHex recomputes the signature independently of Sign.
func hmacHex(key string, body []byte) string {
	m := hmac.New(sha256.New, []byte(key))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func TestSignature(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{
		{Config: hookConfig("signed", rcv.URL), Secret: config.NewSecret(canarySecret)},
		{Config: hookConfig("plain", rcv.URL)},
	}})
	n.AuthFailed("HTTP 403")
	flush(t, n)
	reqs := rcv.requests()
	if len(reqs) != 2 {
		t.Fatalf("got %d requests; want 2 (one per target)", len(reqs))
	}
	signed := 0
	for _, q := range reqs {
		sig := q.header.Get(SignatureHeader)
		if sig == "" {
			continue
		}
		signed++
		mac, _ := hex.DecodeString(strings.TrimPrefix(sig, "sha256="))
		m := hmac.New(sha256.New, []byte(canarySecret))
		m.Write(q.body)
		if !hmac.Equal(mac, m.Sum(nil)) {
			t.Errorf("signature %q does not verify over the body", sig)
		}
		m = hmac.New(sha256.New, []byte(canarySecret))
		m.Write(append(append([]byte(nil), q.body...), ' '))
		if hmac.Equal(mac, m.Sum(nil)) {
			t.Errorf("signature verifies over a changed body")
		}
	}
	if signed != 1 {
		t.Errorf("%d signed requests; want 1 (only the target with a secret)", signed)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name         string
		status       func(n int) int
		wantHits     int
		wantStatus   string
		wantAttempts int
		wantHTTP     int
		wantRetried  uint64
	}{
		{"500s retried then recorded failed", func(int) int { return 500 }, 4, DeliveryFailed, 4, 500, 3},
		{"recovers on the third attempt", func(n int) int { return map[bool]int{true: 503, false: 204}[n < 3] }, 3, DeliverySent, 3, 204, 2},
		{"400 not retried", func(int) int { return 400 }, 1, DeliveryFailed, 1, 400, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, tt.status)
			rec := newMemRecorder()
			n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}, Recorder: rec, Attempts: 4})
			n.RunOutcome(failedRun("orders", 1))
			d := rec.next(t)
			if d.Status != tt.wantStatus || d.Attempts != tt.wantAttempts || d.HTTPStatus != tt.wantHTTP {
				t.Errorf("delivery = %+v; want status %s after %d attempts, HTTP %d", d, tt.wantStatus, tt.wantAttempts, tt.wantHTTP)
			}
			if d.Target != "hook" || d.Event != EventFailed || d.Job != "orders" || d.RunID != 1 || d.EventID == "" {
				t.Errorf("delivery = %+v; want target hook, event failed, job orders, run 1, an event id", d)
			}
			if got := len(rcv.requests()); got != tt.wantHits {
				t.Errorf("receiver got %d requests; want %d", got, tt.wantHits)
			}
			ids := map[any]bool{}
			for _, q := range rcv.requests() {
				ids[q.fields["id"]] = true
			}
			if len(ids) != 1 {
				t.Errorf("retries carried %d event ids; want 1 (the same event)", len(ids))
			}
			st := n.Stats()[0]
			wantFailed := uint64(0)
			if tt.wantStatus == DeliveryFailed {
				wantFailed = 1
			}
			if st.Failed != wantFailed || st.Retried != tt.wantRetried || st.Sent != 1-wantFailed {
				t.Errorf("Stats() = %+v; want failed %d, retried %d", st, wantFailed, tt.wantRetried)
			}
		})
	}
}

// TestDeadReceiverRecorded: nobody listens; the error is recorded without
// the URL's token.
func TestDeadReceiverRecorded(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	rec := newMemRecorder()
	url := "http://" + addr + "/hooks/" + canaryToken + "?token=" + canaryToken
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("dead", url)}}, Recorder: rec, Attempts: 2})
	n.RunOutcome(failedRun("orders", 1))
	d := rec.next(t)
	if d.Status != DeliveryFailed || d.Attempts != 2 || d.Error == "" {
		t.Errorf("delivery = %+v; want failed after 2 attempts with an error", d)
	}
	if strings.Contains(d.Error, canaryToken) || strings.Contains(d.Error, "/hooks") {
		t.Errorf("delivery error %q shows the URL", d.Error)
	}
}

// TestDeduplication: a job failing every 10 minutes, 20 times, then
// succeeding.
func TestDeduplication(t *testing.T) {
	tests := []struct {
		name   string
		remind time.Duration
		want   []string // event, failures, reminder
	}{
		{"no reminders", 0, []string{"failed 1 false", "recovered 20 false"}},
		{"remind 1h", time.Hour, []string{"failed 1 false", "failed 7 true", "failed 13 true", "failed 19 true", "recovered 20 false"}},
		{"remind 6h", 6 * time.Hour, []string{"failed 1 false", "recovered 20 false"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, nil)
			clk := &clock{t: t0}
			c := hookConfig("hook", rcv.URL)
			c.Remind = config.Duration{Duration: tt.remind}
			n := newTestNotifier(t, Options{Targets: []Target{{Config: c}}, Now: clk.Now})
			for i := range 20 {
				n.RunOutcome(failedRun("orders", int64(i+1)))
				clk.Add(10 * time.Minute)
			}
			n.RunOutcome(Run{ID: 21, Job: "orders", Kind: "execute", Priority: "high", NominalTime: t0, State: "succeeded"})
			// Another success is not a recovery.
			n.RunOutcome(Run{ID: 22, Job: "orders", Kind: "execute", Priority: "high", NominalTime: t0, State: "succeeded"})
			flush(t, n)
			var got []string
			for _, q := range rcv.requests() {
				got = append(got, fmt.Sprintf("%v %v %v", q.fields["event"], q.fields["failures"], q.fields["reminder"] == true))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("notifications = %q; want %q", got, tt.want)
			}
			if st := n.Stats()[0]; st.Suppressed != uint64(20-len(tt.want)+1) {
				t.Errorf("Stats().Suppressed = %d; want %d", st.Suppressed, 20-len(tt.want)+1)
			}
		})
	}
}

// TestDeferredThenFailed: problems of different kinds are kept apart, and a
// recovery closes them all.
func TestProblemsPerKind(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}})
	for range 3 {
		n.RunOutcome(Run{ID: 1, Job: "a", Priority: "normal", State: "deferred", Reason: "no budget"})
	}
	n.RunOutcome(failedRun("a", 1))
	n.RunOutcome(failedRun("b", 2)) // another job: its own problem
	n.RunOutcome(Run{ID: 1, Job: "a", Priority: "normal", State: "skipped"})
	n.RunOutcome(Run{ID: 3, Job: "a", Priority: "normal", State: "succeeded"})
	n.RunOutcome(Run{ID: 4, Job: "a", Priority: "normal", State: "deferred", Reason: "no budget"})
	flush(t, n)
	want := []string{"deferred", "failed", "failed", "recovered", "deferred"}
	if got := rcv.events(); !slices.Equal(got, want) {
		t.Errorf("events = %q; want %q", got, want)
	}
}

func TestThresholdCrossings(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}})
	steps := []int{100, 499, 500, 510, 600, 800, 790, 805, 785, 700, 790, 800, 960, 999, 1200, 100, 0, 20}
	for _, used := range steps {
		n.BudgetUsage(used, 1000)
	}
	flush(t, n)
	var got []string
	for _, q := range rcv.requests() {
		got = append(got, fmt.Sprintf("%v %v", q.fields["direction"], q.fields["threshold"]))
	}
	want := []string{"up 50", "up 80", "down 80", "up 80", "up 95", "down 50"}
	if !slices.Equal(got, want) {
		t.Errorf("budget events for use %v = %q; want %q", steps, got, want)
	}
	if len(rcv.requests()) > 0 {
		b, _ := rcv.requests()[0].fields["budget"].(map[string]any)
		if b["used"] != 500.0 || b["cap"] != 1000.0 || b["remaining"] != 500.0 || b["percent"] != 50.0 {
			t.Errorf("first budget = %v; want used 500, cap 1000, remaining 500, percent 50", b)
		}
	}
}

func TestFilters(t *testing.T) {
	tests := []struct {
		name string
		set  func(c *config.Notify)
		want []string // job:event received
	}{
		{"all", func(c *config.Notify) {}, []string{"hi:failed", "mid:failed", "lo:failed", ":auth"}},
		{"min_priority normal", func(c *config.Notify) { c.MinPriority = "normal" }, []string{"hi:failed", "mid:failed", ":auth"}},
		{"min_priority high", func(c *config.Notify) { c.MinPriority = "high" }, []string{"hi:failed", ":auth"}},
		{"jobs", func(c *config.Notify) { c.Jobs = []string{"lo"} }, []string{"lo:failed", ":auth"}},
		{"events", func(c *config.Notify) { c.Events = []string{"auth"} }, []string{":auth"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rcv := newReceiver(t, nil)
			c := hookConfig("hook", rcv.URL)
			tt.set(&c)
			n := newTestNotifier(t, Options{Targets: []Target{{Config: c}}})
			for _, r := range []Run{
				{ID: 1, Job: "hi", Priority: "high", State: "failed"},
				{ID: 2, Job: "mid", Priority: "normal", State: "failed"},
				{ID: 3, Job: "lo", Priority: "low", State: "failed"},
			} {
				n.RunOutcome(r)
			}
			n.AuthFailed("HTTP 401")
			flush(t, n)
			var got []string
			for _, q := range rcv.requests() {
				job, _ := q.fields["job"].(string)
				got = append(got, fmt.Sprintf("%s:%v", job, q.fields["event"]))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("received %q; want %q", got, tt.want)
			}
		})
	}
}

// TestClassificationOnlyExternal: changes that do not involve "external" are
// not notified.
func TestClassificationOnlyExternal(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}})
	n.ClassificationChanged("ok", "rate", "burst")
	n.ClassificationChanged("rate", "external", "more 503s")
	n.ClassificationChanged("external", "ok", "HTTP 200")
	n.ClassificationChanged("ok", "outage", "500s")
	flush(t, n)
	var got []string
	for _, q := range rcv.requests() {
		got = append(got, fmt.Sprintf("%v>%v", q.fields["previous_classification"], q.fields["classification"]))
	}
	if want := []string{"rate>external", "external>ok"}; !slices.Equal(got, want) {
		t.Errorf("classification events = %q; want %q", got, want)
	}
}

// TestSlowReceiverNeverBlocks: with the receiver stuck on its first request,
// 150 more events are enqueued (the test would hang if enqueueing waited);
// the queue keeps the newest 100 and counts the 50 it dropped.
func TestSlowReceiverNeverBlocks(t *testing.T) {
	reached := make(chan struct{})
	release := make(chan struct{})
	var once bool
	srv := newReceiver(t, nil)
	srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !once {
			once = true // only the worker calls; one request at a time
			close(reached)
		}
		<-release
		srv.hits <- struct{}{}
	})
	rec := newMemRecorder()
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("slow", srv.URL)}}, Recorder: rec, QueueSize: 100})
	n.RunOutcome(failedRun("job-0", 1))
	<-reached // the worker is now inside the receiver, which does not answer

	for i := 1; i <= 150; i++ {
		n.RunOutcome(failedRun(fmt.Sprintf("job-%d", i), int64(i+1)))
	}
	select {
	case <-release:
		t.Fatal("the receiver was released early")
	default:
	}
	// Every enqueue returned while the receiver still held the first event.
	st := n.Stats()[0]
	if st.Queued != 100 || st.Dropped != 50 || st.Sent != 0 {
		t.Errorf("Stats() with the receiver stuck = %+v; want 100 queued, 50 dropped, 0 sent", st)
	}
	close(release)
	flush(t, n)
	st = n.Stats()[0]
	if st.Sent != 101 || st.Queued != 0 {
		t.Errorf("Stats() after release = %+v; want 101 sent, none queued", st)
	}
	var dropped []Delivery
	for _, d := range rec.deliveries() {
		if d.Status == DeliveryDropped {
			dropped = append(dropped, d)
		}
	}
	if len(dropped) != 1 || !strings.Contains(dropped[0].Error, "50 event(s) dropped") {
		t.Errorf("dropped records = %+v; want one saying 50 events were dropped", dropped)
	}
}

// TestCloseBounded: Close with a receiver that never answers returns when
// its context ends, and counts what it could not deliver.
func TestCloseBounded(t *testing.T) {
	block := make(chan struct{})
	defer close(block)
	rcv := newReceiver(t, nil)
	rcv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-block })
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("dead", rcv.URL)}}})
	for i := range 5 {
		n.RunOutcome(failedRun(fmt.Sprintf("j%d", i), int64(i)))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	n.Close(ctx)
	st := n.Stats()[0]
	if st.Sent != 0 || st.Failed+st.Dropped != 5 {
		t.Errorf("Stats() after Close = %+v; want 0 sent and 5 failed or dropped", st)
	}
	n.RunOutcome(failedRun("late", 99)) // after Close: counted, not queued, no panic
	if st := n.Stats()[0]; st.Queued != 0 || st.Dropped == 0 {
		t.Errorf("Stats() after an event past Close = %+v; want nothing queued", st)
	}
}

func TestSendSample(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL), Secret: config.NewSecret(canarySecret)}}})
	d, err := n.Send(context.Background(), "hook", n.SampleEvent())
	if err != nil || d.Status != DeliverySent || d.Attempts != 1 {
		t.Fatalf("Send(hook) = %+v, %v; want sent in 1 attempt", d, err)
	}
	q := rcv.requests()[0]
	if q.fields["event"] != EventTest || q.header.Get(SignatureHeader) != hmacHex(canarySecret, q.body) {
		t.Errorf("sample = %s with signature %q; want a signed test event", q.body, q.header.Get(SignatureHeader))
	}
	if _, err := n.Send(context.Background(), "nope", n.SampleEvent()); err == nil {
		t.Errorf("Send(nope) = nil error; want one")
	}
}

func TestNewRejects(t *testing.T) {
	tests := []struct {
		name string
		c    config.Notify
	}{
		{"bad url", config.Notify{Name: "a", Kind: "webhook", URL: "ftp://x/" + canaryToken}},
		{"bad command", config.Notify{Name: "a", Kind: "command", Command: `echo "unterminated`}},
		{"no name", config.Notify{Kind: "webhook", URL: "http://127.0.0.1/"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n, err := New(Options{Targets: []Target{{Config: tt.c}}})
			if err == nil {
				n.Close(context.Background())
				t.Fatalf("New(%+v) = nil error; want one", tt.c)
			}
			if strings.Contains(err.Error(), canaryToken) {
				t.Errorf("New() error %q shows the URL", err)
			}
		})
	}
}

// TestRunEventLinksRunPage: with Options.RunURL a run's event carries its
// status page address, in url and at the end of the text; a budget event,
// which belongs to no run, carries none; without it there is no url.
func TestRunEventLinksRunPage(t *testing.T) {
	for _, withURL := range []bool{true, false} {
		rcv := newReceiver(t, nil)
		o := Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}, Now: (&clock{t: t0}).Now,
			Budget: func() (int, int) { return 990, 1000 }}
		if withURL {
			o.RunURL = func(id int64) string { return fmt.Sprintf("https://runnerd.example.com/runs/%d", id) }
		}
		n := newTestNotifier(t, o)
		n.RunOutcome(failedRun("orders", 11))
		n.BudgetUsage(990, 1000)
		flush(t, n)
		failed := 0
		for _, q := range rcv.requests() {
			if q.fields["event"] == EventFailed {
				failed++
			}
			url, _ := q.fields["url"].(string)
			text, _ := q.fields["text"].(string)
			switch {
			case q.fields["event"] == EventFailed && withURL:
				if url != "https://runnerd.example.com/runs/11" || !strings.HasSuffix(text, " — https://runnerd.example.com/runs/11") {
					t.Errorf("failed event url %q, text %q; want the run's page in both", url, text)
				}
			case url != "":
				t.Errorf("%v event (RunURL set: %v) has url %q; want none", q.fields["event"], withURL, url)
			}
		}
		if failed != 1 {
			t.Errorf("received %d failed events; want 1", failed)
		}
	}
}

// TestFailedEventCarriesEvidence: a failed execution's event names where its
// process log is kept (evidence, and in the text) and its link
// (evidence_url); other runs' events carry neither.
func TestFailedEventCarriesEvidence(t *testing.T) {
	rcv := newReceiver(t, nil)
	n := newTestNotifier(t, Options{Targets: []Target{{Config: hookConfig("hook", rcv.URL)}}, Now: (&clock{t: t0}).Now})
	r := failedRun("orders", 12)
	r.Evidence = "/var/lib/runnerd/evidence/run-12/process-log.zip"
	r.EvidenceURL = "https://runnerd.example.com/runs/12/evidence/log"
	n.RunOutcome(r)
	n.RunOutcome(failedRun("other", 13))
	flush(t, n)
	got := 0
	for _, q := range rcv.requests() {
		ev, _ := q.fields["evidence"].(string)
		link, _ := q.fields["evidence_url"].(string)
		text, _ := q.fields["text"].(string)
		switch q.fields["job"] {
		case "orders":
			got++
			if ev != r.Evidence || link != r.EvidenceURL || !strings.Contains(text, "(process log: "+r.Evidence+")") {
				t.Errorf("failed event evidence %q, link %q, text %q; want the path in both and the link", ev, link, text)
			}
		default:
			if ev != "" || link != "" {
				t.Errorf("event of a run without evidence carries %q, %q", ev, link)
			}
		}
	}
	if got != 1 {
		t.Errorf("%d events for the run with evidence; want 1", got)
	}
}

package notify

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"runnerd/internal/config"
)

// sender delivers one prepared body. retry reports whether another attempt
// may help; status is a webhook's HTTP status (0 otherwise).
type sender interface {
	send(ctx context.Context, q *queued) (status int, retry bool, err error)
}

// queued is an event ready to send: its JSON body is fixed once, so the
// signature and every retry cover the same bytes.
type queued struct {
	ev   Event
	body []byte
}

// problem is an open problem of one job at one target: what de-duplication
// and reminders go by.
type problem struct {
	since    time.Time // the first outcome
	lastSent time.Time // the last notification (first or reminder)
	count    int       // outcomes in a row, this one included
}

type target struct {
	n      *Notifier
	name   string
	kind   string
	events map[string]bool
	jobs   map[string]bool // empty: all
	minPri int
	remind time.Duration
	thresh []int
	sender sender

	mu       sync.Mutex
	queue    []*queued // oldest first; at most n.o.QueueSize
	problems map[string]map[string]*problem
	level    int // the highest threshold reached and not yet fallen back below; 0: none
	wake     chan struct{}

	sent, failed, retried, dropped, suppressed atomic.Uint64
	droppedUnrecorded                          atomic.Uint64
}

var priorityRank = map[string]int{"low": 0, "normal": 1, "high": 2}

func newTarget(n *Notifier, tc Target) (*target, error) {
	c := tc.Config
	t := &target{
		n: n, name: c.Name, kind: c.Kind,
		events:   map[string]bool{},
		jobs:     map[string]bool{},
		minPri:   priorityRank[c.MinPriority],
		remind:   c.Remind.Duration,
		thresh:   slices.Clone(c.Thresholds),
		problems: map[string]map[string]*problem{},
		wake:     make(chan struct{}, 1),
	}
	if t.name == "" {
		return nil, errors.New("the target has no name")
	}
	events := c.Events
	if len(events) == 0 {
		events = config.Events
	}
	for _, e := range events {
		t.events[e] = true
	}
	for _, j := range c.Jobs {
		t.jobs[j] = true
	}
	if len(t.thresh) == 0 {
		t.thresh = slices.Clone(config.DefaultThresholds)
	}
	slices.Sort(t.thresh)
	timeout := c.Timeout.Duration
	if timeout <= 0 {
		timeout = config.DefaultNotifyTimeout
	}
	switch c.Kind {
	case config.NotifyWebhook:
		w, err := newWebhook(n.o.HTTPClient, c.URL, tc.Secret, timeout)
		if err != nil {
			return nil, err
		}
		t.sender = w
	case config.NotifyCommand:
		cmd, err := newCommand(c.Command, n.o.Path, timeout)
		if err != nil {
			return nil, err
		}
		t.sender = cmd
	default:
		return nil, errors.New("kind must be webhook or command")
	}
	return t, nil
}

// wantsJob reports whether the target hears about this job at this priority.
func (t *target) wantsJob(job, priority string) bool {
	if len(t.jobs) > 0 && !t.jobs[job] {
		return false
	}
	rank, ok := priorityRank[priority]
	if !ok {
		rank = priorityRank["normal"]
	}
	return rank >= t.minPri
}

// runOutcome updates the job's open problems and enqueues what is due.
func (t *target) runOutcome(now time.Time, r Run, b *Budget) {
	if !t.wantsJob(r.Job, r.Priority) {
		return
	}
	ev := func(name string) Event {
		calls := r.Calls
		return Event{
			ID: newID(), Event: name, Time: now.UTC(), Host: t.n.o.Host,
			Job: r.Job, Kind: r.Kind, Priority: r.Priority, RunID: r.ID, NominalTime: r.NominalTime.UTC(),
			State: r.State, Calls: &calls, Error: capText(r.Error), Reason: capText(r.Reason), Budget: b,
			URL: t.n.runURL(r.ID), Evidence: r.Evidence, EvidenceURL: r.EvidenceURL,
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	open := t.problems[r.Job]
	var out []Event
	switch r.State {
	case "succeeded":
		if p := open[EventFailed]; p != nil {
			e := ev(EventRecovered)
			e.Failures, e.Since = p.count, p.since.UTC()
			out = append(out, e)
		}
		delete(t.problems, r.Job)
	case "failed", "deferred", "missed", "unknown":
		if open == nil {
			open = map[string]*problem{}
			t.problems[r.Job] = open
		}
		if r.State == "failed" {
			// The job ran: it no longer waits for budget nor misses slots.
			delete(open, EventDeferred)
			delete(open, EventMissed)
		}
		p := open[r.State]
		switch {
		case p == nil:
			open[r.State] = &problem{since: now, lastSent: now, count: 1}
			e := ev(r.State)
			e.Failures = 1
			out = append(out, e)
		default:
			p.count++
			if t.remind > 0 && now.Sub(p.lastSent) >= t.remind {
				p.lastSent = now
				e := ev(r.State)
				e.Failures, e.Since, e.Reminder = p.count, p.since.UTC(), true
				out = append(out, e)
			} else if t.events[r.State] {
				t.suppressed.Add(1)
			}
		}
	}
	for _, e := range out {
		if t.events[e.Event] {
			t.enqueueLocked(e)
		}
	}
}

// budgetUsage notifies crossings of the target's thresholds.
func (t *target) budgetUsage(now time.Time, b Budget) {
	t.mu.Lock()
	defer t.mu.Unlock()
	reached := 0 // the highest threshold at or below the use
	for _, th := range t.thresh {
		if b.Percent >= float64(th) {
			reached = th
		}
	}
	e := Event{Event: EventBudget, Time: now.UTC(), Host: t.n.o.Host, Budget: &b}
	switch {
	case reached > t.level:
		t.level = reached
		e.Threshold, e.Direction = reached, DirectionUp
	case t.level > 0 && b.Percent < float64(t.level)-Hysteresis:
		// Back below: the lowest threshold now above the use (and its
		// hysteresis band) is the one reported; the level drops to what is
		// still reached.
		below := t.level
		for i := len(t.thresh) - 1; i >= 0; i-- {
			if th := t.thresh[i]; th <= t.level && b.Percent < float64(th)-Hysteresis {
				below = th
			}
		}
		t.level = 0
		for _, th := range t.thresh {
			if th < below {
				t.level = th
			}
		}
		e.Threshold, e.Direction = below, DirectionDown
	default:
		return
	}
	if t.events[EventBudget] {
		e.ID = newID()
		t.enqueueLocked(e)
	}
}

// emitGlobal enqueues an event that belongs to no job.
func (t *target) emitGlobal(e Event) {
	if !t.events[e.Event] {
		return
	}
	e.ID = newID() // one id per target and event
	t.mu.Lock()
	defer t.mu.Unlock()
	t.enqueueLocked(e)
}

// prepare fills the text and fixes the body.
func (t *target) prepare(e Event) (*queued, error) {
	if e.Text == "" {
		e.describe()
	}
	body, err := json.Marshal(e)
	if err != nil {
		return nil, err
	}
	return &queued{ev: e, body: body}, nil
}

// enqueueLocked adds e to the queue without waiting: a full queue drops its
// oldest event. t.mu is held.
func (t *target) enqueueLocked(e Event) {
	q, err := t.prepare(e)
	if err != nil {
		t.n.log.Error("notify: could not encode an event", "target", t.name, "event", e.Event, "err", err)
		return
	}
	if t.n.isClosing() {
		t.dropped.Add(1)
		return
	}
	if len(t.queue) >= t.n.o.QueueSize {
		t.queue[0] = nil
		t.queue = t.queue[1:]
		t.dropped.Add(1)
		t.droppedUnrecorded.Add(1)
	}
	t.queue = append(t.queue, q)
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *target) pop() *queued {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.queue) == 0 {
		return nil
	}
	q := t.queue[0]
	t.queue[0] = nil
	t.queue = t.queue[1:]
	return q
}

// work is the target's worker: it delivers queued events one at a time until
// Close, then what is left (one attempt each) until Close's deadline.
func (t *target) work() {
	for {
		q := t.pop()
		if q == nil {
			if t.n.isClosing() {
				return
			}
			select {
			case <-t.wake:
			case <-t.n.closing:
			}
			continue
		}
		if t.n.ctx.Err() != nil {
			t.dropped.Add(1)
			continue
		}
		t.deliver(t.n.ctx, q)
		t.recordDropped()
	}
}

// deliver sends q, retrying with backoff, and records the outcome.
func (t *target) deliver(ctx context.Context, q *queued) Delivery {
	d := Delivery{
		Target: t.name, EventID: q.ev.ID, Event: q.ev.Event, Job: q.ev.Job, RunID: q.ev.RunID, Time: q.ev.Time,
	}
	var err error
	for attempt := 1; ; attempt++ {
		d.Attempts = attempt
		var retry bool
		d.HTTPStatus, retry, err = t.sender.send(ctx, q)
		if err == nil {
			break
		}
		if !retry || attempt >= t.n.o.Attempts || t.n.isClosing() || ctx.Err() != nil {
			break
		}
		t.retried.Add(1)
		wait := time.NewTimer(t.n.o.Backoff(attempt))
		select {
		case <-wait.C:
			continue
		case <-t.n.closing:
		case <-ctx.Done():
		}
		wait.Stop()
		break
	}
	d.FinishedAt = t.n.o.Now().UTC()
	if err == nil {
		d.Status = DeliverySent
		t.sent.Add(1)
	} else {
		d.Status, d.Error = DeliveryFailed, err.Error()
		t.failed.Add(1)
		t.n.log.Warn("notify: delivery failed", "target", t.name, "event", q.ev.Event, "job", q.ev.Job,
			"attempts", d.Attempts, "err", d.Error)
	}
	t.record(d)
	return d
}

// recordDropped records one row for the events a full queue pushed out.
func (t *target) recordDropped() {
	n := t.droppedUnrecorded.Swap(0)
	if n == 0 {
		return
	}
	t.n.log.Warn("notify: queue full; oldest events dropped", "target", t.name, "dropped", n)
	now := t.n.o.Now().UTC()
	t.record(Delivery{
		Target: t.name, Event: "-", Time: now, FinishedAt: now, Status: DeliveryDropped,
		Error: "queue full: " + strconv.FormatUint(n, 10) + " event(s) dropped, oldest first",
	})
}

func (t *target) record(d Delivery) {
	if t.n.o.Recorder == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := t.n.o.Recorder.RecordDelivery(ctx, d); err != nil {
		t.n.log.Error("notify: could not record a delivery", "target", t.name, "event", d.Event, "err", err)
	}
}

func (t *target) stats() Stats {
	t.mu.Lock()
	queued := len(t.queue)
	t.mu.Unlock()
	return Stats{
		Target: t.name, Kind: t.kind, Queued: queued,
		Sent: t.sent.Load(), Failed: t.failed.Load(), Retried: t.retried.Load(),
		Dropped: t.dropped.Load(), Suppressed: t.suppressed.Load(),
	}
}

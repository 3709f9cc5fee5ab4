// Package notify tells people what they must hear about: failed, deferred,
// missed and unknown runs, recoveries, budget thresholds, external 503s and
// rejected credentials. It sends events to the [[notify]] targets of the
// configuration — a webhook (a JSON POST, optionally signed with HMAC-SHA256)
// or a command (the JSON on its standard input) — asynchronously, through a
// bounded queue and one worker per target, so a slow or dead receiver never
// delays a run. Deliveries are retried with exponential backoff and their
// outcome is recorded; a failure is never fatal. Repeated outcomes are
// de-duplicated: a job failing every ten minutes is reported once, then at
// most once per remind interval, and once more when it recovers.
package notify

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"sync"
	"time"

	"runnerd/internal/config"
)

// Defaults for Options.
const (
	DefaultQueueSize   = 100             // events waiting per target; more drops the oldest
	DefaultAttempts    = 4               // deliveries tried per event (1 + 3 retries)
	DefaultBackoff     = 2 * time.Second // wait before the first retry; doubled each time
	DefaultMaxBackoff  = time.Minute
	DefaultBudgetEvery = time.Minute // how often the budget is looked at without calls
	// Hysteresis is how far (percentage points) use must fall below a
	// threshold before it counts as back below, so use that wavers around a
	// threshold does not notify at every call.
	Hysteresis = 2.0
)

// Delivery is the outcome of one event at one target, as recorded.
type Delivery struct {
	Target     string
	EventID    string
	Event      string
	Job        string
	RunID      int64
	Time       time.Time // the event's time
	FinishedAt time.Time
	Attempts   int
	Status     string // DeliverySent | DeliveryFailed | DeliveryDropped
	HTTPStatus int    // webhook: the last answer's status; 0 for none
	Error      string // the last attempt's error; never a URL or a secret
}

// Delivery statuses.
const (
	DeliverySent    = "sent"
	DeliveryFailed  = "failed"
	DeliveryDropped = "dropped"
)

// Recorder keeps delivery outcomes (the store). RecordDelivery is called from
// the target's worker, never from the caller of an event method.
type Recorder interface {
	RecordDelivery(ctx context.Context, d Delivery) error
}

// Target is one [[notify]] table and the secret its secret_file holds.
type Target struct {
	Config config.Notify
	Secret config.Secret // signs webhook bodies; zero: unsigned
}

// Options configure a Notifier. Only Targets is required.
type Options struct {
	Targets []Target
	// Now is the clock for event times, reminders and thresholds; time.Now if nil.
	Now func() time.Time
	// HTTPClient posts webhooks; nil: a client that follows no redirects (a
	// webhook URL may hold a token, and a redirect would carry the body away).
	HTTPClient *http.Client
	// Recorder keeps delivery outcomes; nil: not kept (counted only).
	Recorder Recorder
	Logger   *slog.Logger
	// Host names this runnerd in events and texts; os.Hostname if empty.
	Host string
	// Budget returns the rolling window's used calls and capacity, to attach
	// to events and to look at thresholds every BudgetEvery; nil: none.
	Budget      func() (used, capacity int)
	BudgetEvery time.Duration // 0: DefaultBudgetEvery; < 0: only when told (BudgetUsage)
	QueueSize   int           // 0: DefaultQueueSize
	Attempts    int           // 0: DefaultAttempts
	// Backoff is the wait after failed attempt n (1 for the first); nil:
	// DefaultBackoff·2^(n-1), capped at DefaultMaxBackoff.
	Backoff func(attempt int) time.Duration
	// Path is the PATH given to commands; $PATH (else a standard list) if empty.
	Path string
	// RunURL is the address of a run's status page, linked from the run's
	// events (Event.URL and the text); nil or "": no link.
	RunURL func(id int64) string
}

// Notifier turns daemon happenings into events and hands them to the targets'
// workers. Its methods never block on delivery and are safe for concurrent use.
type Notifier struct {
	o       Options
	log     *slog.Logger
	targets []*target

	ctx     context.Context // cancelled by Close to abort deliveries in flight
	cancel  context.CancelFunc
	closing chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// New checks the targets (a command that cannot be split into words is an
// error) and starts one worker per target. Close stops them.
func New(o Options) (*Notifier, error) {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Host == "" {
		o.Host, _ = os.Hostname()
	}
	if o.HTTPClient == nil {
		o.HTTPClient = &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		}}
	}
	if o.QueueSize <= 0 {
		o.QueueSize = DefaultQueueSize
	}
	if o.Attempts <= 0 {
		o.Attempts = DefaultAttempts
	}
	if o.Backoff == nil {
		o.Backoff = defaultBackoff
	}
	if o.BudgetEvery == 0 {
		o.BudgetEvery = DefaultBudgetEvery
	}
	if o.Path == "" {
		o.Path = os.Getenv("PATH")
		if o.Path == "" {
			o.Path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
		}
	}
	n := &Notifier{o: o, log: o.Logger, closing: make(chan struct{})}
	for i, tc := range o.Targets {
		t, err := newTarget(n, tc)
		if err != nil {
			return nil, fmt.Errorf("notify %q: %w", tc.Config.Name, err)
		}
		for _, other := range n.targets {
			if other.name == t.name {
				return nil, fmt.Errorf("notify: two targets are named %q (the second is number %d)", t.name, i+1)
			}
		}
		n.targets = append(n.targets, t)
	}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	for _, t := range n.targets {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			t.work()
		}()
	}
	if o.Budget != nil && o.BudgetEvery > 0 && len(n.targets) > 0 {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.watchBudget()
		}()
	}
	return n, nil
}

func defaultBackoff(attempt int) time.Duration {
	d := DefaultBackoff
	for i := 1; i < attempt && d < DefaultMaxBackoff; i++ {
		d *= 2
	}
	return min(d, DefaultMaxBackoff)
}

// Targets returns the targets' names, in configuration order.
func (n *Notifier) Targets() []string {
	if n == nil {
		return nil
	}
	names := make([]string, len(n.targets))
	for i, t := range n.targets {
		names[i] = t.name
	}
	return names
}

// Close stops taking events and lets the workers deliver what is queued (one
// attempt each, no more retries) until ctx is done; then deliveries in flight
// are aborted and what is left is counted as dropped. A nil Notifier is a
// no-op.
func (n *Notifier) Close(ctx context.Context) {
	if n == nil {
		return
	}
	n.once.Do(func() { close(n.closing) })
	done := make(chan struct{})
	go func() {
		n.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-ctx.Done():
		n.cancel()
		<-done
	}
	n.cancel()
}

func (n *Notifier) isClosing() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

// Stats counts one target's deliveries since the Notifier started.
type Stats struct {
	Target  string `json:"target"`
	Kind    string `json:"kind"`
	Queued  int    `json:"queued"`  // waiting now
	Sent    uint64 `json:"sent"`    // delivered
	Failed  uint64 `json:"failed"`  // given up after the last attempt
	Retried uint64 `json:"retried"` // attempts after a first one
	Dropped uint64 `json:"dropped"` // pushed out of a full queue, or left at Close
	// Suppressed counts outcomes not sent because an earlier notification
	// about the same open problem stands (de-duplication).
	Suppressed uint64 `json:"suppressed"`
}

// Stats returns each target's counters, in configuration order (for /metrics).
func (n *Notifier) Stats() []Stats {
	if n == nil {
		return nil
	}
	out := make([]Stats, len(n.targets))
	for i, t := range n.targets {
		out[i] = t.stats()
	}
	return out
}

// Run is a run outcome as the scheduler recorded it, with the job's priority.
type Run struct {
	ID          int64
	Job         string
	Kind        string // execute | deploy | export
	Priority    string // high | normal | low
	NominalTime time.Time
	State       string // succeeded | failed | deferred | missed | unknown | skipped
	Reason      string
	Error       string
	Calls       int
	// Evidence is where the failed execution's process log is (or will be)
	// kept; EvidenceURL its link under [http] public_url. "" for none.
	Evidence, EvidenceURL string
}

// RunOutcome hears a recorded run outcome. A failure, deferral, missed slot or
// unknown outcome opens a problem for the job (notified once, then reminded at
// the target's remind interval while it recurs); a success closes the job's
// problems and, when it was failing, is notified as recovered. A skipped run
// is not notified.
func (n *Notifier) RunOutcome(r Run) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	now := n.o.Now()
	b := n.budget()
	for _, t := range n.targets {
		t.runOutcome(now, r, b)
	}
}

// BudgetUsage looks at the rolling window's use: each target notifies once
// when use crosses one of its thresholds upward and once when it falls back
// below (by Hysteresis points).
func (n *Notifier) BudgetUsage(used, capacity int) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	now := n.o.Now()
	b := NewBudget(used, capacity)
	for _, t := range n.targets {
		t.budgetUsage(now, b)
	}
}

// ClassificationChanged hears a change of the 503 classification; a change to
// or from "external" is notified.
func (n *Notifier) ClassificationChanged(from, to, reason string) {
	if n == nil || len(n.targets) == 0 || from == to || (from != "external" && to != "external") {
		return
	}
	e := n.event(EventClassification)
	e.Classification, e.PreviousClassification, e.Reason = to, from, capText(reason)
	for _, t := range n.targets {
		t.emitGlobal(e)
	}
}

// AuthFailed hears that the auth breaker opened: the credentials were
// rejected twice in a row. reason must not hold the credentials.
func (n *Notifier) AuthFailed(reason string) {
	if n == nil || len(n.targets) == 0 {
		return
	}
	e := n.event(EventAuth)
	e.Reason = capText(reason)
	for _, t := range n.targets {
		t.emitGlobal(e)
	}
}

// event returns an event of the given name made now, with the budget.
func (n *Notifier) event(name string) Event {
	return Event{ID: newID(), Event: name, Time: n.o.Now().UTC(), Host: n.o.Host, Budget: n.budget()}
}

func (n *Notifier) budget() *Budget {
	if n.o.Budget == nil {
		return nil
	}
	b := NewBudget(n.o.Budget())
	return &b
}

// watchBudget looks at the budget every BudgetEvery, so that use falling
// back below a threshold is heard even when no call is made.
func (n *Notifier) watchBudget() {
	tick := time.NewTicker(n.o.BudgetEvery)
	defer tick.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-tick.C:
			n.BudgetUsage(n.o.Budget())
		}
	}
}

// SampleEvent is the event `runnerd notify-test` sends.
func (n *Notifier) SampleEvent() Event {
	e := n.event(EventTest)
	e.Job, e.Kind, e.Priority, e.State = "notify-test", "execute", "high", "failed"
	e.Reason = "a sample event sent by runnerd notify-test; no job failed"
	e.describe()
	return e
}

// Send delivers e to the named target now, bypassing its queue and filters,
// with the same retries, and returns the outcome (also recorded). It is for
// `runnerd notify-test`.
func (n *Notifier) Send(ctx context.Context, target string, e Event) (Delivery, error) {
	for _, t := range n.targets {
		if t.name == target {
			if e.Text == "" {
				e.describe()
			}
			q, err := t.prepare(e)
			if err != nil {
				return Delivery{}, err
			}
			return t.deliver(ctx, q), nil
		}
	}
	return Delivery{}, fmt.Errorf("no notify target named %q", target)
}

// runURL is run id's page, or "" without Options.RunURL.
func (n *Notifier) runURL(id int64) string {
	if n.o.RunURL == nil || id == 0 {
		return ""
	}
	return n.o.RunURL(id)
}

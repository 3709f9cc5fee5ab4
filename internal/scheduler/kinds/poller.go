package kinds

import (
	"context"
	"errors"
	"sort"
	"sync"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
)

// Poller defaults.
const (
	DefaultPollInitial = 3 * time.Second  // first poll this long after the send
	DefaultPollMax     = 60 * time.Second // the cadence never grows beyond this
	DefaultPollFactor  = 1.5              // each poll of a waiter grows its interval by this
	DefaultPollSkew    = time.Minute      // tolerance between our clock and the platform's executionTime
	// DefaultBindEvery is how often a waiter known only by its requestId is polled
	// on its own while batched, in case its record never shows in the window
	// (a clock far off, a record filed under another process id).
	DefaultBindEvery = 5 * time.Minute
)

// PollClient is what the Poller needs from the AtomSphere client.
type PollClient interface {
	ExecutionRecordAsync(ctx context.Context, requestID string) (rec atomapi.ExecutionRecord, pending bool, err error)
	QueryExecutionRecords(ctx context.Context, expr *atomapi.Expression, sort *atomapi.QuerySort) ([]atomapi.ExecutionRecord, error)
}

// Target identifies an execution to follow. RequestID is set for an
// ExecutionRequest; for the legacy executeProcess action it is empty and the
// record is found by ProcessID + AtomID + an executionTime window starting at
// SentAt − Skew.
type Target struct {
	RequestID string
	ProcessID string
	AtomID    string
	SentAt    time.Time
}

// PollResult is what a waiter receives once: the terminal record, or the error
// that stopped the following (a budget refusal, a rejected credential).
type PollResult struct {
	Record atomapi.ExecutionRecord
	Err    error
}

// Poller follows executions to a terminal status for all execute runs of the
// daemon together, so that the cost of polling does not grow with the number of
// executions in flight.
//
// Cadence: each waiter is first polled Initial after it is tracked; every poll
// that was due for it multiplies its interval by Factor, up to Max. A poll
// refreshes every waiter, so after one, each waiter's next due time is pushed to
// at least now + its own interval: the poll rate is set by the youngest waiter,
// not by the sum of all of them.
//
// Calls per poll:
//   - one waiter in flight: one call — ExecutionRecord/async/{requestId}
//     (authoritative), or, for executeProcess, one ExecutionRecord QUERY (by
//     executionId once known, else by the window).
//   - two or more: ONE ExecutionRecord QUERY for all of them, an "or" of
//     executionId EQUALS for every execution whose id is known, and, for each
//     (processId, atomId) with executions not yet identified, processId EQUALS
//     AND atomId EQUALS AND executionTime >= (earliest send − Skew).
//
// Why requestId-only waiters are not matched by the window alone: a QUERY
// result does not carry the requestId, and the same process may be running for
// other reasons (a platform schedule, a person, another job), so the window is
// only a hint. When it shows an execution nobody has claimed yet, the waiters of
// that process that are still unidentified are bound by one async call each
// (authoritative: it returns the record, whose executionId is then used in the
// batch). Each new execution id triggers that at most once, so a foreign
// execution in the window costs a bounded number of calls, not one per tick.
// Executions started with executeProcess have no requestId: for them the window
// is all there is, and the earliest unclaimed record at or after the send (else
// the latest within the skew before it) is taken — after the requestId waiters
// of the same process and atom have been bound, so that it cannot take theirs.
// Records of waiters that finished stay claimed while the Poller is busy.
//
// A window guess is only final once no ExecutionRequest of ours could own the
// record: an executeProcess waiter whose record is terminal is held (not
// finished) while a request of the same process and atom is being sent (see
// beginSend) or is tracked but has not been asked by its requestId since the
// hold began. Those are asked on the next poll; if one of them owns the record,
// the guess is given back and made again. Without the hold, two executions
// started in the same second — one by executeProcess, one by an
// ExecutionRequest still on its way back — could both be reported as the
// first one's.
//
// The batch query is attributed to the waiter of highest priority (first
// tracked among equals), so the budget gate judges it at that priority.
type Poller struct {
	Client  PollClient
	Now     func() time.Time
	Sleep   func(ctx context.Context, d time.Duration) error // nil: a timer; it must return early when ctx ends
	Initial time.Duration
	Max     time.Duration
	Factor  float64
	Skew    time.Duration
	// BindEvery: see DefaultBindEvery.
	BindEvery time.Duration
	// IsBudgetStop recognises a budget refusal; nil: errors.Is(err, budget.ErrExhausted).
	IsBudgetStop func(error) bool

	loops   sync.WaitGroup // the polling loop, while it runs
	mu      sync.Mutex
	tracked []*Tracking
	running bool
	wake    context.CancelFunc // cancels the loop's current sleep
	seen    map[string]bool    // execution ids that already triggered a binding attempt
	done    map[string]bool    // execution ids of waiters that finished, so no one else claims them
	sending map[groupKey]int   // ExecutionRequests being sent, not yet tracked
	asks    uint64             // requestId look-ups made, in order (see Tracking.asked)
}

// Tracking is one execution being followed.
type Tracking struct {
	p        *Poller
	ctx      context.Context
	prio     runnerd.Priority
	target   Target
	execID   string
	last     atomapi.ExecutionRecord
	interval time.Duration
	due      time.Time
	lastBind time.Time // last individual async poll while batched
	// asyncGone: the async result expired (204/404) after the execution was
	// identified; it is then queried by executionId.
	asyncGone bool
	// asked numbers this waiter's last requestId look-up (p.asks as it
	// started); held is p.asks+1 when an executeProcess waiter's terminal
	// record was held back (0: not held), so a look-up counts for the hold
	// when asked >= held.
	asked, held uint64
	done        chan PollResult
	finished    bool
}

// beginSend announces an ExecutionRequest for t's process and atom that is
// about to be sent and then tracked; the returned func (safe to call more than
// once) ends the announcement, after Track. While it lasts, executeProcess
// waiters of the same process and atom do not finish on a window guess.
func (p *Poller) beginSend(t Target) func() {
	k := groupKey{t.ProcessID, t.AtomID}
	p.mu.Lock()
	if p.sending == nil {
		p.sending = map[groupKey]int{}
	}
	p.sending[k]++
	p.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			p.mu.Lock()
			defer p.mu.Unlock()
			if p.sending[k]--; p.sending[k] <= 0 {
				delete(p.sending, k)
			}
		})
	}
}

// ownerPendingLocked reports whether an ExecutionRequest of ours could still
// own w's record: one being sent, or one tracked and unbound that has not been
// asked since w was held.
func (p *Poller) ownerPendingLocked(w *Tracking) bool {
	k := groupKey{w.target.ProcessID, w.target.AtomID}
	if p.sending[k] > 0 {
		return true
	}
	for _, o := range p.tracked {
		if o != w && !o.finished && o.target.RequestID != "" && o.execID == "" &&
			(groupKey{o.target.ProcessID, o.target.AtomID}) == k && o.asked < w.held {
			return true
		}
	}
	return false
}

// Track starts following t. ctx carries the run's CallInfo and bounds the calls
// made on its behalf. The caller must call Stop when it stops waiting.
func (p *Poller) Track(ctx context.Context, t Target) *Tracking {
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	w := &Tracking{
		p: p, ctx: ctx, prio: atomapi.CallInfoFrom(ctx).Priority, target: t,
		interval: p.initial(), done: make(chan PollResult, 1),
	}
	w.due = now.Add(w.interval)
	w.lastBind = now
	p.tracked = append(p.tracked, w)
	if !p.running {
		p.running = true
		p.loops.Add(1)
		go func() {
			defer p.loops.Done()
			p.loop()
		}()
	} else if p.wake != nil {
		p.wake()
	}
	return w
}

// Done delivers the terminal record or the error that ended the following, once.
func (w *Tracking) Done() <-chan PollResult { return w.done }

// Last returns the last record seen (zero before the first).
func (w *Tracking) Last() atomapi.ExecutionRecord {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.last
}

// Stop stops following; it is safe to call more than once and after Done.
func (w *Tracking) Stop() {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	w.p.removeLocked(w)
}

// InFlight returns the number of executions being followed.
func (p *Poller) InFlight() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.tracked)
}

func (p *Poller) now() time.Time { return clock(p.Now)() }

func (p *Poller) initial() time.Duration { return orDefault(p.Initial, DefaultPollInitial) }
func (p *Poller) max() time.Duration     { return orDefault(p.Max, DefaultPollMax) }
func (p *Poller) skew() time.Duration    { return orDefault(p.Skew, DefaultPollSkew) }

func (p *Poller) factor() float64 {
	if p.Factor > 1 {
		return p.Factor
	}
	return DefaultPollFactor
}

func (p *Poller) isBudgetStop(err error) bool {
	if p.IsBudgetStop != nil {
		return p.IsBudgetStop(err)
	}
	return defaultIsBudgetStop(err)
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}

func (p *Poller) sleep(ctx context.Context, d time.Duration) error {
	if p.Sleep != nil {
		return p.Sleep(ctx, d)
	}
	return runnerd.Sleep(ctx, d)
}

func (p *Poller) removeLocked(w *Tracking) {
	if w.execID != "" {
		if p.done == nil {
			p.done = map[string]bool{}
		}
		p.done[w.execID] = true // still its, even if nobody waits for it any more
	}
	for i, x := range p.tracked {
		if x == w {
			p.tracked = append(p.tracked[:i], p.tracked[i+1:]...)
			break
		}
	}
	w.finished = true
	if len(p.tracked) == 0 && p.wake != nil {
		p.wake() // nobody left to follow: the loop ends now, not at its next tick
	}
}

// Wait returns once the polling loop has ended: after the last waiter has
// stopped (Stop or Done). The engine calls it on close, after every run has
// ended, so that no goroutine of the poller outlives the daemon.
func (p *Poller) Wait() { p.loops.Wait() }

// finishLocked delivers r to w and stops following it.
func (p *Poller) finishLocked(w *Tracking, r PollResult) {
	if w.finished {
		return
	}
	p.removeLocked(w)
	w.done <- r
}

func (p *Poller) loop() {
	for {
		p.mu.Lock()
		if len(p.tracked) == 0 {
			p.running, p.wake = false, nil
			p.seen, p.done = nil, nil
			p.mu.Unlock()
			return
		}
		now := p.now()
		next := p.tracked[0].due
		for _, w := range p.tracked[1:] {
			if w.due.Before(next) {
				next = w.due
			}
		}
		d := next.Sub(now)
		if d <= 0 {
			p.mu.Unlock()
			p.tick()
			continue
		}
		sctx, cancel := context.WithCancel(context.Background())
		p.wake = cancel
		p.mu.Unlock()
		err := p.sleep(sctx, d)
		cancel()
		if err != nil {
			continue // woken by a new waiter: recompute
		}
		p.tick()
	}
}

// tick polls every waiter once and reschedules them.
func (p *Poller) tick() {
	p.mu.Lock()
	all := append([]*Tracking(nil), p.tracked...)
	now := p.now()
	p.mu.Unlock()
	if len(all) == 0 {
		return
	}
	if len(all) == 1 {
		p.pollOne(all[0])
	} else {
		p.pollBatch(all, now)
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	after := p.now()
	for _, w := range p.tracked {
		if !w.due.After(now) {
			w.interval = min(time.Duration(float64(w.interval)*p.factor()), p.max())
		}
		if d := after.Add(w.interval); w.due.Before(d) {
			w.due = d
		}
	}
}

// transient reports whether a poll error is worth waiting out (the client has
// already retried it); other errors end the following.
func (p *Poller) transient(err error) bool {
	if p.isBudgetStop(err) {
		return false
	}
	switch {
	case errors.Is(err, atomapi.ErrAuth), errors.Is(err, atomapi.ErrBadRequest), errors.Is(err, atomapi.ErrNotFound):
		return false
	}
	return true
}

func (p *Poller) fail(ws []*Tracking, err error) {
	if p.transient(err) {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, w := range ws {
		p.finishLocked(w, PollResult{Err: err})
	}
}

// update records rec for w and finishes w when rec is terminal.
func (p *Poller) update(w *Tracking, rec atomapi.ExecutionRecord) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.updateLocked(w, rec)
}

func (p *Poller) updateLocked(w *Tracking, rec atomapi.ExecutionRecord) {
	if w.finished {
		return
	}
	w.last = rec
	if rec.ExecutionID != "" {
		if w.target.RequestID != "" && w.execID == "" {
			p.releaseLegacyLocked(w, rec.ExecutionID)
		}
		w.execID = rec.ExecutionID
	}
	if atomapi.TerminalStatus(rec.Status) {
		if w.target.RequestID == "" {
			if w.held == 0 {
				w.held = p.asks + 1
			}
			if p.ownerPendingLocked(w) {
				w.interval = p.initial() // asked again soon, not at the backed-off cadence
				return
			}
		}
		p.finishLocked(w, PollResult{Record: rec})
	}
}

// releaseLegacyLocked: a requestId waiter has just been bound to execID by the
// platform itself. An executeProcess waiter that took the same record by time
// (its ExecutionRequest was answered after the window was read) gives it back
// and correlates again: the async answer is authoritative, the window a guess.
func (p *Poller) releaseLegacyLocked(bound *Tracking, execID string) {
	for _, o := range p.tracked {
		if o != bound && !o.finished && o.target.RequestID == "" && o.execID == execID {
			o.execID, o.last, o.held = "", atomapi.ExecutionRecord{}, 0
		}
	}
}

func (p *Poller) async(w *Tracking) {
	p.mu.Lock()
	p.asks++
	w.asked = p.asks // numbered as it starts: an answer begun before a hold does not count for it
	p.mu.Unlock()
	rec, pending, err := p.Client.ExecutionRecordAsync(w.ctx, w.target.RequestID)
	switch {
	case err != nil && errors.Is(err, atomapi.ErrNotFound):
		p.mu.Lock()
		defer p.mu.Unlock()
		if w.execID != "" {
			w.asyncGone = true // the record is known: query it by id from now on
			return
		}
		p.finishLocked(w, PollResult{Err: err})
	case err != nil:
		p.fail([]*Tracking{w}, err)
	case !pending:
		p.update(w, rec)
	}
}

func (p *Poller) pollOne(w *Tracking) {
	p.mu.Lock()
	execID, gone := w.execID, w.asyncGone
	p.mu.Unlock()
	if w.target.RequestID != "" && !gone {
		p.async(w)
		return
	}
	var expr *atomapi.Expression
	if execID != "" {
		expr = and(eq("executionId", execID))
	} else {
		expr = p.windowExpr(w.target.ProcessID, w.target.AtomID, w.target.SentAt)
	}
	recs, err := p.Client.QueryExecutionRecords(w.ctx, expr, nil)
	if err != nil {
		p.fail([]*Tracking{w}, err)
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.matchLocked([]*Tracking{w}, recs, true)
}

func (p *Poller) windowExpr(processID, atomID string, sentAt time.Time) *atomapi.Expression {
	es := []atomapi.Expression{eq("processId", processID)}
	if atomID != "" {
		es = append(es, eq("atomId", atomID))
	}
	es = append(es, simple(atomapi.OpGreaterThanOrEqual, "executionTime", atomapi.FormatTime(sentAt.Add(-p.skew()))))
	return and(es...)
}

type groupKey struct{ process, atom string }

func (p *Poller) pollBatch(all []*Tracking, now time.Time) {
	p.mu.Lock()
	leader := all[0]
	var parts []atomapi.Expression
	earliest := map[groupKey]time.Time{}
	var order []groupKey
	for _, w := range all {
		if w.prio > leader.prio {
			leader = w
		}
		if w.execID != "" {
			parts = append(parts, eq("executionId", w.execID))
			continue
		}
		k := groupKey{w.target.ProcessID, w.target.AtomID}
		t, ok := earliest[k]
		if !ok {
			order = append(order, k)
		}
		if !ok || w.target.SentAt.Before(t) {
			earliest[k] = w.target.SentAt
		}
	}
	for _, k := range order {
		parts = append(parts, *p.windowExpr(k.process, k.atom, earliest[k]))
	}
	p.mu.Unlock()

	recs, err := p.Client.QueryExecutionRecords(leader.ctx, or(parts...), nil)
	if err != nil {
		p.fail(all, err)
		return
	}
	p.mu.Lock()
	p.matchLocked(all, recs, false)
	// Bind requestId waiters, authoritatively, by one async call each: only
	// where the window shows an execution nobody has claimed and that has not
	// triggered a binding before, or when a waiter has not been looked up on
	// its own for BindEvery. Where executeProcess waiters of the same process
	// wait too, every unbound requestId waiter there is looked up, so that the
	// window correlation below cannot take a record that is theirs.
	claimed := p.claimedLocked()
	fresh := map[groupKey]int{}
	for _, r := range recs {
		if r.ExecutionID == "" || claimed[r.ExecutionID] || p.seen[r.ExecutionID] {
			continue
		}
		if p.seen == nil {
			p.seen = map[string]bool{}
		}
		p.seen[r.ExecutionID] = true
		fresh[groupKey{r.ProcessID, r.AtomID}]++
	}
	legacy := map[groupKey]bool{}
	held := map[groupKey]uint64{} // the latest hold of an executeProcess waiter per group
	for _, w := range all {
		k := groupKey{w.target.ProcessID, w.target.AtomID}
		if !w.finished && w.execID == "" && w.target.RequestID == "" {
			legacy[k] = true
		}
		if !w.finished && w.held > 0 && w.held >= held[k] {
			held[k] = w.held
		}
	}
	var bind []*Tracking
	for _, w := range unboundByRequest(all) {
		k := groupKey{w.target.ProcessID, w.target.AtomID}
		switch {
		case fresh[k] > 0 && legacy[k]:
		case held[k] > 0 && w.asked < held[k]:
		case fresh[k] > 0:
			fresh[k]--
		case now.Sub(w.lastBind) >= orDefault(p.BindEvery, DefaultBindEvery):
		default:
			continue
		}
		w.lastBind = now
		bind = append(bind, w)
	}
	p.mu.Unlock()
	for _, w := range bind {
		p.async(w)
	}
	p.mu.Lock()
	p.matchLocked(all, recs, true)
	p.mu.Unlock()
}

func unboundByRequest(ws []*Tracking) []*Tracking {
	var out []*Tracking
	for _, w := range ws {
		if !w.finished && w.execID == "" && w.target.RequestID != "" {
			out = append(out, w)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].target.SentAt.Before(out[j].target.SentAt) })
	return out
}

func (p *Poller) claimedLocked() map[string]bool {
	c := map[string]bool{}
	for id := range p.done {
		c[id] = true
	}
	for _, w := range p.tracked {
		if w.execID != "" {
			c[w.execID] = true
		}
	}
	return c
}

// matchLocked applies query results: by executionId for identified waiters, and,
// when window is set, by the window for executeProcess waiters not yet
// identified.
func (p *Poller) matchLocked(ws []*Tracking, recs []atomapi.ExecutionRecord, window bool) {
	byID := make(map[string]atomapi.ExecutionRecord, len(recs))
	for _, r := range recs {
		byID[r.ExecutionID] = r
	}
	var legacy []*Tracking
	for _, w := range ws {
		if w.finished {
			continue
		}
		if w.execID != "" {
			if r, ok := byID[w.execID]; ok {
				p.updateLocked(w, r)
			}
			continue
		}
		if window && w.target.RequestID == "" {
			legacy = append(legacy, w)
		}
	}
	if len(legacy) == 0 {
		return
	}
	sort.SliceStable(legacy, func(i, j int) bool { return legacy[i].target.SentAt.Before(legacy[j].target.SentAt) })
	claimed := p.claimedLocked()
	for _, w := range legacy {
		if r, ok := p.correlate(w.target, recs, claimed); ok {
			claimed[r.ExecutionID] = true
			p.updateLocked(w, r)
		}
	}
}

// correlate picks the record of an executeProcess send: among unclaimed records
// of the process (and atom) with executionTime >= SentAt − Skew, the earliest at
// or after SentAt, else the latest before it (a platform clock behind ours).
func (p *Poller) correlate(t Target, recs []atomapi.ExecutionRecord, claimed map[string]bool) (atomapi.ExecutionRecord, bool) {
	from := t.SentAt.Add(-p.skew()).Truncate(time.Second)
	var after, before *atomapi.ExecutionRecord
	var afterT, beforeT time.Time
	for i := range recs {
		r := &recs[i]
		if r.ExecutionID == "" || claimed[r.ExecutionID] || r.ProcessID != t.ProcessID || (t.AtomID != "" && r.AtomID != t.AtomID) {
			continue
		}
		et, err := atomapi.ParseTime(r.ExecutionTime)
		if err != nil || et.Before(from) {
			continue
		}
		if !et.Before(t.SentAt.Truncate(time.Second)) {
			if after == nil || et.Before(afterT) {
				after, afterT = r, et
			}
		} else if before == nil || et.After(beforeT) {
			before, beforeT = r, et
		}
	}
	switch {
	case after != nil:
		return *after, true
	case before != nil:
		return *before, true
	}
	return atomapi.ExecutionRecord{}, false
}

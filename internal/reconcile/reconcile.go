// Package reconcile settles runs whose outcome is unknown: runnerd stopped (or
// lost the answer) after a non-idempotent call was sent and before its answer
// was recorded (DESIGN 3.4). It never re-sends blindly; it looks.
//
// For each unknown run it finds the run's last unsafe call in the ledger, then:
//
//   - execute: the execution id already claimed by the run (followed until its
//     record is terminal); else the recorded requestId (ExecutionRecord/async);
//     else an ExecutionRecord QUERY by process, atom and executionTime from
//     Skew before the send to the end of the grace period (an execution is
//     queued when its runtime is busy or offline, and executionTime is its
//     start, so it may begin well after the send).
//   - deploy (package): a DeployedPackage QUERY of the target environment for
//     the deployment whose notes name the run ("runnerd JOB NOMINAL"), which the
//     deploy kind writes on every DeployedPackage it creates.
//   - deploy (deployProcess): a Deployment QUERY of the target environment by
//     deployedOn within the window.
//
// Then: one unclaimed match is claimed (a UNIQUE claim in the ledger: an
// execution or deployment can satisfy only one run) and followed to its
// terminal status; none, once the grace period after the send has passed,
// hands the run to the job's on_unknown (skip, or refire: a new attempt);
// several flag the run for an operator — it stays unknown with a reason that
// says so and is never acted on again.
//
// The lookups that identify a run's execution or deployment carry
// atomapi.CallInfo{Recovery: true}, so the budget lets them use the reserve.
// Following an identified execution to its end is ordinary work at the job's
// priority: when the budget refuses it, the run waits and is looked at later.
//
// A run still unknown is looked at again after min(1h, max(every, age/4)),
// age being the time since the send (sooner at the end of the grace period),
// so a long execution costs a few dozen lookups, not one a minute. A run with
// no verdict Ceiling (24 h) after the send is flagged for an operator.
package reconcile

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// Defaults of Options.
const (
	DefaultGrace = 10 * time.Minute // how long after the send a missing record may still appear
	DefaultSkew  = time.Minute      // clock tolerance of the window around the send
	DefaultEvery = time.Minute      // the timer of Loop
	// DefaultCeiling is how long after the send a run may stay unknown before
	// it is flagged for an operator.
	DefaultCeiling = 24 * time.Hour
	// maxBackoff bounds the time between two looks at one run.
	maxBackoff = time.Hour
)

// OnUnknown values (config on_unknown).
const (
	OnUnknownSkip   = runnerd.OnUnknownSkip
	OnUnknownRefire = runnerd.OnUnknownRefire
)

// Client is what reconciliation needs from the AtomSphere client: lookups only.
type Client interface {
	ExecutionRecordAsync(ctx context.Context, requestID string) (rec atomapi.ExecutionRecord, pending bool, err error)
	QueryExecutionRecords(ctx context.Context, expr *atomapi.Expression, sort *atomapi.QuerySort) ([]atomapi.ExecutionRecord, error)
	QueryDeployedPackages(ctx context.Context, expr *atomapi.Expression) ([]atomapi.DeployedPackage, error)
	QueryDeployments(ctx context.Context, expr *atomapi.Expression) ([]atomapi.Deployment, error)
}

// Store is what reconciliation needs from the ledger. *store.DB implements it.
type Store interface {
	ListRuns(ctx context.Context, f store.RunFilter) ([]runnerd.Run, error)
	ListCalls(ctx context.Context, f store.CallFilter) ([]store.Call, error)
	UpdateRun(ctx context.Context, r runnerd.Run) error
	// Claim records that run runID is satisfied by platform object id; another
	// run's claim on it is store.ErrClaimed.
	Claim(ctx context.Context, id, kind string, runID int64) error
	// ClaimedBy returns the run holding id, 0 for none.
	ClaimedBy(ctx context.Context, id string) (int64, error)
}

// Target is what a job did, from its configuration.
type Target struct {
	Kind      string // execute | deploy
	Method    string // execute: request | executeProcess; deploy: package | deployProcess
	ProcessID string
	AtomID    string // execute
	ToEnv     string // deploy
	OnUnknown string // skip (default) | refire
	Priority  runnerd.Priority
}

// Options configure a Reconciler. Client, Store and Jobs are required.
type Options struct {
	Client Client
	Store  Store
	// Jobs returns the configured target of a job; false if the job is gone.
	Jobs func(job string) (Target, bool)
	// Refire starts a new attempt of run (on_unknown = refire). nil: refire
	// is treated as skip.
	Refire func(ctx context.Context, r runnerd.Run, reason string) error
	// OnRun is told of every run reconciliation records (metrics, notifications).
	OnRun func(runnerd.Run)
	Now   func() time.Time
	Grace time.Duration // DefaultGrace if 0
	Skew  time.Duration // DefaultSkew if 0
	// Ceiling (DefaultCeiling if 0): a run with no verdict this long after
	// the send is flagged for an operator and never looked up again.
	Ceiling time.Duration
	Logger  *slog.Logger
}

// Reconciler settles unknown runs. Pass, Run and Loop may be called from
// several goroutines; a mutex serialises them.
type Reconciler struct {
	o     Options
	mu    sync.Mutex
	every time.Duration       // Loop's interval, the shortest backoff
	last  map[int64]time.Time // run id → when its last look began (in memory: a restart looks at every run once)
	// resolved caches requestId → executionId across passes: a resolved
	// request never changes its execution, and takenExecutions would
	// otherwise spend one lookup per request in range on every pass.
	// Cleared when it grows past resolvedMax (rc.mu is held).
	resolved map[string]string
}

// resolvedMax bounds the requestId cache; past it the cache starts over.
const resolvedMax = 4096

// New returns a Reconciler.
func New(o Options) *Reconciler {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Grace <= 0 {
		o.Grace = DefaultGrace
	}
	if o.Skew <= 0 {
		o.Skew = DefaultSkew
	}
	if o.Ceiling <= 0 {
		o.Ceiling = DefaultCeiling
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Reconciler{o: o, every: DefaultEvery, last: map[int64]time.Time{}, resolved: map[string]string{}}
}

// Verdict is what one pass decided for a run.
type Verdict string

// Verdicts.
const (
	Waiting   Verdict = "waiting"   // still unknown: a record may yet appear, or the claimed one is running
	Succeeded Verdict = "succeeded" // matched, and it ended well
	Failed    Verdict = "failed"    // matched, and it ended badly
	Skipped   Verdict = "skipped"   // none found after the grace period; on_unknown = skip
	Refired   Verdict = "refired"   // none found after the grace period; on_unknown = refire
	Flagged   Verdict = "flagged"   // several match, or no verdict by the ceiling: an operator decides
	Error     Verdict = "error"     // the lookup failed; tried again next pass
	NotDue    Verdict = "not_due"   // still unknown; not looked up this pass (backoff)
)

// Summary counts a pass's verdicts.
type Summary map[Verdict]int

// Detail keys reconciliation adds to a run's Detail JSON.
const (
	keyExecutionID  = "execution_id"
	keyDeploymentID = "deployment_id"
	keyStatus       = "status"
	keyMessage      = "message"
	keyReconciled   = "reconciled" // how the match was found: request_id | window | notes
	keyFlagged      = "flagged"    // true: several matched; never acted on
	keyCandidates   = "candidates" // the ids that matched, when flagged
)

// Pass reconciles every unknown run that is due (see the backoff in the
// package comment) and returns what it decided; runs not due count as NotDue.
func (rc *Reconciler) Pass(ctx context.Context) (Summary, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	runs, err := rc.o.Store.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{runnerd.StateUnknown}})
	if err != nil {
		return nil, fmt.Errorf("reconcile: list unknown runs: %w", err)
	}
	unknown := make(map[int64]bool, len(runs))
	for _, r := range runs {
		unknown[r.ID] = true
	}
	for id := range rc.last { // settled elsewhere (an operator, a refire)
		if !unknown[id] {
			delete(rc.last, id)
		}
	}
	sum := Summary{}
	var errs []error
	for i := len(runs) - 1; i >= 0; i-- { // oldest first
		if ctx.Err() != nil {
			break
		}
		v, err := rc.run(ctx, runs[i], false)
		sum[v]++
		if err != nil {
			errs = append(errs, err)
		}
	}
	return sum, errors.Join(errs...)
}

// Loop runs Pass now and then every interval until ctx ends.
func (rc *Reconciler) Loop(ctx context.Context, every time.Duration) {
	if every <= 0 {
		every = DefaultEvery
	}
	rc.mu.Lock()
	rc.every = every
	rc.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if sum, err := rc.Pass(ctx); err != nil {
			rc.o.Logger.Warn("reconcile: pass incomplete; trying again", "every", every, "err", err)
		} else if len(sum) > 0 {
			rc.o.Logger.Info("reconcile: pass", "summary", fmt.Sprint(map[Verdict]int(sum)))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// lookup is the state of one run's reconciliation.
type lookup struct {
	run    runnerd.Run
	target Target
	detail map[string]any
	call   store.Call // the run's last unsafe call; zero if none is recorded
	sentAt time.Time
	reqID  string // the platform's requestId, if it was recorded
	why    string // the reason of the last wait
}

// Run reconciles one unknown run now, whatever its backoff, and records the
// outcome.
func (rc *Reconciler) Run(ctx context.Context, r runnerd.Run) (Verdict, error) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.run(ctx, r, true)
}

// run reconciles r; unless force, only if it is due. rc.mu is held.
func (rc *Reconciler) run(ctx context.Context, r runnerd.Run, force bool) (Verdict, error) {
	if r.State != runnerd.StateUnknown {
		return Waiting, nil
	}
	if r.Detail != "" && !json.Valid([]byte(r.Detail)) {
		// Its recorded requestId may be in there: never fall back to a window
		// search over it, and never overwrite it. An operator looks.
		return Error, fmt.Errorf("reconcile run %d: its recorded detail is not JSON, so its request id cannot be read; left unknown for an operator", r.ID)
	}
	l := &lookup{run: r, detail: parseDetail(r.Detail)}
	if b, _ := l.detail[keyFlagged].(bool); b {
		delete(rc.last, r.ID)
		return Flagged, nil // an operator's decision; never acted on
	}
	t, ok := rc.o.Jobs(r.Job)
	if !ok {
		return Waiting, nil // the job is gone: an operator decides (history shows the run unknown)
	}
	l.target = t
	calls, err := rc.o.Store.ListCalls(ctx, store.CallFilter{RunID: r.ID, Status: -1})
	if err != nil {
		return Error, fmt.Errorf("reconcile run %d: %w", r.ID, err)
	}
	for _, c := range calls { // newest first
		if !c.Safe && !c.Recovery {
			l.call = c
			break
		}
	}
	l.sentAt = l.call.StartedAt
	if l.sentAt.IsZero() {
		if s, _ := l.detail["sent_at"].(string); s != "" {
			l.sentAt, _ = time.Parse(time.RFC3339Nano, s)
		}
	}
	if l.sentAt.IsZero() {
		l.sentAt = r.StartedAt
	}
	l.reqID = l.call.PlatformID
	if l.reqID == "" {
		l.reqID, _ = l.detail["request_id"].(string)
	}
	if t.Kind != "execute" && t.Kind != "deploy" {
		return Waiting, nil // other kinds make no unsafe calls
	}
	now := rc.o.Now()
	if !force && !rc.due(l, now) {
		return NotDue, nil
	}
	rc.last[r.ID] = now
	// The lookups that identify the execution or deployment may use the
	// budget's reserve; following an identified one may not (execute).
	ctx = atomapi.WithCallInfo(ctx, atomapi.CallInfo{RunID: r.ID, Job: r.Job, Priority: t.Priority, Recovery: true})

	var v Verdict
	switch {
	case t.Kind == "execute":
		v, err = rc.execute(ctx, l)
	case t.Method == "deployProcess":
		v, err = rc.deployProcess(ctx, l)
	default:
		v, err = rc.deployPackage(ctx, l)
	}
	var refused *budget.RefusedError
	if err != nil && errors.As(err, &refused) {
		// Not sent: the budget cannot afford it now. Look again later.
		v, err = rc.wait(ctx, l, "the budget refused the lookup ("+refused.Error()+"); trying again later")
	}
	if err != nil {
		rc.o.Logger.Warn("reconcile: lookup failed; trying again", "job", r.Job, "run_id", r.ID, "err", err)
		err, v = fmt.Errorf("reconcile run %d: %w", r.ID, err), Error
	}
	if (v == Waiting || v == Error) && !now.Before(l.sentAt.Add(rc.o.Ceiling)) {
		why := orStr(l.why, "the last lookup failed")
		if v == Error {
			why = "the last lookup failed: " + err.Error()
		}
		delete(rc.last, r.ID)
		return rc.flag(ctx, l, nil, fmt.Sprintf("no verdict %s after the send at %s (%s)", rc.o.Ceiling,
			l.sentAt.UTC().Format(time.RFC3339), why))
	}
	if v != Waiting && v != Error {
		delete(rc.last, r.ID)
	}
	return v, err
}

// due reports whether run l is to be looked up at now: always the first time
// (since this process started); then after min(maxBackoff, max(every, age/4))
// since its last look, age being now − the send, or at the end of the grace
// period or at the ceiling if one of those comes first.
func (rc *Reconciler) due(l *lookup, now time.Time) bool {
	last, ok := rc.last[l.run.ID]
	if !ok {
		return true
	}
	wait := min(maxBackoff, max(rc.every, now.Sub(l.sentAt)/4))
	if wait <= rc.every {
		return true // Loop's timer spaces the looks already
	}
	next := last.Add(wait)
	for _, at := range []time.Time{l.sentAt.Add(rc.o.Grace), l.sentAt.Add(rc.o.Ceiling)} {
		if last.Before(at) && at.Before(next) {
			next = at
		}
	}
	return !now.Before(next)
}

// window is the ±Skew window around the send (deployedOn of deployProcess).
func (rc *Reconciler) window(l *lookup) (from, to time.Time) {
	return l.sentAt.Add(-rc.o.Skew).Truncate(time.Second), l.sentAt.Add(rc.o.Skew)
}

// execWindow is the executionTime window of an execute run: from Skew before
// the send to the end of the grace period or now, whichever is earlier. An
// execution starts when its runtime takes it (executeProcess is queued when
// the runtime is busy or offline), so it may start long after the send; other
// runs' executions in the window are excluded by takenExecutions and claims.
func (rc *Reconciler) execWindow(l *lookup) (from, to time.Time) {
	from = l.sentAt.Add(-rc.o.Skew).Truncate(time.Second)
	to = l.sentAt.Add(rc.o.Grace)
	if now := rc.o.Now(); now.Before(to) {
		to = now
	}
	if to.Before(l.sentAt.Add(rc.o.Skew)) {
		to = l.sentAt.Add(rc.o.Skew) // clock tolerance, as before
	}
	return from, to
}

// execute reconciles an execute run.
func (rc *Reconciler) execute(ctx context.Context, l *lookup) (Verdict, error) {
	c := rc.o.Client
	if id, _ := l.detail[keyExecutionID].(string); id != "" {
		// Claimed (or identified before the crash): follow it, as ordinary
		// work — no reserve.
		info := atomapi.CallInfoFrom(ctx)
		info.Recovery = false
		recs, err := c.QueryExecutionRecords(atomapi.WithCallInfo(ctx, info), atomapi.And(atomapi.Eq("executionId", id)), nil)
		if err != nil {
			return Error, err
		}
		if len(recs) == 0 {
			return rc.wait(ctx, l, fmt.Sprintf("execution %s is not visible yet", id))
		}
		how, _ := l.detail[keyReconciled].(string)
		return rc.matched(ctx, l, recs[0], orStr(how, "execution_id"))
	}
	if l.reqID != "" {
		rec, pending, err := c.ExecutionRecordAsync(ctx, l.reqID)
		switch {
		case err == nil && pending:
			return rc.wait(ctx, l, fmt.Sprintf("request %s was accepted; its record is not available yet", l.reqID))
		case err == nil:
			return rc.matched(ctx, l, rec, "request_id")
		case errors.Is(err, atomapi.ErrNotFound), errors.Is(err, atomapi.ErrBadRequest):
			// Expired or unknown: fall back to the window.
		default:
			return Error, err
		}
	}
	if l.target.ProcessID == "" || l.target.AtomID == "" {
		return rc.flag(ctx, l, nil, "the job names no process_id and atom_id, so the execution cannot be looked up")
	}
	from, to := rc.execWindow(l)
	recs, err := c.QueryExecutionRecords(ctx, atomapi.And(
		atomapi.Eq("processId", l.target.ProcessID),
		atomapi.Eq("atomId", l.target.AtomID),
		atomapi.Between("executionTime", atomapi.FormatTime(from), atomapi.FormatTime(to)),
	), nil)
	if err != nil {
		return Error, err
	}
	others, err := rc.takenExecutions(ctx, l, from, to)
	if err != nil {
		return Error, err
	}
	taken, busy := others.taken, others.busy
	var cands []atomapi.ExecutionRecord
	for _, rec := range recs {
		if rec.ExecutionID == "" || taken[rec.ExecutionID] {
			continue
		}
		holder, err := rc.o.Store.ClaimedBy(ctx, rec.ExecutionID)
		if err != nil {
			return Error, err
		}
		if holder != 0 && holder != l.run.ID {
			continue
		}
		cands = append(cands, rec)
	}
	if len(cands) >= 1 && busy != 0 {
		// Another run sent into the same window and its call is unanswered:
		// any candidate may be its execution. Once it knows its id, the
		// window may hold only ours.
		return rc.wait(ctx, l, fmt.Sprintf("%d executions in the window; run %d, which sent into it too, has no known execution yet",
			len(cands), busy))
	}
	switch len(cands) {
	case 0:
		return rc.none(ctx, l, fmt.Sprintf("no unclaimed execution of %s on %s between %s and %s",
			l.target.ProcessID, l.target.AtomID, atomapi.FormatTime(from), atomapi.FormatTime(to)))
	case 1:
		if err := rc.o.Store.Claim(ctx, cands[0].ExecutionID, "execution", l.run.ID); err != nil {
			if errors.Is(err, store.ErrClaimed) {
				return rc.wait(ctx, l, "the matching execution was claimed by another run meanwhile")
			}
			return Error, err
		}
		return rc.matched(ctx, l, cands[0], "window")
	}
	if rec, ok := rc.fits(l, cands, others.sends); ok {
		if err := rc.o.Store.Claim(ctx, rec.ExecutionID, "execution", l.run.ID); err != nil {
			if errors.Is(err, store.ErrClaimed) {
				return rc.wait(ctx, l, "the matching execution was claimed by another run meanwhile")
			}
			return Error, err
		}
		return rc.matched(ctx, l, rec, "start_time")
	}
	ids := make([]string, len(cands))
	for i, x := range cands {
		ids[i] = x.ExecutionID
	}
	return rc.flag(ctx, l, ids, fmt.Sprintf("%d unclaimed executions match the window %s..%s", len(ids),
		atomapi.FormatTime(from), atomapi.FormatTime(to)))
}

// fits picks, among several candidates, the one execution whose start time
// fits this run's send (within Skew of it) when no other run whose execution
// is unknown sent within Skew of that start: the platform starts an
// execution when its runtime takes it, normally at once, so an execution
// that started within the clock tolerance of our send and of nobody else's
// is ours. Any doubt (none fits, two fit, a competitor fits too) is no pick:
// the caller flags the run rather than guess.
func (rc *Reconciler) fits(l *lookup, cands []atomapi.ExecutionRecord, sends []otherSend) (atomapi.ExecutionRecord, bool) {
	near := func(a, b time.Time) bool { return a.Sub(b).Abs() <= rc.o.Skew }
	var pick atomapi.ExecutionRecord
	var at time.Time
	n := 0
	for _, rec := range cands {
		t, err := atomapi.ParseTime(rec.ExecutionTime)
		if err != nil || !near(t, l.sentAt) {
			continue
		}
		pick, at, n = rec, t, n+1
	}
	if n != 1 {
		return atomapi.ExecutionRecord{}, false
	}
	for _, o := range sends {
		if near(o.at, at) {
			return atomapi.ExecutionRecord{}, false
		}
	}
	return pick, true
}

// otherSend is another run's unsafe execute call to the same process and
// atom, whose execution is not known.
type otherSend struct {
	run int64
	at  time.Time
}

// others is what takenExecutions found about the other runs.
type others struct {
	taken map[string]bool // executions other runs are known to have started
	busy  int64           // a run in flight, or whose request is unresolved, that sent into the window (0: none)
	sends []otherSend     // the sends of other runs of this target whose execution is unknown
}

// takenExecutions returns what is known of the other runs that sent into the
// window: the executions they are known to have started (named in their
// Detail, or what their recorded requestIds resolve to: one async lookup per
// such request, remembered across passes), a run still in flight or whose
// request is unresolved (busy), and the sends of those of this target whose
// execution is not known.
func (rc *Reconciler) takenExecutions(ctx context.Context, l *lookup, from, to time.Time) (others, error) {
	taken := map[string]bool{}
	var busy int64
	known := map[int64]bool{} // runs whose execution is known
	done := map[string]bool{} // requestIds resolved in this call
	runs, err := rc.o.Store.ListRuns(ctx, store.RunFilter{Since: from.Add(-48 * time.Hour)})
	if err != nil {
		return others{}, err
	}
	state := map[int64]runnerd.RunState{}
	for _, o := range runs {
		state[o.ID] = o.State
		if o.ID == l.run.ID {
			continue
		}
		if id, _ := parseDetail(o.Detail)[keyExecutionID].(string); id != "" {
			taken[id] = true
			known[o.ID] = true
		}
	}
	var sends []otherSend
	// A request sent up to a grace period before the window may have its
	// execution start inside it (the runtime queues executions; execWindow
	// makes the same allowance for this run), and one sent up to Skew after
	// its end may carry an executionTime inside it (the two clocks differ).
	calls, err := rc.o.Store.ListCalls(ctx, store.CallFilter{Since: from.Add(-rc.o.Grace), Status: -1})
	if err != nil {
		return others{}, err
	}
	for _, c := range calls {
		if c.RunID == 0 || c.RunID == l.run.ID || c.Safe || c.StartedAt.After(to.Add(rc.o.Skew)) {
			continue
		}
		// Only a call that starts an execution can own one: a deploy's
		// platform id is no requestId (asking for it was a wasted 400).
		if c.Operation != atomapi.OpExecutionRequestCreate && c.Operation != atomapi.OpExecuteProcess {
			continue
		}
		if known[c.RunID] {
			continue // its Detail names its execution: nothing to look up
		}
		if rc.sameTarget(l, c.Job) {
			sends = append(sends, otherSend{run: c.RunID, at: c.StartedAt})
		}
		if c.PlatformID == "" {
			if st := state[c.RunID]; st == runnerd.StateRunning || st == runnerd.StateAdmitted {
				busy = c.RunID
			}
			continue
		}
		if done[c.PlatformID] {
			continue // resolved earlier in this pass
		}
		if id, ok := rc.resolved[c.PlatformID]; ok {
			taken[id] = true
			done[c.PlatformID] = true
			known[c.RunID] = true
			continue // resolved in an earlier pass
		}
		rec, pending, err := rc.o.Client.ExecutionRecordAsync(ctx, c.PlatformID)
		switch {
		case err == nil && !pending && rec.ExecutionID != "":
			taken[rec.ExecutionID] = true
			done[c.PlatformID] = true
			known[c.RunID] = true
			if len(rc.resolved) >= resolvedMax {
				clear(rc.resolved)
			}
			rc.resolved[c.PlatformID] = rec.ExecutionID
		case err == nil || (!errors.Is(err, atomapi.ErrNotFound) && !errors.Is(err, atomapi.ErrBadRequest)):
			// Pending, or the lookup failed: that request's execution may
			// be any candidate in the window, so no candidate may be
			// claimed by the window yet (its owner would find it claimed
			// by us and be flagged). A failed lookup is "not known yet",
			// never "not taken".
			busy = c.RunID
		}
	}
	// A send recorded before its run's execution became known (in this
	// loop, a later call of the same run) is no competitor.
	sends = slices.DeleteFunc(sends, func(o otherSend) bool { return known[o.run] })
	return others{taken: taken, busy: busy, sends: sends}, nil
}

// sameTarget reports whether job starts the same process on the same atom
// as l's run (an unknown job counts as the same: it may).
func (rc *Reconciler) sameTarget(l *lookup, job string) bool {
	t, ok := rc.o.Jobs(job)
	return !ok || (t.ProcessID == l.target.ProcessID && t.AtomID == l.target.AtomID)
}

// deployPackage reconciles a DeployedPackage deploy by the notes the kind
// writes: "runnerd JOB NOMINAL".
func (rc *Reconciler) deployPackage(ctx context.Context, l *lookup) (Verdict, error) {
	notes := runnerd.DeployNotes(l.run.Job, atomapi.FormatTime(l.run.NominalTime))
	pkgs, err := rc.o.Client.QueryDeployedPackages(ctx, atomapi.And(
		atomapi.Eq("environmentId", l.target.ToEnv),
		atomapi.Eq("componentId", l.target.ProcessID),
	))
	if err != nil {
		return Error, err
	}
	var ids []string
	for _, p := range pkgs {
		if p.Notes == notes && p.DeploymentID != "" {
			ids = append(ids, p.DeploymentID)
		}
	}
	return rc.deployMatches(ctx, l, ids, "notes", fmt.Sprintf("no deployment of %s in %s with notes %q",
		l.target.ProcessID, l.target.ToEnv, notes))
}

// deployProcess reconciles a legacy deployProcess by deployedOn in the window.
func (rc *Reconciler) deployProcess(ctx context.Context, l *lookup) (Verdict, error) {
	from, to := rc.window(l)
	deps, err := rc.o.Client.QueryDeployments(ctx, atomapi.And(
		atomapi.Eq("processId", l.target.ProcessID),
		atomapi.Eq("environmentId", l.target.ToEnv),
	))
	if err != nil {
		return Error, err
	}
	var ids []string
	for _, d := range deps {
		at, err := atomapi.ParseTime(d.DeployedOn)
		if err != nil || d.ID == "" || at.Before(from) || at.After(to) {
			continue
		}
		holder, err := rc.o.Store.ClaimedBy(ctx, d.ID)
		if err != nil {
			return Error, err
		}
		if holder != 0 && holder != l.run.ID {
			continue
		}
		ids = append(ids, d.ID)
	}
	return rc.deployMatches(ctx, l, ids, "window", fmt.Sprintf("no unclaimed deployment of %s in %s between %s and %s",
		l.target.ProcessID, l.target.ToEnv, atomapi.FormatTime(from), atomapi.FormatTime(to)))
}

func (rc *Reconciler) deployMatches(ctx context.Context, l *lookup, ids []string, how, none string) (Verdict, error) {
	switch len(ids) {
	case 0:
		return rc.none(ctx, l, none)
	case 1:
		if err := rc.o.Store.Claim(ctx, ids[0], "deployment", l.run.ID); err != nil {
			if errors.Is(err, store.ErrClaimed) {
				return rc.none(ctx, l, "the matching deployment is claimed by another run")
			}
			return Error, err
		}
		l.detail[keyDeploymentID], l.detail[keyReconciled], l.detail["result"] = ids[0], how, "deployed"
		return Succeeded, rc.finish(ctx, l, runnerd.StateSucceeded, "", "")
	}
	sort.Strings(ids)
	return rc.flag(ctx, l, ids, fmt.Sprintf("%d deployments match", len(ids)))
}

// matched records what the execution rec says about the run.
func (rc *Reconciler) matched(ctx context.Context, l *lookup, rec atomapi.ExecutionRecord, how string) (Verdict, error) {
	if rec.ExecutionID != "" {
		if err := rc.o.Store.Claim(ctx, rec.ExecutionID, "execution", l.run.ID); err != nil {
			if errors.Is(err, store.ErrClaimed) {
				return rc.flag(ctx, l, []string{rec.ExecutionID}, "its execution is claimed by another run")
			}
			return Error, err
		}
		l.detail[keyExecutionID] = rec.ExecutionID
	}
	l.detail[keyReconciled], l.detail[keyStatus] = how, rec.Status
	if rec.Message != "" {
		l.detail[keyMessage] = rec.Message
	}
	if !atomapi.TerminalStatus(rec.Status) {
		return rc.wait(ctx, l, fmt.Sprintf("found execution %s (%s); following it", rec.ExecutionID, rec.Status))
	}
	if atomapi.SucceededStatus(rec.Status) {
		return Succeeded, rc.finish(ctx, l, runnerd.StateSucceeded, "", "")
	}
	msg := orStr(rec.Message, "no message")
	return Failed, rc.finish(ctx, l, runnerd.StateFailed, "",
		fmt.Sprintf("execution %s ended %s: %s (found by reconciliation)", rec.ExecutionID, rec.Status, msg))
}

// none: nothing matches. Within the grace period the run waits; after it,
// on_unknown decides.
func (rc *Reconciler) none(ctx context.Context, l *lookup, what string) (Verdict, error) {
	deadline := l.sentAt.Add(rc.o.Grace)
	now := rc.o.Now()
	if now.Before(deadline) {
		return rc.wait(ctx, l, fmt.Sprintf("%s yet; looking again until %s", what, deadline.UTC().Format(time.RFC3339)))
	}
	reason := fmt.Sprintf("%s within the grace period (%s after the send at %s)", what, rc.o.Grace,
		l.sentAt.UTC().Format(time.RFC3339))
	if l.target.OnUnknown == OnUnknownRefire && rc.o.Refire != nil {
		r := l.run
		r.Detail = toJSON(l.detail)
		reason = "on_unknown = refire: " + reason
		if err := rc.o.Refire(ctx, r, reason); err != nil {
			return Error, fmt.Errorf("refire: %w", err)
		}
		rc.o.Logger.Warn("reconcile: refired", "job", r.Job, "run_id", r.ID, "reason", reason)
		return Refired, nil
	}
	return Skipped, rc.finish(ctx, l, runnerd.StateSkipped, "on_unknown = skip: "+reason, "")
}

// wait keeps the run unknown with reason.
func (rc *Reconciler) wait(ctx context.Context, l *lookup, reason string) (Verdict, error) {
	l.why = reason
	r := l.run
	r.Reason, r.Detail = "reconciling: "+reason, toJSON(l.detail)
	if r.Reason == l.run.Reason && r.Detail == l.run.Detail {
		return Waiting, nil
	}
	return Waiting, rc.o.Store.UpdateRun(ctx, r)
}

// flag marks the run for an operator; it is never acted on again.
func (rc *Reconciler) flag(ctx context.Context, l *lookup, ids []string, why string) (Verdict, error) {
	r := l.run
	l.detail[keyFlagged] = true
	if len(ids) > 0 {
		l.detail[keyCandidates] = ids
	}
	r.Reason = "flagged for an operator: " + why + "; runnerd will not act on this run"
	if len(ids) > 0 {
		r.Reason += " (" + strings.Join(ids, ", ") + ")"
	}
	r.Detail = toJSON(l.detail)
	if err := rc.o.Store.UpdateRun(ctx, r); err != nil {
		return Error, err
	}
	rc.o.Logger.Error("reconcile: run flagged for an operator", "job", r.Job, "run_id", r.ID, "reason", r.Reason)
	if rc.o.OnRun != nil {
		rc.o.OnRun(r)
	}
	return Flagged, nil
}

func (rc *Reconciler) finish(ctx context.Context, l *lookup, state runnerd.RunState, reason, errText string) error {
	r := l.run
	r.State, r.Reason, r.Error, r.Detail = state, reason, errText, toJSON(l.detail)
	r.FinishedAt = rc.o.Now()
	if err := rc.o.Store.UpdateRun(ctx, r); err != nil {
		return err
	}
	rc.o.Logger.Info("reconcile: run settled", "job", r.Job, "run_id", r.ID, "state", r.State,
		"how", l.detail[keyReconciled], "reason", reason, "err", errText)
	if rc.o.OnRun != nil {
		rc.o.OnRun(r)
	}
	return nil
}

// IsFlagged reports whether r was left for an operator: reconciliation
// makes no more lookups for it.
func IsFlagged(r runnerd.Run) bool {
	b, _ := parseDetail(r.Detail)[keyFlagged].(bool)
	return b
}

// LookupsPerRun is what planning foresees for each open unknown run: the
// lookups that identify what it did, then one to follow it (a burst of 40
// settles with 1.5 each: TestSettleAfterBurst).
const LookupsPerRun = 2

func parseDetail(s string) map[string]any {
	m := map[string]any{}
	if s != "" {
		json.Unmarshal([]byte(s), &m)
	}
	if m == nil {
		m = map[string]any{}
	}
	return m
}

func toJSON(m map[string]any) string {
	b, err := json.Marshal(m)
	if err != nil {
		return ""
	}
	return string(b)
}

func orStr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

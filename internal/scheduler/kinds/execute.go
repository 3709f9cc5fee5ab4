package kinds

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/scheduler"
)

// Execute methods.
const (
	MethodRequest        = "request"        // ExecutionRequest: trackable by requestId (default)
	MethodExecuteProcess = "executeProcess" // the legacy action: no id, found by a window QUERY
)

// ExecuteClient is what the execute kind needs from the AtomSphere client.
type ExecuteClient interface {
	PollClient
	CreateExecutionRequest(ctx context.Context, r atomapi.ExecutionRequest) (atomapi.ExecutionRequest, error)
	ExecuteProcess(ctx context.Context, r atomapi.ExecuteProcessRequest) error
}

// Execute starts a process and, with Wait, follows it to a terminal status.
type Execute struct {
	Client      ExecuteClient
	ProcessID   string
	ProcessName string // used only when ProcessID is empty
	AtomID      string
	Method      string // MethodRequest (default) or MethodExecuteProcess
	Wait        bool
	Properties  map[string]string
	Priority    runnerd.Priority
	// Poller follows the executions of all execute runs; nil: a private one.
	Poller *Poller
	Now    func() time.Time
	// IsBudgetStop recognises a budget refusal; nil: errors.Is(err, budget.ErrExhausted).
	IsBudgetStop func(error) bool
	// Timeout is the job's timeout, for the message; OnTimeout "leave" only
	// stops following at the timeout, anything else (the default, "cancel")
	// asks the platform to cancel the execution when Client is a Canceller.
	Timeout   time.Duration
	OnTimeout string
}

// Canceller is the optional part of an ExecuteClient that cancels executions.
type Canceller interface {
	CancelExecution(ctx context.Context, executionID string) (atomapi.CancelOutcome, error)
}

// cancelBound is how long the cancel at a timeout may take (the run's own
// context has ended by then).
const cancelBound = 30 * time.Second

// ExecuteDetail is the run's Detail for an execute run.
type ExecuteDetail struct {
	Method      string    `json:"method"`
	RequestID   string    `json:"request_id,omitempty"`
	ExecutionID string    `json:"execution_id,omitempty"`
	Status      string    `json:"status,omitempty"`
	Message     string    `json:"message,omitempty"`
	SentAt      time.Time `json:"sent_at,omitzero"`
	// Correlated is "window" when the execution was found by time (executeProcess).
	Correlated string `json:"correlated,omitempty"`
	// Cancel is how the cancel at the timeout went (atomapi.CancelSent, …);
	// CancelMessage the platform's word or why it was not sent.
	Cancel        string `json:"cancel,omitempty"`
	CancelMessage string `json:"cancel_message,omitempty"`
}

// Run implements scheduler.Kind.
func (k *Execute) Run(ctx context.Context, rc *scheduler.RunContext) scheduler.Outcome {
	now := clock(k.Now, rc.Now)
	isBudget := k.IsBudgetStop
	if isBudget == nil {
		isBudget = defaultIsBudgetStop
	}
	ctx = callCtx(ctx, rc, k.Priority)
	d := ExecuteDetail{Method: k.Method}
	if d.Method == "" {
		d.Method = MethodRequest
	}
	if err := ctx.Err(); err != nil {
		return scheduler.Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("execute: not sent: %w", err), Retryable: true}
	}

	p := k.Poller
	if p == nil {
		p = &Poller{Client: k.Client, Now: now, IsBudgetStop: k.IsBudgetStop}
	}
	d.SentAt = now().UTC()
	target := Target{ProcessID: k.ProcessID, AtomID: k.AtomID, SentAt: d.SentAt}
	var err error
	endSend := func() {}
	defer func() { endSend() }()
	switch d.Method {
	case MethodRequest:
		if k.Wait {
			// Until it is tracked, executeProcess waiters of the same process do
			// not settle on a record that may be this request's.
			endSend = p.beginSend(target)
		}
		var ans atomapi.ExecutionRequest
		ans, err = k.Client.CreateExecutionRequest(ctx, k.request())
		d.RequestID = ans.RequestID
		target.RequestID = ans.RequestID
	case MethodExecuteProcess:
		err = k.Client.ExecuteProcess(ctx, k.executeProcess())
		d.Correlated = "window"
	default:
		return scheduler.Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("execute: unknown method %q", k.Method)}
	}
	op := "execute " + d.Method
	switch class := classifySend(err, isBudget); class {
	case sendAccepted:
	default:
		return sendFailure(op, class, err, d)
	}
	if d.Method == MethodRequest && d.RequestID == "" {
		// Accepted, but without the id we cannot follow it: reconcile by lookup.
		return scheduler.Outcome{State: runnerd.StateUnknown, Err: errors.New("execute request: accepted without a requestId"), Detail: toJSON(d)}
	}
	if !k.Wait {
		return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
	}
	if target.ProcessID == "" {
		// executeProcess by name only: the window needs the id.
		return scheduler.Outcome{State: runnerd.StateUnknown, Err: errors.New("execute: cannot follow an execution started by process name without process_id"), Detail: toJSON(d)}
	}

	w := p.Track(ctx, target)
	endSend()
	defer w.Stop()
	select {
	case r := <-w.Done():
		if r.Err != nil {
			// The execution was started; its outcome is not known. The recorded
			// requestId (or the window) lets reconciliation find it later.
			d.fill(w.Last())
			return scheduler.Outcome{State: runnerd.StateUnknown, Err: fmt.Errorf("execute: following: %w", r.Err), Detail: toJSON(d)}
		}
		return d.outcome(r.Record)
	case <-ctx.Done():
		// The execution was started and may still succeed: runnerd only stopped
		// following it (the job's timeout, or a shutdown past its bound). The
		// run is unknown, with the ids, so that reconciliation looks it up.
		d.fill(w.Last())
		when := "at the timeout"
		if !errors.Is(ctx.Err(), context.DeadlineExceeded) {
			when = "as runnerd stopped"
		} else if out, ok := k.cancelAtTimeout(ctx, &d); ok {
			return out
		}
		err := fmt.Errorf("execute: stopped following %s (last status %q: %w); the execution's outcome is looked up",
			when, d.Status, ctx.Err())
		return scheduler.Outcome{State: runnerd.StateUnknown, Err: err, Detail: toJSON(d)}
	}
}

// cancelAtTimeout: the job's timeout passed while the execution still ran.
// Unless the job says on_timeout = "leave", runnerd asks the platform to
// cancel it (one call; the client finds and remembers where the operation
// is offered) and the run fails, saying how the cancel went. ok is false
// when there is nothing to cancel by id (no execution id is known, or the
// client cannot cancel): the run is then unknown, as with "leave", and
// reconciliation looks it up.
func (k *Execute) cancelAtTimeout(ctx context.Context, d *ExecuteDetail) (scheduler.Outcome, bool) {
	c, can := k.Client.(Canceller)
	if !can || k.OnTimeout == "leave" || d.ExecutionID == "" || atomapi.TerminalStatus(d.Status) {
		return scheduler.Outcome{}, false
	}
	after := "the timeout"
	if k.Timeout > 0 {
		after = k.Timeout.String()
	}
	status := d.Status
	if status == "" {
		status = "not yet reported"
	}
	info := atomapi.CallInfoFrom(ctx)
	info.Recovery = true // a clean-up call: it may use the reserve
	cctx, cancel := context.WithTimeout(atomapi.WithCallInfo(context.WithoutCancel(ctx), info), cancelBound)
	out, err := c.CancelExecution(cctx, d.ExecutionID)
	cancel()
	if err != nil {
		out = atomapi.CancelOutcome{Result: atomapi.CancelFailed, Message: err.Error()}
	}
	d.Cancel, d.CancelMessage = out.Result, out.Message
	tail := "the platform accepted the cancel"
	if d.Cancel != atomapi.CancelSent {
		tail = d.CancelMessage + "; the execution may still be running on the platform"
	}
	return scheduler.Outcome{
		State:  runnerd.StateFailed,
		Err:    fmt.Errorf("timed out after %s (cancel: %s): execution %s was %s; %s", after, d.Cancel, d.ExecutionID, status, tail),
		Detail: toJSON(*d),
	}, true
}

func (d *ExecuteDetail) fill(rec atomapi.ExecutionRecord) {
	if rec.ExecutionID != "" {
		d.ExecutionID = rec.ExecutionID
	}
	d.Status, d.Message = rec.Status, rec.Message
}

// outcome maps a terminal record: COMPLETE and COMPLETE_WARN succeed (the
// warning is kept in Detail); ERROR, ABORTED and DISCARDED fail with the
// record's message. A failed execution is not retryable by runnerd: the process
// ran, and whether running it again is safe is the process owner's call (the
// job's retries setting).
func (d ExecuteDetail) outcome(rec atomapi.ExecutionRecord) scheduler.Outcome {
	d.fill(rec)
	if atomapi.SucceededStatus(rec.Status) {
		return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
	}
	msg := rec.Message
	if msg == "" {
		msg = "no message"
	}
	return scheduler.Outcome{
		State:  runnerd.StateFailed,
		Err:    fmt.Errorf("execution %s ended %s: %s", rec.ExecutionID, rec.Status, msg),
		Detail: toJSON(d),
	}
}

func (k *Execute) request() atomapi.ExecutionRequest {
	r := atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: k.AtomID, ProcessID: k.ProcessID}
	if k.ProcessID == "" {
		r.ProcessName = k.ProcessName
	}
	if len(k.Properties) > 0 {
		r.DynamicProcessProperties = &atomapi.DynamicProcessProperties{}
		for _, name := range sortedKeys(k.Properties) {
			r.DynamicProcessProperties.DynamicProcessProperty = append(r.DynamicProcessProperties.DynamicProcessProperty,
				atomapi.DynamicProcessProperty{Name: name, Value: k.Properties[name]})
		}
	}
	return r
}

func (k *Execute) executeProcess() atomapi.ExecuteProcessRequest {
	r := atomapi.ExecuteProcessRequest{AtomID: k.AtomID, ProcessID: k.ProcessID}
	if k.ProcessID == "" {
		r.ProcessName = k.ProcessName
	}
	if len(k.Properties) > 0 {
		r.ProcessProperties = &atomapi.ProcessProperties{Type: "ProcessProperties"}
		for _, name := range sortedKeys(k.Properties) {
			r.ProcessProperties.ProcessProperty = append(r.ProcessProperties.ProcessProperty,
				atomapi.ProcessProperty{Type: "", Name: name, Value: k.Properties[name]})
		}
	}
	return r
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

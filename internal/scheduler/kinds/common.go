package kinds

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/scheduler"
)

// The kinds must satisfy the scheduler's interface.
var (
	_ scheduler.Kind = (*Execute)(nil)
	_ scheduler.Kind = (*Deploy)(nil)
	_ scheduler.Kind = (*Export)(nil)
)

// Unsafe-call outcomes. An unsafe call (ExecutionRequest, executeProcess,
// DeployedPackage CREATE, deployProcess) may start work on the platform, so how
// it failed decides whether the run may be tried again.
type sendResult int

const (
	sendAccepted  sendResult = iota // the platform answered with success
	sendBudget                      // the budget refused it: nothing was sent
	sendNotSent                     // definitely not accepted (503 after retries, nothing left the process): retryable
	sendRejected                    // definitely refused (400, 401/403, 404): not retryable
	sendDuplicate                   // a deploy the platform already has: success
	sendUnknown                     // may have been accepted: never retried, never re-fired; reconciled by lookup
)

// classifySend reads the error of an unsafe call. ctxWasDone reports whether the
// run's context had already ended before the call was made (then nothing was sent).
//
// Anything the client cannot vouch for as "not sent" or "refused" is unknown:
// a transport error after the request may have left (Sent=true), a 2xx answer
// that could not be decoded, a context deadline or cancellation during the
// call, a 5xx other than the rate limit (a gateway error may hide an accepted
// request) and any error this code does not recognise.
func classifySend(err error, isBudgetStop func(error) bool) sendResult {
	if err == nil {
		return sendAccepted
	}
	if isBudgetStop(err) {
		return sendBudget
	}
	if errors.Is(err, atomapi.ErrDuplicateDeploy) {
		return sendDuplicate
	}
	var te *atomapi.TransportError
	if errors.As(err, &te) {
		if te.Sent {
			return sendUnknown
		}
		return sendNotSent
	}
	var de *atomapi.DecodeError
	if errors.As(err, &de) || errors.Is(err, atomapi.ErrDecode) {
		return sendUnknown
	}
	switch {
	case errors.Is(err, atomapi.ErrRateLimited):
		// 503/429 after the client's retries: the platform rejected every attempt.
		return sendNotSent
	case errors.Is(err, atomapi.ErrAuth), errors.Is(err, atomapi.ErrBadRequest), errors.Is(err, atomapi.ErrNotFound):
		return sendRejected
	}
	// Any other definite answer that is not a success and not a server error
	// (a redirect not followed, 405, 409, 410 retired, 413, 415, 422): the
	// platform refused the request; it was not carried out.
	var ae *atomapi.APIError
	if errors.As(err, &ae) && ae.Status >= 300 && ae.Status < 500 && ae.Status != http.StatusTooManyRequests {
		return sendRejected
	}
	return sendUnknown
}

// defaultIsBudgetStop recognises the budget gate's refusals: the rolling
// window is spent, or normal and low work is paused for external usage. Either
// way the call was not sent.
func defaultIsBudgetStop(err error) bool {
	return errors.Is(err, budget.ErrExhausted) || errors.Is(err, budget.ErrPaused)
}

// readFailure turns the error of a read-only call (query, GET, poll) into an
// Outcome: a budget refusal defers the run; a configuration-type refusal
// (auth, bad request, not found) fails it for good; anything else fails it
// retryably, since nothing unsafe was sent.
func readFailure(op string, err error, isBudgetStop func(error) bool, detail any) scheduler.Outcome {
	err = fmt.Errorf("%s: %w", op, err)
	switch {
	case isBudgetStop(err):
		return scheduler.Outcome{State: runnerd.StateDeferred, Err: err, Detail: toJSON(detail)}
	case errors.Is(err, atomapi.ErrAuth), errors.Is(err, atomapi.ErrBadRequest), errors.Is(err, atomapi.ErrNotFound):
		return scheduler.Outcome{State: runnerd.StateFailed, Err: err, Detail: toJSON(detail)}
	}
	return scheduler.Outcome{State: runnerd.StateFailed, Err: err, Retryable: true, Detail: toJSON(detail)}
}

// sendFailure turns the classified error of an unsafe call into an Outcome.
// It is not called for sendAccepted or sendDuplicate.
func sendFailure(op string, class sendResult, err error, detail any) scheduler.Outcome {
	err = fmt.Errorf("%s: %w", op, err)
	out := scheduler.Outcome{Err: err, Detail: toJSON(detail)}
	switch class {
	case sendBudget:
		out.State = runnerd.StateDeferred
	case sendNotSent:
		out.State, out.Retryable = runnerd.StateFailed, true
	case sendRejected:
		out.State = runnerd.StateFailed
	default:
		out.State = runnerd.StateUnknown
	}
	return out
}

// callCtx attributes the calls made with ctx to the run.
func callCtx(ctx context.Context, rc *scheduler.RunContext, p runnerd.Priority) context.Context {
	return atomapi.WithCallInfo(ctx, atomapi.CallInfo{RunID: rc.Run.ID, Job: rc.Run.Job, Priority: p})
}

// clock picks the first non-nil time source.
func clock(fns ...func() time.Time) func() time.Time {
	for _, f := range fns {
		if f != nil {
			return f
		}
	}
	return time.Now
}

func toJSON(v any) string {
	if v == nil {
		return ""
	}
	b, err := json.Marshal(v)
	if err != nil {
		return ""
	}
	return string(b)
}

// Expression helpers. A group of one is returned as the lone expression: the
// platform may reject a one-element nestedExpression (atomsphere-api.md 2.2).

func eq(prop, v string) atomapi.Expression {
	return atomapi.Expression{Operator: atomapi.OpEquals, Property: prop, Argument: []atomapi.FlexString{atomapi.FlexString(v)}}
}

func simple(op, prop string, args ...string) atomapi.Expression {
	e := atomapi.Expression{Operator: op, Property: prop}
	for _, a := range args {
		e.Argument = append(e.Argument, atomapi.FlexString(a))
	}
	return e
}

func group(op string, es ...atomapi.Expression) *atomapi.Expression {
	switch len(es) {
	case 0:
		return nil
	case 1:
		e := es[0]
		return &e
	}
	return &atomapi.Expression{Operator: op, NestedExpression: es}
}

func and(es ...atomapi.Expression) *atomapi.Expression { return group(atomapi.OpAnd, es...) }
func or(es ...atomapi.Expression) *atomapi.Expression  { return group(atomapi.OpOr, es...) }

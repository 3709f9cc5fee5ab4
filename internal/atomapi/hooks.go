package atomapi

import (
	"context"
	"time"

	"runnerd"
)

// RequestIDHeader carries each attempt's unique id, so that a server log and the
// ledger can be joined one to one.
const RequestIDHeader = "X-Runnerd-Request-Id"

// CallInfo says on whose behalf calls are made. It travels in the context, so
// that the client's operations keep plain signatures.
type CallInfo struct {
	RunID    int64            // the run the call belongs to; 0 for calls outside a run
	Job      string           // the job name; "" for ad-hoc calls
	Priority runnerd.Priority // the run's priority, for the budget gate
	Recovery bool             // a reconciliation lookup: may use the budget's reserve
}

type callInfoKey struct{}

// WithCallInfo returns a context whose calls are attributed to info.
func WithCallInfo(ctx context.Context, info CallInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, info)
}

// CallInfoFrom returns the CallInfo in ctx, or the zero value.
func CallInfoFrom(ctx context.Context) CallInfo {
	info, _ := ctx.Value(callInfoKey{}).(CallInfo)
	return info
}

// Call describes one HTTP attempt. The client fills it before asking the gate and
// the recorder; the recorder may set LedgerID in Begin and read it back in End.
type Call struct {
	CallInfo
	RequestID string    // unique per attempt; sent as RequestIDHeader
	Operation string    // e.g. "AuditLog.query", "AuditLog.queryMore", "ExecutionRequest.create"
	Object    string    // the API object or action: "AuditLog", "ExecutionRequest", "executeProcess", …
	Method    string    // HTTP method
	Path      string    // path below the account prefix, e.g. "/AuditLog/query"; never a query string with secrets
	Safe      bool      // read-only: may be retried freely. Unsafe: ExecutionRequest, executeProcess, deploys
	Attempt   int       // 1 for the first attempt, counted by the caller's retries
	StartedAt time.Time // set by the client just before Begin
	// SentAt is when the request may go, set by a Pacer's Pace after the
	// rate wait (zero without one): the hour the platform counts it in.
	SentAt   time.Time
	LedgerID int64 // set by the Recorder's Begin, if it keeps rows
}

// Result is how an attempt ended, given to Recorder.End.
type Result struct {
	Status   int           // HTTP status; 0 when no answer was received
	Duration time.Duration // from just before the first byte to the end of the body
	// RoundTrip is from just before the first byte to the answer's headers:
	// the round trip without the body's transfer (0 without an answer). Its
	// spread is what the adaptive rate margin follows.
	RoundTrip time.Duration
	Bytes     int64 // response body bytes read
	Err       error // the typed error the caller sees, or nil
	// Sent reports whether the request may have reached the server. False only
	// when the client knows nothing left the process (dial refused, gate refused).
	Sent bool
	// RequestID is the platform's id for an accepted ExecutionRequest, so a
	// crash after the answer can be reconciled by lookup.
	PlatformID string
}

// Gate decides when (and whether) an attempt may start: it waits for a rate
// token and refuses a call the budget cannot afford. An error means the request
// is not sent.
type Gate interface {
	Wait(ctx context.Context, c *Call) error
}

// Pacer is an optional interface of a Gate. When the Gate has it, Wait only
// admits the call (budget) and Pace, called after Recorder.Begin and right before
// the request is written, waits for the rate slot. An error from Pace means the
// request is not sent; the begun row is ended with that error.
type Pacer interface {
	Pace(ctx context.Context, c *Call) error
}

// Recorder keeps the ledger. Begin must make the attempt durable before it
// returns; if it fails the request is not sent. End completes the row.
type Recorder interface {
	Begin(ctx context.Context, c *Call) error
	End(ctx context.Context, c *Call, r Result)
}

// GateFunc adapts a function to Gate.
type GateFunc func(ctx context.Context, c *Call) error

// Wait calls f.
func (f GateFunc) Wait(ctx context.Context, c *Call) error { return f(ctx, c) }

type nopGate struct{}

func (nopGate) Wait(ctx context.Context, c *Call) error { return ctx.Err() }

type nopRecorder struct{}

func (nopRecorder) Begin(context.Context, *Call) error { return nil }
func (nopRecorder) End(context.Context, *Call, Result) {}

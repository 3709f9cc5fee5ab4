package atomapi

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Sentinel errors. Every error the client returns for an answered or failed
// attempt matches one of them with errors.Is; the typed errors below carry the
// details.
var (
	// ErrRateLimited: HTTP 503 or 429. The platform rejected the call (per-second
	// rate, daily allowance or a busy server: indistinguishable).
	ErrRateLimited = errors.New("atomapi: rate limited")
	// ErrAuth: HTTP 401 or 403, or the auth breaker is open.
	ErrAuth = errors.New("atomapi: authentication failed")
	// ErrNotFound: HTTP 404 (or 204 from an async result that is gone).
	ErrNotFound = errors.New("atomapi: not found")
	// ErrBadRequest: HTTP 400.
	ErrBadRequest = errors.New("atomapi: bad request")
	// ErrServer: an HTTP 5xx other than 503.
	ErrServer = errors.New("atomapi: server error")
	// ErrDuplicateDeploy: DeployedPackage CREATE answered 400 "duplicate": the
	// package is already deployed there. Callers usually treat it as success.
	ErrDuplicateDeploy = errors.New("atomapi: duplicate deployment")
	// ErrTransport: no usable answer (dial, TLS, reset, timeout); see TransportError.Sent.
	ErrTransport = errors.New("atomapi: transport error")
	// ErrDecode: a 2xx answer whose body could not be read or decoded.
	ErrDecode = errors.New("atomapi: cannot decode answer")
)

// APIError is an answer with a status outside 2xx (or a 3xx that was not followed).
// Message is the platform's error text when the body had one of the known shapes;
// Excerpt is the start of the raw body (at most 2 KiB), kept for non-JSON bodies.
type APIError struct {
	Operation string // e.g. "AuditLog.query"
	Status    int
	Message   string
	Excerpt   string
	// RetryAfter is the server's Retry-After, or 0 when it sent none.
	RetryAfter time.Duration
}

func (e *APIError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "atomapi: %s: HTTP %d", e.Operation, e.Status)
	if t := http.StatusText(e.Status); t != "" {
		b.WriteString(" " + t)
	}
	switch {
	case e.Message != "":
		b.WriteString(": " + oneLine(e.Message, 300))
	case e.Excerpt != "":
		b.WriteString(": " + oneLine(e.Excerpt, 200))
	}
	return b.String()
}

// Is maps the status to the sentinels: 503/429 ErrRateLimited, 401/403 ErrAuth,
// 404 (and 204) ErrNotFound, 400 ErrBadRequest, other 5xx ErrServer, and a
// DeployedPackage.create 400 containing "duplicate" also ErrDuplicateDeploy.
func (e *APIError) Is(target error) bool {
	switch target {
	case ErrRateLimited:
		return e.Status == http.StatusServiceUnavailable || e.Status == http.StatusTooManyRequests
	case ErrAuth:
		return e.Status == http.StatusUnauthorized || e.Status == http.StatusForbidden
	case ErrNotFound:
		return e.Status == http.StatusNotFound || e.Status == http.StatusNoContent
	case ErrBadRequest:
		return e.Status == http.StatusBadRequest
	case ErrServer:
		return e.Status >= 500 && e.Status <= 599 && e.Status != http.StatusServiceUnavailable
	case ErrDuplicateDeploy:
		return e.Status == http.StatusBadRequest && e.Operation == opDeployedPackageCreate &&
			(containsFold(e.Message, "duplicate") || containsFold(e.Excerpt, "duplicate"))
	}
	return false
}

// TransportError is an attempt that got no usable answer.
type TransportError struct {
	Operation string
	// Sent reports whether the request may have reached the server. False only
	// when the client knows nothing was written (dial refused, DNS, TLS handshake).
	Sent bool
	Err  error
}

func (e *TransportError) Error() string {
	sent := "not sent"
	if e.Sent {
		sent = "may have been sent"
	}
	return fmt.Sprintf("atomapi: %s: transport error (%s): %v", e.Operation, sent, e.Err)
}

// Is reports whether target is ErrTransport.
func (e *TransportError) Is(target error) bool { return target == ErrTransport }

// Unwrap returns the underlying error (net.OpError, context.DeadlineExceeded, …).
func (e *TransportError) Unwrap() error { return e.Err }

// DecodeError is a 2xx answer whose body could not be read or decoded. For an
// unsafe operation it means "accepted, answer unknown".
type DecodeError struct {
	Operation string
	Status    int
	Err       error
}

func (e *DecodeError) Error() string {
	return fmt.Sprintf("atomapi: %s: HTTP %d answer unreadable: %v", e.Operation, e.Status, e.Err)
}

// Is reports whether target is ErrDecode.
func (e *DecodeError) Is(target error) bool { return target == ErrDecode }

// Unwrap returns the underlying read or JSON error.
func (e *DecodeError) Unwrap() error { return e.Err }

// errBodyTooLarge is wrapped in a DecodeError when a 2xx body exceeds MaxBody.
var errBodyTooLarge = errors.New("body exceeds the size limit")

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), sub)
}

// oneLine shortens s to at most n bytes on one line, for error strings.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > n {
		s = strings.ToValidUTF8(s[:n], "") + "…"
	}
	return s
}

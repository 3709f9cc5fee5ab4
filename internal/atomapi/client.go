package atomapi

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"runnerd"
)

// DefaultBaseURL is the North America REST prefix; the account id follows it.
const DefaultBaseURL = "https://api.boomi.com/api/rest/v1"

// Defaults for Config and RetryPolicy.
const (
	DefaultTimeout     = 60 * time.Second
	DefaultMaxBody     = 64 << 20
	DefaultMaxAttempts = 5
	DefaultRetryBase   = time.Second
	DefaultRetryMax    = 60 * time.Second
)

const (
	excerptMax   = 2 << 10  // error-body excerpt and message cap
	errorBodyMax = 64 << 10 // how much of an error body is read at most
	maxRedirects = 5        // same-host redirects followed
	authTrips    = 2        // consecutive 401/403 that open the auth breaker
)

// DefaultAuthProbeEvery is how long the auth breaker stays shut before one
// call is let through to try the credentials again.
const DefaultAuthProbeEvery = 15 * time.Minute

// RetryPolicy bounds the client's own retries: exponential backoff with full
// jitter, sleep = random(0, min(Max, Base·2^(n-1))) after attempt n. A zero field
// takes its default (5 attempts, 1s, 60s); MaxAttempts 1 disables retries.
type RetryPolicy struct {
	MaxAttempts int
	Base, Max   time.Duration
}

// Config configures a Client. Only AccountID and Credentials are required.
type Config struct {
	BaseURL     string // default DefaultBaseURL; must not hold user info
	AccountID   string
	Credentials Credentials

	Gate     Gate     // asked before every attempt; nil = none
	Recorder Recorder // told about every attempt; nil = none

	// HTTPClient is used as given except that redirects to another host (or a
	// scheme change) are never followed. nil = a client built here with dial,
	// TLS-handshake and response-header timeouts and RootCAs.
	HTTPClient *http.Client
	RootCAs    *x509.CertPool // for the built client; nil = system roots

	Timeout time.Duration // one whole attempt, body included; default 60s
	MaxBody int64         // largest 2xx body read; default 64 MiB
	Retry   RetryPolicy

	// Sleep waits between attempts; default a timer that honours ctx.
	Sleep func(ctx context.Context, d time.Duration) error
	// NewRequestID returns the per-attempt id sent as RequestIDHeader; default
	// 16 random bytes in hex.
	NewRequestID func() string
	// Now stamps Call.StartedAt and interprets an HTTP-date Retry-After;
	// default time.Now.
	Now    func() time.Time
	Logger *slog.Logger // nil = discard

	// AuthProbeEvery: once the auth breaker is open (two 401/403 in a row),
	// one call is let through this long after it opened or after the last
	// probe was refused, so that credentials fixed on the platform's side
	// are found without a restart while wrong ones are tried at a bounded
	// pace (never enough to lock the account). Default
	// DefaultAuthProbeEvery; negative: no probe (only ResetAuth or
	// SetCredentials close the breaker).
	AuthProbeEvery time.Duration

	// OnCancelRoute, if set, hears where cancelExecution was found to answer
	// (RoutePlatform, RoutePartner, RouteUnavailable) each time a cancel
	// learns it, so that the daemon keeps it across restarts.
	OnCancelRoute func(route string, at time.Time)
}

// Client is the AtomSphere REST client. It is safe for concurrent use.
type Client struct {
	prefix     string // BaseURL + "/" + escaped account id
	base       *url.URL
	account    string
	probeEvery time.Duration
	gate       Gate
	rec        Recorder
	hc         *http.Client
	timeout    time.Duration
	maxBody    int64
	retry      RetryPolicy
	sleep      func(context.Context, time.Duration) error
	newID      func() string
	now        func() time.Time
	log        *slog.Logger

	mu        sync.Mutex
	creds     Credentials
	auth      string    // the Authorization header value
	authFails int       // consecutive 401/403; the breaker is open at authTrips
	authAt    time.Time // when the breaker opened, or the last probe was refused
	probing   bool      // a probe call is under way

	cancel        cancelMemo // where cancelExecution answers
	onCancelRoute func(route string, at time.Time)
}

// New checks cfg, fills in its defaults and returns a client.
func New(cfg Config) (*Client, error) {
	if cfg.AccountID == "" {
		return nil, errors.New("atomapi: config: account id is required")
	}
	if cfg.Credentials.user == "" || cfg.Credentials.password == "" {
		return nil, errors.New("atomapi: config: user and password (or API token) are required")
	}
	base := cfg.BaseURL
	if base == "" {
		base = DefaultBaseURL
	}
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("atomapi: config: base URL %q: want http(s)://host/path", redactURL(base))
	}
	if u.User != nil {
		return nil, fmt.Errorf("atomapi: config: base URL %q: credentials belong in Credentials, not the URL", u.Redacted())
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return nil, fmt.Errorf("atomapi: config: base URL %q: no query or fragment allowed", u.Redacted())
	}
	r := cfg.Retry
	if r.MaxAttempts < 0 || r.Base < 0 || r.Max < 0 || cfg.Timeout < 0 || cfg.MaxBody < 0 {
		return nil, errors.New("atomapi: config: negative retry, timeout or body limit")
	}
	if r.MaxAttempts == 0 {
		r.MaxAttempts = DefaultMaxAttempts
	}
	if r.Base == 0 {
		r.Base = DefaultRetryBase
	}
	if r.Max == 0 {
		r.Max = DefaultRetryMax
	}
	c := &Client{
		prefix:     strings.TrimRight(base, "/") + "/" + url.PathEscape(cfg.AccountID),
		base:       u,
		account:    cfg.AccountID,
		creds:      cfg.Credentials,
		auth:       cfg.Credentials.basicAuth(),
		probeEvery: cfg.AuthProbeEvery,
		gate:       cfg.Gate,
		rec:        cfg.Recorder,
		timeout:    cfg.Timeout,
		maxBody:    cfg.MaxBody,
		retry:      r,
		sleep:      cfg.Sleep,
		newID:      cfg.NewRequestID,
		now:        cfg.Now,
		log:        cfg.Logger,

		onCancelRoute: cfg.OnCancelRoute,
	}
	if c.gate == nil {
		c.gate = nopGate{}
	}
	if c.rec == nil {
		c.rec = nopRecorder{}
	}
	if c.timeout == 0 {
		c.timeout = DefaultTimeout
	}
	if c.maxBody == 0 {
		c.maxBody = DefaultMaxBody
	}
	if c.sleep == nil {
		c.sleep = runnerd.Sleep
	}
	if c.newID == nil {
		c.newID = randomID
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.probeEvery == 0 {
		c.probeEvery = DefaultAuthProbeEvery
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if cfg.HTTPClient != nil {
		hc := *cfg.HTTPClient
		hc.CheckRedirect = noRedirects
		c.hc = &hc
	} else {
		c.hc = newHTTPClient(cfg.RootCAs, c.timeout)
	}
	return c, nil
}

func newHTTPClient(roots *x509.CertPool, timeout time.Duration) *http.Client {
	dialer := &net.Dialer{Timeout: min(10*time.Second, timeout), KeepAlive: 30 * time.Second}
	return &http.Client{
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           dialer.DialContext,
			TLSClientConfig:       &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
			TLSHandshakeTimeout:   min(10*time.Second, timeout),
			ResponseHeaderTimeout: timeout,
			ExpectContinueTimeout: time.Second,
			IdleConnTimeout:       90 * time.Second,
			MaxIdleConnsPerHost:   4,
			ForceAttemptHTTP2:     true,
		},
		CheckRedirect: noRedirects,
	}
}

// noRedirects answers every redirect with the 3xx itself (an APIError naming
// where it pointed). Following one, even to the same host, would send a request
// that never passed the gate and has no ledger row — one row per HTTP attempt
// is the ledger's rule — and would carry the Authorization header wherever the
// Location says. A retired endpoint's 301/308 is for an operator to read.
func noRedirects(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

// ResetAuth closes the auth breaker, after the credentials have been fixed.
func (c *Client) ResetAuth() {
	c.mu.Lock()
	c.authFails, c.probing = 0, false
	c.mu.Unlock()
}

// SetCredentials replaces the credentials (a reload re-read them) and closes
// the auth breaker: new credentials deserve a try.
func (c *Client) SetCredentials(cr Credentials) {
	c.mu.Lock()
	c.creds, c.auth = cr, cr.basicAuth()
	c.authFails, c.probing = 0, false
	c.mu.Unlock()
}

// AuthBreaker reports whether the auth breaker is open and, if so, when the
// next probe may go (zero when probes are off).
func (c *Client) AuthBreaker() (open bool, nextProbe time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authFails < authTrips {
		return false, time.Time{}
	}
	if c.probeEvery > 0 {
		nextProbe = c.authAt.Add(c.probeEvery)
	}
	return true, nextProbe
}

// credentials returns the credentials in force (SetCredentials may change them).
func (c *Client) credentials() Credentials {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.creds
}

// String describes the client without its credentials' password.
func (c *Client) String() string {
	return fmt.Sprintf("atomapi.Client{%s, user %q}", c.prefix, c.credentials().user)
}

// GoString is String: the client's fields are never printed.
func (c *Client) GoString() string { return c.String() }

// Format prints String for every verb, so that %+v and %#v cannot reach the
// unexported fields (the Authorization header among them).
func (c *Client) Format(f fmt.State, verb rune) { io.WriteString(f, c.String()) }

// op is one operation: what each attempt sends and how a 2xx answer is read.
type op struct {
	name     string // Call.Operation
	object   string // Call.Object
	method   string
	path     string // escaped, below the account prefix
	rawQuery string
	body     []byte
	ctype    string
	safe     bool
	probe    bool // this call is the auth breaker's probe (set by authOpen)
	// abs, when set, is the whole URL to send to instead of the account
	// prefix + path: a download link or the partner base, always on the
	// platform's own host (checked by the caller, see sameOrigin).
	abs     string
	accept  string // the Accept header; "" = application/json
	maxBody int64  // the largest 2xx body read; 0 = the client's MaxBody
	// redact, when set, cleans an attempt's error of what the request body
	// carried and must not be kept (encrypted extension values the platform
	// may echo), before the ledger records it and the caller sees it.
	redact func(error) error
	// handle decodes a 2xx answer and returns the platform id for the ledger.
	// An *APIError it returns is kept; any other error becomes a DecodeError.
	// nil: the body is not needed (and a failure to read it is ignored).
	handle func(status int, body []byte) (platformID string, err error)
}

// do runs o with the retry policy and returns the error of the last attempt.
func (c *Client) do(ctx context.Context, o *op) error {
	var err error
	n := 1
	for ; ; n++ {
		a := c.attempt(ctx, o, n)
		if a.err == nil {
			return nil
		}
		err = a.err
		if a.final || n >= c.retry.MaxAttempts || ctx.Err() != nil || !retryable(o, err) {
			break
		}
		d := c.retry.backoff(n)
		if a.retryAfter > 0 {
			if a.retryAfter > c.retry.Max {
				break // the server asks for longer than we wait: give it back to the caller
			}
			d = a.retryAfter
		}
		c.log.LogAttrs(ctx, slog.LevelWarn, "atomapi retry",
			slog.String("op", o.name), slog.Int("attempt", n), slog.Duration("wait", d), slog.Any("err", err))
		if serr := c.sleep(ctx, d); serr != nil {
			return fmt.Errorf("atomapi: %s: waiting to retry: %w (last attempt: %w)", o.name, serr, err)
		}
	}
	if n > 1 {
		return fmt.Errorf("%w (after %d attempts)", err, n)
	}
	return err
}

// retryable: any operation on 503/429; safe operations also on 500/502/504 and
// transport errors; unsafe ones on transport errors only when nothing was sent.
func retryable(o *op, err error) bool {
	var ae *APIError
	if errors.As(err, &ae) {
		switch ae.Status {
		case http.StatusServiceUnavailable, http.StatusTooManyRequests:
			return true
		case http.StatusInternalServerError, http.StatusBadGateway, http.StatusGatewayTimeout:
			return o.safe
		}
		return false
	}
	var te *TransportError
	if errors.As(err, &te) {
		if untrusted(err) {
			return false // a certificate does not become trusted by asking again
		}
		return o.safe || !te.Sent
	}
	return false
}

// untrusted reports a TLS certificate the client refused: final, not a
// transient fault, and never a reason to retry or to fall back.
func untrusted(err error) bool {
	var ua x509.UnknownAuthorityError
	var hn x509.HostnameError
	var ci x509.CertificateInvalidError
	var cv *tls.CertificateVerificationError
	return errors.As(err, &ua) || errors.As(err, &hn) || errors.As(err, &ci) || errors.As(err, &cv)
}

func (p RetryPolicy) backoff(n int) time.Duration {
	ceil := p.Max
	if n >= 1 && n <= 62 {
		if d := p.Base << (n - 1); d > 0 && d < p.Max {
			ceil = d
		}
	}
	if ceil <= 0 {
		return 0
	}
	return rand.N(ceil + 1)
}

type attemptResult struct {
	err        error
	final      bool // not retryable whatever err is (gate, recorder, breaker)
	retryAfter time.Duration
}

// attempt makes one attempt: breaker, gate, ledger Begin, send, ledger End.
func (c *Client) attempt(ctx context.Context, o *op, n int) attemptResult {
	if err := c.authOpen(o); err != nil {
		return attemptResult{err: err, final: true}
	}
	defer c.probeDone(o)
	call := &Call{
		CallInfo:  CallInfoFrom(ctx),
		RequestID: c.newID(),
		Operation: o.name,
		Object:    o.object,
		Method:    o.method,
		Path:      o.path,
		Safe:      o.safe,
		Attempt:   n,
	}
	if err := c.gate.Wait(ctx, call); err != nil {
		// Nothing was sent: a budget refusal, or the caller gave up waiting.
		return attemptResult{err: &TransportError{Operation: o.name, Err: fmt.Errorf("gate: %w", err)}, final: true}
	}
	if err := c.authOpen(o); err != nil { // another caller may have tripped it while we waited
		return attemptResult{err: err, final: true}
	}
	call.StartedAt = c.now()
	if err := c.rec.Begin(ctx, call); err != nil {
		// No ledger row, no request: a TransportError that was not sent, so
		// that callers read it as "not sent" (retryable), never as "unknown".
		return attemptResult{err: &TransportError{Operation: o.name, Err: fmt.Errorf("record call: %w", err)}, final: true}
	}
	if p, ok := c.gate.(Pacer); ok {
		// The rate wait comes after the ledger's commit, right before the
		// request is written: a slow commit cannot bunch requests up at the
		// server. The row is begun, so it is ended, as not sent.
		if err := p.Pace(ctx, call); err != nil {
			err = &TransportError{Operation: o.name, Err: fmt.Errorf("gate: %w", err)} // not sent
			c.rec.End(context.WithoutCancel(ctx), call, Result{Err: err})
			return attemptResult{err: err, final: true}
		}
	}
	if !o.safe {
		Failpoint(FailAfterBegin)
	}
	res, retryAfter := c.send(ctx, o, call)
	if !o.safe {
		Failpoint(FailAfterAnswer)
	}
	if o.redact != nil && res.Err != nil {
		res.Err = o.redact(res.Err)
	}
	c.rec.End(context.WithoutCancel(ctx), call, res)
	c.log.LogAttrs(ctx, slog.LevelDebug, "atomapi call",
		slog.String("op", o.name), slog.Int("attempt", n), slog.String("request_id", call.RequestID),
		slog.Int("status", res.Status), slog.Duration("duration", res.Duration), slog.Int64("bytes", res.Bytes))
	return attemptResult{err: res.Err, retryAfter: retryAfter}
}

// send performs the HTTP exchange of one attempt and classifies the outcome.
func (c *Client) send(ctx context.Context, o *op, call *Call) (res Result, retryAfter time.Duration) {
	var wrote atomic.Bool
	actx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	actx = httptrace.WithClientTrace(actx, &httptrace.ClientTrace{
		WroteHeaders: func() { wrote.Store(true) },
		WroteRequest: func(httptrace.WroteRequestInfo) {
			if !o.safe {
				Failpoint(FailAfterWrite)
			}
		},
	})
	target := c.prefix + o.path
	if o.abs != "" {
		target = o.abs
	}
	if o.rawQuery != "" {
		target += "?" + o.rawQuery
	}
	var body io.Reader
	if o.body != nil {
		body = bytes.NewReader(o.body)
	}
	req, err := http.NewRequestWithContext(actx, o.method, target, body)
	if err != nil {
		res.Err = &TransportError{Operation: o.name, Err: err}
		return res, 0
	}
	c.mu.Lock()
	authz := c.auth
	c.mu.Unlock()
	req.Header.Set("Authorization", authz)
	accept := o.accept
	if accept == "" {
		accept = "application/json"
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("User-Agent", "runnerd-atomapi")
	req.Header.Set(RequestIDHeader, call.RequestID)
	if o.body != nil {
		req.Header.Set("Content-Type", o.ctype)
	}

	start := time.Now()
	resp, err := c.hc.Do(req)
	if err != nil {
		res.Duration = time.Since(start)
		res.Sent = wrote.Load()
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		res.Err = &TransportError{Operation: o.name, Sent: res.Sent, Err: err}
		return res, 0
	}
	res.RoundTrip = time.Since(start)
	res.Sent = true
	res.Status = resp.StatusCode
	ok := resp.StatusCode >= 200 && resp.StatusCode <= 299

	limit := c.maxBody
	if o.maxBody > 0 {
		limit = o.maxBody
	}
	if !ok {
		limit = min(limit, errorBodyMax)
	}
	var data []byte
	var rerr error
	if ok && resp.ContentLength > limit {
		rerr = fmt.Errorf("%w: Content-Length %d > %d", errBodyTooLarge, resp.ContentLength, limit)
	} else {
		data, rerr = readAtMost(resp.Body, limit)
		if rerr != nil && !ok && errors.Is(rerr, errBodyTooLarge) {
			rerr = nil // an error body is only excerpted
		}
	}
	resp.Body.Close()
	res.Bytes = int64(len(data))
	res.Duration = time.Since(start)

	if d, ok := parseRetryAfter(resp.Header.Get("Retry-After"), c.now()); ok {
		retryAfter = d
	}
	c.noteAuth(o, resp.StatusCode)

	switch {
	case !ok:
		res.Err = c.apiError(o, resp, data, retryAfter)
	case o.handle == nil:
		// The answer's body is not needed: a 2xx is the whole answer.
	case rerr != nil:
		res.Err = &DecodeError{Operation: o.name, Status: resp.StatusCode, Err: rerr}
	default:
		pid, err := o.handle(resp.StatusCode, data)
		res.PlatformID = pid
		if err != nil {
			var ae *APIError
			if errors.As(err, &ae) {
				cr := c.credentials()
				ae.Message, ae.Excerpt = cr.redact(ae.Message), cr.redact(ae.Excerpt)
			} else {
				err = &DecodeError{Operation: o.name, Status: resp.StatusCode, Err: err}
			}
			res.Err = err
		}
	}
	return res, retryAfter
}

// apiError builds the APIError for a non-2xx answer, redacting the credentials
// from anything taken from the body.
func (c *Client) apiError(o *op, resp *http.Response, data []byte, retryAfter time.Duration) *APIError {
	e := &APIError{Operation: o.name, Status: resp.StatusCode, RetryAfter: retryAfter}
	cr := c.credentials()
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		host := "?"
		if loc, err := resp.Location(); err == nil {
			host = loc.Scheme + "://" + loc.Host
		}
		e.Message = "redirect to " + host + " not followed"
	} else {
		e.Message = capString(cr.redact(errorMessage(data)), excerptMax)
	}
	e.Excerpt = capString(cr.redact(string(data)), excerptMax)
	return e
}

// authOpen returns an ErrAuth error while the auth breaker is open, except
// for the one call it lets through as a probe once the interval has passed
// (marked in o.probe; a retry of that call probes again).
func (c *Client) authOpen(o *op) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.authFails < authTrips || o.probe {
		return nil
	}
	next := "no probe is scheduled"
	if c.probeEvery > 0 {
		at := c.authAt.Add(c.probeEvery)
		if !c.probing && !c.now().Before(at) {
			c.probing, o.probe = true, true
			c.log.Info("atomapi: auth breaker open; probing the credentials with one call",
				slog.String("op", o.name), slog.String("user", c.creds.user))
			return nil
		}
		next = "the next probe is at " + at.UTC().Format(time.RFC3339)
	}
	return fmt.Errorf("atomapi: %s: %w: credentials rejected %d times in a row; nothing is sent until a reload "+
		"re-reads them (SIGHUP), `runnerd resume-auth`, or a probe call succeeds (%s)", o.name, ErrAuth, c.authFails, next)
}

// probeDone ends o's probe if no answer settled it (nothing was sent, or no
// answer came): the breaker stays open and the next attempt may probe.
func (c *Client) probeDone(o *op) {
	if !o.probe {
		return
	}
	c.mu.Lock()
	c.probing = false
	c.mu.Unlock()
}

// noteAuth counts consecutive 401/403 answers; any other answer resets the
// count (a probe's success closes the breaker). The breaker's interval starts
// when it opens and again at each refused probe.
func (c *Client) noteAuth(o *op, status int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if o.probe {
		c.probing, o.probe = false, false
	}
	if status != http.StatusUnauthorized && status != http.StatusForbidden {
		if c.authFails >= authTrips {
			c.log.Info("atomapi: credentials accepted again; auth breaker closed", slog.String("op", o.name))
		}
		c.authFails = 0
		return
	}
	c.authFails++
	if c.authFails >= authTrips {
		c.authAt = c.now()
	}
	if c.authFails == authTrips {
		c.log.Error("atomapi: credentials rejected; auth breaker open until a reload, runnerd resume-auth or a successful probe",
			slog.String("op", o.name), slog.String("user", c.creds.user), slog.Int("status", status))
	}
}

// readAtMost reads r up to limit bytes; more is errBodyTooLarge.
func readAtMost(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return data, err
	}
	if int64(len(data)) > limit {
		return data[:limit], fmt.Errorf("%w (%d bytes)", errBodyTooLarge, limit)
	}
	return data, nil
}

// parseRetryAfter reads delay-seconds or an HTTP-date.
func parseRetryAfter(v string, now time.Time) (time.Duration, bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		return time.Duration(min(secs, 1<<31)) * time.Second, true
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(t.Sub(now), 0), true
	}
	return 0, false
}

func randomID() string {
	var b [16]byte
	crand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func capString(s string, n int) string {
	if len(s) > n {
		s = s[:n]
	}
	return strings.ToValidUTF8(s, "\uFFFD")
}

// redactURL hides user info in a URL that did not parse as one.
func redactURL(s string) string {
	if i := strings.LastIndex(s, "@"); i >= 0 {
		if j := strings.Index(s, "://"); j >= 0 && j < i {
			return s[:j+3] + "…@" + s[i+1:]
		}
		return "…@" + s[i+1:]
	}
	return s
}

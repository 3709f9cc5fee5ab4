package atomapi

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Operation names of the evidence and cancel operations (atomsphere-api.md
// §9.1–9.2).
const (
	OpProcessLog                 = "ProcessLog.create"
	OpExecutionArtifacts         = "ExecutionArtifacts.create"
	OpProcessLogDownload         = "ProcessLog.download"
	OpExecutionArtifactsDownload = "ExecutionArtifacts.download"
	OpCancelExecution            = "cancelExecution"
)

// Log levels of ProcessLog, least to most detailed; ALL is the default.
var LogLevels = []string{"SEVERE", "WARNING", "INFO", "CONFIG", "FINE", "FINER", "FINEST", "ALL"}

// ErrForeignURL: a download link that is not on the platform's own origin
// (scheme, host and port of the API base). Nothing is sent to it: the
// credentials go to the platform only.
var ErrForeignURL = errors.New("atomapi: URL is not on the platform's host")

// ErrBodyTooLarge: an answer larger than the limit the caller set (or the
// client's MaxBody); nothing of it is kept.
var ErrBodyTooLarge = errBodyTooLarge

// LogDownload is the answer of ProcessLog, ExecutionArtifacts and AtomLog:
// a link to poll for a ZIP. StatusCode is "202" (the URL is given) or "504"
// (the runtime is unreachable: no URL). The platform sends it as a number
// for ProcessLog and as a string in the ExecutionArtifacts example: both
// decode.
type LogDownload struct {
	Type       string     `json:"@type,omitempty"`
	URL        string     `json:"url,omitempty"`
	Message    string     `json:"message,omitempty"`
	StatusCode FlexString `json:"statusCode,omitempty"`
}

// Ready reports whether the answer carries a download link.
func (d LogDownload) Ready() bool {
	return d.URL != "" && (d.StatusCode == "" || d.StatusCode == "202")
}

// ProcessLog asks for the process log of an execution: POST /ProcessLog
// {"executionId","logLevel"} (level "" is ALL). It is safe: asking twice
// only makes a second link.
func (c *Client) ProcessLog(ctx context.Context, executionID, level string) (LogDownload, error) {
	if executionID == "" {
		return LogDownload{}, fmt.Errorf("atomapi: %s: empty executionId", OpProcessLog)
	}
	if level == "" {
		level = "ALL"
	}
	ok := false
	for _, l := range LogLevels {
		ok = ok || l == level
	}
	if !ok {
		return LogDownload{}, fmt.Errorf("atomapi: %s: log level %q: want one of %s", OpProcessLog, level, strings.Join(LogLevels, ", "))
	}
	return c.logDownload(ctx, OpProcessLog, "ProcessLog", struct {
		ExecutionID string `json:"executionId"`
		LogLevel    string `json:"logLevel"`
	}{executionID, level})
}

// ExecutionArtifacts asks for an execution's artifacts: POST
// /ExecutionArtifacts {"executionId"}. The platform needs the Runtime
// Management privilege and the account setting "Enable Download of
// Execution Artifacts and Worker Logs"; without them it answers 403.
func (c *Client) ExecutionArtifacts(ctx context.Context, executionID string) (LogDownload, error) {
	if executionID == "" {
		return LogDownload{}, fmt.Errorf("atomapi: %s: empty executionId", OpExecutionArtifacts)
	}
	return c.logDownload(ctx, OpExecutionArtifacts, "ExecutionArtifacts", struct {
		ExecutionID string `json:"executionId"`
	}{executionID})
}

func (c *Client) logDownload(ctx context.Context, name, object string, in any) (LogDownload, error) {
	var out LogDownload
	err := c.doJSON(ctx, &op{name: name, object: object, method: http.MethodPost, path: "/" + object, safe: true,
		handle: func(_ int, data []byte) (string, error) {
			out = LogDownload{}
			if err := json.Unmarshal(data, &out); err != nil {
				return "", err
			}
			if out.StatusCode == "202" && out.URL == "" {
				return "", errors.New("statusCode 202 without a url")
			}
			return "", nil
		}}, in)
	return out, err
}

// Download polls a LogDownload link: GET url with the same credentials,
// after checking that the link is on the platform's origin (ErrForeignURL
// otherwise, with nothing sent). ready is false while the platform prepares
// the file (202, 204 or an empty 200); a 404 is ErrNotFound (the link
// expired). A body over limit (0: the client's MaxBody) is ErrBodyTooLarge.
// name is OpProcessLogDownload or OpExecutionArtifactsDownload.
func (c *Client) Download(ctx context.Context, name, rawURL string, limit int64) (data []byte, ready bool, err error) {
	u, err := c.sameOrigin(rawURL)
	if err != nil {
		return nil, false, fmt.Errorf("atomapi: %s: %w", name, err)
	}
	object, _, _ := strings.Cut(name, ".")
	err = c.do(ctx, &op{name: name, object: object, method: http.MethodGet, abs: u.String(), path: u.EscapedPath(),
		safe: true, accept: "application/zip, application/octet-stream;q=0.9, */*;q=0.1", maxBody: limit,
		handle: func(status int, body []byte) (string, error) {
			data, ready = nil, false
			if status == http.StatusAccepted || status == http.StatusNoContent || len(body) == 0 {
				return "", nil
			}
			data, ready = body, true
			return "", nil
		}})
	if err != nil {
		return nil, false, err
	}
	return data, ready, nil
}

// sameOrigin parses rawURL and accepts it only on the API base's scheme,
// host and port, without user info.
func (c *Client) sameOrigin(rawURL string) (*url.URL, error) {
	u, err := url.Parse(rawURL)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return nil, fmt.Errorf("%w: %q is not an absolute URL", ErrForeignURL, redactURL(rawURL))
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: %s carries user info", ErrForeignURL, u.Redacted())
	}
	if !strings.EqualFold(u.Scheme, c.base.Scheme) || !strings.EqualFold(hostPort(u), hostPort(c.base)) {
		return nil, fmt.Errorf("%w: %s://%s is not the platform's %s://%s", ErrForeignURL,
			u.Scheme, u.Host, c.base.Scheme, c.base.Host)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

// hostPort is u's host with the scheme's default port made explicit.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[strings.ToLower(u.Scheme)]
	}
	return strings.ToLower(u.Hostname()) + ":" + port
}

// Cancel results (CancelOutcome.Result).
const (
	CancelSent        = "sent"        // the platform accepted the cancel (202)
	CancelUnavailable = "unavailable" // neither the platform nor the partner base offers it here
	CancelRefused     = "refused"     // it answered, and refused (e.g. the runtime is not running)
	CancelFailed      = "failed"      // no usable answer (503 after retries, transport, budget)
)

// Where cancelExecution answered (CancelRoute).
const (
	routeUnknown     = ""
	RoutePlatform    = "platform"
	RoutePartner     = "partner"
	RouteUnavailable = "unavailable"
)

// CancelRememberFor is how long a cancel found unavailable is not tried again
// (a privilege granted later is found the next day, not never).
const CancelRememberFor = 24 * time.Hour

// CancelOutcome is how a cancelExecution ended.
type CancelOutcome struct {
	Result  string // CancelSent, CancelUnavailable, CancelRefused, CancelFailed
	Route   string // the base that answered: RoutePlatform or RoutePartner ("" if none)
	Message string // the platform's message or why it was not sent
	Calls   int    // requests made (0 when the unavailability was remembered)
}

// cancelMemo remembers which base answers cancelExecution.
type cancelMemo struct {
	mu    sync.Mutex
	route string
	at    time.Time
}

// CancelRoute returns which base answered cancelExecution last and when:
// RoutePlatform, RoutePartner, RouteUnavailable, or "" before the first try.
func (c *Client) CancelRoute() (route string, at time.Time) {
	c.cancel.mu.Lock()
	defer c.cancel.mu.Unlock()
	return c.cancel.route, c.cancel.at
}

// SetCancelRoute restores what CancelRoute said (kept by the daemon across
// restarts, so that detection happens once).
func (c *Client) SetCancelRoute(route string, at time.Time) {
	switch route {
	case RoutePlatform, RoutePartner, RouteUnavailable:
	default:
		route, at = routeUnknown, time.Time{}
	}
	c.cancel.mu.Lock()
	c.cancel.route, c.cancel.at = route, at
	c.cancel.mu.Unlock()
}

// learnCancelRoute records what a cancel learnt and tells OnCancelRoute.
func (c *Client) learnCancelRoute(route string) {
	at := c.now()
	c.SetCancelRoute(route, at)
	if c.onCancelRoute != nil {
		c.onCancelRoute(route, at)
	}
}

// partnerPrefix is the partner API's account prefix on the same host: the
// base's "/api/rest/v1" path with "/partner" before it. "" when the base has
// no such path.
func (c *Client) partnerPrefix() string {
	p := strings.TrimRight(c.base.Path, "/")
	i := strings.LastIndex(p, "/api/rest/")
	if i < 0 {
		return ""
	}
	u := *c.base
	u.Path = p[:i] + "/partner" + p[i:] + "/" + c.account
	u.RawPath = ""
	return u.String()
}

// CancelExecution asks the platform to cancel a running execution: POST
// cancelExecution/{executionId} with no body. The reference is unsure
// where it lives (§9.2): the platform path is tried first; on 404, 410 or
// 403 the partner base (…/partner/api/rest/v1/{account}/…); whichever
// answered is remembered, and so is "neither" (for CancelRememberFor),
// so that a later cancel makes one call or none. An error is returned only
// for a bad argument; every answer is in the outcome.
func (c *Client) CancelExecution(ctx context.Context, executionID string) (CancelOutcome, error) {
	if executionID == "" {
		return CancelOutcome{}, fmt.Errorf("atomapi: %s: empty executionId", OpCancelExecution)
	}
	route, at := c.CancelRoute()
	if route == RouteUnavailable && c.now().Sub(at) < CancelRememberFor {
		return CancelOutcome{Result: CancelUnavailable, Message: "cancelExecution was not offered on the platform or the partner base at " +
			at.UTC().Format(time.RFC3339) + "; not tried again before " + at.Add(CancelRememberFor).UTC().Format(time.RFC3339)}, nil
	}
	var tries []string
	switch route {
	case RoutePartner:
		tries = []string{RoutePartner, RoutePlatform}
	default:
		tries = []string{RoutePlatform, RoutePartner}
	}
	out := CancelOutcome{}
	var missing []string
	for _, r := range tries {
		o := &op{name: OpCancelExecution, object: "cancelExecution", method: http.MethodPost,
			path: "/cancelExecution/" + url.PathEscape(executionID)}
		if r == RoutePartner {
			pp := c.partnerPrefix()
			if pp == "" {
				missing = append(missing, "the partner base (the API base has no /api/rest/ path)")
				continue
			}
			o.abs = pp + o.path
		}
		var msg string
		o.handle = func(_ int, data []byte) (string, error) {
			var m struct {
				Message string `json:"message"`
			}
			if len(bytes.TrimSpace(data)) > 0 && json.Unmarshal(data, &m) == nil {
				msg = m.Message
			}
			return "", nil
		}
		out.Calls++
		err := c.do(ctx, o)
		var ae *APIError
		switch {
		case err == nil:
			c.learnCancelRoute(r)
			if msg == "" {
				msg = "accepted"
			}
			return CancelOutcome{Result: CancelSent, Route: r, Message: msg, Calls: out.Calls}, nil
		case errors.As(err, &ae) && (ae.Status == http.StatusNotFound || ae.Status == http.StatusGone || ae.Status == http.StatusForbidden):
			missing = append(missing, fmt.Sprintf("the %s base (HTTP %d)", r, ae.Status))
		case errors.As(err, &ae) && ae.Status >= 400 && ae.Status < 500:
			c.learnCancelRoute(r) // it exists there: it refused this one
			return CancelOutcome{Result: CancelRefused, Route: r, Message: oneLine(firstNonEmpty(ae.Message, ae.Excerpt, err.Error()), 300), Calls: out.Calls}, nil
		default:
			return CancelOutcome{Result: CancelFailed, Route: r, Message: oneLine(err.Error(), 300), Calls: out.Calls}, nil
		}
	}
	c.learnCancelRoute(RouteUnavailable)
	return CancelOutcome{Result: CancelUnavailable, Message: "not offered by " + strings.Join(missing, " or "), Calls: out.Calls}, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if strings.TrimSpace(v) != "" {
			return v
		}
	}
	return ""
}

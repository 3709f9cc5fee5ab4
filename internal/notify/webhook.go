package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"runnerd/internal/config"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=" and the hex HMAC-SHA256 of the exact
	// body, keyed by the target's secret_file, when it has one.
	SignatureHeader = "X-Runnerd-Signature"
	EventHeader     = "X-Runnerd-Event"    // the event's name
	DeliveryHeader  = "X-Runnerd-Delivery" // the event's id: the same on every retry
)

// Sign returns the SignatureHeader value for body under key.
func Sign(key, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

type webhook struct {
	client  *http.Client
	url     string
	secret  config.Secret
	timeout time.Duration
}

func newWebhook(c *http.Client, raw string, secret config.Secret, timeout time.Duration) (*webhook, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		// The URL may hold a token: it is not shown.
		return nil, errors.New("url: want an http or https URL (the value is not shown)")
	}
	return &webhook{client: c, url: raw, secret: secret, timeout: timeout}, nil
}

func (w *webhook) send(ctx context.Context, q *queued) (int, bool, error) {
	ctx, cancel := context.WithTimeout(ctx, w.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.url, bytes.NewReader(q.body))
	if err != nil {
		return 0, false, errors.New("could not build the request (the URL is not shown)")
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "runnerd-notify")
	req.Header.Set(EventHeader, q.ev.Event)
	req.Header.Set(DeliveryHeader, q.ev.ID)
	if !w.secret.IsZero() {
		req.Header.Set(SignatureHeader, Sign([]byte(w.secret.Reveal()), q.body))
	}
	resp, err := w.client.Do(req)
	if err != nil {
		return 0, true, w.scrub(ctx, err)
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	switch s := resp.StatusCode; {
	case s >= 200 && s <= 299:
		return s, false, nil
	case s == http.StatusRequestTimeout || s == http.StatusTooEarly || s == http.StatusTooManyRequests || s >= 500:
		return s, true, fmt.Errorf("HTTP %d %s", s, http.StatusText(s))
	default:
		return s, false, fmt.Errorf("HTTP %d %s (not retried)", s, http.StatusText(s))
	}
}

// scrub words a transport error without the URL, which may hold a token.
func (w *webhook) scrub(ctx context.Context, err error) error {
	if ctx.Err() == context.DeadlineExceeded {
		return fmt.Errorf("no answer within %s", w.timeout)
	}
	if errors.Is(err, context.Canceled) {
		return errors.New("cancelled: runnerd is stopping")
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	var oe *net.OpError
	msg := err.Error()
	if errors.As(err, &oe) {
		msg = oe.Op + ": " + oe.Err.Error()
	}
	// Belt and braces: nothing of the URL past its host.
	if u, perr := url.Parse(w.url); perr == nil {
		for _, part := range []string{w.url, u.RawQuery, u.EscapedPath(), u.User.String()} {
			if len(part) > 1 {
				msg = strings.ReplaceAll(msg, part, "…")
			}
		}
	}
	return errors.New(msg)
}

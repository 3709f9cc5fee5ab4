package atomapi

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
)

// redacted replaces the password wherever credentials are shown.
const redacted = "****"

// Credentials is the HTTP Basic pair for the platform. The password never leaves
// the value except in the Authorization header: every way of printing, logging or
// marshalling it shows "****".
type Credentials struct {
	user     string
	password string
}

// NewCredentials returns credentials for user and password. For an API token, user
// is "BOOMI_TOKEN.<user name>" and password is the token.
func NewCredentials(user, password string) Credentials {
	return Credentials{user: user, password: password}
}

// User returns the user name.
func (c Credentials) User() string { return c.user }

// String returns "user:****".
func (c Credentials) String() string { return c.user + ":" + redacted }

// GoString returns a Go-syntax form with the password redacted.
func (c Credentials) GoString() string {
	return fmt.Sprintf("atomapi.Credentials{User:%q, Password:%q}", c.user, redacted)
}

// Format implements fmt.Formatter so that no verb (%v, %+v, %#v, %s, %x, …)
// reaches the password.
func (c Credentials) Format(f fmt.State, verb rune) {
	switch {
	case verb == 'v' && f.Flag('#'):
		io.WriteString(f, c.GoString())
	case verb == 'q':
		io.WriteString(f, fmt.Sprintf("%q", c.String()))
	default:
		io.WriteString(f, c.String())
	}
}

// MarshalJSON encodes {"user":…,"password":"****"}.
func (c Credentials) MarshalJSON() ([]byte, error) {
	return json.Marshal(struct {
		User     string `json:"user"`
		Password string `json:"password"`
	}{c.user, redacted})
}

// LogValue implements slog.LogValuer with the password redacted.
func (c Credentials) LogValue() slog.Value {
	return slog.GroupValue(slog.String("user", c.user), slog.String("password", redacted))
}

func (c Credentials) basicAuth() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.user+":"+c.password))
}

// redact removes the password (and its Basic-auth encoding) from text that came
// from the server, in case an error page echoes the request.
func (c Credentials) redact(s string) string {
	if c.password == "" {
		return s
	}
	// The body is redacted before it is cut to an excerpt (a secret across the
	// cut would keep its start), in every form a server may echo: plain, as a
	// JSON string (escaped), and as the Basic credentials.
	s = strings.ReplaceAll(s, c.password, redacted)
	for _, html := range []bool{false, true} {
		var b strings.Builder
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(html)
		if enc.Encode(c.password) == nil {
			q := strings.TrimSpace(b.String())
			if esc := q[1 : len(q)-1]; esc != c.password {
				s = strings.ReplaceAll(s, esc, redacted)
			}
		}
	}
	return strings.ReplaceAll(s, strings.TrimPrefix(c.basicAuth(), "Basic "), redacted)
}

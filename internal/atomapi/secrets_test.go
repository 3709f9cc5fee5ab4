package atomapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"runnerd/internal/atomapi"
)

const canary = "CANARY-pw-9f3b7c1e"

// TestCanaryPassword sends a wrong password to a server that echoes the
// Authorization header and checks that the password shows up nowhere: errors,
// every fmt verb of the client, config and credentials, and the logs.
func TestCanaryPassword(t *testing.T) {
	var logs bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	jsonLogger := slog.New(slog.NewJSONHandler(&logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	creds := atomapi.NewCredentials("runnerd@sim", canary)
	var cfg atomapi.Config
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if _, p, _ := r.BasicAuth(); p == "sim-password" {
			io.WriteString(w, `{"id":"d"}`)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
		fmt.Fprintf(w, `{"@type":"Error","message":"bad credentials: %s"}`+"\n<pre>%s</pre>", r.Header.Get("Authorization"), canary)
	}, func(c *atomapi.Config) {
		c.Credentials = creds
		c.Logger = logger
		cfg = *c
	})

	_, err := h.c.GetDeployment(t.Context(), "d")
	if !errors.Is(err, atomapi.ErrAuth) {
		t.Fatalf("GetDeployment with a wrong password = %v; want ErrAuth", err)
	}
	_, err2 := h.c.GetDeployment(t.Context(), "d")
	_, err3 := h.c.GetDeployment(t.Context(), "d") // breaker open
	if !errors.Is(err3, atomapi.ErrAuth) {
		t.Fatalf("third call = %v; want ErrAuth from the breaker", err3)
	}
	_, results := h.rec.calls()

	logger.Info("config", "cfg", cfg, "creds", creds, "client", h.c, "err", err)
	jsonLogger.Info("config", "cfg", cfg, "creds", creds, "client", h.c, "err", err)
	credsJSON, jerr := json.Marshal(creds)
	if jerr != nil {
		t.Fatal(jerr)
	}

	var shown []string
	for _, v := range []any{h.c, cfg, &cfg, creds, &creds, err, err2, err3} {
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x"} {
			shown = append(shown, fmt.Sprintf(verb, v))
		}
	}
	for _, e := range []error{err, err2, err3, results[0].Err} {
		shown = append(shown, e.Error())
		if ae, ok := errorsAs[*atomapi.APIError](e); ok {
			shown = append(shown, ae.Message, ae.Excerpt)
		}
	}
	shown = append(shown, string(credsJSON), logs.String())

	b64 := base64.StdEncoding.EncodeToString([]byte("runnerd@sim:" + canary))
	hexPw := fmt.Sprintf("%x", canary)
	for i, s := range shown {
		if strings.Contains(s, canary) || strings.Contains(s, b64) || strings.Contains(s, hexPw) {
			t.Errorf("output %d shows the password: %.300s", i, s)
		}
	}
	if !strings.Contains(fmt.Sprint(creds), "runnerd@sim") || !strings.Contains(string(credsJSON), "****") {
		t.Errorf("credentials print as %v / %s; want the user and ****", creds, credsJSON)
	}
	if !strings.Contains(logs.String(), "breaker") {
		t.Errorf("log does not mention the auth breaker:\n%s", logs.String())
	}
}

func TestCredentialsFormatting(t *testing.T) {
	c := atomapi.NewCredentials("BOOMI_TOKEN.me@example.com", "s3cr3t-token")
	tests := []struct {
		format string
		want   string
	}{
		{"%v", "BOOMI_TOKEN.me@example.com:****"},
		{"%+v", "BOOMI_TOKEN.me@example.com:****"},
		{"%s", "BOOMI_TOKEN.me@example.com:****"},
		{"%#v", `atomapi.Credentials{User:"BOOMI_TOKEN.me@example.com", Password:"****"}`},
		{"%q", `"BOOMI_TOKEN.me@example.com:****"`},
		{"%d", "BOOMI_TOKEN.me@example.com:****"},
	}
	for _, tt := range tests {
		if got := fmt.Sprintf(tt.format, c); got != tt.want {
			t.Errorf("Sprintf(%q, creds) = %q; want %q", tt.format, got, tt.want)
		}
	}
	if c.User() != "BOOMI_TOKEN.me@example.com" {
		t.Errorf("User() = %q; want BOOMI_TOKEN.me@example.com", c.User())
	}
	b, _ := json.Marshal(struct{ C atomapi.Credentials }{c})
	if want := `{"C":{"user":"BOOMI_TOKEN.me@example.com","password":"****"}}`; string(b) != want {
		t.Errorf("json.Marshal = %s; want %s", b, want)
	}
}

func TestFilterBuilders(t *testing.T) {
	tests := []struct {
		name string
		got  *atomapi.Expression
		want string // JSON; "null" for nil
	}{
		{"And none", atomapi.And(), "null"},
		{"Or none", atomapi.Or(), "null"},
		{"And one is the expression", atomapi.And(atomapi.Eq("a", "1")), `{"operator":"EQUALS","property":"a","argument":["1"]}`},
		{"And two", atomapi.And(atomapi.Eq("a", "1"), atomapi.IsNotNull("b")),
			`{"operator":"and","nestedExpression":[{"operator":"EQUALS","property":"a","argument":["1"]},{"operator":"IS_NOT_NULL","property":"b"}]}`},
		{"Or nested", atomapi.Or(atomapi.IsNull("x"), *atomapi.And(atomapi.Between("d", "f", "t"), atomapi.Simple("LIKE", "n", "A%"))),
			`{"operator":"or","nestedExpression":[{"operator":"IS_NULL","property":"x"},{"operator":"and","nestedExpression":[` +
				`{"operator":"BETWEEN","property":"d","argument":["f","t"]},{"operator":"LIKE","property":"n","argument":["A%"]}]}]}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := json.Marshal(tt.got)
			if err != nil {
				t.Fatal(err)
			}
			if string(b) != tt.want {
				t.Errorf("got %s; want %s", b, tt.want)
			}
		})
	}
	// The group must not alias the caller's slice.
	in := []atomapi.Expression{atomapi.Eq("a", "1"), atomapi.Eq("b", "2")}
	g := atomapi.And(in...)
	in[0].Property = "changed"
	if g.NestedExpression[0].Property != "a" {
		t.Errorf("And aliases its arguments: %+v", g)
	}
}

// A password a server echoes across the excerpt's cut, or JSON-escaped, is
// still redacted: redaction comes before the cut.
func TestRedactBeforeCut(t *testing.T) {
	const pw = `canary/"pw"<x>`
	for _, body := range []string{
		strings.Repeat("a", 2040) + pw + strings.Repeat("b", 100),
		`{"@type":"Error","message":` + strconv.Quote(pw) + `}`,
		`{"@type":"Error","message":"` + strings.NewReplacer(`"`, `\"`, "<", `\u003c`, ">", `\u003e`).Replace(pw) + `"}`,
	} {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, body)
		}))
		c, err := atomapi.New(atomapi.Config{BaseURL: srv.URL, AccountID: "a", Credentials: atomapi.NewCredentials("u", pw)})
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.GetDeployment(context.Background(), "d")
		srv.Close()
		var ae *atomapi.APIError
		if !errors.As(err, &ae) {
			t.Fatalf("GetDeployment = %v; want an APIError", err)
		}
		for _, leak := range []string{"canary", pw[:8]} {
			if strings.Contains(ae.Message+ae.Excerpt+err.Error(), leak) {
				t.Errorf("body %.40q…: the error holds %q: %q / %q", body, leak, ae.Message, ae.Excerpt)
			}
		}
	}
}

package atomsim_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

// t0 is a Monday noon, the start of the overview's worked example.
var t0 = time.Date(2025, 3, 3, 12, 0, 0, 0, time.UTC)

// sim is a simulator behind an httptest server, with a plain net/http client.
type sim struct {
	t    testing.TB
	s    *atomsim.Server
	ts   *httptest.Server
	base string // http://127.0.0.1:PORT/api/rest/v1/sim-account
	hc   *http.Client
	seq  atomic.Int64
}

// newSim starts a simulator; unless opts.Now is set, on a fake clock fixed at
// t0. Unless the test sets them, the limits are off.
func newSim(t testing.TB, opts atomsim.Options) *sim {
	t.Helper()
	if opts.Rate == 0 {
		opts.Rate = -1
	}
	if opts.DailyLimit == 0 {
		opts.DailyLimit = -1
	}
	fake := opts.Now == nil
	if fake {
		opts.Now = func() time.Time { return t0 }
	}
	s := atomsim.New(opts)
	if fake {
		s.SetNow(t0)
	}
	ts := httptest.NewServer(s)
	t.Cleanup(ts.Close)
	return &sim{t: t, s: s, ts: ts, base: ts.URL + atomsim.PathPrefix + "sim-account", hc: ts.Client()}
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// req sends one request; body is JSON-encoded unless it is a string.
func (c *sim) req(method, path string, body any, hdr ...string) reply {
	c.t.Helper()
	var rd io.Reader
	ct := "application/json"
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
		ct = "text/plain"
	default:
		j, err := json.Marshal(b)
		if err != nil {
			c.t.Fatal(err)
		}
		rd = strings.NewReader(string(j))
	}
	r, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
	r.Header.Set("Accept", "application/json")
	if rd != nil {
		r.Header.Set("Content-Type", ct)
	}
	r.Header.Set(atomapi.RequestIDHeader, "req-"+itoa(int(c.seq.Add(1))))
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, path, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

// queryAll runs a query and follows queryTokens; it returns the records in
// order and the number of requests made.
func (c *sim) queryAll(object string, cfg any) (recs []json.RawMessage, requests int, first atomapi.QueryResult) {
	c.t.Helper()
	rep := c.req("POST", "/"+object+"/query", cfg)
	for {
		requests++
		if rep.status != http.StatusOK {
			c.t.Fatalf("%s query page %d: status %d: %s", object, requests, rep.status, rep.body)
		}
		var page atomapi.QueryResult
		if err := json.Unmarshal(rep.body, &page); err != nil {
			c.t.Fatalf("%s page %d: %v", object, requests, err)
		}
		if requests == 1 {
			first = page
		}
		if len(page.Result) > atomapi.PageSize {
			c.t.Fatalf("%s page %d has %d results; want ≤ %d", object, requests, len(page.Result), atomapi.PageSize)
		}
		recs = append(recs, page.Result...)
		if page.QueryToken == "" {
			return recs, requests, first
		}
		rep = c.req("POST", "/"+object+"/queryMore", page.QueryToken)
	}
}

func filter(e *atomapi.Expression) atomapi.QueryConfig {
	return atomapi.QueryConfig{QueryFilter: atomapi.QueryFilter{Expression: e}}
}

func simple(op, prop string, args ...string) *atomapi.Expression {
	e := &atomapi.Expression{Operator: op, Property: prop}
	for _, a := range args {
		e.Argument = append(e.Argument, atomapi.FlexString(a))
	}
	return e
}

func group(op string, e ...*atomapi.Expression) *atomapi.Expression {
	g := &atomapi.Expression{Operator: op}
	for _, x := range e {
		g.NestedExpression = append(g.NestedExpression, *x)
	}
	return g
}

func decodeAll[T any](t testing.TB, raw []json.RawMessage) []T {
	t.Helper()
	out := make([]T, len(raw))
	for i, r := range raw {
		if err := json.Unmarshal(r, &out[i]); err != nil {
			t.Fatalf("decoding %s: %v", r, err)
		}
	}
	return out
}

func mustTime(t testing.TB, s string) time.Time {
	t.Helper()
	tm, err := atomapi.ParseTime(s)
	if err != nil {
		t.Fatal(err)
	}
	return tm
}

package atomsim_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

// raw sends one request with a fresh connection (so that net/http does not
// silently retry an idempotent request on a reset) and returns the response or
// the transport error; the caller closes the body.
func (c *sim) raw(hc *http.Client, method, path, body string) (*http.Response, error) {
	c.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
	r.Header.Set("Accept", "application/json")
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set(atomapi.RequestIDHeader, "raw-"+itoa(int(c.seq.Add(1))))
	if hc == nil {
		hc = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	}
	return hc.Do(r)
}

func readAll(t *testing.T, resp *http.Response) []byte {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return b
}

const envQuery = `{"QueryFilter":{}}`

func TestFaults(t *testing.T) {
	c := newSim(t, tiny)
	lastFault := func() atomsim.Request {
		rs := c.s.Requests()
		return rs[len(rs)-1]
	}

	t.Run("latency", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultLatency, Latency: 5 * time.Second})
		_, err := c.raw(&http.Client{Timeout: 100 * time.Millisecond}, "GET", "/Environment/env-test", "")
		if err == nil {
			t.Fatal("request with a 100ms timeout against a 5s latency succeeded; want a timeout")
		}
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultLatency, Latency: 10 * time.Millisecond})
		resp, err := c.raw(nil, "GET", "/Environment/env-test", "")
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("short latency: %v; want 200", err)
		}
		resp.Body.Close()
		if r := lastFault(); r.Fault != "latency" || r.Status != 200 {
			t.Errorf("logged %+v; want fault latency, status 200", r)
		}
	})
	t.Run("status", func(t *testing.T) {
		for _, st := range []int{500, 502, 504} {
			c.s.Inject(atomsim.Fault{Kind: atomsim.FaultStatus, Status: st})
			resp, err := c.raw(nil, "GET", "/Environment/env-test", "")
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, resp)
			if resp.StatusCode != st || !strings.Contains(string(body), "<html>") {
				t.Errorf("status fault %d: got %d %q", st, resp.StatusCode, body)
			}
		}
	})
	t.Run("reset", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultReset, PathContains: "/Environment/query"})
		_, err := c.raw(nil, "POST", "/Environment/query", envQuery)
		if err == nil {
			t.Fatal("reset: no error; want a connection error")
		}
		if r := lastFault(); r.Fault != "reset" || r.Status != 0 {
			t.Errorf("logged %+v; want fault reset, status 0", r)
		}
	})
	t.Run("reset after handling", func(t *testing.T) {
		before := len(c.s.Executions())
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultReset, PathContains: "ExecutionRequest", AfterHandling: true})
		_, err := c.raw(nil, "POST", "/ExecutionRequest", `{"@type":"ExecutionRequest","atomId":"atom-test","processId":"proc-orders"}`)
		if err == nil {
			t.Fatal("reset: no error")
		}
		if n := len(c.s.Executions()); n != before+1 {
			t.Errorf("executions after a reset-after-handling: %d; want %d (the request took effect)", n, before+1)
		}
	})
	t.Run("reset before handling has no effect", func(t *testing.T) {
		before := len(c.s.Executions())
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultReset, PathContains: "ExecutionRequest"})
		if _, err := c.raw(nil, "POST", "/ExecutionRequest", `{"@type":"ExecutionRequest","atomId":"atom-test","processId":"proc-orders"}`); err == nil {
			t.Fatal("reset: no error")
		}
		if n := len(c.s.Executions()); n != before {
			t.Errorf("executions = %d; want %d", n, before)
		}
	})
	t.Run("malformed JSON", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultMalformedJSON})
		resp, err := c.raw(nil, "POST", "/Environment/query", envQuery)
		if err != nil {
			t.Fatal(err)
		}
		var v any
		body := readAll(t, resp)
		if resp.StatusCode != 200 || json.Unmarshal(body, &v) == nil {
			t.Errorf("malformed: %d %q; want 200 with invalid JSON", resp.StatusCode, body)
		}
	})
	t.Run("truncated JSON", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultTruncatedJSON})
		resp, err := c.raw(nil, "POST", "/Environment/query", envQuery)
		if err != nil {
			t.Fatal(err)
		}
		body := readAll(t, resp)
		if resp.StatusCode != 200 || json.Valid(body) || !strings.HasPrefix(string(body), `{"@type":"QueryResult"`) {
			t.Errorf("truncated: %d %q; want 200 with the start of a QueryResult", resp.StatusCode, body)
		}
	})
	t.Run("503 storm", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 3})
		var got []int
		for range 4 {
			resp, err := c.raw(nil, "GET", "/Environment/env-test", "")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			got = append(got, resp.StatusCode)
		}
		if want := []int{503, 503, 503, 200}; !equalInts(got, want) {
			t.Errorf("statuses %v; want %v", got, want)
		}
	})
	t.Run("trickle", func(t *testing.T) {
		resp, err := c.raw(nil, "POST", "/Environment/query", envQuery)
		if err != nil {
			t.Fatal(err)
		}
		want := readAll(t, resp)
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultTrickle, Latency: time.Millisecond})
		resp, err = c.raw(nil, "POST", "/Environment/query", envQuery)
		if err != nil {
			t.Fatal(err)
		}
		got := readAll(t, resp)
		if string(got) != string(want) || resp.ContentLength != -1 {
			t.Errorf("trickled body %q (length %d); want %q streamed", got, resp.ContentLength, want)
		}
		if r := lastFault(); r.Fault != "trickle" {
			t.Errorf("logged %+v; want fault trickle", r)
		}
	})
	t.Run("redirect", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultRedirect, Location: "http://127.0.0.1:1/elsewhere"})
		hc := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
		resp, err := c.raw(hc, "GET", "/Environment/env-test", "")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "http://127.0.0.1:1/elsewhere" {
			t.Errorf("redirect: %d %q", resp.StatusCode, resp.Header.Get("Location"))
		}
	})
	t.Run("path filter", func(t *testing.T) {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultStatus, Status: 502, PathContains: "/AuditLog/"})
		resp, _ := c.raw(nil, "GET", "/Environment/env-test", "")
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Errorf("other path: %d; want 200", resp.StatusCode)
		}
		resp, _ = c.raw(nil, "POST", "/AuditLog/query", envQuery)
		resp.Body.Close()
		if resp.StatusCode != 502 {
			t.Errorf("matching path: %d; want 502", resp.StatusCode)
		}
	})
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestHugeBody reads a 1 GiB body (128 MiB with -race, 64 MiB with -short) and checks that the
// heap never held a large part of it: the server streams it.
func TestHugeBody(t *testing.T) {
	size := int64(1 << 30)
	switch {
	case testing.Short():
		size = 64 << 20
	case raceEnabled:
		size = 128 << 20
	}
	c := newSim(t, tiny)
	c.s.Inject(atomsim.Fault{Kind: atomsim.FaultHugeBody, Size: size})
	resp, err := c.raw(nil, "POST", "/AuditLog/query", envQuery)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var ms runtime.MemStats
	runtime.GC() // earlier tests' garbage must not count
	runtime.ReadMemStats(&ms)
	base := ms.HeapAlloc
	var n, next int64
	var peak uint64
	var head []byte
	buf := make([]byte, 256<<10)
	for {
		k, err := resp.Body.Read(buf)
		if len(head) < 64 {
			head = append(head, buf[:min(k, 64)]...)
		}
		n += int64(k)
		if n >= next {
			runtime.ReadMemStats(&ms)
			if ms.HeapAlloc > base {
				peak = max(peak, ms.HeapAlloc-base)
			}
			next += size / 8
		}
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("after %d bytes: %v", n, err)
		}
	}
	if n != size || !strings.HasPrefix(string(head), `{"@type":"QueryResult"`) {
		t.Errorf("read %d bytes starting %q; want %d starting with a QueryResult", n, head, size)
	}
	if limit := uint64(size / 4); peak > limit {
		t.Errorf("heap grew by up to %d MiB while streaming %d MiB; want < %d MiB", peak>>20, size>>20, limit>>20)
	}
}

func TestRequestLog(t *testing.T) {
	c := newSim(t, withLimits(3, -1))
	type want struct {
		method, path, id string
		status           int
		fault            string
	}
	var wants []want
	send := func(method, path, password string, status int, fault string) {
		t.Helper()
		r, _ := http.NewRequest(method, c.base+path, nil)
		r.SetBasicAuth(atomsim.DefaultUser, password)
		r.Header.Set("Accept", "application/json")
		id := "id-" + itoa(len(wants)+1)
		r.Header.Set(atomapi.RequestIDHeader, id)
		resp, err := c.hc.Do(r)
		if err != nil {
			t.Fatal(err)
		}
		var eb atomapi.ErrorBody
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != status {
			t.Errorf("%s %s: status %d %s; want %d", method, path, resp.StatusCode, body, status)
		}
		if status == 401 && (json.Unmarshal(body, &eb) != nil || eb.Text() == "") {
			t.Errorf("401 body %q; want an error body", body)
		}
		wants = append(wants, want{method, atomsim.PathPrefix + "sim-account" + path, id, status, fault})
	}
	send("GET", "/Environment/env-test", "wrong", 401, "")
	send("GET", "/Environment/env-test", atomsim.DefaultPassword, 200, "")
	send("GET", "/Nope", atomsim.DefaultPassword, 404, "")
	c.s.Inject(atomsim.Fault{Kind: atomsim.Fault503Storm})
	send("GET", "/Environment/env-prod", atomsim.DefaultPassword, 503, "503-storm")
	send("GET", "/Atom/atom-test", atomsim.DefaultPassword, 200, "")
	send("GET", "/Atom/atom-prod", atomsim.DefaultPassword, 503, "") // rate 3: 200, 404, 200 counted
	got := c.s.Requests()
	if len(got) != len(wants) {
		t.Fatalf("Requests() has %d entries; want %d", len(got), len(wants))
	}
	for i, w := range wants {
		g := got[i]
		if g.Method != w.method || g.Path != w.path || g.RequestID != w.id || g.Status != w.status || g.Fault != w.fault || !g.Time.Equal(t0) {
			t.Errorf("Requests()[%d] = %+v; want %+v", i, g, w)
		}
	}
}

func TestAccountAndAccept(t *testing.T) {
	c := newSim(t, tiny)
	r, _ := http.NewRequest("GET", c.ts.URL+atomsim.PathPrefix+"other-account/Environment/env-test", nil)
	r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
	r.Header.Set("Accept", "application/json")
	resp, err := c.hc.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("other account: %d; want 403", resp.StatusCode)
	}
	if rep := c.req("GET", "/Environment/env-test", nil, "Accept", "application/xml"); rep.status != http.StatusNotAcceptable {
		t.Errorf("Accept: application/xml: %d; want 406", rep.status)
	}
}

func TestListenAndServe(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- atomsim.ListenAndServe(ctx, "127.0.0.1:0", tiny, func(u string) { urls <- u })
	}()
	var url string
	select {
	case url = <-urls:
	case err := <-done:
		t.Fatalf("ListenAndServe returned early: %v", err)
	}
	if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/api/rest/v1/sim-account") {
		t.Errorf("url %q; want http://127.0.0.1:PORT/api/rest/v1/sim-account", url)
	}
	r, _ := http.NewRequest("GET", url+"/Environment/env-prod", nil)
	r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
	r.Header.Set("Accept", "application/json")
	resp, err := (&http.Client{Transport: &http.Transport{DisableKeepAlives: true}}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 || !strings.Contains(string(body), `"Production"`) {
		t.Errorf("GET Environment = %d %s", resp.StatusCode, body)
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("ListenAndServe after cancel = %v; want nil", err)
	}
}

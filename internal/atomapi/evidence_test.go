package atomapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/atomapi"
)

// TestLogDownloadStatusCode: the platform's statusCode is a number for
// ProcessLog and a string in the ExecutionArtifacts example; both decode,
// and the request carries the level in upper case.
func TestLogDownloadStatusCode(t *testing.T) {
	var bodies []string
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		bodies = append(bodies, r.URL.Path+" "+string(b))
		switch r.URL.Path {
		case testPrefix + "/ProcessLog":
			io.WriteString(w, `{"@type":"LogDownload","url":"http://`+r.Host+`/account/x/api/download/ProcessLog-1","message":"Beginning download.","statusCode":202}`)
		case testPrefix + "/ExecutionArtifacts":
			io.WriteString(w, `{"@type":"LogDownload","statusCode":"202","message":"Beginning download.","url":"http://`+r.Host+`/account/x/api/download/ExecutionArtifacts-1"}`)
		}
	})
	ctx := context.Background()
	d, err := h.c.ProcessLog(ctx, "execution-1", "")
	if err != nil || !d.Ready() || !strings.HasSuffix(d.URL, "ProcessLog-1") || d.StatusCode != "202" {
		t.Fatalf("ProcessLog = %+v, %v; want a ready link with statusCode 202", d, err)
	}
	a, err := h.c.ExecutionArtifacts(ctx, "execution-1")
	if err != nil || !a.Ready() || a.StatusCode != "202" {
		t.Fatalf("ExecutionArtifacts = %+v, %v; want a ready link with statusCode \"202\"", a, err)
	}
	if want := testPrefix + `/ProcessLog {"executionId":"execution-1","logLevel":"ALL"}`; bodies[0] != want {
		t.Errorf("ProcessLog sent %q; want %q", bodies[0], want)
	}
	if _, err := h.c.ProcessLog(ctx, "execution-1", "all"); err == nil {
		t.Error(`ProcessLog with level "all": no error; the platform's levels are upper case`)
	}
	if len(bodies) != 2 {
		t.Errorf("%d requests; a bad level must not be sent", len(bodies))
	}
}

// TestLogDownloadRuntimeUnavailable: statusCode 504 has no URL and is not ready.
func TestLogDownloadRuntimeUnavailable(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"@type":"LogDownload","statusCode":504,"message":"Runtime is unavailable."}`)
	})
	d, err := h.c.ProcessLog(context.Background(), "execution-1", "SEVERE")
	if err != nil || d.Ready() || d.StatusCode != "504" {
		t.Fatalf("ProcessLog = %+v, %v; want not ready, 504", d, err)
	}
}

// TestDownloadForeignHost: a link on another host (or port, or scheme, or
// with user info) is never requested: the credentials stay with the platform.
func TestDownloadForeignHost(t *testing.T) {
	var foreign atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		foreign.Add(1)
		w.Write([]byte("PK"))
	}))
	defer other.Close()
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) { t.Errorf("platform got %s", r.URL) })
	platform := h.srv.URL
	for _, u := range []string{
		other.URL + "/account/x/api/download/ProcessLog-1",
		strings.Replace(platform, "http://", "https://", 1) + "/d",
		strings.Replace(platform, "127.0.0.1", "localhost", 1) + "/d",
		strings.Replace(platform, "http://", "http://user:pw@", 1) + "/d",
		"/account/x/api/download/ProcessLog-1",
		"::not a url",
	} {
		_, _, err := h.c.Download(context.Background(), atomapi.OpProcessLogDownload, u, 0)
		if !errors.Is(err, atomapi.ErrForeignURL) {
			t.Errorf("Download(%q) = %v; want ErrForeignURL", u, err)
		}
		if err != nil && strings.Contains(err.Error(), "pw@") {
			t.Errorf("error shows the URL's password: %v", err)
		}
	}
	if n := foreign.Load(); n != 0 {
		t.Errorf("the other host got %d requests; want 0", n)
	}
	if c, _ := h.rec.calls(); len(c) != 0 {
		t.Errorf("%d ledger rows; want 0 (nothing was sent)", len(c))
	}
}

// TestDownloadPolls: 202 and an empty 200 are "not ready", 200 with a body is
// the file, 404 is ErrNotFound (expired), a body over the limit is
// ErrBodyTooLarge; each poll is one ledger row with the link's path.
func TestDownloadPolls(t *testing.T) {
	var n atomic.Int32
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") == "" || !strings.Contains(r.Header.Get("Accept"), "application/zip") {
			t.Errorf("download without credentials or zip Accept: %v", r.Header)
		}
		switch r.URL.Path {
		case "/account/x/api/download/gone":
			w.WriteHeader(http.StatusNotFound)
			return
		case "/account/x/api/download/big":
			w.Write(make([]byte, 2048))
			return
		}
		switch n.Add(1) {
		case 1:
			w.WriteHeader(http.StatusAccepted)
		case 2:
			w.WriteHeader(http.StatusOK)
		default:
			w.Header().Set("Content-Type", "application/zip")
			w.Write([]byte("PK\x03\x04zip"))
		}
	})
	ctx := context.Background()
	link := h.srv.URL + "/account/x/api/download/ProcessLog-1?t=1"
	for i, want := range []bool{false, false, true} {
		data, ready, err := h.c.Download(ctx, atomapi.OpProcessLogDownload, link, 1024)
		if err != nil || ready != want || (ready && string(data) != "PK\x03\x04zip") {
			t.Fatalf("poll %d = %q, %v, %v; want ready=%v", i+1, data, ready, err, want)
		}
	}
	if _, _, err := h.c.Download(ctx, atomapi.OpProcessLogDownload, h.srv.URL+"/account/x/api/download/gone", 0); !errors.Is(err, atomapi.ErrNotFound) {
		t.Errorf("404: %v; want ErrNotFound", err)
	}
	if _, _, err := h.c.Download(ctx, atomapi.OpProcessLogDownload, h.srv.URL+"/account/x/api/download/big", 1024); !errors.Is(err, atomapi.ErrBodyTooLarge) {
		t.Errorf("2 KiB over a 1 KiB limit: %v; want ErrBodyTooLarge", err)
	}
	calls, _ := h.rec.calls()
	if len(calls) != 5 {
		t.Fatalf("%d ledger rows; want 5", len(calls))
	}
	if c := calls[0]; c.Operation != atomapi.OpProcessLogDownload || c.Path != "/account/x/api/download/ProcessLog-1" || !c.Safe {
		t.Errorf("row = %+v; want the download op, the link's path without its query, safe", c)
	}
}

// TestCancelRouteDetected: the platform path 404s, the partner base answers;
// the next cancel goes straight to the partner base. When neither answers,
// "unavailable" is remembered and no call is made until CancelRememberFor.
func TestCancelRouteDetected(t *testing.T) {
	var paths []string
	partner := true
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		paths = append(paths, r.Method+" "+r.URL.Path)
		switch {
		case partner && strings.HasPrefix(r.URL.Path, "/partner/api/rest/v1/"+testAccount+"/cancelExecution/exec-ended"):
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"@type":"Error","message":"Cannot cancel: the runtime is not running"}`)
		case partner && strings.HasPrefix(r.URL.Path, "/partner/api/rest/v1/"+testAccount+"/cancelExecution/"):
			w.WriteHeader(http.StatusAccepted)
			io.WriteString(w, `{"message":"Operation completed successfully."}`)
		default:
			w.WriteHeader(http.StatusNotFound)
		}
	}, func(c *atomapi.Config) { c.Now = func() time.Time { return now } })
	ctx := context.Background()
	out, err := h.c.CancelExecution(ctx, "exec-1")
	if err != nil || out.Result != atomapi.CancelSent || out.Route != atomapi.RoutePartner || out.Calls != 2 ||
		out.Message != "Operation completed successfully." {
		t.Fatalf("first cancel = %+v, %v; want sent on the partner base after 2 calls", out, err)
	}
	out, _ = h.c.CancelExecution(ctx, "exec-2")
	if out.Result != atomapi.CancelSent || out.Calls != 1 {
		t.Errorf("second cancel = %+v; want sent with 1 call (the route is remembered)", out)
	}
	out, _ = h.c.CancelExecution(ctx, "exec-ended")
	if out.Result != atomapi.CancelRefused || !strings.Contains(out.Message, "not running") || out.Calls != 1 {
		t.Errorf("cancel of an ended execution = %+v; want refused with the platform's message", out)
	}
	want := []string{
		"POST " + testPrefix + "/cancelExecution/exec-1",
		"POST /partner" + testPrefix + "/cancelExecution/exec-1",
		"POST /partner" + testPrefix + "/cancelExecution/exec-2",
		"POST /partner" + testPrefix + "/cancelExecution/exec-ended",
	}
	if fmt.Sprint(paths) != fmt.Sprint(want) {
		t.Errorf("requests %q; want %q", paths, want)
	}

	partner = false
	h.c.SetCancelRoute("", time.Time{})
	paths = nil
	out, _ = h.c.CancelExecution(ctx, "exec-3")
	if out.Result != atomapi.CancelUnavailable || out.Calls != 2 {
		t.Errorf("cancel where neither base offers it = %+v; want unavailable after 2 calls", out)
	}
	if r, _ := h.c.CancelRoute(); r != atomapi.RouteUnavailable {
		t.Errorf("route %q; want unavailable remembered", r)
	}
	out, _ = h.c.CancelExecution(ctx, "exec-4")
	if out.Result != atomapi.CancelUnavailable || out.Calls != 0 || len(paths) != 2 {
		t.Errorf("next cancel = %+v after %d requests; want unavailable with no call", out, len(paths))
	}
	now = now.Add(atomapi.CancelRememberFor)
	if out, _ = h.c.CancelExecution(ctx, "exec-5"); out.Calls != 2 {
		t.Errorf("a day later = %+v; want detection again (2 calls)", out)
	}
	calls, _ := h.rec.calls()
	for _, c := range calls {
		if c.Operation != atomapi.OpCancelExecution || c.Safe {
			t.Errorf("row %+v; want cancelExecution, unsafe", c)
		}
	}
}

// TestCancelExecutionFailed: a 503 that outlasts the retries is "failed",
// not "unavailable": nothing is remembered.
func TestCancelExecutionFailed(t *testing.T) {
	h := newHarness(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
		json.NewEncoder(w).Encode(map[string]string{"message": "busy"})
	})
	out, err := h.c.CancelExecution(context.Background(), "exec-1")
	if err != nil || out.Result != atomapi.CancelFailed {
		t.Fatalf("cancel under 503 = %+v, %v; want failed", out, err)
	}
	if r, _ := h.c.CancelRoute(); r != "" {
		t.Errorf("route %q remembered after a 503; want none", r)
	}
}

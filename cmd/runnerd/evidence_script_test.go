package main

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/store"
)

var foreigners sync.Map // *testscript.TestScript → *atomic.Int32

// simset KEY=VALUE...: change the simulator's evidence and cancel behaviour.
//
//	download=normal|never-ready|expired|truncated|oversize|unavailable
//	oversize=BYTES        the padding of download=oversize
//	cancel=platform|partner|unavailable   where cancelExecution answers (default partner)
//	artifacts=off|on
//	host=foreign          download links point at another server on 127.0.0.1,
//	                      which counts the requests it gets (foreigncount)
func cmdScriptSimSet(ts *testscript.TestScript, neg bool, args []string) {
	s := simOf(ts)
	for _, a := range args {
		k, v, ok := strings.Cut(a, "=")
		if !ok {
			ts.Fatalf("simset: %q: want KEY=VALUE", a)
		}
		switch k {
		case "download":
			f, ok := map[string]atomsim.DownloadFault{"normal": atomsim.DownloadNormal, "never-ready": atomsim.DownloadNeverReady,
				"expired": atomsim.DownloadExpired, "truncated": atomsim.DownloadTruncated, "oversize": atomsim.DownloadOversize,
				"unavailable": atomsim.DownloadRuntimeUnavailable}[v]
			if !ok {
				ts.Fatalf("simset: download=%q: unknown", v)
			}
			s.SetDownloadFault(f)
		case "oversize":
			n, err := strconv.ParseInt(v, 10, 64)
			ts.Check(err)
			s.SetDownloadOversize(n)
		case "cancel":
			switch v {
			case "platform":
				s.SetCancelOnPlatform(true)
				s.SetCancelUnavailable(false)
			case "partner":
				s.SetCancelOnPlatform(false)
				s.SetCancelUnavailable(false)
			case "unavailable":
				s.SetCancelUnavailable(true)
			default:
				ts.Fatalf("simset: cancel=%q: unknown", v)
			}
		case "artifacts":
			s.SetArtifactsDisabled(v == "off")
		case "host":
			if v == "platform" {
				s.SetDownloadHost("")
				continue
			}
			if v != "foreign" {
				ts.Fatalf("simset: host=%q: foreign or platform", v)
			}
			var n atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n.Add(1)
				w.Header().Set("Content-Type", "application/zip")
				w.Write([]byte("PK"))
			}))
			ts.Defer(srv.Close)
			foreigners.Store(ts, &n)
			s.SetDownloadHost(strings.TrimPrefix(srv.URL, "http://"))
		default:
			ts.Fatalf("simset: unknown key %q", k)
		}
	}
}

// foreigncount N: the foreign download host got exactly N requests.
func cmdScriptForeignCount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: foreigncount N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	v, ok := foreigners.Load(ts)
	if !ok {
		ts.Fatalf("foreigncount: no foreign host: simset host=foreign first")
	}
	if got := int(v.(*atomic.Int32).Load()); (got == want) == neg {
		ts.Fatalf("foreigncount: got %d, want %d", got, want)
	}
}

// simcancels N: the simulator cancelled exactly N executions.
func cmdScriptSimCancels(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: simcancels N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if got := len(simOf(ts).Cancels()); (got == want) == neg {
		ts.Fatalf("simcancels: got %d, want %d", got, want)
	}
}

// waitevidence DB RUN STATE [TIMEOUT]: wait until run RUN's process log
// evidence is in STATE (pending, kept, given_up, or deferred: pending with a
// budget deferral).
func cmdScriptWaitEvidence(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: waitevidence DB RUN STATE [TIMEOUT]")
	}
	id, err := strconv.ParseInt(args[1], 10, 64)
	ts.Check(err)
	timeout := 60 * time.Second
	if len(args) > 3 {
		timeout, err = time.ParseDuration(args[3])
		ts.Check(err)
	}
	path := ts.MkAbs(args[0])
	deadline := time.Now().Add(timeout)
	last := "none"
	for time.Now().Before(deadline) {
		db, err := scriptStore(ts, path, store.Options{ReadOnly: true})
		if err == nil {
			es, _ := db.RunEvidence(context.Background(), id)
			db.Close()
			for _, e := range es {
				if e.Kind != store.EvidenceLog {
					continue
				}
				last = e.State + ": " + e.Reason
				if e.State == args[2] || (args[2] == "deferred" && e.State == store.EvidencePending && strings.HasPrefix(e.Reason, "deferred")) {
					return
				}
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("waitevidence: run %d's log: %s; want %s after %s", id, last, args[2], timeout)
}

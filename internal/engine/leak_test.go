package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"
)

// ownGoroutines returns the stacks of goroutines that runnerd's code, the
// database pool, cron or an HTTP server started, other than the caller's.
func ownGoroutines() []string {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	var out []string
	for _, g := range strings.Split(string(buf[:n]), "\n\n") {
		if strings.Contains(g, "engine.ownGoroutines") || strings.Contains(g, "testing.tRunner") && !strings.Contains(g, "runnerd/internal/engine.(*Engine)") {
			continue
		}
		for _, mark := range []string{"runnerd/", "database/sql.", "robfig/cron", "net/http.(*Server)", "net/http.(*conn)"} {
			if strings.Contains(g, mark) {
				out = append(out, g)
				break
			}
		}
	}
	return out
}

const leakJobs = `
[http]
listen = "127.0.0.1:0"

[[job]]
name = "exec"
kind = "execute"
schedule = "@every 1s"
overlap = "allow"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "audit"
kind = "export"
schedule = "@every 1s"
object = "AuditLog"
window_property = "date"
first_window = "1h"
output = "DIR/exports/{job}/{window_start}.jsonl"
`

// TestCloseLeavesNothing: with cron firing, runs in flight, reconciliation
// and housekeeping started and the status page serving a kept-alive
// connection, Close returns with no goroutine of runnerd's left, and the
// database is closed last: when it closes, every other goroutine has ended.
func TestCloseLeavesNothing(t *testing.T) {
	before := len(ownGoroutines())
	r := newRig(t, 10000, leakJobs, nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.e.Serve(ln)
	if err := r.e.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{}}
	resp, err := client.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close() // the connection stays open, idle: Shutdown must close it
	deadline := time.Now().Add(10 * time.Second)
	for r.e.sched.InFlight() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if r.e.sched.InFlight() == 0 {
		t.Fatal("no run in flight within 10 s")
	}
	var atDBClose []string
	r.e.beforeDBClose = func() {
		// A goroutine whose last step was to say it ended may still be
		// returning: give those a moment, inside Close, before the database
		// goes.
		for range 100 {
			if atDBClose = notSQL(ownGoroutines()); len(atDBClose) == 0 {
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	if err := r.e.Close(); err != nil {
		t.Fatalf("Close() = %v", err)
	}
	client.CloseIdleConnections()
	// Only the database's own pool goroutines may be alive when it closes.
	for _, g := range atDBClose {
		t.Errorf("alive when the database was closed:\n%s", g)
	}
	if err := r.e.db.Ping(context.Background()); err == nil {
		t.Error("the database answers after Close")
	}
	// Goroutines that are ending may take a moment to be gone.
	var left []string
	for range 100 {
		if left = ownGoroutines(); len(left) <= before {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if len(left) > before {
		t.Errorf("%d goroutines left after Close (had %d before Open):\n%s", len(left), before, strings.Join(left, "\n\n"))
	}
}

func notSQL(gs []string) []string {
	var out []string
	for _, g := range gs {
		if !strings.Contains(g, "database/sql.") {
			out = append(out, g)
		}
	}
	return out
}

// TestOneSpenderPerLedger: while an engine is open on a ledger, a second
// Open of the same ledger is refused with ErrLocked and leaves the first
// untouched; after Close (the lock goes last) it opens.
func TestOneSpenderPerLedger(t *testing.T) {
	r := newRig(t, 1000, "", nil)
	o := Options{Config: r.e.Config(), Getenv: r.e.getenv}
	if e2, err := Open(t.Context(), o); !errors.Is(err, ErrLocked) {
		if e2 != nil {
			e2.Close()
		}
		t.Fatalf("second Open() = %v; want ErrLocked", err)
	}
	if err := r.e.DB().Ping(t.Context()); err != nil {
		t.Fatalf("the first engine's ledger after the refused Open: %v", err)
	}
	if err := r.e.Close(); err != nil {
		t.Fatal(err)
	}
	e2, err := Open(t.Context(), o)
	if err != nil {
		t.Fatalf("Open() after Close = %v", err)
	}
	e2.Close()
}

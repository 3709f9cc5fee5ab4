// Package control is the protocol of runnerd's control socket: one JSON
// request line from a command (`runnerd run`, pause, resume, resume-auth),
// one JSON answer line from the daemon, over a unix socket that only the
// daemon's user can open (mode 0600). What each operation does is the
// daemon's (cmd/runnerd); this package only carries it.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"

	"runnerd/internal/report"
)

// Request is one line sent to the daemon.
type Request struct {
	Op   string `json:"op"` // run | pause | resume | resume-auth | release-plan | ping
	Job  string `json:"job,omitempty"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// Response is the daemon's answer line.
type Response struct {
	OK    bool        `json:"ok"`
	Error string      `json:"error,omitempty"`
	Usage bool        `json:"usage,omitempty"` // the error is the caller's (unknown job, …): exit 2
	Was   string      `json:"was,omitempty"`   // resume-auth: the breaker was "open" or "closed"
	Run   *report.Run `json:"run,omitempty"`
	// Plan is a release's dry run (release-plan).
	Plan json.RawMessage `json:"plan,omitempty"`
}

// Handler answers one request.
type Handler func(ctx context.Context, req Request) Response

// Serve listens on path until stop is called (stop may be called more
// than once). Handlers get ctx: give it a context that outlives the stop
// signal, so a run handed over just before SIGTERM is finished like any run in
// flight. A stale socket file left by a crash is replaced (the caller holds the
// spender lock, so nobody else serves).
func Serve(ctx context.Context, path string, h Handler) (stop func(), err error) {
	os.Remove(path)
	old := syscall.Umask(0o177)
	ln, err := net.Listen("unix", path)
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				var req Request
				if err := json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&req); err != nil {
					json.NewEncoder(conn).Encode(Response{Error: "bad request: " + err.Error(), Usage: true})
					return
				}
				json.NewEncoder(conn).Encode(h(ctx, req))
			}()
		}
	}()
	var once sync.Once
	return func() {
		once.Do(func() {
			// Unlink first: a process looking for the daemon from now on
			// finds no socket rather than a listener about to go away.
			os.Remove(path)
			ln.(*net.UnixListener).SetUnlinkOnClose(false)
			ln.Close()
			<-done
		})
	}, nil
}

// Call sends req to a running daemon. ok is false when no daemon answers
// (no socket, or nobody listening), so the caller can work in-process.
func Call(ctx context.Context, path string, req Request) (resp Response, ok bool, err error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "unix", path)
	if err != nil {
		return resp, false, nil
	}
	defer conn.Close()
	go func() { <-ctx.Done(); conn.Close() }()
	if err := json.NewEncoder(conn).Encode(req); err != nil {
		return resp, true, fmt.Errorf("control socket %s: %w", path, err)
	}
	if err := json.NewDecoder(bufio.NewReader(conn)).Decode(&resp); err != nil {
		return resp, true, fmt.Errorf("control socket %s: no answer: %w", path, err)
	}
	return resp, true, nil
}

package main

// One budget spender: the daemon holds an exclusive lock beside the database and
// serves a unix control socket (mode 0600). `runnerd run`, `pause` and `resume`
// go through the socket when a daemon answers; otherwise they take the same lock
// themselves, so two processes never spend the rate or the allowance without
// knowing of each other.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"runnerd/internal/config"
)

// spenderLock is the exclusive flock held by whoever spends the budget.
type spenderLock struct{ f *os.File }

// lockFile returns the path of the spender lock for the database at dbPath.
func lockFile(dbPath string) string { return dbPath + ".lock" }

// acquireLock takes the exclusive lock. With wait, it blocks until the holder
// lets go (or ctx ends); without, it fails at once if someone holds it.
func acquireLock(ctx context.Context, dbPath string, wait bool) (*spenderLock, error) {
	path := lockFile(dbPath)
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return &spenderLock{f: f}, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if !wait {
			f.Close()
			return nil, errLocked
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

var errLocked = errors.New("another runnerd process is spending this account's budget (the lock beside the database is held)")

func (l *spenderLock) release() {
	if l != nil && l.f != nil {
		syscall.Flock(int(l.f.Fd()), syscall.LOCK_UN)
		l.f.Close()
	}
}

// socketPath is the control socket: $RUNTIME_DIRECTORY/runnerd.sock under
// systemd (one service, one database), else beside the database and named
// after it, as the lock is (DB.sock): two daemons whose databases share a
// directory must not take each other's socket.
func socketPath(getenv func(string) string, dbPath string) string {
	if d := getenv("RUNTIME_DIRECTORY"); d != "" {
		return filepath.Join(filepath.SplitList(d)[0], "runnerd.sock")
	}
	return dbPath + ".sock"
}

// handOverOrLock gives req to a running daemon, or takes the spender lock for
// this process. While someone else holds the lock, it keeps asking the socket
// too: a daemon that is starting (lock taken, socket not yet up) answers a
// moment later, and the command must not wait on the lock for the daemon's life.
func handOverOrLock(ctx context.Context, e *env, cfg *config.Config, req controlRequest) (resp controlResponse, viaDaemon bool, lock *spenderLock, err error) {
	sock := socketPath(e.getenv, cfg.Store.Path)
	for {
		if resp, ok, err := callControl(ctx, sock, req); err != nil || ok {
			return resp, ok, nil, err
		}
		l, err := acquireLock(ctx, cfg.Store.Path, false)
		if err == nil {
			return resp, false, l, nil
		}
		if !errors.Is(err, errLocked) {
			return resp, false, nil, err
		}
		select {
		case <-ctx.Done():
			return resp, false, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// controlRequest is one line sent to the daemon.
type controlRequest struct {
	Op   string `json:"op"` // run | pause | resume | resume-auth | ping
	Job  string `json:"job,omitempty"`
	From string `json:"from,omitempty"`
	To   string `json:"to,omitempty"`
}

// controlResponse is the daemon's answer line.
type controlResponse struct {
	OK    bool     `json:"ok"`
	Error string   `json:"error,omitempty"`
	Usage bool     `json:"usage,omitempty"` // the error is the caller's (unknown job, …): exit 2
	Was   string   `json:"was,omitempty"`   // resume-auth: the breaker was "open" or "closed"
	Run   *runJSON `json:"run,omitempty"`
}

type controlHandler func(ctx context.Context, req controlRequest) controlResponse

// serveControl listens on path until stop is called (stop may be called more
// than once). Handlers get ctx: give it a context that outlives the stop
// signal, so a run handed over just before SIGTERM is finished like any run in
// flight. A stale socket file left by a crash is replaced (the caller holds the
// spender lock, so nobody else serves).
func serveControl(ctx context.Context, path string, h controlHandler) (stop func(), err error) {
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
				var req controlRequest
				if err := json.NewDecoder(io.LimitReader(conn, 64<<10)).Decode(&req); err != nil {
					json.NewEncoder(conn).Encode(controlResponse{Error: "bad request: " + err.Error(), Usage: true})
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

// callControl sends req to a running daemon. ok is false when no daemon answers
// (no socket, or nobody listening), so the caller can work in-process.
func callControl(ctx context.Context, path string, req controlRequest) (resp controlResponse, ok bool, err error) {
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

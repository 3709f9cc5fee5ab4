package main

// One budget spender: the daemon holds the engine's spender lock beside the
// database and serves a unix control socket (mode 0600). `runnerd run`, `pause`
// and `resume` go through the socket when a daemon answers; otherwise they take
// the same lock themselves (engine.AcquireLock).

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/control"
	"runnerd/internal/engine"
	"runnerd/internal/logging"
)

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
func handOverOrLock(ctx context.Context, e *env, cfg *config.Config, req control.Request) (resp control.Response, viaDaemon bool, lock *engine.SpenderLock, err error) {
	sock := socketPath(e.getenv, cfg.Store.Path)
	for {
		if resp, ok, err := control.Call(ctx, sock, req); err != nil || ok {
			return resp, ok, nil, err
		}
		l, err := engine.AcquireLock(ctx, cfg.Store.Path, false)
		if err == nil {
			return resp, false, l, nil
		}
		if !errors.Is(err, engine.ErrLocked) {
			return resp, false, nil, err
		}
		select {
		case <-ctx.Done():
			return resp, false, nil, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// localDaemon is the engine a command runs itself when no daemon answered
// (handOverOrLock gave it the spender lock): logging as configured, no
// cron. The engine releases the lock when closed.
func localDaemon(ctx context.Context, e *env, cfg *config.Config, lock *engine.SpenderLock) (*daemon, error) {
	log, _, err := logging.New(e.stderr, cfg.Log.Level, cfg.Log.Format, e.getenv)
	if err != nil {
		lock.Release()
		return nil, usageError{err}
	}
	return newDaemon(ctx, e, cfg, log, daemonOptions{lock: lock})
}

package notify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// command runs a program with the event's JSON on its standard input. It gets
// no shell and a minimal environment: PATH and RUNNERD_EVENT only — never the
// daemon's own environment, which may hold the account's password.
type command struct {
	argv    []string
	path    string
	timeout time.Duration
}

func newCommand(line, path string, timeout time.Duration) (*command, error) {
	argv, err := SplitCommand(line)
	if err != nil {
		return nil, fmt.Errorf("command: %w", err)
	}
	return &command{argv: argv, path: path, timeout: timeout}, nil
}

// commandEnv is the whole environment a command target runs with.
func commandEnv(path, event string) []string {
	return []string{"PATH=" + path, "RUNNERD_EVENT=" + event}
}

func (c *command) send(ctx context.Context, q *queued) (int, bool, error) {
	prog, err := lookPath(c.argv[0], c.path)
	if err != nil {
		return 0, true, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, c.argv[1:]...)
	cmd.Args[0] = c.argv[0]
	cmd.Env = commandEnv(c.path, q.ev.Event)
	cmd.Dir = "/"
	cmd.Stdin = bytes.NewReader(q.body)
	var out capped
	cmd.Stdout, cmd.Stderr = &out, &out
	setGroup(cmd) // the timeout ends the program's children too
	cmd.WaitDelay = time.Second
	err = cmd.Run()
	switch {
	case err == nil:
		return 0, false, nil
	case ctx.Err() == context.DeadlineExceeded:
		return 0, true, fmt.Errorf("%s: killed after the %s timeout", c.argv[0], c.timeout)
	case errors.Is(ctx.Err(), context.Canceled):
		return 0, false, fmt.Errorf("%s: killed: runnerd is stopping", c.argv[0])
	}
	msg := fmt.Sprintf("%s: %v", c.argv[0], err)
	if last := out.lastLine(); last != "" {
		msg += ": " + last
	}
	return 0, true, errors.New(msg)
}

// lookPath finds file in path (not in the daemon's $PATH, which the command
// does not get either).
func lookPath(file, path string) (string, error) {
	if strings.Contains(file, "/") {
		return file, nil
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			continue
		}
		p := filepath.Join(dir, file)
		if fi, err := os.Stat(p); err == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: not found in PATH %s", file, path)
}

// capped keeps the first 4 KiB written to it: the program's output, for the
// error of a failed delivery.
type capped struct {
	mu  sync.Mutex
	buf []byte
}

func (c *capped) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if room := 4096 - len(c.buf); room > 0 {
		c.buf = append(c.buf, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (c *capped) lastLine() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := strings.Split(strings.TrimSpace(string(c.buf)), "\n")
	return capLine(strings.TrimSpace(lines[len(lines)-1]), 200)
}

func capLine(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && s[n]&0xC0 == 0x80 {
		n--
	}
	return s[:n] + "…"
}

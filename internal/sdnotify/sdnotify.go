// Package sdnotify is a small, dependency-free implementation of systemd's
// sd_notify protocol: READY=1, RELOADING=1, STOPPING=1, STATUS= and the
// watchdog, sent as datagrams to the unix socket named by $NOTIFY_SOCKET.
//
// Every method does nothing and returns nil when the process was not started
// by systemd with Type=notify (NOTIFY_SOCKET unset), so callers never need to
// check.
//
// See sd_notify(3) and systemd.service(5) (Type=notify-reload, WatchdogSec=).
package sdnotify

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Notifier sends state changes to the service manager. The zero value and a
// nil *Notifier are valid and do nothing.
type Notifier struct {
	// Logger reports watchdog ping failures and recoveries (one line per
	// transition, not per tick). Nil discards.
	Logger *slog.Logger

	addr *net.UnixAddr // nil: not under systemd, every method is a no-op

	// Clocks, replaced by tests.
	monotonic func() (time.Duration, error)                  // CLOCK_MONOTONIC since boot
	newTicker func(time.Duration) (<-chan time.Time, func()) // ticker channel and its stop
	after     func(time.Duration) <-chan time.Time           // one-shot timer (ping timeout)

	// testHookTickDone, when set, is called at the end of each watchdog tick
	// with whether WATCHDOG=1 was sent. Tests use it to step in lockstep.
	testHookTickDone func(sent bool)

	mu sync.Mutex // serialises datagrams so their order is the call order
}

// New returns a Notifier for the socket in getenv("NOTIFY_SOCKET"): a path, or
// an abstract socket name starting with "@". It returns a no-op Notifier when
// the variable is unset or empty.
func New(getenv func(string) string) *Notifier {
	n := &Notifier{
		monotonic: monotonicNow,
		newTicker: func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		},
		after: time.After,
	}
	if name := getenv("NOTIFY_SOCKET"); name != "" {
		// A leading '@' names an abstract socket; the net package turns it
		// into the leading NUL byte the kernel expects.
		n.addr = &net.UnixAddr{Name: name, Net: "unixgram"}
	}
	return n
}

// Enabled reports whether notifications are sent anywhere.
func (n *Notifier) Enabled() bool { return n != nil && n.addr != nil }

// Notify sends one datagram made of the given "KEY=value" assignments, one per
// line. It is the primitive behind the named methods.
func (n *Notifier) Notify(assignments ...string) error {
	if !n.Enabled() {
		return nil
	}
	msg := strings.Join(assignments, "\n")
	n.mu.Lock()
	defer n.mu.Unlock()
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(msg)); err != nil {
		return fmt.Errorf("sd_notify: %w", err)
	}
	return nil
}

// Ready tells systemd that start-up is complete (READY=1).
func (n *Notifier) Ready() error { return n.Notify("READY=1") }

// Reloading tells systemd that the configuration is being reloaded
// (RELOADING=1 with MONOTONIC_USEC, as Type=notify-reload requires). Send Ready
// when the reload is done, whether it succeeded or the old config was kept.
func (n *Notifier) Reloading() error {
	if !n.Enabled() {
		return nil
	}
	mono, err := n.monotonicClock()()
	if err != nil {
		return fmt.Errorf("sd_notify: read CLOCK_MONOTONIC: %w", err)
	}
	return n.Notify("RELOADING=1", "MONOTONIC_USEC="+strconv.FormatInt(mono.Microseconds(), 10))
}

// Stopping tells systemd that the service is shutting down (STOPPING=1).
func (n *Notifier) Stopping() error { return n.Notify("STOPPING=1") }

// Status sets the free-form one-line status shown by systemctl status.
// Newlines are replaced by spaces: a newline would end the assignment.
func (n *Notifier) Status(s string) error {
	s = strings.NewReplacer("\r\n", " ", "\n", " ", "\r", " ").Replace(s)
	return n.Notify("STATUS=" + s)
}

// Watchdog sends one keep-alive (WATCHDOG=1).
func (n *Notifier) Watchdog() error { return n.Notify("WATCHDOG=1") }

// WatchdogInterval returns how often to call Watchdog: half of WATCHDOG_USEC,
// as sd_watchdog_enabled(3) advises. It returns 0 and no error when the
// watchdog is off: WATCHDOG_USEC unset, or WATCHDOG_PID set to another
// process (the variables were inherited by a child).
func WatchdogInterval(getenv func(string) string) (time.Duration, error) {
	usec := getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if pid := getenv("WATCHDOG_PID"); pid != "" {
		p, err := strconv.Atoi(pid)
		if err != nil || p <= 0 {
			return 0, fmt.Errorf("sd_notify: WATCHDOG_PID=%q: not a process id", pid)
		}
		if p != os.Getpid() {
			return 0, nil
		}
	}
	u, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || u == 0 {
		return 0, fmt.Errorf("sd_notify: WATCHDOG_USEC=%q: not a positive number of microseconds", usec)
	}
	return time.Duration(u) * time.Microsecond / 2, nil
}

// errPingTimeout is the error recorded when a ping outlives its timeout.
var errPingTimeout = errors.New("ping timed out")

// RunWatchdog sends WATCHDOG=1 every interval, but only when ping succeeded
// on that tick: a stalled or failing store stops the keep-alives, and systemd
// restarts the service after WatchdogSec. Each ping gets a context that is
// cancelled after half the interval. A ping that ignores its context is
// waited for (up to the same timeout) on later ticks, which send nothing
// until it has returned, so at most one ping is ever outstanding.
//
// RunWatchdog returns nil when ctx is done, and at once when the Notifier is
// disabled or interval is not positive.
func (n *Notifier) RunWatchdog(ctx context.Context, interval time.Duration, ping func(context.Context) error) error {
	if !n.Enabled() || interval <= 0 {
		return nil
	}
	log := n.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	newTicker, after := n.newTicker, n.after
	if newTicker == nil {
		newTicker = func(d time.Duration) (<-chan time.Time, func()) {
			t := time.NewTicker(d)
			return t.C, t.Stop
		}
	}
	if after == nil {
		after = time.After
	}
	timeout := interval / 2

	tick, stop := newTicker(interval)
	defer stop()

	var (
		stuck   chan error // the outstanding ping that outlived its timeout, if any
		failing bool       // last tick sent nothing; log transitions only
	)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick:
		}
		deadline := after(timeout)
		err := func() error {
			if stuck != nil {
				select {
				case <-stuck: // it finished; its result is stale
					stuck = nil
				case <-deadline:
					return errPingTimeout
				case <-ctx.Done():
					return ctx.Err()
				}
			}
			pctx, cancel := context.WithCancel(ctx)
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- ping(pctx) }()
			select {
			case err := <-done:
				return err
			case <-deadline:
				stuck = done
				return errPingTimeout
			case <-ctx.Done():
				stuck = done
				return ctx.Err()
			}
		}()
		if ctx.Err() != nil {
			return nil
		}
		sent := false
		if err == nil {
			if serr := n.Watchdog(); serr != nil {
				err = serr
			} else {
				sent = true
			}
		}
		switch {
		case err != nil && !failing:
			log.Warn("watchdog: not sending keep-alive", "err", err)
			failing = true
		case err == nil && failing:
			log.Info("watchdog: keep-alive resumed")
			failing = false
		}
		if n.testHookTickDone != nil {
			n.testHookTickDone(sent)
		}
	}
}

// monotonicClock returns the clock used for MONOTONIC_USEC.
func (n *Notifier) monotonicClock() func() (time.Duration, error) {
	if n.monotonic != nil {
		return n.monotonic
	}
	return monotonicNow
}

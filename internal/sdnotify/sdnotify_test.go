package sdnotify

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// listen opens a fake NOTIFY_SOCKET: a unixgram listener at name (a path, or
// "@abstract"). It is closed at the end of the test.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("ListenUnixgram(%q): %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// recv reads one datagram. The deadline only matters when a message the test
// expects never comes.
func recv(t *testing.T, conn *net.UnixConn) string {
	t.Helper()
	if err := conn.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	k, err := conn.Read(buf)
	if err != nil {
		t.Fatalf("read notify socket: %v", err)
	}
	return string(buf[:k])
}

// env returns a getenv over a fixed map.
func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func sockPath(t *testing.T) string {
	t.Helper()
	return filepath.Join(t.TempDir(), "notify.sock")
}

func TestDisabled(t *testing.T) {
	for _, n := range []*Notifier{nil, {}, New(env(nil)), New(env(map[string]string{"NOTIFY_SOCKET": ""}))} {
		if n.Enabled() {
			t.Errorf("Enabled() = true for %+v; want false", n)
		}
		for name, f := range map[string]func() error{
			"Ready":     n.Ready,
			"Reloading": n.Reloading,
			"Stopping":  n.Stopping,
			"Watchdog":  n.Watchdog,
			"Status":    func() error { return n.Status("x") },
			"RunWatchdog": func() error {
				return n.RunWatchdog(context.Background(), time.Second, func(context.Context) error {
					t.Error("disabled notifier pinged")
					return nil
				})
			},
		} {
			if err := f(); err != nil {
				t.Errorf("%s() on a disabled notifier = %v; want nil", name, err)
			}
		}
	}
}

func TestMessageOrder(t *testing.T) {
	tests := []struct {
		name string
		sock func(t *testing.T) string
	}{
		{"path", sockPath},
		{"abstract", func(t *testing.T) string {
			return fmt.Sprintf("@runnerd-sdnotify-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := tt.sock(t)
			conn := listen(t, name)
			n := New(env(map[string]string{"NOTIFY_SOCKET": name}))
			if !n.Enabled() {
				t.Fatalf("New(NOTIFY_SOCKET=%q).Enabled() = false; want true", name)
			}
			n.monotonic = func() (time.Duration, error) { return 12345678 * time.Microsecond, nil }

			steps := []struct {
				send func() error
				want string
			}{
				{n.Ready, "READY=1"},
				{func() error { return n.Status("3 jobs, next promote-orders at 02:00") }, "STATUS=3 jobs, next promote-orders at 02:00"},
				{func() error { return n.Status("two\nlines\r\n") }, "STATUS=two lines "},
				{n.Reloading, "RELOADING=1\nMONOTONIC_USEC=12345678"},
				{n.Ready, "READY=1"},
				{n.Watchdog, "WATCHDOG=1"},
				{n.Stopping, "STOPPING=1"},
			}
			for i, s := range steps {
				if err := s.send(); err != nil {
					t.Fatalf("step %d: send: %v", i, err)
				}
			}
			for i, s := range steps {
				if got := recv(t, conn); got != s.want {
					t.Errorf("message %d = %q; want %q", i, got, s.want)
				}
			}
		})
	}
}

func TestReloadingRealClock(t *testing.T) {
	name := sockPath(t)
	conn := listen(t, name)
	n := New(env(map[string]string{"NOTIFY_SOCKET": name}))
	before, err := monotonicNow()
	if err != nil {
		t.Fatalf("monotonicNow() error: %v", err)
	}
	if err := n.Reloading(); err != nil {
		t.Fatalf("Reloading() = %v", err)
	}
	after, _ := monotonicNow()
	msg := recv(t, conn)
	lines := strings.Split(msg, "\n")
	if len(lines) != 2 || lines[0] != "RELOADING=1" || !strings.HasPrefix(lines[1], "MONOTONIC_USEC=") {
		t.Fatalf("Reloading() sent %q; want RELOADING=1 and MONOTONIC_USEC=N", msg)
	}
	usec, err := strconv.ParseInt(strings.TrimPrefix(lines[1], "MONOTONIC_USEC="), 10, 64)
	if err != nil {
		t.Fatalf("MONOTONIC_USEC in %q: %v", msg, err)
	}
	if usec < before.Microseconds() || usec > after.Microseconds() {
		t.Errorf("MONOTONIC_USEC = %d; want within [%d, %d] (CLOCK_MONOTONIC around the call)", usec, before.Microseconds(), after.Microseconds())
	}
}

func TestNotifyNoListener(t *testing.T) {
	n := New(env(map[string]string{"NOTIFY_SOCKET": sockPath(t)}))
	if err := n.Ready(); err == nil {
		t.Error("Ready() with no listener = nil; want an error")
	}
}

func TestWatchdogInterval(t *testing.T) {
	pid := strconv.Itoa(os.Getpid())
	tests := []struct {
		name    string
		env     map[string]string
		want    time.Duration
		wantErr bool
	}{
		{name: "unset", env: nil, want: 0},
		{name: "usec only", env: map[string]string{"WATCHDOG_USEC": "60000000"}, want: 30 * time.Second},
		{name: "our pid", env: map[string]string{"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": pid}, want: 30 * time.Second},
		{name: "other pid", env: map[string]string{"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "1"}, want: 0},
		{name: "odd usec", env: map[string]string{"WATCHDOG_USEC": "3"}, want: 1500 * time.Nanosecond},
		{name: "zero", env: map[string]string{"WATCHDOG_USEC": "0"}, wantErr: true},
		{name: "negative", env: map[string]string{"WATCHDOG_USEC": "-5"}, wantErr: true},
		{name: "garbage", env: map[string]string{"WATCHDOG_USEC": "60s"}, wantErr: true},
		{name: "bad pid", env: map[string]string{"WATCHDOG_USEC": "60000000", "WATCHDOG_PID": "me"}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := WatchdogInterval(env(tt.env))
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Errorf("WatchdogInterval(%v) = %v, %v; want %v, error %v", tt.env, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

// fakeClock drives RunWatchdog in lockstep: the test sends each tick, is
// handed each ping-timeout timer (and may fire it), and learns when the tick
// is done and whether WATCHDOG=1 was sent.
type fakeClock struct {
	ticks    chan time.Time
	timers   chan chan time.Time
	done     chan bool
	interval time.Duration
	timeout  time.Duration
	stopped  atomic.Bool
}

func newFakeClock(n *Notifier) *fakeClock {
	c := &fakeClock{ticks: make(chan time.Time), timers: make(chan chan time.Time), done: make(chan bool)}
	n.newTicker = func(d time.Duration) (<-chan time.Time, func()) {
		c.interval = d
		return c.ticks, func() { c.stopped.Store(true) }
	}
	n.after = func(d time.Duration) <-chan time.Time {
		c.timeout = d
		ch := make(chan time.Time, 1)
		c.timers <- ch
		return ch
	}
	n.testHookTickDone = func(sent bool) { c.done <- sent }
	return c
}

// step sends one tick; fire makes the ping time out, after calling
// beforeFire if it is not nil. It returns whether the tick sent WATCHDOG=1.
func (c *fakeClock) step(fire bool, beforeFire func()) bool {
	c.ticks <- time.Time{}
	tm := <-c.timers
	if fire {
		if beforeFire != nil {
			beforeFire()
		}
		tm <- time.Time{}
	}
	return <-c.done
}

// watchdogHarness starts RunWatchdog with a fake clock and socket.
type watchdogHarness struct {
	n      *Notifier
	conn   *net.UnixConn
	clock  *fakeClock
	cancel context.CancelFunc
	ret    chan error
}

func startWatchdog(t *testing.T, interval time.Duration, ping func(context.Context) error, log *slog.Logger) *watchdogHarness {
	t.Helper()
	name := sockPath(t)
	h := &watchdogHarness{conn: listen(t, name), n: New(env(map[string]string{"NOTIFY_SOCKET": name}))}
	h.n.Logger = log
	h.clock = newFakeClock(h.n)
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	h.ret = make(chan error, 1)
	go func() { h.ret <- h.n.RunWatchdog(ctx, interval, ping) }()
	t.Cleanup(func() {
		cancel()
		if err := <-h.ret; err != nil {
			t.Errorf("RunWatchdog() = %v; want nil after cancel", err)
		}
		if !h.clock.stopped.Load() {
			t.Error("RunWatchdog returned without stopping its ticker")
		}
	})
	return h
}

// watchdogs counts the WATCHDOG=1 datagrams received since the last call: it
// sends a marker and reads up to it.
func (h *watchdogHarness) watchdogs(t *testing.T, i int) int {
	t.Helper()
	marker := fmt.Sprintf("tick %d", i)
	if err := h.n.Status(marker); err != nil {
		t.Fatal(err)
	}
	count := 0
	for {
		switch msg := recv(t, h.conn); msg {
		case "STATUS=" + marker:
			return count
		case "WATCHDOG=1":
			count++
		default:
			t.Fatalf("unexpected notification %q", msg)
		}
	}
}

func TestRunWatchdogCadence(t *testing.T) {
	var pings atomic.Int64
	h := startWatchdog(t, 30*time.Second, func(ctx context.Context) error {
		pings.Add(1)
		return ctx.Err()
	}, nil)
	const n = 7
	total := 0
	for i := range n {
		if !h.clock.step(false, nil) {
			t.Errorf("tick %d: no keep-alive with a healthy ping", i)
		}
		total += h.watchdogs(t, i)
	}
	if total != n {
		t.Errorf("WATCHDOG=1 count over %d ticks = %d; want %d", n, total, n)
	}
	if got := pings.Load(); got != n {
		t.Errorf("pings over %d ticks = %d; want %d", n, got, n)
	}
	if h.clock.interval != 30*time.Second {
		t.Errorf("ticker interval = %v; want 30s", h.clock.interval)
	}
	if h.clock.timeout <= 0 || h.clock.timeout >= h.clock.interval {
		t.Errorf("ping timeout = %v; want in (0, %v)", h.clock.timeout, h.clock.interval)
	}
}

// TestRunWatchdogStall walks the store through healthy, failing, blocked
// (honouring its context), stuck (ignoring it) and healthy again, and checks
// on the socket that keep-alives stop while it is not healthy and resume
// after, with one log line per transition.
func TestRunWatchdogStall(t *testing.T) {
	type mode int
	const (
		ok mode = iota
		fail
		block   // returns when its context is cancelled
		stuckMd // ignores its context until released
	)
	var (
		cur     atomic.Int64
		pings   atomic.Int64
		release = make(chan struct{})
		entered = make(chan struct{}, 100)
	)
	ping := func(ctx context.Context) error {
		pings.Add(1)
		entered <- struct{}{}
		switch mode(cur.Load()) {
		case fail:
			return errors.New("database is locked")
		case block:
			<-ctx.Done()
			return ctx.Err()
		case stuckMd:
			<-release
			return nil
		}
		return nil
	}
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		},
	}))
	h := startWatchdog(t, 10*time.Second, ping, log)

	steps := []struct {
		name      string
		mode      mode
		fire      bool // the ping timeout expires
		release   bool // release the stuck ping before this tick
		want      bool // WATCHDOG=1 sent
		wantPings int64
	}{
		{name: "healthy", mode: ok, want: true, wantPings: 1},
		{name: "healthy again", mode: ok, want: true, wantPings: 2},
		{name: "fails", mode: fail, want: false, wantPings: 3},
		{name: "still fails", mode: fail, want: false, wantPings: 4},
		{name: "recovers", mode: ok, want: true, wantPings: 5},
		{name: "blocks", mode: block, fire: true, want: false, wantPings: 6},
		{name: "blocks again", mode: block, fire: true, want: false, wantPings: 7},
		{name: "unblocked", mode: ok, want: true, wantPings: 8},
		{name: "stuck", mode: stuckMd, fire: true, want: false, wantPings: 9},
		// The stuck ping is still outstanding: no new ping, no keep-alive.
		{name: "still stuck", mode: ok, fire: true, want: false, wantPings: 9},
		{name: "still stuck 2", mode: ok, fire: true, want: false, wantPings: 9},
		{name: "released", mode: ok, release: true, want: true, wantPings: 10},
		{name: "healthy at the end", mode: ok, want: true, wantPings: 11},
	}
	for i, s := range steps {
		cur.Store(int64(s.mode))
		if s.release {
			close(release)
		}
		// Every earlier ping has begun by now: forget their signals.
	drain:
		for {
			select {
			case <-entered:
			default:
				break drain
			}
		}
		before := pings.Load()
		// A timed-out tick that starts a ping: let the ping begin before
		// the timeout fires, so the count below does not race it.
		sent := h.clock.step(s.fire, func() {
			if s.wantPings > before {
				<-entered
			}
		})
		got := h.watchdogs(t, i)
		want := 0
		if s.want {
			want = 1
		}
		if sent != s.want || got != want {
			t.Errorf("tick %d (%s): sent %v, %d WATCHDOG=1 on the socket; want %v, %d", i, s.name, sent, got, s.want, want)
		}
		if p := pings.Load(); p != s.wantPings {
			t.Errorf("tick %d (%s): %d pings so far; want %d", i, s.name, p, s.wantPings)
		}
	}
	// Three outages, three recoveries: six lines, not one per tick.
	out := logs.String()
	if got := strings.Count(out, "level=WARN"); got != 3 {
		t.Errorf("warnings logged = %d; want 3 (one per outage)\n%s", got, out)
	}
	if got := strings.Count(out, "keep-alive resumed"); got != 3 {
		t.Errorf("recoveries logged = %d; want 3\n%s", got, out)
	}
	for _, want := range []string{"database is locked", errPingTimeout.Error()} {
		if !strings.Contains(out, want) {
			t.Errorf("log does not mention %q:\n%s", want, out)
		}
	}
}

// TestRunWatchdogCancelWhilePinging checks that RunWatchdog returns when its
// context ends in the middle of a ping that never returns.
func TestRunWatchdogCancelWhilePinging(t *testing.T) {
	started := make(chan struct{})
	release := make(chan struct{})
	defer close(release)
	h := startWatchdog(t, time.Second, func(context.Context) error {
		close(started)
		<-release
		return nil
	}, nil)
	h.clock.ticks <- time.Time{}
	<-h.clock.timers
	<-started
	h.cancel()
	if err := <-h.ret; err != nil {
		t.Errorf("RunWatchdog() = %v; want nil", err)
	}
	h.ret <- nil // for the cleanup's check
	if got := h.watchdogs(t, 0); got != 0 {
		t.Errorf("WATCHDOG=1 sent = %d; want 0", got)
	}
}

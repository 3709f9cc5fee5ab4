package notify

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"runnerd/internal/config"
)

func commandConfig(name, line string, timeout time.Duration) config.Notify {
	return config.Notify{
		Name: name, Kind: config.NotifyCommand, Command: line,
		Events: append([]string(nil), config.Events...), MinPriority: "low",
		Timeout: config.Duration{Duration: timeout},
	}
}

func needSh(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skip("no /bin/sh")
	}
}

// TestCommandStdinAndEnv: the program gets the event on stdin and an
// environment of PATH and RUNNERD_EVENT only; the daemon's secrets stay out.
func TestCommandStdinAndEnv(t *testing.T) {
	needSh(t)
	t.Setenv("RUNNERD_PASSWORD", canaryPassword)
	t.Setenv("BOOMI_TOKEN", canaryPassword)
	dir := t.TempDir()
	line := `/bin/sh -c 'cat > "$0/stdin.json"; env > "$0/env.txt"' ` + quote(dir)
	rec := newMemRecorder()
	n := newTestNotifier(t, Options{
		Targets:  []Target{{Config: commandConfig("cmd", line, 10*time.Second), Secret: config.NewSecret(canarySecret)}},
		Recorder: rec, Path: "/usr/bin:/bin",
	})
	n.RunOutcome(failedRun("orders", 5))
	if d := rec.next(t); d.Status != DeliverySent {
		t.Fatalf("delivery = %+v; want sent", d)
	}
	stdin, err := os.ReadFile(filepath.Join(dir, "stdin.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(stdin), `"event":"failed"`) || !strings.Contains(string(stdin), `"job":"orders"`) {
		t.Errorf("stdin = %s; want the failed event of job orders", stdin)
	}
	env, err := os.ReadFile(filepath.Join(dir, "env.txt"))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{canaryPassword, canarySecret, "RUNNERD_PASSWORD", "HOME=", "BOOMI_TOKEN"} {
		if strings.Contains(string(env), bad) || strings.Contains(string(stdin), bad) {
			t.Errorf("the command saw %q:\nenv:\n%s\nstdin: %s", bad, env, stdin)
		}
	}
	for _, want := range []string{"PATH=/usr/bin:/bin", "RUNNERD_EVENT=failed"} {
		if !slices.Contains(strings.Split(string(env), "\n"), want) {
			t.Errorf("env = %q; want a line %q", env, want)
		}
	}
	// The whole environment, but for what sh itself adds.
	for _, l := range strings.Split(strings.TrimSpace(string(env)), "\n") {
		k, _, _ := strings.Cut(l, "=")
		if !slices.Contains([]string{"PATH", "RUNNERD_EVENT", "PWD", "SHLVL", "_", "OLDPWD"}, k) {
			t.Errorf("the command's environment holds %q; want PATH and RUNNERD_EVENT only", k)
		}
	}
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// TestCommandTimeout: a program that overruns its timeout is killed, with the
// children it started.
func TestCommandTimeout(t *testing.T) {
	needSh(t)
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child.pid")
	line := `/bin/sh -c 'sleep 60 & echo $! > "$0"; wait' ` + quote(pidFile)
	rec := newMemRecorder()
	n := newTestNotifier(t, Options{
		Targets:  []Target{{Config: commandConfig("slow", line, 300*time.Millisecond)}},
		Recorder: rec, Attempts: 1,
	})
	n.AuthFailed("HTTP 401")
	d := rec.next(t)
	if d.Status != DeliveryFailed || !strings.Contains(d.Error, "killed after the 300ms timeout") {
		t.Errorf("delivery = %+v; want failed: killed after the 300ms timeout", d)
	}
	b, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	// The child (sleep 60) is gone, or a zombie waiting for a reaper.
	deadline := time.Now().Add(5 * time.Second)
	for alive(pid) {
		if time.Now().After(deadline) {
			t.Fatalf("the command's child %d still runs after the timeout", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func alive(pid int) bool {
	if err := syscall.Kill(pid, 0); err != nil {
		return false
	}
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	// pid (comm) STATE ...
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 && i+2 < len(s) {
		return s[i+2] != 'Z'
	}
	return true
}

func TestCommandFailureRetried(t *testing.T) {
	needSh(t)
	dir := t.TempDir()
	line := `/bin/sh -c 'echo x >> "$0"; echo boom >&2; exit 3' ` + quote(filepath.Join(dir, "count"))
	rec := newMemRecorder()
	n := newTestNotifier(t, Options{Targets: []Target{{Config: commandConfig("bad", line, 10*time.Second)}}, Recorder: rec, Attempts: 3})
	n.AuthFailed("HTTP 401")
	d := rec.next(t)
	if d.Status != DeliveryFailed || d.Attempts != 3 || !strings.Contains(d.Error, "exit status 3: boom") {
		t.Errorf("delivery = %+v; want failed after 3 attempts with exit status 3: boom", d)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "count"))
	if got := strings.Count(string(b), "x"); got != 3 {
		t.Errorf("the command ran %d times; want 3", got)
	}
}

func TestCommandNotFound(t *testing.T) {
	rec := newMemRecorder()
	n := newTestNotifier(t, Options{Targets: []Target{{Config: commandConfig("missing", "no-such-program-xyz --flag", time.Second)}},
		Recorder: rec, Attempts: 1, Path: t.TempDir()})
	n.AuthFailed("HTTP 401")
	if d := rec.next(t); d.Status != DeliveryFailed || !strings.Contains(d.Error, "not found") {
		t.Errorf("delivery = %+v; want failed: not found", d)
	}
}

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{"logger -t runnerd-notify", []string{"logger", "-t", "runnerd-notify"}, false},
		{"  a\t b  ", []string{"a", "b"}, false},
		{`/bin/sh -c 'echo $HOME; exit 1'`, []string{"/bin/sh", "-c", "echo $HOME; exit 1"}, false},
		{`a "b c" d`, []string{"a", "b c", "d"}, false},
		{`a "say \"hi\" \\ \n"`, []string{"a", `say "hi" \ \n`}, false},
		{`a b\ c`, []string{"a", "b c"}, false},
		{`a ''`, []string{"a", ""}, false},
		{`x'y'"z"`, []string{"xyz"}, false},
		{`*.txt ~ $X`, []string{"*.txt", "~", "$X"}, false},
		{`a 'b`, nil, true},
		{`a "b`, nil, true},
		{`a \`, nil, true},
		{"   ", nil, true},
		{"", nil, true},
	}
	for _, tt := range tests {
		got, err := SplitCommand(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

// FuzzSplitCommand: no panic, and words quoted back split to the same words.
func FuzzSplitCommand(f *testing.F) {
	for _, s := range []string{"logger -t x", `a "b \" c" 'd'`, `a\ b`, `'`, `"\`, "\t\n"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		words, err := SplitCommand(s)
		if err != nil {
			return
		}
		var quoted []string
		for _, w := range words {
			quoted = append(quoted, quote(w))
		}
		again, err := SplitCommand(strings.Join(quoted, " "))
		if err != nil || !slices.Equal(again, words) {
			t.Errorf("SplitCommand(quoted %q) = %q, %v; want %q", words, again, err, words)
		}
	})
}

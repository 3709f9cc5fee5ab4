package main

// Operations end to end: the real runnerd binary (this test binary acting as
// runnerd, see TestMain) as a child process, against atomsim on 127.0.0.1,
// driven the way systemd and an operator drive it — sd_notify on a unixgram
// NOTIFY_SOCKET, SIGHUP, SIGTERM, SIGKILL, the control socket — with the API
// password a canary that must appear in no output.

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"runnerd"

	"golang.org/x/sys/unix"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

// canary is the API password in every ops test: the simulator accepts only it,
// and it must never show up in an output (stdout, stderr, logs, the database,
// exports, the status page, /metrics).
const canary = "canary-s3cret-XYZ"

// opsEnv is one test's world: a simulator, a directory with a database and a
// 0600 password file, and every output seen, for the canary check at the end.
type opsEnv struct {
	t      *testing.T
	dir    string
	sim    *atomsim.Server
	url    string // API base, without the account
	secret string // the password file

	mu      sync.Mutex
	outputs map[string][]byte // name → output, checked for the canary at cleanup
}

type simOpts struct {
	atomsim.Options
	// wrap, when set, sits in front of the simulator (latency, signals).
	wrap func(http.Handler) http.Handler
}

// newOps starts a simulator whose password is the canary and prepares a
// working directory. At cleanup it checks that the canary appears in no output
// and in no file of the directory (except the password file itself).
func newOps(t *testing.T, so simOpts) *opsEnv {
	t.Helper()
	o := &opsEnv{t: t, dir: t.TempDir(), outputs: map[string][]byte{}}
	so.Password = canary
	if so.AuditLogs == 0 {
		so.AuditLogs = -1
	}
	if so.ExecutionRecords == 0 {
		so.ExecutionRecords = 50
	}
	if so.Events == 0 {
		so.Events = -1
	}
	if so.RecordDelay == 0 {
		so.RecordDelay = 200 * time.Millisecond
	}
	o.sim = atomsim.New(so.Options)
	var h http.Handler = o.sim
	if so.wrap != nil {
		h = so.wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	o.url = srv.URL + "/api/rest/v1"
	o.secret = filepath.Join(o.dir, "boomi.secret")
	if err := os.WriteFile(o.secret, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.checkCanary)
	return o
}

// record keeps an output for the canary check.
func (o *opsEnv) record(name string, b []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.outputs[fmt.Sprintf("%03d %s", len(o.outputs), name)] = append([]byte(nil), b...)
}

// checkCanary fails the test if the canary is in any recorded output or in any
// file under the working directory other than the password file.
func (o *opsEnv) checkCanary() {
	t := o.t
	t.Helper()
	o.mu.Lock()
	defer o.mu.Unlock()
	for name, b := range o.outputs {
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("canary secret in output %s", name)
		}
	}
	files := 0
	err := filepath.WalkDir(o.dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path == o.secret || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		if bytes.Contains(b, []byte(canary)) {
			t.Errorf("canary secret in file %s", strings.TrimPrefix(path, o.dir+"/"))
		}
		return nil
	})
	if err != nil {
		t.Errorf("canary check: %v", err)
	}
	t.Logf("canary check: %d outputs and %d files clean", len(o.outputs), files)
}

// path returns name inside the working directory.
func (o *opsEnv) path(name string) string { return filepath.Join(o.dir, name) }

// writeConfig writes a configuration: the account (password_file, the
// canary), the budget, the store in the working directory, and body (log,
// http and jobs sections).
func (o *opsEnv) writeConfig(name string, daily, reserve int, rate float64, body string) string {
	o.t.Helper()
	cfg := fmt.Sprintf(`[account]
id = "sim-account"
url = %q
user = "runnerd@sim"
password_file = %q

[budget]
daily_limit = %d
reserve = %d
rate = %g

[store]
path = %q

%s
`, o.url, o.secret, daily, reserve, rate, o.path("runnerd.db"), body)
	p := o.path(name)
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		o.t.Fatal(err)
	}
	return p
}

// runnerdBin is the test binary installed as runnerd in $PATH by
// testscript.Main (see TestMain).
func runnerdBin(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("runnerd")
	if err != nil {
		t.Fatalf("runnerd not in PATH (TestMain installs it): %v", err)
	}
	return p
}

// childEnv is the environment of a child runnerd: this process's, without
// anything systemd or an outer runnerd might have set, plus extra.
func childEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID", "JOURNAL_STREAM", "RUNTIME_DIRECTORY",
			"STATE_DIRECTORY", "CREDENTIALS_DIRECTORY", "RUNNERD_CONFIG", "RUNNERD_PASSWORD", "LISTEN_FDS":
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// cliResult is one finished runnerd command.
type cliResult struct {
	stdout, stderr string
	code           int
}

// runnerd runs a runnerd command to completion and records its output.
func (o *opsEnv) runnerd(env []string, args ...string) cliResult {
	o.t.Helper()
	return o.wait(o.start(env, args...))
}

// bgCmd is a runnerd command running in the background.
type bgCmd struct {
	cmd            *exec.Cmd
	args           []string
	stdout, stderr bytes.Buffer
	done           chan struct{}
	err            error
}

func (o *opsEnv) start(env []string, args ...string) *bgCmd {
	o.t.Helper()
	b := &bgCmd{args: args, done: make(chan struct{})}
	b.cmd = exec.Command(runnerdBin(o.t), args...)
	b.cmd.Dir = o.dir
	b.cmd.Env = childEnv(env...)
	b.cmd.Stdout, b.cmd.Stderr = &b.stdout, &b.stderr
	if err := b.cmd.Start(); err != nil {
		o.t.Fatalf("start runnerd %s: %v", strings.Join(args, " "), err)
	}
	go func() { b.err = b.cmd.Wait(); close(b.done) }()
	o.t.Cleanup(func() {
		select {
		case <-b.done:
		default:
			b.cmd.Process.Kill()
			<-b.done
		}
	})
	return b
}

func (o *opsEnv) wait(b *bgCmd) cliResult {
	o.t.Helper()
	select {
	case <-b.done:
	case <-time.After(60 * time.Second):
		b.cmd.Process.Kill()
		<-b.done
		o.t.Fatalf("runnerd %s: still running after 60s; killed", strings.Join(b.args, " "))
	}
	r := cliResult{stdout: b.stdout.String(), stderr: b.stderr.String(), code: b.cmd.ProcessState.ExitCode()}
	name := "runnerd " + strings.Join(b.args, " ")
	o.record(name+" stdout", []byte(r.stdout))
	o.record(name+" stderr", []byte(r.stderr))
	o.t.Logf("$ %s → exit %d\n%s%s", name, r.code, r.stdout, r.stderr)
	return r
}

// daemonProc is `runnerd serve` as a child process with a fake NOTIFY_SOCKET.
type daemonProc struct {
	o       *opsEnv
	cmd     *exec.Cmd
	logPath string
	msgs    chan string // sd_notify datagrams, in arrival order
	done    chan struct{}
}

// serve starts `runnerd serve -config cfg` with NOTIFY_SOCKET set, stderr in
// a log file, and waits for READY=1.
func (o *opsEnv) serve(cfg string, env ...string) *daemonProc {
	o.t.Helper()
	d := o.startServe(cfg, env...)
	d.expect("READY=1", 30*time.Second)
	return d
}

func (o *opsEnv) startServe(cfg string, env ...string) *daemonProc {
	t := o.t
	t.Helper()
	// A unix socket path must be short (108 bytes): not under t.TempDir().
	sdir, err := os.MkdirTemp("", "sdn")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sdir) })
	sock := filepath.Join(sdir, "notify")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	d := &daemonProc{o: o, msgs: make(chan string, 1000), done: make(chan struct{})}
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			d.msgs <- string(buf[:n])
		}
	}()
	n := 0
	for {
		d.logPath = o.path(fmt.Sprintf("serve-%d.log", n))
		if _, err := os.Stat(d.logPath); err != nil {
			break
		}
		n++
	}
	logf, err := os.Create(d.logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	// JOURNAL_STREAM=log stands for the log file's own device:inode, as
	// systemd sets it for the stream it connects to stderr.
	for i, kv := range env {
		if kv == "JOURNAL_STREAM=log" {
			var st syscall.Stat_t
			if err := syscall.Fstat(int(logf.Fd()), &st); err != nil {
				t.Fatal(err)
			}
			env[i] = fmt.Sprintf("JOURNAL_STREAM=%d:%d", st.Dev, st.Ino)
		}
	}
	d.cmd = exec.Command(runnerdBin(t), "serve", "-config", cfg)
	d.cmd.Dir = o.dir
	d.cmd.Env = childEnv(append([]string{"NOTIFY_SOCKET=" + sock}, env...)...)
	d.cmd.Stdout, d.cmd.Stderr = logf, logf // a file: every line is there before the next step
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.cmd.Wait(); close(d.done) }()
	t.Cleanup(func() {
		select {
		case <-d.done:
		default:
			d.cmd.Process.Kill()
			<-d.done
		}
		o.record(filepath.Base(d.logPath), []byte(d.log()))
	})
	return d
}

// log returns the daemon's stderr so far.
func (d *daemonProc) log() string {
	b, err := os.ReadFile(d.logPath)
	if err != nil {
		d.o.t.Fatal(err)
	}
	return string(b)
}

// next returns the next sd_notify message other than WATCHDOG=1 (counted in
// *pings when pings is not nil).
func (d *daemonProc) next(timeout time.Duration, pings *int) string {
	d.o.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-d.msgs:
			if m == "WATCHDOG=1" {
				if pings != nil {
					*pings++
				}
				continue
			}
			return m
		case <-d.done:
			// The process is gone; drain what it sent.
			select {
			case m := <-d.msgs:
				if m == "WATCHDOG=1" {
					continue
				}
				return m
			case <-time.After(100 * time.Millisecond):
			}
			d.o.t.Fatalf("daemon exited (%v) while waiting for an sd_notify message; log:\n%s", d.cmd.ProcessState, d.log())
		case <-deadline:
			d.o.t.Fatalf("no sd_notify message within %s; log:\n%s", timeout, d.log())
		}
	}
}

// expect waits for the next non-watchdog message and requires it to match want
// (a regular expression, anchored).
func (d *daemonProc) expect(want string, timeout time.Duration) string {
	d.o.t.Helper()
	m := d.next(timeout, nil)
	if !regexp.MustCompile(`^(?s:` + want + `)$`).MatchString(m) {
		d.o.t.Fatalf("sd_notify message %q; want %q", m, want)
	}
	return m
}

func (d *daemonProc) signal(sig os.Signal) {
	d.o.t.Helper()
	if err := d.cmd.Process.Signal(sig); err != nil {
		d.o.t.Fatalf("signal %v: %v", sig, err)
	}
}

// exit waits for the daemon to end and returns its exit code. The timeout is
// a liveness bound (the test would hang otherwise), not a speed assertion.
func (d *daemonProc) exit(timeout time.Duration) int {
	d.o.t.Helper()
	select {
	case <-d.done:
	case <-time.After(timeout):
		d.cmd.Process.Kill()
		<-d.done
		d.o.t.Fatalf("daemon still running %s after the signal; killed. log:\n%s", timeout, d.log())
	}
	return d.cmd.ProcessState.ExitCode()
}

// stop sends SIGTERM and requires exit status 0 and STOPPING=1.
func (d *daemonProc) stop() {
	d.o.t.Helper()
	d.signal(syscall.SIGTERM)
	for {
		m := d.next(30*time.Second, nil)
		if m == "STOPPING=1" {
			break
		}
		if !strings.HasPrefix(m, "STATUS=") {
			d.o.t.Fatalf("sd_notify message %q after SIGTERM; want STOPPING=1 (after any STATUS=)", m)
		}
	}
	if code := d.exit(70 * time.Second); code != 0 {
		d.o.t.Fatalf("daemon exit status %d after SIGTERM; want 0. log:\n%s", code, d.log())
	}
}

// logAttr returns the value of key in the first log line matching msg.
func logAttr(log, msg, key string) string {
	re := regexp.MustCompile(`(?m)^.*msg="?` + regexp.QuoteMeta(msg) + `.*\b` + regexp.QuoteMeta(key) + `=("[^"]*"|\S+)`)
	m := re.FindStringSubmatch(log)
	if m == nil {
		return ""
	}
	return strings.Trim(m[1], `"`)
}

// openDB opens the test's database (without migrating) and closes it at cleanup.
func (o *opsEnv) openDB() *store.DB {
	o.t.Helper()
	db, err := store.Open(context.Background(), o.path("runnerd.db"), store.Options{NoMigrate: true})
	if err != nil {
		o.t.Fatalf("store.Open: %v", err)
	}
	o.t.Cleanup(func() { db.Close() })
	return db
}

// get fetches a URL from the daemon's HTTP listener and records the body.
func (o *opsEnv) get(url string) (int, string) {
	o.t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		o.t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		o.t.Fatalf("GET %s: %v", url, err)
	}
	o.record("GET "+url, b)
	return resp.StatusCode, string(b)
}

func monotonicUsec(t *testing.T) int64 {
	t.Helper()
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		t.Fatal(err)
	}
	return ts.Nano() / 1000
}

const cheapJob = `
[[job]]
name = %q
kind = "execute"
schedule = "@daily"
process_id = "proc-orders"
atom_id = "atom-test"
wait = false
`

// TestOpsNotify: sd_notify through the real daemon. READY=1 only once the
// database is migrated and cron has started, then STATUS=; a SIGHUP sent the
// moment READY=1 arrives is a reload (RELOADING=1 with MONOTONIC_USEC, then
// READY=1), not the end of the process; WATCHDOG=1 arrives at half
// WATCHDOG_USEC; SIGTERM sends STOPPING=1 and exits 0. Logs are JSON on request.
func TestOpsNotify(t *testing.T) {
	t.Parallel()
	o := newOps(t, simOpts{})
	cfg := o.writeConfig("jobs.toml", 1000, 100, 5, `[log]
format = "json"
`+fmt.Sprintf(cheapJob, "orders"))
	d := o.startServe(cfg, "WATCHDOG_USEC=200000") // a ping every 100ms

	m := d.next(30*time.Second, nil)
	if m != "READY=1" {
		t.Fatalf("first sd_notify message %q; want READY=1 (nothing before it, no watchdog either)", m)
	}
	// The moment READY=1 is out, systemd may reload.
	before := monotonicUsec(t)
	d.signal(syscall.SIGHUP)

	// At READY=1 the database was migrated and cron had started.
	log := d.log()
	if !strings.Contains(log, `"msg":"scheduler started"`) {
		t.Errorf("READY=1 before the scheduler started; log:\n%s", log)
	}
	db := o.openDB()
	if _, err := db.ListRuns(context.Background(), store.RunFilter{Limit: 1}); err != nil {
		t.Errorf("READY=1 but the database is not migrated: %v", err)
	}
	d.expect(`STATUS=1 jobs, 0 running; budget \d+ of 900 left; next orders at \S+`, 10*time.Second)

	m = d.expect("RELOADING=1\nMONOTONIC_USEC=\\d+", 10*time.Second)
	usec, _ := strconv.ParseInt(strings.TrimPrefix(m, "RELOADING=1\nMONOTONIC_USEC="), 10, 64)
	if after := monotonicUsec(t); usec < before || usec > after {
		t.Errorf("MONOTONIC_USEC=%d; want CLOCK_MONOTONIC at the reload, between %d and %d", usec, before, after)
	}
	d.expect("READY=1", 10*time.Second)
	d.expect(`STATUS=1 jobs, .*`, 10*time.Second)

	// Watchdog: WATCHDOG_USEC=200000 → a ping every 100ms while the store answers.
	pings := 0
	deadline := time.Now().Add(20 * time.Second)
	for pings < 5 && time.Now().Before(deadline) {
		select {
		case m := <-d.msgs:
			if m != "WATCHDOG=1" {
				t.Fatalf("unexpected sd_notify message %q while waiting for WATCHDOG=1", m)
			}
			pings++
		case <-time.After(time.Second):
		}
	}
	if pings < 5 {
		t.Fatalf("%d WATCHDOG=1 pings; want at least 5", pings)
	}

	d.stop()
	log = d.log()
	var lines int
	for _, line := range strings.Split(strings.TrimSpace(log), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Errorf("log line is not JSON: %q: %v", line, err)
			continue
		}
		lines++
		for _, k := range []string{"time", "level", "msg"} {
			if _, ok := rec[k]; !ok {
				t.Errorf("JSON log line %q lacks %q", line, k)
			}
		}
	}
	for _, msg := range []string{"runnerd ready", "reload: configuration applied", "stopping: no new runs; waiting for runs in flight", "stopped"} {
		if !strings.Contains(log, `"msg":"`+msg+`"`) {
			t.Errorf("log lacks %q:\n%s", msg, log)
		}
	}
	t.Logf("%d WATCHDOG=1 pings, %d JSON log lines", pings, lines)
}

// TestOpsReload: SIGHUP with a good config (a job added runs through the
// socket, a job removed is refused, history is kept) and with a bad one (its
// FILE:LINE problems are logged, the running config is kept, exit status 0 at
// the end). The control socket in $RUNTIME_DIRECTORY has mode 0600; the status
// page follows the reload.
func TestOpsReload(t *testing.T) {
	t.Parallel()
	o := newOps(t, simOpts{})
	rundir := o.path("run")
	if err := os.Mkdir(rundir, 0o700); err != nil {
		t.Fatal(err)
	}
	env := []string{"RUNTIME_DIRECTORY=" + rundir}
	header := `[log]
format = "text"

[http]
listen = "127.0.0.1:0"
`
	cfg := o.writeConfig("daemon.toml", 1000, 100, 5, header+fmt.Sprintf(cheapJob, "alpha")+fmt.Sprintf(cheapJob, "beta"))
	cli := o.writeConfig("cli.toml", 1000, 100, 5, fmt.Sprintf(cheapJob, "alpha")+fmt.Sprintf(cheapJob, "beta"))
	d := o.serve(cfg, env...)
	d.expect("STATUS=.*", 10*time.Second)

	fi, err := os.Stat(filepath.Join(rundir, "runnerd.sock"))
	if err != nil {
		t.Fatalf("control socket: %v", err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket mode %v; want a socket with 0600", fi.Mode())
	}
	addr := logAttr(d.log(), "http: serving", "addr")
	if addr == "" {
		t.Fatalf("no http address in the log:\n%s", d.log())
	}
	base := "http://" + addr

	for _, job := range []string{"alpha", "beta"} {
		if r := o.runnerd(env, "run", "-config", cli, job); r.code != 0 || !strings.Contains(r.stdout, "job "+job+" ") {
			t.Fatalf("runnerd run %s: exit %d; want 0", job, r.code)
		}
	}

	// A good config: beta removed, gamma added.
	o.writeConfig("daemon.toml", 1000, 100, 5, header+fmt.Sprintf(cheapJob, "alpha")+fmt.Sprintf(cheapJob, "gamma"))
	o.writeConfig("cli.toml", 1000, 100, 5, fmt.Sprintf(cheapJob, "alpha")+fmt.Sprintf(cheapJob, "gamma"))
	d.signal(syscall.SIGHUP)
	d.expect("RELOADING=1\nMONOTONIC_USEC=\\d+", 10*time.Second)
	d.expect("READY=1", 10*time.Second)
	d.expect("STATUS=2 jobs, .*", 10*time.Second)
	if log := d.log(); !regexp.MustCompile(`msg="jobs set" jobs=2 added=1 removed=1`).MatchString(log) {
		t.Errorf("the reload did not add one job and remove one:\n%s", log)
	}
	if r := o.runnerd(env, "run", "-config", cli, "gamma"); r.code != 0 || !strings.Contains(r.stdout, "succeeded") {
		t.Errorf("runnerd run gamma (added by the reload): exit %d; want 0, succeeded", r.code)
	}
	if r := o.runnerd(env, "run", "-config", cli, "beta"); r.code != exitUsage || !strings.Contains(r.stderr, `no such job "beta"`) {
		t.Errorf("runnerd run beta (removed by the reload): exit %d, stderr %q; want 2, no such job", r.code, r.stderr)
	}
	r := o.runnerd(env, "history", "-config", cli, "-json")
	for _, job := range []string{"alpha", "beta", "gamma"} {
		if !regexp.MustCompile(`"job":"` + job + `".*"state":"succeeded"`).MatchString(r.stdout) {
			t.Errorf("history lacks %s's succeeded run (history is kept across reloads):\n%s", job, r.stdout)
		}
	}
	if code, page := o.get(base + "/"); code != 200 || !strings.Contains(page, "gamma") {
		t.Errorf("status page: %d, gamma shown: %v; want 200 with the added job", code, strings.Contains(page, "gamma"))
	}

	// A bad config: problems logged with FILE:LINE, the running config kept.
	bad := o.writeConfig("daemon.toml", 1000, 100, 5, header+fmt.Sprintf(cheapJob, "alpha")+`
[[job]]
name = "delta"
kind = "execute"
schedule = "61 * * * *"
process_id = "proc-orders"
atom_id = "atom-test"
colour = "blue"
`)
	d.signal(syscall.SIGHUP)
	d.expect("RELOADING=1\nMONOTONIC_USEC=\\d+", 10*time.Second)
	d.expect("READY=1", 10*time.Second)
	d.expect("STATUS=2 jobs, .*", 10*time.Second)
	log := d.log()
	refused := regexp.MustCompile(`(?m)level=ERROR msg="reload: configuration refused; keeping the running one" problem="`+
		regexp.QuoteMeta(bad)+`:(\d+): .*`).FindAllStringSubmatch(log, -1)
	if len(refused) < 2 {
		t.Errorf("want the bad config's problems (bad schedule, unknown key) logged one per line as FILE:LINE; log:\n%s", log)
	}
	// The lines of the two problems in the file.
	wantLines := map[string]bool{}
	for i, line := range strings.Split(readFile(t, bad), "\n") {
		if strings.HasPrefix(line, "schedule = \"61") || strings.HasPrefix(line, "colour") {
			wantLines[strconv.Itoa(i+1)] = true
		}
	}
	for _, m := range refused {
		delete(wantLines, m[1])
	}
	if len(wantLines) != 0 {
		t.Errorf("no problem logged at %s:%v (the bad schedule and the unknown key); logged: %q", bad, wantLines, refused)
	}
	if r := o.runnerd(env, "run", "-config", cli, "gamma"); r.code != 0 {
		t.Errorf("runnerd run gamma after a refused reload: exit %d; want 0 (running config kept)", r.code)
	}
	if code, _ := o.get(base + "/healthz"); code != 200 {
		t.Errorf("/healthz after a refused reload: %d; want 200", code)
	}
	if code, metrics := o.get(base + "/metrics"); code != 200 || !strings.Contains(metrics, `runnerd_job="gamma"`) {
		t.Errorf("/metrics: %d; want 200 with gamma's runs", code)
	}
	o.get(base + "/")
	d.stop()
	if _, err := os.Stat(filepath.Join(rundir, "runnerd.sock")); !os.IsNotExist(err) {
		t.Errorf("control socket left behind after a clean stop: %v", err)
	}
}

// TestOpsStopInFlight: SIGTERM while an ExecutionRequest is on the wire. The
// daemon stops new dispatch but lets the run finish: the request's answer is in
// the ledger (no open call row), the run succeeded and its `runnerd run` got
// the answer through the socket, and the daemon exits 0.
func TestOpsStopInFlight(t *testing.T) {
	t.Parallel()
	onWire := make(chan struct{}, 1)
	o := newOps(t, simOpts{
		Options: atomsim.Options{ExecDuration: time.Second},
		wrap: func(h http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if strings.HasSuffix(r.URL.Path, "/ExecutionRequest") {
					select {
					case onWire <- struct{}{}:
					default:
					}
					time.Sleep(1500 * time.Millisecond) // SIGTERM lands now
				}
				h.ServeHTTP(w, r)
			})
		},
	})
	cfg := o.writeConfig("jobs.toml", 1000, 100, 5, `
[[job]]
name = "orders"
kind = "execute"
schedule = "@daily"
process_id = "proc-orders"
atom_id = "atom-test"
timeout = "1m"
`)
	d := o.serve(cfg)
	run := o.start(nil, "run", "-config", cfg, "-json", "orders")
	select {
	case <-onWire:
	case <-time.After(30 * time.Second):
		t.Fatalf("the ExecutionRequest never reached the simulator; daemon log:\n%s", d.log())
	}
	d.stop()
	r := o.wait(run)
	if r.code != 0 || !strings.Contains(r.stdout, `"state":"succeeded"`) {
		t.Errorf("runnerd run orders across the SIGTERM: exit %d, %q; want 0 and succeeded", r.code, r.stdout)
	}
	if got := logAttr(d.log(), "stopping: no new runs", "in_flight"); got != "1" {
		t.Errorf("in_flight at SIGTERM = %q; want 1 (the stop came mid-run)", got)
	}

	db := o.openDB()
	ctx := context.Background()
	open, err := db.OpenCalls(ctx, 0)
	if err != nil || len(open) != 0 {
		t.Errorf("OpenCalls = %d rows, %v; want none: every answer recorded", len(open), err)
	}
	calls, err := db.ListCalls(ctx, store.CallFilter{Status: -1})
	if err != nil {
		t.Fatal(err)
	}
	var execReq int
	for _, c := range calls {
		if strings.HasSuffix(c.Path, "/ExecutionRequest") {
			execReq++
			if c.Status != 200 || c.FinishedAt.IsZero() {
				t.Errorf("ExecutionRequest ledger row: status %d, finished %v; want its 200 answer recorded", c.Status, c.FinishedAt)
			}
		}
	}
	if execReq != 1 || len(o.sim.Executions()) != 1 {
		t.Errorf("%d ExecutionRequest rows, %d executions at the simulator; want 1 and 1", execReq, len(o.sim.Executions()))
	}
	if n := len(o.sim.Requests()); n != len(calls) {
		t.Errorf("the simulator saw %d requests, the ledger has %d rows; want equal", n, len(calls))
	}
	runs, err := db.ListRuns(ctx, store.RunFilter{Job: "orders"})
	if err != nil || len(runs) != 1 || runs[0].State != runnerd.StateSucceeded {
		t.Errorf("runs of orders = %+v, %v; want one, succeeded", runs, err)
	}
}

// TestOpsKillRestart: SIGKILL in the middle of an export (the database being
// written), then: the database passes PRAGMA integrity_check, the daemon starts
// again on it (stale socket and lock replaced), runs a job, and after a clean
// SIGTERM the WAL is checkpointed.
func TestOpsKillRestart(t *testing.T) {
	t.Parallel()
	o := newOps(t, simOpts{Options: atomsim.Options{AuditLogs: 3000}})
	cfg := o.writeConfig("jobs.toml", 2000, 100, 5, fmt.Sprintf(cheapJob, "orders")+`
[[job]]
name = "audit"
kind = "export"
schedule = "@daily"
object = "AuditLog"
window_property = "date"
first_window = "240h"
output = "exports/{job}/{window_start}.jsonl"
`)
	d := o.serve(cfg)
	run := o.start(nil, "run", "-config", cfg, "audit")
	deadline := time.Now().Add(30 * time.Second)
	for countPath(o.sim, "/AuditLog/query") < 4 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	d.signal(syscall.SIGKILL)
	if code := d.exit(30 * time.Second); code != -1 {
		t.Errorf("exit code after SIGKILL = %d; want -1 (killed)", code)
	}
	if r := o.wait(run); r.code == 0 {
		t.Errorf("runnerd run audit succeeded although its daemon was killed mid-run")
	}
	if _, err := os.Stat(o.path("runnerd.db.sock")); err != nil {
		t.Logf("no stale socket after SIGKILL: %v", err)
	}

	integrity := func(when string) {
		t.Helper()
		db, err := store.Open(context.Background(), o.path("runnerd.db"), store.Options{NoMigrate: true})
		if err != nil {
			t.Fatalf("%s: store.Open: %v", when, err)
		}
		defer db.Close()
		if s, err := db.IntegrityCheck(context.Background()); err != nil || s != "ok" {
			t.Fatalf("%s: PRAGMA integrity_check = %q, %v; want ok", when, s, err)
		}
	}
	integrity("after SIGKILL")

	d = o.serve(cfg)
	if r := o.runnerd(nil, "run", "-config", cfg, "orders"); r.code != 0 {
		t.Errorf("runnerd run orders after the restart: exit %d; want 0", r.code)
	}
	d.stop()
	integrity("after a clean stop")
	if fi, err := os.Stat(o.path("runnerd.db-wal")); err == nil && fi.Size() != 0 {
		t.Errorf("WAL is %d bytes after a clean stop; want it checkpointed (0 or absent)", fi.Size())
	}
}

func countPath(s *atomsim.Server, sub string) int {
	n := 0
	for _, r := range s.Requests() {
		if strings.Contains(r.Path, sub) {
			n++
		}
	}
	return n
}

// TestOpsBudgetLoop: an allowance too small for the day's schedule. The
// high-priority job fires every 2 seconds — 43,200 runs a day, which the
// allowance just holds — so the normal and low jobs, which would need as many
// again, are deferred with reasons in `runnerd history` while the high one
// runs; the simulator, with the same daily limit, never answers 503. Under
// journald (JOURNAL_STREAM) the log is plain key=value without timestamps,
// each line led by its syslog priority, one line per run start, finish and
// deferral.
func TestOpsBudgetLoop(t *testing.T) {
	t.Parallel()
	// urgent (high, @every 2s) alone needs ~43,000 calls in the next 24 h, more than the
	// cap of 39,980: it runs now (no earlier high run is ahead of it) while routine and
	// bulk, behind every high slot of the look-ahead, are deferred with reasons.
	const daily, reserve = 40000, 20
	o := newOps(t, simOpts{Options: atomsim.Options{DailyLimit: daily}})
	jobs := ""
	for _, j := range []struct{ name, prio, schedule string }{
		{"urgent", "high", "@every 2s"},
		{"routine", "normal", "@every 2s"},
		{"bulk", "low", "@every 3s"},
	} {
		jobs += fmt.Sprintf(`
[[job]]
name = %q
kind = "execute"
schedule = %q
priority = %q
process_id = "proc-orders"
atom_id = "atom-test"
wait = false
catch_up_window = "1h"
`, j.name, j.schedule, j.prio)
	}
	cfg := o.writeConfig("jobs.toml", daily, reserve, 5, jobs)
	d := o.serve(cfg, "JOURNAL_STREAM=log")

	ctx := context.Background()
	db := o.openDB()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		deferred := map[string]bool{}
		for _, job := range []string{"routine", "bulk"} {
			runs, _ := db.ListRuns(ctx, store.RunFilter{Job: job})
			for _, r := range runs {
				deferred[job] = deferred[job] || r.State == runnerd.StateDeferred
			}
		}
		if len(o.sim.Executions()) >= 3 && deferred["routine"] && deferred["bulk"] {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.stop()

	n503 := 0
	for _, r := range o.sim.Requests() {
		if r.Status == 503 {
			n503++
		}
	}
	if n503 != 0 {
		t.Errorf("the simulator answered 503 %d times; want 0", n503)
	}

	r := o.runnerd(nil, "history", "-config", cfg, "-json", "-limit", "1000")
	var runs []report.Run
	for _, line := range strings.Split(strings.TrimSpace(r.stdout), "\n") {
		var rj report.Run
		if err := json.Unmarshal([]byte(line), &rj); err != nil {
			t.Fatalf("history -json line %q: %v", line, err)
		}
		runs = append(runs, rj)
	}
	states := map[string]map[string]int{}
	for _, rj := range runs {
		if states[rj.Job] == nil {
			states[rj.Job] = map[string]int{}
		}
		states[rj.Job][rj.State]++
		if rj.State == "deferred" && rj.Reason == "" {
			t.Errorf("deferred run %d of %s has no reason", rj.ID, rj.Job)
		}
	}
	t.Logf("runs by job and state: %v", states)
	if got, n := states["urgent"]["succeeded"], len(o.sim.Executions()); got < 3 || got != n || states["urgent"]["deferred"] != 0 {
		t.Errorf("urgent (high): %v, %d executions at the simulator; want every run succeeded (at least 3), one execution each", states["urgent"], n)
	}
	for _, job := range []string{"routine", "bulk"} {
		if states[job]["succeeded"] != 0 || states[job]["deferred"] == 0 {
			t.Errorf("%s: %v; want no run succeeded and some deferred with reasons", job, states[job])
		}
	}
	if r := o.runnerd(nil, "history", "-config", cfg, "-job", "bulk", "-limit", "1"); !strings.Contains(r.stdout, "deferred") {
		t.Errorf("runnerd history -job bulk does not show the deferral:\n%s", r.stdout)
	}

	// The journald log: each line's syslog priority, then plain key=value, no
	// timestamps (journald adds them) and no zero times.
	log := d.log()
	lines := strings.Split(strings.TrimSpace(log), "\n")
	prio := map[string]string{"ERROR": "<3>", "WARN": "<4>", "INFO": "<6>", "DEBUG": "<7>"}
	for i, line := range lines {
		p, rest, _ := strings.Cut(line, "level=")
		lvl, _, _ := strings.Cut(rest, " ")
		if p != prio[lvl] || p == "" {
			t.Errorf("log line under journald %q; want <N>level= with N the level's priority (no time=)", line)
		}
		if strings.Contains(line, "0001-01-01") {
			t.Errorf("log line %q prints the zero time", line)
		}
		lines[i] = "level=" + rest
	}
	started := map[string]int{}
	finished := map[string]int{}
	deferred := map[string]int{}
	reLine := func(msg string, keys ...string) *regexp.Regexp {
		s := `^level=\w+ msg="` + regexp.QuoteMeta(msg) + `"`
		for _, k := range keys {
			s += `.* ` + k + `=("[^"]*"|\S+)`
		}
		return regexp.MustCompile(s)
	}
	reStart := reLine("run started", "job", "run_id", "nominal", "state")
	reFinish := reLine("run finished", "job", "run_id", "nominal", "state", "calls", "duration")
	reDefer := reLine("run deferred", "job", "run_id", "nominal", "state", "reason", "calls")
	for _, line := range lines {
		if m := reStart.FindStringSubmatch(line); m != nil {
			started[m[2]]++
		}
		if m := reFinish.FindStringSubmatch(line); m != nil {
			finished[m[2]]++
		}
		if m := reDefer.FindStringSubmatch(line); m != nil {
			deferred[m[2]]++
		}
	}
	for _, rj := range runs {
		id := strconv.FormatInt(rj.ID, 10)
		switch rj.State {
		case "succeeded":
			if started[id] != 1 || finished[id] != 1 {
				t.Errorf("run %s (%s): %d start and %d finish lines; want 1 and 1 with job, nominal, state, calls, duration",
					id, rj.Job, started[id], finished[id])
			}
		case "deferred":
			if deferred[id] == 0 || started[id] != 0 {
				t.Errorf("run %s (%s, deferred): %d deferral lines, %d start lines; want at least 1 and 0", id, rj.Job, deferred[id], started[id])
			}
		}
	}
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOpsAuthReload: a wrong password in the password file; two runs meet
// 401 and open the auth breaker; a third sends nothing and names the ways
// out; the file is fixed and SIGHUP re-reads it: the next run succeeds, with
// no restart. The canary check covers the re-read password too.
func TestOpsAuthReload(t *testing.T) {
	t.Parallel()
	o := newOps(t, simOpts{})
	if err := os.WriteFile(o.secret, []byte("not-the-password\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := o.writeConfig("jobs.toml", 1000, 100, 5, "[log]\nformat = \"text\"\n"+fmt.Sprintf(cheapJob, "alpha"))
	d := o.serve(cfg)
	d.expect("STATUS=.*", 10*time.Second)
	for i := 1; i <= 2; i++ {
		if r := o.runnerd(nil, "run", "-config", cfg, "alpha"); r.code != 1 || !strings.Contains(r.stdout, "401") {
			t.Fatalf("run %d with a wrong password: exit %d, %q; want 1 and the 401", i, r.code, r.stdout)
		}
	}
	sent := len(o.sim.Requests())
	if r := o.runnerd(nil, "run", "-config", cfg, "alpha"); r.code != 1 || !strings.Contains(r.stdout, "SIGHUP") ||
		len(o.sim.Requests()) != sent {
		t.Fatalf("third run: exit %d, %q, %d requests sent; want 1, the breaker naming SIGHUP, none sent", r.code, r.stdout, len(o.sim.Requests())-sent)
	}
	if err := os.WriteFile(o.secret, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	d.expect("RELOADING=1\nMONOTONIC_USEC=\\d+", 10*time.Second)
	d.expect("READY=1", 10*time.Second)
	if r := o.runnerd(nil, "run", "-config", cfg, "alpha"); r.code != 0 || !strings.Contains(r.stdout, "succeeded") {
		t.Errorf("run after SIGHUP: exit %d, %q; want 0, succeeded with the re-read password", r.code, r.stdout)
	}
	d.stop()
}

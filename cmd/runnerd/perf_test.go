package main

// Daemon-level measurements (issue 10, BENCHMARKS.md): a real runnerd binary is
// built and run as a child process against the simulator, which runs in this
// test process so that its memory never counts against runnerd's. The test
// prints figures ("perf: ..." lines with -v); it asserts only what must hold
// for a figure to mean anything (the daemon got ready, the export wrote every
// record), never a time.
//
//	go test ./cmd/runnerd/ -run '^TestPerf$' -v -perf=true
//	go test ./cmd/runnerd/ -run '^TestPerf$' -v -perf=true -perf-idle=10s   # shorter idle window

import (
	"bufio"
	"bytes"
	"flag"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"runnerd/internal/atomapi/atomsim"
)

var (
	perf      = flag.Bool("perf", false, "run the daemon-level measurements (builds runnerd, runs child processes; ~3 minutes)")
	perfIdle  = flag.Duration("perf-idle", 30*time.Second, "idle window for the daemon's CPU measurement")
	perfLarge = flag.Int("perf-export", 100_000, "records in the large export measurement")
	perfBin   = flag.String("perf-bin", "", "measure this runnerd binary instead of building one (to compare two commits in one session)")
)

// perfClockTick is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100 on
// every Linux architecture Go supports (getconf CLK_TCK).
const perfClockTick = 100

func TestPerf(t *testing.T) {
	if !*perf {
		t.Skip("run with -perf (daemon-level measurements; see BENCHMARKS.md)")
	}
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	bin := perfBuildRunnerd(t)
	t.Logf("perf: machine: %s", perfLoadAvg())

	t.Run("Idle", func(t *testing.T) {
		for _, jobs := range []int{10, 1000} {
			t.Run(strconv.Itoa(jobs), func(t *testing.T) { perfIdleDaemon(t, bin, jobs) })
		}
	})
	t.Run("Export", func(t *testing.T) {
		small := perfExport(t, bin, *perfLarge/10)
		large := perfExport(t, bin, *perfLarge)
		pages := float64(large.calls - small.calls)
		t.Logf("perf: export: peak RSS %d records %.1f MiB, %d records %.1f MiB: ratio %.2f",
			large.records, perfMiB(large.maxRSS), small.records, perfMiB(small.maxRSS), float64(large.maxRSS)/float64(small.maxRSS))
		if pages > 0 {
			t.Logf("perf: export: marginal CPU per call (page of %d records) %.3f ms (%d vs %d records: %.2fs vs %.2fs CPU, %d vs %d calls)",
				100, (large.cpu-small.cpu).Seconds()*1000/pages, large.records, small.records,
				large.cpu.Seconds(), small.cpu.Seconds(), large.calls, small.calls)
		}
		t.Logf("perf: export: %.2f calls per 1,000 records (%d calls for %d records)",
			float64(large.calls)*1000/float64(large.records), large.calls, large.records)
	})
	t.Run("Deploy", func(t *testing.T) { perfDeploy(t, bin) })
	t.Run("Execute", func(t *testing.T) { perfExecute(t, bin) })
}

// perfBuildRunnerd builds the command into a temporary directory.
func perfBuildRunnerd(t *testing.T) string {
	t.Helper()
	if *perfBin != "" {
		return *perfBin
	}
	bin := filepath.Join(t.TempDir(), "runnerd")
	cmd := exec.Command("go", "build", "-o", bin, ".")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// perfSim serves a simulator without rate or daily limits on 127.0.0.1.
func perfSim(t *testing.T, opts atomsim.Options) (*atomsim.Server, string) {
	t.Helper()
	opts.Rate, opts.DailyLimit = -1, -1
	s := atomsim.New(opts)
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return s, srv.URL + "/api/rest/v1"
}

// perfConfig writes a configuration for the simulator at url with the given
// [[job]] tables and returns its path. Rate and allowance are far above what
// the measurements spend, so that pacing never enters a figure.
func perfConfig(t *testing.T, dir, url, jobs string) string {
	t.Helper()
	cfg := fmt.Sprintf(`[account]
id = "sim-account"
url = %q
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 10000000
reserve = 0
rate = 100000

[store]
path = %q

[log]
level = "warn"
format = "text"

%s`, url, filepath.Join(dir, "runnerd.db"), jobs)
	path := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// perfFarSchedule is a daily cron time about 12 hours away, so that nothing fires
// while a measurement runs.
func perfFarSchedule(i int) string {
	return fmt.Sprintf("%d %d * * *", i%60, (time.Now().UTC().Hour()+12)%24)
}

// perfIdleJobs returns n jobs of the three kinds in turn, all on far schedules.
func perfIdleJobs(dir string, n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "[[job]]\nname = \"job-%04d\"\nschedule = %q\ntimezone = \"UTC\"\ncatch_up = \"none\"\n", i, perfFarSchedule(i))
		switch i % 3 {
		case 0:
			b.WriteString("kind = \"execute\"\nprocess_id = \"proc-orders\"\natom_id = \"atom-test\"\n\n")
		case 1:
			b.WriteString("kind = \"deploy\"\nprocess_id = \"proc-orders\"\nfrom_environment = \"env-test\"\nto_environment = \"env-prod\"\n\n")
		default:
			fmt.Fprintf(&b, "kind = \"export\"\nobject = \"AuditLog\"\noutput = %q\n\n", filepath.Join(dir, "exports", "{job}", "{window_start}.jsonl"))
		}
	}
	return b.String()
}

// perfNotifySocket listens on a unixgram socket and reports when READY=1 arrives.
func perfNotifySocket(t *testing.T, path string) <-chan time.Time {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	ready := make(chan time.Time, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				return
			}
			if bytes.Contains(buf[:n], []byte("READY=1")) {
				select {
				case ready <- time.Now():
				default:
				}
			}
		}
	}()
	return ready
}

// perfEnv is the child's environment: this one, with the password and the
// given additions, and no inherited systemd or runnerd variables.
func perfEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "NOTIFY_SOCKET", "RUNTIME_DIRECTORY", "STATE_DIRECTORY", "RUNNERD_CONFIG", "JOURNAL_STREAM", "WATCHDOG_USEC", "WATCHDOG_PID":
			continue
		}
		env = append(env, kv)
	}
	return append(append(env, "RUNNERD_PASSWORD=sim-password"), extra...)
}

// perfServe is a `runnerd serve` child process that has reported READY=1.
type perfServe struct {
	cmd            *exec.Cmd
	start, readyAt time.Time
	stderr         *bytes.Buffer
	exited         chan error
}

// perfStartServe starts `runnerd serve -config cfg` with NOTIFY_SOCKET and
// RUNTIME_DIRECTORY in dir and waits for READY=1.
func perfStartServe(t *testing.T, bin, cfg, dir string) *perfServe {
	t.Helper()
	sock := filepath.Join(dir, fmt.Sprintf("notify-%d.sock", time.Now().UnixNano()))
	ready := perfNotifySocket(t, sock)
	d := &perfServe{cmd: exec.Command(bin, "serve", "-config", cfg), stderr: &bytes.Buffer{}, exited: make(chan error, 1)}
	d.cmd.Env = perfEnv("NOTIFY_SOCKET="+sock, "RUNTIME_DIRECTORY="+dir)
	d.cmd.Stderr = d.stderr
	d.start = time.Now()
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.exited <- d.cmd.Wait() }()
	select {
	case d.readyAt = <-ready:
		return d
	case err := <-d.exited:
		t.Fatalf("runnerd serve exited before READY=1: %v\n%s", err, d.stderr.Bytes())
	case <-time.After(5 * time.Minute):
		d.cmd.Process.Kill()
		t.Fatalf("runnerd serve not ready after 5 minutes\n%s", d.stderr.Bytes())
	}
	return nil
}

// stop ends the daemon with SIGTERM (SIGKILL after a minute) and fails the
// test if it did not stop cleanly.
func (d *perfServe) stop(t *testing.T) {
	t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-d.exited:
		if err != nil {
			t.Errorf("runnerd serve after SIGTERM: %v\n%s", err, d.stderr.Bytes())
		}
	case <-time.After(time.Minute):
		d.cmd.Process.Kill()
		<-d.exited
		t.Errorf("runnerd serve did not stop within a minute of SIGTERM\n%s", d.stderr.Bytes())
	}
}

// perfIdleDaemon starts `runnerd serve` with n jobs, times it to READY=1, lets it
// settle, then measures its CPU time over the idle window and its RSS.
func perfIdleDaemon(t *testing.T, bin string, n int) {
	dir := t.TempDir()
	s, url := perfSim(t, atomsim.Options{})
	cfg := perfConfig(t, dir, url, perfIdleJobs(dir, n))
	d := perfStartServe(t, bin, cfg, dir)
	defer d.stop(t)
	cmd, start, readyAt := d.cmd, d.start, d.readyAt
	startCPU := perfProcCPU(t, cmd.Process.Pid)
	t.Logf("perf: idle/%d: start-up to READY=1 %.0f ms (wall; %.0f ms CPU; load %s)",
		n, readyAt.Sub(start).Seconds()*1000, startCPU.Seconds()*1000, perfLoadAvg())

	time.Sleep(5 * time.Second) // settle: first timers armed, start-up garbage collected
	calls0 := len(s.Requests())
	cpu0 := perfProcCPU(t, cmd.Process.Pid)
	t0 := time.Now()
	time.Sleep(*perfIdle)
	cpu1 := perfProcCPU(t, cmd.Process.Pid)
	wall := time.Since(t0)
	st := perfProcStatus(t, cmd.Process.Pid)
	calls := len(s.Requests()) - calls0
	t.Logf("perf: idle/%d: VmRSS %.1f MiB, VmHWM %.1f MiB, CPU %.0f ms over %.0f s idle = %.3f%%, %d API calls while idle (load %s)",
		n, perfMiB(st["VmRSS"]), perfMiB(st["VmHWM"]), (cpu1-cpu0).Seconds()*1000, wall.Seconds(),
		100*(cpu1-cpu0).Seconds()/wall.Seconds(), calls, perfLoadAvg())
	if calls != 0 {
		t.Errorf("the idle daemon made %d API calls; want 0 (a job fired: the schedules are not far enough away)", calls)
	}
}

// perfExportFigures is one `runnerd run` of an export job.
type perfExportFigures struct {
	records, calls int
	maxRSS         uint64 // bytes, the child's peak resident set (VmHWM, sampled every 10 ms)
	cpu            time.Duration
	wall           time.Duration
}

// perfExport runs an AuditLog export of n seeded records in a child `runnerd
// run` and measures its peak RSS and CPU time.
func perfExport(t *testing.T, bin string, n int) perfExportFigures {
	t.Helper()
	dir := t.TempDir()
	s, url := perfSim(t, atomsim.Options{AuditLogs: n, AuditDays: 30, ExecutionRecords: -1, Events: -1})
	out := filepath.Join(dir, "exports", "{job}", "{window_start}.jsonl")
	cfg := perfConfig(t, dir, url, fmt.Sprintf(`[[job]]
name = "audit-export"
kind = "export"
schedule = %q
catch_up = "none"
object = "AuditLog"
first_window = "768h"
output = %q
`, perfFarSchedule(0), out))
	calls0 := len(s.Requests())
	cmd := exec.Command(bin, "run", "-config", cfg, "audit-export")
	cmd.Env = perfEnv("RUNTIME_DIRECTORY=" + dir)
	var outb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &outb
	start := time.Now()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// The peak RSS is the child's VmHWM, sampled until it exits. (getrusage's
	// ru_maxrss for a child is no use here: exec folds the high-water mark of
	// the address space the child shared with this process, simulator and
	// all, into it.)
	done := make(chan struct{})
	hwm := make(chan uint64, 1)
	go func() {
		var peak uint64
		for {
			if st, err := perfReadStatus(cmd.Process.Pid); err == nil && st["VmHWM"] > peak {
				peak = st["VmHWM"]
			}
			select {
			case <-done:
				hwm <- peak
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}()
	err := cmd.Wait()
	wall := time.Since(start)
	close(done)
	peak := <-hwm
	if err != nil {
		t.Fatalf("runnerd run audit-export: %v\n%s", err, outb.Bytes())
	}
	f := perfExportFigures{
		records: perfCountLines(t, filepath.Join(dir, "exports")),
		calls:   len(s.Requests()) - calls0,
		maxRSS:  peak,
		cpu:     cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(),
		wall:    wall,
	}
	if f.records != n {
		t.Fatalf("export wrote %d records; want %d", f.records, n)
	}
	t.Logf("perf: export/%d: peak RSS %.1f MiB, CPU %.2f s (user %.2f, sys %.2f), wall %.2f s, %d API calls (load %s)",
		n, perfMiB(f.maxRSS), f.cpu.Seconds(), cmd.ProcessState.UserTime().Seconds(), cmd.ProcessState.SystemTime().Seconds(),
		wall.Seconds(), f.calls, perfLoadAvg())
	return f
}

// perfDeploy runs one deploy job twice: the first run deploys, the second finds
// the package already deployed.
func perfDeploy(t *testing.T, bin string) {
	dir := t.TempDir()
	s, url := perfSim(t, atomsim.Options{})
	cfg := perfConfig(t, dir, url, fmt.Sprintf(`[[job]]
name = "promote"
kind = "deploy"
schedule = %q
catch_up = "none"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`, perfFarSchedule(0)))
	for _, what := range []string{"not yet deployed", "already deployed"} {
		before := len(s.Requests())
		cmd := exec.Command(bin, "run", "-config", cfg, "promote")
		cmd.Env = perfEnv("RUNTIME_DIRECTORY=" + dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("runnerd run promote (%s): %v\n%s", what, err, out)
		}
		reqs := s.Requests()[before:]
		var paths []string
		for _, r := range reqs {
			paths = append(paths, r.Method+" "+strings.TrimPrefix(r.Path, "/api/rest/v1/sim-account"))
		}
		t.Logf("perf: deploy (%s): %d calls: %s", what, len(reqs), strings.Join(paths, ", "))
	}
}

// perfExecute runs one execute job that follows its execution to the end.
func perfExecute(t *testing.T, bin string) {
	dir := t.TempDir()
	const dur = 10 * time.Second
	s, url := perfSim(t, atomsim.Options{ExecDuration: dur, RecordDelay: time.Second})
	cfg := perfConfig(t, dir, url, fmt.Sprintf(`[[job]]
name = "orders"
kind = "execute"
schedule = %q
catch_up = "none"
process_id = "proc-orders"
atom_id = "atom-test"
`, perfFarSchedule(0)))
	cmd := exec.Command(bin, "run", "-config", cfg, "orders")
	cmd.Env = perfEnv("RUNTIME_DIRECTORY=" + dir)
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("runnerd run orders: %v\n%s", err, out)
	}
	wall := time.Since(start)
	var paths []string
	for _, r := range s.Requests() {
		paths = append(paths, r.Method+" "+strings.TrimPrefix(r.Path, "/api/rest/v1/sim-account"))
	}
	t.Logf("perf: execute (one execution of %s, followed to its end in %.1f s): %d calls; a fixed 10 s poll would make 1 start + %d polls: %s",
		dur, wall.Seconds(), len(paths), int(wall/(10*time.Second))+1, strings.Join(paths, ", "))
}

// perfProcCPU is the user+system CPU time of process pid so far.
func perfProcCPU(t *testing.T, pid int) time.Duration {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	i := bytes.LastIndexByte(b, ')')
	f := strings.Fields(string(b[i+1:]))
	if len(f) < 13 {
		t.Fatalf("/proc/%d/stat: %d fields after the command", pid, len(f))
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		t.Fatalf("/proc/%d/stat: utime %q stime %q", pid, f[11], f[12])
	}
	return time.Duration(utime+stime) * time.Second / perfClockTick
}

// perfProcStatus reads the kB fields of /proc/PID/status, in bytes.
func perfProcStatus(t *testing.T, pid int) map[string]uint64 {
	t.Helper()
	m, err := perfReadStatus(pid)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// perfReadStatus reads the kB fields of /proc/PID/status, in bytes; a process
// that has exited has no VmRSS and is an error.
func perfReadStatus(pid int) (map[string]uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	m := map[string]uint64{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		num, ok2 := strings.CutSuffix(strings.TrimSpace(v), " kB")
		if ok && ok2 {
			if n, err := strconv.ParseUint(num, 10, 64); err == nil {
				m[k] = n << 10
			}
		}
	}
	if m["VmRSS"] == 0 {
		return nil, fmt.Errorf("/proc/%d/status: no VmRSS", pid)
	}
	return m, nil
}

// perfCountLines counts the lines of the files under root.
func perfCountLines(t *testing.T, root string) int {
	t.Helper()
	n := 0
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		n += bytes.Count(b, []byte{'\n'})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func perfMiB(b uint64) float64 { return float64(b) / (1 << 20) }

// perfLoadAvg is the 1-minute load average, for context beside each figure.
func perfLoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "?"
	}
	return strings.Join(f[:3], " ")
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/store"
)

var (
	perfLedgers = flag.String("perf-ledgers", "10000,1000000", "call rows of the ledgers TestPerfCommands measures, comma separated")
	perfCache   = flag.String("perf-cache", "", "directory keeping the built ledgers between runs (default: a temporary one)")
	perfRepeat  = flag.Int("perf-repeat", 3, "runs of each command; the median is reported")
)

// perfCommand is one command line TestPerfCommands times.
type perfCommand struct {
	name string
	args []string
}

var perfCommands = []perfCommand{
	{"budget", []string{"budget"}},
	{"plan", []string{"plan"}},
	{"history", []string{"history"}},
	{"calls -limit 50", []string{"calls", "-limit", "50"}},
	{"serve → READY", nil},
}

// TestPerfCommands measures what an operator runs, as whole processes: the
// wall and CPU time of budget, plan, history, calls -limit 50 and serve up to
// READY=1, on ledgers of each -perf-ledgers size (90 days of calls, a run per
// ten calls), side by side with the ratio of the largest to the smallest.
// The ledgers are built once per schema version and kept in -perf-cache
// (scripts/bench.sh keeps them in bench-out/ledgers). Figures only: a command
// that fails fails the test, no time is asserted.
func TestPerfCommands(t *testing.T) {
	if !*perf {
		t.Skip("run with -perf (whole-command measurements; see BENCHMARKS.md)")
	}
	bin := perfBuildRunnerd(t)
	_, url := perfSim(t, atomsim.Options{Events: -1, ExecutionRecords: -1, AuditLogs: -1})
	var sizes []int
	for _, f := range strings.Split(*perfLedgers, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n <= 0 {
			t.Fatalf("-perf-ledgers: %q is not a row count", f)
		}
		sizes = append(sizes, n)
	}
	cache := *perfCache
	if cache == "" {
		cache = t.TempDir()
	}
	type figure struct{ wall, cpu time.Duration }
	got := map[string]map[int]figure{}
	for _, rows := range sizes {
		dir := t.TempDir()
		ledger := perfLedger(t, cache, rows)
		cfg := perfConfig(t, dir, url, perfIdleJobs(dir, 10))
		cfg = perfPointAt(t, cfg, filepath.Join(dir, "runnerd.db"), ledger)
		for _, c := range perfCommands {
			var walls, cpus []time.Duration
			for range *perfRepeat {
				var w, u time.Duration
				if c.args == nil {
					w, u = perfServeReady(t, bin, cfg, dir)
				} else {
					w, u = perfRunCommand(t, bin, cfg, c.args)
				}
				walls, cpus = append(walls, w), append(cpus, u)
			}
			if got[c.name] == nil {
				got[c.name] = map[int]figure{}
			}
			got[c.name][rows] = figure{median(walls), median(cpus)}
			t.Logf("perf: command %-16s %9d rows: wall %8.1f ms, CPU %8.1f ms (median of %d; load %s)", c.name, rows,
				ms(median(walls)), ms(median(cpus)), *perfRepeat, perfLoadAvg())
		}
	}
	small, large := sizes[0], sizes[len(sizes)-1]
	t.Logf("perf: commands, wall | CPU in ms, %d → %d call rows:", small, large)
	for _, c := range perfCommands {
		var b strings.Builder
		for _, rows := range sizes {
			f := got[c.name][rows]
			fmt.Fprintf(&b, " %9.1f | %7.1f", ms(f.wall), ms(f.cpu))
		}
		s, l := got[c.name][small], got[c.name][large]
		t.Logf("perf: commands: %-16s%s   ratio wall %.2f×, CPU %.2f×", c.name, b.String(),
			float64(l.wall)/float64(s.wall), float64(l.cpu)/float64(max(s.cpu, time.Millisecond)))
	}
}

func ms(d time.Duration) float64 { return d.Seconds() * 1000 }

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

// perfPointAt rewrites the configuration's store path from old to ledger.
func perfPointAt(t *testing.T, cfg, old, ledger string) string {
	t.Helper()
	b, err := os.ReadFile(cfg)
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.Replace(b, []byte(strconv.Quote(old)), []byte(strconv.Quote(ledger)), 1)
	if err := os.WriteFile(cfg, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// perfLedger returns the path of a ledger with rows calls over the 90 days
// before now (a run per ten calls, hourly usage to match), building it in
// cache unless a ledger of that size and this binary's schema is there.
func perfLedger(t *testing.T, cache string, rows int) string {
	t.Helper()
	ctx := context.Background()
	probe, err := store.Open(ctx, filepath.Join(t.TempDir(), "probe.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, latest, err := probe.SchemaVersion(ctx)
	probe.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(cache, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(cache, fmt.Sprintf("ledger-%d-v%d.db", rows, latest))
	if _, err := os.Stat(path); err == nil {
		return path
	}
	built := time.Now()
	tmp := path + ".building"
	os.Remove(tmp)
	db, err := store.Open(ctx, tmp, store.Options{Synchronous: "NORMAL"})
	if err != nil {
		t.Fatal(err)
	}
	db.Close()
	raw, err := sql.Open("sqlite3", tmp+"?_journal_mode=WAL&_synchronous=OFF")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const span = 90 * 24 * time.Hour
	end := time.Now().UTC().Add(-time.Hour)
	step := (span / time.Duration(rows)).Milliseconds()
	start := end.Add(-span).UnixMilli()
	for _, q := range []string{
		`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1 / 10 - 1)
		INSERT INTO runs (id, job, kind, nominal_time, state, calls, attempt, started_at, finished_at, created_at, updated_at)
		SELECT i + 1, 'job-' || printf('%04d', i % 10), 'export', ?2 + i * 10 * ?3, 'succeeded', 10, 1,
			?2 + i * 10 * ?3, ?2 + i * 10 * ?3 + 5000, ?2 + i * 10 * ?3, ?2 + i * 10 * ?3 + 5000 FROM seq`,
		`WITH RECURSIVE seq(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM seq WHERE i < ?1 - 1)
		INSERT INTO calls (run_id, job, operation, method, path, safe, attempt, started_at, finished_at, status, duration_ms, bytes)
		SELECT i / 10 + 1, 'job-' || printf('%04d', (i / 10) % 10), 'AuditLog.query', 'POST', '/AuditLog/query', 1, 1,
			?2 + i * ?3, ?2 + i * ?3 + 250, CASE WHEN i % 97 = 0 THEN 503 ELSE 200 END, 250, 1024 FROM seq`,
		`INSERT INTO hourly_usage (hour, calls) SELECT started_at - started_at % 3600000, count(*) FROM calls GROUP BY 1`,
		`PRAGMA wal_checkpoint(TRUNCATE)`,
	} {
		if _, err := raw.ExecContext(ctx, q, rows, start, step); err != nil {
			t.Fatalf("build the %d-row ledger: %v", rows, err)
		}
	}
	raw.Close()
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	t.Logf("perf: built a %d-row ledger in %s: %s", rows, time.Since(built).Round(time.Second), path)
	return path
}

// perfRunCommand runs one command to its end and returns its wall and CPU time.
func perfRunCommand(t *testing.T, bin, cfg string, args []string) (wall, cpu time.Duration) {
	t.Helper()
	cmd := exec.Command(bin, append(args, "-config", cfg)...)
	cmd.Env = perfEnv()
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall = time.Since(start)
	if err != nil {
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != exitFailed {
			t.Fatalf("runnerd %s: %v\n%s", strings.Join(args, " "), err, out.Bytes())
		}
	}
	return wall, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()
}

// perfServeReady times runnerd serve to READY=1 (wall, and CPU from /proc
// at that moment) and stops it.
func perfServeReady(t *testing.T, bin, cfg, dir string) (wall, cpu time.Duration) {
	t.Helper()
	d := perfStartServe(t, bin, cfg, dir)
	wall, cpu = d.readyAt.Sub(d.start), perfProcCPU(t, d.cmd.Process.Pid)
	d.stop(t)
	return wall, cpu
}

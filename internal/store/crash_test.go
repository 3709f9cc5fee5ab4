package store

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"runnerd"
)

var crashIterations = flag.Int("crash.iterations", 20, "how many times TestCrashDurability kills a writer")

const helperEnv = "RUNNERD_STORE_HELPER_DB"

// TestHelperWriter is not a test: TestCrashDurability runs the test binary
// with -test.run=TestHelperWriter and helperEnv set, and this loop is the
// child. It begins calls for run 1 forever and prints each committed id.
func TestHelperWriter(t *testing.T) {
	path := os.Getenv(helperEnv)
	if path == "" {
		t.Skip("helper process for TestCrashDurability")
	}
	ctx := context.Background()
	db, err := Open(ctx, path, Options{})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: open:", err)
		os.Exit(3)
	}
	run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "crash", NominalTime: t0})
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper: create run:", err)
		os.Exit(3)
	}
	for i := 0; ; i++ {
		id, err := db.BeginCall(ctx, Call{RunID: run.ID, Job: "crash", Method: "POST", Path: "/ExecutionRequest",
			StartedAt: t0.Add(time.Duration(i) * time.Minute)})
		if err != nil {
			fmt.Fprintln(os.Stderr, "helper: begin call:", err)
			os.Exit(4)
		}
		if i%3 == 0 {
			if err := db.EndCall(ctx, Call{ID: id, Status: 200}); err != nil {
				fmt.Fprintln(os.Stderr, "helper: end call:", err)
				os.Exit(4)
			}
		}
		// os.Stdout is unbuffered: the id is in the pipe when Fprintln returns.
		fmt.Fprintln(os.Stdout, id)
	}
}

// TestCrashDurability kills a writer process with SIGKILL at random moments
// (while opening or migrating, mid-transaction, between transactions) and
// checks after each kill that every id the child was told had committed is in
// the ledger, that rollups and run counters agree with the call rows, and
// that integrity_check is ok.
func TestCrashDurability(t *testing.T) {
	if os.Getenv(helperEnv) != "" {
		t.Skip("in the helper")
	}
	n := *crashIterations
	if testing.Short() {
		n = min(n, 5)
	}
	path := filepath.Join(t.TempDir(), "crash.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var printed []int64
	for i := range n {
		ids, stderr := killWriter(t, path, rng)
		printed = append(printed, ids...)

		db, err := Open(context.Background(), path, Options{})
		if err != nil {
			t.Fatalf("iteration %d: reopen after SIGKILL: %v (child stderr: %s)", i, err, stderr)
		}
		if got, err := db.IntegrityCheck(context.Background()); err != nil || got != "ok" {
			t.Fatalf("iteration %d: IntegrityCheck() = %q, %v; want ok", i, got, err)
		}
		for _, id := range printed {
			if count(t, db, "SELECT count(*) FROM calls WHERE id = ?", id) != 1 {
				t.Fatalf("iteration %d: call %d was reported committed but is missing", i, id)
			}
		}
		calls := count(t, db, "SELECT count(*) FROM calls")
		rollup := count(t, db, "SELECT COALESCE(sum(calls), 0) FROM hourly_usage")
		runCalls := count(t, db, "SELECT COALESCE(sum(calls), 0) FROM runs")
		if calls != rollup || calls != runCalls {
			t.Fatalf("iteration %d: %d call rows, rollup %d, runs.calls %d; want all equal", i, calls, rollup, runCalls)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		t.Logf("iteration %d: child printed %d ids (total %d), %d rows", i, len(ids), len(printed), calls)
	}
}

// killWriter starts the helper on path, SIGKILLs it at a random moment and
// returns every id it printed.
func killWriter(t *testing.T, path string, rng *rand.Rand) ([]int64, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperWriter$", "-test.count=1")
	cmd.Env = append(os.Environ(), helperEnv+"="+path)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr limitedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan int64, 1024)
	done := make(chan error, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			id, err := strconv.ParseInt(sc.Text(), 10, 64)
			if err != nil {
				continue // the test framework's own output
			}
			lines <- id
		}
		close(lines)
		done <- sc.Err()
	}()

	var ids []int64
	if rng.IntN(5) == 0 {
		// Early: possibly while opening or migrating.
		time.Sleep(time.Duration(rng.IntN(40)) * time.Millisecond)
	} else {
		// Mid-stream: after the first committed id, a random while later.
		id, ok := <-lines
		if ok {
			ids = append(ids, id)
		}
		deadline := time.After(time.Duration(rng.IntN(30_000)) * time.Microsecond)
	wait:
		for {
			select {
			case id, ok := <-lines:
				if !ok {
					break wait
				}
				ids = append(ids, id)
			case <-deadline:
				break wait
			}
		}
	}
	cmd.Process.Signal(syscall.SIGKILL)
	for id := range lines {
		ids = append(ids, id)
	}
	<-done
	err = cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() {
		t.Fatalf("child ended by itself (%v), not by SIGKILL; stderr: %s", err, stderr.String())
	}
	return ids, stderr.String()
}

// limitedBuffer keeps the first 4 KiB written to it.
type limitedBuffer struct{ b []byte }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := 4096 - len(l.b); room > 0 {
		l.b = append(l.b, p[:min(room, len(p))]...)
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return string(l.b) }

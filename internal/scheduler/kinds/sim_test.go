package kinds

import (
	"bufio"
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"iter"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// simT0 is the simulator's clock at start; its seeded history ends there.
var simT0 = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

var exportMemory = flag.Bool("export-memory", false, "run the 100,000-record export memory test")

// simEnv is a simulator on 127.0.0.1 with the real client in front of it.
type simEnv struct {
	s      *atomsim.Server
	client *atomapi.Client
}

func newSimEnv(tb testing.TB, opts atomsim.Options) *simEnv {
	tb.Helper()
	opts.Rate, opts.DailyLimit = -1, -1
	opts.Now = func() time.Time { return simT0 }
	s := atomsim.New(opts)
	s.SetNow(simT0)
	ts := httptest.NewServer(s)
	tb.Cleanup(ts.Close)
	c, err := atomapi.New(atomapi.Config{
		BaseURL:     ts.URL + strings.TrimSuffix(atomsim.PathPrefix, "/"),
		AccountID:   atomsim.DefaultAccount,
		Credentials: atomapi.NewCredentials(atomsim.DefaultUser, atomsim.DefaultPassword),
		HTTPClient:  ts.Client(),
		Now:         s.Now,
	})
	if err != nil {
		tb.Fatal(err)
	}
	return &simEnv{s: s, client: c}
}

// poller follows executions on the simulator's clock: a sleep moves it.
func (e *simEnv) poller() *Poller {
	return &Poller{Client: e.client, Now: e.s.Now, Sleep: func(ctx context.Context, d time.Duration) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		e.s.Advance(d)
		return nil
	}}
}

func (e *simEnv) rc(job string) *scheduler.RunContext {
	return &scheduler.RunContext{Run: runnerd.Run{ID: 1, Job: job, NominalTime: e.s.Now()}, Now: e.s.Now}
}

func TestSimExecute(t *testing.T) {
	tests := []struct {
		name, process, method string
		state                 runnerd.RunState
		status, errHas        string
	}{
		{"request complete", atomsim.ProcOrders, MethodRequest, runnerd.StateSucceeded, atomapi.StatusComplete, ""},
		{"request warn", atomsim.ProcInvoices, MethodRequest, runnerd.StateSucceeded, atomapi.StatusCompleteWarn, ""},
		{"request error", atomsim.ProcFails, MethodRequest, runnerd.StateFailed, atomapi.StatusError, "refused the connection"},
		{"executeProcess complete", atomsim.ProcOrders, MethodExecuteProcess, runnerd.StateSucceeded, atomapi.StatusComplete, ""},
		{"executeProcess error", atomsim.ProcFails, MethodExecuteProcess, runnerd.StateFailed, atomapi.StatusError, "refused the connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newSimEnv(t, atomsim.Options{AuditLogs: -1, Events: -1})
			k := &Execute{Client: e.client, ProcessID: tt.process, AtomID: atomsim.AtomTest, Method: tt.method, Wait: true,
				Properties: map[string]string{"FROM_DATE": "yesterday"}, Poller: e.poller(), Now: e.s.Now}
			out := k.Run(context.Background(), e.rc("exec"))
			if out.State != tt.state {
				t.Fatalf("Run() = %s (%v); want %s", out.State, out.Err, tt.state)
			}
			if tt.errHas != "" && (out.Err == nil || !strings.Contains(out.Err.Error(), tt.errHas)) {
				t.Errorf("Run() err = %v; want %q in it", out.Err, tt.errHas)
			}
			d := detailOf[ExecuteDetail](t, out)
			xs := e.s.Executions()
			if len(xs) != 1 {
				t.Fatalf("simulator saw %d executions; want 1", len(xs))
			}
			if d.ExecutionID != xs[0].ExecutionID || d.RequestID != xs[0].PlatformID || d.Status != tt.status {
				t.Errorf("Detail = %+v; want execution %s, request %q, status %s", d, xs[0].ExecutionID, xs[0].PlatformID, tt.status)
			}
		})
	}
}

func TestSimExecuteConcurrentBatch(t *testing.T) {
	e := newSimEnv(t, atomsim.Options{AuditLogs: -1, Events: -1, ExecDuration: 5 * time.Minute})
	p := e.poller()
	procs := []string{atomsim.ProcOrders, atomsim.ProcInvoices, atomsim.ProcFails, atomsim.ProcOrders, atomsim.ProcOrders}
	outs := make([]scheduler.Outcome, len(procs))
	var wg sync.WaitGroup
	for i, proc := range procs {
		wg.Go(func() {
			method := MethodRequest
			if i == 4 {
				method = MethodExecuteProcess
			}
			k := &Execute{Client: e.client, ProcessID: proc, AtomID: atomsim.AtomTest, Method: method, Wait: true, Poller: p, Now: e.s.Now}
			outs[i] = k.Run(context.Background(), e.rc("exec"))
		})
	}
	wg.Wait()
	byReq := map[string]string{}
	seen := map[string]bool{}
	for _, x := range e.s.Executions() {
		byReq[x.PlatformID] = x.ExecutionID
	}
	for i, out := range outs {
		d := detailOf[ExecuteDetail](t, out)
		if d.ExecutionID == "" || seen[d.ExecutionID] {
			t.Errorf("run %d: execution %q missing or given twice", i, d.ExecutionID)
		}
		seen[d.ExecutionID] = true
		if d.RequestID != "" && byReq[d.RequestID] != d.ExecutionID {
			t.Errorf("run %d: request %s got execution %s; the simulator says %s", i, d.RequestID, d.ExecutionID, byReq[d.RequestID])
		}
		if want := procs[i] != atomsim.ProcFails; (out.State == runnerd.StateSucceeded) != want {
			t.Errorf("run %d (%s): %s (%v)", i, procs[i], out.State, out.Err)
		}
	}
	var polls int
	for _, r := range e.s.Requests() {
		if strings.Contains(r.Path, "/ExecutionRecord/") {
			polls++
		}
	}
	t.Logf("5 executions over 5 simulated minutes: %d poll requests", polls)
	if polls > 5*6 {
		t.Errorf("poll requests = %d; want batching to keep it under %d", polls, 5*6)
	}
}

func TestSimDeploy(t *testing.T) {
	for _, method := range []string{MethodPackage, MethodDeployProcess} {
		t.Run(method, func(t *testing.T) {
			e := newSimEnv(t, atomsim.Options{AuditLogs: -1, Events: -1, ExecutionRecords: -1})
			k := &Deploy{Client: e.client, ProcessID: atomsim.ProcOrders, FromEnv: atomsim.EnvTest, ToEnv: atomsim.EnvProd,
				Method: method, ListenerStatus: "RUNNING"}
			out := k.Run(context.Background(), e.rc("promote"))
			if d := detailOf[DeployDetail](t, out); out.State != runnerd.StateSucceeded || d.Result != "deployed" {
				t.Fatalf("first Run() = %s (%v) %+v; want deployed", out.State, out.Err, d)
			}
			if n := len(e.s.Deploys()); n != 1 {
				t.Fatalf("simulator saw %d deploy writes after the first run; want 1", n)
			}
			out = k.Run(context.Background(), e.rc("promote"))
			if d := detailOf[DeployDetail](t, out); out.State != runnerd.StateSucceeded || d.Result != "already deployed" {
				t.Errorf("second Run() = %s (%v) %+v; want already deployed", out.State, out.Err, d)
			}
			if n := len(e.s.Deploys()); n != 1 {
				t.Errorf("simulator saw %d deploy writes after the second run; want still 1", n)
			}
		})
	}
}

func TestSimExportAuditLog(t *testing.T) {
	if testing.Short() {
		t.Skip("41 windows through the simulator")
	}
	// The 30-day seeded history, thinned to 5,000 records to keep the test short.
	e := newSimEnv(t, atomsim.Options{Events: -1, ExecutionRecords: -1, AuditLogs: 5000, AuditDays: 30})
	all := e.s.Data().AuditLogs
	dates := make([]time.Time, len(all))
	for i, a := range all {
		dates[i], _ = atomapi.ParseTime(a.Date)
	}
	st := &fakeState{t: t}
	dir := t.TempDir()
	k := &Export{Client: e.client, Sink: st, State: st, Object: "AuditLog", WindowProperty: "date",
		FirstWindow: 31 * 24 * time.Hour, Output: filepath.Join(dir, "{job}", "{window_start}.jsonl")}
	// Two consecutive runs: the first ends 10 days ago, the second now.
	var files []ExportFile
	for _, nominal := range []time.Time{simT0.Add(-10 * 24 * time.Hour), simT0} {
		out := k.Run(context.Background(), &scheduler.RunContext{Run: runnerd.Run{ID: 1, Job: "audit", NominalTime: nominal}, Now: e.s.Now})
		if out.State != runnerd.StateSucceeded {
			t.Fatalf("Run(%v) = %s (%v)", nominal, out.State, out.Err)
		}
		files = append(files, detailOf[ExportDetail](t, out).Files...)
	}
	if len(files) != 41 {
		t.Errorf("files = %d; want 41 daily windows (31 + 10)", len(files))
	}
	count := map[string]int{}
	for _, f := range files {
		n := 0
		for _, line := range readLines(t, f.Path) {
			if line == "" {
				continue
			}
			var a atomapi.AuditLog
			if err := json.Unmarshal([]byte(line), &a); err != nil {
				t.Fatalf("%s: %v", f.Path, err)
			}
			at, _ := atomapi.ParseTime(a.Date)
			if at.Before(f.From) || !at.Before(f.To) {
				t.Errorf("%s: record %s at %v outside [%v, %v)", f.Path, a.DocumentID, at, f.From, f.To)
			}
			count[a.DocumentID]++
			n++
		}
		want := 0
		for _, at := range dates {
			if !at.Before(f.From) && at.Before(f.To) {
				want++
			}
		}
		if n != want || f.Rows != want {
			t.Errorf("%s: %d lines, Rows %d; the simulator has %d in the window", filepath.Base(f.Path), n, f.Rows, want)
		}
	}
	for _, a := range all {
		if count[a.DocumentID] != 1 {
			t.Errorf("record %s exported %d times; want exactly once", a.DocumentID, count[a.DocumentID])
		}
	}
	if len(count) != len(all) || len(st.audit) != len(all) {
		t.Errorf("exported %d distinct records, sink has %d; the simulator has %d", len(count), len(st.audit), len(all))
	}
}

func TestSimExportCSV(t *testing.T) {
	e := newSimEnv(t, atomsim.Options{Events: -1, ExecutionRecords: -1, AuditLogs: 2000, AuditDays: 2})
	st := &fakeState{t: t}
	k := &Export{Client: e.client, State: st, Object: "AuditLog", WindowProperty: "date", FirstWindow: 72 * time.Hour,
		MaxWindow: 72 * time.Hour, Format: FormatCSV, Output: filepath.Join(t.TempDir(), "{job}-{date}.csv")}
	out := k.Run(context.Background(), e.rc("audit-csv"))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v)", out.State, out.Err)
	}
	d := detailOf[ExportDetail](t, out)
	b, err := os.ReadFile(d.Files[0].Path)
	if err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil {
		t.Fatalf("CSV does not read back: %v", err)
	}
	if !slices.Equal(rows[0], knownFields("AuditLog")) || len(rows)-1 != 2000 || d.Rows != 2000 {
		t.Errorf("CSV header %q and %d rows (detail %d); want the AuditLog fields and 2000 rows", rows[0], len(rows)-1, d.Rows)
	}
	docs := map[string]bool{}
	for _, a := range e.s.Data().AuditLogs {
		docs[a.DocumentID] = true
	}
	col := slices.Index(rows[0], "documentId")
	for _, r := range rows[1:] {
		if !docs[r[col]] {
			t.Errorf("row with unknown documentId %q", r[col])
		}
	}
}

// memQuery samples the heap while pages stream through.
type memQuery struct {
	QueryClient
	every int
	pages int
	peak  uint64
}

func (m *memQuery) Query(ctx context.Context, object string, q atomapi.QueryConfig) iter.Seq2[*atomapi.QueryResult, error] {
	return func(yield func(*atomapi.QueryResult, error) bool) {
		for p, err := range m.QueryClient.Query(ctx, object, q) {
			m.pages++
			if m.pages%m.every == 0 {
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				m.peak = max(m.peak, ms.HeapInuse)
			}
			if !yield(p, err) {
				return
			}
		}
	}
}

type memFigures struct {
	records         int
	peakOverBase    uint64 // peak HeapInuse during the export minus HeapInuse before it
	allocsPerRecord float64
}

// The memory test runs the simulator in a child process (this test binary,
// re-executed), so that the heap measured is the export's alone: the
// simulator holds a query's whole result for queryMore.
const childEnv = "KINDS_SIM_CHILD_AUDITLOGS"

// TestSimChild is the child: it serves a simulator on 127.0.0.1 until stdin closes.
func TestSimChild(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(childEnv))
	if n == 0 {
		t.Skip("the simulator child of TestExportMemoryBounded")
	}
	s := atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, Events: -1, ExecutionRecords: -1, AuditLogs: n, AuditDays: 30,
		Now: func() time.Time { return simT0 }})
	s.SetNow(simT0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go http.Serve(ln, s)
	fmt.Printf("ADDR=%s\n", ln.Addr())
	io.Copy(io.Discard, os.Stdin)
}

// childSim starts the child and returns a client for it.
func childSim(tb testing.TB, n int) *atomapi.Client {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSimChild$")
	cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%d", childEnv, n))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		tb.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		stdin.Close()
		cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	addr := ""
	for sc.Scan() {
		if a, ok := strings.CutPrefix(sc.Text(), "ADDR="); ok {
			addr = a
			break
		}
	}
	go io.Copy(io.Discard, stdout)
	if addr == "" {
		tb.Fatal("simulator child did not start")
	}
	c, err := atomapi.New(atomapi.Config{
		BaseURL:     "http://" + addr + strings.TrimSuffix(atomsim.PathPrefix, "/"),
		AccountID:   atomsim.DefaultAccount,
		Credentials: atomapi.NewCredentials(atomsim.DefaultUser, atomsim.DefaultPassword),
	})
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// exportMem exports n seeded AuditLogs in one window and measures this
// process's heap while it runs.
func exportMem(tb testing.TB, n int) memFigures {
	tb.Helper()
	mq := &memQuery{QueryClient: childSim(tb, n), every: 10}
	st := &fakeState{t: tb}
	k := &Export{Client: mq, State: st, Object: "AuditLog", WindowProperty: "date", FirstWindow: 31 * 24 * time.Hour,
		MaxWindow: 31 * 24 * time.Hour, Output: filepath.Join(tb.TempDir(), "{job}.jsonl")}
	rc := &scheduler.RunContext{Run: runnerd.Run{ID: 1, Job: "mem", NominalTime: simT0}}
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	out := k.Run(context.Background(), rc)
	runtime.ReadMemStats(&after)
	if out.State != runnerd.StateSucceeded || detailOf[ExportDetail](tb, out).Rows != n {
		tb.Fatalf("Run() = %s (%v) %s", out.State, out.Err, out.Detail)
	}
	peak := uint64(0)
	if mq.peak > before.HeapInuse {
		peak = mq.peak - before.HeapInuse
	}
	return memFigures{records: n, peakOverBase: peak, allocsPerRecord: float64(after.TotalAlloc-before.TotalAlloc) / float64(n)}
}

// TestExportMemoryBounded exports 10,000 and 100,000 records: the heap in use
// while exporting must not grow with the record count (pages are streamed to
// disk, never gathered).
func TestExportMemoryBounded(t *testing.T) {
	if !*exportMemory {
		t.Skip("run with -export-memory (100,000 records through the simulator)")
	}
	small := exportMem(t, 10_000)
	big := exportMem(t, 100_000)
	t.Logf("10k: peak heap over base %d KiB, %.0f B allocated per record", small.peakOverBase>>10, small.allocsPerRecord)
	t.Logf("100k: peak heap over base %d KiB, %.0f B allocated per record", big.peakOverBase>>10, big.allocsPerRecord)
	// Gathering 100k records would hold tens of MiB; streaming holds a few pages.
	if big.peakOverBase > 2*small.peakOverBase+8<<20 {
		t.Errorf("peak heap %d KiB for 100k records vs %d KiB for 10k; want no growth with the count", big.peakOverBase>>10, small.peakOverBase>>10)
	}
}

func BenchmarkExport100k(b *testing.B) {
	var f memFigures
	for b.Loop() {
		f = exportMem(b, 100_000)
	}
	b.ReportMetric(float64(f.peakOverBase)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(f.allocsPerRecord, "alloc-B/record")
}

// TestSimExportAuditBatches: a window of 2,500 AuditLog records reaches the
// real store in batches of auditBatch (five pages), every record once, all of
// them before the window's file is in place and its watermark moves.
func TestSimExportAuditBatches(t *testing.T) {
	e := newSimEnv(t, atomsim.Options{Events: -1, ExecutionRecords: -1, AuditLogs: 2500, AuditDays: 5})
	db, err := ledger.Open(t, filepath.Join(t.TempDir(), "runnerd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	st := &fakeState{t: t}
	sink := &countingSink{db: db, st: st}
	k := &Export{Client: e.client, Sink: sink, State: st, Object: "AuditLog", WindowProperty: "date",
		FirstWindow: 6 * 24 * time.Hour, MaxWindow: 6 * 24 * time.Hour, Output: filepath.Join(t.TempDir(), "{job}.jsonl")}
	out := k.Run(context.Background(), e.rc("audit"))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v)", out.State, out.Err)
	}
	if want := []int{500, 500, 500, 500, 500}; !slices.Equal(sink.batches, want) {
		t.Errorf("batches = %v; want %v", sink.batches, want)
	}
	if n, err := db.CountAudit(context.Background(), store.AuditFilter{}); err != nil || n != 2500 {
		t.Errorf("stored %d, %v; want 2500", n, err)
	}
	if d := detailOf[ExportDetail](t, out); d.AuditNew != 2500 {
		t.Errorf("Detail.AuditNew = %d; want 2500", d.AuditNew)
	}
	if len(st.marks) != 1 {
		t.Errorf("watermark moves = %d; want 1 (one window)", len(st.marks))
	}
	for i, seen := range sink.windowsSeen {
		if seen != 0 {
			t.Errorf("batch %d stored after the window was recorded", i)
		}
	}
}

// countingSink is the real store, recording each batch's size and how many
// windows had been recorded (and their watermarks moved) when it came.
type countingSink struct {
	db          *store.DB
	st          *fakeState
	batches     []int
	windowsSeen []int
}

func (c *countingSink) UpsertAuditJSON(ctx context.Context, raws []json.RawMessage) (int, error) {
	c.batches = append(c.batches, len(raws))
	c.windowsSeen = append(c.windowsSeen, len(c.st.windows))
	return c.db.UpsertAuditJSON(ctx, raws)
}

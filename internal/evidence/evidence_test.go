package evidence_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/budget"
	"runnerd/internal/evidence"
	"runnerd/internal/pgtest/ledger"
	"runnerd/internal/store"
)

var t0 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)

// rig is a simulator on a fake clock, a ledger, a client whose every call is
// recorded (and may be refused as the budget would), and a fetcher.
type rig struct {
	t      *testing.T
	sim    *atomsim.Server
	srv    *httptest.Server
	db     *store.DB
	client *atomapi.Client
	f      *evidence.Fetcher
	dir    string

	mu     sync.Mutex
	ops    []string           // operations sent, in order
	infos  []atomapi.CallInfo // on whose behalf
	refuse *budget.RefusedError
}

func newRig(t *testing.T, mod ...func(*evidence.Options)) *rig {
	t.Helper()
	r := &rig{t: t, dir: filepath.Join(t.TempDir(), "evidence")}
	r.sim = atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, ExecDuration: 10 * time.Second,
		RecordDelay: time.Second, Now: func() time.Time { return t0 }})
	r.sim.SetNow(t0)
	r.srv = httptest.NewServer(r.sim)
	t.Cleanup(r.srv.Close)
	db, err := ledger.Open(t, filepath.Join(t.TempDir(), "runnerd.db"), store.Options{Now: r.sim.Now})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r.db = db
	r.client, err = atomapi.New(atomapi.Config{
		BaseURL: r.srv.URL + "/api/rest/v1", AccountID: atomsim.DefaultAccount,
		Credentials: atomapi.NewCredentials(atomsim.DefaultUser, atomsim.DefaultPassword),
		Gate: atomapi.GateFunc(func(ctx context.Context, c *atomapi.Call) error {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.refuse != nil {
				return r.refuse
			}
			r.ops = append(r.ops, c.Operation)
			r.infos = append(r.infos, c.CallInfo)
			return nil
		}),
		Retry: atomapi.RetryPolicy{MaxAttempts: 1},
		Now:   r.sim.Now,
	})
	if err != nil {
		t.Fatal(err)
	}
	o := evidence.Options{DB: db, Client: r.client, Dir: r.dir, Now: r.sim.Now}
	for _, m := range mod {
		m(&o)
	}
	r.f = evidence.New(o)
	return r
}

// failedRun starts an execution of process proc on the simulator, lets it
// end, and records a failed run of it with its execution id.
func (r *rig) failedRun(proc string) runnerd.Run {
	r.t.Helper()
	ctx := context.Background()
	if _, err := r.client.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: atomsim.AtomTest, ProcessID: proc}); err != nil {
		r.t.Fatal(err)
	}
	xs := r.sim.Executions()
	exec := xs[len(xs)-1].ExecutionID
	r.sim.Advance(20 * time.Second)
	run, _, err := r.db.CreateRun(ctx, runnerd.Run{Job: "nightly", Kind: "execute", NominalTime: r.sim.Now().Add(time.Duration(len(xs)) * time.Minute), State: runnerd.StateRunning})
	if err != nil {
		r.t.Fatal(err)
	}
	d, _ := json.Marshal(map[string]string{"method": "request", "execution_id": exec, "status": "ERROR"})
	run.State, run.Detail, run.Error, run.FinishedAt = runnerd.StateFailed, string(d), "execution ended ERROR", r.sim.Now()
	if err := r.db.UpdateRun(ctx, run); err != nil {
		r.t.Fatal(err)
	}
	r.mu.Lock()
	r.ops, r.infos = nil, nil
	r.mu.Unlock()
	return run
}

// settle steps run's pending pieces, moving the clock to each one's next
// time, until none is pending or max steps were taken.
func (r *rig) settle(run runnerd.Run, max int) []store.Evidence {
	r.t.Helper()
	ctx := context.Background()
	for i := 0; i < max; i++ {
		es, err := r.db.RunEvidence(ctx, run.ID)
		if err != nil {
			r.t.Fatal(err)
		}
		var pending *store.Evidence
		for j := range es {
			if es[j].State == store.EvidencePending {
				pending = &es[j]
				break
			}
		}
		if pending == nil {
			return es
		}
		if d := pending.NextAt.Sub(r.sim.Now()); d > 0 {
			r.sim.Advance(d)
		}
		r.f.Step(ctx, *pending)
	}
	es, _ := r.db.RunEvidence(ctx, run.ID)
	return es
}

func (r *rig) opsSent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ops...)
}

func one(t *testing.T, es []store.Evidence, kind string) store.Evidence {
	t.Helper()
	for _, e := range es {
		if e.Kind == kind {
			return e
		}
	}
	t.Fatalf("no %s evidence in %+v", kind, es)
	return store.Evidence{}
}

// noFiles fails if anything but kept files is under the evidence directory.
func (r *rig) files() []string {
	var out []string
	filepath.WalkDir(r.dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// A failed execution's process log: one link, polls while it is prepared,
// then a valid ZIP kept under the run's directory with its sha256; every
// call is the run's, at low priority.
func TestFetchProcessLog(t *testing.T) {
	r := newRig(t)
	run := r.failedRun(atomsim.ProcFails)
	n, err := r.f.Queue(context.Background(), run, evidence.Want{Level: "ALL"})
	if err != nil || n != 1 {
		t.Fatalf("Queue = %d, %v; want 1 piece", n, err)
	}
	if n, _ := r.f.Queue(context.Background(), run, evidence.Want{Level: "ALL"}); n != 0 {
		t.Errorf("queued again: %d; want 0 (one piece per run and kind)", n)
	}
	e := one(t, r.settle(run, 20), store.EvidenceLog)
	if e.State != store.EvidenceKept {
		t.Fatalf("log evidence %s: %s; want kept", e.State, e.Reason)
	}
	ops := r.opsSent()
	if len(ops) < 2 || ops[0] != atomapi.OpProcessLog || ops[len(ops)-1] != atomapi.OpProcessLogDownload {
		t.Errorf("operations %v; want ProcessLog.create then downloads", ops)
	}
	for _, op := range ops[1:] {
		if op != atomapi.OpProcessLogDownload {
			t.Errorf("operations %v; want one link, then polls only", ops)
		}
	}
	r.mu.Lock()
	for _, info := range r.infos {
		if info.RunID != run.ID || info.Job != "nightly" || info.Priority != runnerd.PriorityLow {
			t.Errorf("call info %+v; want run %d of nightly at low priority", info, run.ID)
		}
	}
	r.mu.Unlock()
	if want := filepath.Join(evidence.RunDir(r.dir, run.ID), "process-log.zip"); e.Path != want {
		t.Errorf("path %s; want %s", e.Path, want)
	}
	data, err := os.ReadFile(e.Path)
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(data); hex.EncodeToString(sum[:]) != e.SHA256 || int64(len(data)) != e.Bytes {
		t.Errorf("sha256/bytes in the ledger do not match the file")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatal(err)
	}
	rc, _ := zr.File[0].Open()
	var log bytes.Buffer
	log.ReadFrom(rc)
	if !strings.Contains(log.String(), e.ExecutionID) || !strings.Contains(log.String(), atomsim.FailMessage) {
		t.Errorf("log entry lacks the execution id or its error:\n%s", log.String())
	}
	if st, _ := os.Stat(e.Path); st.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v; want 0600 (logs may hold business data)", st.Mode().Perm())
	}
}

// A budget refusal defers the piece to the time the gate gave, with its
// reason; nothing is sent; when the budget frees, it is fetched.
func TestFetchDeferredByBudget(t *testing.T) {
	r := newRig(t)
	run := r.failedRun(atomsim.ProcFails)
	r.f.Queue(context.Background(), run, evidence.Want{Level: "SEVERE"})
	at := r.sim.Now().Add(3 * time.Hour)
	r.mu.Lock()
	r.refuse = &budget.RefusedError{Err: budget.ErrExhausted, RetryAt: at, Reason: "needs 1 call; 0 left until 13:00"}
	r.mu.Unlock()
	es, _ := r.db.DueEvidence(context.Background(), 1)
	e := r.f.Step(context.Background(), es[0])
	if e.State != store.EvidencePending || !strings.HasPrefix(e.Reason, "deferred: budget exhausted: needs 1 call") || !e.NextAt.Equal(at) {
		t.Fatalf("after a refusal: %s %q next %v; want pending, deferred with the gate's reason, at %v", e.State, e.Reason, e.NextAt, at)
	}
	if e.Links != 0 || len(r.opsSent()) != 0 {
		t.Errorf("links %d, ops %v; want nothing counted or sent", e.Links, r.opsSent())
	}
	r.mu.Lock()
	r.refuse = nil
	r.mu.Unlock()
	if e := one(t, r.settle(run, 20), store.EvidenceLog); e.State != store.EvidenceKept || e.Level != "SEVERE" {
		t.Fatalf("after the budget freed: %s %q; want kept", e.State, e.Reason)
	}
	if r.sim.Now().Before(at) {
		t.Errorf("fetched at %v, before the gate's time %v", r.sim.Now(), at)
	}
}

// What the platform cannot give is given up with a clear reason, within a
// bounded number of calls, and nothing half-written is kept.
func TestFetchFaults(t *testing.T) {
	for _, tc := range []struct {
		name     string
		fault    atomsim.DownloadFault
		setup    func(r *rig)
		want     string
		maxCalls int
		want2    evidence.Want
	}{
		{name: "never-ready", fault: atomsim.DownloadNeverReady, want: "never made the download ready", maxCalls: 40},
		{name: "expired", fault: atomsim.DownloadExpired, want: "asked for a download link 5 times", maxCalls: 10},
		{name: "truncated", fault: atomsim.DownloadTruncated, want: "rejected: not a valid ZIP (truncated or corrupt", maxCalls: 12},
		{name: "oversize", fault: atomsim.DownloadOversize, setup: func(r *rig) { r.sim.SetDownloadOversize(2 << 20) },
			want: "rejected: the file is larger than the 1 MiB a run may keep", maxCalls: 4},
		{name: "artifacts-disabled", setup: func(r *rig) { r.sim.SetArtifactsDisabled(true) },
			want: "Runtime Management privilege", maxCalls: 1, want2: evidence.Want{Artifacts: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRig(t, func(o *evidence.Options) { o.MaxRun = 1 << 20 })
			run := r.failedRun(atomsim.ProcFails)
			r.sim.SetDownloadFault(tc.fault)
			if tc.setup != nil {
				tc.setup(r)
			}
			want := evidence.Want{Level: "ALL"}
			kind := store.EvidenceLog
			if tc.want2.Artifacts {
				want, kind = tc.want2, store.EvidenceArtifacts
			}
			r.f.Queue(context.Background(), run, want)
			e := one(t, r.settle(run, 200), kind)
			if e.State != store.EvidenceGivenUp || !strings.Contains(e.Reason, tc.want) {
				t.Fatalf("%s %q; want given up saying %q", e.State, e.Reason, tc.want)
			}
			if n := len(r.opsSent()); n > tc.maxCalls {
				t.Errorf("%d calls before giving up; want at most %d", n, tc.maxCalls)
			}
			if f := r.files(); len(f) != 0 {
				t.Errorf("files kept after a rejection: %v", f)
			}
		})
	}
}

// The runtime is not reachable (statusCode 504): pending, asked again later.
func TestFetchRuntimeUnavailable(t *testing.T) {
	r := newRig(t)
	run := r.failedRun(atomsim.ProcFails)
	r.sim.SetDownloadFault(atomsim.DownloadRuntimeUnavailable)
	r.f.Queue(context.Background(), run, evidence.Want{Level: "ALL"})
	es, _ := r.db.DueEvidence(context.Background(), 1)
	e := r.f.Step(context.Background(), es[0])
	if e.State != store.EvidencePending || !strings.Contains(e.Reason, "runtime is not reachable") || !e.NextAt.After(r.sim.Now()) {
		t.Fatalf("%s %q next %v; want pending, saying the runtime is not reachable, later", e.State, e.Reason, e.NextAt)
	}
	r.sim.SetDownloadFault(atomsim.DownloadNormal)
	if e := one(t, r.settle(run, 20), store.EvidenceLog); e.State != store.EvidenceKept {
		t.Fatalf("%s %q; want kept once the runtime is back", e.State, e.Reason)
	}
}

// A link on another host is never fetched with the credentials: 0 requests
// reach it, and the piece is given up saying why.
func TestFetchForeignHost(t *testing.T) {
	var hits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) { hits.Add(1) }))
	defer other.Close()
	r := newRig(t)
	run := r.failedRun(atomsim.ProcFails)
	r.sim.SetDownloadHost(strings.TrimPrefix(other.URL, "http://"))
	r.f.Queue(context.Background(), run, evidence.Want{Level: "ALL"})
	e := one(t, r.settle(run, 10), store.EvidenceLog)
	if e.State != store.EvidenceGivenUp || !strings.Contains(e.Reason, "not on its own host") {
		t.Fatalf("%s %q; want given up: not on the platform's host", e.State, e.Reason)
	}
	if n := hits.Load(); n != 0 {
		t.Errorf("the other host got %d requests; want 0", n)
	}
	if ops := r.opsSent(); len(ops) != 1 || ops[0] != atomapi.OpProcessLog {
		t.Errorf("operations %v; want only the link request", ops)
	}
}

// After the purge horizon nothing is asked: the piece is given up at once.
func TestFetchPastHorizon(t *testing.T) {
	r := newRig(t)
	run := r.failedRun(atomsim.ProcFails)
	r.f.Queue(context.Background(), run, evidence.Want{Level: "ALL"})
	r.sim.Advance(31 * 24 * time.Hour)
	e := one(t, r.settle(run, 5), store.EvidenceLog)
	if e.State != store.EvidenceGivenUp || !strings.Contains(e.Reason, "purges process logs about 30 days") {
		t.Fatalf("%s %q; want given up at the purge horizon", e.State, e.Reason)
	}
	if ops := r.opsSent(); len(ops) != 0 {
		t.Errorf("operations %v past the horizon; want none", ops)
	}
}

// The total size is kept: the oldest run's file goes for a new one, and is
// recorded as pruned. Retention deletes the rows and files of old runs.
func TestTotalSizeAndRetention(t *testing.T) {
	r := newRig(t)
	first := r.failedRun(atomsim.ProcFails)
	r.f.Queue(context.Background(), first, evidence.Want{Level: "ALL"})
	a := one(t, r.settle(first, 20), store.EvidenceLog)
	if a.State != store.EvidenceKept {
		t.Fatalf("first: %s %q", a.State, a.Reason)
	}
	// A fetcher whose total fits one file only.
	r.f = evidence.New(evidence.Options{DB: r.db, Client: r.client, Dir: r.dir, Now: r.sim.Now, MaxTotal: a.Bytes + a.Bytes/2})
	second := r.failedRun(atomsim.ProcFails)
	r.f.Queue(context.Background(), second, evidence.Want{Level: "ALL"})
	if b := one(t, r.settle(second, 20), store.EvidenceLog); b.State != store.EvidenceKept {
		t.Fatalf("second: %s %q", b.State, b.Reason)
	}
	old, _ := r.db.RunEvidence(context.Background(), first.ID)
	if old[0].State != store.EvidencePruned || !strings.Contains(old[0].Reason, "max_total_mb") {
		t.Errorf("first after the second: %s %q; want pruned for the total size", old[0].State, old[0].Reason)
	}
	if _, err := os.Stat(a.Path); !os.IsNotExist(err) {
		t.Errorf("the pruned file is still there: %v", err)
	}
	os.WriteFile(filepath.Join(evidence.RunDir(r.dir, second.ID), ".tmp-crashed"), []byte("x"), 0o600)
	r.sim.Advance(48 * time.Hour)
	n, err := r.f.Prune(context.Background(), 24*time.Hour)
	if err != nil || n != 2 {
		t.Fatalf("Prune = %d, %v; want both runs' rows", n, err)
	}
	if f := r.files(); len(f) != 0 {
		t.Errorf("files after retention: %v", f)
	}
}

// A run that is not a failed execution wants nothing.
func TestWants(t *testing.T) {
	detail := `{"method":"request","execution_id":"execution-1"}`
	for _, tc := range []struct {
		r    runnerd.Run
		want bool
	}{
		{runnerd.Run{Kind: "execute", State: runnerd.StateFailed, Detail: detail}, true},
		{runnerd.Run{Kind: "execute", State: runnerd.StateSucceeded, Detail: detail}, false},
		{runnerd.Run{Kind: "execute", State: runnerd.StateFailed, Detail: `{"method":"request"}`}, false},
		{runnerd.Run{Kind: "execute", State: runnerd.StateFailed, Detail: "not json"}, false},
		{runnerd.Run{Kind: "deploy", State: runnerd.StateFailed, Detail: detail}, false},
	} {
		if got := evidence.Wants(tc.r); got != tc.want {
			t.Errorf("Wants(%+v) = %v; want %v", tc.r, got, tc.want)
		}
	}
}

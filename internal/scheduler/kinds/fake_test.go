package kinds

import (
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

var t0 = time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC)

// fakeClock is a manual clock whose Sleep advances time at once.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
	// gate, if set, is waited on by the first Sleep (to let a test register
	// every waiter before time starts to move).
	gate   chan struct{}
	sleeps int
}

func newClock(t time.Time) *fakeClock { return &fakeClock{t: t} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func (c *fakeClock) Sleep(ctx context.Context, d time.Duration) error {
	if c.gate != nil {
		select {
		case <-c.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.sleeps++
	c.mu.Unlock()
	return nil
}

// budgetErr is the refusal the real gate returns, wrapped as the client does.
func budgetErr() error {
	return fmt.Errorf("atomapi: X: gate: %w", &budget.RefusedError{Reason: "test", Err: budget.ErrExhausted})
}

// fieldsOf flattens a record's top-level fields for the fake filter.
func fieldsOf(v any) map[string]string {
	b, _ := json.Marshal(v)
	var m map[string]any
	_ = json.Unmarshal(b, &m)
	out := map[string]string{}
	for k, x := range m {
		out[k] = fmt.Sprint(x)
	}
	return out
}

// match evaluates the filter grammar the kinds use.
func match(e *atomapi.Expression, f map[string]string) bool {
	if e == nil {
		return true
	}
	arg := func(i int) string { return string(e.Argument[i]) }
	switch e.Operator {
	case atomapi.OpAnd:
		for i := range e.NestedExpression {
			if !match(&e.NestedExpression[i], f) {
				return false
			}
		}
		return true
	case atomapi.OpOr:
		for i := range e.NestedExpression {
			if match(&e.NestedExpression[i], f) {
				return true
			}
		}
		return false
	case atomapi.OpEquals:
		return f[e.Property] == arg(0)
	case atomapi.OpGreaterThanOrEqual:
		return f[e.Property] >= arg(0)
	case atomapi.OpLessThan:
		return f[e.Property] < arg(0)
	case atomapi.OpBetween:
		return f[e.Property] >= arg(0) && f[e.Property] <= arg(1)
	}
	panic("fake: operator " + e.Operator)
}

// --- execute ---------------------------------------------------------------

// procSpec is how a fake process behaves once started.
type procSpec struct {
	appear time.Duration // the record shows after this long
	runFor time.Duration // INPROCESS for this long after it shows
	final  string
	msg    string
}

type fakeExecution struct {
	id, requestID, process, atom string
	start                        time.Time
	spec                         procSpec
}

func (x *fakeExecution) record(now time.Time) (atomapi.ExecutionRecord, bool) {
	shows := x.start.Add(x.spec.appear)
	if now.Before(shows) {
		return atomapi.ExecutionRecord{}, false
	}
	r := atomapi.ExecutionRecord{ExecutionID: x.id, ProcessID: x.process, AtomID: x.atom,
		ExecutionTime: atomapi.FormatTime(shows), Status: atomapi.StatusInProcess}
	if !now.Before(shows.Add(x.spec.runFor)) {
		r.Status, r.Message = x.spec.final, x.spec.msg
	}
	return r, true
}

// fakeExec is an execute/poll client over fake executions.
type fakeExec struct {
	mu    sync.Mutex
	clock *fakeClock
	specs map[string]procSpec
	execs []*fakeExecution
	calls map[string]int
	exprs []*atomapi.Expression

	createErr, executeErr, asyncErr, queryErr error
	lastRequest                               atomapi.ExecutionRequest
	lastExecute                               atomapi.ExecuteProcessRequest
	infos                                     []atomapi.CallInfo
}

func newFakeExec(c *fakeClock) *fakeExec {
	return &fakeExec{clock: c, calls: map[string]int{}, specs: map[string]procSpec{
		"proc-orders":   {appear: 2 * time.Second, runFor: 20 * time.Second, final: atomapi.StatusComplete},
		"proc-invoices": {appear: 2 * time.Second, runFor: 20 * time.Second, final: atomapi.StatusCompleteWarn, msg: "2 documents skipped"},
		"proc-fails":    {appear: 2 * time.Second, runFor: 20 * time.Second, final: atomapi.StatusError, msg: "Connector error: host unreachable"},
	}}
}

func (f *fakeExec) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// start adds an execution as if it had been started at t (by anyone).
func (f *fakeExec) start(process, atom, requestID string, t time.Time) *fakeExecution {
	x := &fakeExecution{id: fmt.Sprintf("execution-%d-2026.01.05", len(f.execs)+1), requestID: requestID,
		process: process, atom: atom, start: t, spec: f.specs[process]}
	f.execs = append(f.execs, x)
	return x
}

func (f *fakeExec) CreateExecutionRequest(ctx context.Context, r atomapi.ExecutionRequest) (atomapi.ExecutionRequest, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["create"]++
	f.lastRequest = r
	f.infos = append(f.infos, atomapi.CallInfoFrom(ctx))
	if f.createErr != nil {
		return atomapi.ExecutionRequest{}, f.createErr
	}
	r.RequestID = fmt.Sprintf("executionrecord-%d", len(f.execs)+1)
	f.start(r.ProcessID, r.AtomID, r.RequestID, f.clock.Now())
	return r, nil
}

func (f *fakeExec) ExecuteProcess(ctx context.Context, r atomapi.ExecuteProcessRequest) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["executeProcess"]++
	f.lastExecute = r
	if f.executeErr != nil {
		return f.executeErr
	}
	f.start(r.ProcessID, r.AtomID, "", f.clock.Now())
	return nil
}

func (f *fakeExec) ExecutionRecordAsync(ctx context.Context, requestID string) (atomapi.ExecutionRecord, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["async"]++
	if f.asyncErr != nil {
		return atomapi.ExecutionRecord{}, false, f.asyncErr
	}
	for _, x := range f.execs {
		if x.requestID == requestID {
			r, ok := x.record(f.clock.Now())
			return r, !ok, nil
		}
	}
	return atomapi.ExecutionRecord{}, false, &atomapi.APIError{Operation: "ExecutionRecord.async", Status: 404}
}

func (f *fakeExec) QueryExecutionRecords(ctx context.Context, expr *atomapi.Expression, _ *atomapi.QuerySort) ([]atomapi.ExecutionRecord, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls["query"]++
	f.exprs = append(f.exprs, expr)
	if f.queryErr != nil {
		return nil, f.queryErr
	}
	var out []atomapi.ExecutionRecord
	for _, x := range f.execs {
		if r, ok := x.record(f.clock.Now()); ok && match(expr, fieldsOf(r)) {
			out = append(out, r)
		}
	}
	return out, nil
}

// --- deploy ----------------------------------------------------------------

type fakeDeploy struct {
	packages    []atomapi.DeployedPackage
	deployments []atomapi.Deployment
	digests     map[string]string

	createErr, deployErr, queryErr error
	created                        []atomapi.DeployedPackage
	deployed                       [][4]string
	calls                          map[string]int
	exprs                          []*atomapi.Expression
}

func (f *fakeDeploy) QueryDeployedPackages(ctx context.Context, expr *atomapi.Expression) ([]atomapi.DeployedPackage, error) {
	f.calls["queryPackages"]++
	f.exprs = append(f.exprs, expr)
	if f.queryErr != nil {
		return nil, f.queryErr
	}
	var out []atomapi.DeployedPackage
	for _, p := range f.packages {
		if match(expr, fieldsOf(p)) {
			out = append(out, p)
		}
	}
	return out, nil
}

func (f *fakeDeploy) CreateDeployedPackage(ctx context.Context, d atomapi.DeployedPackage) (atomapi.DeployedPackage, error) {
	f.calls["createPackage"]++
	f.created = append(f.created, d)
	if f.createErr != nil {
		return atomapi.DeployedPackage{}, f.createErr
	}
	d.DeploymentID, d.Active = fmt.Sprintf("dp-%d", len(f.packages)+1), true
	for _, p := range f.packages {
		if p.PackageID == d.PackageID {
			d.ComponentID, d.PackageVersion = p.ComponentID, p.PackageVersion
		}
	}
	f.packages = append(f.packages, d)
	return d, nil
}

func (f *fakeDeploy) QueryDeployments(ctx context.Context, expr *atomapi.Expression) ([]atomapi.Deployment, error) {
	f.calls["queryDeployments"]++
	f.exprs = append(f.exprs, expr)
	if f.queryErr != nil {
		return nil, f.queryErr
	}
	var out []atomapi.Deployment
	for _, d := range f.deployments {
		if match(expr, fieldsOf(d)) {
			out = append(out, d) // the query does not return the digest
		}
	}
	return out, nil
}

func (f *fakeDeploy) GetDeployment(ctx context.Context, id string) (atomapi.Deployment, error) {
	f.calls["getDeployment"]++
	for _, d := range f.deployments {
		if d.ID == id {
			d.Digest = f.digests[id]
			return d, nil
		}
	}
	return atomapi.Deployment{}, &atomapi.APIError{Operation: "Deployment.get", Status: 404}
}

func (f *fakeDeploy) DeployProcess(ctx context.Context, depID, envID, digest, listener string) (atomapi.Deployment, error) {
	f.calls["deployProcess"]++
	f.deployed = append(f.deployed, [4]string{depID, envID, digest, listener})
	if f.deployErr != nil {
		return atomapi.Deployment{}, f.deployErr
	}
	var src atomapi.Deployment
	for _, d := range f.deployments {
		if d.ID == depID {
			src = d
		}
	}
	id := fmt.Sprintf("dep-%d", len(f.deployments)+1)
	for i := range f.deployments {
		if f.deployments[i].EnvironmentID == envID && f.deployments[i].ProcessID == src.ProcessID {
			f.deployments[i].Current = false
		}
	}
	f.deployments = append(f.deployments, atomapi.Deployment{ID: id, EnvironmentID: envID, ProcessID: src.ProcessID, Current: true, Version: 1})
	f.digests[id] = digest
	return atomapi.Deployment{ID: id}, nil
}

// --- export ----------------------------------------------------------------

// fakeQuery pages raw records that match the filter, PageSize per page.
type fakeQuery struct {
	records  []json.RawMessage
	pageSize int
	// failAt: the page number (1-based, counted across all queries) that fails with failErr.
	failAt  int
	failErr error
	pages   int
	objects []string
	exprs   []*atomapi.Expression
	// onPage runs before each page is yielded (the test looks at the disk).
	onPage func()
}

func (f *fakeQuery) Query(ctx context.Context, object string, q atomapi.QueryConfig) iter.Seq2[*atomapi.QueryResult, error] {
	f.objects = append(f.objects, object)
	f.exprs = append(f.exprs, q.QueryFilter.Expression)
	return func(yield func(*atomapi.QueryResult, error) bool) {
		var hits []json.RawMessage
		for _, r := range f.records {
			var m map[string]any
			_ = json.Unmarshal(r, &m)
			fl := map[string]string{}
			for k, v := range m {
				if s, ok := v.(string); ok {
					fl[k] = s
				}
			}
			if match(q.QueryFilter.Expression, fl) {
				hits = append(hits, r)
			}
		}
		size := f.pageSize
		if size == 0 {
			size = atomapi.PageSize
		}
		for i := 0; i == 0 || i < len(hits); i += size {
			f.pages++
			if f.onPage != nil {
				f.onPage()
			}
			if f.failAt == f.pages {
				yield(nil, f.failErr)
				return
			}
			page := &atomapi.QueryResult{Result: hits[i:min(i+size, len(hits))]}
			if !yield(page, nil) {
				return
			}
		}
	}
}

// fakeState is a WatermarkStore and AuditSink that checks the order of events.
type fakeState struct {
	t         testing.TB
	wm        time.Time
	windows   []store.ExportWindow
	marks     []time.Time
	audit     map[string]store.AuditRecord
	auditPage []int
	stateErr  error
}

func (s *fakeState) JobState(ctx context.Context, job string) (store.JobState, error) {
	return store.JobState{Job: job, Watermark: s.wm}, s.stateErr
}

func (s *fakeState) SetWatermark(ctx context.Context, job string, t time.Time) error {
	s.t.Helper()
	// The watermark may move only once the window's file is in place and recorded.
	if len(s.windows) == 0 || !s.windows[len(s.windows)-1].To.Equal(t) {
		s.t.Errorf("SetWatermark(%v) before RecordExportWindow of that window", t)
	} else if _, err := os.Stat(s.windows[len(s.windows)-1].File); err != nil {
		s.t.Errorf("SetWatermark(%v): file not in place: %v", t, err)
	}
	s.wm = t
	s.marks = append(s.marks, t)
	return nil
}

func (s *fakeState) RecordExportWindow(ctx context.Context, w store.ExportWindow) error {
	if _, err := os.Stat(w.File); err != nil {
		s.t.Errorf("RecordExportWindow(%s): file not in place: %v", w.File, err)
	}
	s.windows = append(s.windows, w)
	return nil
}

func (s *fakeState) UpsertAuditJSON(ctx context.Context, raws []json.RawMessage) (int, error) {
	recs, err := auditRecords(raws)
	if err != nil {
		return 0, err
	}
	if s.audit == nil {
		s.audit = map[string]store.AuditRecord{}
	}
	n := 0
	for _, r := range recs {
		if _, ok := s.audit[r.DocumentID]; !ok {
			n++
		}
		s.audit[r.DocumentID] = r
	}
	s.auditPage = append(s.auditPage, len(recs))
	return n, nil
}

// tempFiles lists leftover temporary files under dir.
func tempFiles(t *testing.T, dir string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".tmp") {
			out = append(out, p)
		}
		return nil
	})
	sort.Strings(out)
	return out
}

func runCtx(job string, nominal time.Time, c *fakeClock) *scheduler.RunContext {
	return &scheduler.RunContext{Run: runnerd.Run{ID: 7, Job: job, NominalTime: nominal}, Now: c.Now}
}

func detailOf[T any](tb testing.TB, out scheduler.Outcome) T {
	tb.Helper()
	var v T
	if err := json.Unmarshal([]byte(out.Detail), &v); err != nil {
		tb.Fatalf("Detail %q: %v", out.Detail, err)
	}
	return v
}

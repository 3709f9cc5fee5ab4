package atomsim_test

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

// These tests run the real client (internal/atomapi) against the simulator.

// ledger is a Recorder that keeps every attempt's request id and status.
type ledger struct {
	mu     sync.Mutex
	ids    []string
	status []int
}

func (l *ledger) Begin(_ context.Context, c *atomapi.Call) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.ids = append(l.ids, c.RequestID)
	return nil
}

func (l *ledger) End(_ context.Context, c *atomapi.Call, r atomapi.Result) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.status = append(l.status, r.Status)
}

func newClient(t *testing.T, c *sim, password string, attempts int, mod ...func(*atomapi.Config)) (*atomapi.Client, *ledger) {
	t.Helper()
	l := &ledger{}
	cfg := atomapi.Config{
		BaseURL:     c.ts.URL + "/api/rest/v1",
		AccountID:   atomsim.DefaultAccount,
		Credentials: atomapi.NewCredentials(atomsim.DefaultUser, password),
		Recorder:    l,
		HTTPClient:  c.ts.Client(),
		Timeout:     10 * time.Second,
		Retry:       atomapi.RetryPolicy{MaxAttempts: attempts},
		Sleep:       func(ctx context.Context, _ time.Duration) error { return ctx.Err() },
	}
	for _, m := range mod {
		m(&cfg)
	}
	cl, err := atomapi.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return cl, l
}

// checkLedger compares the client's attempts with the simulator's request log, one to one.
func checkLedger(t *testing.T, c *sim, l *ledger) {
	t.Helper()
	var got []string
	var status []int
	for _, r := range c.s.Requests() {
		got = append(got, r.RequestID)
		status = append(status, r.Status)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !slices.Equal(got, l.ids) || !slices.Equal(status, l.status) {
		t.Errorf("simulator saw %v %v; client recorded %v %v", got, status, l.ids, l.status)
	}
}

func TestClientQuery(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: 5000, Events: -1, ExecutionRecords: -1})
	cl, l := newClient(t, c, atomsim.DefaultPassword, 1)
	from, to, want := auditWindow(t, c.s.Data().AuditLogs, 1234)
	logs, err := atomapi.QueryAll[atomapi.AuditLog](context.Background(), cl, "AuditLog",
		atomapi.QueryConfig{QueryFilter: atomapi.QueryFilter{Expression: atomapi.And(atomapi.Between("date", from, to))}})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range logs {
		got = append(got, a.DocumentID)
	}
	if !slices.Equal(got, want) {
		t.Errorf("QueryAll returned %d records; want %d", len(got), len(want))
	}
	if n := len(c.s.Requests()); n != 13 {
		t.Errorf("requests = %d; want 13", n)
	}
	// The iterator form, with a grouped filter.
	pages := 0
	for page, err := range cl.Query(context.Background(), "AuditLog", atomapi.QueryConfig{QueryFilter: atomapi.QueryFilter{
		Expression: atomapi.And(atomapi.Between("date", from, to), atomapi.Eq("type", "account"))}}) {
		if err != nil {
			t.Fatal(err)
		}
		pages++
		_ = page
	}
	if pages == 0 {
		t.Error("Query yielded no page")
	}
	// Sorted ExecutionRecord query and a bad filter.
	if _, err := cl.QueryExecutionRecords(context.Background(), &atomapi.Expression{Operator: "NOPE", Property: "status"}, nil); !errors.Is(err, atomapi.ErrBadRequest) {
		t.Errorf("bad filter: %v; want ErrBadRequest", err)
	}
	checkLedger(t, c, l)
}

func TestClientExecution(t *testing.T) {
	for _, bare := range []bool{false, true} {
		c := newSim(t, execOpts(bare))
		cl, l := newClient(t, c, atomsim.DefaultPassword, 3)
		ctx := context.Background()
		ans, err := cl.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: atomsim.AtomTest, ProcessID: atomsim.ProcFails})
		if err != nil {
			t.Fatal(err)
		}
		if _, pending, err := cl.ExecutionRecordAsync(ctx, ans.RequestID); err != nil || !pending {
			t.Errorf("bare=%v: first poll pending=%v err=%v; want pending", bare, pending, err)
		}
		c.s.Advance(6 * time.Second)
		rec, pending, err := cl.ExecutionRecordAsync(ctx, ans.RequestID)
		if err != nil || pending || rec.Status != atomapi.StatusInProcess {
			t.Errorf("bare=%v: running poll = %+v %v %v; want INPROCESS", bare, rec, pending, err)
		}
		c.s.Advance(time.Minute)
		rec, _, err = cl.ExecutionRecordAsync(ctx, ans.RequestID)
		if err != nil || rec.Status != atomapi.StatusError || rec.Message != atomsim.FailMessage {
			t.Errorf("bare=%v: final poll = %+v %v; want ERROR with the message", bare, rec, err)
		}
		recs, err := cl.QueryExecutionRecords(ctx, atomapi.And(atomapi.Eq("executionId", rec.ExecutionID)), nil)
		if err != nil || len(recs) != 1 || recs[0].Status != atomapi.StatusError {
			t.Errorf("bare=%v: QueryExecutionRecords = %+v %v", bare, recs, err)
		}
		if err := cl.ExecuteProcess(ctx, atomapi.ExecuteProcessRequest{AtomID: atomsim.AtomProd, ProcessID: atomsim.ProcOrders}); err != nil {
			t.Errorf("ExecuteProcess: %v", err)
		}
		if _, err := cl.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: atomsim.AtomTest, ProcessID: "proc-nope"}); !errors.Is(err, atomapi.ErrBadRequest) {
			t.Errorf("unknown process: %v; want ErrBadRequest", err)
		}
		if ex := c.s.Executions(); len(ex) != 2 || ex[0].PlatformID != ans.RequestID || ex[1].Via != "executeProcess" {
			t.Errorf("Executions() = %+v", ex)
		}
		checkLedger(t, c, l)
	}
}

func TestClientDeploy(t *testing.T) {
	c := newSim(t, tiny)
	cl, l := newClient(t, c, atomsim.DefaultPassword, 3)
	ctx := context.Background()

	pkgs, err := cl.QueryPackagedComponents(ctx, atomapi.And(atomapi.Eq("componentId", atomsim.ProcOrders)))
	if err != nil || len(pkgs) != 3 {
		t.Fatalf("QueryPackagedComponents = %d %v; want 3", len(pkgs), err)
	}
	p, err := cl.CreatePackagedComponent(ctx, atomapi.PackagedComponent{ComponentID: atomsim.ProcOrders, PackageVersion: "4.0"})
	if err != nil || p.PackageID == "" || p.ComponentVersion != "7" {
		t.Fatalf("CreatePackagedComponent = %+v %v", p, err)
	}
	if _, err := cl.CreateDeployedPackage(ctx, atomapi.DeployedPackage{EnvironmentID: atomsim.EnvTest, PackageID: atomsim.PkgOrders}); !errors.Is(err, atomapi.ErrDuplicateDeploy) {
		t.Errorf("duplicate deploy: %v; want ErrDuplicateDeploy", err)
	}
	dp, err := cl.CreateDeployedPackage(ctx, atomapi.DeployedPackage{EnvironmentID: atomsim.EnvProd, PackageID: p.PackageID})
	if err != nil || !dp.Active || dp.PackageID != p.PackageID {
		t.Fatalf("CreateDeployedPackage = %+v %v", dp, err)
	}
	active, err := cl.QueryDeployedPackages(ctx, atomapi.And(atomapi.Eq("environmentId", atomsim.EnvProd),
		atomapi.Eq("componentId", atomsim.ProcOrders), atomapi.Eq("active", "true")))
	if err != nil || len(active) != 1 || active[0].DeploymentID != dp.DeploymentID {
		t.Errorf("active in env-prod = %+v %v; want %s", active, err, dp.DeploymentID)
	}

	dep, err := cl.GetDeployment(ctx, atomsim.DepOrdersTest)
	if err != nil || dep.Digest == "" {
		t.Fatalf("GetDeployment = %+v %v", dep, err)
	}
	if _, err := cl.DeployProcess(ctx, atomsim.DepOrdersTest, atomsim.EnvProd, "bad-digest", "RUNNING"); !errors.Is(err, atomapi.ErrBadRequest) {
		t.Errorf("DeployProcess with a bad digest: %v; want ErrBadRequest", err)
	}
	nd, err := cl.DeployProcess(ctx, atomsim.DepOrdersTest, atomsim.EnvProd, dep.Digest, "RUNNING")
	if err != nil || nd.ID == "" || !nd.Current {
		t.Fatalf("DeployProcess = %+v %v", nd, err)
	}
	deps, err := cl.QueryDeployments(ctx, atomapi.And(atomapi.Eq("environmentId", atomsim.EnvProd), atomapi.Eq("current", "true"),
		atomapi.Eq("processId", atomsim.ProcOrders)))
	if err != nil || len(deps) != 1 || deps[0].ID != nd.ID {
		t.Errorf("QueryDeployments = %+v %v; want %s", deps, err, nd.ID)
	}
	var env atomapi.Environment
	if err := cl.Get(ctx, "Environment", atomsim.EnvProd, &env); err != nil || env.Name != "Production" {
		t.Errorf("Get Environment = %+v %v", env, err)
	}
	checkLedger(t, c, l)
}

func TestClientErrorsAndFaults(t *testing.T) {
	ctx := context.Background()
	t.Run("wrong password", func(t *testing.T) {
		c := newSim(t, tiny)
		cl, _ := newClient(t, c, "wrong", 3)
		var env atomapi.Environment
		if err := cl.Get(ctx, "Environment", atomsim.EnvTest, &env); !errors.Is(err, atomapi.ErrAuth) {
			t.Errorf("wrong password: %v; want ErrAuth", err)
		}
	})
	t.Run("rate limited", func(t *testing.T) {
		c := newSim(t, withLimits(1, -1))
		cl, _ := newClient(t, c, atomsim.DefaultPassword, 1)
		var env atomapi.Environment
		cl.Get(ctx, "Environment", atomsim.EnvTest, &env)
		if err := cl.Get(ctx, "Environment", atomsim.EnvTest, &env); !errors.Is(err, atomapi.ErrRateLimited) {
			t.Errorf("second call in the same second at rate 1: %v; want ErrRateLimited", err)
		}
	})
	t.Run("daily allowance", func(t *testing.T) {
		c := newSim(t, withLimits(-1, 2))
		cl, _ := newClient(t, c, atomsim.DefaultPassword, 1)
		var env atomapi.Environment
		cl.Get(ctx, "Environment", atomsim.EnvTest, &env)
		cl.Get(ctx, "Environment", atomsim.EnvTest, &env)
		if err := cl.Get(ctx, "Environment", atomsim.EnvTest, &env); !errors.Is(err, atomapi.ErrRateLimited) {
			t.Errorf("third call with an allowance of 2: %v; want ErrRateLimited (503)", err)
		}
	})
	t.Run("storm and reset are retried for queries", func(t *testing.T) {
		c := newSim(t, tiny)
		cl, l := newClient(t, c, atomsim.DefaultPassword, 5)
		c.s.Inject(atomsim.Fault{Kind: atomsim.Fault503Storm, Count: 2})
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultReset})
		envs, err := atomapi.QueryAll[atomapi.Environment](ctx, cl, "Environment", atomapi.QueryConfig{})
		if err != nil || len(envs) != 3 {
			t.Fatalf("QueryAll through a storm = %d %v; want 3", len(envs), err)
		}
		if n := len(c.s.Requests()); n != 4 {
			t.Errorf("attempts = %d; want 4 (two 503s, a reset, a success)", n)
		}
		checkLedger(t, c, l)
	})
	t.Run("truncated and malformed answers are decode errors", func(t *testing.T) {
		c := newSim(t, tiny)
		cl, _ := newClient(t, c, atomsim.DefaultPassword, 1)
		for _, k := range []atomsim.FaultKind{atomsim.FaultTruncatedJSON, atomsim.FaultMalformedJSON} {
			c.s.Inject(atomsim.Fault{Kind: k})
			if _, err := atomapi.QueryAll[atomapi.Environment](ctx, cl, "Environment", atomapi.QueryConfig{}); !errors.Is(err, atomapi.ErrDecode) {
				t.Errorf("%s: %v; want ErrDecode", k, err)
			}
		}
	})
	t.Run("huge body is cut off", func(t *testing.T) {
		c := newSim(t, tiny)
		cl, _ := newClient(t, c, atomsim.DefaultPassword, 1, func(cfg *atomapi.Config) { cfg.MaxBody = 1 << 20 })
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultHugeBody, Size: 16 << 20})
		if _, err := atomapi.QueryAll[atomapi.Environment](ctx, cl, "Environment", atomapi.QueryConfig{}); err == nil {
			t.Error("a 16 MiB answer was accepted with MaxBody 1 MiB; want an error")
		}
	})
	t.Run("reset after an ExecutionRequest took effect", func(t *testing.T) {
		c := newSim(t, tiny)
		cl, _ := newClient(t, c, atomsim.DefaultPassword, 5)
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultReset, AfterHandling: true})
		_, err := cl.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: atomsim.AtomTest, ProcessID: atomsim.ProcOrders})
		if err == nil {
			t.Error("lost answer: no error")
		}
		if n := len(c.s.Executions()); n != 1 {
			t.Errorf("executions = %d; want 1 (not re-sent blindly)", n)
		}
	})
}

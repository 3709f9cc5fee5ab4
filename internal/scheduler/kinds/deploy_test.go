package kinds

import (
	"context"
	"errors"
	"io"
	"testing"

	"runnerd"
	"runnerd/internal/atomapi"
)

func newFakeDeploy() *fakeDeploy {
	return &fakeDeploy{
		calls: map[string]int{},
		packages: []atomapi.DeployedPackage{
			{DeploymentID: "dp-old", PackageID: "pkg-orders-2", PackageVersion: "2.0", EnvironmentID: "env-test", ComponentID: "proc-orders", Version: 1},
			{DeploymentID: "dp-1", PackageID: "pkg-orders-3", PackageVersion: "3.0", EnvironmentID: "env-test", ComponentID: "proc-orders", Active: true, Version: 2},
			{DeploymentID: "dp-2", PackageID: "pkg-other", EnvironmentID: "env-test", ComponentID: "proc-other", Active: true, Version: 1},
		},
		deployments: []atomapi.Deployment{
			{ID: "dep-orders-test", EnvironmentID: "env-test", ProcessID: "proc-orders", Current: true, Version: 3},
		},
		digests: map[string]string{"dep-orders-test": "digest-abc"},
	}
}

func newDeploy(f *fakeDeploy, method string) *Deploy {
	return &Deploy{Client: f, ProcessID: "proc-orders", FromEnv: "env-test", ToEnv: "env-prod",
		Method: method, ListenerStatus: "RUNNING", Priority: runnerd.PriorityHigh}
}

func TestDeployPackage(t *testing.T) {
	c := newClock(t0)
	f := newFakeDeploy()
	k := newDeploy(f, MethodPackage)
	rc := runCtx("promote-orders", t0, c)

	out := k.Run(context.Background(), rc)
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("first Run() = %s (%v); want succeeded", out.State, out.Err)
	}
	d := detailOf[DeployDetail](t, out)
	if d.Result != "deployed" || d.PackageID != "pkg-orders-3" || d.Calls != 2 {
		t.Errorf("first Run() detail = %+v; want deployed pkg-orders-3 in 2 calls (one lookup, one write)", d)
	}
	want := atomapi.DeployedPackage{EnvironmentID: "env-prod", PackageID: "pkg-orders-3", ListenerStatus: "RUNNING",
		Notes: "runnerd promote-orders 2026-01-05T10:00:00Z"}
	if len(f.created) != 1 || f.created[0] != want {
		t.Errorf("CreateDeployedPackage got %+v; want one %+v", f.created, want)
	}
	// One lookup for both environments: componentId AND active AND (source OR target).
	lookup := f.exprs[0]
	if lookup.Operator != atomapi.OpAnd || len(lookup.NestedExpression) != 3 {
		t.Fatalf("lookup filter = %+v; want an and of 3", lookup)
	}
	for i, e := range []atomapi.Expression{eq("componentId", "proc-orders"), eq("active", "true")} {
		if got := lookup.NestedExpression[i]; got.Property != e.Property || string(got.Argument[0]) != string(e.Argument[0]) {
			t.Errorf("lookup filter part %d = %+v; want %+v", i, got, e)
		}
	}
	envs := lookup.NestedExpression[2]
	if envs.Operator != atomapi.OpOr || len(envs.NestedExpression) != 2 ||
		string(envs.NestedExpression[0].Argument[0]) != "env-test" || string(envs.NestedExpression[1].Argument[0]) != "env-prod" {
		t.Errorf("lookup filter part 2 = %+v; want environmentId env-test or env-prod", envs)
	}

	// Second run: the target runs that package already. One lookup, no write.
	out = k.Run(context.Background(), rc)
	d = detailOf[DeployDetail](t, out)
	if out.State != runnerd.StateSucceeded || d.Result != "already deployed" || d.Calls != 1 {
		t.Errorf("second Run() = %s %+v; want succeeded, already deployed, 1 call", out.State, d)
	}
	if f.calls["createPackage"] != 1 {
		t.Errorf("CreateDeployedPackage calls = %d; want 1 over two runs", f.calls["createPackage"])
	}
}

func TestDeployPackageErrors(t *testing.T) {
	tests := []struct {
		name              string
		createErr, qryErr error
		noSource          bool
		state             runnerd.RunState
		retryable         bool
		result            string
	}{
		{name: "duplicate is success", createErr: &atomapi.APIError{Operation: "DeployedPackage.create", Status: 400, Message: "duplicate deployment"},
			state: runnerd.StateSucceeded, result: "duplicate"},
		{name: "sent transport error", createErr: &atomapi.TransportError{Sent: true, Err: io.ErrUnexpectedEOF}, state: runnerd.StateUnknown},
		{name: "decode error", createErr: &atomapi.DecodeError{Status: 200, Err: io.ErrUnexpectedEOF}, state: runnerd.StateUnknown},
		{name: "not sent", createErr: &atomapi.TransportError{Sent: false, Err: errors.New("refused")}, state: runnerd.StateFailed, retryable: true},
		{name: "rate limited", createErr: &atomapi.APIError{Status: 503}, state: runnerd.StateFailed, retryable: true},
		{name: "budget before the write", createErr: budgetErr(), state: runnerd.StateDeferred},
		{name: "budget on lookup", qryErr: budgetErr(), state: runnerd.StateDeferred},
		{name: "lookup error", qryErr: &atomapi.APIError{Status: 500}, state: runnerd.StateFailed, retryable: true},
		{name: "auth on lookup", qryErr: &atomapi.APIError{Status: 401}, state: runnerd.StateFailed},
		{name: "no source package", noSource: true, state: runnerd.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeDeploy()
			f.createErr, f.queryErr = tt.createErr, tt.qryErr
			if tt.noSource {
				f.packages = f.packages[2:]
			}
			out := newDeploy(f, MethodPackage).Run(context.Background(), runCtx("j", t0, newClock(t0)))
			if out.State != tt.state || out.Retryable != tt.retryable {
				t.Fatalf("Run() = %s retryable=%v (%v); want %s retryable=%v", out.State, out.Retryable, out.Err, tt.state, tt.retryable)
			}
			if tt.result != "" {
				if d := detailOf[DeployDetail](t, out); d.Result != tt.result {
					t.Errorf("Detail.Result = %q; want %q", d.Result, tt.result)
				}
			}
		})
	}
}

func TestDeployProcessLegacy(t *testing.T) {
	f := newFakeDeploy()
	k := newDeploy(f, MethodDeployProcess)
	rc := runCtx("promote-legacy", t0, newClock(t0))
	out := k.Run(context.Background(), rc)
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("first Run() = %s (%v); want succeeded", out.State, out.Err)
	}
	want := [4]string{"dep-orders-test", "env-prod", "digest-abc", "RUNNING"}
	if len(f.deployed) != 1 || f.deployed[0] != want {
		t.Errorf("DeployProcess got %v; want one %v", f.deployed, want)
	}
	if d := detailOf[DeployDetail](t, out); d.Result != "deployed" || d.Digest != "digest-abc" || d.Calls != 4 {
		t.Errorf("Detail = %+v; want deployed with the digest in 4 calls", d)
	}

	out = k.Run(context.Background(), rc)
	d := detailOf[DeployDetail](t, out)
	if out.State != runnerd.StateSucceeded || d.Result != "already deployed" || len(f.deployed) != 1 {
		t.Errorf("second Run() = %s %+v, %d deploys; want already deployed, no second write", out.State, d, len(f.deployed))
	}

	// A new digest in the source: deployed again.
	f.digests["dep-orders-test"] = "digest-new"
	out = k.Run(context.Background(), rc)
	if d := detailOf[DeployDetail](t, out); out.State != runnerd.StateSucceeded || d.Result != "deployed" || len(f.deployed) != 2 {
		t.Errorf("third Run() = %s %+v; want a second deploy for the new digest", out.State, d)
	}

	t.Run("unknown on a sent transport error", func(t *testing.T) {
		f := newFakeDeploy()
		f.deployErr = &atomapi.TransportError{Sent: true, Err: context.DeadlineExceeded}
		if out := newDeploy(f, MethodDeployProcess).Run(context.Background(), rc); out.State != runnerd.StateUnknown {
			t.Errorf("Run() = %s (%v); want unknown", out.State, out.Err)
		}
	})
}

package atomsim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

func execOpts(bare bool) atomsim.Options {
	o := tiny
	o.RecordDelay, o.ExecDuration, o.BareAsyncRecord = 5*time.Second, 30*time.Second, bare
	return o
}

// poll decodes GET /ExecutionRecord/async/{id} in the shape the options select.
func poll(t *testing.T, c *sim, requestID string, bare bool) (status int, rec atomapi.ExecutionRecord) {
	t.Helper()
	rep := c.req("GET", "/ExecutionRecord/async/"+requestID, nil)
	if rep.status == http.StatusAccepted {
		var body atomapi.AsyncExecutionResult
		if err := json.Unmarshal(rep.body, &body); err != nil || body.ResponseStatusCode != 202 || body.Type != "AsyncOperationResult" {
			t.Fatalf("202 body %s; want an AsyncOperationResult with responseStatusCode 202", rep.body)
		}
		return rep.status, rec
	}
	if rep.status != http.StatusOK {
		t.Fatalf("async poll: %d %s", rep.status, rep.body)
	}
	if bare {
		if err := json.Unmarshal(rep.body, &rec); err != nil || rec.Type != "ExecutionRecord" {
			t.Fatalf("bare record %s: %v", rep.body, err)
		}
		return rep.status, rec
	}
	var body atomapi.AsyncExecutionResult
	if err := json.Unmarshal(rep.body, &body); err != nil || body.ResponseStatusCode != 200 || body.NumberOfResults != 1 || len(body.Result) != 1 {
		t.Fatalf("wrapped record %s: %v", rep.body, err)
	}
	return rep.status, body.Result[0]
}

func TestExecutionLifecycle(t *testing.T) {
	for _, bare := range []bool{false, true} {
		name := "wrapped"
		if bare {
			name = "bare"
		}
		t.Run(name, func(t *testing.T) {
			c := newSim(t, execOpts(bare))
			want := map[string]string{
				atomsim.ProcOrders:   atomapi.StatusComplete,
				atomsim.ProcInvoices: atomapi.StatusCompleteWarn,
				atomsim.ProcFails:    atomapi.StatusError,
			}
			reqIDs := map[string]string{}
			for proc := range want {
				rep := c.req("POST", "/ExecutionRequest", atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: atomsim.AtomTest, ProcessID: proc})
				var ans atomapi.ExecutionRequest
				if err := json.Unmarshal(rep.body, &ans); err != nil || rep.status != 200 {
					t.Fatalf("ExecutionRequest %s: %d %s", proc, rep.status, rep.body)
				}
				if !strings.HasPrefix(ans.RequestID, "executionrecord-") || !strings.HasSuffix(ans.RecordURL, "/ExecutionRecord/async/"+ans.RequestID) {
					t.Fatalf("answer %+v; want requestId executionrecord-… and its recordUrl", ans)
				}
				reqIDs[proc] = ans.RequestID
				if st, _ := poll(t, c, ans.RequestID, bare); st != http.StatusAccepted {
					t.Errorf("%s: poll before the record exists = %d; want 202", proc, st)
				}
			}
			c.s.Advance(5 * time.Second)
			for proc, id := range reqIDs {
				st, rec := poll(t, c, id, bare)
				if st != 200 || rec.Status != atomapi.StatusInProcess || rec.ProcessID != proc || rec.AtomID != atomsim.AtomTest {
					t.Errorf("%s after 5 s: %d %+v; want 200 INPROCESS", proc, st, rec)
				}
				if !strings.HasPrefix(rec.ExecutionID, "execution-") || !strings.HasSuffix(rec.ExecutionID, "-"+t0.Format("2006.01.02")) {
					t.Errorf("executionId %q; want execution-<uuid>-%s", rec.ExecutionID, t0.Format("2006.01.02"))
				}
			}
			c.s.Advance(25 * time.Second)
			for proc, id := range reqIDs {
				_, rec := poll(t, c, id, bare)
				if rec.Status != want[proc] {
					t.Errorf("%s after 30 s: status %s; want %s", proc, rec.Status, want[proc])
				}
				if (proc == atomsim.ProcFails) != (rec.Message != "") {
					t.Errorf("%s: message %q; want one only on ERROR", proc, rec.Message)
				}
				if rec.ExecutionDuration != 30000 || rec.RecordedDate != atomapi.FormatTime(t0.Add(30*time.Second)) {
					t.Errorf("%s: duration %d recorded %s; want 30000 and %s", proc, rec.ExecutionDuration, rec.RecordedDate, atomapi.FormatTime(t0.Add(30*time.Second)))
				}
			}
			ex := c.s.Executions()
			if len(ex) != 3 {
				t.Fatalf("Executions() = %d; want 3", len(ex))
			}
			for i, e := range ex {
				if e.Via != "ExecutionRequest" || e.RequestID != "req-"+itoa(2*i+1) || e.PlatformID != reqIDs[e.ProcessID] || !e.Started.Equal(t0) {
					t.Errorf("Executions()[%d] = %+v", i, e)
				}
			}
		})
	}
}

func TestExecutionVisibleToQuery(t *testing.T) {
	c := newSim(t, execOpts(false))
	rep := c.req("POST", "/executeProcess", atomapi.ExecuteProcessRequest{AtomID: atomsim.AtomProd, ProcessID: atomsim.ProcFails})
	if rep.status != 200 || len(rep.body) != 0 {
		t.Fatalf("executeProcess = %d %q; want 200 with no body", rep.status, rep.body)
	}
	ex := c.s.Executions()
	if len(ex) != 1 || ex[0].Via != "executeProcess" || ex[0].PlatformID != "" {
		t.Fatalf("Executions() = %+v; want one via executeProcess", ex)
	}
	q := filter(group("and", simple("EQUALS", "processId", atomsim.ProcFails),
		simple("BETWEEN", "executionTime", atomapi.FormatTime(t0.Add(-time.Minute)), atomapi.FormatTime(t0.Add(time.Minute)))))
	statusAt := func() []string {
		raw, _, _ := c.queryAll("ExecutionRecord", q)
		var out []string
		for _, r := range decodeAll[atomapi.ExecutionRecord](t, raw) {
			out = append(out, r.Status)
		}
		return out
	}
	if got := statusAt(); len(got) != 0 {
		t.Errorf("before the record appears: %v; want none", got)
	}
	c.s.Advance(6 * time.Second)
	if got := statusAt(); len(got) != 1 || got[0] != atomapi.StatusInProcess {
		t.Errorf("while running: %v; want [INPROCESS]", got)
	}
	c.s.Advance(time.Minute)
	if got := statusAt(); len(got) != 1 || got[0] != atomapi.StatusError {
		t.Errorf("after ExecDuration: %v; want [ERROR]", got)
	}
	// Also by name, as executeProcess allows.
	if rep := c.req("POST", "/executeProcess", atomapi.ExecuteProcessRequest{AtomID: atomsim.AtomTest, ProcessName: "Orders Sync"}); rep.status != 200 {
		t.Errorf("executeProcess by name: %d %s", rep.status, rep.body)
	}
}

func TestExecutionRequestErrors(t *testing.T) {
	c := newSim(t, tiny)
	tests := []struct {
		name string
		req  atomapi.ExecutionRequest
		want string
	}{
		{"unknown process", atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: atomsim.AtomTest, ProcessID: "proc-nope"}, "invalid process id"},
		{"seeded but not runnable", atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: atomsim.AtomTest, ProcessID: "proc-archive"}, "invalid process id"},
		{"unknown atom", atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: "atom-nope", ProcessID: atomsim.ProcOrders}, "invalid atom id"},
		{"no atom", atomapi.ExecutionRequest{Type: "ExecutionRequest", ProcessID: atomsim.ProcOrders}, "invalid atom id"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rep := c.req("POST", "/ExecutionRequest", tc.req)
			if rep.status != 400 || !strings.Contains(string(rep.body), tc.want) {
				t.Errorf("ExecutionRequest(%+v) = %d %s; want 400 %q", tc.req, rep.status, rep.body, tc.want)
			}
		})
	}
	if rep := c.req("GET", "/ExecutionRecord/async/executionrecord-unknown", nil); rep.status != 400 {
		t.Errorf("async poll of an unknown id = %d; want 400", rep.status)
	}
	if n := len(c.s.Executions()); n != 0 {
		t.Errorf("refused requests started %d executions; want 0", n)
	}
}

func TestDeployedPackage(t *testing.T) {
	c := newSim(t, tiny)
	active := func(env string) []atomapi.DeployedPackage {
		raw, _, _ := c.queryAll("DeployedPackage", filter(group("and", simple("EQUALS", "environmentId", env),
			simple("EQUALS", "componentId", atomsim.ProcOrders), simple("EQUALS", "active", "true"))))
		return decodeAll[atomapi.DeployedPackage](t, raw)
	}
	if got := active(atomsim.EnvProd); len(got) != 0 {
		t.Fatalf("proc-orders active in env-prod before the deploy: %+v", got)
	}
	// Already active in env-test: duplicate.
	rep := c.req("POST", "/DeployedPackage", atomapi.DeployedPackage{EnvironmentID: atomsim.EnvTest, PackageID: atomsim.PkgOrders})
	if rep.status != 400 || !strings.Contains(string(rep.body), "duplicate") {
		t.Errorf("re-deploy in env-test = %d %s; want 400 duplicate", rep.status, rep.body)
	}
	// Promote to env-prod.
	rep = c.req("POST", "/DeployedPackage", atomapi.DeployedPackage{EnvironmentID: atomsim.EnvProd, PackageID: atomsim.PkgOrders, Notes: "promote", ListenerStatus: "PAUSED"})
	if rep.status != 200 || !strings.Contains(string(rep.body), `"componentVersion":7`) {
		t.Fatalf("deploy to env-prod = %d %s; want 200 with componentVersion as a number", rep.status, rep.body)
	}
	var dp atomapi.DeployedPackage
	json.Unmarshal(rep.body, &dp)
	got := active(atomsim.EnvProd)
	if len(got) != 1 || got[0].PackageID != atomsim.PkgOrders || got[0].DeploymentID != dp.DeploymentID || got[0].ComponentVersion != "7.0" || got[0].ListenerStatus != "PAUSED" {
		t.Errorf("active in env-prod after the deploy: %+v; want %s (componentVersion \"7.0\" in queries)", got, dp.DeploymentID)
	}
	if rep := c.req("POST", "/DeployedPackage", atomapi.DeployedPackage{EnvironmentID: atomsim.EnvProd, PackageID: atomsim.PkgOrders}); rep.status != 400 || !strings.Contains(string(rep.body), "duplicate") {
		t.Errorf("second deploy to env-prod = %d %s; want 400 duplicate", rep.status, rep.body)
	}
	// Deploying an older package replaces the active one.
	if rep := c.req("POST", "/DeployedPackage", atomapi.DeployedPackage{EnvironmentID: atomsim.EnvProd, PackageID: "pkg-orders-2"}); rep.status != 200 {
		t.Fatalf("deploy pkg-orders-2: %d %s", rep.status, rep.body)
	}
	if got := active(atomsim.EnvProd); len(got) != 1 || got[0].PackageID != "pkg-orders-2" || got[0].Version != 2 {
		t.Errorf("active in env-prod after the roll-back: %+v; want pkg-orders-2 version 2", got)
	}
	for _, bad := range []atomapi.DeployedPackage{
		{EnvironmentID: "env-nope", PackageID: atomsim.PkgOrders},
		{EnvironmentID: atomsim.EnvProd, PackageID: "pkg-nope"},
		{EnvironmentID: atomsim.EnvProd},
		{EnvironmentID: atomsim.EnvProd, PackageID: atomsim.PkgOrders, ListenerStatus: "SLEEPING"},
	} {
		if rep := c.req("POST", "/DeployedPackage", bad); rep.status != 400 {
			t.Errorf("DeployedPackage(%+v) = %d; want 400", bad, rep.status)
		}
	}
	ev := c.s.Deploys()
	wantDup := []bool{true, false, true, false}
	if len(ev) != len(wantDup) {
		t.Fatalf("Deploys() = %+v; want %d events", ev, len(wantDup))
	}
	for i, e := range ev {
		if e.Duplicate != wantDup[i] || e.Via != "DeployedPackage" || e.ComponentID != atomsim.ProcOrders || (e.DeploymentID == "") != e.Duplicate {
			t.Errorf("Deploys()[%d] = %+v; want duplicate %v", i, e, wantDup[i])
		}
	}
}

func TestPackagedComponentCreate(t *testing.T) {
	c := newSim(t, tiny)
	rep := c.req("POST", "/PackagedComponent", atomapi.PackagedComponent{ComponentID: atomsim.ProcInvoices, PackageVersion: "2.0", Notes: "n"})
	var p atomapi.PackagedComponent
	if err := json.Unmarshal(rep.body, &p); err != nil || rep.status != 200 || p.PackageID == "" || !strings.Contains(string(rep.body), `"componentVersion":2`) {
		t.Fatalf("create package = %d %s; want 200 with a packageId and a numeric componentVersion", rep.status, rep.body)
	}
	if rep := c.req("POST", "/PackagedComponent", atomapi.PackagedComponent{ComponentID: atomsim.ProcInvoices, PackageVersion: "2.0"}); rep.status != 400 {
		t.Errorf("same packageVersion again = %d; want 400", rep.status)
	}
	if rep := c.req("POST", "/PackagedComponent", atomapi.PackagedComponent{ComponentID: "proc-nope"}); rep.status != 400 {
		t.Errorf("unknown component = %d; want 400", rep.status)
	}
	// Deploy it by componentId: the latest package is used.
	rep = c.req("POST", "/DeployedPackage", atomapi.DeployedPackage{EnvironmentID: atomsim.EnvDev, ComponentID: atomsim.ProcInvoices})
	var dp atomapi.DeployedPackage
	if err := json.Unmarshal(rep.body, &dp); err != nil || dp.PackageID != p.PackageID {
		t.Errorf("deploy by componentId = %d %s; want package %s", rep.status, rep.body, p.PackageID)
	}
}

func TestDeployProcess(t *testing.T) {
	c := newSim(t, tiny)
	rep := c.req("GET", "/Deployment/"+atomsim.DepOrdersTest, nil)
	var dep atomapi.Deployment
	if err := json.Unmarshal(rep.body, &dep); err != nil || dep.Digest == "" {
		t.Fatalf("GET Deployment = %d %s; want a digest", rep.status, rep.body)
	}
	current := func(env string) []atomapi.Deployment {
		raw, _, _ := c.queryAll("Deployment", filter(group("and", simple("EQUALS", "environmentId", env),
			simple("EQUALS", "processId", atomsim.ProcOrders), simple("EQUALS", "current", "true"))))
		return decodeAll[atomapi.Deployment](t, raw)
	}
	if got := current(atomsim.EnvProd); len(got) != 0 {
		t.Fatalf("current in env-prod before: %+v", got)
	}
	path := "/deployProcess/" + atomsim.DepOrdersTest + "/" + atomsim.EnvProd + "/"
	if rep := c.req("POST", path+"0000", nil); rep.status != 400 || !strings.Contains(string(rep.body), "digest") {
		t.Errorf("wrong digest = %d %s; want 400 about the digest", rep.status, rep.body)
	}
	if rep := c.req("POST", "/deployProcess/dep-nope/"+atomsim.EnvProd+"/"+dep.Digest, nil); rep.status != 400 {
		t.Errorf("unknown deployment = %d; want 400", rep.status)
	}
	if rep := c.req("POST", path+dep.Digest+"?listenerStatus=BAD", nil); rep.status != 400 {
		t.Errorf("bad listenerStatus = %d; want 400", rep.status)
	}
	rep = c.req("POST", path+dep.Digest+"?listenerStatus=PAUSED", nil)
	if rep.status != 200 || strings.Contains(string(rep.body), "digest") {
		t.Fatalf("deployProcess = %d %s; want 200 without a digest", rep.status, rep.body)
	}
	got := current(atomsim.EnvProd)
	if len(got) != 1 || got[0].ListenerStatus != "PAUSED" || got[0].Version != 1 {
		t.Errorf("current in env-prod after deployProcess: %+v; want one, PAUSED, version 1", got)
	}
	if got := current(atomsim.EnvTest); len(got) != 1 || got[0].ID != atomsim.DepOrdersTest {
		t.Errorf("env-test changed: %+v", got)
	}
	ev := c.s.Deploys()
	if len(ev) != 1 || ev[0].Via != "deployProcess" || ev[0].EnvironmentID != atomsim.EnvProd || ev[0].DeploymentID != got[0].ID {
		t.Errorf("Deploys() = %+v; want one deployProcess to env-prod", ev)
	}
}

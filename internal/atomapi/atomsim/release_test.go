package atomsim_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi/atomsim"
)

// The test's own view of the release objects' JSON.
type (
	schedWire struct {
		Type      string `json:"@type"`
		ID        string `json:"id"`
		AtomID    string `json:"atomId"`
		ProcessID string `json:"processId"`
		Enabled   bool   `json:"enabled"`
	}
	extWire struct {
		Type          string `json:"@type"`
		ID            string `json:"id"`
		EnvironmentID string `json:"environmentId"`
		Connections   struct {
			Connection []struct {
				ID    string           `json:"id"`
				Field []map[string]any `json:"field"`
			} `json:"connection"`
		} `json:"connections"`
		ProcessProperties struct {
			ProcessProperty []struct {
				ID                   string           `json:"id"`
				ProcessPropertyValue []map[string]any `json:"ProcessPropertyValue"`
			} `json:"ProcessProperty"`
		} `json:"processProperties"`
		Properties struct {
			Property []struct {
				Name  string `json:"name"`
				Value string `json:"value"`
			} `json:"property"`
		} `json:"properties"`
	}
)

func decodeJSON[T any](t testing.TB, rep reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(rep.body, &v); err != nil {
		t.Fatalf("decoding %s: %v", rep.body, err)
	}
	return v
}

func wantStatus(t testing.TB, what string, rep reply, status int) {
	t.Helper()
	if rep.status != status {
		t.Fatalf("%s: status %d (%s); want %d", what, rep.status, rep.body, status)
	}
}

// field returns the connection field or process-property value (by id or key) of the answer.
func (e extWire) field(t *testing.T, id string) map[string]any {
	t.Helper()
	for _, c := range e.Connections.Connection {
		for _, f := range c.Field {
			if f["id"] == id {
				return f
			}
		}
	}
	for _, p := range e.ProcessProperties.ProcessProperty {
		for _, v := range p.ProcessPropertyValue {
			if v["key"] == id {
				return v
			}
		}
	}
	t.Fatalf("no field %q in %+v", id, e)
	return nil
}

func (e extWire) property(name string) string {
	for _, p := range e.Properties.Property {
		if p.Name == name {
			return p.Value
		}
	}
	return "<absent>"
}

// checkValue checks a field's value (absent = no "value" key) and useDefault.
func checkValue(t *testing.T, e extWire, id string, value any, useDefault bool) {
	t.Helper()
	f := e.field(t, id)
	if v, ok := f["value"]; value == nil && ok || value != nil && v != value {
		t.Errorf("%s: value %v (present %v); want %v", id, v, ok, value)
	}
	if f["useDefault"] != useDefault {
		t.Errorf("%s: useDefault %v; want %v", id, f["useDefault"], useDefault)
	}
}

func checkHidden(t *testing.T, e extWire, id string, set bool) {
	t.Helper()
	f := e.field(t, id)
	if v, ok := f["value"]; ok {
		t.Errorf("%s: encrypted value returned: %v", id, v)
	}
	if f["usesEncryption"] != true || f["encryptedValueSet"] != set {
		t.Errorf("%s: usesEncryption %v, encryptedValueSet %v; want true, %v", id, f["usesEncryption"], f["encryptedValueSet"], set)
	}
}

func scheduleQuery(c *sim, atom, proc string) []schedWire {
	c.t.Helper()
	var es []*atomExpr
	if atom != "" {
		es = append(es, &atomExpr{"EQUALS", "atomId", atom})
	}
	if proc != "" {
		es = append(es, &atomExpr{"EQUALS", "processId", proc})
	}
	raw, _, _ := c.queryAll("ProcessScheduleStatus", cfgOf(es...))
	return decodeAll[schedWire](c.t, raw)
}

type atomExpr struct{ op, prop, arg string }

func cfgOf(es ...*atomExpr) any {
	var nested []any
	for _, e := range es {
		nested = append(nested, map[string]any{"operator": e.op, "property": e.prop, "argument": []string{e.arg}})
	}
	switch len(nested) {
	case 0:
		return map[string]any{"QueryFilter": map[string]any{}}
	case 1:
		return map[string]any{"QueryFilter": map[string]any{"expression": nested[0]}}
	}
	return map[string]any{"QueryFilter": map[string]any{"expression": map[string]any{"operator": "and", "nestedExpression": nested}}}
}

func TestScheduleStatusRoundTrip(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	if all := scheduleQuery(c, "", ""); len(all) != 4 {
		t.Fatalf("all schedules: %d; want 4", len(all))
	}
	if got := scheduleQuery(c, "", atomsim.ProcOrders); len(got) != 2 {
		t.Fatalf("proc-orders schedules: %+v; want 2", got)
	}
	got := scheduleQuery(c, atomsim.AtomProd, atomsim.ProcOrders)
	if len(got) != 1 || got[0].Type != "ProcessScheduleStatus" || got[0].AtomID != atomsim.AtomProd ||
		got[0].ProcessID != atomsim.ProcOrders || !got[0].Enabled || got[0].ID == "" {
		t.Fatalf("query: %+v", got)
	}
	id := got[0].ID

	rep := c.req("GET", "/ProcessScheduleStatus/"+id, nil)
	wantStatus(t, "GET", rep, http.StatusOK)
	if g := decodeJSON[schedWire](t, rep); g != got[0] {
		t.Fatalf("GET: %+v; want %+v", g, got[0])
	}

	// Disable, with the boolean as a string.
	rep = c.req("POST", "/ProcessScheduleStatus/"+id, map[string]any{"id": id, "atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders, "enabled": "false"})
	wantStatus(t, "update", rep, http.StatusOK)
	if g := decodeJSON[schedWire](t, rep); g.Enabled || g.ID != id {
		t.Fatalf("update answer: %+v", g)
	}
	if en, ok := c.s.ScheduleStatus(atomsim.AtomProd, atomsim.ProcOrders); en || !ok {
		t.Fatalf("ScheduleStatus after disable: %v, %v", en, ok)
	}
	if en, _ := c.s.ScheduleStatus(atomsim.AtomTest, atomsim.ProcOrders); !en {
		t.Fatal("the atom-test schedule changed too")
	}
	if g := decodeJSON[schedWire](t, c.req("GET", "/ProcessScheduleStatus/"+id, nil)); g.Enabled {
		t.Fatal("GET after disable: still enabled")
	}
	rep = c.req("POST", "/ProcessScheduleStatus/"+id, map[string]any{"atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders, "enabled": true})
	wantStatus(t, "enable without body id", rep, http.StatusOK)
	if en, _ := c.s.ScheduleStatus(atomsim.AtomProd, atomsim.ProcOrders); !en {
		t.Fatal("not re-enabled")
	}

	other := scheduleQuery(c, atomsim.AtomTest, atomsim.ProcListener)[0].ID
	for name, tc := range map[string]struct {
		path string
		body any
	}{
		"id mismatch":   {id, map[string]any{"id": other, "atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders, "enabled": false}},
		"unknown id":    {"bm9wZQ", map[string]any{"atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders, "enabled": false}},
		"wrong atom":    {id, map[string]any{"id": id, "atomId": atomsim.AtomTest, "processId": atomsim.ProcOrders, "enabled": false}},
		"no processId":  {id, map[string]any{"id": id, "atomId": atomsim.AtomProd, "enabled": false}},
		"no enabled":    {id, map[string]any{"id": id, "atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders}},
		"enabled maybe": {id, map[string]any{"id": id, "atomId": atomsim.AtomProd, "processId": atomsim.ProcOrders, "enabled": "maybe"}},
	} {
		wantStatus(t, name, c.req("POST", "/ProcessScheduleStatus/"+tc.path, tc.body), http.StatusBadRequest)
	}
	if en, _ := c.s.ScheduleStatus(atomsim.AtomProd, atomsim.ProcOrders); !en {
		t.Fatal("a refused update changed the schedule")
	}
	wantStatus(t, "GET unknown", c.req("GET", "/ProcessScheduleStatus/bm9wZQ", nil), http.StatusBadRequest)
	wantStatus(t, "NOT_EQUALS", c.req("POST", "/ProcessScheduleStatus/query", cfgOf(&atomExpr{"NOT_EQUALS", "atomId", "x"})), http.StatusBadRequest)
	wantStatus(t, "filter on id", c.req("POST", "/ProcessScheduleStatus/query", cfgOf(&atomExpr{"EQUALS", "id", id})), http.StatusBadRequest)
}

func TestScheduleStatusBulk(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	all := scheduleQuery(c, "", "")
	rep := c.req("POST", "/ProcessScheduleStatus/bulk", map[string]any{"type": "GET", "request": []map[string]string{{"id": all[2].ID}, {"id": "nope"}, {"id": all[0].ID}}})
	wantStatus(t, "bulk", rep, http.StatusOK)
	res := decodeJSON[struct {
		Type     string `json:"@type"`
		Response []struct {
			Type         string     `json:"@type"`
			Index        int        `json:"index"`
			ID           string     `json:"id"`
			StatusCode   int        `json:"statusCode"`
			ErrorMessage string     `json:"errorMessage"`
			Result       *schedWire `json:"Result"`
		} `json:"response"`
	}](t, rep)
	if res.Type != "BulkResult" || len(res.Response) != 3 {
		t.Fatalf("bulk: %s", rep.body)
	}
	for i, want := range []struct {
		id     string
		status int
		rec    *schedWire
	}{{all[2].ID, 200, &all[2]}, {"nope", 400, nil}, {all[0].ID, 200, &all[0]}} {
		r := res.Response[i]
		if r.Type != "BulkResponse" || r.Index != i || r.ID != want.id || r.StatusCode != want.status ||
			(want.rec == nil) != (r.Result == nil) || want.rec != nil && *r.Result != *want.rec || (want.status == 400) != (r.ErrorMessage != "") {
			t.Errorf("bulk response %d: %+v; want %+v", i, r, want)
		}
	}
	many := make([]map[string]string, 101)
	for i := range many {
		many[i] = map[string]string{"id": all[0].ID}
	}
	wantStatus(t, "101 ids", c.req("POST", "/ProcessScheduleStatus/bulk", map[string]any{"type": "GET", "request": many}), http.StatusBadRequest)
	wantStatus(t, "100 ids", c.req("POST", "/ProcessScheduleStatus/bulk", map[string]any{"type": "GET", "request": many[:100]}), http.StatusOK)
	wantStatus(t, "DELETE", c.req("POST", "/ProcessScheduleStatus/bulk", map[string]any{"type": "DELETE", "request": many[:1]}), http.StatusBadRequest)
}

func changeListener(c *sim, container, listener, action string) reply {
	c.t.Helper()
	body := map[string]string{"containerId": container, "action": action}
	if listener != "" {
		body["listenerId"] = listener
	}
	return c.req("POST", "/changeListenerStatus", body)
}

// listenerStatus queries the statuses of the container's listeners through
// the async operation, moving the clock past ListenerStatusDelay.
func listenerStatus(c *sim, container, listener string) map[string]string {
	c.t.Helper()
	exprs := []*atomExpr{{"EQUALS", "containerId", container}}
	if listener != "" {
		exprs = append(exprs, &atomExpr{"EQUALS", "listenerId", listener})
	}
	rep := c.req("POST", "/async/ListenerStatus/query", cfgOf(exprs...))
	wantStatus(c.t, "ListenerStatus query", rep, http.StatusOK)
	var tok struct {
		AsyncToken struct{ Token string } `json:"asyncToken"`
	}
	json.Unmarshal(rep.body, &tok)
	c.s.Advance(atomsim.DefaultListenerStatusDelay)
	rep = c.req("GET", "/async/ListenerStatus/response/"+tok.AsyncToken.Token, nil)
	wantStatus(c.t, "ListenerStatus response", rep, http.StatusOK)
	var res struct {
		Result []struct{ ListenerID, Status string }
	}
	json.Unmarshal(rep.body, &res)
	out := map[string]string{}
	for _, r := range res.Result {
		out[r.ListenerID] = r.Status
	}
	return out
}

func TestListenerPauseResume(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	prod, test, l := atomsim.AtomProd, atomsim.AtomTest, atomsim.ProcListener
	rep := changeListener(c, prod, l, "pause")
	wantStatus(t, "pause", rep, http.StatusOK)
	if len(rep.body) != 0 {
		t.Errorf("pause answered %q; want an empty body", rep.body)
	}
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerListening {
		t.Fatalf("right after pause: %s; want listening (accepted, not done)", st)
	}
	c.s.Advance(atomsim.DefaultListenerDelay - 500*time.Millisecond)
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerListening {
		t.Fatalf("before ListenerDelay: %s; want listening", st)
	}
	c.s.Advance(500 * time.Millisecond)
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerPaused {
		t.Fatalf("after ListenerDelay: %s; want paused", st)
	}
	if st := listenerStatus(c, prod, l); st[l] != atomsim.ListenerPaused {
		t.Fatalf("ListenerStatus: %v; want paused", st)
	}
	if st := c.s.ListenerState(test, l); st != atomsim.ListenerListening {
		t.Fatalf("atom-test's listener: %s; want listening", st)
	}

	wantStatus(t, "resume", changeListener(c, prod, l, "resume"), http.StatusOK)
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerPaused {
		t.Fatalf("right after resume: %s; want paused", st)
	}
	c.s.Advance(atomsim.DefaultListenerDelay)
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerListening {
		t.Fatalf("after resume: %s; want listening", st)
	}

	ch := c.s.ListenerChanges()
	if len(ch) != 2 || ch[0].Action != "pause" || ch[1].Action != "resume" || ch[0].ContainerID != prod || ch[0].ListenerID != l ||
		!ch[0].Time.Equal(t0) || !ch[0].Effective.Equal(t0.Add(atomsim.DefaultListenerDelay)) || ch[0].RequestID == "" {
		t.Fatalf("ListenerChanges: %+v", ch)
	}
}

func TestListenerAllAndRefusals(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1, ListenerDelay: time.Second})
	l := atomsim.ProcListener
	// The wrapped form of the OpenAPI example.
	rep := c.req("POST", "/changeListenerStatus", map[string]any{"ChangeListenerStatusRequest": map[string]string{"containerId": atomsim.AtomTest, "action": "pause_all"}})
	wantStatus(t, "wrapped pause_all", rep, http.StatusOK)
	c.s.Advance(time.Second)
	if st := c.s.ListenerState(atomsim.AtomTest, l); st != atomsim.ListenerPaused {
		t.Fatalf("after pause_all: %s", st)
	}
	if st := c.s.ListenerState(atomsim.AtomProd, l); st != atomsim.ListenerListening {
		t.Fatalf("other container after pause_all: %s", st)
	}
	wantStatus(t, "restart_all", changeListener(c, atomsim.AtomTest, "", "restart_all"), http.StatusOK)
	c.s.Advance(time.Second)
	if st := c.s.ListenerState(atomsim.AtomTest, l); st != atomsim.ListenerListening {
		t.Fatalf("after restart_all: %s", st)
	}
	for name, rep := range map[string]reply{
		"unknown container": changeListener(c, "atom-nope", l, "pause"),
		"unknown listener":  changeListener(c, atomsim.AtomProd, atomsim.ProcOrders, "pause"),
		"unknown action":    changeListener(c, atomsim.AtomProd, l, "stop"),
		"no listenerId":     changeListener(c, atomsim.AtomProd, "", "pause"),
		"_all with id":      changeListener(c, atomsim.AtomProd, l, "pause_all"),
		"no container":      changeListener(c, "", l, "pause"),
		"conflict": c.req("POST", "/changeListenerStatus", map[string]any{"action": "pause", "containerId": atomsim.AtomProd, "listenerId": l,
			"ChangeListenerStatusRequest": map[string]string{"action": "resume"}}),
	} {
		wantStatus(t, name, rep, http.StatusBadRequest)
	}
	if n := len(c.s.ListenerChanges()); n != 2 {
		t.Fatalf("%d changes recorded; want 2 (refusals are not)", n)
	}
}

func TestListenerStuck(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	prod, l := atomsim.AtomProd, atomsim.ProcListener
	changeListener(c, prod, l, "pause")
	c.s.Advance(atomsim.DefaultListenerDelay)
	c.s.SetListenerStuck(true)
	for _, action := range []string{"resume", "restart"} {
		wantStatus(t, action, changeListener(c, prod, l, action), http.StatusOK)
		c.s.Advance(atomsim.DefaultListenerDelay)
		if st := c.s.ListenerState(prod, l); st != atomsim.ListenerPaused {
			t.Fatalf("stuck %s: %s; want paused", action, st)
		}
	}
	wantStatus(t, "resume_all", changeListener(c, prod, "", "resume_all"), http.StatusOK)
	c.s.Advance(atomsim.DefaultListenerDelay)
	if st := listenerStatus(c, prod, ""); st[l] != atomsim.ListenerPaused {
		t.Fatalf("stuck resume_all: %v; want paused", st)
	}
	if ch := c.s.ListenerChanges(); len(ch) != 4 || ch[0].Stuck || !ch[1].Stuck || !ch[3].Stuck {
		t.Fatalf("changes: %+v", ch)
	}
	c.s.SetListenerStuck(false)
	changeListener(c, prod, l, "resume")
	c.s.Advance(atomsim.DefaultListenerDelay)
	if st := c.s.ListenerState(prod, l); st != atomsim.ListenerListening {
		t.Fatalf("unstuck resume: %s; want listening", st)
	}
}

func TestListenerErrored(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	test, l := atomsim.AtomTest, atomsim.ProcListener
	c.s.SetListenerErrored(test, l)
	if st := listenerStatus(c, test, l); st[l] != atomsim.ListenerErrored {
		t.Fatalf("after SetListenerErrored: %v", st)
	}
	changeListener(c, test, l, "resume")
	c.s.Advance(atomsim.DefaultListenerDelay)
	if st := c.s.ListenerState(test, l); st != atomsim.ListenerErrored {
		t.Fatalf("resume of an errored listener: %s; want errored", st)
	}
	changeListener(c, test, l, "restart")
	c.s.Advance(atomsim.DefaultListenerDelay)
	if st := c.s.ListenerState(test, l); st != atomsim.ListenerListening {
		t.Fatalf("restart of an errored listener: %s; want listening", st)
	}
	if st := c.s.ListenerState(test, "nope"); st != "" {
		t.Fatalf("unknown listener: %q", st)
	}
}

func TestListenerStatusAsync(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	prod, l := atomsim.AtomProd, atomsim.ProcListener
	rep := c.req("POST", "/async/ListenerStatus/query", cfgOf(&atomExpr{"EQUALS", "containerId", prod}, &atomExpr{"EQUALS", "listenerId", l}))
	wantStatus(t, "query", rep, http.StatusOK)
	tok := decodeJSON[struct {
		Type       string `json:"@type"`
		AsyncToken struct {
			Type  string `json:"@type"`
			Token string `json:"token"`
		} `json:"asyncToken"`
		ResponseStatusCode int `json:"responseStatusCode"`
	}](t, rep)
	if tok.Type != "AsyncOperationTokenResult" || tok.AsyncToken.Type != "AsyncToken" || !strings.HasPrefix(tok.AsyncToken.Token, "ListenerStatus-") ||
		len(tok.AsyncToken.Token) != len("ListenerStatus-")+36 || tok.ResponseStatusCode != 202 {
		t.Fatalf("token answer: %s", rep.body)
	}
	// A pause accepted after the query does not show in its result.
	changeListener(c, prod, l, "pause")
	path := "/async/ListenerStatus/response/" + tok.AsyncToken.Token
	rep = c.req("GET", path, nil)
	wantStatus(t, "before ListenerStatusDelay", rep, http.StatusAccepted)
	if got := strings.TrimSpace(string(rep.body)); got != `{"@type":"AsyncOperationResult","responseStatusCode":202}` {
		t.Fatalf("202 body: %s", got)
	}
	c.s.Advance(atomsim.DefaultListenerStatusDelay + atomsim.DefaultListenerDelay)
	for range 2 { // the result can be read again
		rep = c.req("GET", path, nil)
		wantStatus(t, "after ListenerStatusDelay", rep, http.StatusOK)
		res := decodeJSON[struct {
			Type   string `json:"@type"`
			Result []struct {
				Type          string `json:"@type"`
				ListenerID    string `json:"listenerId"`
				Status        string `json:"status"`
				ConnectorType string `json:"connectorType"`
			} `json:"result"`
			NumberOfResults    int `json:"numberOfResults"`
			ResponseStatusCode int `json:"responseStatusCode"`
		}](t, rep)
		if res.Type != "AsyncOperationResult" || res.NumberOfResults != 1 || res.ResponseStatusCode != 200 || len(res.Result) != 1 ||
			res.Result[0].Type != "ListenerStatus" || res.Result[0].ListenerID != l || res.Result[0].Status != "listening" || res.Result[0].ConnectorType != "wss" {
			t.Fatalf("result: %s", rep.body)
		}
	}
	if st := listenerStatus(c, prod, ""); len(st) != 1 || st[l] != atomsim.ListenerPaused {
		t.Fatalf("a later query: %v; want paused", st)
	}
	wantStatus(t, "unknown token", c.req("GET", "/async/ListenerStatus/response/ListenerStatus-nope", nil), http.StatusNotFound)
	wantStatus(t, "no containerId", c.req("POST", "/async/ListenerStatus/query", cfgOf(&atomExpr{"EQUALS", "listenerId", l})), http.StatusBadRequest)
	wantStatus(t, "unknown container", c.req("POST", "/async/ListenerStatus/query", cfgOf(&atomExpr{"EQUALS", "containerId", "nope"})), http.StatusBadRequest)
	wantStatus(t, "LIKE", c.req("POST", "/async/ListenerStatus/query", cfgOf(&atomExpr{"LIKE", "containerId", prod})), http.StatusBadRequest)
}

func getExt(c *sim, env string) extWire {
	c.t.Helper()
	rep := c.req("GET", "/EnvironmentExtensions/"+env, nil)
	wantStatus(c.t, "GET extensions", rep, http.StatusOK)
	return decodeJSON[extWire](c.t, rep)
}

func TestExtensionsGetAndQuery(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	e := getExt(c, atomsim.EnvProd)
	if e.Type != "EnvironmentExtensions" || e.ID != atomsim.EnvProd || e.EnvironmentID != atomsim.EnvProd {
		t.Fatalf("GET: %+v", e)
	}
	checkValue(t, e, "host", "db.prod.example", false)
	checkValue(t, e, "port", "5432", false)
	checkValue(t, e, "user", "orders", false)
	checkHidden(t, e, "password", true)
	checkValue(t, e, "batch-size", "500", false)
	checkValue(t, e, "mode", "live", false)
	checkHidden(t, e, "api-key", false)
	if v := e.property("REGION"); v != "eu" {
		t.Fatalf("REGION: %q", v)
	}
	raw, _, _ := c.queryAll("EnvironmentExtensions", cfgOf(&atomExpr{"EQUALS", "environmentId", atomsim.EnvTest}))
	exts := decodeAll[extWire](t, raw)
	if len(exts) != 1 || exts[0].ID != atomsim.EnvTest {
		t.Fatalf("query: %s", raw)
	}
	checkValue(t, exts[0], "host", "db.test.example", false)
	checkHidden(t, exts[0], "password", true)
	if strings.Contains(string(raw[0]), "seed-secret") {
		t.Fatalf("query returned a secret: %s", raw[0])
	}
	wantStatus(t, "unknown env", c.req("GET", "/EnvironmentExtensions/env-nope", nil), http.StatusBadRequest)
	wantStatus(t, "query LIKE", c.req("POST", "/EnvironmentExtensions/query", cfgOf(&atomExpr{"LIKE", "environmentId", "%"})), http.StatusBadRequest)
}

func TestExtensionsPartialUpdate(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	rep := c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, map[string]any{
		"id": atomsim.EnvProd, "environmentId": atomsim.EnvProd, "partial": true,
		"connections": map[string]any{"connection": []any{map[string]any{"id": atomsim.ConnOrdersDB, "field": []any{
			map[string]any{"id": "host", "value": "db2.prod.example", "useDefault": false},
			map[string]any{"id": "password", "value": "new-secret", "usesEncryption": true},
		}}}},
		"properties": map[string]any{"property": []any{}},
	})
	wantStatus(t, "partial update", rep, http.StatusOK)
	if strings.Contains(string(rep.body), "new-secret") {
		t.Fatalf("the update's answer returned the secret: %s", rep.body)
	}
	for _, e := range []extWire{decodeJSON[extWire](t, rep), getExt(c, atomsim.EnvProd)} {
		checkValue(t, e, "host", "db2.prod.example", false)
		checkValue(t, e, "port", "5432", false)
		checkValue(t, e, "user", "orders", false)
		checkHidden(t, e, "password", true)
		checkValue(t, e, "batch-size", "500", false)
		checkValue(t, e, "mode", "live", false)
		checkHidden(t, e, "api-key", false)
		if v := e.property("REGION"); v != "eu" {
			t.Fatalf("REGION: %q", v)
		}
	}
	ext, ok := c.s.Extensions(atomsim.EnvProd)
	if !ok || ext.Connections[0].Fields[3].ID != "password" || ext.Connections[0].Fields[3].Value != "new-secret" {
		t.Fatalf("Extensions: %+v, %v", ext, ok)
	}
	checkValue(t, getExt(c, atomsim.EnvTest), "host", "db.test.example", false)

	// A single field as a bare object, booleans as strings; set the encrypted api-key.
	rep = c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvTest, map[string]any{"EnvironmentExtensions": map[string]any{
		"partial": "true",
		"connections": map[string]any{"connection": map[string]any{"id": atomsim.ConnOrdersDB,
			"field": map[string]any{"id": "port", "value": "6432", "useDefault": "false"}}},
	}})
	wantStatus(t, "wrapped partial update", rep, http.StatusOK)
	e := decodeJSON[extWire](t, rep)
	checkValue(t, e, "port", "6432", false)
	checkValue(t, e, "host", "db.test.example", false)
	checkHidden(t, e, "password", true)
}

func TestExtensionsProcessPropertyComponentWhole(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	rep := c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, map[string]any{
		"partial": true,
		"processProperties": map[string]any{"ProcessProperty": []any{map[string]any{"id": atomsim.PPOrders, "ProcessPropertyValue": []any{
			map[string]any{"key": "batch-size", "value": "250"},
			map[string]any{"key": "api-key", "value": "k-123", "useDefault": false},
		}}}},
	})
	wantStatus(t, "process-property update", rep, http.StatusOK)
	e := decodeJSON[extWire](t, rep)
	checkValue(t, e, "batch-size", "250", false)
	checkValue(t, e, "mode", nil, true) // left out of the component: reset
	checkHidden(t, e, "api-key", true)
	checkValue(t, e, "host", "db.prod.example", false) // connections untouched
	checkHidden(t, e, "password", true)
	if v := e.property("REGION"); v != "eu" {
		t.Fatalf("REGION: %q", v)
	}
	ext, _ := c.s.Extensions(atomsim.EnvProd)
	if v := ext.ProcessProperties[0].Values; v[1].Key != "mode" || v[1].Value != "" || !v[1].UseDefault || v[2].Value != "k-123" || !v[2].EncryptedValueSet {
		t.Fatalf("Extensions: %+v", v)
	}

	// useDefault true resets a value even when one is given.
	rep = c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, map[string]any{
		"partial": true,
		"processProperties": map[string]any{"ProcessProperty": map[string]any{"id": atomsim.PPOrders, "ProcessPropertyValue": []any{
			map[string]any{"key": "batch-size", "value": "999", "useDefault": true},
			map[string]any{"key": "mode", "value": "dry-run"},
		}}},
	})
	wantStatus(t, "second update", rep, http.StatusOK)
	e = decodeJSON[extWire](t, rep)
	checkValue(t, e, "batch-size", nil, true)
	checkValue(t, e, "mode", "dry-run", false)
	checkHidden(t, e, "api-key", false)
}

func TestExtensionsFullUpdate(t *testing.T) {
	for _, partial := range []any{nil, false, "false"} {
		c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
		body := map[string]any{
			"connections": map[string]any{"connection": []any{map[string]any{"id": atomsim.ConnOrdersDB, "field": []any{
				map[string]any{"id": "user", "value": "orders2"},
			}}}},
			"properties": map[string]any{"property": []any{map[string]any{"name": "REGION", "value": "us"}}},
		}
		if partial != nil {
			body["partial"] = partial
		}
		rep := c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, body)
		wantStatus(t, "full update", rep, http.StatusOK)
		e := decodeJSON[extWire](t, rep)
		checkValue(t, e, "user", "orders2", false)
		checkValue(t, e, "host", nil, true)
		checkValue(t, e, "port", nil, true)
		checkHidden(t, e, "password", false)
		checkValue(t, e, "batch-size", nil, true)
		checkValue(t, e, "mode", nil, true)
		checkHidden(t, e, "api-key", false)
		if v := e.property("REGION"); v != "us" {
			t.Fatalf("REGION: %q", v)
		}
		if ext, _ := c.s.Extensions(atomsim.EnvProd); ext.Connections[0].Fields[3].Value != "" || ext.Connections[0].Fields[3].EncryptedValueSet {
			t.Fatalf("partial %v: the password survived a full update: %+v", partial, ext.Connections[0].Fields[3])
		}
		if up := c.s.ExtensionUpdates(); len(up) != 1 || up[0].Partial {
			t.Fatalf("partial %v: ExtensionUpdates %+v", partial, up)
		}
	}
	// A full update without properties resets them too.
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	wantStatus(t, "empty full update", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvTest, map[string]any{}), http.StatusOK)
	if v := getExt(c, atomsim.EnvTest).property("REGION"); v != "" {
		t.Fatalf("REGION after an empty full update: %q", v)
	}
}

func TestExtensionUpdatesRecorded(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	secretField := map[string]any{"connections": map[string]any{"connection": []any{map[string]any{"id": atomsim.ConnOrdersDB,
		"field": []any{map[string]any{"id": "password", "value": "hunter2"}}}}}}
	pp := map[string]any{"processProperties": map[string]any{"ProcessProperty": []any{map[string]any{"id": atomsim.PPOrders,
		"ProcessPropertyValue": []any{map[string]any{"key": "api-key", "value": "sk-live-1"}, map[string]any{"key": "batch-size", "value": "10"}}}}}}
	with := func(m map[string]any, k string, v any) map[string]any {
		out := map[string]any{k: v}
		for a, b := range m {
			out[a] = b
		}
		return out
	}
	wantStatus(t, "1", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, with(secretField, "partial", true)), http.StatusOK)
	wantStatus(t, "2", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, with(pp, "partial", "true")), http.StatusOK)
	wantStatus(t, "3", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvTest, with(secretField, "partial", false)), http.StatusOK)
	wantStatus(t, "4", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvTest, with(secretField, "id", "env-other")), http.StatusBadRequest)
	wantStatus(t, "5", c.req("POST", "/EnvironmentExtensions/env-nope", with(pp, "partial", true)), http.StatusBadRequest)
	bad := with(map[string]any{"connections": map[string]any{"connection": []any{map[string]any{"id": "conn-nope"}}}}, "partial", true)
	wantStatus(t, "6", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, bad), http.StatusBadRequest)

	up := c.s.ExtensionUpdates()
	want := []struct {
		env     string
		partial bool
		status  int
	}{
		{atomsim.EnvProd, true, 200}, {atomsim.EnvProd, true, 200}, {atomsim.EnvTest, false, 200},
		{atomsim.EnvTest, false, 400}, {"env-nope", true, 400}, {atomsim.EnvProd, true, 400},
	}
	if len(up) != len(want) {
		t.Fatalf("%d updates recorded; want %d: %+v", len(up), len(want), up)
	}
	for i, w := range want {
		u := up[i]
		if u.EnvironmentID != w.env || u.Partial != w.partial || u.Status != w.status || u.RequestID == "" || !u.Time.Equal(t0) {
			t.Errorf("update %d: %+v; want %+v", i, u, w)
		}
		body := string(u.Body)
		if strings.Contains(body, "hunter2") || strings.Contains(body, "sk-live-1") || !json.Valid(u.Body) {
			t.Errorf("update %d: body %s shows a secret", i, body)
		}
		if i != 5 && !strings.Contains(body, `"***"`) {
			t.Errorf("update %d: body %s has no masked value", i, body)
		}
	}
	if !strings.Contains(string(up[1].Body), `"value":"10"`) {
		t.Errorf("a plain value was masked: %s", up[1].Body)
	}
	// The refused update changed nothing.
	if ext, _ := c.s.Extensions(atomsim.EnvProd); ext.Connections[0].Fields[3].Value != "hunter2" {
		t.Fatalf("password: %+v", ext.Connections[0].Fields[3])
	}
}

// TestReleaseRoutesLikeOthers: auth, Accept and injected faults apply to the new routes.
func TestReleaseRoutesLikeOthers(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1})
	id := scheduleQuery(c, atomsim.AtomProd, atomsim.ProcOrders)[0].ID
	paths := []struct{ method, path, contains string }{
		{"GET", "/ProcessScheduleStatus/" + id, "ProcessScheduleStatus"},
		{"POST", "/changeListenerStatus", "changeListenerStatus"},
		{"POST", "/async/ListenerStatus/query", "/async/ListenerStatus/"},
		{"GET", "/EnvironmentExtensions/" + atomsim.EnvProd, "EnvironmentExtensions"},
	}
	for _, p := range paths {
		c.s.Inject(atomsim.Fault{Kind: atomsim.FaultStatus, Status: 502, PathContains: p.contains})
		var body any
		if p.method == "POST" {
			body = map[string]string{"containerId": atomsim.AtomProd, "listenerId": atomsim.ProcListener, "action": "pause"}
		}
		if rep := c.req(p.method, p.path, body); rep.status != 502 {
			t.Errorf("%s %s with a fault: %d", p.method, p.path, rep.status)
		}
		if rep := c.req(p.method, p.path, body, "Authorization", "Basic eDp5"); rep.status != http.StatusUnauthorized {
			t.Errorf("%s %s with bad credentials: %d", p.method, p.path, rep.status)
		}
		if rep := c.req(p.method, p.path, body, "Accept", "application/xml"); rep.status != http.StatusNotAcceptable {
			t.Errorf("%s %s Accept XML: %d", p.method, p.path, rep.status)
		}
	}
	if n := len(c.s.ListenerChanges()); n != 0 {
		t.Fatalf("refused requests changed listeners: %d changes", n)
	}
	wantStatus(t, "text/plain update", c.req("POST", "/EnvironmentExtensions/"+atomsim.EnvProd, "{}"), http.StatusUnsupportedMediaType)
	if up := c.s.ExtensionUpdates(); len(up) != 1 || up[0].Status != http.StatusUnsupportedMediaType {
		t.Fatalf("ExtensionUpdates: %+v", up)
	}
	if ext, _ := c.s.Extensions(atomsim.EnvProd); ext.Properties[0].Value != "eu" {
		t.Fatal("a 415 update changed the extensions")
	}
}

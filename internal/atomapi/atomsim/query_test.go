package atomsim_test

import (
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

// auditWindow finds a date window [from, to] holding exactly n audit logs,
// computed from the dataset alone; it returns the window and the records'
// documentIds in (date, documentId) order.
func auditWindow(t *testing.T, logs []atomapi.AuditLog, n int) (from, to string, want []string) {
	t.Helper()
	type rec struct {
		at time.Time
		a  atomapi.AuditLog
	}
	sorted := make([]rec, len(logs))
	for i, a := range logs {
		sorted[i] = rec{mustTime(t, a.Date), a}
	}
	slices.SortFunc(sorted, func(x, y rec) int {
		if c := x.at.Compare(y.at); c != 0 {
			return c
		}
		return strings.Compare(x.a.DocumentID, y.a.DocumentID)
	})
	for k := len(sorted) / 3; k+n < len(sorted); k++ {
		lo, hi := sorted[k], sorted[k+n-1]
		if sorted[k-1].at.Equal(lo.at) || sorted[k+n].at.Equal(hi.at) {
			continue // a tie at an edge would pull in more records
		}
		for _, r := range sorted[k : k+n] {
			want = append(want, r.a.DocumentID)
		}
		return lo.a.Date, hi.a.Date, want
	}
	t.Fatalf("no window of exactly %d records", n)
	return
}

func TestQueryPaging(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: 5000, Events: -1, ExecutionRecords: -1})
	logs := c.s.Data().AuditLogs
	if len(logs) != 5000 {
		t.Fatalf("seeded %d audit logs; want 5000", len(logs))
	}
	for _, tc := range []struct {
		name     string
		n        int
		requests int
	}{
		{"1234", 1234, 13},
		{"exactly100", 100, 1},
		{"101", 101, 2},
		{"empty", 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var from, to string
			var want []string
			if tc.n == 0 {
				first := mustTime(t, slices.MinFunc(logs, func(a, b atomapi.AuditLog) int { return strings.Compare(a.Date, b.Date) }).Date)
				from, to = atomapi.FormatTime(first.Add(-48*time.Hour)), atomapi.FormatTime(first.Add(-time.Second))
			} else {
				from, to, want = auditWindow(t, logs, tc.n)
			}
			raw, requests, first := c.queryAll("AuditLog", filter(simple(atomapi.OpBetween, "date", from, to)))
			if requests != tc.requests {
				t.Errorf("requests = %d; want %d", requests, tc.requests)
			}
			if first.NumberOfResults != tc.n {
				t.Errorf("numberOfResults = %d; want %d", first.NumberOfResults, tc.n)
			}
			var got []string
			for _, a := range decodeAll[atomapi.AuditLog](t, raw) {
				got = append(got, a.DocumentID)
			}
			if !slices.Equal(got, want) {
				t.Errorf("got %d records; want %d (first got %v, first want %v)", len(got), len(want), head(got), head(want))
			}
		})
	}
}

func head(s []string) []string { return s[:min(3, len(s))] }

func TestQueryTokenShape(t *testing.T) {
	c := newSim(t, atomsim.Options{Events: -1, ExecutionRecords: -1})
	rep := c.req("POST", "/AuditLog/query", filter(nil))
	var page atomapi.QueryResult
	if err := json.Unmarshal(rep.body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Result) != atomapi.PageSize || page.NumberOfResults != atomsim.DefaultAuditLogs {
		t.Fatalf("first page: %d results, numberOfResults %d; want %d, %d", len(page.Result), page.NumberOfResults, atomapi.PageSize, atomsim.DefaultAuditLogs)
	}
	if !strings.ContainsAny(page.QueryToken, "+") || !strings.Contains(page.QueryToken, "/") || !strings.HasSuffix(page.QueryToken, "=") {
		t.Errorf("queryToken %q; want base64 with '+', '/' and '='", page.QueryToken)
	}
	// A token may be replayed (a client retrying a page) and gives the same page.
	a := c.req("POST", "/AuditLog/queryMore", page.QueryToken)
	b := c.req("POST", "/AuditLog/queryMore", page.QueryToken)
	if a.status != http.StatusOK || string(a.body) != string(b.body) {
		t.Errorf("replayed queryMore: status %d, same body %v; want 200, true", a.status, string(a.body) == string(b.body))
	}
	// Form-encoding the token turns '+' into ' ': refused.
	if rep := c.req("POST", "/AuditLog/queryMore", strings.ReplaceAll(page.QueryToken, "+", " ")); rep.status != http.StatusBadRequest {
		t.Errorf("queryMore with a mangled token: status %d; want 400", rep.status)
	}
	// A token belongs to its object.
	if rep := c.req("POST", "/Event/queryMore", page.QueryToken); rep.status != http.StatusBadRequest {
		t.Errorf("AuditLog token on Event/queryMore: status %d; want 400", rep.status)
	}
	// Tokens expire.
	c.s.Advance(atomsim.DefaultQueryTokenTTL + time.Second)
	if rep := c.req("POST", "/AuditLog/queryMore", page.QueryToken); rep.status != http.StatusBadRequest {
		t.Errorf("expired token: status %d; want 400", rep.status)
	}
}

func TestPageCountResults(t *testing.T) {
	c := newSim(t, atomsim.Options{PageCountResults: true, AuditLogs: 150})
	_, requests, first := c.queryAll("AuditLog", filter(nil))
	if requests != 2 || first.NumberOfResults != 100 {
		t.Errorf("requests %d, numberOfResults %d; want 2, 100", requests, first.NumberOfResults)
	}
}

// execPredicate is the test's own reading of an operator over one record.
type execPredicate func(e atomapi.ExecutionRecord) bool

func TestOperators(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, Events: -1, ExecutionRecords: 600})
	data := c.s.Data()
	recs := data.ExecutionRecords
	// Pick real values so that boundaries are exercised.
	startOf := map[string]time.Time{}
	var sortedTimes []time.Time
	for _, r := range recs {
		startOf[r.ExecutionID] = mustTime(t, r.ExecutionTime)
		sortedTimes = append(sortedTimes, startOf[r.ExecutionID])
	}
	slices.SortFunc(sortedTimes, time.Time.Compare)
	lo, hi := sortedTimes[len(sortedTimes)/4], sortedTimes[len(sortedTimes)/2]
	mid := sortedTimes[len(sortedTimes)/3]
	at := func(e atomapi.ExecutionRecord) time.Time { return startOf[e.ExecutionID] }

	tests := []struct {
		name string
		expr *atomapi.Expression
		want execPredicate
	}{
		{"EQUALS", simple("EQUALS", "status", "ERROR"), func(e atomapi.ExecutionRecord) bool { return e.Status == "ERROR" }},
		{"NOT_EQUALS", simple("NOT_EQUALS", "status", "COMPLETE"), func(e atomapi.ExecutionRecord) bool { return e.Status != "COMPLETE" }},
		{"LIKE suffix, any case", simple("LIKE", "processName", "%SYNC"), func(e atomapi.ExecutionRecord) bool {
			return strings.HasSuffix(strings.ToLower(e.ProcessName), "sync")
		}},
		{"LIKE prefix and infix", simple("LIKE", "processName", "or%s%nc"), func(e atomapi.ExecutionRecord) bool {
			return e.ProcessName == "Orders Sync"
		}},
		{"LIKE without wildcard", simple("LIKE", "processName", "invoice export"), func(e atomapi.ExecutionRecord) bool {
			return e.ProcessName == "Invoice Export"
		}},
		{"STARTS_WITH", simple("STARTS_WITH", "processName", "In"), func(e atomapi.ExecutionRecord) bool {
			return strings.HasPrefix(e.ProcessName, "In")
		}},
		{"CONTAINS", simple("CONTAINS", "message", "refused"), func(e atomapi.ExecutionRecord) bool {
			return strings.Contains(e.Message, "refused")
		}},
		{"NOT_CONTAINS skips NULL", simple("NOT_CONTAINS", "message", "refused"), func(e atomapi.ExecutionRecord) bool {
			return e.Message != "" && !strings.Contains(e.Message, "refused")
		}},
		{"IS_NULL", simple("IS_NULL", "nodeId"), func(e atomapi.ExecutionRecord) bool { return e.NodeID == "" }},
		{"IS_NOT_NULL", simple("IS_NOT_NULL", "nodeId"), func(e atomapi.ExecutionRecord) bool { return e.NodeID != "" }},
		{"BETWEEN dates inclusive", simple("BETWEEN", "executionTime", atomapi.FormatTime(lo), atomapi.FormatTime(hi)), func(e atomapi.ExecutionRecord) bool {
			return !at(e).Before(lo) && !at(e).After(hi)
		}},
		{"GREATER_THAN date with millis", simple("GREATER_THAN", "executionTime", mid.Format("2006-01-02T15:04:05.000Z")), func(e atomapi.ExecutionRecord) bool {
			return at(e).After(mid)
		}},
		{"GREATER_THAN_OR_EQUAL date", simple("GREATER_THAN_OR_EQUAL", "executionTime", atomapi.FormatTime(mid)), func(e atomapi.ExecutionRecord) bool {
			return !at(e).Before(mid)
		}},
		{"LESS_THAN number, not text", simple("LESS_THAN", "inboundDocumentCount", "250"), func(e atomapi.ExecutionRecord) bool {
			return e.InboundDocumentCount < 250
		}},
		{"LESS_THAN_OR_EQUAL number", simple("LESS_THAN_OR_EQUAL", "inboundDocumentCount", "9"), func(e atomapi.ExecutionRecord) bool {
			return e.InboundDocumentCount <= 9
		}},
		{"GREATER_THAN number", simple("GREATER_THAN", "executionDuration", "300000"), func(e atomapi.ExecutionRecord) bool {
			return e.ExecutionDuration > 300000
		}},
		{"GREATER_THAN_OR_EQUAL number", simple("GREATER_THAN_OR_EQUAL", "outboundDocumentCount", "490"), func(e atomapi.ExecutionRecord) bool {
			return e.OutboundDocumentCount >= 490
		}},
		{"BETWEEN numbers inclusive", simple("BETWEEN", "inboundDocumentCount", "10", "20"), func(e atomapi.ExecutionRecord) bool {
			return e.InboundDocumentCount >= 10 && e.InboundDocumentCount <= 20
		}},
		{"and", group("and", simple("EQUALS", "processId", atomsim.ProcOrders), simple("EQUALS", "atomId", atomsim.AtomProd)),
			func(e atomapi.ExecutionRecord) bool {
				return e.ProcessID == atomsim.ProcOrders && e.AtomID == atomsim.AtomProd
			}},
		{"or", group("or", simple("EQUALS", "status", "ABORTED"), simple("EQUALS", "status", "DISCARDED")),
			func(e atomapi.ExecutionRecord) bool { return e.Status == "ABORTED" || e.Status == "DISCARDED" }},
		{"nested and/or", group("and",
			simple("EQUALS", "processId", atomsim.ProcOrders),
			group("or", simple("EQUALS", "atomId", atomsim.AtomProd), simple("LESS_THAN", "executionDuration", "100000")),
			simple("BETWEEN", "executionTime", atomapi.FormatTime(lo), atomapi.FormatTime(hi))),
			func(e atomapi.ExecutionRecord) bool {
				return e.ProcessID == atomsim.ProcOrders && (e.AtomID == atomsim.AtomProd || e.ExecutionDuration < 100000) &&
					!at(e).Before(lo) && !at(e).After(hi)
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, e := range recs {
				if tc.want(e) {
					want = append(want, e.ExecutionID)
				}
			}
			if len(want) == 0 || len(want) == len(recs) {
				t.Fatalf("bad test: the filter matches %d of %d records", len(want), len(recs))
			}
			raw, _, _ := c.queryAll("ExecutionRecord", filter(tc.expr))
			var got []string
			for _, e := range decodeAll[struct{ ExecutionID string }](t, raw) {
				got = append(got, e.ExecutionID)
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Errorf("query(%s) matched %d records; want %d", tc.name, len(got), len(want))
			}
		})
	}
}

func TestBooleanAndLookupProperties(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, Events: -1, ExecutionRecords: -1})
	raw, _, _ := c.queryAll("DeployedPackage", filter(group("and",
		simple("EQUALS", "environmentName", "Test"), simple("EQUALS", "active", "true"), simple("EQUALS", "componentName", "Orders Sync"))))
	got := decodeAll[atomapi.DeployedPackage](t, raw)
	if len(got) != 1 || got[0].PackageID != atomsim.PkgOrders {
		t.Errorf("active Orders Sync in Test = %+v; want one with package %s", got, atomsim.PkgOrders)
	}
	// JSON booleans as arguments work too (FlexString).
	rep := c.req("POST", "/DeployedPackage/query", `{"QueryFilter":{"expression":{"operator":"EQUALS","property":"active","argument":[false]}}}`,
		"Content-Type", "application/json")
	var page atomapi.QueryResult
	if err := json.Unmarshal(rep.body, &page); err != nil || page.NumberOfResults != 1 {
		t.Errorf("active EQUALS false: %s; want 1 result", rep.body)
	}
}

func TestQuerySort(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: -1, Events: -1, ExecutionRecords: 250})
	cfg := filter(nil)
	cfg.QuerySort = &atomapi.QuerySort{SortField: []atomapi.SortField{{FieldName: "executionTime", SortOrder: "DESC"}}}
	raw, requests, _ := c.queryAll("ExecutionRecord", cfg)
	got := decodeAll[atomapi.ExecutionRecord](t, raw)
	if len(got) != 250 || requests != 3 {
		t.Fatalf("got %d records in %d requests; want 250 in 3", len(got), requests)
	}
	for i := 1; i < len(got); i++ {
		if mustTime(t, got[i-1].ExecutionTime).Before(mustTime(t, got[i].ExecutionTime)) {
			t.Fatalf("record %d (%s) before %d (%s): not descending", i-1, got[i-1].ExecutionTime, i, got[i].ExecutionTime)
		}
	}
	// Default order: executionTime ascending, then executionId.
	raw, _, _ = c.queryAll("ExecutionRecord", filter(nil))
	got = decodeAll[atomapi.ExecutionRecord](t, raw)
	if !slices.IsSortedFunc(got, func(a, b atomapi.ExecutionRecord) int {
		if c := mustTime(t, a.ExecutionTime).Compare(mustTime(t, b.ExecutionTime)); c != 0 {
			return c
		}
		return strings.Compare(a.ExecutionID, b.ExecutionID)
	}) {
		t.Error("default order is not (executionTime, executionId) ascending")
	}
}

func TestBadFilters(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: 10, Events: 10, ExecutionRecords: 10})
	tests := []struct {
		name, object string
		body         any
	}{
		{"unknown operator", "AuditLog", filter(simple("MATCHES", "type", "x"))},
		{"lower-case simple operator", "AuditLog", filter(simple("equals", "type", "x"))},
		{"upper-case group operator", "AuditLog", filter(group("AND", simple("EQUALS", "type", "x"), simple("EQUALS", "level", "INFO")))},
		{"unknown property", "AuditLog", filter(simple("EQUALS", "colour", "x"))},
		{"property of another object", "AuditLog", filter(simple("EQUALS", "documentId", "x"))},
		{"EQUALS with two arguments", "AuditLog", filter(simple("EQUALS", "type", "x", "y"))},
		{"EQUALS without argument", "AuditLog", filter(simple("EQUALS", "type"))},
		{"BETWEEN with one argument", "AuditLog", filter(simple("BETWEEN", "date", "2025-01-01T00:00:00Z"))},
		{"IS_NULL with an argument", "AuditLog", filter(simple("IS_NULL", "containerId", "x"))},
		{"bad date", "AuditLog", filter(simple("GREATER_THAN", "date", "yesterday"))},
		{"date without time", "AuditLog", filter(simple("BETWEEN", "date", "2025-01-01", "2025-01-02"))},
		{"bad number", "ExecutionRecord", filter(simple("LESS_THAN", "inboundDocumentCount", "many"))},
		{"bad boolean", "DeployedPackage", filter(simple("EQUALS", "active", "yes"))},
		{"ordering a boolean", "DeployedPackage", filter(simple("GREATER_THAN", "active", "true"))},
		{"empty group", "AuditLog", filter(group("and"))},
		{"bad nested", "AuditLog", filter(group("or", simple("EQUALS", "type", "x"), group("and", simple("NOPE", "type", "x"))))},
		{"Atom with LIKE", "Atom", filter(simple("LIKE", "name", "%Atom%"))},
		{"QuerySort on AuditLog", "AuditLog", atomapi.QueryConfig{QuerySort: &atomapi.QuerySort{SortField: []atomapi.SortField{{FieldName: "date", SortOrder: "ASC"}}}}},
		{"bad sortOrder", "ExecutionRecord", atomapi.QueryConfig{QuerySort: &atomapi.QuerySort{SortField: []atomapi.SortField{{FieldName: "executionTime", SortOrder: "UP"}}}}},
		{"unknown sort field", "ExecutionRecord", atomapi.QueryConfig{QuerySort: &atomapi.QuerySort{SortField: []atomapi.SortField{{FieldName: "colour"}}}}},
		{"malformed JSON", "AuditLog", json.RawMessage(`{"QueryFilter":`)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rep reply
			if raw, ok := tc.body.(json.RawMessage); ok {
				rep = c.req("POST", "/"+tc.object+"/query", string(raw), "Content-Type", "application/json")
			} else {
				rep = c.req("POST", "/"+tc.object+"/query", tc.body)
			}
			var eb atomapi.ErrorBody
			if rep.status != http.StatusBadRequest || json.Unmarshal(rep.body, &eb) != nil || eb.Text() == "" {
				t.Errorf("status %d, body %s; want 400 with an error message", rep.status, rep.body)
			}
		})
	}
	t.Run("match all", func(t *testing.T) {
		rep := c.req("POST", "/AuditLog/query", `{"QueryFilter":{}}`, "Content-Type", "application/json")
		if !strings.Contains(string(rep.body), `"numberOfResults":10`) {
			t.Errorf(`{"QueryFilter":{}} = %d %s; want all 10 records`, rep.status, rep.body)
		}
	})
	t.Run("query needs JSON", func(t *testing.T) {
		if rep := c.req("POST", "/AuditLog/query", `{"QueryFilter":{}}`); rep.status != http.StatusUnsupportedMediaType {
			t.Errorf("text/plain query: status %d; want 415", rep.status)
		}
	})
}

func TestGetAndRoutes(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: 5, Events: 5, ExecutionRecords: 5})
	data := c.s.Data()
	tests := []struct {
		method, path string
		want         int
		contains     string
	}{
		{"GET", "/AuditLog/" + data.AuditLogs[2].DocumentID, 200, data.AuditLogs[2].DocumentID},
		{"GET", "/Process/" + atomsim.ProcFails, 200, `"name":"Always Fails"`},
		{"GET", "/Atom/" + atomsim.AtomProd, 200, `"type":"MOLECULE"`},
		{"GET", "/Environment/" + atomsim.EnvProd, 200, `"classification":"PROD"`},
		{"GET", "/Deployment/" + atomsim.DepOrdersTest, 200, `"digest":"`},
		{"GET", "/PackagedComponent/" + atomsim.PkgOrders, 200, `"componentVersion":"7.0"`},
		{"GET", "/DeployedPackage/" + data.DeployedPackages[0].DeploymentID, 200, `"@type":"DeployedPackage"`},
		{"GET", "/Process/proc-nope", 400, "Invalid"},
		{"GET", "/Nothing/here", 404, ""},
		{"GET", "/ExecutionRecord/execution-x", 404, ""},
		{"DELETE", "/Process/" + atomsim.ProcOrders, 404, ""},
		{"POST", "/Nothing/query", 404, ""},
	}
	for _, tc := range tests {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			rep := c.req(tc.method, tc.path, nil)
			if rep.status != tc.want || !strings.Contains(string(rep.body), tc.contains) {
				t.Errorf("%s %s = %d %s; want %d containing %q", tc.method, tc.path, rep.status, rep.body, tc.want, tc.contains)
			}
		})
	}
	// Deployment queries do not carry the digest.
	raw, _, _ := c.queryAll("Deployment", filter(simple("EQUALS", "current", "true")))
	for _, r := range raw {
		if strings.Contains(string(r), "digest") {
			t.Errorf("Deployment query result %s carries the digest", r)
		}
	}
	if len(raw) != 3 {
		t.Errorf("current Deployments = %d; want 3", len(raw))
	}
}

func TestJSONShapes(t *testing.T) {
	c := newSim(t, atomsim.Options{AuditLogs: 300, Events: 300, ExecutionRecords: 50})
	raw, _, _ := c.queryAll("ExecutionRecord", filter(simple("EQUALS", "processId", atomsim.ProcFails)))
	if len(raw) == 0 {
		t.Fatal("no proc-fails history")
	}
	for _, r := range raw {
		s := string(r)
		if !strings.Contains(s, `"@type":"ExecutionRecord"`) || !strings.Contains(s, `"executionDuration":["Long",`) ||
			!strings.Contains(s, `"status":"ERROR"`) || !strings.Contains(s, `"message":"`+strings.ReplaceAll(atomsim.FailMessage, `"`, `\"`)+`"`) {
			t.Errorf("ExecutionRecord %s; want @type, executionDuration as [\"Long\", n], ERROR and the failure message", s)
		}
	}
	// Audit messages include commas, quotes and newlines somewhere.
	var comma, quote, newline bool
	for _, a := range c.s.Data().AuditLogs {
		comma = comma || strings.Contains(a.Message, ",")
		quote = quote || strings.Contains(a.Message, `"`)
		newline = newline || strings.Contains(a.Message, "\n")
	}
	if !comma || !quote || !newline {
		t.Errorf("audit messages with comma %v, quote %v, newline %v; want all", comma, quote, newline)
	}
	// The same seed gives the same data; another seed, other data.
	a := atomsim.New(atomsim.Options{Seed: 7, AuditLogs: 20, Events: 20, ExecutionRecords: 20, Now: func() time.Time { return t0 }}).Data()
	b := atomsim.New(atomsim.Options{Seed: 7, AuditLogs: 20, Events: 20, ExecutionRecords: 20, Now: func() time.Time { return t0 }}).Data()
	o := atomsim.New(atomsim.Options{Seed: 8, AuditLogs: 20, Events: 20, ExecutionRecords: 20, Now: func() time.Time { return t0 }}).Data()
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	jo, _ := json.Marshal(o)
	if string(ja) != string(jb) || string(ja) == string(jo) {
		t.Errorf("same seed equal: %v, other seed equal: %v; want true, false", string(ja) == string(jb), string(ja) == string(jo))
	}
	for _, l := range a.AuditLogs {
		if d := mustTime(t, l.Date); !d.Before(t0) || d.Before(t0.Add(-30*24*time.Hour)) {
			t.Errorf("audit log date %s outside the 30 days before %s", l.Date, t0)
		}
	}
}

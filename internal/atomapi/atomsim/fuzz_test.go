package atomsim_test

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

// FuzzQuery feeds arbitrary QueryConfig bodies to every queryable object: the
// answer must be 200 with a valid QueryResult or 400 with an error body.
func FuzzQuery(f *testing.F) {
	for _, s := range []string{
		`{"QueryFilter":{}}`,
		`{"QueryFilter":{"expression":{"operator":"EQUALS","property":"type","argument":["account"]}}}`,
		`{"QueryFilter":{"expression":{"operator":"BETWEEN","property":"date","argument":["2025-02-01T00:00:00Z","2025-02-02T00:00:00.5Z"]}}}`,
		`{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[{"operator":"LIKE","property":"userId","argument":["%@%"]},{"operator":"or","nestedExpression":[{"operator":"IS_NULL","property":"containerId"},{"operator":"GREATER_THAN","property":"date","argument":["2025-02-20T00:00:00Z"]}]}]}}}`,
		`{"QueryFilter":{"expression":{"operator":"LESS_THAN","property":"inboundDocumentCount","argument":[12]}}},"QuerySort":{"sortField":[{"fieldName":"executionTime","sortOrder":"DESC"}]}}`,
		`{"QueryFilter":{"expression":{"operator":"EQUALS","property":"active","argument":[true]}}}`,
		`{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[]}}}`,
		`{"QueryFilter":null}`,
		`[]`,
	} {
		for _, obj := range []string{"AuditLog", "ExecutionRecord", "DeployedPackage"} {
			f.Add(obj, s)
		}
	}
	s := atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, AuditLogs: 300, ExecutionRecords: 300, Events: 100,
		Now: func() time.Time { return t0 }})
	objects := map[string]bool{"AuditLog": true, "ExecutionRecord": true, "Event": true, "Environment": true, "Atom": true,
		"Process": true, "PackagedComponent": true, "DeployedPackage": true, "Deployment": true, "EnvironmentAtomAttachment": true}
	f.Fuzz(func(t *testing.T, object, body string) {
		if !objects[object] {
			object = "AuditLog"
		}
		r := httptest.NewRequest("POST", atomsim.PathPrefix+"sim-account/"+object+"/query", strings.NewReader(body))
		r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		switch w.Code {
		case http.StatusOK:
			var page atomapi.QueryResult
			if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil || page.Type != "QueryResult" || len(page.Result) > atomapi.PageSize {
				t.Fatalf("200 with %.200q: %v", w.Body.String(), err)
			}
		case http.StatusBadRequest:
			var eb atomapi.ErrorBody
			if err := json.Unmarshal(w.Body.Bytes(), &eb); err != nil || eb.Text() == "" {
				t.Fatalf("400 with %q: %v", w.Body.String(), err)
			}
		default:
			t.Fatalf("query(%s, %q) = %d %s; want 200 or 400", object, body, w.Code, w.Body.String())
		}
	})
}

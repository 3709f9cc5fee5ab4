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

// BenchmarkQueryPaging pages through all 25,000 seeded audit logs over HTTP
// (loopback) and reports records served per second.
func BenchmarkQueryPaging(b *testing.B) {
	c := newSim(b, atomsim.Options{Events: -1, ExecutionRecords: -1})
	records := 0
	b.ResetTimer()
	for b.Loop() {
		raw, _, _ := c.queryAll("AuditLog", filter(nil))
		records += len(raw)
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkQueryInProcess is the same without the network: ServeHTTP only.
func BenchmarkQueryInProcess(b *testing.B) {
	s := atomsim.New(atomsim.Options{Rate: -1, DailyLimit: -1, Events: -1, ExecutionRecords: -1, Now: func() time.Time { return t0 }})
	do := func(path, ctype, body string) atomapi.QueryResult {
		r := httptest.NewRequest("POST", atomsim.PathPrefix+"sim-account"+path, strings.NewReader(body))
		r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
		r.Header.Set("Accept", "application/json")
		r.Header.Set("Content-Type", ctype)
		w := httptest.NewRecorder()
		s.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			b.Fatalf("%s: %d %s", path, w.Code, w.Body)
		}
		var page atomapi.QueryResult
		if err := json.Unmarshal(w.Body.Bytes(), &page); err != nil {
			b.Fatal(err)
		}
		return page
	}
	records := 0
	for b.Loop() {
		page := do("/AuditLog/query", "application/json", `{"QueryFilter":{}}`)
		records += len(page.Result)
		for page.QueryToken != "" {
			page = do("/AuditLog/queryMore", "text/plain", page.QueryToken)
			records += len(page.Result)
		}
	}
	b.ReportMetric(float64(records)/b.Elapsed().Seconds(), "records/s")
}

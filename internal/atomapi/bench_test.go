package atomapi

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// benchPage builds a full QueryResult page of PageSize records made by rec.
func benchPage(b *testing.B, rec func(i int) any) []byte {
	b.Helper()
	recs := make([]any, PageSize)
	for i := range recs {
		recs[i] = rec(i)
	}
	data, err := json.Marshal(map[string]any{"@type": "QueryResult", "result": recs,
		"numberOfResults": 1234, "queryToken": strings.Repeat("AbCd+/==", 190)})
	if err != nil {
		b.Fatal(err)
	}
	return data
}

func benchDecodePage[T any](b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		page, err := decodeQueryResult(data)
		if err != nil {
			b.Fatal(err)
		}
		out := make([]T, len(page.Result))
		for i, raw := range page.Result {
			if err := json.Unmarshal(raw, &out[i]); err != nil {
				b.Fatal(err)
			}
		}
		if len(out) != PageSize {
			b.Fatalf("decoded %d records; want %d", len(out), PageSize)
		}
	}
	b.ReportMetric(float64(PageSize*b.N)/b.Elapsed().Seconds(), "records/s")
}

// BenchmarkDecodeQueryPage decodes a 100-record page and every record in it, as
// QueryAll does.
func BenchmarkDecodeQueryPage(b *testing.B) {
	b.Run("ExecutionRecord", func(b *testing.B) {
		data := benchPage(b, func(i int) any {
			return ExecutionRecord{Type: "ExecutionRecord", Account: "account-123456", AtomID: "3456789a-bcde-f012-3456-789abcdef012",
				AtomName: "Production Atom", ExecutionDuration: Long(3832 + i), ExecutionID: fmt.Sprintf("execution-107306ba-%04d-2024.09.25", i),
				ExecutionTime: "2024-09-25T10:00:00Z", ExecutionType: "exec_sched", InboundDocumentCount: 4, InboundDocumentSize: 10240,
				OutboundDocumentCount: 4, OutboundDocumentSize: 20480, ProcessID: "789abcde-f012-3456-789a-bcdef0123456",
				ProcessName: "Orders Sync", RecordedDate: "2024-09-25T10:00:04Z", Status: StatusComplete,
				TopLevelExecutionID: fmt.Sprintf("execution-107306ba-%04d-2024.09.25", i)}
		})
		benchDecodePage[ExecutionRecord](b, data)
	})
	b.Run("AuditLog", func(b *testing.B) {
		data := benchPage(b, func(i int) any {
			return AuditLog{Type: "AuditLog", DocumentID: fmt.Sprintf("XdDAzmwB7C-eRHGS%04d", i), AccountID: "account-123456",
				ContainerID: "3456789a-bcde-f012-3456-789abcdef012", UserID: "user@example.com", Date: "2024-09-25T10:00:00Z",
				AuditType: "as.process.manual_execution", Action: "EXECUTE", Modifier: "MANUAL", Level: "INFO", Source: "UI",
				Message: "Process executed manually", AuditLogProperty: []AuditLogProperty{
					{Name: "VERSION_STRING", Value: "3.0"}, {Name: "ENVIRONMENT_ID", Value: "env-prod"}}}
		})
		benchDecodePage[AuditLog](b, data)
	})
}

// BenchmarkClientRequestOverhead measures one Get against a local httptest
// server: request building, hooks, the round trip over loopback and decoding.
func BenchmarkClientRequestOverhead(b *testing.B) {
	body := []byte(`{"@type":"Deployment","id":"dep-orders-test","digest":"d1g3st","current":true}`)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	c, err := New(Config{BaseURL: srv.URL + "/api/rest/v1", AccountID: "acct", Credentials: NewCredentials("u", "p")})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		var d Deployment
		if err := c.Get(b.Context(), "Deployment", "dep-orders-test", &d); err != nil || d.Digest != "d1g3st" {
			b.Fatalf("Get = %+v, %v", d, err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

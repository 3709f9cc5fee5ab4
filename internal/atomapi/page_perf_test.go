package atomapi

import (
	"encoding/json"
	"fmt"
	"syscall"
	"testing"
	"time"
)

// BenchmarkPageCPU is BenchmarkDecodeQueryPage (decode a 100-record page and
// every record in it, as QueryAll does) with the CPU time per page
// (cpu-ms/page: user+system of the whole process, GC included), a figure a
// loaded machine disturbs far less than ns/op. It only uses the package's
// long-standing API, so the same file measures an older tree (the before
// figures in BENCHMARKS.md).
func BenchmarkPageCPU(b *testing.B) {
	pages := map[string][]byte{
		"ExecutionRecord": benchPage(b, func(i int) any {
			return ExecutionRecord{Type: "ExecutionRecord", Account: "account-123456", AtomID: "3456789a-bcde-f012-3456-789abcdef012",
				AtomName: "Production Atom", ExecutionDuration: Long(3832 + i), ExecutionID: fmt.Sprintf("execution-107306ba-%04d-2024.09.25", i),
				ExecutionTime: "2024-09-25T10:00:00Z", ExecutionType: "exec_sched", InboundDocumentCount: 4, InboundDocumentSize: 10240,
				OutboundDocumentCount: 4, OutboundDocumentSize: 20480, ProcessID: "789abcde-f012-3456-789a-bcdef0123456",
				ProcessName: "Orders Sync", RecordedDate: "2024-09-25T10:00:04Z", Status: StatusComplete,
				TopLevelExecutionID: fmt.Sprintf("execution-107306ba-%04d-2024.09.25", i)}
		}),
		"AuditLog": benchPage(b, func(i int) any {
			return AuditLog{Type: "AuditLog", DocumentID: fmt.Sprintf("XdDAzmwB7C-eRHGS%04d", i), AccountID: "account-123456",
				ContainerID: "3456789a-bcde-f012-3456-789abcdef012", UserID: "user@example.com", Date: "2024-09-25T10:00:00Z",
				AuditType: "as.process.manual_execution", Action: "EXECUTE", Modifier: "MANUAL", Level: "INFO", Source: "UI",
				Message: "Process executed manually", AuditLogProperty: []AuditLogProperty{
					{Name: "VERSION_STRING", Value: "3.0"}, {Name: "ENVIRONMENT_ID", Value: "env-prod"}}}
		}),
	}
	b.Run("ExecutionRecord", func(b *testing.B) { pageCPU[ExecutionRecord](b, pages["ExecutionRecord"]) })
	b.Run("AuditLog", func(b *testing.B) { pageCPU[AuditLog](b, pages["AuditLog"]) })
	b.Run("PageOnly", func(b *testing.B) { pageCPU[json.RawMessage](b, pages["AuditLog"]) })
}

// pageCPU decodes data as a page and each record as T (json.RawMessage: the
// page alone, as an export does).
func pageCPU[T any](b *testing.B, data []byte) {
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	cpu0 := perfCPUTime(b)
	for b.Loop() {
		page, err := decodeQueryResult(data)
		if err != nil || len(page.Result) != PageSize {
			b.Fatalf("decodeQueryResult = %v", err)
		}
		var zero T
		if _, raw := any(zero).(json.RawMessage); raw {
			continue
		}
		out := make([]T, len(page.Result))
		for i, r := range page.Result {
			if err := json.Unmarshal(r, &out[i]); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric((perfCPUTime(b)-cpu0).Seconds()*1000/float64(b.N), "cpu-ms/page")
}

func perfCPUTime(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

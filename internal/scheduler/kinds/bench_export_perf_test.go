package kinds

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// BenchmarkExportSink is the daemon's AuditLog export path in one process: the
// simulator in a child process (childSim), the real client, the export kind
// writing JSON lines, and the AuditLog records also stored in a real ledger
// (store.DB, synchronous=FULL) as the daemon's export does; "files+ledger-NORMAL"
// is the same with synchronous=NORMAL, for comparison. -cpuprofile and
// -memprofile of this benchmark are the export path's profiles. Metrics per
// 100-record page: cpu-ms/page (this process's user+system CPU, the
// simulator excluded) and sys-ms/page (the fsyncs' share).
//
//	go test -run '^$' -bench ExportSink -benchtime 1x -cpuprofile cpu.prof ./internal/scheduler/kinds/
func BenchmarkExportSink(b *testing.B) {
	for _, tc := range []struct {
		name string
		sink string // the ledger's synchronous setting; "" = no ledger sink
	}{{"files", ""}, {"files+ledger", "FULL"}, {"files+ledger-NORMAL", "NORMAL"}} {
		b.Run(tc.name, func(b *testing.B) {
			const n = 20_000
			client := childSim(b, n)
			b.ReportAllocs()
			var cpu, sys time.Duration
			pages := 0
			for b.Loop() {
				dir := b.TempDir()
				k := &Export{Client: client, State: &fakeState{t: b}, Object: "AuditLog", WindowProperty: "date",
					FirstWindow: 31 * 24 * time.Hour, MaxWindow: 31 * 24 * time.Hour, Output: filepath.Join(dir, "{job}.jsonl")}
				if tc.sink != "" {
					db, err := store.Open(context.Background(), filepath.Join(dir, "runnerd.db"), store.Options{Synchronous: tc.sink})
					if err != nil {
						b.Fatal(err)
					}
					defer db.Close()
					k.Sink = db
				}
				rc := &scheduler.RunContext{Run: runnerd.Run{ID: 1, Job: "bench", NominalTime: simT0}}
				u0, s0 := perfRusageSelf(b)
				out := k.Run(context.Background(), rc)
				u1, s1 := perfRusageSelf(b)
				if out.State != runnerd.StateSucceeded || detailOf[ExportDetail](b, out).Rows != n {
					b.Fatalf("Run() = %s (%v) %s", out.State, out.Err, out.Detail)
				}
				cpu += u1 - u0 + s1 - s0
				sys += s1 - s0
				pages += n / 100
			}
			b.ReportMetric(cpu.Seconds()*1000/float64(pages), "cpu-ms/page")
			b.ReportMetric(sys.Seconds()*1000/float64(pages), "sys-ms/page")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// perfRusageSelf is this process's user and system CPU time so far.
func perfRusageSelf(tb testing.TB) (user, sys time.Duration) {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano()), time.Duration(ru.Stime.Nano())
}

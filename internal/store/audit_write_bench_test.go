package store

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"
)

// auditPageJSON makes page p of 100 AuditLog records as the platform sends
// them (atomsphere-api.md 4.2): random 20-character document ids, dates
// rising, the simulator's mix of users, types and properties.
func auditPageJSON(rng *rand.Rand, p int) []json.RawMessage {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	types := []struct{ typ, action, modifier, prop string }{
		{"as.process.manual_execution", "EXECUTE", "MANUAL", "PROCESS_ID"}, {"as.atom.process", "ATTACH", "NONE", "ENVIRONMENT_ID"},
		{"as.schedules", "UPDATE", "NONE", "PROCESS_ID"}, {"account", "ON_ENTRY", "SUCCESS", ""}, {"as.extensions", "EDIT", "NONE", "ENVIRONMENT_ID"},
	}
	out := make([]json.RawMessage, 100)
	for i := range out {
		id := make([]byte, 20)
		for j := range id {
			id[j] = alphabet[rng.IntN(len(alphabet))]
		}
		ty := types[rng.IntN(len(types))]
		date := t0.Add(time.Duration(p*100+i) * 17 * time.Second).Format(time.RFC3339)
		rec := fmt.Sprintf(`{"@type":"AuditLog","documentId":%q,"accountId":"sim-account","containerId":"atom-%d","userId":"user%d@example.com","date":%q,"type":%q,"action":%q,"modifier":%q,"level":"INFO","source":"UI","message":"Process \"Orders Sync\" changed on atom \"Production Molecule\" by user%d"`,
			id, rng.IntN(2), rng.IntN(9), date, ty.typ, ty.action, ty.modifier, rng.IntN(9))
		if ty.prop != "" {
			rec += fmt.Sprintf(`,"AuditLogProperty":[{"@type":"AuditLogProperty","name":%q,"value":"value-%d"},{"@type":"AuditLogProperty","name":"VERSION_STRING","value":"%d"}]`,
				ty.prop, rng.IntN(20), rng.IntN(9))
		}
		out[i] = json.RawMessage(rec + "}")
	}
	return out
}

var benchSync = "FULL"

// BenchmarkUpsertAuditPage stores 100-record AuditLog pages as an export
// does, into an audit store already holding `stored` records, with the
// daemon's synchronous=FULL. cpu-µs/page is the process's CPU per page.
//
//	go test -run '^$' -bench BenchmarkUpsertAuditPage ./internal/store
func BenchmarkUpsertAuditPage(b *testing.B) {
	ctx := context.Background()
	for _, stored := range []int{10_000, 100_000} {
		for _, batch := range []int{1, 10} {
			b.Run(fmt.Sprintf("stored=%d/batch=%d", stored, batch), func(b *testing.B) {
				db, _ := MustOpenDBAt(b, filepath.Join(b.TempDir(), "a.db"), Options{Synchronous: benchSync})
				rng := rand.New(rand.NewPCG(1, 2))
				p := 0
				for ; p < stored/100; p++ {
					if _, err := db.UpsertAuditJSON(ctx, auditPageJSON(rng, p)); err != nil {
						b.Fatal(err)
					}
				}
				mk := func(at int) []json.RawMessage {
					var recs []json.RawMessage
					for k := range batch {
						recs = append(recs, auditPageJSON(rng, at+k)...)
					}
					return recs
				}
				pages := make([][]json.RawMessage, 200)
				for i := range pages {
					pages[i] = mk(p + i*batch)
				}
				b.ReportAllocs()
				cpu0 := perfCPUTime(b)
				n := 0
				for i := 0; b.Loop(); i++ {
					if i == len(pages) {
						b.StopTimer()
						pages = pages[:0]
						for j := range 200 {
							pages = append(pages, mk(p+(n+j)*batch))
						}
						i = 0
						b.StartTimer()
					}
					if got, err := db.UpsertAuditJSON(ctx, pages[i]); err != nil || got != 100*batch {
						b.Fatalf("UpsertAuditJSON() = %d, %v; want 100 new", got, err)
					}
					n++
				}
				b.ReportMetric(float64((perfCPUTime(b)-cpu0).Microseconds())/float64(n*batch), "cpu-µs/page")
			})
		}
	}
}

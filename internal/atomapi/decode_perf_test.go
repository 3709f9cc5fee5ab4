package atomapi

import (
	"bytes"
	"fmt"
	"reflect"
	"testing"
)

// decodeQueryResult (records cut out of one copy of the array) must give what
// decodeQueryResultGeneral (encoding/json into []json.RawMessage) gives.

func checkQueryResultSame(t *testing.T, data []byte) {
	t.Helper()
	got, err := decodeQueryResult(data)
	want, wantErr := decodeQueryResultGeneral(data)
	if (err == nil) != (wantErr == nil) || err != nil && err.Error() != wantErr.Error() {
		t.Fatalf("decodeQueryResult(%q) error = %v; want %v (general path)", data, err, wantErr)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("decodeQueryResult(%q) = %#v; want %#v (general path)", data, got, want)
	}
}

func TestDecodeQueryResultMatchesGeneral(t *testing.T) {
	for _, in := range []string{
		`{"@type":"QueryResult","numberOfResults":0}`,
		`{"@type":"QueryResult","result":[{"a":1},{"b":[1,{"c":"]"}]}],"numberOfResults":2,"queryToken":"t=="}`,
		`{"result":[]}`, `{"result":[ ]}`, `{"result":null}`, `{"result": [ 1 , "x" , null , true , [ ] , { } ] }`,
		"{\"result\":[\n  {\"a\": \"x\\\"],\"},\n  {\"b\": \"\\\\\"}\n]\n}", `{"result":["\\\\\"", "]", "{"]}`,
		`{"result":{}}`, `{"result":"x"}`, `{"result":1}`, `{"result":true}`, `{"result":[1],"result":null}`,
		`{"result":[1],"result":[2,3]}`, `{"result":1,"result":[2]}`, `{"result":[2],"result":1}`, `{"RESULT":[1]}`,
		`{"numberOfResults":"7"}`, `{"numberOfResults":7,"result":[1]}`, `null`, `[]`, `{}`, ``, `{"result":[1}`,
		`{"result":[1]} x`, `{"queryToken":5}`, `{"result":["\u00e9\ud83d\ude00", "é"]}`,
	} {
		t.Run(in, func(t *testing.T) { checkQueryResultSame(t, []byte(in)) })
	}
}

// TestDecodeQueryResultRecordsIndependent: appending to one record never
// writes over the next (the records share one buffer).
func TestDecodeQueryResultRecordsIndependent(t *testing.T) {
	qr, err := decodeQueryResult([]byte(`{"result":[{"a":1},{"b":2}]}`))
	if err != nil || len(qr.Result) != 2 {
		t.Fatalf("decodeQueryResult = %+v, %v", qr, err)
	}
	_ = append(qr.Result[0], "XXXXXXXX"...)
	if got := string(qr.Result[1]); got != `{"b":2}` {
		t.Errorf("record 1 after appending to record 0 = %s; want {\"b\":2}", got)
	}
}

// FuzzDecodeQueryResultFast: the two paths agree on every input.
func FuzzDecodeQueryResultFast(f *testing.F) {
	for _, s := range []string{
		`{"@type":"QueryResult","result":[{"@type":"ExecutionRecord","executionDuration":["Long",3832]}],"numberOfResults":1,"queryToken":"a+b/c=="}`,
		`{"result":[ "a\"]" , {"x":[1,2]} ]}`, `{"result":null}`, `{"result":1,"result":[]}`, `{"numberOfResults":"7"}`, `[]`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { checkQueryResultSame(t, data) })
}

// BenchmarkExportPage is the client-side cost of one 100-record AuditLog page on
// the export path: decode the page and write each record as a JSON line, as the
// export kind's jsonl writer does (TrimSpace, a line-break check, two writes
// into a buffer). "general" decodes the page the way decodeQueryResult did
// before it cut records out of one copy (the before figure). cpu-ms/page is
// the process's CPU time (user+system, GC included) per page: robust to a
// loaded machine, unlike ns/op; the target is 1 ms.
func BenchmarkExportPage(b *testing.B) {
	data := benchPage(b, func(i int) any {
		return AuditLog{Type: "AuditLog", DocumentID: fmt.Sprintf("XdDAzmwB7C-eRHGS%04d", i), AccountID: "account-123456",
			ContainerID: "3456789a-bcde-f012-3456-789abcdef012", UserID: "user@example.com", Date: "2024-09-25T10:00:00Z",
			AuditType: "as.process.manual_execution", Action: "EXECUTE", Modifier: "MANUAL", Level: "INFO", Source: "UI",
			Message: "Process executed manually", AuditLogProperty: []AuditLogProperty{
				{Name: "VERSION_STRING", Value: "3.0"}, {Name: "ENVIRONMENT_ID", Value: "env-prod"}}}
	})
	for _, bc := range []struct {
		name   string
		decode func([]byte) (*QueryResult, error)
	}{{"fast", decodeQueryResult}, {"general", decodeQueryResultGeneral}} {
		b.Run(bc.name, func(b *testing.B) {
			var out bytes.Buffer
			b.SetBytes(int64(len(data)))
			b.ReportAllocs()
			cpu0 := perfCPUTime(b)
			for b.Loop() {
				page, err := bc.decode(data)
				if err != nil || len(page.Result) != PageSize {
					b.Fatalf("decode = %d records, %v", len(page.Result), err)
				}
				out.Reset()
				for _, r := range page.Result {
					r = bytes.TrimSpace(r)
					if bytes.ContainsAny(r, "\r\n") {
						b.Fatal("unexpected line break")
					}
					out.Write(r)
					out.WriteByte('\n')
				}
			}
			b.ReportMetric((perfCPUTime(b)-cpu0).Seconds()*1000/float64(b.N), "cpu-ms/page")
		})
	}
}

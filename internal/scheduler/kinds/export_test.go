package kinds

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/csv"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
)

// hourlyAudit returns one AuditLog record per hour in [from, to), written with
// the irregular spacing a server may send.
func hourlyAudit(from, to time.Time) []json.RawMessage {
	var out []json.RawMessage
	for t := from; t.Before(to); t = t.Add(time.Hour) {
		out = append(out, json.RawMessage(fmt.Sprintf(
			`{"@type":"AuditLog", "documentId":"doc-%d","date":%q,"type":"as.process.manual_execution","userId":"u@x",  "AuditLogProperty":[{"name":"N","value":"v"}]}`,
			t.Unix(), atomapi.FormatTime(t))))
	}
	return out
}

func newExport(t *testing.T, q *fakeQuery, s *fakeState, c *fakeClock) *Export {
	return &Export{
		Client: q, Sink: s, State: s, Object: "AuditLog", WindowProperty: "date",
		Output:  filepath.Join(t.TempDir(), "{job}", "{window_start}_{window_end}.jsonl"),
		Filters: []atomapi.Expression{eq("type", "as.process.manual_execution")},
		Now:     c.Now,
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
}

func TestExportWindows(t *testing.T) {
	c := newClock(t0.Add(3 * time.Minute))
	recs := hourlyAudit(t0.Add(-80*time.Hour), t0.Add(5*time.Hour))
	q := &fakeQuery{records: recs, pageSize: 10}
	s := &fakeState{t: t, wm: t0.Add(-72 * time.Hour)}
	k := newExport(t, q, s, c)
	out := k.Run(context.Background(), runCtx("audit", t0, c))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v); want succeeded", out.State, out.Err)
	}
	d := detailOf[ExportDetail](t, out)
	if len(d.Files) != 3 || d.Rows != 72 || !d.From.Equal(t0.Add(-72*time.Hour)) || !d.To.Equal(t0) {
		t.Fatalf("Detail = %+v; want 3 files, 72 rows, window [t0-72h, t0)", d)
	}
	// Every record of [wm, t0) exactly once, as received, in the file of its window.
	var all []string
	for i, f := range d.Files {
		from := t0.Add(time.Duration(i-3) * 24 * time.Hour)
		wantName := fmt.Sprintf("%s_%s.jsonl", from.Format(fileTimeLayout), from.Add(24*time.Hour).Format(fileTimeLayout))
		if filepath.Base(f.Path) != wantName || filepath.Base(filepath.Dir(f.Path)) != "audit" {
			t.Errorf("file %d = %s; want audit/%s", i, f.Path, wantName)
		}
		lines := readLines(t, f.Path)
		if len(lines) != f.Rows || f.Rows != 24 {
			t.Errorf("file %d: %d lines, Rows %d; want 24", i, len(lines), f.Rows)
		}
		b, _ := os.ReadFile(f.Path)
		if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 {
			t.Errorf("file %d: sha256 in detail %s does not match the file", i, f.SHA256)
		}
		all = append(all, lines...)
	}
	var want []string
	for _, r := range recs {
		var a atomapi.AuditLog
		json.Unmarshal(r, &a)
		if at, _ := atomapi.ParseTime(a.Date); !at.Before(t0.Add(-72*time.Hour)) && at.Before(t0) {
			want = append(want, string(r))
		}
	}
	if !slices.Equal(all, want) {
		t.Errorf("exported lines differ from the records of the window (got %d, want %d)", len(all), len(want))
	}
	if len(s.marks) != 3 || !s.wm.Equal(t0) {
		t.Errorf("watermarks %v, final %v; want 3 moves ending at %v", s.marks, s.wm, t0)
	}
	if len(s.audit) != 72 || !slices.Equal(s.auditPage, []int{24, 24, 24}) {
		t.Errorf("audit sink: %d records in batches %v; want 72 in one batch per window", len(s.audit), s.auditPage)
	}
	if d.AuditNew != 72 {
		t.Errorf("Detail.AuditNew = %d; want 72", d.AuditNew)
	}
	// The filter: job filters AND date >= from AND date < to.
	e := q.exprs[0]
	if e.Operator != atomapi.OpAnd || len(e.NestedExpression) != 3 {
		t.Fatalf("filter = %+v; want and of 3", e)
	}
	ge, lt := e.NestedExpression[1], e.NestedExpression[2]
	if ge.Operator != atomapi.OpGreaterThanOrEqual || ge.Property != "date" || string(ge.Argument[0]) != "2026-01-02T10:00:00Z" ||
		lt.Operator != atomapi.OpLessThan || string(lt.Argument[0]) != "2026-01-03T10:00:00Z" {
		t.Errorf("window filter = %+v, %+v; want date >= 2026-01-02T10:00:00Z, < 2026-01-03T10:00:00Z", ge, lt)
	}

	// The next run continues at the watermark: nothing is read twice.
	q.exprs = nil
	out = k.Run(context.Background(), runCtx("audit", t0.Add(2*time.Hour), c))
	d = detailOf[ExportDetail](t, out)
	if out.State != runnerd.StateSucceeded || d.Rows != 2 || !d.From.Equal(t0) {
		t.Errorf("next Run() = %s %+v; want 2 rows from t0", out.State, d)
	}
}

func TestExportFirstRunAndBackfill(t *testing.T) {
	c := newClock(t0)
	recs := hourlyAudit(t0.Add(-100*time.Hour), t0)
	t.Run("first run reaches first_window back", func(t *testing.T) {
		s := &fakeState{t: t}
		k := newExport(t, &fakeQuery{records: recs}, s, c)
		k.FirstWindow = 6 * time.Hour
		out := k.Run(context.Background(), runCtx("audit", t0, c))
		if d := detailOf[ExportDetail](t, out); out.State != runnerd.StateSucceeded || d.Rows != 6 || !s.wm.Equal(t0) {
			t.Errorf("Run() = %s %+v wm %v; want 6 rows and the watermark at t0", out.State, d, s.wm)
		}
	})
	t.Run("backfill does not move the watermark back", func(t *testing.T) {
		s := &fakeState{t: t, wm: t0}
		k := newExport(t, &fakeQuery{records: recs}, s, c)
		rc := runCtx("audit", t0, c)
		rc.WindowFrom, rc.WindowTo = t0.Add(-72*time.Hour), t0.Add(-48*time.Hour)
		out := k.Run(context.Background(), rc)
		d := detailOf[ExportDetail](t, out)
		if out.State != runnerd.StateSucceeded || d.Rows != 24 || len(s.windows) != 1 {
			t.Fatalf("Run() = %s (%v) %+v; want 24 rows in one recorded window", out.State, out.Err, d)
		}
		if len(s.marks) != 0 || !s.wm.Equal(t0) {
			t.Errorf("watermark moves %v, now %v; want none, still %v", s.marks, s.wm, t0)
		}
	})
	t.Run("full export without window property", func(t *testing.T) {
		q := &fakeQuery{records: recs}
		s := &fakeState{t: t}
		k := newExport(t, q, s, c)
		k.WindowProperty, k.Filters = "", nil
		k.Output = filepath.Join(t.TempDir(), "{job}-{window_end}.jsonl")
		out := k.Run(context.Background(), runCtx("snap", t0, c))
		d := detailOf[ExportDetail](t, out)
		if out.State != runnerd.StateSucceeded || !d.Full || d.Rows != len(recs) || q.exprs[0] != nil {
			t.Errorf("Run() = %s %+v filter %v; want every record, no filter", out.State, d, q.exprs[0])
		}
	})
	t.Run("same file for two sub-windows is refused", func(t *testing.T) {
		q := &fakeQuery{records: recs}
		k := newExport(t, q, &fakeState{t: t, wm: t0.Add(-48 * time.Hour)}, c)
		k.Output = filepath.Join(t.TempDir(), "{job}.jsonl")
		out := k.Run(context.Background(), runCtx("audit", t0, c))
		if out.State != runnerd.StateFailed || out.Retryable || len(q.exprs) != 0 {
			t.Errorf("Run() = %s retryable=%v after %d queries; want failed before any query", out.State, out.Retryable, len(q.exprs))
		}
	})
}

func TestExportStopsMidWindow(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		state runnerd.RunState
	}{
		{"budget stop defers", budgetErr(), runnerd.StateDeferred},
		{"page error fails", &atomapi.APIError{Status: 500}, runnerd.StateFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newClock(t0)
			// Windows of 24 records at 10 a page: pages 1-3, 4-6, 7-9; page 5 fails.
			q := &fakeQuery{records: hourlyAudit(t0.Add(-72*time.Hour), t0), pageSize: 10, failAt: 5, failErr: tt.err}
			s := &fakeState{t: t, wm: t0.Add(-72 * time.Hour)}
			k := newExport(t, q, s, c)
			second := k.render("audit", window{t0.Add(-48 * time.Hour), t0.Add(-24 * time.Hour)})
			q.onPage = func() {
				if _, err := os.Stat(second); err == nil {
					t.Errorf("final file %s exists while its window is being read", second)
				}
			}
			out := k.Run(context.Background(), runCtx("audit", t0, c))
			if out.State != tt.state {
				t.Fatalf("Run() = %s (%v); want %s", out.State, out.Err, tt.state)
			}
			d := detailOf[ExportDetail](t, out)
			if len(d.Files) != 1 || d.Rows != 24 {
				t.Errorf("Detail = %+v; want the one completed file", d)
			}
			if _, err := os.Stat(d.Files[0].Path); err != nil {
				t.Errorf("completed file: %v; want it kept", err)
			}
			if _, err := os.Stat(second); !os.IsNotExist(err) {
				t.Errorf("interrupted window's file: %v; want none", err)
			}
			if tmp := tempFiles(t, filepath.Dir(second)); len(tmp) != 0 {
				t.Errorf("temporary files left: %v", tmp)
			}
			if want := t0.Add(-48 * time.Hour); !s.wm.Equal(want) {
				t.Errorf("watermark = %v; want %v (end of the completed window)", s.wm, want)
			}
		})
	}
}

func TestExportExecutionRecordOverlap(t *testing.T) {
	c := newClock(t0)
	q := &fakeQuery{}
	wm := t0.Add(-2 * time.Hour)
	s := &fakeState{t: t, wm: wm}
	k := newExport(t, q, s, c)
	k.Object, k.WindowProperty, k.Filters, k.Sink = "ExecutionRecord", "executionTime", nil, nil
	out := k.Run(context.Background(), runCtx("execs", t0, c))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v)", out.State, out.Err)
	}
	d := detailOf[ExportDetail](t, out)
	if want := wm.Add(-DefaultOverlap); !d.From.Equal(want) {
		t.Errorf("window from = %v; want %v (an hour before the watermark)", d.From, want)
	}
	ge := q.exprs[0].NestedExpression[0]
	if ge.Property != "executionTime" || string(ge.Argument[0]) != atomapi.FormatTime(wm.Add(-time.Hour)) {
		t.Errorf("filter = %+v; want executionTime >= watermark - 1h", ge)
	}
	if !s.wm.Equal(t0) {
		t.Errorf("watermark = %v; want %v", s.wm, t0)
	}
}

func TestExportCSV(t *testing.T) {
	c := newClock(t0)
	recs := []json.RawMessage{
		json.RawMessage(`{"@type":"ExecutionRecord","executionId":"e1","executionTime":"2026-01-05T09:00:00Z","status":"ERROR",` +
			`"message":"bad, \"quoted\"\nsecond line","executionDuration":["Long",3832],"inboundDocumentCount":5}`),
		json.RawMessage(`{"executionId":"e2","executionTime":"2026-01-05T09:30:00Z","status":"COMPLETE","extra":{"a":[1, 2]}}`),
	}
	tests := []struct {
		name       string
		object     string
		wantHeader []string
		check      func(t *testing.T, rows [][]string)
	}{
		{"known object", "ExecutionRecord", knownFields("ExecutionRecord"), func(t *testing.T, rows [][]string) {
			col := func(name string) int { return slices.Index(rows[0], name) }
			r := rows[1]
			if r[col("message")] != "bad, \"quoted\"\nsecond line" || r[col("executionDuration")] != "3832" ||
				r[col("inboundDocumentCount")] != "5" || r[col("status")] != "ERROR" {
				t.Errorf("row 1 = %q", r)
			}
			if rows[2][col("message")] != "" || rows[2][col("executionId")] != "e2" {
				t.Errorf("row 2 = %q", rows[2])
			}
		}},
		{"unknown object: sorted keys of the first page", "Widget",
			[]string{"@type", "executionDuration", "executionId", "executionTime", "extra", "inboundDocumentCount", "message", "status"},
			func(t *testing.T, rows [][]string) {
				if rows[2][4] != `{"a":[1,2]}` || rows[1][1] != "3832" {
					t.Errorf("rows = %q; want nested values as compact JSON and Long flattened", rows)
				}
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := &fakeState{t: t, wm: t0.Add(-3 * time.Hour)}
			k := newExport(t, &fakeQuery{records: recs}, s, c)
			k.Object, k.WindowProperty, k.Filters, k.Format = tt.object, "executionTime", nil, FormatCSV
			k.Overlap = time.Minute
			out := k.Run(context.Background(), runCtx("csv", t0, c))
			if out.State != runnerd.StateSucceeded {
				t.Fatalf("Run() = %s (%v)", out.State, out.Err)
			}
			d := detailOf[ExportDetail](t, out)
			b, err := os.ReadFile(d.Files[0].Path)
			if err != nil {
				t.Fatal(err)
			}
			rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
			if err != nil {
				t.Fatalf("reading the CSV back: %v\n%s", err, b)
			}
			if len(rows) != 3 || !slices.Equal(rows[0], tt.wantHeader) {
				t.Fatalf("CSV = %q; want header %q and 2 rows", rows, tt.wantHeader)
			}
			tt.check(t, rows)
		})
	}
}

func TestFlatten(t *testing.T) {
	tests := []struct{ in, want string }{
		{`"a,b"`, "a,b"},
		{`["Long", 42]`, "42"},
		{`["Long","7"]`, "7"},
		{`[1, 2]`, "[1,2]"},
		{`{"x": "y"}`, `{"x":"y"}`},
		{`true`, "true"},
		{`12.5`, "12.5"},
		{`null`, ""},
		{``, ""},
	}
	for _, tt := range tests {
		if got := flatten(json.RawMessage(tt.in)); got != tt.want {
			t.Errorf("flatten(%q) = %q; want %q", tt.in, got, tt.want)
		}
	}
}

func TestJSONLCompactsMultilineRecords(t *testing.T) {
	var b bytes.Buffer
	w := newRecordWriter(FormatJSONL, "AuditLog", &b)
	if err := w.page([]json.RawMessage{json.RawMessage("{\n  \"a\": \"x\\ny\"\n}"), json.RawMessage(`{"b":1}`)}); err != nil {
		t.Fatal(err)
	}
	if got, want := b.String(), "{\"a\":\"x\\ny\"}\n{\"b\":1}\n"; got != want {
		t.Errorf("jsonl = %q; want %q", got, want)
	}
}

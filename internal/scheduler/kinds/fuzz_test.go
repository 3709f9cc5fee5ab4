package kinds

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

// FuzzCSVCell checks that any string value survives the CSV writer: read back
// with encoding/csv, the cell is the value (encoding/csv drops the \r of a
// \r\n inside a quoted field when reading, so that pair is compared as \n).
func FuzzCSVCell(f *testing.F) {
	for _, s := range []string{"", "plain", "a,b", `say "hi"`, "line\nbreak", "cr\r\nlf", " lead", "\"", "é ✓", `["Long",1]`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		rec, err := json.Marshal(map[string]string{"k": s, "z": "end"})
		if err != nil {
			t.Skip()
		}
		var want map[string]string
		json.Unmarshal(rec, &want) // invalid UTF-8 became U+FFFD
		var b bytes.Buffer
		w := newRecordWriter(FormatCSV, "Widget", &b)
		if err := w.page([]json.RawMessage{rec}); err != nil {
			t.Fatalf("page: %v", err)
		}
		if err := w.close(); err != nil {
			t.Fatal(err)
		}
		rows, err := csv.NewReader(&b).ReadAll()
		if err != nil {
			t.Fatalf("ReadAll(%q): %v", b.String(), err)
		}
		if len(rows) != 2 || len(rows[1]) != 2 {
			t.Fatalf("rows = %q; want header and one row of 2", rows)
		}
		if got, w := rows[1][0], strings.ReplaceAll(want["k"], "\r\n", "\n"); got != w && got != strings.ReplaceAll(w, "\r", "\n") {
			t.Errorf("cell = %q; want %q", got, w)
		}
		if rows[1][1] != "end" {
			t.Errorf("next cell = %q; want end", rows[1][1])
		}
	})
}

package kinds

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strings"

	"runnerd/internal/atomapi"
)

// recordWriter writes the records of an export, one page at a time.
type recordWriter interface {
	page(recs []json.RawMessage) error
	close() error
}

func newRecordWriter(format, object string, w io.Writer) recordWriter {
	if format == FormatCSV {
		return &csvWriter{w: csv.NewWriter(w), header: knownFields(object)}
	}
	return &jsonlWriter{w: w}
}

// jsonlWriter writes each record's JSON as received, one per line. A record
// that holds line breaks (pretty-printed JSON: a raw line break can only be
// insignificant whitespace, since JSON strings escape it) is compacted.
type jsonlWriter struct {
	w   io.Writer
	buf bytes.Buffer
}

func (j *jsonlWriter) page(recs []json.RawMessage) error {
	for _, r := range recs {
		r = bytes.TrimSpace(r)
		if bytes.ContainsAny(r, "\r\n") {
			j.buf.Reset()
			if err := json.Compact(&j.buf, r); err != nil {
				return fmt.Errorf("record is not JSON: %w", err)
			}
			r = j.buf.Bytes()
		}
		if _, err := j.w.Write(r); err != nil {
			return err
		}
		if _, err := j.w.Write([]byte{'\n'}); err != nil {
			return err
		}
	}
	return nil
}

func (j *jsonlWriter) close() error { return nil }

// csvWriter writes a header, then one row per record. The columns are the
// object's fields in the order of its wire struct (known objects), else the
// sorted keys of the first page's records. Fields outside the header are not
// written. Values are flattened: strings as they are, ["Long", n] as n, other
// arrays and objects as compact JSON, null as empty.
type csvWriter struct {
	w      *csv.Writer
	header []string
	wrote  bool
	row    []string
}

func (c *csvWriter) page(recs []json.RawMessage) error {
	if !c.wrote {
		if c.header == nil {
			c.header = firstPageKeys(recs)
		}
		if len(c.header) == 0 {
			return nil // an unknown object and nothing yet: the header comes with the first records
		}
		if err := c.w.Write(c.header); err != nil {
			return err
		}
		c.wrote = true
	}
	for _, raw := range recs {
		var m map[string]json.RawMessage
		if err := json.Unmarshal(raw, &m); err != nil {
			return fmt.Errorf("record is not a JSON object: %w", err)
		}
		c.row = c.row[:0]
		for _, col := range c.header {
			c.row = append(c.row, flatten(m[col]))
		}
		if err := c.w.Write(c.row); err != nil {
			return err
		}
	}
	c.w.Flush()
	return c.w.Error()
}

func (c *csvWriter) close() error {
	c.w.Flush()
	return c.w.Error()
}

func firstPageKeys(recs []json.RawMessage) []string {
	seen := map[string]bool{}
	for _, raw := range recs {
		var m map[string]json.RawMessage
		if json.Unmarshal(raw, &m) != nil {
			continue
		}
		for k := range m {
			seen[k] = true
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// flatten renders one JSON value as a CSV cell.
func flatten(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	switch raw[0] {
	case '"':
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
	case '[':
		var tuple []json.RawMessage
		if json.Unmarshal(raw, &tuple) == nil && len(tuple) == 2 {
			var tag string
			if json.Unmarshal(tuple[0], &tag) == nil && tag == "Long" {
				return flatten(tuple[1])
			}
		}
		fallthrough
	case '{':
		var b bytes.Buffer
		if json.Compact(&b, raw) == nil {
			return b.String()
		}
	}
	return string(raw) // numbers and booleans as sent
}

// wireTypes maps the objects runnerd knows to their wire structs, whose json
// field order gives the CSV columns.
var wireTypes = map[string]reflect.Type{
	"ExecutionRecord":   reflect.TypeFor[atomapi.ExecutionRecord](),
	"AuditLog":          reflect.TypeFor[atomapi.AuditLog](),
	"Event":             reflect.TypeFor[atomapi.Event](),
	"Environment":       reflect.TypeFor[atomapi.Environment](),
	"Atom":              reflect.TypeFor[atomapi.Atom](),
	"Process":           reflect.TypeFor[atomapi.Process](),
	"PackagedComponent": reflect.TypeFor[atomapi.PackagedComponent](),
	"DeployedPackage":   reflect.TypeFor[atomapi.DeployedPackage](),
	"Deployment":        reflect.TypeFor[atomapi.Deployment](),
}

// knownFields returns the json names of object's wire struct fields, in order,
// or nil for an object runnerd has no struct for.
func knownFields(object string) []string {
	t, ok := wireTypes[object]
	if !ok {
		return nil
	}
	var out []string
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "" || name == "-" {
			continue
		}
		out = append(out, name)
	}
	return out
}

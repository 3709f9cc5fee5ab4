package kinds

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"runnerd"
)

// TestExportRemovesStaleTemps: the first run of an export in a process
// removes the temporary files an interrupted export of the job left (hidden,
// named after a final name its Output can produce, older than the process),
// and nothing else: not final files, not other jobs' or other names'
// temporary files, not a fresh one (an export running now), not a symlink.
// The second run removes nothing.
func TestExportRemovesStaleTemps(t *testing.T) {
	c := newClock(t0.Add(3 * time.Minute))
	q := &fakeQuery{records: hourlyAudit(t0.Add(-30*time.Hour), t0), pageSize: 10}
	s := &fakeState{t: t}
	k := newExport(t, q, s, c) // Output: DIR/{job}/{window_start}_{window_end}.jsonl
	root := filepath.Dir(filepath.Dir(k.Output))
	dir := filepath.Join(root, "audit")
	other := filepath.Join(root, "other")
	for _, d := range []string{dir, other} {
		if err := os.MkdirAll(d, 0o750); err != nil {
			t.Fatal(err)
		}
	}
	old := processStart.Add(-time.Hour)
	write := func(path string, stale bool) string {
		t.Helper()
		if err := os.WriteFile(path, []byte(`{"partial":`), 0o640); err != nil {
			t.Fatal(err)
		}
		if stale {
			if err := os.Chtimes(path, old, old); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	const ws, we = "20250303T050000Z", "20250304T050000Z"
	stale := []string{
		write(filepath.Join(dir, "."+ws+"_"+we+".jsonl.123456789.tmp"), true),
		write(filepath.Join(dir, ".20250101T000000Z_20250102T000000Z.jsonl.42.tmp"), true),
		// Either layout is accepted for any placeholder.
		write(filepath.Join(dir, "."+ws+"_2025-03-03.jsonl.8.tmp"), true),
	}
	kept := []string{
		write(filepath.Join(dir, ws+"_"+we+".jsonl"), true),               // a final file
		write(filepath.Join(dir, "."+ws+"_"+we+".jsonl.777.tmp"), false),  // fresh: an export running now
		write(filepath.Join(dir, "."+ws+"_"+we+".csv.1.tmp"), true),       // another name
		write(filepath.Join(dir, ".notes.jsonl.1.tmp"), true),             // not a window name
		write(filepath.Join(dir, "."+ws+"_"+we+".jsonl.abc.tmp"), true),   // not CreateTemp's digits
		write(filepath.Join(other, "."+ws+"_"+we+".jsonl.5.tmp"), true),   // another job's directory
		write(filepath.Join(dir, "x."+ws+"_"+we+".jsonl.5.tmp"), true),    // not hidden
		write(filepath.Join(dir, "."+ws+"_"+we+".jsonl.5.tmp.bak"), true), // not .tmp
		write(filepath.Join(root, "."+ws+"_"+we+".jsonl.9.tmp"), true),    // above the job's directory
	}
	link := filepath.Join(dir, "."+ws+"_"+we+".jsonl.99.tmp")
	if err := os.Symlink(kept[0], link); err != nil {
		t.Fatal(err)
	}
	kept = append(kept, link)

	out := k.Run(context.Background(), runCtx("audit", t0, c))
	if out.State != runnerd.StateSucceeded {
		t.Fatalf("Run() = %s (%v); want succeeded", out.State, out.Err)
	}
	var d ExportDetail
	if err := json.Unmarshal([]byte(out.Detail), &d); err != nil {
		t.Fatal(err)
	}
	slices.Sort(stale)
	slices.Sort(d.StaleRemoved)
	if !slices.Equal(d.StaleRemoved, stale) {
		t.Errorf("StaleRemoved = %v; want %v", d.StaleRemoved, stale)
	}
	for _, p := range stale {
		if _, err := os.Lstat(p); !os.IsNotExist(err) {
			t.Errorf("%s still exists (err %v); want it removed", p, err)
		}
	}
	for _, p := range kept {
		if _, err := os.Lstat(p); err != nil {
			t.Errorf("%s: %v; want it kept", p, err)
		}
	}

	// The second run in this process removes nothing, even a new stale file.
	late := write(filepath.Join(dir, ".20250105T000000Z_20250106T000000Z.jsonl.1.tmp"), true)
	c.Advance(time.Hour)
	out = k.Run(context.Background(), runCtx("audit", t0.Add(time.Hour), c))
	if strings.Contains(out.Detail, "stale_removed") {
		t.Errorf("second run detail = %s; want no stale_removed", out.Detail)
	}
	if _, err := os.Stat(late); err != nil {
		t.Errorf("second run removed %s: %v; want cleanup only on the first run", late, err)
	}
}

// TestTemplatePattern: literal text is escaped for the pattern language and
// each varying placeholder becomes the given pattern.
func TestTemplatePattern(t *testing.T) {
	glob := func(s string) string { return strings.NewReplacer("*", `\*`, "[", `\[`).Replace(s) }
	for _, c := range []struct{ tmpl, want string }{
		{"{window_start}.jsonl", "*.jsonl"},
		{"a*[b]{date}-{window_end}.csv", `a\*\[b]*-*.csv`},
		{"plain.jsonl", "plain.jsonl"},
		{"{job}.jsonl", "{job}.jsonl"}, // {job} is substituted before, never a wildcard
	} {
		if got := templatePattern(c.tmpl, glob, "*"); got != c.want {
			t.Errorf("templatePattern(%q) = %q; want %q", c.tmpl, got, c.want)
		}
	}
}

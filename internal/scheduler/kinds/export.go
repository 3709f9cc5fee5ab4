package kinds

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/scheduler"
	"runnerd/internal/store"
)

// Export defaults.
const (
	DefaultFirstWindow = 24 * time.Hour
	DefaultMaxWindow   = 24 * time.Hour
	DefaultOverlap     = time.Hour
)

// Export formats.
const (
	FormatJSONL = "jsonl"
	FormatCSV   = "csv"
)

// fileTimeLayout formats window bounds in file names: sortable and free of
// characters that are awkward in paths (no ':').
const fileTimeLayout = "20060102T150405Z"

// QueryClient is what the export kind needs from the AtomSphere client.
type QueryClient interface {
	Query(ctx context.Context, object string, q atomapi.QueryConfig) iter.Seq2[*atomapi.QueryResult, error]
}

// WatermarkStore keeps an export job's watermark and the windows it wrote.
type WatermarkStore interface {
	JobState(ctx context.Context, job string) (store.JobState, error)
	SetWatermark(ctx context.Context, job string, t time.Time) error
	RecordExportWindow(ctx context.Context, w store.ExportWindow) error
}

// auditBatch is how many AuditLog records an export hands the store at a
// time. Five pages to a transaction cost about half the CPU of one page to
// each (the indexes' last leaves are written once, not five times;
// BENCHMARKS.md); larger batches saved no more and raised the peak RSS.
const auditBatch = 500

// AuditSink stores AuditLog records for runnerd audit.
type AuditSink interface {
	// UpsertAuditJSON stores a page of records as the platform sent them
	// and returns how many were new.
	UpsertAuditJSON(ctx context.Context, records []json.RawMessage) (int, error)
}

// Export copies the records of an object to files, one window at a time.
type Export struct {
	Client QueryClient
	Sink   AuditSink // AuditLog records also go here, page by page; nil: files only
	State  WatermarkStore
	Object string
	// WindowProperty is the date property the window filters on (AuditLog date,
	// ExecutionRecord executionTime, Event eventDate); "" exports everything on
	// every run.
	WindowProperty string
	FirstWindow    time.Duration // how far back the first run reaches (default 24h)
	// Output is the file name template: {job} {window_start} {window_end} {date}
	// (the UTC date of the window start). Times are formatted 20060102T150405Z.
	// For a full export (no WindowProperty) both window placeholders are the
	// time of the snapshot.
	Output    string
	Format    string // FormatJSONL (default) or FormatCSV
	Filters   []atomapi.Expression
	MaxWindow time.Duration // a longer window is split into sub-windows of this size (default 24h)
	// Overlap: ExecutionRecord exports start this long before the watermark, so
	// that executions recorded as INPROCESS are read again once finished (default 1h).
	Overlap  time.Duration
	Priority runnerd.Priority
	Now      func() time.Time
	// IsBudgetStop recognises a budget refusal; nil: errors.Is(err, budget.ErrExhausted).
	IsBudgetStop func(error) bool

	cleanOnce sync.Once // removeStaleTemps, on the first run in this process
}

// ExportDetail is the run's Detail for an export run.
type ExportDetail struct {
	Object   string       `json:"object"`
	From     time.Time    `json:"from"`
	To       time.Time    `json:"to"`
	Full     bool         `json:"full,omitempty"`
	Files    []ExportFile `json:"files"`
	Rows     int          `json:"rows"`
	AuditNew int          `json:"audit_new,omitempty"`
	// StaleRemoved lists the temporary files of an interrupted export that
	// the first run after a crash removed.
	StaleRemoved []string `json:"stale_removed,omitempty"`
}

// ExportFile is one file written by an export run.
type ExportFile struct {
	Path   string    `json:"path"`
	From   time.Time `json:"from"`
	To     time.Time `json:"to"`
	Rows   int       `json:"rows"`
	SHA256 string    `json:"sha256"`
}

type window struct{ from, to time.Time }

// Run implements scheduler.Kind.
func (k *Export) Run(ctx context.Context, rc *scheduler.RunContext) scheduler.Outcome {
	now := clock(k.Now, rc.Now)
	isBudget := k.IsBudgetStop
	if isBudget == nil {
		isBudget = defaultIsBudgetStop
	}
	ctx = callCtx(ctx, rc, k.Priority)
	job := rc.Run.Job
	d := &ExportDetail{Object: k.Object, Files: []ExportFile{}}
	fail := func(err error, retryable bool) scheduler.Outcome {
		return scheduler.Outcome{State: runnerd.StateFailed, Err: err, Retryable: retryable, Detail: toJSON(d)}
	}
	switch k.Format {
	case "", FormatJSONL, FormatCSV:
	default:
		return fail(fmt.Errorf("export: unknown format %q", k.Format), false)
	}
	k.cleanOnce.Do(func() { d.StaleRemoved = k.removeStaleTemps(job) })

	st, err := k.State.JobState(ctx, job)
	if err != nil {
		return fail(fmt.Errorf("export: read watermark: %w", err), true)
	}
	wm := st.Watermark
	backfill := !rc.WindowFrom.IsZero() || !rc.WindowTo.IsZero()
	to := rc.Run.NominalTime
	if to.IsZero() {
		to = now()
	}
	var from time.Time
	switch {
	case backfill:
		from = rc.WindowFrom
		if !rc.WindowTo.IsZero() {
			to = rc.WindowTo
		}
		if from.IsZero() {
			return fail(errors.New("export: a backfill needs a window start"), false)
		}
	case k.WindowProperty == "":
		d.Full = true
	case wm.IsZero():
		from = to.Add(-orDefault(k.FirstWindow, DefaultFirstWindow))
	default:
		from = wm
		if k.Object == "ExecutionRecord" {
			from = wm.Add(-orDefault(k.Overlap, DefaultOverlap))
		}
	}
	// The platform's timestamps have second precision: whole-second bounds keep
	// consecutive windows exactly adjacent.
	from, to = from.UTC().Truncate(time.Second), to.UTC().Truncate(time.Second)
	d.From, d.To = from, to

	var subs []window
	switch {
	case d.Full:
		subs = []window{{to, to}}
	case !from.Before(to):
		return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)} // nothing new
	default:
		subs = split(from, to, orDefault(k.MaxWindow, DefaultMaxWindow))
	}
	paths := make([]string, len(subs))
	seen := map[string]bool{}
	for i, w := range subs {
		paths[i] = k.render(job, w)
		if seen[paths[i]] {
			return fail(fmt.Errorf("export: output %q names the same file %s for two sub-windows; add {window_start}", k.Output, paths[i]), false)
		}
		seen[paths[i]] = true
	}

	for i, w := range subs {
		f, newAudit, err := k.exportWindow(ctx, w, paths[i])
		d.AuditNew += newAudit
		if err != nil {
			err = fmt.Errorf("export %s window %s..%s: %w", k.Object, atomapi.FormatTime(w.from), atomapi.FormatTime(w.to), err)
			if isBudget(err) {
				// A safe point: the files of the completed sub-windows stay, the
				// watermark stays at the last of them.
				return scheduler.Outcome{State: runnerd.StateDeferred, Err: err, Detail: toJSON(d)}
			}
			return readFailure("export", err, func(error) bool { return false }, d)
		}
		d.Files = append(d.Files, f)
		d.Rows += f.Rows
		rec := store.ExportWindow{Job: job, Object: k.Object, From: f.From, To: f.To, Rows: f.Rows, RunID: rc.Run.ID, File: f.Path}
		if err := k.State.RecordExportWindow(ctx, rec); err != nil {
			return fail(fmt.Errorf("export: record window: %w", err), true)
		}
		// The watermark moves only after the file is safely in place, and
		// never backwards. A backfill moves it only when it continues the
		// exported range (starts at or before the watermark).
		advance := w.to.After(wm) && ((wm.IsZero() && !backfill) || (!wm.IsZero() && !w.from.After(wm)))
		if advance {
			if err := k.State.SetWatermark(ctx, job, w.to); err != nil {
				return fail(fmt.Errorf("export: set watermark: %w", err), true)
			}
			wm = w.to
		}
	}
	return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
}

// split cuts [from, to) into consecutive windows of at most size.
func split(from, to time.Time, size time.Duration) []window {
	var out []window
	for s := from; s.Before(to); s = s.Add(size) {
		e := s.Add(size)
		if e.After(to) {
			e = to
		}
		out = append(out, window{s, e})
	}
	return out
}

func (k *Export) render(job string, w window) string {
	return strings.NewReplacer(
		"{job}", job,
		"{window_start}", w.from.Format(fileTimeLayout),
		"{window_end}", w.to.Format(fileTimeLayout),
		"{date}", w.from.Format(time.DateOnly),
	).Replace(k.Output)
}

// filter is the job's filters AND the window [from, to). The window uses
// GREATER_THAN_OR_EQUAL from AND LESS_THAN to, both documented operators, rather
// than BETWEEN: BETWEEN includes both bounds, so a record stamped exactly on a
// boundary second would land in two consecutive windows. Half-open windows tile
// time: every record falls in exactly one.
func (k *Export) filter(w window, full bool) *atomapi.Expression {
	es := append([]atomapi.Expression(nil), k.Filters...)
	if !full {
		es = append(es,
			simple(atomapi.OpGreaterThanOrEqual, k.WindowProperty, atomapi.FormatTime(w.from)),
			simple(atomapi.OpLessThan, k.WindowProperty, atomapi.FormatTime(w.to)))
	}
	return and(es...)
}

// exportWindow writes one sub-window: every page is streamed to a temporary file
// in the target directory as it arrives, which is then synced, renamed to path,
// and the directory synced. On any error the temporary file is removed and
// path is left as it was.
func (k *Export) exportWindow(ctx context.Context, w window, path string) (f ExportFile, newAudit int, err error) {
	f = ExportFile{Path: path, From: w.from, To: w.to}
	if k.WindowProperty == "" {
		f.From = time.Unix(0, 0).UTC() // a full export covers everything up to the snapshot
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return f, 0, err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return f, 0, err
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	h := sha256.New()
	bw := bufio.NewWriterSize(io.MultiWriter(tmp, h), 64<<10)
	out := newRecordWriter(k.Format, k.Object, bw)
	audit := k.Sink != nil && k.Object == "AuditLog"

	// AuditLog records go to the store auditBatch at a time, and all of the
	// window's before its file is in place.
	var pending []json.RawMessage
	flush := func() error {
		if len(pending) == 0 {
			return nil
		}
		n, err := k.Sink.UpsertAuditJSON(ctx, pending)
		if err != nil {
			return fmt.Errorf("store audit records: %w", err)
		}
		newAudit += n
		pending = pending[:0]
		return nil
	}

	q := atomapi.QueryConfig{QueryFilter: atomapi.QueryFilter{Expression: k.filter(w, k.WindowProperty == "")}}
	for page, err := range k.Client.Query(ctx, k.Object, q) {
		if err != nil {
			return f, newAudit, err
		}
		if err := out.page(page.Result); err != nil {
			return f, newAudit, err
		}
		f.Rows += len(page.Result)
		atomapi.Failpoint(atomapi.FailMidExport)
		if audit {
			pending = append(pending, page.Result...)
			if len(pending) >= auditBatch {
				if err := flush(); err != nil {
					return f, newAudit, err
				}
			}
		}
	}
	if err := flush(); err != nil {
		return f, newAudit, err
	}
	if err := out.close(); err != nil {
		return f, newAudit, err
	}
	if err := bw.Flush(); err != nil {
		return f, newAudit, err
	}
	if err := tmp.Chmod(0o640); err != nil {
		return f, newAudit, err
	}
	if err := tmp.Sync(); err != nil {
		return f, newAudit, err
	}
	if err := tmp.Close(); err != nil {
		return f, newAudit, err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return f, newAudit, err
	}
	done = true
	if err := syncDir(dir); err != nil {
		return f, newAudit, err
	}
	f.SHA256 = hex.EncodeToString(h.Sum(nil))
	return f, newAudit, nil
}

// processStart is when this process started. A temporary export file last
// written before it belongs to an earlier process.
var processStart = time.Now()

// placeholder matches the Output placeholders that vary between windows.
var placeholder = regexp.MustCompile(`\{(window_start|window_end|date)\}`)

// removeStaleTemps removes the temporary files that an export of this job
// killed mid-window (kill -9, power loss) left next to its outputs. Such a
// file is never a final file — exportWindow writes to a hidden temporary file
// and renames it only once complete — so it is clutter, not data: nothing
// reads it, and the window it held is exported again because the watermark
// did not move past it.
//
// A file is removed only if all of these hold:
//   - its name is the one exportWindow gives a temporary file,
//     "." + final name + "." + digits + ".tmp", for a final name the job's
//     Output template can produce (with this job's name);
//   - it is a regular file (not a symlink or a directory);
//   - it was last modified before this process started, so it cannot be the
//     temporary file of an export running now in this process (a reload, or
//     overlap = allow); no other process can be exporting, as only one
//     runnerd holds the spender lock.
//
// It runs once per Export and process, on the job's first run: the first run
// after a crash (a clean stop leaves no temporary file). Errors are ignored:
// a file that cannot be removed is left, as before. It returns what it removed.
func (k *Export) removeStaleTemps(job string) []string {
	dirT, baseT := filepath.Split(strings.ReplaceAll(k.Output, "{job}", job))
	globLit := func(s string) string { // escape filepath.Match's metacharacters
		return strings.NewReplacer(`\`, `\\`, "*", `\*`, "?", `\?`, "[", `\[`).Replace(s)
	}
	glob := templatePattern(dirT, globLit, "*") + "." + templatePattern(baseT, globLit, "*") + ".*.tmp"
	// A time placeholder renders as 20060102T150405Z, {date} as 2006-01-02.
	name := regexp.MustCompile(`^\.` + templatePattern(baseT, regexp.QuoteMeta, `(?:[0-9]{8}T[0-9]{6}Z|[0-9]{4}-[0-9]{2}-[0-9]{2})`) + `\.[0-9]+\.tmp$`)
	matches, err := filepath.Glob(glob)
	if err != nil {
		return nil
	}
	var removed []string
	for _, m := range matches {
		if !name.MatchString(filepath.Base(m)) {
			continue
		}
		fi, err := os.Lstat(m)
		if err != nil || !fi.Mode().IsRegular() || !fi.ModTime().Before(processStart) {
			continue
		}
		if os.Remove(m) == nil {
			removed = append(removed, m)
		}
	}
	return removed
}

// templatePattern renders an Output template as a pattern: the literal text
// through lit, each varying placeholder as ph.
func templatePattern(tmpl string, lit func(string) string, ph string) string {
	var b strings.Builder
	last := 0
	for _, loc := range placeholder.FindAllStringIndex(tmpl, -1) {
		b.WriteString(lit(tmpl[last:loc[0]]))
		b.WriteString(ph)
		last = loc[1]
	}
	b.WriteString(lit(tmpl[last:]))
	return b.String()
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

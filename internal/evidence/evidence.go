// Package evidence keeps the evidence of failed executions with their runs:
// after an execute run ends failed with a platform execution, its process log
// (and, where the job asks, its execution artifacts) is fetched from the
// platform and kept as a ZIP under the evidence directory, one directory per
// run.
//
// Fetching is ordinary low-priority work. Every request goes through the
// client, so through the budget gate and the ledger like any other call,
// attributed to the failed run: a refusal (the budget is short, or a
// higher-priority run needs its share) leaves the piece pending with the
// refusal's reason until the time the gate gave. The state of each piece
// lives in the ledger's evidence table, one step (one request) at a time, so
// a restart continues where the last process stopped. A piece is given up,
// with its reason, when the platform cannot give it: the purge horizon has
// passed, the link never became ready, the answer is not a valid ZIP or is
// larger than allowed, the link is on another host (never fetched with the
// credentials), or a privilege is missing.
package evidence

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/budget"
	"runnerd/internal/store"
)

// Defaults of Options.
const (
	DefaultPoll        = 2 * time.Second  // first download poll after a link is made
	DefaultPollMax     = 2 * time.Minute  // the poll interval never grows beyond this
	DefaultNeverReady  = time.Hour        // a link still not ready after this is given up
	DefaultRetry       = time.Minute      // first wait after a transient failure
	DefaultRetryMax    = time.Hour        // the longest wait after transient failures
	DefaultUnreachable = 15 * time.Minute // wait after "the runtime is unavailable" (504)
	MaxLinks           = 5                // links asked for per piece before giving up
	// MaxUncompressed bounds what a ZIP may expand to while it is checked:
	// evidence is checked, not extracted, but a bomb must not be inflated.
	MaxUncompressed = 4 << 30
)

// Client is what fetching needs from the AtomSphere client.
type Client interface {
	ProcessLog(ctx context.Context, executionID, level string) (atomapi.LogDownload, error)
	ExecutionArtifacts(ctx context.Context, executionID string) (atomapi.LogDownload, error)
	Download(ctx context.Context, name, url string, limit int64) (data []byte, ready bool, err error)
}

// Options configure a Fetcher. DB, Client and Dir are required.
type Options struct {
	DB          *store.DB
	Client      Client
	Dir         string        // the evidence directory
	MaxRun      int64         // bytes per run, all its files; 0: 32 MiB
	MaxTotal    int64         // bytes in all; the oldest files are removed for a new one; 0: 1 GiB
	GiveUpAfter time.Duration // after the run ended; 0: 30 days
	Now         func() time.Time
	Logger      *slog.Logger
	// Poll, PollMax, NeverReady, Retry: see the Default constants.
	Poll, PollMax, NeverReady, Retry time.Duration
}

// Fetcher fetches and keeps evidence. Its methods are safe for concurrent use.
type Fetcher struct {
	o    Options
	log  *slog.Logger
	mu   sync.Mutex // one step at a time: the total size is checked and changed by it
	wake chan struct{}
}

// New returns a Fetcher with o's defaults filled in.
func New(o Options) *Fetcher {
	if o.MaxRun <= 0 {
		o.MaxRun = 32 << 20
	}
	if o.MaxTotal <= 0 {
		o.MaxTotal = 1 << 30
	}
	if o.GiveUpAfter <= 0 {
		o.GiveUpAfter = 30 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.Poll, DefaultPoll)
	def(&o.PollMax, DefaultPollMax)
	def(&o.NeverReady, DefaultNeverReady)
	def(&o.Retry, DefaultRetry)
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Fetcher{o: o, log: log, wake: make(chan struct{}, 1)}
}

// Want says which evidence a failed run of a job wants: the log at Level
// ("" or "off": none) and, with Artifacts, the artifacts.
type Want struct {
	Level     string
	Artifacts bool
}

// ExecutionID returns the platform execution of a run's detail, or "".
func ExecutionID(detail string) string {
	var d struct {
		ExecutionID string `json:"execution_id"`
	}
	if detail == "" || json.Unmarshal([]byte(detail), &d) != nil {
		return ""
	}
	return d.ExecutionID
}

// Wants reports whether r is a run whose evidence is fetched: an execute run
// that failed with a platform execution.
func Wants(r runnerd.Run) bool {
	return r.Kind == "execute" && r.State == runnerd.StateFailed && ExecutionID(r.Detail) != ""
}

// Queue records the evidence r wants (nothing when Wants(r) is false or w
// asks for nothing) and wakes the loop. It returns how many pieces were
// added; a piece already recorded is left as it is.
func (f *Fetcher) Queue(ctx context.Context, r runnerd.Run, w Want) (int, error) {
	if !Wants(r) {
		return 0, nil
	}
	exec := ExecutionID(r.Detail)
	ended := r.FinishedAt
	if ended.IsZero() {
		ended = f.o.Now()
	}
	var es []store.Evidence
	if w.Level != "" && w.Level != "off" {
		es = append(es, store.Evidence{RunID: r.ID, Job: r.Job, Kind: store.EvidenceLog, ExecutionID: exec, Level: w.Level, EndedAt: ended})
	}
	if w.Artifacts {
		es = append(es, store.Evidence{RunID: r.ID, Job: r.Job, Kind: store.EvidenceArtifacts, ExecutionID: exec, EndedAt: ended})
	}
	n, err := f.o.DB.QueueEvidence(ctx, es)
	if n > 0 {
		f.Wake()
	}
	return n, err
}

// Wake makes the loop look at the queue now.
func (f *Fetcher) Wake() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

// Reconsider makes every piece the budget deferred due now (the operator
// changed what the budget holds: a job paused, a reload) and wakes the loop.
// The gate decides again; a piece that still does not fit is deferred again.
func (f *Fetcher) Reconsider(ctx context.Context) (int, error) {
	n, err := f.o.DB.ReconsiderDeferredEvidence(ctx, f.o.Now())
	if n > 0 {
		f.Wake()
	}
	return n, err
}

// Loop fetches due evidence until ctx ends: one request per step, soonest
// piece first, sleeping until the next piece is due (or Wake).
func (f *Fetcher) Loop(ctx context.Context) { f.run(ctx, 0) }

// Drain fetches the evidence of one run until none of it is pending or ctx
// ends (`runnerd run` without a daemon). Other runs' pieces are left alone.
func (f *Fetcher) Drain(ctx context.Context, runID int64) error {
	f.run(ctx, runID)
	return ctx.Err()
}

func (f *Fetcher) run(ctx context.Context, only int64) {
	for ctx.Err() == nil {
		var due []store.Evidence
		var err error
		if only != 0 {
			var all []store.Evidence
			all, err = f.o.DB.RunEvidence(ctx, only)
			for _, e := range all {
				if e.State == store.EvidencePending {
					due = append(due, e)
				}
			}
			if err == nil && len(due) == 0 {
				return
			}
		} else {
			due, err = f.o.DB.DueEvidence(ctx, 1)
		}
		wait := time.Minute
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			f.log.Warn("evidence: the queue cannot be read; trying again in a minute", "err", err)
		} else if len(due) > 0 {
			e := due[0]
			for _, d := range due[1:] {
				if d.NextAt.Before(e.NextAt) {
					e = d
				}
			}
			if d := e.NextAt.Sub(f.o.Now()); d > 0 {
				wait = min(d, time.Minute)
			} else {
				f.Step(ctx, e)
				continue
			}
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-f.wake:
		case <-t.C:
		}
		t.Stop()
	}
}

// Step makes one request for pending piece e (or gives it up) and records
// where it stands. It returns the piece as recorded.
func (f *Fetcher) Step(ctx context.Context, e store.Evidence) store.Evidence {
	f.mu.Lock()
	defer f.mu.Unlock()
	now := f.o.Now()
	before := e
	e = f.step(ctx, e, now)
	if ctx.Err() != nil && e.State == store.EvidencePending && e.Reason == before.Reason && e.NextAt.Equal(before.NextAt) {
		return e
	}
	if err := f.o.DB.UpdateEvidence(context.WithoutCancel(ctx), e); err != nil {
		f.log.Error("evidence: could not record progress", "run_id", e.RunID, "kind", e.Kind, "err", err)
	}
	attrs := []any{"job", e.Job, "run_id", e.RunID, "kind", e.Kind, "state", e.State}
	switch {
	case e.State == store.EvidenceKept:
		f.log.Info("evidence: kept", append(attrs, "path", e.Path, "bytes", e.Bytes)...)
	case e.State == store.EvidenceGivenUp:
		f.log.Warn("evidence: given up", append(attrs, "reason", e.Reason)...)
	case e.Reason != before.Reason && strings.HasPrefix(e.Reason, "deferred"):
		f.log.Info("evidence: deferred", append(attrs, "reason", e.Reason, "next", e.NextAt)...)
	}
	return e
}

func (f *Fetcher) step(ctx context.Context, e store.Evidence, now time.Time) store.Evidence {
	if horizon := e.EndedAt.Add(f.o.GiveUpAfter); !now.Before(horizon) {
		return giveUp(e, fmt.Sprintf("the platform purges process logs about %s after the run (it ended %s); give_up_after %s has passed",
			days(f.o.GiveUpAfter), e.EndedAt.UTC().Format(time.RFC3339), f.o.GiveUpAfter))
	}
	ctx = atomapi.WithCallInfo(ctx, atomapi.CallInfo{RunID: e.RunID, Job: e.Job, Priority: runnerd.PriorityLow})
	if e.URL == "" {
		return f.link(ctx, e, now)
	}
	return f.download(ctx, e, now)
}

// link asks the platform for a download link.
func (f *Fetcher) link(ctx context.Context, e store.Evidence, now time.Time) store.Evidence {
	if e.Links >= MaxLinks {
		return giveUp(e, fmt.Sprintf("asked for a download link %d times without getting a file", e.Links))
	}
	e.Links++
	var d atomapi.LogDownload
	var err error
	if e.Kind == store.EvidenceArtifacts {
		d, err = f.o.Client.ExecutionArtifacts(ctx, e.ExecutionID)
	} else {
		d, err = f.o.Client.ProcessLog(ctx, e.ExecutionID, e.Level)
	}
	if err != nil {
		return f.failed(e, err, now)
	}
	if !d.Ready() {
		wait := DefaultUnreachable
		e.NextAt = now.Add(wait)
		e.Reason = fmt.Sprintf("the platform answered statusCode %s (%s): the runtime is not reachable; asking again at %s",
			orText(string(d.StatusCode), "none"), orText(d.Message, "no message"), e.NextAt.UTC().Format(time.RFC3339))
		return e
	}
	e.URL, e.URLAt, e.Polls = d.URL, now, 0
	e.NextAt = now.Add(f.o.Poll)
	e.Reason = "the platform is preparing the file"
	return e
}

// download polls the link once and, when the file is there, checks and keeps it.
func (f *Fetcher) download(ctx context.Context, e store.Evidence, now time.Time) store.Evidence {
	if now.Sub(e.URLAt) >= f.o.NeverReady {
		return giveUp(e, fmt.Sprintf("the platform never made the download ready (%d polls over %s)", e.Polls, now.Sub(e.URLAt).Round(time.Second)))
	}
	limit, err := f.roomInRun(ctx, e)
	if err != nil {
		e.NextAt, e.Reason = now.Add(f.o.Retry), "the run's other evidence cannot be read: "+err.Error()
		return e
	}
	if limit <= 0 {
		return giveUp(e, fmt.Sprintf("the run's other evidence already fills max_run_mb (%s)", size(f.o.MaxRun)))
	}
	e.Polls++
	name := atomapi.OpProcessLogDownload
	if e.Kind == store.EvidenceArtifacts {
		name = atomapi.OpExecutionArtifactsDownload
	}
	data, ready, err := f.o.Client.Download(ctx, name, e.URL, limit)
	switch {
	case errors.Is(err, atomapi.ErrNotFound):
		e.URL, e.URLAt = "", time.Time{}
		e.NextAt, e.Reason = now, "the download link expired (HTTP 404); asking for a new one"
		return e
	case errors.Is(err, atomapi.ErrBodyTooLarge):
		return giveUp(e, fmt.Sprintf("rejected: the file is larger than the %s a run may keep (max_run_mb); nothing was kept", size(limit)))
	case err != nil:
		return f.failed(e, err, now)
	case !ready:
		wait := f.o.Poll
		for i := 1; i < e.Polls && wait < f.o.PollMax; i++ {
			wait = wait * 3 / 2
		}
		e.NextAt, e.Reason = now.Add(min(wait, f.o.PollMax)), fmt.Sprintf("the platform is preparing the file (%d polls)", e.Polls)
		return e
	}
	entries, err := CheckZIP(data)
	if err != nil {
		if e.Links < 3 {
			e.URL, e.URLAt = "", time.Time{}
			e.NextAt, e.Reason = now.Add(f.o.Poll), fmt.Sprintf("the download was rejected (%v); asking for a new link", err)
			return e
		}
		return giveUp(e, fmt.Sprintf("rejected: %v (on %d links); nothing was kept", err, e.Links))
	}
	path, sum, err := f.keep(ctx, e, data)
	if err != nil {
		e.NextAt, e.Reason = now.Add(f.o.Retry), "the file could not be written: "+err.Error()
		return e
	}
	e.State, e.Reason, e.URL = store.EvidenceKept, fmt.Sprintf("%d files in the ZIP", entries), ""
	e.Path, e.Bytes, e.SHA256 = path, int64(len(data)), sum
	return e
}

// failed records an error of a request: a budget refusal defers, a
// permanent refusal gives up, anything else is tried again later.
func (f *Fetcher) failed(e store.Evidence, err error, now time.Time) store.Evidence {
	var refused *budget.RefusedError
	var ae *atomapi.APIError
	switch {
	case errors.As(err, &refused):
		if e.URL == "" {
			e.Links-- // the link was not asked for
		} else {
			e.Polls--
		}
		next := refused.RetryAt
		if !next.After(now) {
			next = now.Add(time.Hour)
		}
		e.NextAt, e.Reason = next, "deferred: "+refused.Error()
		return e
	case errors.Is(err, atomapi.ErrForeignURL):
		return giveUp(e, "the platform's download link is not on its own host, so it is not fetched with the credentials: "+err.Error())
	case errors.As(err, &ae) && ae.Status == 403:
		why := "the user lacks the privilege to view process results"
		if e.Kind == store.EvidenceArtifacts {
			why = "artifacts need the Runtime Management privilege and the account setting \"Enable Download of Execution Artifacts and Worker Logs\""
		}
		return giveUp(e, fmt.Sprintf("refused (HTTP 403: %s): %s", orText(ae.Message, "forbidden"), why))
	case errors.Is(err, atomapi.ErrBadRequest), errors.Is(err, atomapi.ErrDecode) && e.URL == "":
		return giveUp(e, "refused: "+err.Error())
	}
	if e.URL == "" {
		e.Links-- // a link that did not come is asked for again, not counted
	}
	k := max(e.Links+e.Polls, 1)
	wait := f.o.Retry
	for i := 1; i < k && wait < DefaultRetryMax; i++ {
		wait *= 2
	}
	e.NextAt, e.Reason = now.Add(min(wait, DefaultRetryMax)), "retrying after: "+err.Error()
	return e
}

func giveUp(e store.Evidence, why string) store.Evidence {
	e.State, e.Reason, e.URL = store.EvidenceGivenUp, why, ""
	return e
}

// roomInRun is how many bytes e may take: MaxRun less the run's other files.
func (f *Fetcher) roomInRun(ctx context.Context, e store.Evidence) (int64, error) {
	all, err := f.o.DB.RunEvidence(ctx, e.RunID)
	if err != nil {
		return 0, err
	}
	room := f.o.MaxRun
	for _, o := range all {
		if o.ID != e.ID && o.State == store.EvidenceKept {
			room -= o.Bytes
		}
	}
	return room, nil
}

// FileName is the name of a kind's file in the run's directory.
func FileName(kind string) string {
	if kind == store.EvidenceArtifacts {
		return "execution-artifacts.zip"
	}
	return "process-log.zip"
}

// RunDir is the directory of a run's evidence.
func RunDir(dir string, runID int64) string {
	return filepath.Join(dir, "run-"+strconv.FormatInt(runID, 10))
}

// keep makes room within MaxTotal and writes data as e's file, atomically
// (a temporary file synced and renamed): a crash leaves the old state or the
// whole file, never part of one.
func (f *Fetcher) keep(ctx context.Context, e store.Evidence, data []byte) (path, sum string, err error) {
	if err := f.makeRoom(ctx, e.RunID, int64(len(data))); err != nil {
		return "", "", err
	}
	dir := RunDir(f.o.Dir, e.RunID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", "", err
	}
	path = filepath.Join(dir, FileName(e.Kind))
	if err := WriteAtomic(path, data); err != nil {
		return "", "", err
	}
	h := sha256.Sum256(data)
	return path, hex.EncodeToString(h[:]), nil
}

// WriteAtomic writes data to path through a temporary file beside it
// (mode 0600, fsynced, renamed, the directory synced): path holds the old
// content or all of the new, never part of it.
func WriteAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	if err = os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	if d, derr := os.Open(filepath.Dir(path)); derr == nil {
		d.Sync()
		d.Close()
	}
	return nil
}

// makeRoom removes the oldest kept files of other runs until need more
// bytes fit within MaxTotal; each removed piece is recorded as pruned.
func (f *Fetcher) makeRoom(ctx context.Context, runID, need int64) error {
	kept, err := f.o.DB.KeptEvidence(ctx)
	if err != nil {
		return err
	}
	var total int64
	for _, k := range kept {
		total += k.Bytes
	}
	for _, k := range kept {
		if total+need <= f.o.MaxTotal {
			break
		}
		if k.RunID == runID {
			continue
		}
		if err := os.Remove(k.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
		os.Remove(filepath.Dir(k.Path)) // only if empty
		total -= k.Bytes
		k.State, k.Reason = store.EvidencePruned, fmt.Sprintf("removed to stay within max_total_mb (%s) for run %d's evidence", size(f.o.MaxTotal), runID)
		if err := f.o.DB.UpdateEvidence(ctx, k); err != nil {
			return err
		}
		f.log.Info("evidence: removed the oldest file to make room", "run_id", k.RunID, "kind", k.Kind, "bytes", k.Bytes)
	}
	if total+need > f.o.MaxTotal {
		return fmt.Errorf("%s do not fit within max_total_mb (%s)", size(need), size(f.o.MaxTotal))
	}
	return nil
}

// Prune deletes the evidence (rows and files) of runs that ended more than
// retention ago (the ledger's retention), and temporary files a crash left.
func (f *Fetcher) Prune(ctx context.Context, retention time.Duration) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tmps, _ := filepath.Glob(filepath.Join(f.o.Dir, "run-*", ".tmp-*")); len(tmps) > 0 {
		for _, t := range tmps {
			os.Remove(t)
		}
	}
	old, err := f.o.DB.EvidenceEndedBefore(ctx, f.o.Now().Add(-retention))
	if err != nil || len(old) == 0 {
		return 0, err
	}
	ids := make([]int64, 0, len(old))
	for _, e := range old {
		if e.Path != "" {
			if err := os.Remove(e.Path); err != nil && !errors.Is(err, os.ErrNotExist) {
				return 0, err
			}
			os.Remove(filepath.Dir(e.Path))
		}
		ids = append(ids, e.ID)
	}
	return len(ids), f.o.DB.DeleteEvidence(ctx, ids)
}

// CheckZIP checks that data is a whole ZIP whose every entry inflates with
// a matching checksum, and returns the number of entries. A truncated or
// corrupt file is an error that says so.
func CheckZIP(data []byte) (int, error) {
	if len(data) == 0 {
		return 0, errors.New("not a ZIP: the file is empty")
	}
	zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		if bytes.HasPrefix(data, []byte("PK")) {
			return 0, fmt.Errorf("not a valid ZIP (truncated or corrupt: %v; %s received)", err, size(int64(len(data))))
		}
		return 0, fmt.Errorf("not a ZIP (%v; it starts %q)", err, excerpt(data))
	}
	if len(zr.File) == 0 {
		return 0, errors.New("not a valid ZIP: it has no files")
	}
	var total int64
	for _, zf := range zr.File {
		rc, err := zf.Open()
		if err != nil {
			return 0, fmt.Errorf("not a valid ZIP: entry %q: %v", zf.Name, err)
		}
		n, err := io.Copy(io.Discard, io.LimitReader(rc, MaxUncompressed-total+1))
		rc.Close()
		total += n
		if err != nil {
			return 0, fmt.Errorf("not a valid ZIP: entry %q: %v", zf.Name, err)
		}
		if total > MaxUncompressed {
			return 0, fmt.Errorf("rejected: the ZIP expands to more than %s", size(MaxUncompressed))
		}
	}
	return len(zr.File), nil
}

func excerpt(b []byte) string {
	if len(b) > 16 {
		b = b[:16]
	}
	return string(b)
}

func orText(s, def string) string {
	if strings.TrimSpace(s) == "" {
		return def
	}
	return s
}

func days(d time.Duration) string {
	if d%(24*time.Hour) == 0 {
		n := int(d / (24 * time.Hour))
		if n == 1 {
			return "1 day"
		}
		return strconv.Itoa(n) + " days"
	}
	return d.String()
}

// size formats bytes: "32 MiB", "512 KiB", "100 B".
func size(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return strconv.FormatInt(n>>20, 10) + " MiB"
	case n >= 1<<20:
		return strconv.FormatFloat(float64(n)/(1<<20), 'f', 1, 64) + " MiB"
	case n >= 1<<10:
		return strconv.FormatFloat(float64(n)/(1<<10), 'f', 1, 64) + " KiB"
	}
	return strconv.FormatInt(n, 10) + " B"
}

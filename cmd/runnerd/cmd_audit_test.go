package main

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/scheduler"
	"runnerd/internal/scheduler/kinds"
	"runnerd/internal/store"
)

// auditSimNow is the simulator's clock: its 30 days of AuditLog end here.
var auditSimNow = time.Date(2026, 1, 5, 12, 0, 0, 0, time.UTC)

// auditSeed is the seeded store shared by the tests that only read it.
type auditSeed struct {
	dir, conf string
	sim       *atomsim.Server
	url       string
	days      []window // the 30 daily windows of the seeded history
	skipped   int      // day never exported
	failed    int      // day whose export run failed
	logs      []atomapi.AuditLog
}

type window struct{ from, to time.Time }

// Days of the seeded history left out of the store, to show as gaps.
const (
	skippedDay = 10
	failedDay  = 20
)

func (s *auditSeed) stored(a atomapi.AuditLog) bool {
	d := mustTime(a.Date)
	for _, day := range []int{s.skipped, s.failed} {
		if !d.Before(s.days[day].from) && d.Before(s.days[day].to) {
			return false
		}
	}
	return true
}

func mustTime(s string) time.Time {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		panic(err)
	}
	return t.UTC()
}

var (
	seedOnce sync.Once
	seedVal  *auditSeed
	seedErr  error
)

// seededAudit exports the simulator's 25,000-record AuditLog into a store
// with the export kind, one daily window at a time (each a recorded run),
// except day 10 (never exported) and day 20 (its run is recorded as failed
// with its window). Built once per test binary.
func seededAudit(t *testing.T) *auditSeed {
	t.Helper()
	if testing.Short() {
		t.Skip("the 25,000-record audit store is skipped with -short")
	}
	seedOnce.Do(func() { seedVal, seedErr = buildAuditSeed() })
	if seedErr != nil {
		t.Fatal(seedErr)
	}
	return seedVal
}

func buildAuditSeed() (*auditSeed, error) {
	ctx := context.Background()
	dir, err := os.MkdirTemp("", "runnerd-audit-test")
	if err != nil {
		return nil, err
	}
	sim := atomsim.New(atomsim.Options{AuditLogs: 25000, Rate: -1, DailyLimit: -1, Now: func() time.Time { return auditSimNow }})
	srv := httptest.NewServer(sim) // lives as long as the test binary
	s := &auditSeed{dir: dir, sim: sim, url: srv.URL + "/api/rest/v1", skipped: skippedDay, failed: failedDay,
		logs: sim.Data().AuditLogs}
	s.conf = writeAuditConfig(dir, s.url, 100000)
	db, err := store.Open(ctx, filepath.Join(dir, "runnerd.db"), store.Options{Synchronous: "NORMAL"})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	client, err := atomapi.New(atomapi.Config{
		BaseURL: s.url, AccountID: atomsim.DefaultAccount, HTTPClient: srv.Client(), Now: sim.Now,
		Credentials: atomapi.NewCredentials(atomsim.DefaultUser, atomsim.DefaultPassword),
	})
	if err != nil {
		return nil, err
	}
	start := auditSimNow.Add(-30 * 24 * time.Hour)
	for i := range 30 {
		w := window{start.Add(time.Duration(i) * 24 * time.Hour), start.Add(time.Duration(i+1) * 24 * time.Hour)}
		s.days = append(s.days, w)
		if i == skippedDay {
			continue
		}
		run, _, err := db.CreateRun(ctx, runnerd.Run{Job: "audit", Kind: "export", NominalTime: w.to, State: runnerd.StateRunning})
		if err != nil {
			return nil, err
		}
		if i == failedDay {
			d, _ := json.Marshal(kinds.ExportDetail{Object: "AuditLog", From: w.from, To: w.to, Files: []kinds.ExportFile{}})
			run.State, run.Error, run.Detail = runnerd.StateFailed, "export AuditLog: HTTP 500 from the platform", string(d)
			if err := db.UpdateRun(ctx, run); err != nil {
				return nil, err
			}
			continue
		}
		out := exportAudit(ctx, db, client, dir, run, w)
		if out.State != runnerd.StateSucceeded {
			return nil, fmt.Errorf("export day %d: %s: %v", i, out.State, out.Err)
		}
	}
	return s, nil
}

// exportAudit runs the AuditLog export kind over w as a backfill of run.
func exportAudit(ctx context.Context, db *store.DB, client *atomapi.Client, dir string, run runnerd.Run, w window) scheduler.Outcome {
	ex := &kinds.Export{
		Client: client, Sink: db, State: db, Object: "AuditLog", WindowProperty: "date",
		Output: filepath.Join(dir, "exports", "{window_start}-{window_end}.jsonl"), Now: func() time.Time { return auditSimNow },
	}
	out := ex.Run(ctx, &scheduler.RunContext{Run: run, WindowFrom: w.from, WindowTo: w.to, Now: func() time.Time { return auditSimNow }})
	run.State, run.Detail = out.State, out.Detail
	if out.Err != nil {
		run.Error = out.Err.Error()
	}
	if err := db.UpdateRun(ctx, run); err != nil {
		return scheduler.Outcome{State: runnerd.StateFailed, Err: err}
	}
	return out
}

func writeAuditConfig(dir, url string, daily int) string {
	conf := filepath.Join(dir, "jobs.toml")
	os.WriteFile(conf, []byte(fmt.Sprintf(`[account]
id = "sim-account"
url = %q
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = %d
rate = 1000

[store]
path = %q

[[job]]
name = "audit"
kind = "export"
schedule = "@hourly"
object = "AuditLog"
output = %q

[[job]]
name = "orders"
kind = "execute"
schedule = "@hourly"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "atoms"
kind = "export"
schedule = "@daily"
object = "Atom"
output = %q
`, url, daily, filepath.Join(dir, "runnerd.db"), filepath.Join(dir, "exports", "{window_start}.jsonl"),
		filepath.Join(dir, "atoms", "{date}.jsonl"))), 0o644)
	return conf
}

// runAudit runs `runnerd audit ARGS` in-process at auditSimNow.
func runAudit(t *testing.T, conf string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	old := auditNow
	auditNow = func() time.Time { return auditSimNow }
	defer func() { auditNow = old }()
	var out, errb bytes.Buffer
	e := &env{stdout: &out, stderr: &errb, getenv: func(k string) string {
		if k == "RUNNERD_PASSWORD" {
			return "sim-password"
		}
		return ""
	}}
	err = cmdAudit(context.Background(), e, append([]string{"-config", conf}, args...))
	return out.String(), errb.String(), err
}

// auditIDs parses -json output: the document ids, checking that dates never
// increase (newest first) and that every line has the documented fields.
func auditIDs(t *testing.T, out string) []string {
	t.Helper()
	var ids []string
	var last time.Time
	for line := range strings.Lines(out) {
		var j report.Audit
		dec := json.NewDecoder(strings.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&j); err != nil {
			t.Fatalf("-json line %q: %v", line, err)
		}
		d := mustTime(j.Date)
		if !last.IsZero() && d.After(last) {
			t.Fatalf("-json: %s dated %s after %s: not newest first", j.DocumentID, j.Date, report.RFC3339(last))
		}
		last = d
		ids = append(ids, j.DocumentID)
	}
	return ids
}

func hasProp(a atomapi.AuditLog, name, value string) bool {
	return slices.ContainsFunc(a.AuditLogProperty, func(p atomapi.AuditLogProperty) bool {
		return p.Name == name && (value == "" || p.Value == value)
	})
}

// asciiLower folds ASCII letters only, as SQLite's LIKE does.
func asciiLower(s string) string {
	return strings.Map(func(r rune) rune {
		if r >= 'A' && r <= 'Z' {
			return r + 'a' - 'A'
		}
		return r
	}, s)
}

// TestAuditFilters: over the 25,000 seeded records, every filter and shortcut
// returns exactly the records a plain loop over the seed selects (minus the
// two days never stored), newest first.
func TestAuditFilters(t *testing.T) {
	s := seededAudit(t)
	week := auditSimNow.Add(-7 * 24 * time.Hour)
	day5 := s.days[5]
	for _, tc := range []struct {
		name string
		args []string
		want func(a atomapi.AuditLog) bool
	}{
		{"all", nil, func(a atomapi.AuditLog) bool { return true }},
		{"user", []string{"-user", "bob.o'neil@example.com"}, func(a atomapi.AuditLog) bool { return a.UserID == "bob.o'neil@example.com" }},
		{"user non-ASCII", []string{"-user", "henrik.sørensen@example.com"}, func(a atomapi.AuditLog) bool { return a.UserID == "henrik.sørensen@example.com" }},
		{"type", []string{"-type", "as.extensions"}, func(a atomapi.AuditLog) bool { return a.AuditType == "as.extensions" }},
		{"action", []string{"-action", "DETACH"}, func(a atomapi.AuditLog) bool { return a.Action == "DETACH" }},
		{"action lower case", []string{"-action", "detach"}, func(a atomapi.AuditLog) bool { return a.Action == "DETACH" }},
		{"modifier", []string{"-modifier", "SINGLE"}, func(a atomapi.AuditLog) bool { return a.Modifier == "SINGLE" }},
		{"level", []string{"-level", "error"}, func(a atomapi.AuditLog) bool { return a.Level == "ERROR" }},
		{"source", []string{"-source", "MOBILE"}, func(a atomapi.AuditLog) bool { return a.Source == "MOBILE" }},
		{"container", []string{"-container", "atom-prod"}, func(a atomapi.AuditLog) bool { return a.ContainerID == "atom-prod" }},
		{"since relative", []string{"-since", "7d"}, func(a atomapi.AuditLog) bool { return !mustTime(a.Date).Before(week) }},
		{"since until RFC 3339", []string{"-since", report.RFC3339(day5.from), "-until", report.RFC3339(day5.to)}, func(a atomapi.AuditLog) bool {
			d := mustTime(a.Date)
			return !d.Before(day5.from) && d.Before(day5.to)
		}},
		{"until relative", []string{"-until", "36h"}, func(a atomapi.AuditLog) bool {
			return mustTime(a.Date).Before(auditSimNow.Add(-36 * time.Hour))
		}},
		{"property", []string{"-property", "NEW_VALUE"}, func(a atomapi.AuditLog) bool { return hasProp(a, "NEW_VALUE", "") }},
		{"property value", []string{"-property", "ENVIRONMENT_ID=env-prod"}, func(a atomapi.AuditLog) bool { return hasProp(a, "ENVIRONMENT_ID", "env-prod") }},
		{"property value limited", []string{"-property", "ENVIRONMENT_ID=env-prod", "-since", "3d"}, func(a atomapi.AuditLog) bool {
			return hasProp(a, "ENVIRONMENT_ID", "env-prod") && !mustTime(a.Date).Before(auditSimNow.Add(-72*time.Hour))
		}},
		{"text", []string{"-text", "orders sync"}, func(a atomapi.AuditLog) bool { return strings.Contains(asciiLower(a.Message), "orders sync") }},
		{"text quote", []string{"-text", `"db.url"`}, func(a atomapi.AuditLog) bool { return strings.Contains(a.Message, `"db.url"`) }},
		{"text newline", []string{"-text", ":\nevery 5 "}, func(a atomapi.AuditLog) bool { return strings.Contains(a.Message, ":\nevery 5 ") }},
		{"deploys", []string{"-deploys"}, func(a atomapi.AuditLog) bool {
			return a.AuditType == "as.atom.process" && (a.Action == "ATTACH" || a.Action == "DETACH")
		}},
		{"manual runs", []string{"-manual-runs"}, func(a atomapi.AuditLog) bool {
			return a.AuditType == "as.process.manual_execution" && a.Action == "EXECUTE" && a.Modifier == "MANUAL"
		}},
		{"logins", []string{"-logins"}, func(a atomapi.AuditLog) bool {
			return a.AuditType == "account" && a.Action == "ON_ENTRY" && a.Modifier == "SUCCESS"
		}},
		{"schedule changes", []string{"-schedule-changes"}, func(a atomapi.AuditLog) bool {
			return a.AuditType == "as.schedules" && slices.Contains([]string{"UPDATE", "RESUME", "STOP"}, a.Action)
		}},
		{"undeploys to prod by one user this week", []string{"-deploys", "-action", "DETACH", "-property", "ENVIRONMENT_ID=env-prod",
			"-user", "grace.lee@example.com", "-since", "7d"}, func(a atomapi.AuditLog) bool {
			return a.AuditType == "as.atom.process" && a.Action == "DETACH" && hasProp(a, "ENVIRONMENT_ID", "env-prod") &&
				a.UserID == "grace.lee@example.com" && !mustTime(a.Date).Before(week)
		}},
		{"schedule stops of one atom via API", []string{"-schedule-changes", "-action", "STOP", "-container", "atom-test", "-source", "API"},
			func(a atomapi.AuditLog) bool {
				return a.AuditType == "as.schedules" && a.Action == "STOP" && a.ContainerID == "atom-test" && a.Source == "API"
			}},
		{"nobody", []string{"-user", "nobody@example.com"}, func(a atomapi.AuditLog) bool { return false }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var want []string
			for _, a := range s.logs {
				if s.stored(a) && tc.want(a) {
					want = append(want, a.DocumentID)
				}
			}
			out, _, err := runAudit(t, s.conf, append([]string{"-json", "-limit", "0"}, tc.args...)...)
			if err != nil {
				t.Fatalf("audit %v: %v", tc.args, err)
			}
			got := auditIDs(t, out)
			sort.Strings(got)
			sort.Strings(want)
			if !slices.Equal(got, want) {
				t.Errorf("audit %q = %d records; want %d (%s)", tc.args, len(got), len(want), diffIDs(got, want))
			}
			if tc.name != "nobody" && len(want) == 0 {
				t.Errorf("audit %q: the seed has no such record: the case shows nothing", tc.args)
			}
		})
	}
}

func diffIDs(got, want []string) string {
	var extra, missing []string
	for _, g := range got {
		if _, ok := slices.BinarySearch(want, g); !ok {
			extra = append(extra, g)
		}
	}
	for _, w := range want {
		if _, ok := slices.BinarySearch(got, w); !ok {
			missing = append(missing, w)
		}
	}
	return fmt.Sprintf("extra %.5v, missing %.5v", extra, missing)
}

// TestAuditLimit: -limit N gives the N newest; the default is 1000, and a
// cut answer says so.
func TestAuditLimit(t *testing.T) {
	s := seededAudit(t)
	var dates []time.Time
	for _, a := range s.logs {
		if s.stored(a) && a.AuditType == "account" {
			dates = append(dates, mustTime(a.Date))
		}
	}
	slices.SortFunc(dates, func(a, b time.Time) int { return b.Compare(a) })
	for _, tc := range []struct {
		args []string
		n    int
		more bool
	}{
		{[]string{"-limit", "10"}, 10, true},
		{nil, defaultAuditLimit, true},
		{[]string{"-limit", "0"}, len(dates), false},
		{[]string{"-limit", fmt.Sprint(len(dates))}, len(dates), false},
	} {
		out, stderr, err := runAudit(t, s.conf, append([]string{"-json", "-type", "account"}, tc.args...)...)
		if err != nil {
			t.Fatal(err)
		}
		var got []time.Time
		for line := range strings.Lines(out) {
			var j report.Audit
			if err := json.Unmarshal([]byte(line), &j); err != nil {
				t.Fatal(err)
			}
			got = append(got, mustTime(j.Date))
		}
		if !slices.Equal(got, dates[:tc.n]) {
			t.Errorf("audit -type account %v: %d dates, first %v; want the %d newest", tc.args, len(got), first(got), tc.n)
		}
		if strings.Contains(stderr, "more match") != tc.more {
			t.Errorf("audit %v: stderr %q; want a 'more match' note: %v", tc.args, stderr, tc.more)
		}
	}
}

func first(ts []time.Time) any {
	if len(ts) == 0 {
		return nil
	}
	return ts[0]
}

// TestAuditBadFilters: a bad filter is exit 2 with a message naming it; no
// rows is exit 0.
func TestAuditBadFilters(t *testing.T) {
	s := seededAudit(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-level", "LOUD"}, "-level"},
		{[]string{"-source", "FAX"}, "-source"},
		{[]string{"-since", "last tuesday"}, "-since"},
		{[]string{"-until", "5 parsecs"}, "-until"},
		{[]string{"-since", "1d", "-until", "2d"}, "not before"},
		{[]string{"-property", "=env-prod"}, "-property"},
		{[]string{"-limit", "-1"}, "-limit"},
		{[]string{"-deploys", "-logins"}, "choose one shortcut"},
		{[]string{"-deploys", "-type", "account"}, "contradicts"},
		{[]string{"-deploys", "-action", "EXECUTE"}, "contradicts"},
		{[]string{"-manual-runs", "-modifier", "NONE"}, "contradicts"},
		{[]string{"-json", "-csv"}, "choose one"},
		{[]string{"-coverage", "-user", "ann"}, "-coverage"},
		{[]string{"-coverage", "-csv"}, "-coverage"},
		{[]string{"ann@example.com"}, "unexpected argument"},
		{[]string{"-frobnicate"}, "frobnicate"},
	} {
		_, _, err := runAudit(t, s.conf, tc.args...)
		if exitCode(err) != exitUsage || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("audit %q = %v (exit %d); want exit 2 mentioning %q", tc.args, err, exitCode(err), tc.want)
		}
	}
	out, stderr, err := runAudit(t, s.conf, "-user", "nobody@example.com", "-since", report.RFC3339(s.days[8].from), "-until", report.RFC3339(s.days[12].to))
	if err != nil || exitCode(err) != exitOK {
		t.Errorf("audit (no rows) = %v; want exit 0", err)
	}
	if lines := strings.Count(out, "\n"); lines != 1 {
		t.Errorf("audit (no rows) table = %q; want the header only", out)
	}
	// The asked range holds the skipped day: the answer says so.
	gap := report.RFC3339(s.days[skippedDay].from) + " to " + report.RFC3339(s.days[skippedDay].to) + " (never exported)"
	if !strings.Contains(stderr, gap) || !strings.Contains(stderr, "no rows does not mean nothing happened") {
		t.Errorf("audit (no rows) stderr = %q; want a warning naming %s", stderr, gap)
	}
	// A range fully exported: no warning.
	_, stderr, err = runAudit(t, s.conf, "-type", "account", "-since", report.RFC3339(s.days[2].from), "-until", report.RFC3339(s.days[4].to))
	if err != nil || strings.Contains(stderr, "warning") {
		t.Errorf("audit over covered days: %v, stderr %q; want no warning", err, stderr)
	}
}

// TestAuditCoverage: the skipped day shows as a gap, the failed day as failed
// with its run, the rest as covered with the stored records counted; the
// counts add up to what the store holds.
func TestAuditCoverage(t *testing.T) {
	s := seededAudit(t)
	out, _, err := runAudit(t, s.conf, "-coverage", "-json")
	if err != nil {
		t.Fatal(err)
	}
	var got []report.Coverage
	for line := range strings.Lines(out) {
		var c report.Coverage
		if err := json.Unmarshal([]byte(line), &c); err != nil {
			t.Fatal(err)
		}
		got = append(got, c)
	}
	stored := 0
	for _, a := range s.logs {
		if s.stored(a) {
			stored++
		}
	}
	d := s.days
	want := []struct {
		from, to time.Time
		state    string
	}{
		{d[0].from, d[skippedDay].from, engine.CoverageCovered},
		{d[skippedDay].from, d[skippedDay].to, engine.CoverageGap},
		{d[skippedDay+1].from, d[failedDay].from, engine.CoverageCovered},
		{d[failedDay].from, d[failedDay].to, engine.CoverageFailed},
		{d[failedDay+1].from, d[29].to, engine.CoverageCovered},
	}
	if len(got) != len(want) {
		t.Fatalf("audit -coverage = %+v; want %d ranges", got, len(want))
	}
	sum := 0
	for i, w := range want {
		g := got[i]
		if g.From != report.RFC3339(w.from) || g.To != report.RFC3339(w.to) || g.State != w.state {
			t.Errorf("range %d = %s..%s %s; want %s..%s %s", i, g.From, g.To, g.State, report.RFC3339(w.from), report.RFC3339(w.to), w.state)
		}
		sum += g.Records
	}
	if got[3].Records != 0 || got[1].Records != 0 || len(got[3].Runs) != 1 || !strings.Contains(got[3].Runs[0], "HTTP 500") {
		t.Errorf("failed range = %+v; want no records and the failed run", got[3])
	}
	if sum != stored {
		t.Errorf("coverage records add up to %d; want the %d stored", sum, stored)
	}

	// -since/-until clip the report, and a range beyond the exports is a gap.
	out, _, err = runAudit(t, s.conf, "-coverage", "-json", "-since", report.RFC3339(d[25].from), "-until", report.RFC3339(auditSimNow.Add(48*time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf(`{"from":%q,"to":%q,"state":"gap","hours":48,"records":0}`, report.RFC3339(auditSimNow), report.RFC3339(auditSimNow.Add(48*time.Hour))); !strings.Contains(out, want) {
		t.Errorf("audit -coverage beyond the exports = %s; want the tail %s", out, want)
	}
}

// copySeed copies the seeded store into a fresh directory (tests that write
// must not change what the others read) and returns its config.
func copySeed(t *testing.T, s *auditSeed, daily int) string {
	t.Helper()
	dir := t.TempDir()
	db, err := store.Open(context.Background(), filepath.Join(s.dir, "runnerd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Backup(context.Background(), filepath.Join(dir, "runnerd.db")); err != nil {
		t.Fatal(err)
	}
	return writeAuditConfig(dir, s.url, daily)
}

// runCmd runs `runnerd ARGS` in-process.
func runCmd(t *testing.T, args ...string) (string, string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	err := run(context.Background(), args, &out, &errb)
	return out.String(), errb.String(), err
}

// TestAuditBackfillOverlap: `runnerd run audit -from -to` over a window that
// overlaps exported days on both sides of the never-exported day adds exactly
// that day's records; the same backfill again adds none; coverage then shows
// no gap there.
func TestAuditBackfillOverlap(t *testing.T) {
	s := seededAudit(t)
	t.Setenv("RUNNERD_PASSWORD", "sim-password")
	conf := copySeed(t, s, 100000)
	before, _, err := runAudit(t, conf, "-json", "-limit", "0")
	if err != nil {
		t.Fatal(err)
	}
	nBefore := len(auditIDs(t, before))
	gapDay := s.days[skippedDay]
	from, to := gapDay.from.Add(-12*time.Hour), gapDay.to.Add(12*time.Hour)
	inGap := 0
	for _, a := range s.logs {
		if d := mustTime(a.Date); !d.Before(gapDay.from) && d.Before(gapDay.to) {
			inGap++
		}
	}
	for i, wantNew := range []int{inGap, 0} {
		out, stderr, err := runCmd(t, "run", "-config", conf, "-json", "-from", report.RFC3339(from), "-to", report.RFC3339(to), "audit")
		if err != nil {
			t.Fatalf("backfill %d: %v\n%s", i, err, stderr)
		}
		if !strings.Contains(stderr, "backfill audit: AuditLog from "+report.RFC3339(from)) {
			t.Errorf("backfill %d: stderr %q; want the estimate first", i, stderr)
		}
		var r struct {
			State  string             `json:"state"`
			Detail kinds.ExportDetail `json:"detail"`
		}
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("backfill %d: %q: %v", i, out, err)
		}
		if r.State != "succeeded" || r.Detail.AuditNew != wantNew {
			t.Errorf("backfill %d: %s, %d new records (of %d rows); want succeeded, %d new", i, r.State, r.Detail.AuditNew, r.Detail.Rows, wantNew)
		}
		after, _, err := runAudit(t, conf, "-json", "-limit", "0")
		if err != nil {
			t.Fatal(err)
		}
		ids := auditIDs(t, after)
		if len(ids) != nBefore+inGap {
			t.Errorf("backfill %d: %d records stored; want %d + %d", i, len(ids), nBefore, inGap)
		}
		slices.Sort(ids)
		if d := slices.Compact(slices.Clone(ids)); len(d) != len(ids) {
			t.Errorf("backfill %d: %d duplicate records", i, len(ids)-len(d))
		}
	}
	out, _, err := runAudit(t, conf, "-coverage", "-json")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, `"state":"gap"`) || strings.Count(out, `"state":"failed"`) != 1 {
		t.Errorf("coverage after the backfill = %s; want no gap and the one failed day", out)
	}
}

// TestBackfillEstimate checks the estimate against the job's recorded windows.
func TestBackfillEstimate(t *testing.T) {
	t0 := auditSimNow
	var ws []store.ExportWindow
	for i := range 60 { // 60 hourly windows: 48 latest of "audit" hold 35 rows each
		ws = append(ws, store.ExportWindow{Job: "audit", From: t0.Add(time.Duration(i) * time.Hour), To: t0.Add(time.Duration(i+1) * time.Hour), Rows: map[bool]int{true: 1000, false: 35}[i < 12]})
		ws = append(ws, store.ExportWindow{Job: "other", From: t0.Add(time.Duration(i) * time.Hour), To: t0.Add(time.Duration(i+1) * time.Hour), Rows: 99999})
	}
	for _, tc := range []struct {
		name      string
		ws        []store.ExportWindow
		from, to  time.Time
		windows   int
		calls     int
		basisHint string
	}{
		// 48 h: two 24 h sub-windows of 35×24 = 840 records: 9 pages each.
		{"two days", ws, t0, t0.Add(48 * time.Hour), 2, 18, "35.0 records/hour over the job's last 48"},
		// 30 h: 840 records (9 pages), then 6 h = 210 records (3 pages).
		{"uneven", ws, t0, t0.Add(30 * time.Hour), 2, 12, "35.0"},
		// A minute: less than a record, still one call.
		{"tiny", ws, t0, t0.Add(time.Minute), 1, 1, "35.0"},
		{"no history", nil, t0, t0.Add(72 * time.Hour), 3, 15, "export default of 5 pages"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := engine.EstimateBackfill(tc.ws, "audit", tc.from, tc.to)
			if e.Windows != tc.windows || e.Calls != tc.calls || !strings.Contains(e.Basis, tc.basisHint) {
				t.Errorf("EstimateBackfill(%s) = %+v; want %d windows, %d calls, basis ~%q", tc.name, e, tc.windows, tc.calls, tc.basisHint)
			}
		})
	}
}

// TestBackfillThreshold: above the threshold the backfill needs -yes and
// sends nothing without it; -from/-to on a job that is not a windowed export
// is a usage error.
func TestBackfillThreshold(t *testing.T) {
	sim := atomsim.New(atomsim.Options{AuditLogs: 500, Rate: -1, DailyLimit: -1, Now: func() time.Time { return auditSimNow }})
	srv := httptest.NewServer(sim)
	defer srv.Close()
	t.Setenv("RUNNERD_PASSWORD", "sim-password")
	dir := t.TempDir()
	conf := writeAuditConfig(dir, srv.URL+"/api/rest/v1", 1000) // 900 remaining after the default reserve: threshold 90
	from, to := report.RFC3339(auditSimNow.Add(-30*24*time.Hour)), report.RFC3339(auditSimNow)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-from", from, "-to", to, "audit"}, "estimated at 150 calls, above the threshold of 90"}, // 30 windows × 5 (no history)
		{[]string{"-from", "2h", "-max-calls", "1", "audit"}, "above the threshold of 1"},
		{[]string{"-from", from, "orders"}, "execute job"},
		{[]string{"-from", from, "atoms"}, "no window_property"},
		{[]string{"-from", from, "nosuchjob"}, "no job"},
		{[]string{"-from", from, "-max-calls", "-3", "audit"}, "-max-calls"},
	} {
		_, stderr, err := runCmd(t, append([]string{"run", "-config", conf}, tc.args...)...)
		if exitCode(err) != exitUsage || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("run %q = %v (exit %d), stderr %q; want exit 2 mentioning %q", tc.args, err, exitCode(err), stderr, tc.want)
		}
	}
	if n := len(sim.Requests()); n != 0 {
		t.Errorf("the simulator got %d requests; want none before -yes", n)
	}
	out, stderr, err := runCmd(t, "run", "-config", conf, "-json", "-from", report.RFC3339(auditSimNow.Add(-2*time.Hour)), "-to", report.RFC3339(auditSimNow), "-max-calls", "1", "-yes", "audit")
	if err != nil || !strings.Contains(out, `"state":"succeeded"`) || !strings.Contains(stderr, "≈ 5 calls") {
		t.Errorf("run -yes = %v, %q, stderr %q; want succeeded after an estimate of 5 calls", err, out, stderr)
	}
	queries := 0
	for _, r := range sim.Requests() {
		if strings.Contains(r.Path, "AuditLog/query") {
			queries++
		}
	}
	if queries == 0 {
		t.Errorf("run -yes: the simulator got no AuditLog query")
	}
}

// trickyAudit is a small store of hand-made records whose messages and
// properties hold quotes, commas, newlines, tabs and non-ASCII text, with two
// recorded windows and a gap between them. Returns the config and the
// records, newest first.
func trickyAudit(t *testing.T) (string, []store.AuditRecord) {
	t.Helper()
	dir := t.TempDir()
	conf := writeAuditConfig(dir, "http://127.0.0.1:1/api/rest/v1", 1000)
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "runnerd.db"), store.Options{Now: func() time.Time { return auditSimNow }})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	at := func(h int) time.Time { return auditSimNow.Add(time.Duration(-h) * time.Hour) }
	recs := []store.AuditRecord{
		{DocumentID: "doc-5", Date: at(1), UserID: "ann@example.com", Type: "as.environment", Action: "UPDATE", Modifier: "NONE",
			Level: "INFO", Source: "UI", Message: "Environment \"Prod\", renamed,\nthen \"re-renamed\"",
			Properties: []store.AuditProperty{{Name: "NEW_VALUE", Value: `Prod, "new"`, PreviousValue: "Prod\nold"}, {Name: "ENVIRONMENT_ID", Value: "env-prod"}}},
		{DocumentID: "doc-4", Date: at(2), UserID: "henrik.sørensen@example.com", Type: "account", Action: "ON_ENTRY", Modifier: "SUCCESS",
			Level: "INFO", Source: "API", Message: "=HYPERLINK(\"x\")\tand a tab"},
		{DocumentID: "doc-3", Date: at(3), UserID: "bob.o'neil@example.com", Type: "as.schedules", Action: "STOP", Modifier: "ALL",
			Level: "WARNING", Source: "UI", ContainerID: "atom-prod", Message: "Schedule of Orders Sync changed:\nevery 5 minutes, Mon-Fri"},
		{DocumentID: "doc-2", Date: at(26), Type: "as.process.manual_execution", Action: "EXECUTE", Modifier: "MANUAL", ContainerID: "atom-test",
			Message: "", Properties: []store.AuditProperty{{Name: "PROCESS_ID", Value: "proc-orders"}}},
		{DocumentID: "doc-1", Date: at(27), UserID: "eve@example.com", Type: "as.atom.process", Action: "ATTACH", Modifier: "NONE",
			Level: "ERROR", Source: "INTERNAL", ContainerID: "atom-test", Message: `a "quoted" message, with commas`},
	}
	if _, err := db.UpsertAudit(ctx, recs); err != nil {
		t.Fatal(err)
	}
	for _, w := range []window{{at(30), at(24)}, {at(6), at(0)}} {
		if err := db.RecordExportWindow(ctx, store.ExportWindow{Job: "audit", Object: "AuditLog", From: w.from, To: w.to, Rows: 2}); err != nil {
			t.Fatal(err)
		}
	}
	return conf, recs
}

// TestAuditCSV: -csv parses with encoding/csv into exactly the stored fields,
// quotes, commas and newlines included; properties are a JSON array.
func TestAuditCSV(t *testing.T) {
	conf, recs := trickyAudit(t)
	out, _, err := runAudit(t, conf, "-csv")
	if err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(strings.NewReader(out))
	rows, err := r.ReadAll()
	if err != nil {
		t.Fatalf("csv.ReadAll(%q) = %v", out, err)
	}
	if len(rows) != len(recs)+1 || !slices.Equal(rows[0], report.AuditCSVHeader) {
		t.Fatalf("-csv = %d rows, header %q; want %d and %q", len(rows), rows[0], len(recs)+1, report.AuditCSVHeader)
	}
	for i, rec := range recs {
		var props []report.AuditProperty
		row := rows[i+1]
		if err := json.Unmarshal([]byte(row[10]), &props); err != nil {
			t.Fatalf("row %d properties %q: %v", i, row[10], err)
		}
		want := []string{rec.DocumentID, report.RFC3339(rec.Date), rec.UserID, rec.Type, rec.Action, rec.Modifier, rec.Level, rec.Source, rec.ContainerID, rec.Message}
		if !slices.Equal(row[:10], want) {
			t.Errorf("row %d = %q; want %q", i, row[:10], want)
		}
		if len(props) != len(rec.Properties) {
			t.Errorf("row %d properties = %+v; want %+v", i, props, rec.Properties)
		}
		for j, p := range rec.Properties {
			if j < len(props) && (props[j] != report.AuditProperty{Name: p.Name, Value: p.Value, PreviousValue: p.PreviousValue}) {
				t.Errorf("row %d property %d = %+v; want %+v", i, j, props[j], p)
			}
		}
	}
}

// TestAuditGolden compares the table outputs with testdata/audit/*.golden
// (go test -run TestAuditGolden -update rewrites them).
func TestAuditGolden(t *testing.T) {
	conf, _ := trickyAudit(t)
	for _, tc := range []struct {
		name string
		args []string
	}{
		{"table", nil},
		{"table-deploys", []string{"-deploys"}},
		{"table-empty", []string{"-user", "nobody@example.com"}},
		{"coverage", []string{"-coverage"}},
		{"coverage-since", []string{"-coverage", "-since", "2d"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, err := runAudit(t, conf, tc.args...)
			if err != nil {
				t.Fatal(err)
			}
			got := "$ runnerd audit " + strings.Join(tc.args, " ") + "\n" + out
			if stderr != "" {
				got += "-- stderr --\n" + stderr
			}
			path := filepath.Join("testdata", "audit", tc.name+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("audit %q =\n%s\nwant (%s)\n%s", tc.args, got, path, want)
			}
		})
	}
}

package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"runnerd/internal/engine"
	"runnerd/internal/store"
)

// auditNow is the audit command's clock (relative -since/-until, "now" in
// the coverage report); tests replace it.
var auditNow = time.Now

// defaultAuditLimit is -limit's default: the newest 1000 records.
const defaultAuditLimit = 1000

// auditShortcut is a named question: a type and the actions (any of) and
// modifier it maps to (atomsphere-api.md 4.2).
type auditShortcut struct {
	name     string
	typ      string
	actions  []string
	modifier string // "" = any
	help     string
}

// auditShortcuts are the named questions. -deploys: 4.2 documents
// as.atom.process ATTACH/DETACH as deploy/undeploy, and a packaged deployment
// (DeployedPackage) is logged the same way (the record carries the
// ENVIRONMENT_ID and VERSION_STRING of the package); 4.2 lists no other type
// for deployments. as.packaged.component DELETE/RESTORE is a package's own
// life cycle, not a deployment, so it is not included (-type
// as.packaged.component asks for it).
var auditShortcuts = []auditShortcut{
	{"deploys", "as.atom.process", []string{"ATTACH", "DETACH"}, "",
		"deployments and undeployments, packaged ones included: type as.atom.process, action ATTACH or DETACH, any modifier"},
	{"manual-runs", "as.process.manual_execution", []string{"EXECUTE"}, "MANUAL",
		"processes run by hand: type as.process.manual_execution, action EXECUTE, modifier MANUAL"},
	{"logins", "account", []string{"ON_ENTRY"}, "SUCCESS",
		"sign-ins and account switches: type account, action ON_ENTRY, modifier SUCCESS"},
	{"schedule-changes", "as.schedules", []string{"UPDATE", "RESUME", "STOP"}, "",
		"schedule changes: type as.schedules, action UPDATE, RESUME or STOP, any modifier (NONE, ALL, SINGLE)"},
}

// Documented enums of AuditLog (atomsphere-api.md 4.2).
var (
	auditLevels  = []string{"DEBUG", "ERROR", "INFO", "WARNING"}
	auditSources = []string{"API", "INTERNAL", "MOBILE", "UI", "UNKNOWN"}
)

// auditQuery is the command line of runnerd audit before it becomes a filter.
type auditQuery struct {
	user, typ, action, modifier, level, source, container string
	since, until, property, text                          string
	limit                                                 int
	shortcuts                                             map[string]*bool
}

// filter checks q and turns it into a store filter (newest first, Limit as
// given). Every problem is a usage error naming the flag.
func (q *auditQuery) filter(now time.Time) (store.AuditFilter, error) {
	f := store.AuditFilter{
		UserID: q.user, Type: q.typ, Action: strings.ToUpper(q.action), Modifier: strings.ToUpper(q.modifier),
		Level: strings.ToUpper(q.level), Source: strings.ToUpper(q.source), ContainerID: q.container,
		Text: q.text, Newest: true, Limit: q.limit,
	}
	if f.Level != "" && !slices.Contains(auditLevels, f.Level) {
		return f, usagef("audit: -level %q: want one of %s", q.level, strings.Join(auditLevels, ", "))
	}
	if f.Source != "" && !slices.Contains(auditSources, f.Source) {
		return f, usagef("audit: -source %q: want one of %s", q.source, strings.Join(auditSources, ", "))
	}
	if q.limit < 0 {
		return f, usagef("audit: -limit %d: want 0 (all) or more", q.limit)
	}
	var err error
	if f.Since, err = parseSince(q.since, now); err != nil {
		return f, usagef("audit: -since: %v", err)
	}
	if f.Until, err = parseSince(q.until, now); err != nil {
		return f, usagef("audit: -until: %v", err)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, usagef("audit: -since %s is not before -until %s", rfc3339(f.Since), rfc3339(f.Until))
	}
	if q.property != "" {
		name, value, _ := strings.Cut(q.property, "=")
		if name == "" {
			return f, usagef("audit: -property %q: want NAME or NAME=VALUE", q.property)
		}
		f.Property, f.PropertyValue = name, value
	}
	var chosen []string
	for _, s := range auditShortcuts {
		if p := q.shortcuts[s.name]; p != nil && *p {
			chosen = append(chosen, "-"+s.name)
		}
	}
	if len(chosen) > 1 {
		return f, usagef("audit: %s: choose one shortcut", strings.Join(chosen, " and "))
	}
	for _, s := range auditShortcuts {
		if p := q.shortcuts[s.name]; p == nil || !*p {
			continue
		}
		if f.Type != "" && f.Type != s.typ {
			return f, usagef("audit: -%s selects type %s; -type %s contradicts it", s.name, s.typ, f.Type)
		}
		f.Type = s.typ
		if f.Action != "" && !slices.Contains(s.actions, f.Action) {
			return f, usagef("audit: -%s selects action %s; -action %s contradicts it", s.name, strings.Join(s.actions, " or "), f.Action)
		}
		if f.Action == "" {
			f.Actions = s.actions
		}
		if s.modifier != "" {
			if f.Modifier != "" && f.Modifier != s.modifier {
				return f, usagef("audit: -%s selects modifier %s; -modifier %s contradicts it", s.name, s.modifier, f.Modifier)
			}
			f.Modifier = s.modifier
		}
	}
	return f, nil
}

// hasFilter reports whether anything but the limit narrows the query.
func (q *auditQuery) hasFilter() bool {
	for _, s := range []string{q.user, q.typ, q.action, q.modifier, q.level, q.source, q.container, q.since, q.until, q.property, q.text} {
		if s != "" {
			return true
		}
	}
	for _, p := range q.shortcuts {
		if *p {
			return true
		}
	}
	return false
}

func cmdAudit(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "audit", &c, true)
	q := auditQuery{shortcuts: map[string]*bool{}}
	fs.StringVar(&q.user, "user", "", "only records of this user `id` (e-mail)")
	fs.StringVar(&q.typ, "type", "", "only records of this `type` (as.atom.process, account, …)")
	fs.StringVar(&q.action, "action", "", "only records with this `action` (ATTACH, EXECUTE, …; case-insensitive)")
	fs.StringVar(&q.modifier, "modifier", "", "only records with this `modifier` (NONE, MANUAL, …; case-insensitive)")
	fs.StringVar(&q.level, "level", "", "only records of this `level`: "+strings.Join(auditLevels, ", "))
	fs.StringVar(&q.source, "source", "", "only records from this `source`: "+strings.Join(auditSources, ", "))
	fs.StringVar(&q.container, "container", "", "only records of this container (runtime) `id`")
	fs.StringVar(&q.since, "since", "", "only records at or after `T` (RFC 3339, a date, or an age such as 36h, 7d)")
	fs.StringVar(&q.until, "until", "", "only records before `T` (RFC 3339, a date, or an age such as 36h, 7d)")
	fs.StringVar(&q.property, "property", "", "only records having the property `NAME[=VALUE]` (e.g. ENVIRONMENT_ID=env-prod)")
	fs.StringVar(&q.text, "text", "", "only records whose message contains `S` (ASCII letters case-insensitive)")
	fs.IntVar(&q.limit, "limit", defaultAuditLimit, "at most `N` records, the newest (0 = all)")
	asCSV := fs.Bool("csv", false, "print CSV with a header")
	coverage := fs.Bool("coverage", false, "show which time ranges the local store holds and where the gaps are")
	for _, s := range auditShortcuts {
		q.shortcuts[s.name] = fs.Bool(s.name, false, s.help)
	}
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: runnerd audit [filters] [-json | -csv] [-limit N]
       runnerd audit -coverage [-since T] [-until T] [-json]

Queries the AuditLog records that AuditLog export jobs stored in the local
database: no API calls. Filters are ANDed; records are printed newest first.
An empty answer is not proof that nothing happened: see -coverage, and the
warning printed when the asked range was not (fully) exported.

`)
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("audit: unexpected argument %q (filters are flags, e.g. -user %s)", pos[0], pos[0])
	}
	if c.json && *asCSV {
		return usagef("audit: -json and -csv: choose one")
	}
	now := auditNow().UTC()
	f, err := q.filter(now)
	if err != nil {
		return err
	}
	if *coverage {
		if *asCSV {
			return usagef("audit: -coverage prints a table or -json, not -csv")
		}
		rest := f
		rest.Since, rest.Until = time.Time{}, time.Time{}
		if filters(rest) {
			return usagef("audit: -coverage takes only -since and -until (coverage is per time range, not per user or type)")
		}
	}
	cfg, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if *coverage {
		cov, err := engine.LoadAuditCoverage(ctx, db, cfg)
		if err != nil {
			return err
		}
		return writeCoverage(ctx, e, db, cov, f.Since, f.Until, now, c.json)
	}

	f.Limit = q.limit
	if q.limit > 0 {
		f.Limit = q.limit + 1 // one more tells whether there are more
	}
	recs, err := db.ListAudit(ctx, f)
	if err != nil {
		return err
	}
	more := q.limit > 0 && len(recs) > q.limit
	if more {
		recs = recs[:q.limit]
	}
	switch {
	case c.json:
		for _, r := range recs {
			if err := jsonLines(e.stdout, toAuditJSON(r)); err != nil {
				return err
			}
		}
	case *asCSV:
		if err := writeAuditCSV(e.stdout, recs); err != nil {
			return err
		}
	default:
		if err := writeAuditTable(e.stdout, recs); err != nil {
			return err
		}
	}
	if more {
		fmt.Fprintf(e.stderr, "runnerd audit: showing the newest %d records; more match (-limit 0 for all)\n", q.limit)
	}
	if len(recs) == 0 || q.hasFilter() {
		cov, err := engine.LoadAuditCoverage(ctx, db, cfg)
		if err != nil {
			return err
		}
		warnCoverage(e.stderr, cov, f.Since, f.Until, now, len(recs) == 0)
	}
	return nil
}

// filters reports whether f selects records (ordering and limit aside).
func filters(f store.AuditFilter) bool {
	return !(f.UserID == "" && f.Type == "" && f.Action == "" && f.Modifier == "" && f.Level == "" && f.Source == "" &&
		f.ContainerID == "" && len(f.Actions) == 0 && f.Property == "" && f.Text == "" && f.Since.IsZero() && f.Until.IsZero())
}

// auditJSON is the -json shape of an audit record (snake_case).
type auditJSON struct {
	DocumentID  string              `json:"document_id"`
	Date        string              `json:"date"`
	UserID      string              `json:"user_id"`
	Type        string              `json:"type"`
	Action      string              `json:"action"`
	Modifier    string              `json:"modifier"`
	Level       string              `json:"level"`
	Source      string              `json:"source"`
	ContainerID string              `json:"container_id"`
	Message     string              `json:"message"`
	Properties  []auditPropertyJSON `json:"properties"`
}

type auditPropertyJSON struct {
	Name          string `json:"name"`
	Value         string `json:"value"`
	PreviousValue string `json:"previous_value"`
}

func toAuditJSON(r store.AuditRecord) auditJSON {
	j := auditJSON{
		DocumentID: r.DocumentID, Date: rfc3339(r.Date), UserID: r.UserID, Type: r.Type, Action: r.Action,
		Modifier: r.Modifier, Level: r.Level, Source: r.Source, ContainerID: r.ContainerID, Message: r.Message,
		Properties: []auditPropertyJSON{},
	}
	for _, p := range r.Properties {
		j.Properties = append(j.Properties, auditPropertyJSON{Name: p.Name, Value: p.Value, PreviousValue: p.PreviousValue})
	}
	return j
}

// auditCSVHeader are the -csv columns: the -json fields, properties as a JSON
// array in one column (lossless; a CSV parser unquotes it).
var auditCSVHeader = []string{"document_id", "date", "user_id", "type", "action", "modifier", "level", "source",
	"container_id", "message", "properties"}

func writeAuditCSV(w io.Writer, recs []store.AuditRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(auditCSVHeader); err != nil {
		return err
	}
	for _, r := range recs {
		j := toAuditJSON(r)
		props, err := json.Marshal(j.Properties)
		if err != nil {
			return err
		}
		if err := cw.Write([]string{j.DocumentID, j.Date, j.UserID, j.Type, j.Action, j.Modifier, j.Level, j.Source,
			j.ContainerID, j.Message, string(props)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func writeAuditTable(w io.Writer, recs []store.AuditRecord) error {
	t := newTable(w, "DATE", "USER", "TYPE", "ACTION", "MODIFIER", "LEVEL", "SOURCE", "CONTAINER", "MESSAGE", "PROPERTIES")
	for _, r := range recs {
		var props []string
		for _, p := range r.Properties {
			s := p.Name + "=" + p.Value
			if p.PreviousValue != "" {
				s += " (was " + p.PreviousValue + ")"
			}
			props = append(props, s)
		}
		t.row(shortTime(r.Date), dash(r.UserID), dash(r.Type), dash(r.Action), dash(r.Modifier), dash(r.Level),
			dash(r.Source), dash(r.ContainerID), dash(r.Message), dash(strings.Join(props, "; ")))
	}
	return t.flush()
}

// coverageJSON is a -coverage -json line.
type coverageJSON struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	State   string   `json:"state"`
	Hours   float64  `json:"hours"`
	Records int      `json:"records"`
	Jobs    []string `json:"jobs,omitempty"`
	Runs    []string `json:"runs,omitempty"`
}

func writeCoverage(ctx context.Context, e *env, db *store.DB, cov engine.AuditCoverage, since, until, now time.Time, asJSON bool) error {
	if !since.IsZero() && until.IsZero() {
		until = now
	}
	rs := cov.Ranges(since, until)
	for i := range rs {
		n, err := db.CountAudit(ctx, store.AuditFilter{Since: rs[i].From, Until: rs[i].To})
		if err != nil {
			return err
		}
		rs[i].Records = n
	}
	if asJSON {
		for _, r := range rs {
			if err := jsonLines(e.stdout, coverageJSON{From: rfc3339(r.From), To: rfc3339(r.To), State: r.State,
				Hours: r.To.Sub(r.From).Hours(), Records: r.Records, Jobs: r.Jobs, Runs: r.Runs}); err != nil {
				return err
			}
		}
		return nil
	}
	t := newTable(e.stdout, "FROM", "TO", "STATE", "HOURS", "RECORDS", "JOBS/RUNS")
	gaps := 0
	for _, r := range rs {
		who := strings.Join(r.Jobs, ", ")
		switch r.State {
		case engine.CoverageGap:
			who, gaps = "never exported", gaps+1
		case engine.CoverageFailed:
			who, gaps = strings.Join(r.Runs, "; "), gaps+1
		}
		t.row(shortTime(r.From), shortTime(r.To), r.State, strconv.FormatFloat(r.To.Sub(r.From).Hours(), 'f', -1, 64),
			strconv.Itoa(r.Records), who)
	}
	if err := t.flush(); err != nil {
		return err
	}
	if len(rs) == 0 {
		fmt.Fprintln(e.stdout, "no AuditLog export window is recorded: the local store answers nothing with certainty")
		return nil
	}
	last := rs[len(rs)-1].To
	for _, r := range rs {
		if r.State == engine.CoverageCovered {
			last = r.To
		}
	}
	fmt.Fprintf(e.stdout, "%d gap(s); the latest export ends at %s", gaps, rfc3339(last))
	if now.After(last) {
		fmt.Fprintf(e.stdout, " (%s ago)", now.Sub(last).Round(time.Minute))
	}
	fmt.Fprintln(e.stdout)
	for _, s := range cov.Filtered {
		fmt.Fprintf(e.stdout, "note: %s: its windows cover only those\n", s)
	}
	return nil
}

// warnCoverage tells on w which parts of [since, until) the local store does
// not cover (until defaults to now; since to the first export), so that no
// rows is not read as nothing happened.
func warnCoverage(w io.Writer, cov engine.AuditCoverage, since, until, now time.Time, empty bool) {
	if until.IsZero() {
		until = now
	}
	rs := cov.Ranges(since, until)
	if len(rs) == 0 {
		fmt.Fprintln(w, "runnerd audit: warning: no AuditLog export window is recorded: the local store may hold nothing of this range")
		return
	}
	var last time.Time // the end of the latest covered range
	for _, r := range rs {
		if r.State == engine.CoverageCovered {
			last = r.To
		}
	}
	var holes []string
	for _, r := range rs {
		if r.State == engine.CoverageCovered {
			continue
		}
		why := "never exported"
		switch {
		case r.State == engine.CoverageFailed:
			why = "export failed"
		case !last.IsZero() && !r.From.Before(last):
			why = "not exported yet"
		}
		holes = append(holes, fmt.Sprintf("%s to %s (%s)", rfc3339(r.From), rfc3339(r.To), why))
	}
	if len(holes) == 0 {
		return
	}
	what := "the answer may be incomplete"
	if empty {
		what = "no rows does not mean nothing happened"
	}
	fmt.Fprintf(w, "runnerd audit: warning: not covered locally: %s; %s (runnerd audit -coverage; runnerd run JOB -from T -to T backfills)\n",
		strings.Join(holes, ", "), what)
}

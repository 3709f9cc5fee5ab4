package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"runnerd/internal/audit"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/store"
	"runnerd/internal/timespec"
)

// auditNow is the audit command's clock (relative -since/-until, "now" in
// the coverage report); tests replace it.
var auditNow = time.Now

// defaultAuditLimit is -limit's default: the newest 1000 records.
const defaultAuditLimit = 1000

// auditFlags is the command line of runnerd audit before it becomes an
// audit.Query (the times are still text).
type auditFlags struct {
	audit.Query
	since, until string
	shortcuts    map[string]*bool
}

// query parses the times and the chosen shortcuts into q.Query.
func (q *auditFlags) query(now time.Time) (audit.Query, error) {
	var err error
	if q.Since, err = timespec.Parse(q.since, now); err != nil {
		return q.Query, usagef("audit: -since: %v", err)
	}
	if q.Until, err = timespec.Parse(q.until, now); err != nil {
		return q.Query, usagef("audit: -until: %v", err)
	}
	q.Shortcuts = nil
	for _, s := range audit.Shortcuts {
		if *q.shortcuts[s.Name] {
			q.Shortcuts = append(q.Shortcuts, s.Name)
		}
	}
	return q.Query, nil
}

func cmdAudit(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "audit", &c, true)
	q := auditFlags{shortcuts: map[string]*bool{}}
	fs.StringVar(&q.User, "user", "", "only records of this user `id` (e-mail)")
	fs.StringVar(&q.Type, "type", "", "only records of this `type` (as.atom.process, account, …)")
	fs.StringVar(&q.Action, "action", "", "only records with this `action` (ATTACH, EXECUTE, …; case-insensitive)")
	fs.StringVar(&q.Modifier, "modifier", "", "only records with this `modifier` (NONE, MANUAL, …; case-insensitive)")
	fs.StringVar(&q.Level, "level", "", "only records of this `level`: "+strings.Join(audit.Levels, ", "))
	fs.StringVar(&q.Source, "source", "", "only records from this `source`: "+strings.Join(audit.Sources, ", "))
	fs.StringVar(&q.Container, "container", "", "only records of this container (runtime) `id`")
	fs.StringVar(&q.since, "since", "", "only records at or after `T` (RFC 3339, a date, or an age such as 36h, 7d)")
	fs.StringVar(&q.until, "until", "", "only records before `T` (RFC 3339, a date, or an age such as 36h, 7d)")
	fs.StringVar(&q.Property, "property", "", "only records having the property `NAME[=VALUE]` (e.g. ENVIRONMENT_ID=env-prod)")
	fs.StringVar(&q.Text, "text", "", "only records whose message contains `S` (ASCII letters case-insensitive)")
	fs.IntVar(&q.Limit, "limit", defaultAuditLimit, "at most `N` records, the newest (0 = all)")
	asCSV := fs.Bool("csv", false, "print CSV with a header")
	coverage := fs.Bool("coverage", false, "show which time ranges the local store holds and where the gaps are")
	for _, s := range audit.Shortcuts {
		q.shortcuts[s.Name] = fs.Bool(s.Name, false, s.Help)
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
	aq, err := q.query(now)
	if err != nil {
		return err
	}
	f, err := aq.Filter()
	if err != nil {
		return usagef("audit: %v", err)
	}
	if *coverage {
		if *asCSV {
			return usagef("audit: -coverage prints a table or -json, not -csv")
		}
		if !audit.OnlyTime(f) {
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

	if aq.Limit > 0 {
		f.Limit = aq.Limit + 1 // one more tells whether there are more
	}
	recs, err := db.ListAudit(ctx, f)
	if err != nil {
		return err
	}
	more := aq.Limit > 0 && len(recs) > aq.Limit
	if more {
		recs = recs[:aq.Limit]
	}
	switch {
	case c.json:
		for _, r := range recs {
			if err := jsonLines(e.stdout, report.ToAudit(r)); err != nil {
				return err
			}
		}
	case *asCSV:
		if err := report.WriteAuditCSV(e.stdout, recs); err != nil {
			return err
		}
	default:
		if err := writeAuditTable(e.stdout, recs); err != nil {
			return err
		}
	}
	if more {
		fmt.Fprintf(e.stderr, "runnerd audit: showing the newest %d records; more match (-limit 0 for all)\n", aq.Limit)
	}
	if len(recs) == 0 || aq.Narrows() {
		cov, err := engine.LoadAuditCoverage(ctx, db, cfg)
		if err != nil {
			return err
		}
		warnCoverage(e.stderr, cov, f.Since, f.Until, now, len(recs) == 0)
	}
	return nil
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

func writeCoverage(ctx context.Context, e *env, db *store.DB, cov engine.AuditCoverage, since, until, now time.Time, asJSON bool) error {
	rs, gaps, err := cov.Counted(ctx, db, since, until, now)
	if err != nil {
		return err
	}
	if asJSON {
		for _, r := range rs {
			if err := jsonLines(e.stdout, report.Coverage{From: report.RFC3339(r.From), To: report.RFC3339(r.To), State: r.State,
				Hours: r.To.Sub(r.From).Hours(), Records: r.Records, Jobs: r.Jobs, Runs: r.Runs}); err != nil {
				return err
			}
		}
		return nil
	}
	t := newTable(e.stdout, "FROM", "TO", "STATE", "HOURS", "RECORDS", "JOBS/RUNS")
	for _, r := range rs {
		who := strings.Join(r.Jobs, ", ")
		switch r.State {
		case engine.CoverageGap:
			who = "never exported"
		case engine.CoverageFailed:
			who = strings.Join(r.Runs, "; ")
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
	last := engine.LastCovered(rs)
	if last.IsZero() {
		last = rs[len(rs)-1].To
	}
	fmt.Fprintf(e.stdout, "%d gap(s); the latest export ends at %s", gaps, report.RFC3339(last))
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
	hs, recorded := cov.Holes(since, until)
	if !recorded {
		fmt.Fprintln(w, "runnerd audit: warning: no AuditLog export window is recorded: the local store may hold nothing of this range")
		return
	}
	holes := make([]string, len(hs))
	for i, h := range hs {
		holes[i] = fmt.Sprintf("%s to %s (%s)", report.RFC3339(h.From), report.RFC3339(h.To), h.Why)
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

package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"runnerd"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/store"
	"runnerd/internal/timespec"
)

func cmdCalls(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "calls", &c, true)
	job := fs.String("job", "", "only calls of this `job`")
	run := fs.Int64("run", 0, "only calls of this run `id`")
	since := fs.String("since", "", "only calls since `T` (RFC 3339, or an age such as 36h, 7d)")
	status := fs.String("status", "", "only calls answered with this HTTP `status` (0 = no answer)")
	limit := fs.Int("limit", 100, "at most `N` rows (0 = all)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	f := store.CallFilter{Job: *job, RunID: *run, Status: -1, Limit: *limit}
	var err error
	if f.Since, err = timespec.Parse(*since, time.Now()); err != nil {
		return usagef("calls: -since: %v", err)
	}
	if *status != "" {
		if f.Status, err = strconv.Atoi(*status); err != nil || f.Status < 0 {
			return usagef("calls: -status %q: want an HTTP status code, or 0 for unanswered calls", *status)
		}
	}
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	calls, err := db.ListCalls(ctx, f)
	if err != nil {
		return err
	}
	if c.json {
		for _, cl := range calls {
			if err := jsonLines(e.stdout, report.ToCall(cl)); err != nil {
				return err
			}
		}
		return nil
	}
	t := newTable(e.stdout, "ID", "RUN", "JOB", "STARTED", "OPERATION", "METHOD", "PATH", "STATUS", "MS", "TRY", "ERROR")
	for _, cl := range calls {
		st := strconv.Itoa(cl.Status)
		if cl.FinishedAt.IsZero() {
			st = "open"
		} else if cl.Status == 0 {
			st = "-"
		}
		t.row(strconv.FormatInt(cl.ID, 10), strconv.FormatInt(cl.RunID, 10), dash(cl.Job), shortTime(cl.StartedAt),
			cl.Operation, cl.Method, cl.Path, st, strconv.FormatInt(cl.DurationMS, 10), strconv.Itoa(cl.Attempt), dash(cl.Error))
	}
	return t.flush()
}

func cmdHistory(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "history", &c, true)
	job := fs.String("job", "", "only runs of this `job`")
	limit := fs.Int("limit", 50, "at most `N` runs (0 = all)")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	runs, err := db.ListRuns(ctx, store.RunFilter{Job: *job, Limit: *limit})
	if err != nil {
		return err
	}
	ids := make([]int64, len(runs))
	for i, r := range runs {
		ids[i] = r.ID
	}
	lookups, err := db.RecoveryCalls(ctx, ids)
	if err != nil {
		return err
	}
	ev, err := db.EvidenceOfRuns(ctx, ids)
	if err != nil {
		return err
	}
	if err := writeRunsEvidence(e, c.json, runs, lookups, ev); err != nil {
		return err
	}
	// Notifications that could not be delivered are part of what happened.
	if !c.json {
		failed, err := engine.Undelivered(ctx, db, time.Now().Add(-24*time.Hour))
		if err != nil {
			fmt.Fprintf(e.stderr, "runnerd history: warning: %v\n", err)
		}
		if failed > 0 {
			fmt.Fprintf(e.stdout, "\nnotifications: %d not delivered in the last 24 h (runnerd notify-test -deliveries -failed)\n", failed)
		}
	}
	return nil
}

func writeRuns(e *env, asJSON bool, runs []runnerd.Run) error {
	return writeRunsLookups(e, asJSON, runs, nil)
}

// writeRunsLookups prints runs; lookups (by run id) are the recovery lookups
// among each run's calls, shown after the count.
func writeRunsLookups(e *env, asJSON bool, runs []runnerd.Run, lookups map[int64]int) error {
	return writeRunsEvidence(e, asJSON, runs, lookups, nil)
}

// writeRunsEvidence is writeRunsLookups with each run's failure evidence:
// in -json its evidence list, in the table a note after the error.
func writeRunsEvidence(e *env, asJSON bool, runs []runnerd.Run, lookups map[int64]int, ev map[int64][]store.Evidence) error {
	if asJSON {
		for _, r := range runs {
			j := report.ToRun(r)
			j.Lookups = lookups[r.ID]
			for _, x := range ev[r.ID] {
				j.Evidence = append(j.Evidence, report.ToEvidence(x))
			}
			if err := jsonLines(e.stdout, j); err != nil {
				return err
			}
		}
		return nil
	}
	t := newTable(e.stdout, "ID", "JOB", "KIND", "NOMINAL", "STATE", "CALLS", "DURATION", "ERROR/REASON")
	for _, r := range runs {
		dur := "-"
		if !r.StartedAt.IsZero() && !r.FinishedAt.IsZero() {
			dur = r.FinishedAt.Sub(r.StartedAt).Round(time.Millisecond).String()
		}
		why := r.Error
		if why == "" {
			why = r.Reason
		}
		if note := evidenceNote(r.ID, ev[r.ID]); note != "" {
			why = strings.TrimSpace(why + " " + note)
		}
		calls := strconv.Itoa(r.Calls)
		if n := lookups[r.ID]; n > 0 {
			calls += fmt.Sprintf(" (%d lookups)", n)
		}
		t.row(strconv.FormatInt(r.ID, 10), r.Job, r.Kind, shortTime(r.NominalTime), string(r.State),
			calls, dur, dash(why))
	}
	return t.flush()
}

func cmdMigrate(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "migrate", &c, false)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{NoMigrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	applied, err := db.Migrate(ctx)
	if err != nil {
		return err
	}
	cur, _, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	for _, a := range applied {
		fmt.Fprintf(e.stdout, "applied %s\n", a)
	}
	fmt.Fprintf(e.stdout, "%s: schema version %d, up to date\n", db.Path(), cur)
	return nil
}

func cmdBackup(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "backup", &c, false)
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("backup: want exactly one FILE to write the copy to")
	}
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{})
	if err != nil {
		return err
	}
	defer db.Close()
	if err := db.Backup(ctx, pos[0]); err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "wrote a consistent copy of %s to %s\n", db.Path(), pos[0])
	return nil
}

// cmdCheck is `runnerd check [-full]`: the checks every open makes (the
// header, the schema version, the WAL) and with -full PRAGMA quick_check,
// which reads every page. Read-only: the file is never changed, with or
// without a daemon running. A damaged file exits 2 naming it.
func cmdCheck(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "check", &c, true)
	full := fs.Bool("full", false, "also read every page (PRAGMA quick_check; seconds on a large ledger)")
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("check: takes no arguments")
	}
	start := time.Now()
	_, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	what := "header, schema version and WAL"
	if *full {
		if err := db.QuickCheck(ctx); err != nil {
			if errors.Is(err, store.ErrCorrupt) {
				return usageError{err}
			}
			return err
		}
		what = "every page (quick_check), " + what
	}
	version, _, err := db.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	took := time.Since(start)
	if c.json {
		return jsonLines(e.stdout, map[string]any{"file": db.Path(), "ok": true, "full": *full,
			"schema_version": version, "duration_ms": took.Milliseconds()})
	}
	fmt.Fprintf(e.stdout, "%s: ok: %s checked in %s (schema version %d)\n", db.Path(), what, took.Round(time.Millisecond), version)
	return nil
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// evidenceNote says in a few words what is kept of a run's failure:
// "[log kept: runnerd logs 12]", "[log pending]", "[log given up]".
func evidenceNote(id int64, es []store.Evidence) string {
	if len(es) == 0 {
		return ""
	}
	parts := make([]string, 0, len(es))
	kept := false
	for _, x := range es {
		parts = append(parts, x.Kind+" "+strings.ReplaceAll(x.State, "_", " "))
		kept = kept || x.State == store.EvidenceKept
	}
	note := "[" + strings.Join(parts, ", ")
	if kept {
		note += fmt.Sprintf(": runnerd logs %d", id)
	}
	return note + "]"
}

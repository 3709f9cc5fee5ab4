package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strconv"
	"strings"

	"runnerd/internal/engine"
	"runnerd/internal/notify"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

// cmdNotifyTest is `runnerd notify-test TARGET`: it sends a sample event to
// the named [[notify]] target now, with the usual retries, and says how it
// went (exit 1 when it could not be delivered). With -deliveries it lists the
// recorded deliveries instead (-failed: only those given up).
func cmdNotifyTest(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "notify-test", &c, true)
	deliveries := fs.Bool("deliveries", false, "list recorded notification deliveries instead of sending")
	failed := fs.Bool("failed", false, "with -deliveries: only failed and dropped ones")
	limit := fs.Int("limit", 50, "with -deliveries: at most `N` rows")
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: runnerd notify-test [-config FILE] [-json] TARGET\n       runnerd notify-test -deliveries [-failed] [-limit N] [TARGET]")
		fs.PrintDefaults()
	}
	pos, err := parseFlags(fs, args)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	names := make([]string, len(cfg.Notify))
	for i, n := range cfg.Notify {
		names[i] = n.Name
	}
	if *deliveries {
		if len(pos) > 1 {
			return usagef("notify-test -deliveries: at most one TARGET")
		}
		f := store.NotifyFilter{Limit: *limit}
		if len(pos) == 1 {
			f.Target = pos[0]
		}
		return listDeliveries(ctx, e, cfg.Store.Path, f, *failed, c.json)
	}
	if len(pos) != 1 {
		fs.Usage()
		return usagef("notify-test: name one target (%s)", targetList(names))
	}
	name := pos[0]
	log := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	d, err := engine.SendSample(ctx, e.getenv, cfg, name, log)
	if errors.Is(err, engine.ErrNoNotifyTarget) {
		return usagef("notify-test: %s has no [[notify]] target named %q (%s)", cfg.File, name, targetList(names))
	}
	if err != nil {
		return configErr(err)
	}
	if c.json {
		jsonLines(e.stdout, report.ToDelivery(d))
	} else if d.Status == notify.DeliverySent {
		fmt.Fprintf(e.stdout, "%s: sample event delivered (%s)\n", name, deliveryDetail(d))
	} else {
		fmt.Fprintf(e.stdout, "%s: sample event NOT delivered: %s (%s)\n", name, d.Error, deliveryDetail(d))
	}
	if d.Status != notify.DeliverySent {
		return errSilent
	}
	return nil
}

func targetList(names []string) string {
	if len(names) == 0 {
		return "the configuration has none"
	}
	return "targets: " + strings.Join(names, ", ")
}

func deliveryDetail(d notify.Delivery) string {
	s := strconv.Itoa(d.Attempts) + " attempt"
	if d.Attempts != 1 {
		s += "s"
	}
	if d.HTTPStatus != 0 {
		s += fmt.Sprintf(", last answer HTTP %d", d.HTTPStatus)
	}
	return s
}

// listDeliveries prints recorded deliveries, newest first.
func listDeliveries(ctx context.Context, e *env, path string, f store.NotifyFilter, failedOnly, asJSON bool) error {
	db, err := store.Open(ctx, path, store.Options{NoMigrate: true})
	if err != nil {
		return err
	}
	defer db.Close()
	if cur, latest, err := db.SchemaVersion(ctx); err == nil && cur < latest {
		return usagef("%s is at schema version %d of %d: no deliveries table yet; run: runnerd migrate", path, cur, latest)
	}
	rows, err := db.ListNotifyDeliveries(ctx, f)
	if err != nil {
		return err
	}
	return printDeliveries(e.stdout, rows, failedOnly, asJSON)
}

// printDeliveries writes deliveries as a table or as JSON lines; failedOnly
// keeps the failed and dropped ones.
func printDeliveries(w io.Writer, rows []store.NotifyDelivery, failedOnly, asJSON bool) error {
	var t *table
	if !asJSON {
		t = newTable(w, "FINISHED", "TARGET", "EVENT", "JOB", "RUN", "STATUS", "ATTEMPTS", "ERROR")
	}
	for _, r := range rows {
		if failedOnly && r.Status == notify.DeliverySent {
			continue
		}
		d := notify.Delivery{
			Target: r.Target, EventID: r.EventID, Event: r.Event, Job: r.Job, RunID: r.RunID, Time: r.EventTime,
			FinishedAt: r.FinishedAt, Attempts: r.Attempts, Status: r.Status, HTTPStatus: r.HTTPStatus, Error: r.Error,
		}
		if asJSON {
			if err := jsonLines(w, report.ToDelivery(d)); err != nil {
				return err
			}
			continue
		}
		run := "-"
		if r.RunID != 0 {
			run = strconv.FormatInt(r.RunID, 10)
		}
		t.row(shortTime(r.FinishedAt), r.Target, r.Event, orDash(r.Job), run, r.Status, strconv.Itoa(r.Attempts), orDash(r.Error))
	}
	if t != nil {
		return t.flush()
	}
	return nil
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

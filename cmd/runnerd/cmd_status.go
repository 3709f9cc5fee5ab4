package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"runnerd/internal/control"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

// cmdStatus answers what an operator asks first: is the daemon up, what is
// left of the budget, what runs now and next, and what needs a person. It
// reads the ledger and asks the control socket; it sends no API call. Exit 1
// when it lists a problem.
func cmdStatus(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "status", &c, true)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("status: takes no arguments")
	}
	cfg, err := loadConfig(e, c.config)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	db, err := readLedger(ctx, cfg)
	if err != nil {
		return err
	}
	if db != nil {
		defer db.Close()
	}
	st, err := engine.LoadStatus(ctx, cfg, db, now)
	if err != nil {
		return configErr(err)
	}
	sock := socketPath(e.getenv, cfg.Store.Path)
	_, up, _ := control.Call(ctx, sock, control.Request{Op: "ping"})
	b := st.Budget.Window.Status(now)
	dbName := cfg.Store.Path
	if cfg.Store.URL != "" {
		dbName = store.RedactURL(cfg.Store.URL)
	}
	j := report.Status{Daemon: "not running", Socket: sock, Config: cfg.File, DB: dbName,
		DailyLimit: b.DailyLimit, Reserve: b.Reserve, Used: b.Used, Remaining: b.Remaining,
		InFlight: len(st.InFlight), Deferred: len(st.Deferred), Unknown: len(st.Unknown), Failed24h: len(st.Failed),
		Undelivered: st.Undelivered, Next: []report.NextRun{}, At: report.RFC3339(now)}
	if up {
		j.Daemon = "running"
	}
	j.Problems = st.Problems(up, sock)
	for _, o := range st.Owed {
		j.Owed = append(j.Owed, fmt.Sprintf("%s (job %s, run %d)", engine.ObligationText(o), o.Job, o.RunID))
	}
	for _, n := range st.Next {
		j.Next = append(j.Next, report.NextRun{Job: n.Job, Time: report.RFC3339(n.At), Estimate: n.Cost})
	}
	for _, in := range st.Instances {
		j.Instances = append(j.Instances, report.Instance{Name: in.Name, Host: in.Host, PID: in.PID, State: in.State,
			HeartbeatAt: report.RFC3339(in.HeartbeatAt), Leases: in.Leases, Calls24h: in.Calls, Share: in.Share})
	}
	for _, l := range st.Leases {
		j.Leases = append(j.Leases, report.Lease{Job: l.Job, Instance: l.Instance, ExpiresAt: report.RFC3339(l.ExpiresAt)})
	}
	if c.json {
		if err := jsonLines(e.stdout, j); err != nil {
			return err
		}
	} else {
		w := e.stdout
		fmt.Fprintf(w, "daemon: %s\nbudget: %d used in the rolling 24 h of %d (reserve %d): %d left for runnerd's work\n",
			j.Daemon, j.Used, j.DailyLimit, j.Reserve, j.Remaining)
		fmt.Fprintf(w, "runs:   %d in flight, %d deferred, %d unknown, %d failed or missed in the last 24 h\n",
			j.InFlight, j.Deferred, j.Unknown, j.Failed24h)
		next := make([]string, len(j.Next))
		for i, n := range st.Next {
			next[i] = fmt.Sprintf("%s at %s (≈%d calls)", n.Job, shortTime(n.At), n.Cost)
		}
		fmt.Fprintf(w, "next:   %s\n", dash(strings.Join(next, "; ")))
		if len(st.Instances) > 0 {
			fmt.Fprintf(w, "ledger: %s, shared by %d instance(s)\n", j.DB, len(st.Instances))
			for _, in := range st.Instances {
				fmt.Fprintf(w, "instance: %s\n", engine.InstanceText(in, now))
			}
			held := make([]string, len(st.Leases))
			for i, l := range st.Leases {
				held[i] = l.Job + " → " + l.Instance
			}
			fmt.Fprintf(w, "leases: %s\n", dash(strings.Join(held, ", ")))
		}
		for _, p := range j.Problems {
			fmt.Fprintf(w, "problem: %s\n", p)
		}
	}
	if len(j.Problems) > 0 {
		return errSilent
	}
	return nil
}

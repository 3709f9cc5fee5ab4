package engine

import (
	"context"
	"fmt"
	"slices"
	"time"

	"runnerd"
	"runnerd/internal/config"
	"runnerd/internal/notify"
	"runnerd/internal/store"
)

// Status is `runnerd status`: what an operator asks first, from the ledger
// and the configuration (the daemon's liveness is the caller's: the control
// socket).
type Status struct {
	Budget   BudgetView
	InFlight []runnerd.Run // admitted or running
	Deferred []runnerd.Run
	Unknown  []runnerd.Run // outcome not known: reconciliation looks them up
	Failed   []runnerd.Run // failed or missed in the last 24 hours
	Next     []NextRun     // the next fires, earliest first (at most 5)
	// Undelivered counts notifications failed or dropped in the last 24 hours.
	Undelivered int
	// Owed are the resumes releases still owe (a pause a crash or a failed
	// resume left): the next start carries them out first.
	Owed []store.Obligation
	// Instances are the runnerd sharing a PostgreSQL ledger, with their
	// leases and calls; Leases who runs each job (none on SQLite).
	Instances []InstanceView
	Leases    []store.Lease
	NoLedger  bool // no database yet at [store] path
	path      string
	lease     time.Duration
}

// InstanceView is one runnerd on a shared ledger as status shows it.
type InstanceView struct {
	store.Instance
	// State is "running" (heartbeat within the lease), "stopped" (a clean
	// stop) or "silent" (no heartbeat for longer than a lease: killed, cut
	// off, or its host is down; its jobs go to another instance).
	State string
	// Share is its calls' part of the window's (0–1).
	Share float64
}

// InstanceText is one line of `runnerd status` about in.
func InstanceText(in InstanceView, now time.Time) string {
	return fmt.Sprintf("%s (host %s, pid %d): %s, heartbeat %s ago, %d job lease(s), %d call(s) in 24 h (%.0f%% of the window's)",
		in.Name, in.Host, in.PID, in.State, now.Sub(in.HeartbeatAt).Round(time.Second), in.Leases, in.Calls, 100*in.Share)
}

// Problems are what needs a person, one line each with the command that says
// more; daemonUp is whether the daemon answered on its control socket sock.
func (st *Status) Problems(daemonUp bool, sock string) []string {
	ps := []string{}
	if !daemonUp {
		ps = append(ps, "the daemon is not running (no answer on "+sock+"): systemctl status runnerd")
	}
	if st.NoLedger {
		ps = append(ps, "no ledger at "+st.path+" yet: the daemon has never run with this configuration")
	}
	if n := len(st.Unknown); n > 0 {
		ps = append(ps, fmt.Sprintf("%d run(s) with an unknown outcome: reconciliation looks them up (runnerd history)", n))
	}
	if n := len(st.Failed); n > 0 {
		ps = append(ps, fmt.Sprintf("%d run(s) failed or missed in the last 24 h (runnerd history)", n))
	}
	for _, o := range st.Owed {
		ps = append(ps, "owes a resume: "+ObligationText(o)+fmt.Sprintf(" (run %d)", o.RunID)+
			"; the next start of the daemon (or runnerd run "+o.Job+") carries it out first")
	}
	for _, in := range st.Instances {
		if in.State == "silent" && in.Leases > 0 {
			ps = append(ps, fmt.Sprintf("instance %s holds %d lease(s) but has not been heard from since %s: another instance takes its jobs once they run out",
				in.Name, in.Leases, in.HeartbeatAt.Format(time.RFC3339)))
		}
	}
	if st.Undelivered > 0 {
		ps = append(ps, fmt.Sprintf("%d notification(s) not delivered in the last 24 h (runnerd notify-test -deliveries -failed)", st.Undelivered))
	}
	return ps
}

// DailyNeed is what cfg's enabled jobs of priority p or higher need in the 24
// hours from now, by their estimates from db (nil: the kinds' defaults).
func DailyNeed(ctx context.Context, cfg *config.Config, db *store.DB, p runnerd.Priority, now time.Time) (int, error) {
	costs, err := JobCosts(ctx, cfg, db, nil, now, 0, 24*time.Hour)
	if err != nil {
		return 0, err
	}
	costs = slices.DeleteFunc(costs, func(c JobCost) bool {
		q, err := runnerd.ParsePriority(c.Job.Priority)
		return err != nil || q < p
	})
	return DailyDemand(costs), nil
}

// NextRun is one job's next fire.
type NextRun struct {
	Job  string
	At   time.Time
	Cost int // estimated calls
}

// LoadStatus reads Status at now; db nil is a host with no ledger yet.
func LoadStatus(ctx context.Context, cfg *config.Config, db *store.DB, now time.Time) (*Status, error) {
	v, err := LoadBudgetView(ctx, cfg, db, now)
	if err != nil {
		return nil, err
	}
	st := &Status{Budget: *v, NoLedger: db == nil, path: cfg.Store.Path, lease: cfg.Store.Lease.Duration}
	costs, err := JobCosts(ctx, cfg, db, nil, now, 1, 0)
	if err != nil {
		return nil, err
	}
	for _, c := range costs {
		if c.Job.Enabled && len(c.Next) > 0 {
			st.Next = append(st.Next, NextRun{Job: c.Job.Name, At: c.Next[0], Cost: c.Estimate.Calls})
		}
	}
	slices.SortFunc(st.Next, func(a, b NextRun) int { return a.At.Compare(b.At) })
	st.Next = st.Next[:min(len(st.Next), 5)]
	if db == nil {
		return st, nil
	}
	open, err := db.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{
		runnerd.StateAdmitted, runnerd.StateRunning, runnerd.StateDeferred, runnerd.StateUnknown}})
	if err != nil {
		return nil, fmt.Errorf("status: read the open runs: %w", err)
	}
	for _, r := range open {
		switch r.State {
		case runnerd.StateDeferred:
			st.Deferred = append(st.Deferred, r)
		case runnerd.StateUnknown:
			st.Unknown = append(st.Unknown, r)
		default:
			st.InFlight = append(st.InFlight, r)
		}
	}
	if st.Failed, err = db.ListRuns(ctx, store.RunFilter{States: []runnerd.RunState{runnerd.StateFailed, runnerd.StateMissed},
		Since: now.Add(-24 * time.Hour)}); err != nil {
		return nil, fmt.Errorf("status: read the failed runs: %w", err)
	}
	if st.Undelivered, err = Undelivered(ctx, db, now.Add(-24*time.Hour)); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if st.Owed, err = db.OpenObligations(ctx, ""); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if st.Instances, st.Leases, err = LoadInstances(ctx, db, cfg, now); err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	return st, nil
}

// LoadInstances reads the instances sharing db (a PostgreSQL ledger), with
// their state and share of the window; nothing on SQLite.
func LoadInstances(ctx context.Context, db *store.DB, cfg *config.Config, now time.Time) ([]InstanceView, []store.Lease, error) {
	if db == nil || !db.IsPostgres() {
		return nil, nil, nil
	}
	ins, err := db.Instances(ctx, now)
	if err != nil {
		return nil, nil, err
	}
	leases, err := db.Leases(ctx)
	if err != nil {
		return nil, nil, err
	}
	total := 0
	for _, in := range ins {
		total += in.Calls
	}
	lease := cfg.Store.Lease.Duration
	if lease <= 0 {
		lease = config.DefaultLease
	}
	out := make([]InstanceView, len(ins))
	for i, in := range ins {
		v := InstanceView{Instance: in, State: "running"}
		switch {
		case !in.StoppedAt.IsZero():
			v.State = "stopped"
		case now.Sub(in.HeartbeatAt) > lease:
			v.State = "silent"
		}
		if total > 0 {
			v.Share = float64(in.Calls) / float64(total)
		}
		out[i] = v
	}
	return out, leases, nil
}

// Undelivered counts the notifications that finished failed or dropped since.
func Undelivered(ctx context.Context, db *store.DB, since time.Time) (int, error) {
	counts, err := db.NotifyDeliveryCounts(ctx, since)
	if err != nil {
		return 0, fmt.Errorf("read the notification deliveries: %w", err)
	}
	n := 0
	for _, byStatus := range counts {
		n += byStatus[notify.DeliveryFailed] + byStatus[notify.DeliveryDropped]
	}
	return n, nil
}

// ObligationText says what an obligation resumes: "schedules of P on A",
// "listener L on A".
func ObligationText(o store.Obligation) string {
	if o.Kind == store.ObligationSchedule {
		return "schedules of " + o.ProcessID + " on " + o.Container
	}
	return "listener " + o.ProcessID + " on " + o.Container
}

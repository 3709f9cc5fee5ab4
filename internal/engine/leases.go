package engine

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/store"
)

// On a PostgreSQL ledger each job is run by one instance at a time: the one
// holding its lease (store.Heartbeat). The engine renews its leases every
// third of the lease time, takes the jobs whose lease ran out (another
// instance stopped heartbeating: killed, cut off) and adopts them — their
// interrupted runs recovered and looked up as after a crash, their missed
// slots caught up. BeginCall refuses a call for a job whose lease this
// instance does not hold, so an instance that lost a lease sends nothing
// more for that job. A clean stop gives the leases up at once.

// leases is the engine's view of the jobs it holds.
type leases struct {
	instance store.Instance
	every    time.Duration // heartbeat interval
	lease    time.Duration

	mu       sync.Mutex
	held     map[string]bool
	down     bool // the last heartbeat failed: the ledger did not answer
	failedAt time.Time
	others   []budget.Candidate // the other instances' published look-aheads
	active   bool               // a heartbeat has succeeded: this engine holds (or held) leases
}

// instanceName is [store] instance, or the host name.
func instanceName(configured string) string {
	if configured != "" {
		return configured
	}
	h, err := os.Hostname()
	if err != nil || h == "" {
		return fmt.Sprintf("pid-%d", os.Getpid())
	}
	return h
}

func (e *Engine) initLeases() error {
	if !e.db.IsPostgres() {
		return nil
	}
	lease := e.cfg.Store.Lease.Duration
	if lease <= 0 {
		lease = config.DefaultLease
	}
	host, _ := os.Hostname()
	e.leases = &leases{
		instance: store.Instance{Name: instanceName(e.cfg.Store.Instance), Host: host, PID: os.Getpid()},
		every:    max(lease/3, 50*time.Millisecond),
		lease:    lease,
		held:     map[string]bool{},
	}
	l := e.leases
	for _, g := range []struct {
		name, help string
		f          func() float64
	}{
		{"runnerd_ledger_up", "1 while the shared (PostgreSQL) ledger answers the heartbeat; 0 while it does not, and no new call is started.",
			func() float64 {
				l.mu.Lock()
				defer l.mu.Unlock()
				if l.down {
					return 0
				}
				return 1
			}},
		{"runnerd_leases_held", "Jobs whose lease this instance holds on the shared ledger: the jobs it runs.",
			func() float64 {
				l.mu.Lock()
				defer l.mu.Unlock()
				return float64(len(l.held))
			}},
	} {
		if err := e.metrics.Registry().Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: g.name, Help: g.help}, g.f)); err != nil {
			return err
		}
	}
	return nil
}

// Instance is this engine's name on a shared ledger ("" on SQLite).
func (e *Engine) Instance() string {
	if e.leases == nil {
		return ""
	}
	return e.leases.instance.Name
}

// owns reports whether this engine runs job now: always on SQLite; on a
// shared ledger, while it holds the job's lease.
func (e *Engine) owns(job string) bool {
	if e.leases == nil {
		return true
	}
	e.leases.mu.Lock()
	defer e.leases.mu.Unlock()
	return e.leases.held[job]
}

// checkInstanceName refuses to take part under a name another live runnerd
// uses: two processes with one name would both hold its leases and both
// run its jobs. The name's row is another's if it is not stopped, its
// heartbeat is younger than a lease, and it is another host's or, on this
// host, another process that is still alive (a process killed and started
// again takes its name back at once).
func (e *Engine) checkInstanceName(ctx context.Context) error {
	l := e.leases
	in, now, found, err := e.db.LookupInstance(ctx, l.instance.Name)
	if err != nil || !found || !in.StoppedAt.IsZero() || now.Sub(in.HeartbeatAt) >= l.lease {
		return err
	}
	if in.Host == l.instance.Host && (in.PID == l.instance.PID || !processAlive(in.PID)) {
		return nil
	}
	return fmt.Errorf("instance name %q is in use by pid %d on host %s (heard from %s ago): "+
		"give each runnerd sharing the ledger its own [store] instance", l.instance.Name, in.PID, in.Host,
		now.Sub(in.HeartbeatAt).Round(time.Millisecond))
}

// processAlive reports whether a process with pid runs on this host.
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// leaseState reports whether this engine takes part in a shared ledger's
// leases (a heartbeat has succeeded) and whether the last heartbeat found
// the ledger out of reach; false, false on SQLite.
func (e *Engine) leaseState() (active, down bool) {
	if e.leases == nil {
		return false, false
	}
	e.leases.mu.Lock()
	defer e.leases.mu.Unlock()
	return e.leases.active, e.leases.down
}

func (e *Engine) leasesActive() bool { active, _ := e.leaseState(); return active }

// jobNames are the configured jobs: what a daemon wants to hold.
func (e *Engine) jobNames() []string {
	jobs := e.Config().Jobs // a reload replaces the configuration
	want := make([]string, 0, len(jobs))
	for _, j := range jobs {
		want = append(want, j.Name)
	}
	return want
}

// heartbeat renews and takes the leases of want once (giving up the others)
// and returns the jobs newly held.
func (e *Engine) heartbeat(ctx context.Context, want []string) (gained []string, err error) {
	l := e.leases
	held, err := e.db.Heartbeat(ctx, l.instance, want, l.lease)
	if err == nil {
		defer func() {
			if derr := e.shareDemand(ctx); derr != nil {
				e.log.Warn("budget: the instances' look-aheads could not be shared", "err", derr)
			}
		}()
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if err != nil {
		if !l.down {
			e.log.Error("ledger: the shared ledger does not answer; no new call is started until it does "+
				"(leases run out, and another instance may take the jobs)", "err", err)
		}
		l.down, l.failedAt = true, e.now()
		return nil, err
	}
	l.active = true
	if l.down {
		e.log.Info("ledger: the shared ledger answers again", "down_for", e.now().Sub(l.failedAt).Round(time.Millisecond))
		l.down = false
	}
	now := map[string]bool{}
	for _, j := range held {
		now[j] = true
		if !l.held[j] {
			gained = append(gained, j)
		}
	}
	var lost []string
	for j := range l.held {
		if !now[j] {
			lost = append(lost, j)
		}
	}
	l.held = now
	if len(lost) > 0 {
		slices.Sort(lost)
		e.log.Warn("lease: jobs now held by another instance; this one runs them no more", "jobs", lost)
	}
	return gained, nil
}

// leaseLoop heartbeats until ctx ends, and adopts the jobs it gains.
func (e *Engine) leaseLoop(ctx context.Context) {
	t := time.NewTicker(e.leases.every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		gained, err := e.heartbeat(ctx, e.jobNames())
		if err != nil || len(gained) == 0 {
			continue
		}
		e.log.Info("lease: jobs taken over", "jobs", gained, "instance", e.leases.instance.Name)
		if err := e.sched.Adopt(ctx, gained); err != nil {
			e.log.Error("lease: adopting jobs", "jobs", gained, "err", err)
		}
	}
}

// releaseLeases gives this instance's leases up (a clean stop).
func (e *Engine) releaseLeases() {
	if e.leases == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.db.ReleaseLeases(ctx, e.leases.instance.Name); err != nil {
		e.log.Warn("lease: could not give the leases up; they run out by themselves", "err", err)
	}
}

// holdForRun makes sure this instance holds job's lease for a run started
// by hand (runnerd run), and that it stays renewed. An error names the
// instance that holds it.
func (e *Engine) holdForRun(ctx context.Context, job string) error {
	if e.leases == nil {
		return nil
	}
	// Every configured job whose lease is free: the run's chain may go on
	// to the next steps, and a job another instance holds stays its own.
	want := e.jobNames()
	if !e.leasesActive() {
		if err := e.checkInstanceName(ctx); err != nil {
			return err
		}
	}
	if !e.owns(job) {
		if _, err := e.heartbeat(ctx, want); err != nil {
			return fmt.Errorf("job %q: the shared ledger does not answer: %w", job, err)
		}
	}
	if !e.owns(job) {
		holder := "another instance"
		if ls, err := e.db.Leases(ctx); err == nil {
			for _, l := range ls {
				if l.Job == job {
					holder = fmt.Sprintf("instance %q (lease until %s)", l.Instance, l.ExpiresAt.Format(time.RFC3339))
				}
			}
		}
		return fmt.Errorf("job %q is run by %s; run it there, or wait for its lease to run out", job, holder)
	}
	if !e.started.Load() {
		// A one-shot run (no daemon): its leases are renewed until the
		// engine closes, not only while the run runs — what follows it
		// (the failed run's evidence) is the job's too. Close gives them up.
		e.renewOnce.Do(func() {
			e.goBG(func(ctx context.Context) {
				t := time.NewTicker(e.leases.every)
				defer t.Stop()
				for {
					select {
					case <-ctx.Done():
						return
					case <-t.C:
						e.heartbeat(ctx, want)
					}
				}
			})
		})
	}
	return nil
}

package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"runnerd/internal/atomapi/atomsim"
)

// TestFireTimesAgreeAcrossDST: validate (JobCosts), plan (PlanFromLedger)
// and the daemon (the runs cron really fires in the engine) give the same
// fire times around daylight-saving changes in both directions, in zones
// west and east of UTC and one whose clocks move by 30 minutes. Slots whose
// wall time is skipped run once at the same distance after the change;
// repeated wall times run once, at their first occurrence.
func TestFireTimesAgreeAcrossDST(t *testing.T) {
	for _, tc := range []struct {
		name, zone, spec, from string // from: UTC
		want                   []string
	}{
		{"Berlin spring forward", "Europe/Berlin", "30 2 * * *", "2027-03-27T12:00:00Z",
			[]string{"2027-03-28T01:30:00Z", "2027-03-29T00:30:00Z", "2027-03-30T00:30:00Z"}},
		{"Berlin fall back", "Europe/Berlin", "30 2 * * *", "2027-10-30T12:00:00Z",
			[]string{"2027-10-31T00:30:00Z", "2027-11-01T01:30:00Z", "2027-11-02T01:30:00Z"}},
		{"New York spring forward", "America/New_York", "30 2 * * *", "2027-03-13T12:00:00Z",
			[]string{"2027-03-14T07:30:00Z", "2027-03-15T06:30:00Z", "2027-03-16T06:30:00Z"}},
		{"New York fall back", "America/New_York", "30 1 * * *", "2027-11-06T12:00:00Z",
			[]string{"2027-11-07T05:30:00Z", "2027-11-08T06:30:00Z", "2027-11-09T06:30:00Z"}},
		{"Lord Howe forward 30 min", "Australia/Lord_Howe", "15 2 * * *", "2027-10-02T00:00:00Z",
			[]string{"2027-10-02T15:45:00Z", "2027-10-03T15:15:00Z", "2027-10-04T15:15:00Z"}}, // 02:15 skipped: 02:45
		{"Lord Howe back 30 min", "Australia/Lord_Howe", "45 1 * * *", "2027-04-03T00:00:00Z",
			[]string{"2027-04-03T14:45:00Z", "2027-04-04T15:15:00Z", "2027-04-05T15:15:00Z"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			from, _ := time.Parse(time.RFC3339, tc.from)
			jobs := fmt.Sprintf(`
[[job]]
name = "promote"
kind = "deploy"
schedule = %q
timezone = %q
catch_up = "none"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`, tc.spec, tc.zone)
			synctest.Test(t, func(t *testing.T) {
				time.Sleep(time.Until(from))
				r := newRigSim(t, 10000, jobs, nil, atomsim.Options{AuditLogs: -1, ExecutionRecords: -1, Events: -1}, slog.LevelWarn)
				cfg := r.e.Config()

				costs, err := JobCosts(context.Background(), cfg, nil, nil, from, 3, 0)
				if err != nil {
					t.Fatal(err)
				}
				validate := utcStrings(costs[0].Next)

				p, err := PlanFromLedger(context.Background(), cfg, nil, nil, from, 80)
				if err != nil {
					t.Fatal(err)
				}
				var planned []time.Time
				for _, s := range p.Steps {
					planned = append(planned, s.Nominal)
				}
				plan := utcStrings(planned)

				if err := r.e.Start(context.Background()); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Until(from.Add(80 * time.Hour)))
				if err := r.e.Stop(context.Background(), time.Second); err != nil {
					t.Fatal(err)
				}
				var fired []time.Time
				for _, run := range r.runs("promote") {
					fired = append(fired, run.NominalTime)
				}
				slices.SortFunc(fired, time.Time.Compare)
				daemon := utcStrings(fired)

				for _, got := range []struct {
					who   string
					times []string
				}{{"validate", validate}, {"plan", plan}, {"daemon", daemon}} {
					if !slices.Equal(got.times, tc.want) {
						t.Errorf("%s: %v; want %v", got.who, got.times, tc.want)
					}
				}
			})
		})
	}
}

func utcStrings(ts []time.Time) []string {
	out := make([]string, 0, len(ts))
	for _, t := range ts {
		out = append(out, t.UTC().Format(time.RFC3339))
	}
	return out
}

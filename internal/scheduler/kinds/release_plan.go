package kinds

import (
	"context"
	"fmt"
	"strings"

	"runnerd/internal/atomapi"
)

// PlanStep is one step of a release as -dry-run shows it: what it would do,
// what that would change, and the calls it would cost.
type PlanStep struct {
	Step   string `json:"step"`
	Change string `json:"change"`
	Calls  int    `json:"calls"`
}

// ReleasePlan is what a release would do now.
type ReleasePlan struct {
	Steps   []PlanStep `json:"steps"`
	Cost    int        `json:"calls"`   // the run's calls, about (polls are estimated)
	Lookups []string   `json:"lookups"` // the requests the plan itself made, in order
}

// smokePolls is the polls a smoke test is counted for in a plan.
const smokePolls = 5

// Plan looks at the platform (only with the lookups it lists: the atoms,
// the schedule statuses, the extensions, the active packages) and says what a
// run would do, change and cost. It changes nothing.
func (k *Release) Plan(ctx context.Context) (ReleasePlan, error) {
	var p ReleasePlan
	look := func(s string) { p.Lookups = append(p.Lookups, s) }
	add := func(step, change string, calls int) {
		p.Steps = append(p.Steps, PlanStep{step, change, calls})
		p.Cost += calls
	}
	addDeploy := add
	var offline []string
	for _, a := range k.Atoms {
		var atom atomapi.Atom
		look("GET Atom/" + a)
		if err := k.Client.Get(ctx, "Atom", a, &atom); err != nil {
			return p, fmt.Errorf("atom %s: %w", a, err)
		}
		if !strings.EqualFold(atom.Status, "ONLINE") {
			offline = append(offline, a+" is "+atom.Status)
		}
	}
	change := "all online"
	if len(offline) > 0 {
		change = "WOULD STOP HERE: " + strings.Join(offline, ", ") + "; nothing would be changed"
	}
	add("pre-check atoms "+strings.Join(k.Atoms, ", "), change, len(k.Atoms))

	look("POST DeployedPackage/query (" + k.Deploy.FromEnv + ", " + k.Deploy.ToEnv + ")")
	pkgs, err := k.Client.QueryDeployedPackages(ctx, and(eq("componentId", k.ProcessID), eq("active", "true"),
		*or(eq("environmentId", k.Deploy.FromEnv), eq("environmentId", k.Deploy.ToEnv))))
	if err != nil {
		return p, fmt.Errorf("active packages: %w", err)
	}
	from, to, ok, nothing := k.Deploy.pending(pkgs)
	switch {
	case !ok:
		addDeploy("pre-check package", "WOULD STOP HERE: no active package of "+k.ProcessID+" in "+k.Deploy.FromEnv+"; nothing would be changed", 1)
	case nothing:
		addDeploy("pre-check package", fmt.Sprintf("nothing to deploy: %s runs package %s (version %s); nothing is paused", k.Deploy.ToEnv, from.PackageID, from.PackageVersion), 1)
	default:
		cur := "nothing"
		if to.PackageID != "" {
			cur = fmt.Sprintf("package %s (version %s)", to.PackageID, to.PackageVersion)
		}
		addDeploy("pre-check package and deploy", fmt.Sprintf("%s: %s → package %s (version %s)", k.Deploy.ToEnv, cur, from.PackageID, from.PackageVersion), 2)
	}
	pauses, listeners := 0, 0
	for _, a := range k.Atoms {
		if nothing {
			add("pause schedules and listeners on "+a, "skipped: nothing to deploy", 0)
			continue
		}
		if k.PauseSchedules {
			look("POST ProcessScheduleStatus/query (" + a + ")")
			sts, err := k.Client.QueryProcessScheduleStatus(ctx, a, k.ProcessID)
			if err != nil {
				return p, fmt.Errorf("schedules on %s: %w", a, err)
			}
			on := 0
			for _, s := range sts {
				if bool(s.Enabled) {
					on++
				}
			}
			pauses += on
			add("pause the schedules of "+k.ProcessID+" on "+a, fmt.Sprintf("%d enabled → paused, resumed after the deploy", on), 1+on)
		}
		for _, l := range k.Listeners {
			listeners++
			add("pause listener "+l+" on "+a, "listening → paused, resumed after the deploy", 1)
		}
	}
	if k.Extensions != nil {
		look("GET EnvironmentExtensions/" + k.ToEnv)
		cur, err := k.Client.GetEnvironmentExtensions(ctx, k.ToEnv)
		if err != nil {
			return p, fmt.Errorf("extensions of %s: %w", k.ToEnv, err)
		}
		_, changes, err := k.Extensions(cur)
		if err != nil {
			return p, fmt.Errorf("extensions: %w", err)
		}
		switch {
		case len(changes) == 0:
			add("environment extensions of "+k.ToEnv, "unchanged: nothing to send", 1)
		default:
			add("environment extensions of "+k.ToEnv+" (partial update)", strings.Join(changes, "; "), 2)
		}
	}
	if pauses+listeners > 0 {
		add("resume what was paused", fmt.Sprintf("%d schedule statuses enabled, %d listeners resumed", pauses, listeners), pauses+listeners)
	}
	if listeners > 0 {
		add("wait until the paused listeners listen", fmt.Sprintf("up to %s", k.ListenerTimeout), 2*len(k.Atoms))
	}
	if k.Smoke != nil && !nothing {
		add("smoke test "+k.Smoke.ProcessID+" on "+k.Smoke.AtomID, "one execution, followed to its end", 1+smokePolls)
	}
	return p, nil
}

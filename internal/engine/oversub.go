package engine

import (
	"fmt"
	"slices"
	"strings"

	"runnerd"
)

// Shortfall is a priority class whose jobs cannot all run within the
// allowance: what they need a day against what the higher classes leave.
type Shortfall struct {
	Priority  runnerd.Priority
	Jobs      []string // the class's enabled jobs, by daily demand (largest first)
	Demand    int      // their calls a day (runs in the next 24 h × estimate)
	Available int      // daily_limit − reserve less the higher classes' demand (≥ 0)
}

// Served is the share of the class's demand the allowance holds, 0..1.
func (s Shortfall) Served() float64 {
	if s.Demand <= 0 {
		return 1
	}
	return min(1, float64(s.Available)/float64(s.Demand))
}

// String names the jobs and the figures.
func (s Shortfall) String() string {
	what := fmt.Sprintf("about %.0f%% of their runs will be deferred or missed", 100*(1-s.Served()))
	if s.Available == 0 {
		what = "none of their runs can run"
	}
	return fmt.Sprintf("%s priority: about %d calls a day needed by %s; %d left after higher priorities: %s",
		s.Priority, s.Demand, strings.Join(s.Jobs, ", "), s.Available, what)
}

// Oversubscribed returns the priority classes, highest first, whose demand
// does not fit the capacity (daily_limit − reserve) left by the classes
// above them: the planner serves higher priorities first, so those are the
// jobs that will be deferred or missed every day. Disabled jobs do not
// count. Empty when the schedule fits.
func Oversubscribed(costs []JobCost, capacity int) []Shortfall {
	type job struct {
		name   string
		demand int
	}
	byPrio := map[runnerd.Priority][]job{}
	for _, c := range costs {
		if !c.Job.Enabled {
			continue
		}
		p, err := runnerd.ParsePriority(c.Job.Priority)
		if err != nil {
			p = runnerd.PriorityNormal
		}
		byPrio[p] = append(byPrio[p], job{c.Job.Name, c.PerDay * c.Estimate.Calls})
	}
	var out []Shortfall
	left := max(0, capacity)
	for _, p := range []runnerd.Priority{runnerd.PriorityHigh, runnerd.PriorityNormal, runnerd.PriorityLow} {
		jobs := byPrio[p]
		demand := 0
		for _, j := range jobs {
			demand += j.demand
		}
		if demand > left {
			slices.SortStableFunc(jobs, func(a, b job) int { return b.demand - a.demand })
			s := Shortfall{Priority: p, Demand: demand, Available: left}
			for _, j := range jobs {
				s.Jobs = append(s.Jobs, j.name)
			}
			out = append(out, s)
		}
		left = max(0, left-demand)
	}
	return out
}

// DailyDemand is what the enabled jobs of costs need a day: each job's
// runs in the next 24 hours times its estimate per run.
func DailyDemand(costs []JobCost) int {
	total := 0
	for _, c := range costs {
		if c.Job.Enabled {
			total += c.PerDay * c.Estimate.Calls
		}
	}
	return total
}

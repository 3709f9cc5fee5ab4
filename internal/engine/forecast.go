package engine

import (
	"time"

	"runnerd"
	"runnerd/internal/budget"
	"runnerd/internal/web"
)

// Forecast is the status page's next 24 hours, from the plan the daemon
// admits with (Plan): what `runnerd plan` shows, hour by hour.
func (e *Engine) Forecast(now time.Time) web.Forecast {
	return ForecastFrom(now, e.Plan(now, 24), e.window.Status(now), e.limits.Cap())
}

// ForecastFrom lays the plan's steps over the next 24 hours from now's hour.
// For each hour H, the projected rolling window is the real buckets of st
// still inside H's window plus the estimates of the runs the plan admits up
// to H (each in its step's Hour); runs foreseen to be deferred add nothing.
// Held is what the admitted high-priority runs need; LeftNow is what an
// ordinary run could spend in now's hour and keep every window within cap
// around the high-priority runs: min over H of cap − the real window − the
// high runs up to H.
func ForecastFrom(now time.Time, steps []budget.PlanStep, st budget.Status, cap int) web.Forecast {
	start := now.UTC().Truncate(time.Hour)
	f := web.Forecast{Start: start, Cap: cap, Limit: st.DailyLimit}
	spent := func(h time.Time) int { // the real buckets inside h's window
		n := 0
		for _, b := range st.Hours {
			if b.Hour.After(h.Add(-24*time.Hour)) && !b.Hour.After(h) {
				n += b.Calls
			}
		}
		return n
	}
	f.Hours = make([]web.ForecastHour, 24)
	for i := range f.Hours {
		h := start.Add(time.Duration(i) * time.Hour)
		f.Hours[i] = web.ForecastHour{Hour: h, Real: spent(h)}
		if i == 0 {
			for _, b := range st.Hours {
				if b.Hour.Equal(h) {
					f.Hours[i].Past = b.Calls
				}
			}
		}
	}
	for _, s := range steps {
		i := int(s.Hour.Sub(start) / time.Hour)
		if i < 0 || i >= len(f.Hours) {
			continue
		}
		fh := &f.Hours[i]
		f.Runs = append(f.Runs, web.ForecastRun{Job: s.Job, Time: s.Nominal, Hour: s.Hour, Priority: s.Priority.String(),
			Estimate: s.Estimate, Admit: s.Admit, Reason: s.Reason, RemainingAfter: s.RemainingAfter})
		if !s.Admit {
			fh.Deferred++
			continue
		}
		switch s.Priority {
		case runnerd.PriorityHigh:
			fh.High += s.Estimate
			f.Held += s.Estimate
		case runnerd.PriorityNormal:
			fh.Normal += s.Estimate
		default:
			fh.Low += s.Estimate
		}
	}
	planned, high := 0, 0
	f.LeftNow = cap
	for i := range f.Hours {
		fh := &f.Hours[i]
		planned += fh.High + fh.Normal + fh.Low
		high += fh.High
		fh.Window = fh.Real + planned
		f.LeftNow = min(f.LeftNow, cap-fh.Real-high)
	}
	f.LeftNow = max(0, f.LeftNow)
	return f
}

package engine

import (
	"slices"
	"strings"
	"testing"

	"runnerd/internal/budget"
	"runnerd/internal/config"
)

func TestOversubscribed(t *testing.T) {
	job := func(name, prio string, perDay, est int, enabled bool) JobCost {
		return JobCost{Job: &config.Job{Name: name, Priority: prio, Enabled: enabled}, PerDay: perDay, Estimate: budget.Estimate{Calls: est}}
	}
	costs := []JobCost{
		job("deploy", "high", 24, 4, true),     // 96
		job("orders", "normal", 288, 7, true),  // 2016
		job("small", "normal", 24, 1, true),    // 24
		job("audit", "low", 144, 5, true),      // 720
		job("off", "low", 10000, 10000, false), // disabled: not counted
	}
	if got := DailyDemand(costs); got != 96+2016+24+720 {
		t.Errorf("DailyDemand = %d; want %d (the disabled job left out)", got, 96+2016+24+720)
	}
	if got := Oversubscribed(costs, 100000); len(got) != 0 {
		t.Errorf("Oversubscribed(room for all) = %v; want none", got)
	}
	got := Oversubscribed(costs, 900)
	if len(got) != 2 {
		t.Fatalf("Oversubscribed(900) = %v; want normal and low", got)
	}
	n, l := got[0], got[1]
	if n.Priority.String() != "normal" || !slices.Equal(n.Jobs, []string{"orders", "small"}) || n.Demand != 2040 || n.Available != 804 {
		t.Errorf("normal shortfall = %+v; want orders, small: 2040 needed, 804 available", n)
	}
	if l.Priority.String() != "low" || !slices.Equal(l.Jobs, []string{"audit"}) || l.Demand != 720 || l.Available != 0 {
		t.Errorf("low shortfall = %+v; want audit: 720 needed, 0 available", l)
	}
	for _, want := range []string{"normal priority", "2040 calls a day", "orders, small", "804 left", "61% of their runs"} {
		if !strings.Contains(n.String(), want) {
			t.Errorf("%q lacks %q", n, want)
		}
	}
	if !strings.Contains(l.String(), "none of their runs can run") {
		t.Errorf("%q: want it to say none can run", l)
	}
	// High priority alone over the cap is named too.
	if got := Oversubscribed(costs[:1], 50); len(got) != 1 || got[0].Priority.String() != "high" {
		t.Errorf("Oversubscribed(high over the cap) = %v", got)
	}
}

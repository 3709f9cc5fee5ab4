package budget

import (
	"strings"
	"testing"
	"time"
)

func TestClassifierTransitions(t *testing.T) {
	base := mon.Add(9*time.Hour + 10*time.Minute) // Monday 09:10
	at := func(d time.Duration) time.Time { return base.Add(d) }
	type obs struct {
		at     time.Duration
		status int
		used   int // of cap 1000
		kind   string
		until  time.Time // checked when not zero
		reason string    // a fragment, checked when not empty
	}
	type probe struct {
		at    time.Duration
		kind  string
		probe bool
	}
	ms := time.Millisecond
	tests := []struct {
		name   string
		obs    []obs
		states []probe // State checks after the observations
	}{
		{
			name: "2xx stays ok",
			obs:  []obs{{0, 200, 10, KindOK, time.Time{}, ""}, {time.Second, 202, 11, KindOK, time.Time{}, ""}},
		},
		{
			name: "503 right after our burst is rate, then ok after the hold",
			obs: []obs{
				{0, 200, 10, KindOK, time.Time{}, ""},
				{200 * ms, 200, 11, KindOK, time.Time{}, ""},
				{400 * ms, 200, 12, KindOK, time.Time{}, ""},
				{600 * ms, 503, 13, KindRate, at(2600 * ms), "per-second rate"},
			},
			states: []probe{{2 * time.Second, KindRate, false}, {3 * time.Second, KindOK, false}},
		},
		{
			name: "a rate burst that goes on becomes external",
			obs: []obs{
				{0, 200, 10, KindOK, time.Time{}, ""},
				{100 * ms, 200, 11, KindOK, time.Time{}, ""},
				{200 * ms, 200, 11, KindOK, time.Time{}, ""},
				{400 * ms, 503, 12, KindRate, time.Time{}, ""},
				{600 * ms, 503, 13, KindRate, time.Time{}, ""},
				{800 * ms, 503, 14, KindRate, time.Time{}, ""},
				{time.Second, 503, 15, KindExternal, mon.Add(10 * time.Hour), "someone else"},
			},
		},
		{
			name: "503 with headroom and no burst is external until the next hour, then a probe",
			obs:  []obs{{0, 503, 100, KindExternal, mon.Add(10 * time.Hour), "only 100 of 1000 used"}},
			states: []probe{
				{49 * time.Minute, KindExternal, false},
				{50 * time.Minute, KindExternal, true},
			},
		},
		{
			name: "429 is read like 503",
			obs:  []obs{{0, 429, 100, KindExternal, mon.Add(10 * time.Hour), "HTTP 429"}},
		},
		{
			name: "the probe's 503 extends to the next boundary; a 2xx resets",
			obs: []obs{
				{0, 503, 100, KindExternal, mon.Add(10 * time.Hour), ""},
				{50*time.Minute + time.Second, 503, 100, KindExternal, mon.Add(11 * time.Hour), "again"},
				{110*time.Minute + time.Second, 200, 101, KindOK, time.Time{}, ""},
			},
		},
		{
			name: "503 near the cap: the allowance is spent",
			obs:  []obs{{0, 503, 950, KindExternal, mon.Add(10 * time.Hour), "allowance is spent"}},
		},
		{
			name: "server errors over several minutes are an outage; a 2xx ends it",
			obs: []obs{
				{0, 502, 10, KindOK, time.Time{}, ""},
				{time.Minute, 500, 10, KindOK, time.Time{}, ""},
				{2 * time.Minute, 0, 10, KindOK, time.Time{}, ""},
				{3 * time.Minute, 504, 10, KindOutage, time.Time{}, "4 server errors"},
				{4 * time.Minute, 200, 11, KindOK, time.Time{}, ""},
			},
		},
		{
			name: "many server errors within a minute are not an outage",
			obs: []obs{
				{0, 500, 10, KindOK, time.Time{}, ""},
				{10 * time.Second, 500, 10, KindOK, time.Time{}, ""},
				{20 * time.Second, 500, 10, KindOK, time.Time{}, ""},
				{30 * time.Second, 500, 10, KindOK, time.Time{}, ""},
			},
		},
		{
			name: "an answer between server errors restarts the count",
			obs: []obs{
				{0, 500, 10, KindOK, time.Time{}, ""},
				{time.Minute, 404, 10, KindOK, time.Time{}, ""},
				{2 * time.Minute, 500, 10, KindOK, time.Time{}, ""},
				{3 * time.Minute, 500, 10, KindOK, time.Time{}, ""},
				{4 * time.Minute, 500, 10, KindOK, time.Time{}, ""},
			},
		},
		{
			name: "a 4xx answer ends an external pause",
			obs: []obs{
				{0, 503, 10, KindExternal, time.Time{}, ""},
				{time.Hour, 400, 10, KindOK, time.Time{}, ""},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := NewClassifier()
			for i, o := range tt.obs {
				got := c.Observe(at(o.at), o.status, o.used, 1000)
				if got.Kind != o.kind {
					t.Fatalf("obs %d: Observe(+%v, %d, %d, 1000).Kind = %q (%s); want %q", i, o.at, o.status, o.used, got.Kind, got.Reason, o.kind)
				}
				if !o.until.IsZero() && !got.Until.Equal(o.until) {
					t.Errorf("obs %d: Until = %v; want %v", i, got.Until, o.until)
				}
				if o.reason != "" && !strings.Contains(got.Reason, o.reason) {
					t.Errorf("obs %d: Reason = %q; want it to contain %q", i, got.Reason, o.reason)
				}
			}
			for _, p := range tt.states {
				got := c.State(at(p.at))
				if got.Kind != p.kind || got.Probe != p.probe {
					t.Errorf("State(+%v) = %q probe=%v; want %q probe=%v", p.at, got.Kind, got.Probe, p.kind, p.probe)
				}
			}
		})
	}
}

func TestClassifierProbeOnce(t *testing.T) {
	c := NewClassifier()
	c.Observe(mon, 503, 0, 100)
	until := mon.Add(time.Hour)
	if ok, _, _ := c.admit(until.Add(-time.Second), false); ok {
		t.Fatal("admit(normal) before Until = true; want false")
	}
	if ok, _, _ := c.admit(mon, true); !ok {
		t.Fatal("admit(strong) while external = false; want true")
	}
	ok, probe, _ := c.admit(until, false)
	if !ok || !probe {
		t.Fatalf("admit at Until = %v, probe %v; want the probe", ok, probe)
	}
	if ok, _, _ := c.admit(until.Add(time.Second), false); ok {
		t.Fatal("second admit while the probe is out = true; want false")
	}
	c.releaseProbe(until)
	if ok, probe, _ := c.admit(until.Add(2*time.Second), false); !ok || !probe {
		t.Fatalf("admit after the probe was released = %v, %v; want a new probe", ok, probe)
	}
	// A probe never observed is given up after probeTimeout.
	if ok, probe, _ := c.admit(until.Add(2*time.Second+probeTimeout), false); !ok || !probe {
		t.Fatalf("admit after the probe timed out = %v, %v; want a new probe", ok, probe)
	}
}

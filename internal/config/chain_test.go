package config

import (
	"strings"
	"testing"
	"time"
)

const chainJobs = `
[[job]]
name = "a"
kind = "deploy"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-dev"
to_environment = "env-test"

[[job]]
name = "b"
kind = "execute"
after = "a"
process_id = "proc-orders"
atom_id = "atom-test"

[[job]]
name = "c"
kind = "deploy"
after = "b"
after_status = "ended"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`

func TestChainParsed(t *testing.T) {
	c := mustParse(t, base+"[defaults]\nschedule = \"@hourly\"\n"+chainJobs)
	var names []string
	for _, j := range c.Chain("a") {
		names = append(names, j.Name)
	}
	if strings.Join(names, " ") != "a b c" {
		t.Errorf("Chain(a) = %v; want a b c", names)
	}
	if h := c.ChainHead("c"); h != "a" {
		t.Errorf("ChainHead(c) = %q; want a", h)
	}
	b, cc := c.Job("b"), c.Job("c")
	if b.Schedule != "" || b.AfterStatus != AfterSucceeded || cc.AfterStatus != AfterEnded {
		t.Errorf("b schedule %q status %q, c status %q; want no schedule (not the [defaults] one), succeeded, ended", b.Schedule, b.AfterStatus, cc.AfterStatus)
	}
	if s, err := b.ParsedSchedule(); err != nil || !s.Next(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)).IsZero() {
		t.Errorf("a chained job's schedule fires: %v", err)
	}
	var enc strings.Builder
	if err := c.Encode(&enc); err != nil {
		t.Fatal(err)
	}
	again := mustParse(t, enc.String())
	if again.Job("c").After != "b" || again.Job("c").AfterStatus != AfterEnded || again.Job("a").After != "" {
		t.Errorf("Encode lost the chain:\n%s", enc.String())
	}
}

func TestChainErrors(t *testing.T) {
	for _, tc := range []struct{ name, src, want string }{
		{"unknown", strings.Replace(chainJobs, `after = "a"`, `after = "nope"`, 1), `job "b": after: no job "nope"`},
		{"itself", strings.Replace(chainJobs, `after = "a"`, `after = "b"`, 1), `job "b": after: a job cannot follow itself`},
		{"cycle", strings.Replace(chainJobs, `schedule = "0 2 * * *"`, `after = "c"`, 1),
			`the chain comes back to`},
		{"schedule", strings.Replace(chainJobs, `after = "a"`, "after = \"a\"\nschedule = \"@daily\"", 1),
			`job "b": schedule: a job with after = "a" runs when that job ends; it has no schedule of its own`},
		{"status without after", strings.Replace(chainJobs, `schedule = "0 2 * * *"`, "schedule = \"0 2 * * *\"\nafter_status = \"failed\"", 1),
			`job "a": after_status: only with after`},
		{"bad status", strings.Replace(chainJobs, `after_status = "ended"`, `after_status = "done"`, 1), `after_status: "done" is not allowed`},
		{"defaults", base + "[defaults]\nafter = \"a\"\n" + chainJobs, `after: a chain is made job by job`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			src := tc.src
			if !strings.HasPrefix(src, base) {
				src = base + src
			}
			_, err := Parse(testFile, []byte(src), testOpts())
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Parse() = %v; want an error with %q", err, tc.want)
			}
		})
	}
}

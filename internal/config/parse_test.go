package config

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

// base is a valid head of a file; the first [[job]] below it is on line 9.
const base = `[account]
id = "sim-account"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000

`

// execJob is a valid execute job starting on line 9 when appended to base.
const execJob = `[[job]]
name = "a"
kind = "execute"
schedule = "@hourly"
process_id = "proc-orders"
atom_id = "atom-test"
`

// brokenConfig is a configuration with a problem and the exact message.
type brokenConfig struct {
	name string
	src  string
	want string // the whole error text
}

var brokenConfigs = []brokenConfig{
	{"bad cron", base + `[[job]]
name = "a"
kind = "execute"
schedule = "61 * * * *"
process_id = "p"
atom_id = "x"
`, `jobs.toml:12: job "a": schedule: "61 * * * *" is not a valid schedule: end of range (61) above maximum (59): 61; use 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * 1-5") or @daily, @hourly, @every 10m`},
	{"cron with too few fields", base + strings.Replace(execJob, `"@hourly"`, `"0 2 *"`, 1),
		`jobs.toml:12: job "a": schedule: "0 2 *" is not a valid schedule: expected exactly 5 fields, found 3: [0 2 *]; use 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * 1-5") or @daily, @hourly, @every 10m`},
	{"duplicate key", base + execJob + `schedule = "0 2 * * *"
`, `jobs.toml:15: invalid TOML: Key 'job.schedule' has already been defined.`},
	{"cron never fires", base + strings.Replace(execJob, `"@hourly"`, `"0 0 30 2 *"`, 1),
		`jobs.toml:12: job "a": schedule: "0 0 30 2 *" never fires (no date matches)`},
	{"cron zone prefix", base + strings.Replace(execJob, `"@hourly"`, `"TZ=UTC"`, 1),
		`jobs.toml:12: job "a": schedule: "TZ=UTC": give the zone with the timezone key, not in the schedule`},
	{"every below a second", base + strings.Replace(execJob, `"@hourly"`, `"@every 500ms"`, 1),
		`jobs.toml:12: job "a": schedule: "@every 500ms": @every takes a whole number of seconds, at least 1s`},
	{"unknown zone", base + execJob + `timezone = "Mars/Olympus"
`, `jobs.toml:15: job "a": timezone: "Mars/Olympus" is not a known IANA time zone; use a name such as "Europe/Berlin", "America/New_York" or "UTC"`},
	{"unknown kind", base + strings.Replace(execJob, `"execute"`, `"exec"`, 1),
		`jobs.toml:11: job "a": kind: "exec" is not allowed; use execute, deploy, export or release`},
	{"missing process_id", base + `[[job]]
name = "a"
kind = "execute"
schedule = "@daily"
atom_id = "x"
`, `jobs.toml:9: job "a": process_id: required (or process_name): the process to execute`},
	{"process_id and process_name", base + execJob + `process_name = "Orders Sync"
`, `jobs.toml:15: job "a": process_name: give process_id or process_name, not both`},
	{"duplicate names", base + execJob + "\n" + execJob,
		`jobs.toml:17: job "a": name: duplicate job name; the job at line 10 has it too`},
	{"unknown top-level key", `colour = "blue"
` + base + execJob, `jobs.toml:1: colour: unknown key; allowed keys: account, budget, store, log, http, evidence, notify, defaults, job`},
	{"unknown key in account", `[account]
id = "sim-account"
usr = "runnerd@sim"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"
[budget]
daily_limit = 1000
`, `jobs.toml:3: account.usr: unknown key (did you mean "user"?)`},
	{"unknown key in job", base + execJob + `shedule = "@daily"
`, `jobs.toml:15: job "a": shedule: unknown key (did you mean "schedule"?)`},
	{"unknown key in filter", base + `[[job]]
name = "e"
kind = "export"
schedule = "@daily"
object = "AuditLog"
output = "out-{window_start}.jsonl"
[[job.filter]]
property = "type"
operator = "EQUALS"
argument = ["x"]
`, `jobs.toml:18: job "e": filter.argument: unknown key (did you mean "arguments"?)`},
	{"property not a string", base + execJob + `[job.properties]
N = 5
`, `jobs.toml:16: job "a": properties.N: must be a string, not an integer`},
	{"bad duration", base + execJob + `timeout = "90"
`, `jobs.toml:15: job "a": timeout: "90" is not a duration; use a number with a unit, such as "90s", "30m" or "2h"`},
	{"duration as integer", base + execJob + `jitter = 30
`, `jobs.toml:15: job "a": jitter: must be a duration string such as "90s", "30m" or "2h", not an integer`},
	{"wrong type", base + execJob + `retries = "2"
`, `jobs.toml:15: job "a": retries: must be an integer, not a string`},
	{"negative retries", base + execJob + `retries = -1
`, `jobs.toml:15: job "a": retries: must be 0 or more, not -1`},
	{"inline password", `[account]
id = "sim-account"
user = "runnerd@sim"
password = "hunter2-canary"
[budget]
daily_limit = 1000
`, `jobs.toml:4: account.password: ` + secretHint},
	{"two password sources", `[account]
id = "sim-account"
user = "runnerd@sim"
password_file = "/etc/runnerd/boomi.secret"
password_env = "RUNNERD_PASSWORD"
[budget]
daily_limit = 1000
`, `jobs.toml:5: account.password_env: give exactly one of password_file, password_env, credential; password_file is also set`},
	{"no password source", `[account]
id = "sim-account"
user = "runnerd@sim"
[budget]
daily_limit = 1000
`, `jobs.toml:1: account: no password source; give exactly one of password_file, password_env, credential`},
	{"missing account id", `[account]
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"
[budget]
daily_limit = 1000
`, `jobs.toml:1: account.id: required (the AtomSphere account ID, e.g. "acme-AB12CD")`},
	{"missing budget", `[account]
id = "sim-account"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"
`, `jobs.toml: budget: missing table [budget] (daily_limit is required)`},
	{"reserve not below daily_limit", strings.Replace(base, "daily_limit = 1000\n", "daily_limit = 1000\nreserve = 1000\n", 1),
		`jobs.toml:8: budget.reserve: 1000 must be less than daily_limit (1000)`},
	{"zero daily_limit", strings.Replace(base, "daily_limit = 1000", "daily_limit = 0", 1),
		`jobs.toml:7: budget.daily_limit: must be greater than 0, not 0`},
	{"bad rate", strings.Replace(base, "daily_limit = 1000\n", "daily_limit = 1000\nrate = -1.5\n", 1),
		`jobs.toml:8: budget.rate: must be a number of requests per second greater than 0, not -1.5`},
	{"bad filter operator", base + `[[job]]
name = "e"
kind = "export"
schedule = "@daily"
object = "AuditLog"
output = "out-{window_start}.jsonl"
[[job.filter]]
property = "type"
operator = "EQ"
arguments = ["x"]
`, `jobs.toml:17: job "e": filter.operator: "EQ" is not an operator; use BETWEEN, CONTAINS, EQUALS, GREATER_THAN, GREATER_THAN_OR_EQUAL, IS_NOT_NULL, IS_NULL, LESS_THAN, LESS_THAN_OR_EQUAL, LIKE, NOT_CONTAINS, NOT_EQUALS or STARTS_WITH`},
	{"filter argument count", base + `[[job]]
name = "e"
kind = "export"
schedule = "@daily"
object = "AuditLog"
output = "out-{window_start}.jsonl"
[[job.filter]]
property = "date"
operator = "BETWEEN"
arguments = ["2024-01-01T00:00:00Z"]
`, `jobs.toml:18: job "e": filter.arguments: BETWEEN takes 2 arguments, not 1`},
	{"bad output placeholder", base + `[[job]]
name = "e"
kind = "export"
schedule = "@daily"
object = "AuditLog"
output = "./exports/{job}/{start}.jsonl"
`, `jobs.toml:14: job "e": output: unknown placeholder "{start}"; use {job} {window_start} {window_end} {date}`},
	{"unknown export object", base + `[[job]]
name = "e"
kind = "export"
schedule = "@daily"
object = "Widget"
output = "out-{window_start}.jsonl"
`, `jobs.toml:13: job "e": object: "Widget" is not allowed; use AuditLog, ExecutionRecord, Event, Deployment, DeployedPackage, PackagedComponent, Atom, Environment, Process or EnvironmentAtomAttachment`},
	{"deploy to the same environment", base + `[[job]]
name = "d"
kind = "deploy"
schedule = "0 2 * * 1-5"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-test"
`, `jobs.toml:15: job "d": to_environment: is the same as from_environment ("env-test"); a deploy copies between two environments`},
	{"deploy method of execute", base + `[[job]]
name = "d"
kind = "deploy"
schedule = "0 2 * * 1-5"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
method = "request"
`, `jobs.toml:16: job "d": method: "request" is not allowed; use package or deployProcess`},
	{"key of another kind", base + `[[job]]
name = "d"
kind = "deploy"
schedule = "0 2 * * 1-5"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
atom_id = "atom-test"
`, `jobs.toml:16: job "d": atom_id: not a key of kind "deploy"; it belongs to kind execute`},
	{"bad priority", base + execJob + `priority = "urgent"
`, `jobs.toml:15: job "a": priority: "urgent" is not allowed; use high, normal or low`},
	{"bad name", base + strings.Replace(execJob, `name = "a"`, `name = "Orders Sync"`, 1),
		`jobs.toml:10: job "Orders Sync": name: "Orders Sync" is not allowed; use lower-case letters, digits, '.', '_' and '-' ([a-z0-9._-]+)`},
	{"dot-dot name", base + strings.Replace(execJob, `name = "a"`, `name = ".."`, 1),
		`jobs.toml:10: job "..": name: ".." is not allowed; use lower-case letters, digits, '.', '_' and '-' ([a-z0-9._-]+)`},
	{"missing name", base + `[[job]]
kind = "execute"
schedule = "@hourly"
process_id = "p"
atom_id = "x"
`, `jobs.toml:9: job.name: required (unique, [a-z0-9._-]+)`},
	{"job as a table", base + `[job]
name = "a"
`, `jobs.toml:9: job: must be an array of tables ([[job]]), not a table`},
	{"name in defaults", base + `[defaults]
name = "x"
`, `jobs.toml:10: defaults.name: a job name cannot be a default; give each [[job]] its own name`},
	{"bad value in defaults", base + `[defaults]
priority = "urgent"
` + execJob, `jobs.toml:10: defaults.priority: "urgent" is not allowed; use high, normal or low`},
	{"bad log level", base + `[log]
level = "verbose"
`, `jobs.toml:10: log.level: "verbose" is not allowed; use debug, info, warn or error`},
	{"bad listen", base + `[http]
listen = "localhost"
`, `jobs.toml:10: http.listen: "localhost" is not host:port (e.g. "127.0.0.1:9271"); leave it empty to turn the listener off`},
	{"webhook without url", base + `[[notify]]
kind = "webhook"
`, `jobs.toml:9: notify.url: required for kind "webhook" (an http or https URL)`},
	{"webhook url not shown", base + `[[notify]]
kind = "webhook"
url = "ftp://hooks.example.com/T0/B0/tok-canary"
`, `jobs.toml:11: notify.url: is not an absolute http or https URL`},
	{"unknown event", base + `[[notify]]
kind = "command"
command = "true"
events = [
  "failed",
  "exploded",
]
`, `jobs.toml:14: notify.events: "exploded" is not an event; use failed, recovered, deferred, missed, unknown, budget, classification or auth`},
	{"notify names an unknown job", base + execJob + `[[notify]]
kind = "command"
command = "true"
jobs = ["b"]
`, `jobs.toml:18: notify.jobs: no job is named "b"`},
	{"thresholds out of order", base + `[[notify]]
kind = "command"
command = "true"
thresholds = [80, 50]
`, `jobs.toml:12: notify.thresholds: must be in ascending order (50 follows 80)`},
	{"toml syntax", base + `[[job]]
name = "a
`, `jobs.toml:10: invalid TOML: strings cannot contain newlines`},
	{"syntax error on a password line hides the value", `[account]
id = "sim-account"
password = "hunter2-canary
`, `jobs.toml:3: invalid TOML: syntax error on a line that holds a secret (message withheld so the value is not shown)`},
}

func TestParseBroken(t *testing.T) {
	tests := brokenConfigs
	seen := map[string]bool{}
	for _, tt := range tests {
		if seen[tt.name] {
			t.Fatalf("duplicate case %q", tt.name)
		}
		seen[tt.name] = true
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse(testFile, []byte(tt.src), testOpts())
			if err == nil {
				t.Fatalf("Parse() = %+v, nil; want error %q", c, tt.want)
			}
			if got := err.Error(); got != tt.want {
				t.Errorf("Parse() error:\n got: %s\nwant: %s", got, tt.want)
			}
			var list ErrorList
			if !errors.As(err, &list) || len(list) == 0 {
				t.Errorf("Parse() error %T is not a non-empty ErrorList", err)
			}
			if strings.Contains(err.Error(), "canary") {
				t.Errorf("Parse() error shows a secret: %s", err)
			}
		})
	}
	if len(tests) < 20 {
		t.Fatalf("only %d broken configs", len(tests))
	}
}

func TestNotifyNames(t *testing.T) {
	c := mustParse(t, base+`[[notify]]
kind = "webhook"
url = "https://hooks.example.com/a"
[[notify]]
kind = "command"
command = "true"
[[notify]]
name = "pager"
kind = "command"
command = "true"
`)
	var got []string
	for _, n := range c.Notify {
		got = append(got, n.Name)
	}
	if want := []string{"webhook1", "command2", "pager"}; strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("notify names = %v; want %v", got, want)
	}
	n := c.Notify[0]
	if strings.Join(n.Events, ",") != strings.Join(Events, ",") || n.MinPriority != "low" ||
		n.Timeout.Duration != DefaultNotifyTimeout || n.Remind.Duration != DefaultNotifyRemind ||
		fmt.Sprint(n.Thresholds) != "[50 80 95]" {
		t.Errorf("notify defaults = %+v", n)
	}
	_, err := Parse(testFile, []byte(base+`[[notify]]
name = "x"
kind = "command"
command = "true"
[[notify]]
name = "x"
kind = "command"
command = "true"
`), testOpts())
	want := `jobs.toml:14: notify.name: duplicate notify name "x"; the [[notify]] at line 9 has it too`
	if err == nil || err.Error() != want {
		t.Errorf("Parse(duplicate notify) = %v; want %q", err, want)
	}
}

// An incremental export whose file name does not change with the window would
// replace the previous window's file once the watermark has passed it.
func TestExportOutputNeedsTheWindow(t *testing.T) {
	base := "[account]\nid = \"a\"\nuser = \"u\"\npassword_env = \"P\"\n[budget]\ndaily_limit = 10\n[[job]]\nname = \"e\"\nkind = \"export\"\nschedule = \"@hourly\"\n"
	tests := []struct {
		name, extra string
		wantErr     string
	}{
		{"date only", "object = \"AuditLog\"\noutput = \"x/{job}/{date}.jsonl\"\n", `jobs.toml:12: job "e": output: "x/{job}/{date}.jsonl" has no {window_start} or {window_end}`},
		{"window_end", "object = \"AuditLog\"\noutput = \"x/{window_end}.jsonl\"\n", ""},
		{"full export may reuse its name", "object = \"Atom\"\noutput = \"x/atoms.jsonl\"\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("jobs.toml", []byte(base+tt.extra), LoadOptions{Getenv: func(string) string { return "" }})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Errorf("Parse() = %v; want no error", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Errorf("Parse() = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

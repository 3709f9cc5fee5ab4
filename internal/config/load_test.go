package config

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseReportsAllProblemsAtOnce(t *testing.T) {
	src := `colour = "blue"
[account]
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"
[budget]
daily_limit = 100
reserve = 200

[[job]]
name = "a"
kind = "execute"
schedule = "99 * * * *"
atom_id = "x"
timeout = "soon"

[[job]]
name = "a"
kind = "deploy"
schedule = "@daily"
process_id = "p"
from_environment = "env-test"
to_environment = "env-test"
wait = true
`
	_, err := Parse(testFile, []byte(src), testOpts())
	var list ErrorList
	if !errors.As(err, &list) {
		t.Fatalf("Parse() error = %v; want an ErrorList", err)
	}
	want := []string{
		`jobs.toml:1: colour: unknown key; allowed keys: account, budget, store, log, http, evidence, notify, defaults, job`,
		`jobs.toml:2: account.id: required (the AtomSphere account ID, e.g. "acme-AB12CD")`,
		`jobs.toml:7: budget.reserve: 200 must be less than daily_limit (100)`,
		`jobs.toml:9: job "a": process_id: required (or process_name): the process to execute`,
		`jobs.toml:12: job "a": schedule: "99 * * * *" is not a valid schedule: end of range (99) above maximum (59): 99; use 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * 1-5") or @daily, @hourly, @every 10m`,
		`jobs.toml:14: job "a": timeout: "soon" is not a duration; use a number with a unit, such as "90s", "30m" or "2h"`,
		`jobs.toml:17: job "a": name: duplicate job name; the job at line 10 has it too`,
		`jobs.toml:22: job "a": to_environment: is the same as from_environment ("env-test"); a deploy copies between two environments`,
		`jobs.toml:23: job "a": wait: not a key of kind "deploy"; it belongs to kind execute`,
	}
	var got []string
	for _, e := range list {
		got = append(got, e.Error())
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Parse() errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if err.Error() != strings.Join(want, "\n") {
		t.Errorf("ErrorList.Error() = %q; want the lines joined", err.Error())
	}
	// Sorted by line.
	for i := 1; i < len(list); i++ {
		if list[i].Line < list[i-1].Line {
			t.Errorf("errors not sorted by line: %d after %d", list[i].Line, list[i-1].Line)
		}
	}
	var one *Error
	if !errors.As(err, &one) || one.Line != 1 || one.Key != "colour" {
		t.Errorf("errors.As(*Error) = %+v; want the first problem", one)
	}
}

func TestErrorFormat(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "f.toml", Line: 3, Job: "x", Key: "schedule", Msg: "bad"}, `f.toml:3: job "x": schedule: bad`},
		{Error{File: "f.toml", Line: 3, Key: "account.id", Msg: "required"}, `f.toml:3: account.id: required`},
		{Error{File: "f.toml", Key: "budget", Msg: "missing"}, `f.toml: budget: missing`},
		{Error{Line: 2, Msg: "m"}, `line 2: m`},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error(%+v) = %q; want %q", tt.e, got, tt.want)
		}
	}
}

func TestExampleLoads(t *testing.T) {
	path := filepath.Join("..", "..", "jobs.example.toml")
	c, err := Load(path, testOpts())
	if err != nil {
		t.Fatalf("Load(%q) error:\n%v", path, err)
	}
	if c.File != path {
		t.Errorf("File = %q; want %q", c.File, path)
	}
	if c.Account.ID != "sim-account" || c.Account.URL != "http://127.0.0.1:9090/api/rest/v1" ||
		c.Account.User != "runnerd@sim" || c.Account.PasswordEnv != "RUNNERD_PASSWORD" {
		t.Errorf("Account = %+v; want the simulator's", c.Account)
	}
	pw, err := c.Account.Password(env("RUNNERD_PASSWORD", "sim-password"))
	if err != nil || pw.Reveal() != "sim-password" {
		t.Errorf("Password() = %v, %v; want sim-password", pw.Reveal() != "", err)
	}
	byKind := map[string]int{}
	for _, j := range c.Jobs {
		byKind[j.Kind]++
		if _, err := j.NextFires(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), 3); err != nil {
			t.Errorf("job %q NextFires: %v", j.Name, err)
		}
	}
	if byKind[KindExecute] < 1 || byKind[KindDeploy] < 1 || byKind[KindExport] < 2 {
		t.Errorf("jobs by kind = %v; want execute, deploy and two exports", byKind)
	}
	ex := c.Job("orders-sync")
	if ex == nil || ex.ProcessID != "proc-orders" || ex.AtomID != "atom-test" || !ex.Wait {
		t.Errorf("orders-sync = %+v; want proc-orders on atom-test, wait", ex)
	}
	dep := c.Job("promote-orders")
	if dep == nil || dep.FromEnvironment != "env-test" || dep.ToEnvironment != "env-prod" || dep.Priority != "high" ||
		dep.Schedule != "0 2 * * 1-5" || dep.Timezone != "Europe/Berlin" {
		t.Errorf("promote-orders = %+v", dep)
	}
	audit := c.Job("audit-export")
	if audit == nil || audit.Object != "AuditLog" || audit.Format != "jsonl" || audit.Output != "./exports/{job}/{window_start}.jsonl" ||
		audit.WindowProperty != "date" {
		t.Errorf("audit-export = %+v", audit)
	}
	exr := c.Job("executions-export")
	if exr == nil || exr.Object != "ExecutionRecord" || exr.Format != "csv" || exr.WindowProperty != "executionTime" {
		t.Errorf("executions-export = %+v", exr)
	}
	// [defaults] catch_up_window = "12h": a job without its own gets it; a job with its own keeps it.
	if audit.CatchUpWindow.Duration != 12*time.Hour || ex.CatchUpWindow.Duration != 2*time.Hour {
		t.Errorf("catch_up_window = %v / %v; want 12h (default) / 2h (own)", audit.CatchUpWindow, ex.CatchUpWindow)
	}
	if off := c.Job("invoices-nightly"); off == nil || off.Enabled || off.Wait {
		t.Errorf("invoices-nightly = %+v; want enabled=false wait=false", off)
	}
	if len(c.Notify) != 2 || c.Notify[1].Name != "command2" {
		t.Errorf("Notify = %+v; want two, the second named command2", c.Notify)
	}
}

// TestExampleDocumentsEveryKey checks that jobs.example.toml mentions every key.
func TestExampleDocumentsEveryKey(t *testing.T) {
	text := string(readExample(t))
	keys := append([]string{}, jobKeyNames...)
	keys = append(keys, "id", "url", "user", "password_file", "password_env", "credential", "ca_file",
		"daily_limit", "reserve", "rate", "retention", "path", "level", "format", "listen", "public_url",
		"events", "jobs", "min_priority", "secret_file", "remind", "thresholds", "command",
		"property", "operator", "arguments", "instance", "lease", "[defaults]", "[http]", "[log]", "[store]", "[[notify]]")
	for _, k := range keys {
		if !strings.Contains(text, k) {
			t.Errorf("jobs.example.toml does not mention %q", k)
		}
	}
}

func TestDefaults(t *testing.T) {
	src := base + `[defaults]
timezone = "Europe/Berlin"
priority = "low"
enabled = false
atom_id = "atom-test"
method = "package"
retries = 3
[defaults.properties]
A = "from-defaults"
B = "from-defaults"

[[job]]
name = "own"
kind = "execute"
schedule = "@daily"
process_id = "p"
priority = "high"
enabled = true
[job.properties]
B = "own"

[[job]]
name = "inherits"
kind = "execute"
schedule = "@daily"
process_id = "p"

[[job]]
name = "deploy"
kind = "deploy"
schedule = "@daily"
process_id = "p"
from_environment = "env-test"
to_environment = "env-prod"
`
	c := mustParse(t, src)
	own, inh, dep := c.Job("own"), c.Job("inherits"), c.Job("deploy")
	tests := []struct {
		name      string
		got, want any
	}{
		{"own priority wins", own.Priority, "high"},
		{"default priority", inh.Priority, "low"},
		{"explicit enabled true wins over default false", own.Enabled, true},
		{"default enabled false", inh.Enabled, false},
		{"default timezone", inh.Timezone, "Europe/Berlin"},
		{"default retries", own.Retries, 3},
		{"default atom_id for execute", inh.AtomID, "atom-test"},
		{"execute key not given to deploy", dep.AtomID, ""},
		{"method of deploy applies to deploy", dep.Method, "package"},
		{"method of deploy not applied to execute", inh.Method, "request"},
		{"properties merge, own wins", own.Properties, map[string]string{"A": "from-defaults", "B": "own"}},
		{"properties from defaults", inh.Properties, map[string]string{"A": "from-defaults", "B": "from-defaults"}},
		{"deploy has no properties", dep.Properties, map[string]string(nil)},
		{"defaults recorded", c.Defaults.Set, []string{"timezone", "priority", "retries", "enabled", "atom_id", "method", "properties"}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestBuiltinDefaults(t *testing.T) {
	src := base + execJob + `
[[job]]
name = "d"
kind = "deploy"
schedule = "@daily"
process_id = "p"
from_environment = "env-test"
to_environment = "env-prod"

[[job]]
name = "x1"
kind = "export"
schedule = "@daily"
object = "Event"
output = "o-{window_start}.jsonl"

[[job]]
name = "x2"
kind = "export"
schedule = "@daily"
object = "Atom"
output = "o.jsonl"

[[job]]
name = "x3"
kind = "export"
schedule = "@daily"
object = "AuditLog"
window_property = ""
output = "o.jsonl"
`
	c := mustParse(t, src)
	a, d, x1, x2, x3 := c.Job("a"), c.Job("d"), c.Job("x1"), c.Job("x2"), c.Job("x3")
	tests := []struct {
		name      string
		got, want any
	}{
		{"url", c.Account.URL, DefaultURL},
		{"reserve 10%", c.Budget.Reserve, 100},
		{"rate", c.Budget.Rate, 5.0},
		{"retention", c.Budget.Retention.Duration, 90 * 24 * time.Hour},
		{"store", c.Store.Path, "./runnerd.db"},
		{"log", c.Log, Log{Level: "info", Format: "auto"}},
		{"timezone", a.Timezone, "UTC"},
		{"priority", a.Priority, "normal"},
		{"timeout", a.Timeout.Duration, time.Hour},
		{"overlap", a.Overlap, "skip"},
		{"catch_up", a.CatchUp, "latest"},
		{"catch_up_window", a.CatchUpWindow.Duration, 24 * time.Hour},
		{"jitter", a.Jitter.Duration, time.Duration(0)},
		{"retries", a.Retries, 0},
		{"enabled", a.Enabled, true},
		{"execute method", a.Method, "request"},
		{"wait", a.Wait, true},
		{"on_unknown", a.OnUnknown, "skip"},
		{"deploy method", d.Method, "package"},
		{"listener_status", d.ListenerStatus, "RUNNING"},
		{"deploy wait unset", d.Wait, false},
		{"Event window", x1.WindowProperty, "eventDate"},
		{"Atom: full export", x2.WindowProperty, ""},
		{"explicit empty window", x3.WindowProperty, ""},
		{"first_window", x1.FirstWindow.Duration, 24 * time.Hour},
		{"format", x1.Format, "jsonl"},
		{"line", d.Line, 16},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s: got %v; want %v", tt.name, tt.got, tt.want)
		}
	}
}

func TestStorePathFromStateDirectory(t *testing.T) {
	tests := []struct{ state, want string }{
		{"", "./runnerd.db"},
		{"/var/lib/runnerd", "/var/lib/runnerd/runnerd.db"},
		{"/var/lib/runnerd/:/var/lib/other", "/var/lib/runnerd/runnerd.db"},
	}
	for _, tt := range tests {
		c, err := Parse(testFile, []byte(base), LoadOptions{Getenv: env("STATE_DIRECTORY", tt.state)})
		if err != nil {
			t.Fatal(err)
		}
		if c.Store.Path != tt.want {
			t.Errorf("STATE_DIRECTORY=%q: Store.Path = %q; want %q", tt.state, c.Store.Path, tt.want)
		}
	}
}

func TestPropertiesAreFreeForm(t *testing.T) {
	c := mustParse(t, base+execJob+`[job.properties]
ANY_NAME = "x"
"with space" = "y"
`)
	want := map[string]string{"ANY_NAME": "x", "with space": "y"}
	if got := c.Jobs[0].Properties; !reflect.DeepEqual(got, want) {
		t.Errorf("Properties = %v; want %v", got, want)
	}
}

func TestDuration(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		text string
	}{
		{"90s", 90 * time.Second, "1m30s"},
		{"30m", 30 * time.Minute, "30m"},
		{"2h", 2 * time.Hour, "2h"},
		{"1h30m", 90 * time.Minute, "1h30m"},
		{"0s", 0, "0s"},
		{"1.5s", 1500 * time.Millisecond, "1.5s"},
		{"2160h", 2160 * time.Hour, "2160h"},
	}
	for _, tt := range tests {
		var d Duration
		if err := d.UnmarshalText([]byte(tt.in)); err != nil || d.Duration != tt.want {
			t.Errorf("UnmarshalText(%q) = %v, %v; want %v", tt.in, d.Duration, err, tt.want)
		}
		if b, _ := d.MarshalText(); string(b) != tt.text {
			t.Errorf("MarshalText(%v) = %q; want %q", tt.want, b, tt.text)
		}
	}
	var d Duration
	if err := d.UnmarshalText([]byte("90")); err == nil {
		t.Errorf("UnmarshalText(%q) = nil error; want one", "90")
	}
}

func TestLoadMissingFile(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "nope.toml"), testOpts())
	if !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v; want ErrNotExist", err)
	}
}

// TestRelativePathsUnderStateDirectory: under the unit (STATE_DIRECTORY set)
// a relative [store] path and a relative export output resolve in the state
// directory, not against the unit's read-only working directory; absolute
// ones and a shell without STATE_DIRECTORY keep them as written.
func TestRelativePathsUnderStateDirectory(t *testing.T) {
	conf := base + `
[store]
path = "./ledger/runnerd.db"

[[job]]
name = "audit"
kind = "export"
schedule = "0 * * * *"
object = "AuditLog"
window_property = "date"
output = "./exports/{job}/{window_start}.jsonl"

[[job]]
name = "abs"
kind = "export"
schedule = "0 * * * *"
object = "AuditLog"
window_property = "date"
output = "/srv/exports/{window_start}.jsonl"
`
	for _, tc := range []struct{ state, store, rel string }{
		{"/var/lib/runnerd", "/var/lib/runnerd/ledger/runnerd.db", "/var/lib/runnerd/exports/{job}/{window_start}.jsonl"},
		{"", "./ledger/runnerd.db", "./exports/{job}/{window_start}.jsonl"},
	} {
		c, err := Parse(testFile, []byte(conf), LoadOptions{Getenv: env("STATE_DIRECTORY", tc.state)})
		if err != nil {
			t.Fatal(err)
		}
		if c.Store.Path != tc.store || c.Job("audit").Output != tc.rel || c.Job("abs").Output != "/srv/exports/{window_start}.jsonl" {
			t.Errorf("STATE_DIRECTORY=%q: store %q, outputs %q, %q; want %q, %q and the absolute one kept",
				tc.state, c.Store.Path, c.Job("audit").Output, c.Job("abs").Output, tc.store, tc.rel)
		}
	}
}

func TestJobHint(t *testing.T) {
	c := &Config{Jobs: []Job{{Name: "promote-orders"}, {Name: "audit-export"}}}
	name := "promote-orders"
	if h := c.JobHint("promote-order"); !strings.Contains(h, fmt.Sprintf("did you mean %q?", name)) || !strings.Contains(h, "jobs: audit-export, "+name) {
		t.Errorf("JobHint(promote-order) = %q; want the suggestion and the sorted list", h)
	}
	if h := c.JobHint("zzzzzzzz"); strings.Contains(h, "did you mean") || !strings.Contains(h, "jobs: ") {
		t.Errorf("JobHint(far off) = %q; want only the list", h)
	}
	if h := (&Config{}).JobHint("x"); h != "it has no jobs" {
		t.Errorf("JobHint with no jobs = %q", h)
	}
}

// TestHostExampleLoads: systemd/jobs.host.toml, the package's starting point,
// loads as the unit would run it: the credential from the unit, the real API
// URL, the ledger and a relative export in the state directory.
func TestHostExampleLoads(t *testing.T) {
	path := filepath.Join("..", "..", "systemd", "jobs.host.toml")
	c, err := Load(path, LoadOptions{Getenv: env("STATE_DIRECTORY", "/var/lib/runnerd")})
	if err != nil {
		t.Fatalf("Load(%q):\n%v", path, err)
	}
	if c.Account.Credential != "boomi" || c.Account.URL != DefaultURL || c.Store.Path != "/var/lib/runnerd/runnerd.db" {
		t.Errorf("account %+v, store %q; want credential boomi, the default URL, the state directory", c.Account, c.Store.Path)
	}
	if j := c.Job("audit-export"); j == nil || !strings.HasPrefix(j.Output, "/var/lib/runnerd/exports/") {
		t.Errorf("audit-export output = %+v; want it under the state directory", j)
	}
}

// TestPublicURL: [http] public_url is an http(s) URL, kept with one trailing
// slash; anything else is refused naming the key.
func TestPublicURL(t *testing.T) {
	for _, tc := range []struct{ in, want, err string }{
		{"https://runnerd.example.com", "https://runnerd.example.com/", ""},
		{"http://10.0.0.5:9271/runnerd/", "http://10.0.0.5:9271/runnerd/", ""},
		{"runnerd.example.com", "", "public_url"},
		{"ftp://x/", "", "public_url"},
		{"https://u:p@x/", "", "public_url"},
		{"https://x/?a=1", "", "public_url"},
	} {
		c, err := Parse("jobs.toml", []byte(base+"[http]\npublic_url = \""+tc.in+"\"\n"), LoadOptions{Getenv: func(string) string { return "" }})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) || !strings.Contains(err.Error(), "jobs.toml:") {
				t.Errorf("public_url %q: err = %v; want one naming the file, line and %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || c.HTTP.PublicURL != tc.want {
			t.Errorf("public_url %q = %q, %v; want %q", tc.in, c.HTTP.PublicURL, err, tc.want)
		}
	}
}

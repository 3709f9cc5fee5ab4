package config

import (
	"fmt"
	"regexp"
	"slices"
	"sort"
	"strings"
	"time"

	"runnerd"

	"github.com/robfig/cron/v3"

	"runnerd/internal/atomapi"
	"runnerd/internal/schedule"
)

// kinds is a set of job kinds a key belongs to.
type kinds uint8

const (
	kExecute kinds = 1 << iota
	kDeploy
	kExport
	kRelease
	kAll = kExecute | kDeploy | kExport | kRelease
)

var kindBits = map[string]kinds{KindExecute: kExecute, KindDeploy: kDeploy, KindExport: kExport, KindRelease: kRelease}

// JobKinds lists the job kinds.
var JobKinds = []string{KindExecute, KindDeploy, KindExport, KindRelease}

func (k kinds) names() []string {
	var out []string
	for _, n := range JobKinds {
		if k&kindBits[n] != 0 {
			out = append(out, n)
		}
	}
	return out
}

// jobKey describes one job key: its TOML name, the kinds it belongs to and
// the field it fills.
type jobKey struct {
	name  string
	kinds kinds
	field func(*Job) any // a pointer to the field
}

// jobKeys lists every job key in documentation order.
var jobKeys = []jobKey{
	{"name", kAll, func(j *Job) any { return &j.Name }},
	{"kind", kAll, func(j *Job) any { return &j.Kind }},
	{"schedule", kAll, func(j *Job) any { return &j.Schedule }},
	{"timezone", kAll, func(j *Job) any { return &j.Timezone }},
	{"priority", kAll, func(j *Job) any { return &j.Priority }},
	{"timeout", kAll, func(j *Job) any { return &j.Timeout }},
	{"overlap", kAll, func(j *Job) any { return &j.Overlap }},
	{"catch_up", kAll, func(j *Job) any { return &j.CatchUp }},
	{"catch_up_window", kAll, func(j *Job) any { return &j.CatchUpWindow }},
	{"jitter", kAll, func(j *Job) any { return &j.Jitter }},
	{"retries", kAll, func(j *Job) any { return &j.Retries }},
	{"enabled", kAll, func(j *Job) any { return &j.Enabled }},
	{"after", kAll, func(j *Job) any { return &j.After }},
	{"after_status", kAll, func(j *Job) any { return &j.AfterStatus }},
	{"process_id", kExecute | kDeploy | kRelease, func(j *Job) any { return &j.ProcessID }},
	{"process_name", kExecute, func(j *Job) any { return &j.ProcessName }},
	{"atom_id", kExecute, func(j *Job) any { return &j.AtomID }},
	{"method", kExecute | kDeploy | kRelease, func(j *Job) any { return &j.Method }},
	{"wait", kExecute, func(j *Job) any { return &j.Wait }},
	{"on_unknown", kExecute | kDeploy | kRelease, func(j *Job) any { return &j.OnUnknown }},
	{"log_level", kExecute, func(j *Job) any { return &j.LogLevel }},
	{"artifacts", kExecute, func(j *Job) any { return &j.Artifacts }},
	{"on_timeout", kExecute, func(j *Job) any { return &j.OnTimeout }},
	{"properties", kExecute, func(j *Job) any { return &j.Properties }},
	{"from_environment", kDeploy | kRelease, func(j *Job) any { return &j.FromEnvironment }},
	{"to_environment", kDeploy | kRelease, func(j *Job) any { return &j.ToEnvironment }},
	{"listener_status", kDeploy | kRelease, func(j *Job) any { return &j.ListenerStatus }},
	{"atoms", kRelease, func(j *Job) any { return &j.Atoms }},
	{"pause_schedules", kRelease, func(j *Job) any { return &j.PauseSchedules }},
	{"listeners", kRelease, func(j *Job) any { return &j.Listeners }},
	{"listener_timeout", kRelease, func(j *Job) any { return &j.ListenerTimeout }},
	{"extensions", kRelease, func(j *Job) any { return &j.Extensions }},
	{"smoke_process_id", kRelease, func(j *Job) any { return &j.SmokeProcessID }},
	{"smoke_atom_id", kRelease, func(j *Job) any { return &j.SmokeAtomID }},
	{"smoke_timeout", kRelease, func(j *Job) any { return &j.SmokeTimeout }},
	{"object", kExport, func(j *Job) any { return &j.Object }},
	{"window_property", kExport, func(j *Job) any { return &j.WindowProperty }},
	{"first_window", kExport, func(j *Job) any { return &j.FirstWindow }},
	{"output", kExport, func(j *Job) any { return &j.Output }},
	{"format", kExport, func(j *Job) any { return &j.Format }},
	{"filter", kExport, func(j *Job) any { return &j.Filters }},
}

var jobKeyNames, jobKeyByName = func() ([]string, map[string]jobKey) {
	names := make([]string, len(jobKeys))
	by := map[string]jobKey{}
	for i, k := range jobKeys {
		names[i] = k.name
		by[k.name] = k
	}
	return names, by
}()

// Allowed values.
var (
	overlaps        = []string{runnerd.OverlapSkip, runnerd.OverlapQueue, runnerd.OverlapAllow}
	catchUps        = []string{runnerd.CatchUpNone, runnerd.CatchUpLatest, runnerd.CatchUpAll}
	executeMethods  = []string{"request", "executeProcess"}
	deployMethods   = []string{"package", "deployProcess"}
	onUnknowns      = []string{runnerd.OnUnknownSkip, runnerd.OnUnknownRefire}
	evidenceLevels  = append(append([]string(nil), atomapi.LogLevels...), LogLevelOff)
	onTimeouts      = []string{OnTimeoutCancel, OnTimeoutLeave}
	afterStatuses   = []string{AfterSucceeded, AfterFailed, AfterEnded}
	listenerStates  = []string{"RUNNING", "PAUSED"}
	formats         = []string{"jsonl", "csv"}
	placeholders    = []string{"{job}", "{window_start}", "{window_end}", "{date}"}
	exportObjects   = []string{"AuditLog", "ExecutionRecord", "Event", "Deployment", "DeployedPackage", "PackagedComponent", "Atom", "Environment", "Process", "EnvironmentAtomAttachment"}
	windowByObject  = map[string]string{"AuditLog": "date", "ExecutionRecord": "executionTime", "Event": "eventDate"}
	nameRE          = regexp.MustCompile(`^[a-z0-9._-]+$`)
	defaultMethodOf = map[string]string{KindExecute: "request", KindDeploy: "package", KindRelease: "package"}
)

// ExportObjects lists the objects an export job can read.
func ExportObjects() []string { return append([]string(nil), exportObjects...) }

func validName(s string) bool { return nameRE.MatchString(s) && s != "." && s != ".." }

// jobCtx is one job (or the [defaults] table) being decoded.
type jobCtx struct {
	t        *table
	defaults bool
	j        Job
	// set maps each key given for this job to the position path of the table
	// it came from (the job's own, or [defaults]).
	set map[string][]string
	bad map[string]bool // keys already reported
}

func (c *jobCtx) setKeys() []string {
	var out []string
	for _, k := range jobKeyNames {
		if _, ok := c.set[k]; ok && !c.bad[k] {
			out = append(out, k)
		}
	}
	return out
}

// errf reports a problem with key, at the line where the key's value came from.
func (c *jobCtx) errf(key string, sub []string, format string, args ...any) {
	c.bad[key] = true
	line := c.t.line("")
	if from, ok := c.set[key]; ok {
		line = c.t.p.ix.Line(append(append(append([]string(nil), from...), key), sub...)...)
	}
	name := key
	for _, s := range sub {
		if !strings.HasPrefix(s, idxMark) {
			name += "." + s
		}
	}
	c.t.p.add(line, c.t.job, c.t.prefix+name, format, args...)
}

// decodeFields reads every job key present in t into c.j.
func (c *jobCtx) decodeFields() {
	t := c.t
	for _, k := range jobKeys {
		if _, ok := t.m[k.name]; !ok {
			continue
		}
		c.set[k.name] = t.path
		nerr := len(t.p.errs)
		switch f := k.field(&c.j).(type) {
		case *string:
			t.str(k.name, f)
		case *Duration:
			t.duration(k.name, f)
		case *int:
			t.integer(k.name, f)
		case *bool:
			t.boolean(k.name, f)
		case *map[string]string:
			c.decodeProperties(f)
		case *[]Filter:
			c.decodeFilters(f)
		case *[]string:
			t.strs(k.name, f)
		case **Extensions:
			c.decodeExtensions(f)
		}
		if len(t.p.errs) > nerr {
			c.bad[k.name] = true
		}
	}
	hints := map[string]string{
		"password": secretHint,
		"filters":  `unknown key; filters are [[job.filter]] tables (singular)`,
		"property": `unknown key; properties go in a [job.properties] table`,
	}
	if c.defaults {
		hints["filters"] = `unknown key; filters are [[defaults.filter]] tables (singular)`
	}
	t.unknown(jobKeyNames, hints)
}

func (c *jobCtx) decodeProperties(dst *map[string]string) {
	pt, _ := c.t.sub("properties")
	if pt == nil {
		return
	}
	keys := make([]string, 0, len(pt.m))
	for k := range pt.m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	props := map[string]string{}
	for _, k := range keys {
		var v string
		if pt.str(k, &v) {
			props[k] = v
		}
	}
	if len(props) > 0 {
		*dst = props
	}
}

var filterKeys = []string{"property", "operator", "arguments"}

var extensionKeys = []string{"connection", "process_property", "properties"}

// fullUpdateHint answers a partial key: there is no full update to ask for.
const fullUpdateHint = "environment extensions are always updated with partial = true: a full update resets every " +
	"value it does not name, so runnerd never sends one and there is no key to ask for it"

// decodeExtensions reads [job.extensions]: [[job.extensions.connection]]
// (id, fields, secret_files), [[job.extensions.process_property]] (id,
// values, secret_files) and [job.extensions.properties] (name = value).
func (c *jobCtx) decodeExtensions(dst **Extensions) {
	et, _ := c.t.sub("extensions")
	if et == nil {
		return
	}
	x := &Extensions{}
	strMap := func(t *table, key string) map[string]string {
		mt, _ := t.sub(key)
		if mt == nil {
			return nil
		}
		keys := make([]string, 0, len(mt.m))
		for k := range mt.m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := map[string]string{}
		for _, k := range keys {
			var v string
			if mt.str(k, &v) {
				out[k] = v
			}
		}
		return out
	}
	cts, _ := et.subs("connection")
	for _, ct := range cts {
		var e ExtConnection
		if !ct.str("id", &e.ID) || e.ID == "" {
			ct.missing("id", "required: the connection component's id")
		}
		e.Fields, e.SecretFiles = strMap(ct, "fields"), strMap(ct, "secret_files")
		if len(e.Fields)+len(e.SecretFiles) == 0 {
			ct.errf("fields", "connection %q sets nothing: give fields = { NAME = \"value\" } or secret_files", e.ID)
		}
		ct.unknown([]string{"id", "fields", "secret_files"}, map[string]string{"partial": fullUpdateHint})
		x.Connections = append(x.Connections, e)
	}
	pts, _ := et.subs("process_property")
	for _, pt := range pts {
		var e ExtProcessProperty
		if !pt.str("id", &e.ID) || e.ID == "" {
			pt.missing("id", "required: the process-property component's id")
		}
		e.Values, e.SecretFiles = strMap(pt, "values"), strMap(pt, "secret_files")
		if len(e.Values)+len(e.SecretFiles) == 0 {
			pt.errf("values", "process property %q sets nothing: give values = { KEY = \"value\" } or secret_files", e.ID)
		}
		pt.unknown([]string{"id", "values", "secret_files"}, map[string]string{"partial": fullUpdateHint})
		x.ProcessProperties = append(x.ProcessProperties, e)
	}
	x.Properties = strMap(et, "properties")
	et.unknown(extensionKeys, map[string]string{"partial": fullUpdateHint, "full": fullUpdateHint})
	*dst = x
}

func (c *jobCtx) decodeFilters(dst *[]Filter) {
	fts, _ := c.t.subs("filter")
	var out []Filter
	for _, ft := range fts {
		var f Filter
		if !ft.str("property", &f.Property) {
			ft.missing("property", "required (the object's property to filter on)")
		}
		if !ft.str("operator", &f.Operator) {
			ft.missing("operator", "required; use %s", oneOf(operators()))
		}
		ft.strs("arguments", &f.Arguments)
		if len(f.Arguments) == 0 {
			f.Arguments = nil
		}
		ft.unknown(filterKeys, map[string]string{"argument": `unknown key (did you mean "arguments"?)`})
		out = append(out, f)
	}
	if len(out) > 0 {
		*dst = out
	}
}

func operators() []string {
	ops := make([]string, 0, len(atomapi.OperatorArgs))
	for op := range atomapi.OperatorArgs {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	return ops
}

// checkValues checks each given key's value on its own. kind is the job's
// kind, or "" in [defaults].
func (c *jobCtx) checkValues(kind string) {
	j := &c.j
	for _, k := range jobKeys {
		if _, ok := c.set[k.name]; !ok || c.bad[k.name] {
			continue
		}
		if msg := checkJobValue(k.name, j, kind); msg != "" {
			c.errf(k.name, nil, "%s", msg)
		}
	}
	if _, ok := c.set["filter"]; ok && !c.bad["filter"] {
		c.checkFilters()
	}
}

func (c *jobCtx) checkFilters() {
	for i, f := range c.j.Filters {
		at := []string{idx(i)}
		n, ok := atomapi.OperatorArgs[f.Operator]
		if !ok {
			if f.Operator != "" || c.t.p.ix.Has(append(append(append([]string(nil), c.set["filter"]...), "filter"), idx(i), "operator")...) {
				c.errf("filter", append(at, "operator"), "%q is not an operator; use %s", f.Operator, oneOf(operators()))
			}
			continue
		}
		if len(f.Arguments) != n {
			c.errf("filter", append(at, "arguments"), "%s takes %s, not %d", f.Operator, plural(n, "argument"), len(f.Arguments))
		}
		if f.Property == "" && c.t.p.ix.Has(append(append(append([]string(nil), c.set["filter"]...), "filter"), idx(i), "property")...) {
			c.errf("filter", append(at, "property"), "must not be empty")
		}
	}
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

// checkJobValue returns what is wrong with the value of key, or "".
func checkJobValue(key string, j *Job, kind string) string {
	enum := func(v string, allowed []string) string {
		if contains(allowed, v) {
			return ""
		}
		return fmt.Sprintf("%q is not allowed; use %s", v, oneOf(allowed))
	}
	nonEmpty := func(v string) string {
		if strings.TrimSpace(v) == "" {
			return "must not be empty"
		}
		return ""
	}
	positive := func(d Duration) string {
		if d.Duration <= 0 {
			return fmt.Sprintf("must be greater than 0, not %s", d)
		}
		return ""
	}
	notNegative := func(d Duration) string {
		if d.Duration < 0 {
			return fmt.Sprintf("must be 0 or more, not %s", d)
		}
		return ""
	}
	switch key {
	case "name":
		if !validName(j.Name) {
			return fmt.Sprintf("%q is not allowed; use lower-case letters, digits, '.', '_' and '-' ([a-z0-9._-]+)", j.Name)
		}
	case "kind":
		return enum(j.Kind, JobKinds)
	case "schedule":
		_, err := parseSchedule(j.Schedule)
		if err != nil {
			return err.Error()
		}
	case "timezone":
		if _, err := loadLocation(j.Timezone); err != nil {
			return err.Error()
		}
	case "priority":
		return enum(j.Priority, priorities)
	case "timeout":
		return positive(j.Timeout)
	case "overlap":
		return enum(j.Overlap, overlaps)
	case "catch_up":
		return enum(j.CatchUp, catchUps)
	case "catch_up_window", "jitter":
		return notNegative(*jobKeyByName[key].field(j).(*Duration))
	case "retries":
		if j.Retries < 0 {
			return fmt.Sprintf("must be 0 or more, not %d", j.Retries)
		}
	case "process_id", "process_name", "atom_id", "from_environment", "to_environment", "object", "output":
		if msg := nonEmpty(*jobKeyByName[key].field(j).(*string)); msg != "" {
			return msg
		}
		if key == "object" {
			return enum(j.Object, exportObjects)
		}
		if key == "output" {
			return checkOutput(j.Output)
		}
	case "listener_timeout", "smoke_timeout":
		return positive(*jobKeyByName[key].field(j).(*Duration))
	case "atoms", "listeners":
		for _, v := range *jobKeyByName[key].field(j).(*[]string) {
			if strings.TrimSpace(v) == "" {
				return "must not hold an empty id"
			}
		}
	case "method":
		switch kind {
		case KindExecute:
			return enum(j.Method, executeMethods)
		case KindDeploy:
			return enum(j.Method, deployMethods)
		case "":
			return enum(j.Method, append(append([]string(nil), executeMethods...), deployMethods...))
		}
	case "on_unknown":
		return enum(j.OnUnknown, onUnknowns)
	case "log_level":
		return enum(j.LogLevel, evidenceLevels)
	case "on_timeout":
		return enum(j.OnTimeout, onTimeouts)
	case "after":
		if !validName(j.After) {
			return fmt.Sprintf("%q is not a job name ([a-z0-9._-]+)", j.After)
		}
	case "after_status":
		return enum(j.AfterStatus, afterStatuses)
	case "listener_status":
		return enum(j.ListenerStatus, listenerStates)
	case "first_window":
		return positive(j.FirstWindow)
	case "format":
		return enum(j.Format, formats)
	}
	return ""
}

// checkOutput checks an export's output path template.
func checkOutput(s string) string {
	rest := s
	for {
		i := strings.IndexAny(rest, "{}")
		if i < 0 {
			return ""
		}
		if rest[i] == '}' {
			return fmt.Sprintf("unmatched '}' in %q; placeholders are %s", s, strings.Join(placeholders, " "))
		}
		j := strings.IndexByte(rest[i:], '}')
		if j < 0 {
			return fmt.Sprintf("unclosed '{' in %q; placeholders are %s", s, strings.Join(placeholders, " "))
		}
		ph := rest[i : i+j+1]
		if !contains(placeholders, ph) {
			return fmt.Sprintf("unknown placeholder %q; use %s", ph, strings.Join(placeholders, " "))
		}
		rest = rest[i+j+1:]
	}
}

func (p *parser) decodeDefaults(t *table) *jobCtx {
	c := &jobCtx{t: t, defaults: true, set: map[string][]string{}, bad: map[string]bool{}}
	c.decodeFields()
	if _, ok := c.set["name"]; ok {
		c.errf("name", nil, "a job name cannot be a default; give each [[job]] its own name")
	}
	for _, k := range []string{"after", "after_status"} {
		if _, ok := c.set[k]; ok {
			c.errf(k, nil, "a chain is made job by job; give %s in the [[job]] that follows another", k)
		}
	}
	kind := ""
	if _, ok := c.set["kind"]; ok && !c.bad["kind"] && contains(JobKinds, c.j.Kind) {
		kind = c.j.Kind
	}
	c.checkValues(kind)
	return c
}

// decodeJob decodes the i'th [[job]], applies defs and the built-in defaults,
// and checks it.
func (p *parser) decodeJob(t *table, i int, defs *jobCtx) Job {
	c := &jobCtx{t: t, set: map[string][]string{}, bad: map[string]bool{}}
	c.j.Line = t.line("")
	// The name first: every message about this job carries it.
	var name string
	if v, ok := t.m["name"].(string); ok && v != "" {
		name = v
		t.job, t.prefix = name, ""
	}
	c.decodeFields()
	j := &c.j
	own := func(k string) bool { _, ok := c.set[k]; return ok }

	// The kind decides which keys belong; [defaults] may supply it.
	kind := ""
	if own("kind") {
		if !c.bad["kind"] && contains(JobKinds, j.Kind) {
			kind = j.Kind
		}
	} else if defs != nil && contains(defs.setKeys(), "kind") {
		j.Kind, kind = defs.j.Kind, defs.j.Kind
		c.set["kind"] = defs.set["kind"]
	}
	if kind != "" {
		for _, k := range jobKeys {
			if own(k.name) && k.kinds&kindBits[kind] == 0 {
				c.errf(k.name, nil, "not a key of kind %q; it belongs to kind %s", kind, oneOf(k.kinds.names()))
			}
		}
	}
	c.checkValues(kind)

	// [defaults]: a key the job does not give, if it belongs to the job's kind.
	if defs != nil {
		for _, k := range defs.setKeys() {
			jk := jobKeyByName[k]
			if own(k) && k != "properties" {
				continue
			}
			if kind == "" && jk.kinds != kAll || kind != "" && jk.kinds&kindBits[kind] == 0 {
				continue
			}
			if k == "method" && checkJobValue("method", &defs.j, kind) != "" {
				continue // e.g. method = "package" applies to deploy jobs only
			}
			c.copyDefault(k, defs)
		}
	}
	c.applyBuiltins(kind)
	c.checkJob(kind)
	return c.j
}

// inherited reports whether key k came from [defaults], not the job's own table.
func (c *jobCtx) inherited(k string) bool {
	p, ok := c.set[k]
	return ok && !slices.Equal(p, c.t.path)
}

// copyDefault copies key k from defs into the job; properties merge key by key.
func (c *jobCtx) copyDefault(k string, defs *jobCtx) {
	jk := jobKeyByName[k]
	switch dst := jk.field(&c.j).(type) {
	case *string:
		*dst = *jk.field(&defs.j).(*string)
	case *Duration:
		*dst = *jk.field(&defs.j).(*Duration)
	case *int:
		*dst = *jk.field(&defs.j).(*int)
	case *bool:
		*dst = *jk.field(&defs.j).(*bool)
	case *map[string]string:
		src := defs.j.Properties
		if len(src) == 0 {
			return
		}
		m := make(map[string]string, len(src)+len(*dst))
		for pk, pv := range src {
			m[pk] = pv
		}
		for pk, pv := range *dst { // the job's own value wins
			m[pk] = pv
		}
		*dst = m
		if _, own := c.set[k]; own {
			return
		}
	case *[]Filter:
		*dst = append([]Filter(nil), defs.j.Filters...)
		for i := range *dst {
			(*dst)[i].Arguments = append([]string(nil), (*dst)[i].Arguments...)
		}
	}
	c.set[k] = defs.set[k]
}

// applyBuiltins fills keys nobody gave with the built-in defaults.
func (c *jobCtx) applyBuiltins(kind string) {
	j := &c.j
	given := func(k string) bool { _, ok := c.set[k]; return ok }
	str := func(k string, dst *string, v string) {
		if !given(k) {
			*dst = v
		}
	}
	dur := func(k string, dst *Duration, v time.Duration) {
		if !given(k) {
			*dst = Duration{v}
		}
	}
	str("timezone", &j.Timezone, DefaultTimezone)
	str("priority", &j.Priority, DefaultPriority)
	dur("timeout", &j.Timeout, DefaultTimeout)
	str("overlap", &j.Overlap, DefaultOverlap)
	str("catch_up", &j.CatchUp, DefaultCatchUp)
	dur("catch_up_window", &j.CatchUpWindow, DefaultCatchUpWindow)
	if !given("enabled") {
		j.Enabled = true
	}
	if given("after") {
		str("after_status", &j.AfterStatus, AfterSucceeded)
	}
	switch kind {
	case KindExecute:
		str("method", &j.Method, defaultMethodOf[kind])
		if !given("wait") {
			j.Wait = true
		}
		str("on_unknown", &j.OnUnknown, DefaultOnUnknown)
		str("log_level", &j.LogLevel, DefaultLogLevelEvidence)
		str("on_timeout", &j.OnTimeout, OnTimeoutCancel)
	case KindDeploy:
		str("method", &j.Method, defaultMethodOf[kind])
		str("on_unknown", &j.OnUnknown, DefaultOnUnknown)
		str("listener_status", &j.ListenerStatus, DefaultListener)
	case KindRelease:
		str("method", &j.Method, defaultMethodOf[kind])
		str("on_unknown", &j.OnUnknown, DefaultOnUnknown)
		str("listener_status", &j.ListenerStatus, DefaultListener)
		if !given("pause_schedules") {
			j.PauseSchedules = true
		}
		dur("listener_timeout", &j.ListenerTimeout, DefaultListenerTimeout)
		dur("smoke_timeout", &j.SmokeTimeout, DefaultSmokeTimeout)
	case KindExport:
		str("window_property", &j.WindowProperty, windowByObject[j.Object])
		dur("first_window", &j.FirstWindow, DefaultFirstWindow)
		str("format", &j.Format, DefaultFormat)
	}
}

// checkJob checks what involves several keys, and the required ones.
func (c *jobCtx) checkJob(kind string) {
	j := &c.j
	t := c.t
	given := func(k string) bool { _, ok := c.set[k]; return ok }
	if !given("name") {
		t.missing("name", "required (unique, [a-z0-9._-]+)")
	}
	if !given("kind") {
		t.missing("kind", "required; use %s", oneOf(JobKinds))
	}
	switch {
	case given("after") && given("schedule") && !c.defaults && !c.inherited("schedule"):
		c.errf("schedule", nil, "a job with after = %q runs when that job ends; it has no schedule of its own", j.After)
	case given("after"):
		delete(c.set, "schedule") // a [defaults] schedule does not apply to a chained job
		j.Schedule = ""
	case !given("schedule"):
		t.missing("schedule", "required (5-field cron such as \"0 2 * * 1-5\", or @daily, @hourly, @every 10m), or after = \"JOB\" to run when another job ends")
	case given("after_status"):
		c.errf("after_status", nil, "only with after = \"JOB\"")
	}
	switch kind {
	case KindExecute:
		switch {
		case !given("process_id") && !given("process_name"):
			t.missing("process_id", "required (or process_name): the process to execute")
		case given("process_id") && given("process_name") && j.ProcessID != "" && j.ProcessName != "":
			c.errf("process_name", nil, "give process_id or process_name, not both")
		}
		if !given("atom_id") {
			t.missing("atom_id", "required: the atom (or molecule, cloud) to execute on")
		}
	case KindDeploy, KindRelease:
		if kind == KindRelease && len(j.Atoms) == 0 {
			t.missing("atoms", "required: the target runtimes (atom ids) the release pauses, checks and smoke-tests on")
		}
		if !given("process_id") {
			t.missing("process_id", "required: the process component to deploy")
		}
		if !given("from_environment") {
			t.missing("from_environment", "required: the environment id to copy the deployment from")
		}
		if !given("to_environment") {
			t.missing("to_environment", "required: the environment id to deploy to")
		}
		if given("from_environment") && given("to_environment") && j.FromEnvironment != "" && j.FromEnvironment == j.ToEnvironment {
			c.errf("to_environment", nil, "is the same as from_environment (%q); a deploy copies between two environments", j.ToEnvironment)
		}
	case KindExport:
		if !given("object") {
			t.missing("object", "required; use %s", oneOf(exportObjects))
		}
		if !given("output") {
			t.missing("output", "required: the file to write, e.g. \"./exports/{job}/{window_start}.jsonl\" (placeholders %s)", strings.Join(placeholders, " "))
		}
		// An incremental export writes one file per window: a name without the
		// window would let the next run's file replace this one's after the
		// watermark has moved past it, and those records would be lost.
		if given("output") && j.WindowProperty != "" && checkOutput(j.Output) == "" &&
			!strings.Contains(j.Output, "{window_start}") && !strings.Contains(j.Output, "{window_end}") {
			c.errf("output", nil, "%q has no {window_start} or {window_end}: each window of an incremental export needs a file of its own, or the next run would replace this one's", j.Output)
		}
	}
}

// parseSchedule parses a cron spec as the scheduler will. The error says what
// is wrong and what is allowed.
func parseSchedule(spec string) (s cron.Schedule, err error) {
	const allowed = `use 5 fields (minute hour day-of-month month day-of-week, e.g. "0 2 * * 1-5") or @daily, @hourly, @every 10m`
	trimmed := strings.TrimSpace(spec)
	if strings.HasPrefix(trimmed, "TZ=") || strings.HasPrefix(trimmed, "CRON_TZ=") {
		return nil, fmt.Errorf("%q: give the zone with the timezone key, not in the schedule", spec)
	}
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("%q is not a valid schedule; %s", spec, allowed)
		}
	}()
	s, err = cron.ParseStandard(spec) // as the scheduler will: " @daily" is not valid
	if err != nil {
		return nil, fmt.Errorf("%q is not a valid schedule: %v; %s", spec, err, allowed)
	}
	if d, ok := s.(cron.ConstantDelaySchedule); ok {
		if every := strings.TrimSpace(strings.TrimPrefix(trimmed, "@every")); d.Delay.String() != every {
			if v, perr := time.ParseDuration(every); perr != nil || v != d.Delay {
				return nil, fmt.Errorf("%q: @every takes a whole number of seconds, at least 1s", spec)
			}
		}
		return s, nil
	}
	// A valid spec can still never fire (e.g. 30 February).
	ref := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	if s.Next(ref).IsZero() {
		return nil, fmt.Errorf("%q never fires (no date matches)", spec)
	}
	return s, nil
}

// loadLocation loads an IANA zone; "" is UTC.
func loadLocation(name string) (*time.Location, error) {
	if name == "" {
		return time.UTC, nil
	}
	if name == "Local" {
		return nil, fmt.Errorf("%q depends on the host; give an IANA zone such as \"Europe/Berlin\" or \"UTC\"", name)
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, fmt.Errorf("%q is not a known IANA time zone; use a name such as \"Europe/Berlin\", \"America/New_York\" or \"UTC\"", name)
	}
	return loc, nil
}

// Location returns the job's time zone.
func (j *Job) Location() (*time.Location, error) { return loadLocation(j.Timezone) }

// ParsedSchedule returns the job's parsed schedule in its zone, exactly as the
// daemon fires it (schedule.Parse: wall-clock times across daylight-saving
// changes). A job in a chain (after) has none of its own: schedule.Never.
func (j *Job) ParsedSchedule() (cron.Schedule, error) {
	if j.After != "" {
		return schedule.Never{}, nil
	}
	if _, err := parseSchedule(j.Schedule); err != nil {
		return nil, err
	}
	loc, err := j.Location()
	if err != nil {
		return nil, err
	}
	return schedule.Parse(j.Schedule, loc)
}

// NextFires returns the next n fire times of the job strictly after after, in
// the job's zone.
func (j *Job) NextFires(after time.Time, n int) ([]time.Time, error) {
	return j.fires(after, time.Time{}, n)
}

// FiresUntil returns every fire time of the job in (after, end], in the job's
// zone, however often it fires (an @every 10s job fires 8,640 times a day), up
// to a million.
func (j *Job) FiresUntil(after, end time.Time) ([]time.Time, error) {
	return j.fires(after, end, 1_000_000)
}

// fires walks the schedule from after: at most n times, and not past end
// unless end is zero.
func (j *Job) fires(after, end time.Time, n int) ([]time.Time, error) {
	s, err := j.ParsedSchedule()
	if err != nil {
		return nil, err
	}
	loc, err := j.Location()
	if err != nil {
		return nil, err
	}
	var out []time.Time
	for t := s.Next(after); !t.IsZero() && len(out) < n && (end.IsZero() || !t.After(end)); t = s.Next(t) {
		out = append(out, t.In(loc))
	}
	return out, nil
}

// PriorityLevel returns the job's priority as the budget and client use it
// (a validated configuration has only high, normal and low).
func (j *Job) PriorityLevel() runnerd.Priority {
	p, _ := runnerd.ParsePriority(j.Priority)
	return p
}

// Job returns the job named name, or nil.
// JobHint says what the configuration has instead of a job name that is
// not in it: the nearest name, and the jobs (the first 10).
func (c *Config) JobHint(name string) string {
	names := make([]string, len(c.Jobs))
	for i := range c.Jobs {
		names[i] = c.Jobs[i].Name
	}
	if len(names) == 0 {
		return "it has no jobs"
	}
	hint := ""
	if s := Suggest(name, names); s != "" {
		hint = fmt.Sprintf("did you mean %q? ", s)
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], fmt.Sprintf("and %d more", len(names)-10))
	}
	return hint + "jobs: " + strings.Join(names, ", ")
}

func (c *Config) Job(name string) *Job {
	for i := range c.Jobs {
		if c.Jobs[i].Name == name {
			return &c.Jobs[i]
		}
	}
	return nil
}

// ChainHead returns the first job of the chain job name is in (itself when
// it follows none), or "" for an unknown job.
func (c *Config) ChainHead(name string) string {
	seen := map[string]bool{}
	for j := c.Job(name); j != nil; j = c.Job(j.After) {
		if j.After == "" || seen[j.Name] {
			return j.Name
		}
		seen[j.Name] = true
	}
	return ""
}

// Chain returns the jobs that run when head runs, in order: head, then each
// job that follows it, depth first in configuration order. A job followed by
// none is a chain of one.
func (c *Config) Chain(head string) []*Job {
	var out []*Job
	seen := map[string]bool{}
	var walk func(name string)
	walk = func(name string) {
		if seen[name] {
			return
		}
		seen[name] = true
		if j := c.Job(name); j != nil {
			out = append(out, j)
		}
		for i := range c.Jobs {
			if c.Jobs[i].After == name {
				walk(c.Jobs[i].Name)
			}
		}
	}
	walk(head)
	return out
}

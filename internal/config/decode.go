package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// parser holds the state of one parse: the source index and the problems.
type parser struct {
	file string
	src  string
	ix   *posIndex
	opts LoadOptions
	errs ErrorList
}

// result is a parsed configuration with what Load needs to check its files.
type result struct {
	cfg *Config
	p   *parser
}

func (p *parser) add(line int, job, key, format string, args ...any) {
	p.errs = append(p.errs, &Error{File: p.file, Line: line, Job: job, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// parse decodes data into a Config. A TOML syntax error yields a nil result;
// otherwise the result holds the Config as far as it could be built, and errs
// every problem found.
func parse(file string, data []byte, opts LoadOptions) (*result, ErrorList) {
	p := &parser{file: file, src: string(data), opts: opts}
	var raw map[string]any
	if _, err := toml.Decode(p.src, &raw); err != nil {
		p.syntaxError(err)
		return nil, p.errs
	}
	p.ix = buildIndex(p.src)
	root := &table{p: p, m: raw}
	cfg := &Config{File: file}
	p.decodeConfig(root, cfg)
	p.underStateDir(cfg)
	return &result{cfg: cfg, p: p}, p.errs
}

// underStateDir resolves a relative [store] path and relative export outputs
// under $STATE_DIRECTORY when systemd sets it: the unit's working directory is
// /, read-only under ProtectSystem=strict, and the state directory is the one
// place the unit may write. Without it they stay relative to the working
// directory.
func (p *parser) underStateDir(c *Config) {
	d, _, _ := strings.Cut(p.opts.getenv("STATE_DIRECTORY"), ":") // several StateDirectory= entries: the first
	if d == "" {
		return
	}
	if !filepath.IsAbs(c.Store.Path) {
		c.Store.Path = filepath.Join(d, c.Store.Path)
	}
	if !filepath.IsAbs(c.Evidence.Dir) {
		c.Evidence.Dir = filepath.Join(d, c.Evidence.Dir)
	}
	for i := range c.Jobs {
		if o := c.Jobs[i].Output; o != "" && !filepath.IsAbs(o) {
			c.Jobs[i].Output = filepath.Join(d, o)
		}
	}
}

// syntaxError reports a TOML syntax error. If the line holds a password or
// secret, the parser's message (which may quote the value) is not shown.
func (p *parser) syntaxError(err error) {
	var pe toml.ParseError
	if !errors.As(err, &pe) {
		p.add(0, "", "", "invalid TOML: %v", err)
		return
	}
	line := pe.Position.Line
	msg := pe.Message
	if l := lineText(p.src, line); secretLine(l) || secretLine(lineText(p.src, line-1)) {
		msg = "syntax error on a line that holds a secret (message withheld so the value is not shown)"
	}
	p.add(line, "", "", "invalid TOML: %s", msg)
}

func lineText(src string, n int) string {
	if n < 1 {
		return ""
	}
	for i := 1; i < n; i++ {
		j := strings.IndexByte(src, '\n')
		if j < 0 {
			return ""
		}
		src = src[j+1:]
	}
	if j := strings.IndexByte(src, '\n'); j >= 0 {
		src = src[:j]
	}
	return src
}

// secretLine reports whether a line assigns a key that looks like it holds a secret.
func secretLine(l string) bool {
	k, _, ok := strings.Cut(l, "=")
	if !ok {
		return false
	}
	k = strings.ToLower(k)
	for _, w := range []string{"pass", "secret", "token", "key", "auth"} {
		if strings.Contains(k, w) {
			return true
		}
	}
	return false
}

// table is a TOML table being decoded; it remembers which keys were read.
type table struct {
	p      *parser
	m      map[string]any
	path   []string // position path
	prefix string   // shown before keys in messages: "account.", "job.", ""
	job    string   // job name for messages
	seen   map[string]bool
}

func (t *table) child(key string, m map[string]any, sub ...string) *table {
	return &table{
		p: t.p, m: m, path: t.at(key, sub...), prefix: t.prefix + key + ".", job: t.job,
	}
}

func (t *table) at(key string, sub ...string) []string {
	out := append(append([]string(nil), t.path...), key)
	return append(out, sub...)
}

// line returns the line of key (or of the table when key is absent).
func (t *table) line(key string, sub ...string) int {
	if key == "" {
		return t.p.ix.Line(t.path...)
	}
	return t.p.ix.Line(t.at(key, sub...)...)
}

func (t *table) errf(key string, format string, args ...any) {
	t.p.add(t.line(key), t.job, t.prefix+key, format, args...)
}

// errSub reports a problem at a sub-position of key (an array element).
func (t *table) errSub(key string, sub []string, format string, args ...any) {
	t.p.add(t.line(key, sub...), t.job, t.prefix+key, format, args...)
}

// missing reports a required key that is absent, at the table's line.
func (t *table) missing(key, format string, args ...any) {
	t.p.add(t.line(""), t.job, t.prefix+key, format, args...)
}

func (t *table) get(key string) (any, bool) {
	v, ok := t.m[key]
	if ok {
		if t.seen == nil {
			t.seen = map[string]bool{}
		}
		t.seen[key] = true
	}
	return v, ok
}

func typeName(v any) string {
	switch v.(type) {
	case string:
		return "a string"
	case int64:
		return "an integer"
	case float64:
		return "a float"
	case bool:
		return "a boolean"
	case time.Time:
		return "a date-time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}

func (t *table) wrongType(key string, want string, v any) {
	t.errf(key, "must be %s, not %s", want, typeName(v))
}

// str reads a string key; it reports whether the key was present.
func (t *table) str(key string, dst *string) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	s, isStr := v.(string)
	if !isStr {
		t.wrongType(key, "a string", v)
		return true
	}
	*dst = s
	return true
}

func (t *table) integer(key string, dst *int) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	n, isInt := v.(int64)
	if !isInt || int64(int(n)) != n {
		t.wrongType(key, "an integer", v)
		return true
	}
	*dst = int(n)
	return true
}

func (t *table) number(key string, dst *float64) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	switch n := v.(type) {
	case int64:
		*dst = float64(n)
	case float64:
		*dst = n
	default:
		t.wrongType(key, "a number", v)
	}
	return true
}

func (t *table) boolean(key string, dst *bool) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	b, isBool := v.(bool)
	if !isBool {
		t.wrongType(key, "true or false", v)
		return true
	}
	*dst = b
	return true
}

func (t *table) duration(key string, dst *Duration) bool {
	v, ok := t.get(key)
	if !ok {
		return false
	}
	s, isStr := v.(string)
	if !isStr {
		t.errf(key, "must be a duration string such as \"90s\", \"30m\" or \"2h\", not %s", typeName(v))
		return true
	}
	var d Duration
	if err := d.UnmarshalText([]byte(s)); err != nil {
		t.errf(key, "%v", err)
		return true
	}
	*dst = d
	return true
}

func (t *table) array(key string) ([]any, bool) {
	v, ok := t.get(key)
	if !ok {
		return nil, false
	}
	switch a := v.(type) {
	case []any:
		return a, true
	case []map[string]any:
		out := make([]any, len(a))
		for i := range a {
			out[i] = a[i]
		}
		return out, true
	}
	t.wrongType(key, "an array", v)
	return nil, true
}

func (t *table) strs(key string, dst *[]string) bool {
	a, ok := t.array(key)
	if !ok || a == nil {
		return ok
	}
	out := make([]string, 0, len(a))
	for i, v := range a {
		s, isStr := v.(string)
		if !isStr {
			t.errSub(key, []string{idx(i)}, "element %d must be a string, not %s", i+1, typeName(v))
			continue
		}
		out = append(out, s)
	}
	*dst = out
	return true
}

func (t *table) ints(key string, dst *[]int) bool {
	a, ok := t.array(key)
	if !ok || a == nil {
		return ok
	}
	out := make([]int, 0, len(a))
	for i, v := range a {
		n, isInt := v.(int64)
		if !isInt || int64(int(n)) != n {
			t.errSub(key, []string{idx(i)}, "element %d must be an integer, not %s", i+1, typeName(v))
			continue
		}
		out = append(out, int(n))
	}
	*dst = out
	return true
}

// sub returns the table under key.
func (t *table) sub(key string) (*table, bool) {
	v, ok := t.get(key)
	if !ok {
		return nil, false
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		t.errf(key, "must be a table ([%s]), not %s", t.tomlName(key), typeName(v))
		return nil, true
	}
	return t.child(key, m), true
}

// tomlName returns the dotted TOML name of key in t, e.g. "job.filter".
func (t *table) tomlName(key string) string {
	var segs []string
	for _, s := range t.path {
		if !strings.HasPrefix(s, idxMark) {
			segs = append(segs, s)
		}
	}
	return strings.Join(append(segs, key), ".")
}

// subs returns the array of tables under key.
func (t *table) subs(key string) ([]*table, bool) {
	v, ok := t.get(key)
	if !ok {
		return nil, false
	}
	var list []map[string]any
	switch a := v.(type) {
	case []map[string]any:
		list = a
	case []any:
		for i, e := range a {
			m, isMap := e.(map[string]any)
			if !isMap {
				t.errSub(key, []string{idx(i)}, "element %d must be a table, not %s", i+1, typeName(e))
				continue
			}
			list = append(list, m)
		}
	default:
		t.errf(key, "must be an array of tables ([[%s]]), not %s", t.tomlName(key), typeName(v))
		return nil, true
	}
	out := make([]*table, len(list))
	for i, m := range list {
		out[i] = t.child(key, m, idx(i))
	}
	return out, true
}

// unknown reports every key of t that was not read. hints maps a key to a
// specific message (e.g. an inline password).
func (t *table) unknown(allowed []string, hints map[string]string) {
	keys := make([]string, 0, len(t.m))
	for k := range t.m {
		if !t.seen[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		if h, ok := hints[k]; ok {
			t.errf(k, "%s", h)
			continue
		}
		if s := Suggest(k, allowed); s != "" {
			t.errf(k, "unknown key (did you mean %q?)", s)
			continue
		}
		if len(allowed) == 0 {
			t.errf(k, "unknown key; this table takes no keys")
			continue
		}
		t.errf(k, "unknown key; allowed keys: %s", strings.Join(allowed, ", "))
	}
}

// Suggest returns the word of allowed closest to k (case-insensitive, at
// most 2 edits and less than half of k), or "": the "did you mean" of
// configuration keys and of runnerd's subcommands.
func Suggest(k string, allowed []string) string {
	best, bestD := "", 3
	for _, a := range allowed {
		d := editDistance(strings.ToLower(k), a)
		if d < bestD {
			best, bestD = a, d
		}
	}
	if bestD > 2 || bestD*2 >= len(k) {
		return ""
	}
	return best
}

func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 99
	}
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			c := prev[j-1]
			if a[i-1] != b[j-1] {
				c++
			}
			cur[j] = min(c, prev[j]+1, cur[j-1]+1)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// oneOf formats a list of choices: "a, b or c".
func oneOf(list []string) string {
	switch len(list) {
	case 0:
		return ""
	case 1:
		return list[0]
	}
	return strings.Join(list[:len(list)-1], ", ") + " or " + list[len(list)-1]
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var topKeys = []string{"account", "budget", "store", "log", "http", "evidence", "notify", "defaults", "job"}

var secretHint = "a password must not be written in the configuration file (the value is not shown here); " +
	"put it in a file readable only by runnerd and name it with password_file = \"/etc/runnerd/boomi.secret\" (chmod 0600), " +
	"or use password_env or credential"

// decodeStoreURL reads [store]'s PostgreSQL keys: url (postgres://, with no
// password in it), at most one password source, and instance.
func (p *parser) decodeStoreURL(t *table, s *Store) {
	if t.str("url", &s.URL) {
		if msg := checkStoreURL(s.URL); msg != "" {
			t.errf("url", "%s", msg)
		}
	}
	var sources []string
	for _, k := range []string{"password_file", "password_env", "credential"} {
		dst := map[string]*string{"password_file": &s.PasswordFile, "password_env": &s.PasswordEnv, "credential": &s.Credential}[k]
		if t.str(k, dst) {
			sources = append(sources, k)
			if *dst == "" {
				t.errf(k, "must not be empty")
			} else if s.URL == "" {
				t.errf(k, "is for a PostgreSQL ledger; set url too, or remove %s", k)
			}
		}
	}
	if len(sources) > 1 {
		t.errf(sources[1], "give at most one of password_file, password_env, credential; %s is also set", strings.Join(without(sources, sources[1]), " and "))
	}
	if s.PasswordEnv != "" && !validEnvName(s.PasswordEnv) {
		t.errf("password_env", "%q is not an environment variable name (letters, digits and _, not starting with a digit)", s.PasswordEnv)
	}
	if s.Credential != "" && (strings.ContainsAny(s.Credential, "/\x00") || s.Credential == "." || s.Credential == "..") {
		t.errf("credential", "%q is not a credential name; give the name used in LoadCredential=, without a directory", s.Credential)
	}
	if t.duration("lease", &s.Lease) {
		switch {
		case s.URL == "":
			t.errf("lease", "is for a PostgreSQL ledger; set url too, or remove lease")
		case s.Lease.Duration < time.Second || s.Lease.Duration > 10*time.Minute:
			t.errf("lease", "%s: want 1s to 10m (a job goes without an owner this long after its instance dies)", s.Lease)
		}
	}
	if t.str("instance", &s.Instance) {
		switch {
		case s.URL == "":
			t.errf("instance", "names this runnerd among those sharing a PostgreSQL ledger; set url too, or remove instance")
		case s.Instance == "" || len(s.Instance) > 64 || strings.ContainsFunc(s.Instance, func(r rune) bool {
			return r <= ' ' || r == 0x7f
		}):
			t.errf("instance", "%q: want 1 to 64 printable characters without spaces", s.Instance)
		}
	}
}

// checkStoreURL returns what is wrong with a [store] url ("" if nothing). The
// URL is never quoted back: it might hold a password.
func checkStoreURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "is not a URL (the value is not shown here)"
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return "must be a postgres:// URL (the SQLite ledger is path)"
	}
	if _, ok := u.User.Password(); ok || u.Query().Has("password") {
		return secretHint + " (a URL must not carry the database password either: use password_file, password_env or credential in [store])"
	}
	if u.Host == "" && u.Query().Get("host") == "" {
		return "names no host"
	}
	return ""
}

func (p *parser) decodeConfig(root *table, c *Config) {
	// [account]
	acct, ok := root.sub("account")
	if !ok {
		p.add(0, "", "account", "missing table [account] (id, user and one of password_file, password_env, credential)")
	}
	if acct != nil {
		p.decodeAccount(acct, &c.Account)
	}
	c.Account.URL = orDefault(c.Account.URL, DefaultURL)

	// [budget]
	bud, ok := root.sub("budget")
	if !ok {
		p.add(0, "", "budget", "missing table [budget] (daily_limit is required)")
	}
	p.decodeBudget(bud, &c.Budget)

	// [store]
	if st, _ := root.sub("store"); st != nil {
		if st.str("path", &c.Store.Path) && c.Store.Path == "" {
			st.errf("path", "must not be empty; omit it for the default ($STATE_DIRECTORY/runnerd.db, else ./runnerd.db)")
		}
		p.decodeStoreURL(st, &c.Store)
		st.unknown([]string{"path", "url", "password_file", "password_env", "credential", "instance", "lease"},
			map[string]string{"password": secretHint})
	}
	if c.Store.Path == "" {
		c.Store.Path = p.defaultStorePath()
	}
	if c.Store.URL != "" && c.Store.Lease.Duration == 0 {
		c.Store.Lease.Duration = DefaultLease
	}

	// [log]
	if lg, _ := root.sub("log"); lg != nil {
		if lg.str("level", &c.Log.Level) && !contains(logLevels, c.Log.Level) {
			lg.errf("level", "%q is not allowed; use %s", c.Log.Level, oneOf(logLevels))
		}
		if lg.str("format", &c.Log.Format) && !contains(logFormats, c.Log.Format) {
			lg.errf("format", "%q is not allowed; use %s", c.Log.Format, oneOf(logFormats))
		}
		lg.unknown([]string{"level", "format"}, nil)
	}
	c.Log.Level = orDefault(c.Log.Level, DefaultLogLevel)
	c.Log.Format = orDefault(c.Log.Format, DefaultLogFormat)

	// [http]
	if h, _ := root.sub("http"); h != nil {
		if h.str("listen", &c.HTTP.Listen) && c.HTTP.Listen != "" {
			if msg := checkListen(c.HTTP.Listen); msg != "" {
				h.errf("listen", "%s", msg)
			}
		}
		if h.str("public_url", &c.HTTP.PublicURL) && c.HTTP.PublicURL != "" {
			if u, err := url.Parse(c.HTTP.PublicURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
				u.RawQuery != "" || u.Fragment != "" || u.User != nil {
				h.errf("public_url", "%q is not an http or https URL without credentials, query or fragment (e.g. \"https://runnerd.example.com/\")",
					c.HTTP.PublicURL)
			} else {
				c.HTTP.PublicURL = strings.TrimSuffix(c.HTTP.PublicURL, "/") + "/"
			}
		}
		h.unknown([]string{"listen", "public_url"}, nil)
	}

	// [evidence]
	c.Evidence = Evidence{MaxRunMB: DefaultEvidenceRunMB, MaxTotalMB: DefaultEvidenceTotalMB,
		GiveUpAfter: Duration{DefaultEvidenceGiveUp}}
	if ev, _ := root.sub("evidence"); ev != nil {
		if ev.str("dir", &c.Evidence.Dir) && strings.TrimSpace(c.Evidence.Dir) == "" {
			ev.errf("dir", "must not be empty; omit it for the default (\"evidence\" beside the ledger)")
		}
		if ev.integer("max_run_mb", &c.Evidence.MaxRunMB) && c.Evidence.MaxRunMB < 1 {
			ev.errf("max_run_mb", "must be at least 1, not %d", c.Evidence.MaxRunMB)
		}
		if ev.integer("max_total_mb", &c.Evidence.MaxTotalMB) && c.Evidence.MaxTotalMB < 1 {
			ev.errf("max_total_mb", "must be at least 1, not %d", c.Evidence.MaxTotalMB)
		}
		if ev.duration("give_up_after", &c.Evidence.GiveUpAfter) && c.Evidence.GiveUpAfter.Duration <= 0 {
			ev.errf("give_up_after", "must be greater than 0, not %s", c.Evidence.GiveUpAfter)
		}
		if c.Evidence.MaxTotalMB < c.Evidence.MaxRunMB {
			ev.errf("max_total_mb", "%d is less than max_run_mb (%d): one run's evidence could never be kept", c.Evidence.MaxTotalMB, c.Evidence.MaxRunMB)
		}
		ev.unknown([]string{"dir", "max_run_mb", "max_total_mb", "give_up_after"}, nil)
	}
	if c.Evidence.Dir == "" {
		c.Evidence.Dir = filepath.Join(filepath.Dir(c.Store.Path), DefaultEvidenceDir)
	}

	// [defaults] and [[job]]
	var defs *jobCtx
	if d, _ := root.sub("defaults"); d != nil {
		defs = p.decodeDefaults(d)
		c.Defaults = JobDefaults{Job: defs.j, Set: defs.setKeys()}
	}
	jobs, _ := root.subs("job")
	byName := map[string]int{}
	for i, jt := range jobs {
		j := p.decodeJob(jt, i, defs)
		if j.Name != "" {
			if first, dup := byName[j.Name]; dup {
				p.add(jt.line("name"), j.Name, "name", "duplicate job name; the job at line %d has it too", first)
			} else {
				byName[j.Name] = jt.line("name")
			}
		}
		c.Jobs = append(c.Jobs, j)
	}

	p.checkChains(jobs, c)

	// [[notify]] (after the jobs: notify.jobs names them)
	nts, _ := root.subs("notify")
	names := map[string]int{}
	for i, nt := range nts {
		n := p.decodeNotify(nt, i, byName)
		if n.Name == "" {
			// no kind, already reported
		} else if first, dup := names[n.Name]; dup {
			p.add(nt.line("name"), "", "notify.name", "duplicate notify name %q; the [[notify]] at line %d has it too", n.Name, first)
		} else {
			names[n.Name] = nt.line("")
		}
		c.Notify = append(c.Notify, n)
	}

	root.unknown(topKeys, map[string]string{
		"jobs":     `unknown key; jobs are [[job]] tables (singular)`,
		"password": secretHint,
	})
}

// checkChains checks every after: it names another job, and following the
// links from any job never comes back to it.
func (p *parser) checkChains(tables []*table, c *Config) {
	idx := map[string]int{}
	for i := range c.Jobs {
		if _, dup := idx[c.Jobs[i].Name]; !dup {
			idx[c.Jobs[i].Name] = i
		}
	}
	for i := range c.Jobs {
		j := &c.Jobs[i]
		if j.After == "" || i >= len(tables) {
			continue
		}
		line := tables[i].line("after")
		if j.After == j.Name {
			p.add(line, j.Name, "after", "a job cannot follow itself")
			continue
		}
		if _, ok := idx[j.After]; !ok {
			p.add(line, j.Name, "after", "no job %q (%s)", j.After, c.JobHint(j.After))
			continue
		}
		seen := map[string]bool{j.Name: true}
		for cur := j.After; cur != ""; {
			if seen[cur] {
				p.add(line, j.Name, "after", "the chain comes back to %q: a chain must have a first job with a schedule", cur)
				break
			}
			seen[cur] = true
			k, ok := idx[cur]
			if !ok {
				break
			}
			cur = c.Jobs[k].After
		}
	}
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

func (p *parser) defaultStorePath() string {
	if d := p.opts.getenv("STATE_DIRECTORY"); d != "" {
		// systemd joins several StateDirectory= entries with ':'; use the first.
		d, _, _ = strings.Cut(d, ":")
		return strings.TrimSuffix(d, "/") + "/" + DefaultStoreFile
	}
	return "./" + DefaultStoreFile
}

var (
	logLevels  = []string{"debug", "info", "warn", "error"}
	logFormats = []string{"auto", "text", "json"}
)

func (p *parser) decodeAccount(t *table, a *Account) {
	if t.str("id", &a.ID) && a.ID == "" {
		t.errf("id", "must not be empty")
	}
	if _, ok := t.m["id"]; !ok {
		t.missing("id", "required (the AtomSphere account ID, e.g. \"acme-AB12CD\")")
	}
	if t.str("url", &a.URL) {
		if msg := checkURL(a.URL); msg != "" {
			t.errf("url", "%q %s", a.URL, msg)
		}
	}
	if t.str("user", &a.User) && a.User == "" {
		t.errf("user", "must not be empty")
	}
	if _, ok := t.m["user"]; !ok {
		t.missing("user", "required (the user name, or BOOMI_TOKEN.<user> for an API token)")
	}
	var sources []string
	for _, k := range []string{"password_file", "password_env", "credential"} {
		var dst *string
		switch k {
		case "password_file":
			dst = &a.PasswordFile
		case "password_env":
			dst = &a.PasswordEnv
		default:
			dst = &a.Credential
		}
		if t.str(k, dst) {
			sources = append(sources, k)
			if *dst == "" {
				t.errf(k, "must not be empty")
			}
		}
	}
	switch {
	case len(sources) == 0 && t.m["password"] == nil:
		p.add(t.line(""), "", "account", "no password source; give exactly one of password_file, password_env, credential")
	case len(sources) > 1:
		t.errf(sources[1], "give exactly one of password_file, password_env, credential; %s is also set", strings.Join(without(sources, sources[1]), " and "))
	}
	if a.PasswordEnv != "" && !validEnvName(a.PasswordEnv) {
		t.errf("password_env", "%q is not an environment variable name (letters, digits and _, not starting with a digit)", a.PasswordEnv)
	}
	if a.Credential != "" && (strings.ContainsAny(a.Credential, "/\x00") || a.Credential == "." || a.Credential == "..") {
		t.errf("credential", "%q is not a credential name; give the name used in LoadCredential=, without a directory", a.Credential)
	}
	if t.str("ca_file", &a.CAFile) && a.CAFile == "" {
		t.errf("ca_file", "must not be empty; omit it to use the system's CAs only")
	}
	t.unknown([]string{"id", "url", "user", "password_file", "password_env", "credential", "ca_file"},
		map[string]string{"password": secretHint, "token": secretHint, "secret": secretHint})
}

func without(list []string, s string) []string {
	var out []string
	for _, x := range list {
		if x != s {
			out = append(out, x)
		}
	}
	return out
}

func validEnvName(s string) bool {
	for i, r := range s {
		switch {
		case r == '_', r >= 'A' && r <= 'Z', r >= 'a' && r <= 'z':
		case r >= '0' && r <= '9' && i > 0:
		default:
			return false
		}
	}
	return s != ""
}

func (p *parser) decodeBudget(t *table, b *Budget) {
	b.Rate = DefaultRate
	b.Retention = Duration{DefaultRetention}
	b.RateMargin = Duration{DefaultRateMargin}
	b.RateMarginAuto = true
	if t == nil {
		return
	}
	hasLimit := t.integer("daily_limit", &b.DailyLimit)
	switch {
	case !hasLimit:
		t.missing("daily_limit", "required (the account's API allowance per rolling 24 hours)")
	case b.DailyLimit <= 0:
		t.errf("daily_limit", "must be greater than 0, not %d", b.DailyLimit)
	}
	if t.integer("reserve", &b.Reserve) {
		switch {
		case b.Reserve < 0:
			t.errf("reserve", "must be 0 or more, not %d", b.Reserve)
		case b.DailyLimit > 0 && b.Reserve >= b.DailyLimit:
			t.errf("reserve", "%d must be less than daily_limit (%d)", b.Reserve, b.DailyLimit)
		}
	} else {
		b.Reserve = b.DailyLimit / 10
	}
	if t.number("rate", &b.Rate) && !(b.Rate > 0 && b.Rate <= 1e6) {
		t.errf("rate", "must be a number of requests per second greater than 0, not %v", b.Rate)
	}
	if t.duration("retention", &b.Retention) && b.Retention.Duration <= 0 {
		t.errf("retention", "must be greater than 0, not %s", b.Retention)
	}
	if t.duration("rate_margin", &b.RateMargin) {
		if b.RateMargin.Duration < 0 || b.RateMargin.Duration > time.Second {
			t.errf("rate_margin", "must be from 0s to 1s, not %s", b.RateMargin)
		}
	} else {
		b.RateMarginAuto = true
	}
	t.unknown([]string{"daily_limit", "reserve", "rate", "rate_margin", "retention"}, nil)
}

var (
	notifyKinds     = []string{NotifyWebhook, NotifyCommand}
	notifyKeys      = []string{"name", "kind", "url", "command", "events", "jobs", "min_priority", "secret_file", "timeout", "remind", "thresholds"}
	priorities      = []string{"high", "normal", "low"}
	notifyKindsKeys = map[string]string{"url": NotifyWebhook, "command": NotifyCommand}
)

func (p *parser) decodeNotify(t *table, i int, jobs map[string]int) Notify {
	t.prefix = "notify."
	var n Notify
	t.str("kind", &n.Kind)
	if _, ok := t.m["kind"]; !ok {
		t.missing("kind", "required; use %s", oneOf(notifyKinds))
	} else if !contains(notifyKinds, n.Kind) {
		t.errf("kind", "%q is not allowed; use %s", n.Kind, oneOf(notifyKinds))
	}
	if t.str("name", &n.Name) && !validName(n.Name) {
		t.errf("name", "%q is not allowed; use lower-case letters, digits, '.', '_' and '-'", n.Name)
	}
	if n.Name == "" && n.Kind != "" {
		n.Name = fmt.Sprintf("%s%d", n.Kind, i+1)
	}
	hasURL := t.str("url", &n.URL)
	hasCmd := t.str("command", &n.Command)
	for k, kind := range notifyKindsKeys {
		if _, ok := t.m[k]; ok && contains(notifyKinds, n.Kind) && n.Kind != kind {
			t.errf(k, "not a key of kind %q; it belongs to kind %q", n.Kind, kind)
		}
	}
	switch n.Kind {
	case NotifyWebhook:
		if !hasURL {
			t.missing("url", "required for kind \"webhook\" (an http or https URL)")
		} else if msg := checkURL(n.URL); msg != "" {
			t.errf("url", "%s", msg) // the URL itself may carry a token: not shown
		}
	case NotifyCommand:
		if !hasCmd {
			t.missing("command", "required for kind \"command\" (a program and its arguments)")
		} else if strings.TrimSpace(n.Command) == "" {
			t.errf("command", "must not be empty")
		}
	}
	if t.strs("events", &n.Events) {
		if len(n.Events) == 0 {
			t.errf("events", "must not be empty; omit it for all events (%s)", strings.Join(Events, ", "))
		}
		for k, e := range n.Events {
			if !contains(Events, e) {
				t.errSub("events", []string{idx(k)}, "%q is not an event; use %s", e, oneOf(Events))
			}
		}
	} else {
		n.Events = append([]string(nil), Events...)
	}
	if t.strs("jobs", &n.Jobs) {
		for k, name := range n.Jobs {
			if _, ok := jobs[name]; !ok {
				t.errSub("jobs", []string{idx(k)}, "no job is named %q", name)
			}
		}
		if len(n.Jobs) == 0 {
			n.Jobs = nil
		}
	}
	if t.str("min_priority", &n.MinPriority) && !contains(priorities, n.MinPriority) {
		t.errf("min_priority", "%q is not allowed; use %s", n.MinPriority, oneOf(priorities))
	}
	n.MinPriority = orDefault(n.MinPriority, DefaultMinPriority)
	if t.str("secret_file", &n.SecretFile) && n.SecretFile == "" {
		t.errf("secret_file", "must not be empty")
	}
	n.Timeout = Duration{DefaultNotifyTimeout}
	if t.duration("timeout", &n.Timeout) && n.Timeout.Duration <= 0 {
		t.errf("timeout", "must be greater than 0, not %s", n.Timeout)
	}
	n.Remind = Duration{DefaultNotifyRemind}
	if t.duration("remind", &n.Remind) && n.Remind.Duration < 0 {
		t.errf("remind", "must be 0 (never) or more, not %s", n.Remind)
	}
	if t.ints("thresholds", &n.Thresholds) {
		if len(n.Thresholds) == 0 {
			t.errf("thresholds", "must not be empty; leave \"budget\" out of events to turn budget notifications off")
		}
		for k, v := range n.Thresholds {
			switch {
			case v < 1 || v > 100:
				t.errSub("thresholds", []string{idx(k)}, "%d is not a percentage from 1 to 100", v)
			case k > 0 && v <= n.Thresholds[k-1]:
				t.errSub("thresholds", []string{idx(k)}, "must be in ascending order (%d follows %d)", v, n.Thresholds[k-1])
			}
		}
	} else {
		n.Thresholds = append([]int(nil), DefaultThresholds...)
	}
	t.unknown(notifyKeys, map[string]string{
		"secret":   "a secret must not be written in the configuration file (the value is not shown here); put it in a file readable only by runnerd and name it with secret_file",
		"password": "a password must not be written in the configuration file (the value is not shown here); put it in a file and name it with secret_file",
	})
	return n
}

// checkURL returns a problem with an http(s) URL, or "".
func checkURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "is not an absolute http or https URL"
	}
	return ""
}

func checkListen(s string) string {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Sprintf("%q is not host:port (e.g. \"127.0.0.1:9271\"); leave it empty to turn the listener off", s)
	}
	n := 0
	for _, r := range port {
		if r < '0' || r > '9' {
			return fmt.Sprintf("%q: port %q is not a number", s, port)
		}
		n = n*10 + int(r-'0')
		if n > 65535 {
			break
		}
	}
	if port == "" || n > 65535 {
		return fmt.Sprintf("%q: port must be 0 to 65535", s)
	}
	return ""
}

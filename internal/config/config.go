// Package config turns runnerd's TOML configuration (jobs.toml) into a typed,
// validated Config.
//
// The keys are the public contract of DESIGN 3.1. Unknown keys are errors, and
// every problem in a file is reported at once, each as
//
//	FILE:LINE: job "name": key: what is wrong and what is allowed
//
// (without the job part outside [[job]] tables). The package never touches the
// network or the database; it reads the configuration file and, in Load, looks
// at (never into) the secret files the configuration names. Secrets are read
// only on demand, by Account.Password and Notify.Secret, and are returned as a
// Secret, which does not print.
package config

import (
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strings"
	"time"
)

// Built-in defaults (DESIGN 3.1).
const (
	DefaultURL           = "https://api.boomi.com/api/rest/v1"
	DefaultRate          = 5.0
	DefaultRetention     = 90 * 24 * time.Hour
	DefaultRateMargin    = 50 * time.Millisecond
	DefaultStoreFile     = "runnerd.db"
	DefaultLogLevel      = "info"
	DefaultLogFormat     = "auto"
	DefaultTimezone      = "UTC"
	DefaultPriority      = "normal"
	DefaultTimeout       = time.Hour
	DefaultOverlap       = "skip"
	DefaultCatchUp       = "latest"
	DefaultCatchUpWindow = 24 * time.Hour
	DefaultOnUnknown     = "skip"
	DefaultFirstWindow   = 24 * time.Hour
	DefaultFormat        = "jsonl"
	DefaultListener      = "RUNNING"
	DefaultNotifyTimeout = 10 * time.Second
	DefaultNotifyRemind  = 6 * time.Hour
	DefaultMinPriority   = "low"
)

// after_status values.
const (
	AfterSucceeded = "succeeded" // the default: the chain goes on only while each step succeeds
	AfterFailed    = "failed"    // a step that handles its predecessor's failure
	AfterEnded     = "ended"     // whatever the predecessor's outcome
)

// Job kinds.
const (
	KindExecute = "execute"
	KindDeploy  = "deploy"
	KindExport  = "export"
	KindRelease = "release"
)

// Release defaults.
const (
	DefaultListenerTimeout = 5 * time.Minute
	DefaultSmokeTimeout    = 10 * time.Minute
)

// Config is a loaded, validated configuration.
type Config struct {
	File     string      `toml:"-"` // the path it was loaded from
	Account  Account     `toml:"account"`
	Budget   Budget      `toml:"budget"`
	Store    Store       `toml:"store"`
	Log      Log         `toml:"log"`
	HTTP     HTTP        `toml:"http"`
	Evidence Evidence    `toml:"evidence"`
	Notify   []Notify    `toml:"notify"`
	Defaults JobDefaults `toml:"-"` // the [defaults] table as written; already applied to Jobs
	Jobs     []Job       `toml:"job"`
}

// JobDefaults is the [defaults] table: job keys given once for all jobs. Set
// lists the keys that were given (TOML names); only those are applied.
type JobDefaults struct {
	Job
	Set []string
}

// Account is the AtomSphere account and how to authenticate to it.
type Account struct {
	ID           string `toml:"id"`
	URL          string `toml:"url"`  // base URL; the account id is appended
	User         string `toml:"user"` // user name or BOOMI_TOKEN.<user>
	PasswordFile string `toml:"password_file,omitempty"`
	PasswordEnv  string `toml:"password_env,omitempty"`
	Credential   string `toml:"credential,omitempty"` // file name under $CREDENTIALS_DIRECTORY
	CAFile       string `toml:"ca_file,omitempty"`    // extra CA bundle (PEM), optional
}

// Budget is the account's API allowance.
type Budget struct {
	DailyLimit int      `toml:"daily_limit"` // per rolling 24 h
	Reserve    int      `toml:"reserve"`     // kept back for others and recovery
	Rate       float64  `toml:"rate"`        // requests per second
	Retention  Duration `toml:"retention"`   // how long call rows are kept
	// RateMargin widens the rate's one-second window, so that jitter between
	// runnerd and the platform (network, scheduling) cannot put more than rate
	// requests into one second at the server. An addition to DESIGN 3.1.
	RateMargin Duration `toml:"rate_margin"`
	// RateMarginAuto: rate_margin was not set, so the daemon adapts the
	// margin to the round-trip spread it measures (budget.MarginEstimator),
	// starting from RateMargin (DefaultRateMargin).
	RateMarginAuto bool `toml:"-"`
}

// Store is where the ledger lives: the SQLite file at Path (the default), or
// the PostgreSQL database at URL shared by several runnerd (issue 21), whose
// password follows the account's rules (a file, an environment variable or a
// systemd credential; never in the URL). With URL, Path still anchors this
// host's own files: the control socket, the lock, the evidence directory.
type Store struct {
	Path         string `toml:"path"`
	URL          string `toml:"url,omitempty"`
	PasswordFile string `toml:"password_file,omitempty"`
	PasswordEnv  string `toml:"password_env,omitempty"`
	Credential   string `toml:"credential,omitempty"`
	// Instance names this runnerd among those sharing URL (default: the host
	// name): what status shows and what a job's lease is held by.
	Instance string `toml:"instance,omitempty"`
	// Lease is how long a job's lease on a shared ledger lasts without a
	// heartbeat (renewed every third of it): the longest a job goes without
	// an owner after its instance dies. Default DefaultLease.
	Lease Duration `toml:"lease,omitempty"`
}

// DefaultLease is [store] lease's default.
const DefaultLease = 15 * time.Second

// Log configures logging.
type Log struct {
	Level  string `toml:"level"`  // debug|info|warn|error
	Format string `toml:"format"` // auto|text|json
}

// HTTP configures the metrics and status listener.
type HTTP struct {
	Listen string `toml:"listen,omitempty"` // empty: off
	// PublicURL is the status page's address as people reach it (behind a
	// proxy, another host name); notifications link a run's page under it.
	// Empty: no links.
	PublicURL string `toml:"public_url,omitempty"`
}

// Evidence configures where failure evidence (process logs, execution
// artifacts) is kept and how much of it.
type Evidence struct {
	Dir         string   `toml:"dir"`           // default: "evidence" beside the ledger
	MaxRunMB    int      `toml:"max_run_mb"`    // per run, all its files together
	MaxTotalMB  int      `toml:"max_total_mb"`  // all runs; the oldest files go first
	GiveUpAfter Duration `toml:"give_up_after"` // after the run ended: the platform has purged its logs
}

// Evidence defaults and the execute keys' values.
const (
	DefaultEvidenceDir      = "evidence"
	DefaultEvidenceRunMB    = 32
	DefaultEvidenceTotalMB  = 1024
	DefaultEvidenceGiveUp   = 30 * 24 * time.Hour
	DefaultLogLevelEvidence = "ALL"
	LogLevelOff             = "off"
	OnTimeoutCancel         = "cancel"
	OnTimeoutLeave          = "leave"
)

// Notify is one [[notify]] target.
type Notify struct {
	Name        string   `toml:"name"`    // default kind+position, e.g. "webhook1"
	Kind        string   `toml:"kind"`    // webhook|command
	URL         string   `toml:"url"`     // webhook
	Command     string   `toml:"command"` // command
	Events      []string `toml:"events"`  // default: all events
	Jobs        []string `toml:"jobs"`    // only these jobs; empty: all
	MinPriority string   `toml:"min_priority"`
	SecretFile  string   `toml:"secret_file"` // e.g. an HMAC key for webhook signatures
	Timeout     Duration `toml:"timeout"`
	Remind      Duration `toml:"remind"`     // repeat a still-open problem after this; 0: never
	Thresholds  []int    `toml:"thresholds"` // budget use, percent of daily_limit - reserve
}

// Notification kinds and events.
const (
	NotifyWebhook = "webhook"
	NotifyCommand = "command"
)

// Events lists the notification events, in documentation order.
var Events = []string{"failed", "recovered", "deferred", "missed", "unknown", "budget", "classification", "auth"}

// DefaultThresholds are the budget thresholds (percent) notified by default.
var DefaultThresholds = []int{50, 80, 95}

// Job is one [[job]] after [defaults] and built-in defaults were applied.
type Job struct {
	Line int `toml:"-"` // line of its [[job]] header, for messages

	Name          string   `toml:"name"`
	Kind          string   `toml:"kind"`
	Schedule      string   `toml:"schedule"`
	Timezone      string   `toml:"timezone"`
	Priority      string   `toml:"priority"`
	Timeout       Duration `toml:"timeout"`
	Overlap       string   `toml:"overlap"`
	CatchUp       string   `toml:"catch_up"`
	CatchUpWindow Duration `toml:"catch_up_window"`
	Jitter        Duration `toml:"jitter"`
	Retries       int      `toml:"retries"`
	Enabled       bool     `toml:"enabled"`
	// After makes the job a step of a chain: it runs when job After ends in
	// AfterStatus (succeeded, failed or ended), instead of on a schedule.
	After       string `toml:"after,omitempty"`
	AfterStatus string `toml:"after_status,omitempty"`

	// execute (ProcessID and Method also deploy; OnUnknown also deploy)
	ProcessID   string            `toml:"process_id,omitempty"`
	ProcessName string            `toml:"process_name,omitempty"`
	AtomID      string            `toml:"atom_id,omitempty"`
	Method      string            `toml:"method,omitempty"`
	Wait        bool              `toml:"wait,omitempty"`
	OnUnknown   string            `toml:"on_unknown,omitempty"`
	Properties  map[string]string `toml:"properties,omitempty"`
	// LogLevel is the process log's level fetched after a failed execution
	// (LogLevelOff: none); Artifacts also fetches its execution artifacts.
	LogLevel  string `toml:"log_level,omitempty"`
	Artifacts bool   `toml:"artifacts,omitempty"`
	// OnTimeout: at the job's timeout, cancel the execution on the platform
	// (OnTimeoutCancel) or leave it running (OnTimeoutLeave).
	OnTimeout string `toml:"on_timeout,omitempty"`

	// deploy
	FromEnvironment string `toml:"from_environment,omitempty"`
	ToEnvironment   string `toml:"to_environment,omitempty"`
	ListenerStatus  string `toml:"listener_status,omitempty"`

	// release (also process_id, from_environment, to_environment, method,
	// listener_status, on_unknown)
	Atoms           []string    `toml:"atoms,omitempty"` // target runtimes; default: those attached to to_environment
	PauseSchedules  bool        `toml:"pause_schedules,omitempty"`
	Listeners       []string    `toml:"listeners,omitempty"` // listener process ids to pause on the target runtimes
	ListenerTimeout Duration    `toml:"listener_timeout,omitempty"`
	Extensions      *Extensions `toml:"extensions,omitempty"`
	SmokeProcessID  string      `toml:"smoke_process_id,omitempty"`
	SmokeAtomID     string      `toml:"smoke_atom_id,omitempty"`
	SmokeTimeout    Duration    `toml:"smoke_timeout,omitempty"`

	// export
	Object         string   `toml:"object,omitempty"`
	WindowProperty string   `toml:"window_property,omitempty"` // "": full export each run
	FirstWindow    Duration `toml:"first_window,omitempty"`
	Output         string   `toml:"output,omitempty"`
	Format         string   `toml:"format,omitempty"`
	Filters        []Filter `toml:"filter,omitempty"`
}

// Extensions are the environment extensions a release sets on
// to_environment, always as a partial update. Secrets come from files
// (secret_files: name → path, read at each run with password_file's rules),
// never from the configuration.
type Extensions struct {
	Connections       []ExtConnection      `toml:"connection,omitempty"`
	ProcessProperties []ExtProcessProperty `toml:"process_property,omitempty"`
	Properties        map[string]string    `toml:"properties,omitempty"` // dynamic process properties
}

// ExtConnection sets fields of one connection component.
type ExtConnection struct {
	ID          string            `toml:"id"`
	Fields      map[string]string `toml:"fields,omitempty"`
	SecretFiles map[string]string `toml:"secret_files,omitempty"`
}

// ExtProcessProperty sets values of one process-property component (the
// platform needs the component whole: the values not given are sent as
// they are).
type ExtProcessProperty struct {
	ID          string            `toml:"id"`
	Values      map[string]string `toml:"values,omitempty"`
	SecretFiles map[string]string `toml:"secret_files,omitempty"`
}

// Filter is one [[job.filter]] of an export: ANDed with the window.
type Filter struct {
	Property  string   `toml:"property"`
	Operator  string   `toml:"operator"`
	Arguments []string `toml:"arguments"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "30m",
// "2h") in TOML.
type Duration struct{ time.Duration }

// UnmarshalText parses a Go duration string.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("%q is not a duration; use a number with a unit, such as \"90s\", \"30m\" or \"2h\"", b)
	}
	d.Duration = v
	return nil
}

// MarshalText writes the shortest Go duration string: "2h", "1h30m", "90s".
func (d Duration) MarshalText() ([]byte, error) {
	s := d.Duration.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return []byte(s), nil
}

// String is MarshalText as a string.
func (d Duration) String() string {
	b, _ := d.MarshalText()
	return string(b)
}

// LoadOptions is the environment Load and Parse work in; the zero value uses
// the process's.
type LoadOptions struct {
	// Getenv reads STATE_DIRECTORY, CREDENTIALS_DIRECTORY and password_env
	// variables; default os.Getenv.
	Getenv func(string) string
	// Getuid is the uid secret files may belong to besides root; default os.Getuid.
	Getuid func() int
	// FileOwner returns the owner of a file; default: the uid in its stat data.
	FileOwner func(fs.FileInfo) (uid int, ok bool)
	// SkipFileChecks makes Load skip looking at password_file, secret_file and
	// ca_file (for checking a configuration meant for another host).
	SkipFileChecks bool
}

func (o LoadOptions) getenv(k string) string {
	if o.Getenv == nil {
		return os.Getenv(k)
	}
	return o.Getenv(k)
}

func (o LoadOptions) getuid() int {
	if o.Getuid == nil {
		return os.Getuid()
	}
	return o.Getuid()
}

func (o LoadOptions) owner(fi fs.FileInfo) (int, bool) {
	if o.FileOwner == nil {
		return fileOwner(fi)
	}
	return o.FileOwner(fi)
}

// Error is one problem in a configuration file.
type Error struct {
	File string
	Line int    // 0 when the problem has no line (a missing table)
	Job  string // the job's name inside a named [[job]]
	Key  string // e.g. "schedule", "account.id", "filter.operator"
	Msg  string
}

// Error formats FILE:LINE: job "name": key: msg.
func (e *Error) Error() string {
	var b strings.Builder
	if e.File != "" {
		b.WriteString(e.File)
		if e.Line > 0 {
			fmt.Fprintf(&b, ":%d", e.Line)
		}
		b.WriteString(": ")
	} else if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	if e.Job != "" {
		fmt.Fprintf(&b, "job %q: ", e.Job)
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// ErrorList is every problem found in a file, sorted by line.
type ErrorList []*Error

// Error joins the problems with newlines.
func (l ErrorList) Error() string {
	s := make([]string, len(l))
	for i, e := range l {
		s[i] = e.Error()
	}
	return strings.Join(s, "\n")
}

// Unwrap returns the problems, for errors.As.
func (l ErrorList) Unwrap() []error {
	out := make([]error, len(l))
	for i, e := range l {
		out[i] = e
	}
	return out
}

func (l ErrorList) sort() {
	sort.SliceStable(l, func(i, j int) bool { return l[i].Line < l[j].Line })
}

// Load reads the configuration at path, parses it (see Parse) and checks the
// secret and CA files it names (unless opts.SkipFileChecks).
func Load(path string, opts LoadOptions) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	c, errs := parse(path, data, opts)
	if c != nil && !opts.SkipFileChecks {
		errs = append(errs, c.checkFiles(opts)...)
	}
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return c.cfg, nil
}

// Parse parses and validates data; file names it in messages. It applies
// [defaults], then built-in defaults, and returns every problem at once as an
// ErrorList. It does not look at the files the configuration names.
func Parse(file string, data []byte, opts LoadOptions) (*Config, error) {
	c, errs := parse(file, data, opts)
	if len(errs) > 0 {
		errs.sort()
		return nil, errs
	}
	return c.cfg, nil
}

package atomsim

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"mime"
	"net/http"
	"strings"
	"sync"
	"time"

	"runnerd/internal/atomapi"
)

// Defaults of Options.
const (
	DefaultRate          = 5
	DefaultDailyLimit    = 10000
	DefaultAuditLogs     = 25000
	DefaultAuditDays     = 30
	DefaultExecRecords   = 3000
	DefaultEvents        = 1000
	DefaultExecDuration  = 30 * time.Second
	DefaultRecordDelay   = time.Second
	DefaultQueryTokenTTL = time.Hour
	DefaultDownloadDelay = 2 * time.Second
	DefaultDownloadTTL   = time.Hour

	DefaultListenerDelay       = 2 * time.Second
	DefaultListenerStatusDelay = time.Second
)

// PathPrefix is the prefix of the platform's routes; the account id follows it.
const PathPrefix = "/api/rest/v1/"

// PartnerPathPrefix is the prefix of the Partner API's routes (only
// cancelExecution); the account id follows it.
const PartnerPathPrefix = "/partner/api/rest/v1/"

// downloadPrefix is the prefix of download URLs: /account/{account}/api/download/{name}.
const downloadPrefix = "/account/"

// Options configure a Server. The zero value of each field means its default.
type Options struct {
	Account, User, Password string // defaults "sim-account", "runnerd@sim", "sim-password"

	Rate       int // requests per second, over any 1-second window; default 5; <0 = unlimited
	DailyLimit int // rolling 24 h allowance in UTC hour buckets; default 10000; <0 = unlimited

	Seed int64 // default 1; all seeded data is deterministic from it (and the clock at New)

	AuditLogs        int // seeded AuditLog records, default 25000; <0 = none
	AuditDays        int // the seeded history spans this many days ending at the clock's now at New; default 30
	ExecutionRecords int // seeded ExecutionRecord history, default 3000; <0 = none
	Events           int // seeded Event history, default 1000; <0 = none

	ExecDuration time.Duration // how long a started execution stays INPROCESS; default 30s; <0 = 0
	RecordDelay  time.Duration // how long after the start its record appears (async 202 until then); default 1s; <0 = 0

	// BareAsyncRecord makes GET /ExecutionRecord/async/{id} answer the bare
	// ExecutionRecord instead of the AsyncOperationResult wrapper.
	BareAsyncRecord bool
	// PageCountResults makes numberOfResults the count of the page instead of
	// the query's total.
	PageCountResults bool
	// QueryTokenTTL is how long a queryToken stays valid (simulated time); default 1h.
	QueryTokenTTL time.Duration

	// DownloadDelay is how long (simulated time) a download URL answers 202
	// before its ZIP is ready; default 2s; <0 = 0.
	DownloadDelay time.Duration
	// DownloadTTL is how long (simulated time) after its creation a download
	// URL answers; later it is 404 (expired); default 1h.
	DownloadTTL time.Duration

	// ListenerDelay is how long (simulated time) after a changeListenerStatus
	// its change takes effect; until then the listener keeps its status;
	// default 2s; <0 = 0.
	ListenerDelay time.Duration
	// ListenerStatusDelay is how long (simulated time) a ListenerStatus token
	// answers 202 before its result; default 1s; <0 = 0.
	ListenerStatusDelay time.Duration

	Now func() time.Time // the clock; default time.Now
}

func (o *Options) setDefaults() {
	def := func(s *string, v string) {
		if *s == "" {
			*s = v
		}
	}
	def(&o.Account, DefaultAccount)
	def(&o.User, DefaultUser)
	def(&o.Password, DefaultPassword)
	count := func(n *int, v int) {
		switch {
		case *n == 0:
			*n = v
		case *n < 0:
			*n = 0
		}
	}
	if o.Rate == 0 {
		o.Rate = DefaultRate
	}
	if o.DailyLimit == 0 {
		o.DailyLimit = DefaultDailyLimit
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	count(&o.AuditLogs, DefaultAuditLogs)
	count(&o.ExecutionRecords, DefaultExecRecords)
	count(&o.Events, DefaultEvents)
	if o.AuditDays <= 0 {
		o.AuditDays = DefaultAuditDays
	}
	dur := func(d *time.Duration, v time.Duration) {
		switch {
		case *d == 0:
			*d = v
		case *d < 0:
			*d = 0
		}
	}
	dur(&o.ExecDuration, DefaultExecDuration)
	dur(&o.RecordDelay, DefaultRecordDelay)
	if o.QueryTokenTTL <= 0 {
		o.QueryTokenTTL = DefaultQueryTokenTTL
	}
	dur(&o.DownloadDelay, DefaultDownloadDelay)
	if o.DownloadTTL <= 0 {
		o.DownloadTTL = DefaultDownloadTTL
	}
	dur(&o.ListenerDelay, DefaultListenerDelay)
	dur(&o.ListenerStatusDelay, DefaultListenerStatusDelay)
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Request is one request the simulator received.
type Request struct {
	Time      time.Time // simulated clock at arrival
	Method    string
	Path      string // URL path, without the query string
	RequestID string // header X-Runnerd-Request-Id
	Status    int    // the status answered; 0 when the connection was reset or the answer is still being written
	Fault     string // the injected fault's name, "" for none
}

// Server is the simulated AtomSphere; it is an http.Handler.
type Server struct {
	opts    Options
	objects map[string]*object

	clockMu sync.Mutex
	fakeNow time.Time
	fake    bool

	mu       sync.Mutex // guards everything below
	rng      *rand.Rand // for ids of things created at run time
	data     *Dataset
	execs    []*execution
	deploys  []DeployEvent
	tokens   map[string]*cursor
	tokenSeq uint64
	ev       evidence // downloads, cancels and their knobs (evidence.go)
	rel      release  // schedules, listeners and extensions (release.go)

	limMu   sync.Mutex
	recent  []time.Time // accepted requests' times within the last second
	buckets map[time.Time]int

	logMu  sync.Mutex
	log    []Request
	faults []*Fault
}

// New returns a simulator with data seeded from opts.
func New(opts Options) *Server {
	opts.setDefaults()
	s := &Server{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(uint64(opts.Seed), 0x7a11e6)),
		tokens:  map[string]*cursor{},
		ev:      evidence{downloads: map[string]*download{}, oversize: DefaultDownloadOversize},
		buckets: map[time.Time]int{},
	}
	s.data = seed(opts, opts.Now())
	s.objects = s.buildObjects()
	s.rel = seedRelease()
	s.addReleaseObjects()
	return s
}

// Now returns the simulator's clock.
func (s *Server) Now() time.Time {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if s.fake {
		return s.fakeNow
	}
	return s.opts.Now()
}

// SetNow fixes the clock at t; from then on it moves only with SetNow and Advance.
func (s *Server) SetNow(t time.Time) {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	s.fake, s.fakeNow = true, t
}

// Advance moves the clock by d, fixing it first if it was not fixed.
func (s *Server) Advance(d time.Duration) {
	s.clockMu.Lock()
	defer s.clockMu.Unlock()
	if !s.fake {
		s.fake, s.fakeNow = true, s.opts.Now()
	}
	s.fakeNow = s.fakeNow.Add(d)
}

// Requests returns every request received so far, in arrival order.
func (s *Server) Requests() []Request {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	return append([]Request(nil), s.log...)
}

// Data returns a copy of the simulator's records: the seeded data with what
// requests have changed, and the records of started executions as of now.
func (s *Server) Data() *Dataset {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	d := s.data.clone()
	for _, x := range s.execs {
		if rec, ok := x.record(now); ok {
			d.ExecutionRecords = append(d.ExecutionRecords, rec)
		}
	}
	return d
}

// Usage returns the rolling-window usage as the simulator counts it: the
// accepted requests in the hour buckets H-23..H of the current hour H, and
// those buckets (keyed by the hour's start, UTC).
func (s *Server) Usage() (used int, buckets map[time.Time]int) {
	now := s.Now()
	s.limMu.Lock()
	defer s.limMu.Unlock()
	h := now.UTC().Truncate(time.Hour)
	buckets = map[time.Time]int{}
	for t, n := range s.buckets {
		if t.After(h.Add(-24*time.Hour)) && !t.After(h) {
			buckets[t] = n
			used += n
		}
	}
	return used, buckets
}

// statusWriter remembers the status written.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// ServeHTTP answers one request: faults first (they stand for the network and
// the platform's edge), then auth, the limits and the route.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	f := s.takeFault(r.URL.Path)
	s.logMu.Lock()
	idx := len(s.log)
	s.log = append(s.log, Request{Time: now, Method: r.Method, Path: r.URL.Path, RequestID: r.Header.Get(atomapi.RequestIDHeader)})
	if f != nil {
		s.log[idx].Fault = f.Kind.String()
	}
	s.logMu.Unlock()

	sw := &statusWriter{ResponseWriter: w}
	if f != nil {
		s.serveFault(sw, r, f)
	} else {
		s.serve(sw, r)
	}
	s.logMu.Lock()
	s.log[idx].Status = sw.status
	s.logMu.Unlock()
}

// serve is the platform proper: auth, limits, routing.
func (s *Server) serve(w http.ResponseWriter, r *http.Request) {
	now := s.Now()
	user, pass, ok := r.BasicAuth()
	if !ok || subtle.ConstantTimeCompare([]byte(user), []byte(s.opts.User)) != 1 ||
		subtle.ConstantTimeCompare([]byte(pass), []byte(s.opts.Password)) != 1 {
		w.Header().Set("WWW-Authenticate", `Basic realm="AtomSphere API"`)
		writeError(w, http.StatusUnauthorized, "Incorrect user name and password combination.")
		return
	}
	var prefix string
	for _, p := range []string{PathPrefix, PartnerPathPrefix, downloadPrefix} {
		if strings.HasPrefix(r.URL.Path, p) {
			prefix = p
		}
	}
	if prefix == "" {
		writeError(w, http.StatusNotFound, "not found")
		return
	}
	account, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, prefix), "/")
	if account != s.opts.Account {
		writeError(w, http.StatusForbidden, "User does not have access to account "+account)
		return
	}
	if msg := s.admit(now); msg != "" {
		writeError(w, http.StatusServiceUnavailable, msg)
		return
	}
	// Downloads answer ZIPs: clients send Accept: application/zip.
	if prefix != downloadPrefix && !acceptsJSON(r) {
		writeError(w, http.StatusNotAcceptable, "the simulator answers JSON only: send Accept: application/json")
		return
	}
	seg := strings.Split(rest, "/")
	switch prefix {
	case PathPrefix:
		s.route(w, r, seg, now)
	case PartnerPathPrefix:
		s.routePartner(w, r, seg, now)
	default:
		s.routeDownload(w, r, seg, now)
	}
}

// admit applies the per-second rate and the rolling 24 h allowance, and counts
// the request if it passes both. It returns the refusal's message, or "".
func (s *Server) admit(now time.Time) string {
	s.limMu.Lock()
	defer s.limMu.Unlock()
	if s.opts.Rate > 0 {
		cut := now.Add(-time.Second)
		keep := s.recent[:0]
		for _, t := range s.recent {
			if t.After(cut) {
				keep = append(keep, t)
			}
		}
		s.recent = keep
		if len(s.recent) >= s.opts.Rate {
			return fmt.Sprintf("API rate limit exceeded: more than %d requests per second", s.opts.Rate)
		}
	}
	h := now.UTC().Truncate(time.Hour)
	if s.opts.DailyLimit > 0 {
		used := 0
		for i := range 24 {
			used += s.buckets[h.Add(-time.Duration(i)*time.Hour)]
		}
		if used >= s.opts.DailyLimit {
			return fmt.Sprintf("API request limit exceeded: %d requests in the rolling 24 hours", s.opts.DailyLimit)
		}
	}
	if s.opts.Rate > 0 {
		s.recent = append(s.recent, now)
	}
	s.buckets[h]++
	if len(s.buckets) > 72 {
		for t := range s.buckets {
			if t.Before(h.Add(-48 * time.Hour)) {
				delete(s.buckets, t)
			}
		}
	}
	return ""
}

// getters maps the objects that support GET /{Object}/{id}.
var getters = map[string]bool{
	"AuditLog": true, "Process": true, "Atom": true, "Environment": true,
	"Deployment": true, "DeployedPackage": true, "PackagedComponent": true,
}

func (s *Server) route(w http.ResponseWriter, r *http.Request, seg []string, now time.Time) {
	post, get := r.Method == http.MethodPost, r.Method == http.MethodGet
	switch {
	case post && len(seg) == 2 && seg[1] == "query" && s.objects[seg[0]] != nil:
		s.handleQuery(w, r, seg[0], false, now)
	case post && len(seg) == 2 && seg[1] == "queryMore" && s.objects[seg[0]] != nil:
		s.handleQuery(w, r, seg[0], true, now)
	case get && len(seg) == 3 && seg[0] == "ExecutionRecord" && seg[1] == "async" && seg[2] != "":
		s.handleAsync(w, seg[2], now)
	case post && len(seg) == 1 && seg[0] == "ExecutionRequest":
		s.handleExecutionRequest(w, r, now)
	case post && len(seg) == 1 && seg[0] == "executeProcess":
		s.handleExecuteProcess(w, r, now)
	case post && len(seg) == 1 && seg[0] == "PackagedComponent":
		s.handleCreatePackage(w, r, now)
	case post && len(seg) == 1 && seg[0] == "DeployedPackage":
		s.handleCreateDeployedPackage(w, r, now)
	case post && len(seg) == 4 && seg[0] == "deployProcess" && seg[1] != "" && seg[2] != "" && seg[3] != "":
		s.handleDeployProcess(w, r, seg[1], seg[2], seg[3], now)
	case post && len(seg) == 1 && seg[0] == "ProcessLog":
		s.handleProcessLog(w, r, now)
	case post && len(seg) == 1 && seg[0] == "ExecutionArtifacts":
		s.handleExecutionArtifacts(w, r, now)
	case post && len(seg) == 2 && seg[0] == "cancelExecution" && seg[1] != "" && s.cancelOn(false):
		s.handleCancel(w, seg[1], now)
	case post && len(seg) == 2 && seg[0] == "ProcessScheduleStatus" && seg[1] == "bulk":
		s.handleScheduleBulk(w, r)
	case (get || post) && len(seg) == 2 && seg[0] == "ProcessScheduleStatus" && seg[1] != "":
		s.handleSchedule(w, r, seg[1])
	case (get || post) && len(seg) == 2 && seg[0] == "EnvironmentExtensions" && seg[1] != "":
		s.handleExtensions(w, r, seg[1], now)
	case post && len(seg) == 1 && seg[0] == "changeListenerStatus":
		s.handleChangeListener(w, r, now)
	case post && len(seg) == 3 && seg[0] == "async" && seg[1] == "ListenerStatus" && seg[2] == "query":
		s.handleListenerQuery(w, r, now)
	case get && len(seg) == 4 && seg[0] == "async" && seg[1] == "ListenerStatus" && seg[2] == "response" && seg[3] != "":
		s.handleListenerResponse(w, seg[3], now)
	case get && len(seg) == 2 && getters[seg[0]] && seg[1] != "":
		s.handleGet(w, seg[0], seg[1])
	default:
		writeError(w, http.StatusNotFound, "no such operation: "+r.Method+" /"+strings.Join(seg, "/"))
	}
}

// handleGet serves GET /{Object}/{id}.
func (s *Server) handleGet(w http.ResponseWriter, obj, id string) {
	s.mu.Lock()
	var v any
	d := s.data
	switch obj {
	case "AuditLog":
		v = find(d.AuditLogs, func(a *atomapi.AuditLog) bool { return a.DocumentID == id })
	case "Process":
		v = find(d.Processes, func(p *atomapi.Process) bool { return p.ID == id })
	case "Atom":
		v = find(d.Atoms, func(a *atomapi.Atom) bool { return a.ID == id })
	case "Environment":
		v = find(d.Environments, func(e *atomapi.Environment) bool { return e.ID == id })
	case "Deployment":
		v = find(d.Deployments, func(e *atomapi.Deployment) bool { return e.ID == id })
	case "DeployedPackage":
		v = find(d.DeployedPackages, func(e *atomapi.DeployedPackage) bool { return e.DeploymentID == id })
	case "PackagedComponent":
		v = find(d.PackagedComponents, func(e *atomapi.PackagedComponent) bool { return e.PackageID == id })
	}
	s.mu.Unlock()
	if v == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid %s id: %s", obj, id))
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// find returns a copy of the first element matching ok, or nil.
func find[T any](s []T, ok func(*T) bool) any {
	for i := range s {
		if ok(&s[i]) {
			return s[i]
		}
	}
	return nil
}

func (s *Server) processName(id string) string {
	for _, p := range s.data.Processes {
		if p.ID == id {
			return p.Name
		}
	}
	return ""
}

func (s *Server) environmentName(id string) string {
	for _, e := range s.data.Environments {
		if e.ID == id {
			return e.Name
		}
	}
	return ""
}

func (s *Server) packageNotes(id string) string {
	for _, p := range s.data.PackagedComponents {
		if p.PackageID == id {
			return p.Notes
		}
	}
	return ""
}

const maxBody = 1 << 20

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("reading the request body: %v", err)
	}
	if len(b) > maxBody {
		return nil, errors.New("request body too large")
	}
	return b, nil
}

// decodeBody decodes a JSON request body into v (415 or 400 on failure).
func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	if !isJSON(r) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return false
	}
	b, err := readBody(r)
	if err == nil {
		err = json.Unmarshal(b, v)
	}
	if err != nil {
		writeError(w, http.StatusBadRequest, "malformed request body: "+err.Error())
		return false
	}
	return true
}

func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && (mt == "application/json" || strings.HasSuffix(mt, "+json"))
}

func acceptsJSON(r *http.Request) bool {
	a := r.Header.Get("Accept")
	return strings.Contains(a, "json") || strings.Contains(a, "*/*")
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "encoding the answer: "+err.Error())
		return
	}
	writeRaw(w, status, append(b, '\n'))
}

// writeError answers {"@type":"Error","message":…}.
func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, atomapi.ErrorBody{Type: "Error", Message: msg})
}

// writeErr answers err: 400 for a badRequest, 500 otherwise.
func writeErr(w http.ResponseWriter, err error) {
	var br badRequest
	if errors.As(err, &br) {
		writeError(w, http.StatusBadRequest, br.Error())
		return
	}
	writeError(w, http.StatusInternalServerError, err.Error())
}

package atomsim

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"time"

	"runnerd/internal/atomapi"
)

// This file holds the release operations of atomsphere-api.md §9.3 and §9.4:
// ProcessScheduleStatus, changeListenerStatus with the async ListenerStatus
// query, and EnvironmentExtensions. Their JSON types are the simulator's own.

// Well-known ids of the seeded release objects.
const (
	ConnOrdersDB = "conn-orders-db" // the "Orders DB" connection of every environment's extensions
	PPOrders     = "pp-orders"      // the "Orders Settings" process-property component
)

// Listener statuses, as ListenerStatus reports them.
const (
	ListenerListening = "listening"
	ListenerPaused    = "paused"
	ListenerErrored   = "errored"
)

// listenerActions are the actions of changeListenerStatus.
var listenerActions = map[string]bool{
	"pause": true, "resume": true, "restart": true, "pause_all": true, "resume_all": true, "restart_all": true,
}

// maxBulk is the most ids a bulk GET takes.
const maxBulk = 100

// ListenerChange is one changeListenerStatus the simulator accepted.
type ListenerChange struct {
	Time        time.Time // simulated clock at arrival
	Effective   time.Time // Time + Options.ListenerDelay: when the change takes effect
	RequestID   string    // the request's X-Runnerd-Request-Id header
	Action      string    // as sent: pause, resume, restart, pause_all, resume_all or restart_all
	ContainerID string
	ListenerID  string // "" for the *_all actions
	Stuck       bool   // a resume or restart accepted under SetListenerStuck(true): it has no effect
}

// ExtensionUpdate is one POST /EnvironmentExtensions/{id} the simulator
// received, whatever its answer.
type ExtensionUpdate struct {
	Time          time.Time // simulated clock at arrival
	RequestID     string    // the request's X-Runnerd-Request-Id header
	EnvironmentID string    // the {id} of the path
	// Partial is true when the body's partial was true or "true"; false (the
	// platform's default) is a full update.
	Partial bool
	// Body is the body received, re-encoded (object keys sorted), with every
	// encrypted value replaced by "***"; nil when the body was not JSON.
	Body   []byte
	Status int // the status answered
}

// Extensions is a snapshot of one environment's extension values (Server.Extensions).
type Extensions struct {
	ID, EnvironmentID, ExtensionGroupID string
	Connections                         []ExtConnection
	ProcessProperties                   []ExtProcessProperty
	Properties                          []ExtProperty // dynamic process properties
}

// ExtConnection is a connection's extensible fields.
type ExtConnection struct {
	ID, Name string
	Fields   []ExtField
}

// ExtField is one extensible connection field. For an encrypted field
// (UsesEncryption) Value is the stored secret, which the API never returns.
type ExtField struct {
	ID, Value                                     string
	UseDefault, UsesEncryption, EncryptedValueSet bool
}

// ExtProcessProperty is a process-property component's extensible values.
type ExtProcessProperty struct {
	ID, Name string
	Values   []ExtPropertyValue
}

// ExtPropertyValue is one value of a process-property component; Value holds
// the secret of an encrypted one, as for ExtField.
type ExtPropertyValue struct {
	Key, Label, Value                             string
	UseDefault, UsesEncryption, EncryptedValueSet bool
}

// ExtProperty is one extensible dynamic process property.
type ExtProperty struct{ Name, Value string }

func (e *Extensions) clone() Extensions {
	c := *e
	c.Connections = slices.Clone(e.Connections)
	for i := range c.Connections {
		c.Connections[i].Fields = slices.Clone(c.Connections[i].Fields)
	}
	c.ProcessProperties = slices.Clone(e.ProcessProperties)
	for i := range c.ProcessProperties {
		c.ProcessProperties[i].Values = slices.Clone(c.ProcessProperties[i].Values)
	}
	c.Properties = slices.Clone(e.Properties)
	return c
}

// release is the state of this file's operations; guarded by s.mu.
type release struct {
	schedules  []scheduleStatus
	listeners  []*listener
	changes    []ListenerChange
	stuck      bool
	lsQueries  map[string]*listenerQuery
	extensions []Extensions
	extUpdates []ExtensionUpdate
}

// scheduleStatus is a ProcessScheduleStatus as the API answers it.
type scheduleStatus struct {
	Type      string `json:"@type"`
	ID        string `json:"id"`
	AtomID    string `json:"atomId"`
	ProcessID string `json:"processId"`
	Enabled   bool   `json:"enabled"`
}

// listener is a listener process on one container. Its status is its base
// status with the events that have taken effect applied, in time order.
type listener struct {
	container, id, connector string
	base                     string
	events                   []listenerEvent // ordered by at (stable)
}

type listenerEvent struct {
	at     time.Time
	action string // pause, resume, restart, or error (SetListenerErrored)
	noop   bool   // a stuck resume or restart
}

func (l *listener) add(ev listenerEvent) {
	i := slices.IndexFunc(l.events, func(e listenerEvent) bool { return e.at.After(ev.at) })
	if i < 0 {
		i = len(l.events)
	}
	l.events = slices.Insert(l.events, i, ev)
}

// status returns the listener's status as of now.
func (l *listener) status(now time.Time) string {
	st := l.base
	for _, e := range l.events {
		if e.at.After(now) {
			break
		}
		switch {
		case e.noop:
		case e.action == "pause":
			st = ListenerPaused
		case e.action == "resume":
			if st == ListenerPaused {
				st = ListenerListening
			}
		case e.action == "restart":
			st = ListenerListening
		case e.action == "error":
			st = ListenerErrored
		}
	}
	return st
}

// listenerQuery is one POST /async/ListenerStatus/query: its results as of
// the query, ready at ready.
type listenerQuery struct {
	ready   time.Time
	results []listenerStatusWire
}

type listenerStatusWire struct {
	Type          string `json:"@type"`
	ListenerID    string `json:"listenerId"`
	Status        string `json:"status"`
	ConnectorType string `json:"connectorType,omitempty"`
}

// scheduleID synthesizes a ProcessScheduleStatus id from the process and runtime ids.
func scheduleID(processID, atomID string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("ProcessScheduleStatus|" + processID + "|" + atomID))
}

// seedRelease returns the seeded schedules, listeners and extensions. It uses
// no random source, so the rest of the seeded data does not change.
func seedRelease() release {
	var rel release
	for _, proc := range []string{ProcOrders, ProcListener} {
		for _, atom := range []string{AtomProd, AtomTest} {
			rel.schedules = append(rel.schedules, scheduleStatus{
				Type: "ProcessScheduleStatus", ID: scheduleID(proc, atom), AtomID: atom, ProcessID: proc, Enabled: true,
			})
		}
	}
	for _, atom := range []string{AtomProd, AtomTest} {
		rel.listeners = append(rel.listeners, &listener{container: atom, id: ProcListener, connector: "wss", base: ListenerListening})
	}
	rel.lsQueries = map[string]*listenerQuery{}
	for _, env := range []struct{ id, host string }{{EnvProd, "db.prod.example"}, {EnvTest, "db.test.example"}} {
		rel.extensions = append(rel.extensions, Extensions{
			ID: env.id, EnvironmentID: env.id,
			Connections: []ExtConnection{{ID: ConnOrdersDB, Name: "Orders DB", Fields: []ExtField{
				{ID: "host", Value: env.host},
				{ID: "port", Value: "5432"},
				{ID: "user", Value: "orders"},
				{ID: "password", Value: "seed-secret-" + env.id, UsesEncryption: true, EncryptedValueSet: true},
			}}},
			ProcessProperties: []ExtProcessProperty{{ID: PPOrders, Name: "Orders Settings", Values: []ExtPropertyValue{
				{Key: "batch-size", Label: "Batch size", Value: "500"},
				{Key: "mode", Label: "Mode", Value: "live"},
				{Key: "api-key", Label: "API key", UseDefault: true, UsesEncryption: true},
			}}},
			Properties: []ExtProperty{{Name: "REGION", Value: "eu"}},
		})
	}
	return rel
}

func init() {
	orderOnly["ProcessScheduleStatus"] = map[string]bool{"id": true}
	orderOnly["EnvironmentExtensions"] = map[string]bool{"id": true}
}

// addReleaseObjects makes ProcessScheduleStatus and EnvironmentExtensions
// queryable (query and queryMore); they accept only EQUALS.
func (s *Server) addReleaseObjects() {
	eq := map[string]bool{atomapi.OpEquals: true}
	s.objects["ProcessScheduleStatus"] = &object{
		name: "ProcessScheduleStatus", id: "id", ops: eq,
		fields: map[string]field{
			"atomId":    str(func(p *scheduleStatus) string { return p.AtomID }),
			"processId": str(func(p *scheduleStatus) string { return p.ProcessID }),
			"id":        str(func(p *scheduleStatus) string { return p.ID }), // order only
		},
		list:  func(time.Time) []any { return ptrs(s.rel.schedules) },
		value: func(r any) any { return *r.(*scheduleStatus) },
	}
	s.objects["EnvironmentExtensions"] = &object{
		name: "EnvironmentExtensions", id: "id", ops: eq,
		fields: map[string]field{
			"environmentId": str(func(e *Extensions) string { return e.EnvironmentID }),
			// "" is a value here (the OpenAPI examples), not NULL.
			"extensionGroupId": {kind: kString, get: func(r any) (string, bool) { return r.(*Extensions).ExtensionGroupID, true }},
			"id":               str(func(e *Extensions) string { return e.ID }), // order only
		},
		list:  func(time.Time) []any { return ptrs(s.rel.extensions) },
		value: func(r any) any { return renderExtensions(r.(*Extensions)) },
	}
}

// flexBool is a boolean sent as true or "true".
type flexBool bool

func (b *flexBool) UnmarshalJSON(p []byte) error {
	t := strings.TrimSpace(string(p))
	if strings.HasPrefix(t, `"`) {
		if err := json.Unmarshal(p, &t); err != nil {
			return err
		}
	}
	switch strings.ToLower(strings.TrimSpace(t)) {
	case "true":
		*b = true
	case "false":
		*b = false
	default:
		return fmt.Errorf("want a boolean, got %.40s", p)
	}
	return nil
}

// oneOrMany is a list sent as an array or, for one element, as the bare
// object (as in the OpenAPI examples converted from XML).
type oneOrMany[T any] []T

func (l *oneOrMany[T]) UnmarshalJSON(p []byte) error {
	if p = bytes.TrimSpace(p); len(p) > 0 && p[0] == '{' {
		var v T
		if err := json.Unmarshal(p, &v); err != nil {
			return err
		}
		*l = oneOrMany[T]{v}
		return nil
	}
	var s []T
	if err := json.Unmarshal(p, &s); err != nil {
		return err
	}
	*l = s
	return nil
}

// decodeStrict decodes one JSON value, with nothing after it.
func decodeStrict(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return fmt.Errorf("trailing data")
	}
	return nil
}

// ---- ProcessScheduleStatus ----

// findSchedule returns the schedule status with that id, or nil; called with s.mu held.
func (s *Server) findSchedule(id string) *scheduleStatus {
	for i := range s.rel.schedules {
		if s.rel.schedules[i].ID == id {
			return &s.rel.schedules[i]
		}
	}
	return nil
}

// handleSchedule serves GET and POST /ProcessScheduleStatus/{id}.
func (s *Server) handleSchedule(w http.ResponseWriter, r *http.Request, id string) {
	if r.Method == http.MethodGet {
		s.mu.Lock()
		p := s.findSchedule(id)
		var v scheduleStatus
		if p != nil {
			v = *p
		}
		s.mu.Unlock()
		if p == nil {
			writeError(w, http.StatusBadRequest, "Invalid ProcessScheduleStatus id: "+id)
			return
		}
		writeJSON(w, http.StatusOK, v)
		return
	}
	var req struct {
		ID        *string   `json:"id"`
		AtomID    *string   `json:"atomId"`
		ProcessID *string   `json:"processId"`
		Enabled   *flexBool `json:"enabled"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.ID != nil && *req.ID != id {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The id of the body (%q) does not match the id of the path (%q)", *req.ID, id))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.findSchedule(id)
	switch {
	case p == nil:
		writeError(w, http.StatusBadRequest, "Invalid ProcessScheduleStatus id: "+id)
	case req.AtomID == nil || req.ProcessID == nil:
		writeError(w, http.StatusBadRequest, "atomId and processId are required")
	case *req.AtomID != p.AtomID || *req.ProcessID != p.ProcessID:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("atomId %q and processId %q do not match ProcessScheduleStatus %s", *req.AtomID, *req.ProcessID, id))
	case req.Enabled == nil:
		writeError(w, http.StatusBadRequest, "enabled is required")
	default:
		p.Enabled = bool(*req.Enabled)
		writeJSON(w, http.StatusOK, *p)
	}
}

type bulkResponse struct {
	Type         string `json:"@type"`
	Index        int    `json:"index"`
	ID           string `json:"id"`
	StatusCode   int    `json:"statusCode"`
	ErrorMessage string `json:"errorMessage,omitempty"`
	Result       any    `json:"Result,omitempty"`
}

// handleScheduleBulk serves POST /ProcessScheduleStatus/bulk (type GET only).
func (s *Server) handleScheduleBulk(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Type    string `json:"type"`
		Request []struct {
			ID string `json:"id"`
		} `json:"request"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	switch {
	case req.Type != "GET":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Unsupported bulk type %q for ProcessScheduleStatus: only GET", req.Type))
		return
	case len(req.Request) == 0 || len(req.Request) > maxBulk:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("A bulk request takes 1 to %d ids, got %d", maxBulk, len(req.Request)))
		return
	}
	out := struct {
		Type     string         `json:"@type"`
		Response []bulkResponse `json:"response"`
	}{Type: "BulkResult"}
	s.mu.Lock()
	for i, q := range req.Request {
		br := bulkResponse{Type: "BulkResponse", Index: i, ID: q.ID, StatusCode: http.StatusOK}
		if p := s.findSchedule(q.ID); p != nil {
			br.Result = *p
		} else {
			br.StatusCode, br.ErrorMessage = http.StatusBadRequest, "Invalid ProcessScheduleStatus id: "+q.ID
		}
		out.Response = append(out.Response, br)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, out)
}

// ScheduleStatus reports whether the schedules of the process on the atom are
// enabled; ok is false when there is no such ProcessScheduleStatus.
func (s *Server) ScheduleStatus(atomID, processID string) (enabled, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.rel.schedules {
		if p.AtomID == atomID && p.ProcessID == processID {
			return p.Enabled, true
		}
	}
	return false, false
}

// ---- Listeners ----

// findListener returns the listener, or nil; called with s.mu held.
func (s *Server) findListener(containerID, listenerID string) *listener {
	for _, l := range s.rel.listeners {
		if l.container == containerID && l.id == listenerID {
			return l
		}
	}
	return nil
}

func (s *Server) hasAtom(id string) bool {
	for _, a := range s.data.Atoms {
		if a.ID == id {
			return true
		}
	}
	return false
}

type listenerRequest struct {
	ListenerID  string `json:"listenerId"`
	ContainerID string `json:"containerId"`
	Action      string `json:"action"`
}

// handleChangeListener serves POST /changeListenerStatus: an empty 200 that
// means accepted; the change takes effect Options.ListenerDelay later.
func (s *Server) handleChangeListener(w http.ResponseWriter, r *http.Request, now time.Time) {
	var body struct {
		listenerRequest
		Wrapped *listenerRequest `json:"ChangeListenerStatusRequest"`
	}
	if !decodeBody(w, r, &body) {
		return
	}
	req := body.listenerRequest
	if wr := body.Wrapped; wr != nil {
		merge := func(name string, flat *string, inner string) bool {
			if *flat != "" && inner != "" && *flat != inner {
				writeError(w, http.StatusBadRequest, fmt.Sprintf("%s %q differs from ChangeListenerStatusRequest's %q", name, *flat, inner))
				return false
			}
			if *flat == "" {
				*flat = inner
			}
			return true
		}
		if !merge("listenerId", &req.ListenerID, wr.ListenerID) || !merge("containerId", &req.ContainerID, wr.ContainerID) ||
			!merge("action", &req.Action, wr.Action) {
			return
		}
	}
	all := strings.HasSuffix(req.Action, "_all")
	switch {
	case !listenerActions[req.Action]:
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid action %q: one of pause, resume, restart, pause_all, resume_all, restart_all", req.Action))
		return
	case req.ContainerID == "":
		writeError(w, http.StatusBadRequest, "containerId is required")
		return
	case all && req.ListenerID != "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("action %s acts on every listener: omit listenerId", req.Action))
		return
	case !all && req.ListenerID == "":
		writeError(w, http.StatusBadRequest, fmt.Sprintf("action %s needs a listenerId", req.Action))
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasAtom(req.ContainerID) {
		writeError(w, http.StatusBadRequest, "Invalid containerId: "+req.ContainerID)
		return
	}
	var targets []*listener
	if all {
		for _, l := range s.rel.listeners {
			if l.container == req.ContainerID {
				targets = append(targets, l)
			}
		}
	} else if l := s.findListener(req.ContainerID, req.ListenerID); l != nil {
		targets = append(targets, l)
	} else {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid listenerId %q: no such listener on container %s", req.ListenerID, req.ContainerID))
		return
	}
	action := strings.TrimSuffix(req.Action, "_all")
	ch := ListenerChange{
		Time: now, Effective: now.Add(s.opts.ListenerDelay), RequestID: r.Header.Get(atomapi.RequestIDHeader),
		Action: req.Action, ContainerID: req.ContainerID, ListenerID: req.ListenerID,
		Stuck: s.rel.stuck && action != "pause",
	}
	for _, l := range targets {
		l.add(listenerEvent{at: ch.Effective, action: action, noop: ch.Stuck})
	}
	s.rel.changes = append(s.rel.changes, ch)
	w.WriteHeader(http.StatusOK)
}

// listenerFilter reads a ListenerStatus QueryConfig: containerId EQUALS, and
// optionally listenerId EQUALS, ANDed.
func listenerFilter(body []byte) (container, listenerID string, err error) {
	var cfg atomapi.QueryConfig
	if err := decodeStrict(body, &cfg); err != nil {
		return "", "", badf("malformed QueryConfig: %v", err)
	}
	var walk func(e atomapi.Expression, depth int) error
	walk = func(e atomapi.Expression, depth int) error {
		if depth > 32 {
			return badf("filter nested too deeply")
		}
		if e.Operator == atomapi.OpAnd {
			if len(e.NestedExpression) == 0 {
				return badf("grouping expression %q has no nestedExpression", e.Operator)
			}
			for _, n := range e.NestedExpression {
				if err := walk(n, depth+1); err != nil {
					return err
				}
			}
			return nil
		}
		if e.Operator != atomapi.OpEquals || len(e.NestedExpression) > 0 {
			return badf("ListenerStatus supports only EQUALS on containerId and listenerId, ANDed; got %q", e.Operator)
		}
		if len(e.Argument) != 1 {
			return badf("operator EQUALS takes 1 argument, got %d", len(e.Argument))
		}
		var dst *string
		switch e.Property {
		case "containerId":
			dst = &container
		case "listenerId":
			dst = &listenerID
		default:
			return badf("unknown property %q for ListenerStatus", e.Property)
		}
		if *dst != "" && *dst != string(e.Argument[0]) {
			return badf("conflicting values for %s", e.Property)
		}
		*dst = string(e.Argument[0])
		return nil
	}
	if e := cfg.QueryFilter.Expression; e != nil {
		if err := walk(*e, 0); err != nil {
			return "", "", err
		}
	}
	if container == "" {
		return "", "", badf("a ListenerStatus query needs containerId EQUALS")
	}
	return container, listenerID, nil
}

// handleListenerQuery serves POST /async/ListenerStatus/query: a token whose
// results are the statuses as of now.
func (s *Server) handleListenerQuery(w http.ResponseWriter, r *http.Request, now time.Time) {
	if !isJSON(r) {
		writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	container, lid, err := listenerFilter(body)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.mu.Lock()
	if !s.hasAtom(container) {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Invalid containerId: "+container)
		return
	}
	if lid != "" && s.findListener(container, lid) == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid listenerId %q: no such listener on container %s", lid, container))
		return
	}
	q := &listenerQuery{ready: now.Add(s.opts.ListenerStatusDelay), results: []listenerStatusWire{}}
	for _, l := range s.rel.listeners {
		if l.container == container && (lid == "" || l.id == lid) {
			q.results = append(q.results, listenerStatusWire{Type: "ListenerStatus", ListenerID: l.id, Status: l.status(now), ConnectorType: l.connector})
		}
	}
	tok := "ListenerStatus-" + ids{s.rng}.uuid()
	s.rel.lsQueries[tok] = q
	s.mu.Unlock()
	type asyncToken struct {
		Type  string `json:"@type"`
		Token string `json:"token"`
	}
	writeJSON(w, http.StatusOK, struct {
		Type               string     `json:"@type"`
		AsyncToken         asyncToken `json:"asyncToken"`
		ResponseStatusCode int        `json:"responseStatusCode"`
	}{"AsyncOperationTokenResult", asyncToken{"AsyncToken", tok}, http.StatusAccepted})
}

// handleListenerResponse serves GET /async/ListenerStatus/response/{token}.
func (s *Server) handleListenerResponse(w http.ResponseWriter, token string, now time.Time) {
	s.mu.Lock()
	q := s.rel.lsQueries[token]
	s.mu.Unlock()
	switch {
	case q == nil:
		writeError(w, http.StatusNotFound, "No such ListenerStatus token: "+token)
	case now.Before(q.ready):
		writeRaw(w, http.StatusAccepted, []byte(`{"@type":"AsyncOperationResult","responseStatusCode":202}`+"\n"))
	default:
		writeJSON(w, http.StatusOK, struct {
			Type               string               `json:"@type"`
			Result             []listenerStatusWire `json:"result"`
			NumberOfResults    int                  `json:"numberOfResults"`
			ResponseStatusCode int                  `json:"responseStatusCode"`
		}{"AsyncOperationResult", q.results, len(q.results), http.StatusOK})
	}
}

// ListenerState returns the listener's status as of now (listening, paused
// or errored), or "" when there is no such listener.
func (s *Server) ListenerState(containerID, listenerID string) string {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.findListener(containerID, listenerID); l != nil {
		return l.status(now)
	}
	return ""
}

// ListenerChanges returns the changeListenerStatus requests accepted so far, in order.
func (s *Server) ListenerChanges() []ListenerChange {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.rel.changes)
}

// SetListenerStuck makes later resume and restart actions (single or _all)
// accepted but without effect: a paused listener stays paused. Changes
// already accepted are not affected.
func (s *Server) SetListenerStuck(stuck bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rel.stuck = stuck
}

// SetListenerErrored makes the listener errored from now on, until a restart
// takes effect (a resume does not clear it); an unknown listener is ignored.
func (s *Server) SetListenerErrored(containerID, listenerID string) {
	now := s.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	if l := s.findListener(containerID, listenerID); l != nil {
		l.add(listenerEvent{at: now, action: "error"})
	}
}

// ---- EnvironmentExtensions ----

type extensionsWire struct {
	Type              string                `json:"@type"`
	ID                string                `json:"id"`
	EnvironmentID     string                `json:"environmentId"`
	ExtensionGroupID  string                `json:"extensionGroupId"`
	Connections       connectionsWire       `json:"connections"`
	ProcessProperties processPropertiesWire `json:"processProperties"`
	Properties        propertiesWire        `json:"properties"`
}

type connectionsWire struct {
	Type       string           `json:"@type"`
	Connection []connectionWire `json:"connection"`
}

type connectionWire struct {
	Type  string      `json:"@type"`
	ID    string      `json:"id"`
	Name  string      `json:"name"`
	Field []fieldWire `json:"field"`
}

type fieldWire struct {
	Type              string `json:"@type"`
	ID                string `json:"id"`
	Value             string `json:"value,omitempty"`
	EncryptedValueSet bool   `json:"encryptedValueSet"`
	UsesEncryption    bool   `json:"usesEncryption"`
	ComponentOverride bool   `json:"componentOverride"`
	UseDefault        bool   `json:"useDefault"`
}

type processPropertiesWire struct {
	Type            string                `json:"@type"`
	ProcessProperty []processPropertyWire `json:"ProcessProperty"`
}

type processPropertyWire struct {
	Type                 string              `json:"@type"`
	ID                   string              `json:"id"`
	Name                 string              `json:"name"`
	ProcessPropertyValue []propertyValueWire `json:"ProcessPropertyValue"`
}

type propertyValueWire struct {
	Type              string `json:"@type"`
	Key               string `json:"key"`
	Label             string `json:"label"`
	Value             string `json:"value,omitempty"`
	EncryptedValueSet bool   `json:"encryptedValueSet"`
	UsesEncryption    bool   `json:"usesEncryption"`
	UseDefault        bool   `json:"useDefault"`
}

type propertiesWire struct {
	Type     string         `json:"@type"`
	Property []propertyWire `json:"property"`
}

type propertyWire struct {
	Type  string `json:"@type"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

// renderExtensions returns the API's form of e: encrypted values are left out.
func renderExtensions(e *Extensions) extensionsWire {
	out := extensionsWire{
		Type: "EnvironmentExtensions", ID: e.ID, EnvironmentID: e.EnvironmentID, ExtensionGroupID: e.ExtensionGroupID,
		Connections:       connectionsWire{Type: "Connections", Connection: []connectionWire{}},
		ProcessProperties: processPropertiesWire{Type: "OverrideProcessProperties", ProcessProperty: []processPropertyWire{}},
		Properties:        propertiesWire{Type: "", Property: []propertyWire{}},
	}
	for _, c := range e.Connections {
		cw := connectionWire{Type: "Connection", ID: c.ID, Name: c.Name, Field: []fieldWire{}}
		for _, f := range c.Fields {
			fw := fieldWire{Type: "Field", ID: f.ID, Value: f.Value, EncryptedValueSet: f.EncryptedValueSet,
				UsesEncryption: f.UsesEncryption, UseDefault: f.UseDefault}
			if f.UsesEncryption {
				fw.Value = ""
			}
			cw.Field = append(cw.Field, fw)
		}
		out.Connections.Connection = append(out.Connections.Connection, cw)
	}
	for _, p := range e.ProcessProperties {
		pw := processPropertyWire{Type: "OverrideProcessProperty", ID: p.ID, Name: p.Name, ProcessPropertyValue: []propertyValueWire{}}
		for _, v := range p.Values {
			vw := propertyValueWire{Type: "ProcessPropertyValue", Key: v.Key, Label: v.Label, Value: v.Value,
				EncryptedValueSet: v.EncryptedValueSet, UsesEncryption: v.UsesEncryption, UseDefault: v.UseDefault}
			if v.UsesEncryption {
				vw.Value = ""
			}
			pw.ProcessPropertyValue = append(pw.ProcessPropertyValue, vw)
		}
		out.ProcessProperties.ProcessProperty = append(out.ProcessProperties.ProcessProperty, pw)
	}
	for _, p := range e.Properties {
		out.Properties.Property = append(out.Properties.Property, propertyWire{Type: "", Name: p.Name, Value: p.Value})
	}
	return out
}

// The update's body, as the simulator reads it.
type (
	extensionsIn struct {
		ID            *string   `json:"id"`
		EnvironmentID *string   `json:"environmentId"`
		Partial       *flexBool `json:"partial"`
		Connections   *struct {
			Connection oneOrMany[connectionIn] `json:"connection"`
		} `json:"connections"`
		ProcessProperties *struct {
			ProcessProperty oneOrMany[processPropertyIn] `json:"ProcessProperty"`
		} `json:"processProperties"`
		Properties *struct {
			Property oneOrMany[propertyIn] `json:"property"`
		} `json:"properties"`
	}
	connectionIn struct {
		ID    string             `json:"id"`
		Field oneOrMany[valueIn] `json:"field"`
	}
	processPropertyIn struct {
		ID    string             `json:"id"`
		Value oneOrMany[valueIn] `json:"ProcessPropertyValue"`
	}
	// valueIn is a connection field (by id) or a process-property value (by key).
	valueIn struct {
		ID         string    `json:"id"`
		Key        string    `json:"key"`
		Value      *string   `json:"value"`
		UseDefault *flexBool `json:"useDefault"`
	}
	propertyIn struct {
		Name  string  `json:"name"`
		Value *string `json:"value"`
	}
)

// unwrapExtensions returns the object of {"EnvironmentExtensions":{…}} (the
// OpenAPI example's form), or body itself.
func unwrapExtensions(body []byte) []byte {
	var w struct {
		Inner json.RawMessage `json:"EnvironmentExtensions"`
	}
	if json.Unmarshal(body, &w) == nil && len(bytes.TrimSpace(w.Inner)) > 0 && bytes.TrimSpace(w.Inner)[0] == '{' {
		return w.Inner
	}
	return body
}

// valueState is what applying an update changes in a field or a process-property value.
type valueState struct {
	value                                         *string
	useDefault, usesEncryption, encryptedValueSet *bool
}

func (v valueState) reset() {
	*v.value, *v.useDefault, *v.encryptedValueSet = "", true, false
}

// apply applies one given value: useDefault true resets it; a value sets it
// (and, when encrypted, marks it set unless it is ""); neither leaves it as it was.
func (v valueState) apply(in valueIn) {
	switch {
	case in.UseDefault != nil && bool(*in.UseDefault):
		v.reset()
	case in.Value != nil:
		*v.value, *v.useDefault = *in.Value, false
		if *v.usesEncryption {
			*v.encryptedValueSet = *in.Value != ""
		}
	}
}

func fieldState(f *ExtField) valueState {
	return valueState{&f.Value, &f.UseDefault, &f.UsesEncryption, &f.EncryptedValueSet}
}

func propertyValueState(p *ExtPropertyValue) valueState {
	return valueState{&p.Value, &p.UseDefault, &p.UsesEncryption, &p.EncryptedValueSet}
}

// updateExtensions applies in to a copy of e and returns it, or a 400 error.
func updateExtensions(e Extensions, in extensionsIn) (Extensions, error) {
	e = e.clone()
	partial := in.Partial != nil && bool(*in.Partial)
	givenConn := map[string]map[string]bool{} // connection id → field ids given
	if in.Connections != nil {
		for _, ci := range in.Connections.Connection {
			i := slices.IndexFunc(e.Connections, func(c ExtConnection) bool { return c.ID == ci.ID })
			if i < 0 {
				return e, badf("Invalid connection id %q", ci.ID)
			}
			c := &e.Connections[i]
			if givenConn[ci.ID] == nil {
				givenConn[ci.ID] = map[string]bool{}
			}
			for _, fi := range ci.Field {
				j := slices.IndexFunc(c.Fields, func(f ExtField) bool { return f.ID == fi.ID })
				if j < 0 {
					return e, badf("Invalid field id %q for connection %s", fi.ID, ci.ID)
				}
				fieldState(&c.Fields[j]).apply(fi)
				givenConn[ci.ID][fi.ID] = true
			}
		}
	}
	givenPP := map[string]bool{}
	if in.ProcessProperties != nil {
		for _, pi := range in.ProcessProperties.ProcessProperty {
			i := slices.IndexFunc(e.ProcessProperties, func(p ExtProcessProperty) bool { return p.ID == pi.ID })
			if i < 0 {
				return e, badf("Invalid process property component id %q", pi.ID)
			}
			p := &e.ProcessProperties[i]
			keys := map[string]bool{}
			for _, vi := range pi.Value {
				if !slices.ContainsFunc(p.Values, func(v ExtPropertyValue) bool { return v.Key == vi.Key }) {
					return e, badf("Invalid process property key %q for component %s", vi.Key, pi.ID)
				}
				keys[vi.Key] = true
			}
			// A component given is given whole: the keys it leaves out are reset.
			for j := range p.Values {
				if !keys[p.Values[j].Key] {
					propertyValueState(&p.Values[j]).reset()
				}
			}
			for _, vi := range pi.Value {
				j := slices.IndexFunc(p.Values, func(v ExtPropertyValue) bool { return v.Key == vi.Key })
				propertyValueState(&p.Values[j]).apply(vi)
			}
			givenPP[pi.ID] = true
		}
	}
	givenProp := map[string]bool{}
	if in.Properties != nil {
		for _, pi := range in.Properties.Property {
			i := slices.IndexFunc(e.Properties, func(p ExtProperty) bool { return p.Name == pi.Name })
			if i < 0 {
				return e, badf("Invalid property name %q", pi.Name)
			}
			e.Properties[i].Value = ""
			if pi.Value != nil {
				e.Properties[i].Value = *pi.Value
			}
			givenProp[pi.Name] = true
		}
	}
	if partial {
		return e, nil
	}
	// A full update: everything not in the body is reset.
	for i := range e.Connections {
		c := &e.Connections[i]
		for j := range c.Fields {
			if !givenConn[c.ID][c.Fields[j].ID] {
				fieldState(&c.Fields[j]).reset()
			}
		}
	}
	for i := range e.ProcessProperties {
		if p := &e.ProcessProperties[i]; !givenPP[p.ID] {
			for j := range p.Values {
				propertyValueState(&p.Values[j]).reset()
			}
		}
	}
	for i := range e.Properties {
		if !givenProp[e.Properties[i].Name] {
			e.Properties[i].Value = ""
		}
	}
	return e, nil
}

// maskSecrets returns body re-encoded with the value of every encrypted
// field, process-property value or custom property replaced by "***": an
// object is encrypted when its usesEncryption or encrypted is true, or its
// id or key names an encrypted definition (secret). It returns nil when body
// is not JSON.
func maskSecrets(body []byte, secret map[string]bool) []byte {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil
	}
	truthy := func(x any) bool {
		switch t := x.(type) {
		case bool:
			return t
		case string:
			return strings.EqualFold(strings.TrimSpace(t), "true")
		}
		return false
	}
	var walk func(x any)
	walk = func(x any) {
		switch t := x.(type) {
		case map[string]any:
			if _, ok := t["value"]; ok {
				id, _ := t["id"].(string)
				key, _ := t["key"].(string)
				if truthy(t["usesEncryption"]) || truthy(t["encrypted"]) || (id != "" && secret[id]) || (key != "" && secret[key]) {
					t["value"] = "***"
				}
			}
			for _, c := range t {
				walk(c)
			}
		case []any:
			for _, c := range t {
				walk(c)
			}
		}
	}
	walk(v)
	out, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	return out
}

// findExtensions returns the index of the environment's extensions, or -1;
// called with s.mu held.
func (s *Server) findExtensions(id string) int {
	return slices.IndexFunc(s.rel.extensions, func(e Extensions) bool { return e.ID == id })
}

// handleExtensions serves GET and POST /EnvironmentExtensions/{id}.
func (s *Server) handleExtensions(w http.ResponseWriter, r *http.Request, id string, now time.Time) {
	if r.Method == http.MethodGet {
		s.mu.Lock()
		var out extensionsWire
		i := s.findExtensions(id)
		if i >= 0 {
			out = renderExtensions(&s.rel.extensions[i])
		}
		s.mu.Unlock()
		if i < 0 {
			writeError(w, http.StatusBadRequest, "Invalid EnvironmentExtensions id: "+id)
			return
		}
		writeJSON(w, http.StatusOK, out)
		return
	}
	up := ExtensionUpdate{Time: now, RequestID: r.Header.Get(atomapi.RequestIDHeader), EnvironmentID: id}
	status, msg, out := s.updateExtensionsRequest(r, id, &up)
	if status == http.StatusOK {
		writeJSON(w, status, out)
	} else {
		writeError(w, status, msg)
	}
}

// updateExtensionsRequest applies an update and records it in up (and in
// ExtensionUpdates) before the answer is written.
func (s *Server) updateExtensionsRequest(r *http.Request, id string, up *ExtensionUpdate) (status int, msg string, out extensionsWire) {
	body, err := readBody(r)
	body = unwrapExtensions(body)
	s.mu.Lock()
	defer s.mu.Unlock()
	defer func() {
		up.Status = status
		s.rel.extUpdates = append(s.rel.extUpdates, *up)
	}()
	secret := map[string]bool{}
	for _, e := range s.rel.extensions {
		for _, c := range e.Connections {
			for _, f := range c.Fields {
				if f.UsesEncryption {
					secret[f.ID] = true
				}
			}
		}
		for _, p := range e.ProcessProperties {
			for _, v := range p.Values {
				if v.UsesEncryption {
					secret[v.Key] = true
				}
			}
		}
	}
	if err == nil {
		up.Body = maskSecrets(body, secret)
		var p struct {
			Partial flexBool `json:"partial"`
		}
		if json.Unmarshal(body, &p) == nil {
			up.Partial = bool(p.Partial)
		}
	}
	switch {
	case !isJSON(r):
		return http.StatusUnsupportedMediaType, "Content-Type must be application/json", out
	case err != nil:
		return http.StatusBadRequest, err.Error(), out
	}
	var in extensionsIn
	if err := decodeStrict(body, &in); err != nil {
		return http.StatusBadRequest, "malformed request body: " + err.Error(), out
	}
	i := s.findExtensions(id)
	switch {
	case i < 0:
		return http.StatusBadRequest, "Invalid EnvironmentExtensions id: " + id, out
	case in.ID != nil && *in.ID != id:
		return http.StatusBadRequest, fmt.Sprintf("The id of the body (%q) does not match the id of the path (%q)", *in.ID, id), out
	case in.EnvironmentID != nil && *in.EnvironmentID != s.rel.extensions[i].EnvironmentID:
		return http.StatusBadRequest, fmt.Sprintf("environmentId %q does not match EnvironmentExtensions %s", *in.EnvironmentID, id), out
	}
	e, err := updateExtensions(s.rel.extensions[i], in)
	if err != nil {
		return http.StatusBadRequest, err.Error(), out
	}
	s.rel.extensions[i] = e
	return http.StatusOK, "", renderExtensions(&s.rel.extensions[i])
}

// Extensions returns a snapshot of the environment's extension values,
// encrypted values included; ok is false when the environment has none.
func (s *Server) Extensions(envID string) (ext Extensions, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if i := s.findExtensions(envID); i >= 0 {
		return s.rel.extensions[i].clone(), true
	}
	return Extensions{}, false
}

// ExtensionUpdates returns the EnvironmentExtensions updates received so far, in order.
func (s *Server) ExtensionUpdates() []ExtensionUpdate {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := slices.Clone(s.rel.extUpdates)
	for i := range out {
		out[i].Body = bytes.Clone(out[i].Body)
	}
	return out
}

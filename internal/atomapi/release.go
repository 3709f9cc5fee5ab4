package atomapi

// Release operations (atomsphere-api.md §9.3–9.4): pausing and resuming a
// process's schedules on a runtime, pausing, resuming and restarting
// listeners and reading their status, and reading and partially updating
// environment extensions.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
)

// Operation names (Call.Operation) of the release operations. A paged
// ProcessScheduleStatus query goes on as "ProcessScheduleStatus.queryMore".
const (
	OpProcessScheduleStatusQuery  = "ProcessScheduleStatus.query"
	OpProcessScheduleStatusGet    = "ProcessScheduleStatus.get"
	OpProcessScheduleStatusUpdate = "ProcessScheduleStatus.update"
	OpChangeListenerStatus        = "changeListenerStatus"
	OpListenerStatusQuery         = "ListenerStatus.query"
	OpListenerStatusResponse      = "ListenerStatus.response"
	OpEnvironmentExtensionsGet    = "EnvironmentExtensions.get"
	OpEnvironmentExtensionsUpdate = "EnvironmentExtensions.update"
)

// FlexBool decodes true/false or "true"/"false" (the platform's examples use
// both); it marshals as a JSON bool. null and "" decode as false.
type FlexBool bool

// MarshalJSON encodes b as a JSON bool.
func (b FlexBool) MarshalJSON() ([]byte, error) {
	if b {
		return []byte("true"), nil
	}
	return []byte("false"), nil
}

// UnmarshalJSON accepts true, false, "true", "false" (any case), "" and null.
func (b *FlexBool) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch string(data) {
	case "true":
		*b = true
		return nil
	case "false", "null":
		*b = false
		return nil
	}
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		switch s = strings.TrimSpace(s); {
		case strings.EqualFold(s, "true"):
			*b = true
			return nil
		case strings.EqualFold(s, "false"), s == "":
			*b = false
			return nil
		}
		return fmt.Errorf("atomapi: want a boolean, got %.40q", s)
	}
	return fmt.Errorf("atomapi: want a boolean, got %.40s", data)
}

// oneOrMany decodes a JSON array or a single object (which the platform's
// examples send where the schema has an array) into a slice; null is nil.
type oneOrMany[T any] []T

func (m *oneOrMany[T]) UnmarshalJSON(data []byte) error {
	data = bytes.TrimSpace(data)
	switch {
	case len(data) == 0 || string(data) == "null":
		*m = nil
		return nil
	case data[0] == '[':
		var s []T
		if err := json.Unmarshal(data, &s); err != nil {
			return err
		}
		*m = s
		return nil
	case data[0] == '{':
		var v T
		if err := json.Unmarshal(data, &v); err != nil {
			return err
		}
		*m = []T{v}
		return nil
	}
	return fmt.Errorf("atomapi: want an object or an array, got %.40s", data)
}

// ---- ProcessScheduleStatus -------------------------------------------------

// ProcessScheduleStatus says whether a process's schedules are in effect on
// one runtime. ID is opaque (synthesized from the process and runtime ids):
// find it with QueryProcessScheduleStatus.
type ProcessScheduleStatus struct {
	Type      string   `json:"@type,omitempty"`
	ID        string   `json:"id"`
	AtomID    string   `json:"atomId"`
	ProcessID string   `json:"processId"`
	Enabled   FlexBool `json:"enabled"`
}

// QueryProcessScheduleStatus returns the schedule statuses matching atomID
// and processID: EQUALS on each non-empty one, ANDed (both empty: all).
// Paged like any query.
func (c *Client) QueryProcessScheduleStatus(ctx context.Context, atomID, processID string) ([]ProcessScheduleStatus, error) {
	var e []Expression
	if atomID != "" {
		e = append(e, Eq("atomId", atomID))
	}
	if processID != "" {
		e = append(e, Eq("processId", processID))
	}
	return QueryAll[ProcessScheduleStatus](ctx, c, "ProcessScheduleStatus", QueryConfig{QueryFilter: QueryFilter{Expression: And(e...)}})
}

// GetProcessScheduleStatus reads GET /ProcessScheduleStatus/{id}.
func (c *Client) GetProcessScheduleStatus(ctx context.Context, id string) (ProcessScheduleStatus, error) {
	var s ProcessScheduleStatus
	err := c.Get(ctx, "ProcessScheduleStatus", id, &s)
	return s, err
}

// SetProcessScheduleStatus stops (Enabled false) or resumes (true) a
// process's schedules on one runtime without deleting them: POST
// /ProcessScheduleStatus/{id} {"id","atomId","processId","enabled"}. All
// three ids are required. Setting a state twice is the same as once, so it is
// safe (retried). It returns the platform's answer.
func (c *Client) SetProcessScheduleStatus(ctx context.Context, s ProcessScheduleStatus) (ProcessScheduleStatus, error) {
	if s.ID == "" || s.AtomID == "" || s.ProcessID == "" {
		return ProcessScheduleStatus{}, fmt.Errorf("atomapi: %s: id, atomId and processId are required", OpProcessScheduleStatusUpdate)
	}
	in := struct {
		ID        string   `json:"id"`
		AtomID    string   `json:"atomId"`
		ProcessID string   `json:"processId"`
		Enabled   FlexBool `json:"enabled"`
	}{s.ID, s.AtomID, s.ProcessID, s.Enabled}
	var out ProcessScheduleStatus
	err := c.doJSON(ctx, &op{name: OpProcessScheduleStatusUpdate, object: "ProcessScheduleStatus",
		method: http.MethodPost, path: "/ProcessScheduleStatus/" + url.PathEscape(s.ID), safe: true,
		handle: func(_ int, data []byte) (string, error) {
			out = ProcessScheduleStatus{}
			return "", json.Unmarshal(data, &out)
		}}, in)
	return out, err
}

// ---- Listeners -------------------------------------------------------------

// Listener actions of ChangeListenerStatus. The *_all ones act on every
// listener of the container and take no listener id.
const (
	ListenerPause      = "pause"
	ListenerResume     = "resume"
	ListenerRestart    = "restart"
	ListenerPauseAll   = "pause_all"
	ListenerResumeAll  = "resume_all"
	ListenerRestartAll = "restart_all"
)

// ListenerActions lists the actions ChangeListenerStatus accepts.
var ListenerActions = []string{ListenerPause, ListenerResume, ListenerRestart, ListenerPauseAll, ListenerResumeAll, ListenerRestartAll}

// Listener states (ListenerStatus.Status).
const (
	ListenerListening = "listening"
	ListenerPaused    = "paused"
	ListenerErrored   = "errored"
)

// ListenerStatus is one listener's state in a ListenerStatus answer.
type ListenerStatus struct {
	ListenerID    string `json:"listenerId"`
	Status        string `json:"status"` // listening | paused | errored
	ConnectorType string `json:"connectorType,omitempty"`
}

// ChangeListenerStatus asks a runtime (containerID: runtime, cluster or
// cloud) to pause, resume or restart one listener, or all of them with
// the *_all actions: POST /changeListenerStatus
// {"listenerId","containerId","action"}. The action is checked before
// anything is sent; listenerID is required for a single-listener action and
// must be empty for a *_all one (where it is left out). An empty 200 means
// the request was accepted, not that it is done: confirm with
// QueryListenerStatus. Repeating it changes nothing more, so it is safe.
func (c *Client) ChangeListenerStatus(ctx context.Context, containerID, listenerID, action string) error {
	if !slices.Contains(ListenerActions, action) {
		return fmt.Errorf("atomapi: %s: action %q: want one of %s", OpChangeListenerStatus, action, strings.Join(ListenerActions, ", "))
	}
	if containerID == "" {
		return fmt.Errorf("atomapi: %s: empty containerId", OpChangeListenerStatus)
	}
	all := strings.HasSuffix(action, "_all")
	switch {
	case all && listenerID != "":
		return fmt.Errorf("atomapi: %s: action %s acts on every listener: listenerId %q must be empty", OpChangeListenerStatus, action, listenerID)
	case !all && listenerID == "":
		return fmt.Errorf("atomapi: %s: action %s needs a listenerId (or use %s_all)", OpChangeListenerStatus, action, action)
	}
	return c.doJSON(ctx, &op{name: OpChangeListenerStatus, object: "changeListenerStatus",
		method: http.MethodPost, path: "/changeListenerStatus", safe: true}, struct {
		ListenerID  string `json:"listenerId,omitempty"`
		ContainerID string `json:"containerId"`
		Action      string `json:"action"`
	}{listenerID, containerID, action})
}

// QueryListenerStatus starts a listener-status query: POST
// /async/ListenerStatus/query with containerId EQUALS (AND listenerId
// EQUALS when listenerID is given). It returns the token (asyncToken.token)
// to poll with ListenerStatusResponse.
func (c *Client) QueryListenerStatus(ctx context.Context, containerID, listenerID string) (token string, err error) {
	if containerID == "" {
		return "", fmt.Errorf("atomapi: %s: empty containerId", OpListenerStatusQuery)
	}
	e := []Expression{Eq("containerId", containerID)}
	if listenerID != "" {
		e = append(e, Eq("listenerId", listenerID))
	}
	err = c.doJSON(ctx, &op{name: OpListenerStatusQuery, object: "ListenerStatus",
		method: http.MethodPost, path: "/async/ListenerStatus/query", safe: true,
		handle: func(_ int, data []byte) (string, error) {
			var r struct {
				AsyncToken struct {
					Token string `json:"token"`
				} `json:"asyncToken"`
				ResponseStatusCode int `json:"responseStatusCode"`
			}
			token = ""
			if err := json.Unmarshal(data, &r); err != nil {
				return "", err
			}
			if code := r.ResponseStatusCode; code != 0 && (code < 200 || code > 299) {
				return "", asyncStatusError(OpListenerStatusQuery, code, data)
			}
			if r.AsyncToken.Token == "" {
				return "", errors.New("answer has no asyncToken.token")
			}
			token = r.AsyncToken.Token
			return "", nil
		}}, QueryConfig{QueryFilter: QueryFilter{Expression: And(e...)}})
	return token, err
}

// ListenerStatusResponse polls GET /async/ListenerStatus/response/{token}.
// pending is true while the answer is not ready (HTTP 202, or
// responseStatusCode 202); once it is, statuses holds one entry per listener
// (none when the container has no listener matching the query). A 204 (the
// result is gone) is ErrNotFound: query again.
func (c *Client) ListenerStatusResponse(ctx context.Context, token string) (statuses []ListenerStatus, pending bool, err error) {
	if token == "" {
		return nil, false, fmt.Errorf("atomapi: %s: empty token", OpListenerStatusResponse)
	}
	err = c.do(ctx, &op{name: OpListenerStatusResponse, object: "ListenerStatus", method: http.MethodGet,
		path: "/async/ListenerStatus/response/" + url.PathEscape(token), safe: true,
		handle: func(status int, data []byte) (string, error) {
			statuses, pending = nil, false
			switch status {
			case http.StatusAccepted:
				pending = true
				return "", nil
			case http.StatusNoContent:
				return "", &APIError{Operation: OpListenerStatusResponse, Status: status,
					Message: "async result no longer available; query ListenerStatus again"}
			}
			var r struct {
				ResponseStatusCode int                       `json:"responseStatusCode"`
				Result             oneOrMany[ListenerStatus] `json:"result"`
			}
			if err := json.Unmarshal(data, &r); err != nil {
				return "", err
			}
			switch code := r.ResponseStatusCode; {
			case code == http.StatusAccepted:
				pending = true
				return "", nil
			case code != 0 && (code < 200 || code > 299):
				return "", asyncStatusError(OpListenerStatusResponse, code, data)
			}
			statuses = []ListenerStatus(r.Result)
			return "", nil
		}})
	if err != nil {
		return nil, false, err
	}
	return statuses, pending, nil
}

// asyncStatusError is the APIError of an async wrapper whose
// responseStatusCode is not 2xx.
func asyncStatusError(op string, code int, data []byte) *APIError {
	return &APIError{Operation: op, Status: code,
		Message: fmt.Sprintf("async answer carries responseStatusCode %d", code),
		Excerpt: capString(string(data), excerptMax)}
}

// ---- Environment extensions ------------------------------------------------

// EnvironmentExtensions holds an environment's extension values, the parts
// runnerd sets: connections' fields, process-property components and
// dynamic process properties. Other sections (crossReferences,
// tradingPartners, operations, sharedCommunications, PGPCertificates, …) are
// kept in Other as they came and sent back only when set. Decoding accepts a
// single object wherever the schema has an array (the platform's own
// examples send both).
type EnvironmentExtensions struct {
	Type              string                `json:"@type,omitempty"`
	ID                string                `json:"id,omitempty"`
	EnvironmentID     string                `json:"environmentId,omitempty"`
	ExtensionGroupID  string                `json:"extensionGroupId,omitempty"`
	Partial           FlexBool              `json:"partial"`
	Connections       *ExtConnections       `json:"connections,omitempty"`
	ProcessProperties *ExtProcessProperties `json:"processProperties,omitempty"`
	Properties        *ExtProperties        `json:"properties,omitempty"`
	// Other sections (crossReferences, tradingPartners, …) are kept as they
	// came and sent back only when set. A key of a field above is ignored.
	Other map[string]json.RawMessage `json:"-"`
}

// envExtKeys are the JSON keys of EnvironmentExtensions' own fields.
var envExtKeys = []string{"@type", "id", "environmentId", "extensionGroupId", "partial", "connections", "processProperties", "properties"}

// envExtFields is EnvironmentExtensions without its methods.
type envExtFields EnvironmentExtensions

// UnmarshalJSON decodes the known sections into their fields and keeps every
// other key in Other.
func (x *EnvironmentExtensions) UnmarshalJSON(data []byte) error {
	var f envExtFields
	if err := json.Unmarshal(data, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return err
	}
	for _, k := range envExtKeys {
		delete(all, k)
	}
	f.Other = nil
	if len(all) > 0 {
		f.Other = all
	}
	*x = EnvironmentExtensions(f)
	return nil
}

// MarshalJSON encodes the fields, then Other's keys in sorted order (those
// that are not a field's key).
func (x EnvironmentExtensions) MarshalJSON() ([]byte, error) {
	b, err := json.Marshal(envExtFields(x))
	if err != nil || len(x.Other) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(x.Other))
	for k := range x.Other {
		if !slices.Contains(envExtKeys, k) {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1]) // without the closing brace
	for _, k := range keys {
		if buf.Len() > 1 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		v := bytes.TrimSpace(x.Other[k])
		if len(v) == 0 {
			v = []byte("null")
		}
		if err := json.Compact(&buf, v); err != nil {
			return nil, fmt.Errorf("atomapi: EnvironmentExtensions: section %q is not valid JSON: %w", k, err)
		}
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}

// ExtConnections is the connections section.
type ExtConnections struct {
	Connection []ExtConnection `json:"connection"`
}

// UnmarshalJSON accepts one connection object or an array of them.
func (x *ExtConnections) UnmarshalJSON(data []byte) error {
	var w struct {
		Connection oneOrMany[ExtConnection] `json:"connection"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	x.Connection = w.Connection
	return nil
}

// ExtConnection is one connection component's extended fields.
type ExtConnection struct {
	ID    string     `json:"id"`
	Name  string     `json:"name,omitempty"`
	Field []ExtField `json:"field"`
}

type extConnectionFields ExtConnection

// UnmarshalJSON accepts one field object or an array of them.
func (x *ExtConnection) UnmarshalJSON(data []byte) error {
	var w struct {
		extConnectionFields
		Field oneOrMany[ExtField] `json:"field"` // shadows the embedded one
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	w.extConnectionFields.Field = w.Field
	*x = ExtConnection(w.extConnectionFields)
	return nil
}

// ExtField is one extensible field of a connection. Value is nil when the
// platform did not send one (it never returns encrypted values:
// EncryptedValueSet says whether one is set) and, in an update, leaves the
// value out. A value of a field with UsesEncryption is a secret: it is never
// shown in an error the client returns.
type ExtField struct {
	ID                string   `json:"id"`
	Value             *string  `json:"value,omitempty"`
	UseDefault        FlexBool `json:"useDefault"`
	UsesEncryption    FlexBool `json:"usesEncryption"`
	EncryptedValueSet FlexBool `json:"encryptedValueSet"`
	ComponentOverride FlexBool `json:"componentOverride"`
	// CustomProperties are the key/value pairs of a field that holds them
	// (e.g. an HTTP connection's custom headers).
	CustomProperties *ExtCustomProperties `json:"customProperties,omitempty"`
	// CloudManagedSecretConfig points the field at a secrets manager.
	CloudManagedSecretConfig *ExtCloudManagedSecretConfig `json:"CloudManagedSecretConfig,omitempty"`
}

// ExtCustomProperties wraps a field's custom properties.
type ExtCustomProperties struct {
	Properties []ExtPropertyPair `json:"properties"`
}

// UnmarshalJSON accepts one pair object or an array of them.
func (x *ExtCustomProperties) UnmarshalJSON(data []byte) error {
	var w struct {
		Properties oneOrMany[ExtPropertyPair] `json:"properties"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	x.Properties = w.Properties
	return nil
}

// ExtPropertyPair is one custom property; the value of an Encrypted one is a
// secret (not returned by the platform, never shown in an error).
type ExtPropertyPair struct {
	Key       string   `json:"key"`
	Value     *string  `json:"value,omitempty"`
	Encrypted FlexBool `json:"encrypted"`
}

// ExtCloudManagedSecretConfig is a field's reference into a secrets
// manager (AWS, AZURE or GCP).
type ExtCloudManagedSecretConfig struct {
	UsesRemoteSecretsManager FlexBool `json:"usesRemoteSecretsManager"`
	SecretsManagerType       string   `json:"secretsManagerType,omitempty"`
	SecretReference          string   `json:"secretReference,omitempty"`
}

// ExtProcessProperties is the processProperties section. In a partial update
// a process-property component must still be sent whole (every value).
type ExtProcessProperties struct {
	ProcessProperty []ExtProcessProperty `json:"ProcessProperty"`
}

// UnmarshalJSON accepts one component object or an array of them.
func (x *ExtProcessProperties) UnmarshalJSON(data []byte) error {
	var w struct {
		ProcessProperty oneOrMany[ExtProcessProperty] `json:"ProcessProperty"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	x.ProcessProperty = w.ProcessProperty
	return nil
}

// ExtProcessProperty is one process-property component's values.
type ExtProcessProperty struct {
	ID                   string             `json:"id"`
	Name                 string             `json:"name,omitempty"`
	ProcessPropertyValue []ExtPropertyValue `json:"ProcessPropertyValue"`
}

type extProcessPropertyFields ExtProcessProperty

// UnmarshalJSON accepts one value object or an array of them.
func (x *ExtProcessProperty) UnmarshalJSON(data []byte) error {
	var w struct {
		extProcessPropertyFields
		ProcessPropertyValue oneOrMany[ExtPropertyValue] `json:"ProcessPropertyValue"` // shadows the embedded one
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	w.extProcessPropertyFields.ProcessPropertyValue = w.ProcessPropertyValue
	*x = ExtProcessProperty(w.extProcessPropertyFields)
	return nil
}

// ExtPropertyValue is one property of a process-property component. Value is
// nil when the platform did not send one; a value with UsesEncryption is a
// secret, never shown in an error.
type ExtPropertyValue struct {
	Key               string   `json:"key"`
	Label             string   `json:"label,omitempty"`
	Value             *string  `json:"value,omitempty"`
	UseDefault        FlexBool `json:"useDefault"`
	UsesEncryption    FlexBool `json:"usesEncryption"`
	EncryptedValueSet FlexBool `json:"encryptedValueSet"`
	ComponentOverride FlexBool `json:"componentOverride,omitempty"`
	Validate          FlexBool `json:"validate,omitempty"`
}

// ExtProperties is the properties section: dynamic process properties.
type ExtProperties struct {
	Property []ExtProperty `json:"property"`
}

// UnmarshalJSON accepts one property object or an array of them.
func (x *ExtProperties) UnmarshalJSON(data []byte) error {
	var w struct {
		Property oneOrMany[ExtProperty] `json:"property"`
	}
	if err := json.Unmarshal(data, &w); err != nil {
		return err
	}
	x.Property = w.Property
	return nil
}

// ExtProperty is one dynamic process property.
type ExtProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// GetEnvironmentExtensions reads GET /EnvironmentExtensions/{id}, where id is
// the environment id (or the id synthesized from it and an extension group).
// Encrypted values are never returned: their Value is nil.
func (c *Client) GetEnvironmentExtensions(ctx context.Context, environmentID string) (EnvironmentExtensions, error) {
	var x EnvironmentExtensions
	err := c.Get(ctx, "EnvironmentExtensions", environmentID, &x)
	return x, err
}

// UpdateEnvironmentExtensions sends POST /EnvironmentExtensions/{id} (id is
// x.ID, or x.EnvironmentID when x.ID is empty) with "partial": true ALWAYS:
// whatever x.Partial says, the client sets it, so a full update (which resets
// every value not in the body) cannot be sent. Only what x holds is sent: a
// nil Value leaves that value out, a nil section leaves the section out.
// Connections, fields, process-property components and their values need
// their ids/keys, and dynamic properties their names (checked before
// sending). Sending the same values twice is the same as once: safe. Values
// marked encrypted (usesEncryption, or encrypted on a custom property, in
// any section) never appear in a returned error, even when the platform
// echoes them. It returns the platform's answer.
func (c *Client) UpdateEnvironmentExtensions(ctx context.Context, x EnvironmentExtensions) (EnvironmentExtensions, error) {
	id := x.ID
	if id == "" {
		id = x.EnvironmentID
	}
	if id == "" {
		return EnvironmentExtensions{}, fmt.Errorf("atomapi: %s: id or environmentId is required", OpEnvironmentExtensionsUpdate)
	}
	if err := checkExtensions(x); err != nil {
		return EnvironmentExtensions{}, fmt.Errorf("atomapi: %s: %w", OpEnvironmentExtensionsUpdate, err)
	}
	x.ID, x.Partial = id, true
	body, err := json.Marshal(x)
	if err != nil {
		return EnvironmentExtensions{}, fmt.Errorf("atomapi: %s: encode body: %w", OpEnvironmentExtensionsUpdate, err)
	}
	secrets := encryptedValues(body)
	var out EnvironmentExtensions
	err = c.do(ctx, &op{name: OpEnvironmentExtensionsUpdate, object: "EnvironmentExtensions",
		method: http.MethodPost, path: "/EnvironmentExtensions/" + url.PathEscape(id),
		body: body, ctype: contentJSON, safe: true,
		redact: func(err error) error { return redactSecrets(err, secrets) }, // the ledger's row too
		handle: func(_ int, data []byte) (string, error) {
			out = EnvironmentExtensions{}
			return "", json.Unmarshal(data, &out)
		}})
	if err != nil {
		return EnvironmentExtensions{}, redactSecrets(err, secrets)
	}
	return out, nil
}

// checkExtensions refuses an update entry without its identifier. Its errors
// name ids and positions, never values.
func checkExtensions(x EnvironmentExtensions) error {
	if x.Connections != nil {
		for i, cn := range x.Connections.Connection {
			if cn.ID == "" {
				return fmt.Errorf("connection %d has no id", i)
			}
			for j, f := range cn.Field {
				if f.ID == "" && f.CloudManagedSecretConfig == nil {
					return fmt.Errorf("connection %s: field %d has no id", cn.ID, j)
				}
			}
		}
	}
	if x.ProcessProperties != nil {
		for i, pp := range x.ProcessProperties.ProcessProperty {
			if pp.ID == "" {
				return fmt.Errorf("process property component %d has no id", i)
			}
			for j, v := range pp.ProcessPropertyValue {
				if v.Key == "" {
					return fmt.Errorf("process property component %s: value %d has no key", pp.ID, j)
				}
			}
		}
	}
	if x.Properties != nil {
		for i, p := range x.Properties.Property {
			if p.Name == "" {
				return fmt.Errorf("dynamic process property %d has no name", i)
			}
		}
	}
	return nil
}

// encryptedValues returns the non-empty string "value" of every object in
// the JSON body that is marked usesEncryption or encrypted (true or "true"),
// in any section, Other's included.
func encryptedValues(body []byte) []string {
	d := json.NewDecoder(bytes.NewReader(body))
	d.UseNumber()
	var v any
	if d.Decode(&v) != nil {
		return nil
	}
	var out []string
	var walk func(any)
	walk = func(v any) {
		switch t := v.(type) {
		case map[string]any:
			if truthy(t["usesEncryption"]) || truthy(t["encrypted"]) {
				if s, ok := t["value"].(string); ok && s != "" && !slices.Contains(out, s) {
					out = append(out, s)
				}
			}
			for _, e := range t {
				walk(e)
			}
		case []any:
			for _, e := range t {
				walk(e)
			}
		}
	}
	walk(v)
	return out
}

func truthy(v any) bool {
	switch t := v.(type) {
	case bool:
		return t
	case string:
		return strings.EqualFold(strings.TrimSpace(t), "true")
	}
	return false
}

// redactedError is an error whose text had secrets removed. It unwraps to
// the typed errors of the original (an *APIError with its Message and
// Excerpt redacted, a TransportError, a context error, …), not to the
// wrappers whose text still holds them.
type redactedError struct {
	msg  string
	errs []error
}

func (e *redactedError) Error() string   { return e.msg }
func (e *redactedError) Unwrap() []error { return e.errs }

// redactSecrets removes secrets from err: from an *APIError's Message and
// Excerpt (in place, including a secret's start left at the end of an
// excerpt that was cut) and from the error's text. err is returned as it is
// when its text holds none of them.
func redactSecrets(err error, secrets []string) error {
	if err == nil || len(secrets) == 0 {
		return err
	}
	forms := secretForms(secrets)
	text := err.Error()
	var ae *APIError
	if errors.As(err, &ae) {
		before := ae.Error()
		ae.Message = scrubSecrets(ae.Message, forms, true)
		ae.Excerpt = scrubSecrets(ae.Excerpt, forms, true)
		text = strings.ReplaceAll(text, before, ae.Error())
	}
	text = scrubSecrets(text, forms, false)
	if text == err.Error() {
		return err
	}
	return &redactedError{msg: text, errs: leafErrors(err)}
}

// leafErrors returns the errors of err's tree that are typed (APIError,
// TransportError, DecodeError) or wrap nothing, in order.
func leafErrors(err error) []error {
	switch err.(type) {
	case *APIError, *TransportError, *DecodeError:
		return []error{err}
	}
	switch u := err.(type) {
	case interface{ Unwrap() error }:
		if inner := u.Unwrap(); inner != nil {
			return leafErrors(inner)
		}
	case interface{ Unwrap() []error }:
		var out []error
		for _, e := range u.Unwrap() {
			if e != nil {
				out = append(out, leafErrors(e)...)
			}
		}
		return out
	}
	return []error{err}
}

// secretForms returns each secret as a server may echo it: plain, as the
// inside of a JSON string (with and without HTML escaping), and that again
// (a JSON body quoted inside a JSON error), longest first.
func secretForms(secrets []string) []string {
	var forms []string
	add := func(s string) bool {
		if s == "" || slices.Contains(forms, s) {
			return false
		}
		forms = append(forms, s)
		return true
	}
	escaped := func(s string) []string {
		var out []string
		for _, html := range []bool{false, true} {
			var b strings.Builder
			enc := json.NewEncoder(&b)
			enc.SetEscapeHTML(html)
			if enc.Encode(s) == nil {
				q := strings.TrimSpace(b.String())
				out = append(out, q[1:len(q)-1])
			}
		}
		return out
	}
	for _, s := range secrets {
		add(s)
		for _, e1 := range escaped(s) {
			add(e1)
			for _, e2 := range escaped(e1) {
				add(e2)
			}
		}
	}
	slices.SortStableFunc(forms, func(a, b string) int { return len(b) - len(a) })
	return forms
}

// scrubSecrets replaces every form in s with "****". cut says s may have been
// cut to excerptMax after the secret was in it: a secret's start at its very
// end (before a replacement character the cut may have left) goes too.
func scrubSecrets(s string, forms []string, cut bool) string {
	full := len(s) >= excerptMax-4 // long enough to have been cut
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, redacted)
	}
	if !cut || !full {
		return s
	}
	body := strings.TrimRight(s, "\uFFFD")
	for _, f := range forms {
		for k := len(f) - 1; k > 0; k-- {
			if strings.HasSuffix(body, f[:k]) {
				return body[:len(body)-k] + redacted
			}
		}
	}
	return s
}

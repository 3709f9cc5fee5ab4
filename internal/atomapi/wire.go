package atomapi

// This file holds the wire types: the JSON shapes of atomsphere-api.md, shared by
// the client and the simulator (atomsim). Nothing else is shared between them.
//
// Field names are reproduced exactly as the reference gives them. Dates are kept
// as the strings the platform sends (see ParseTime and FormatTime), so a record
// written to an export file is what the platform said, not a re-formatting.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// TimeLayout is the platform's timestamp format (UTC, second precision).
// Responses sometimes carry milliseconds; ParseTime accepts both.
const TimeLayout = "2006-01-02T15:04:05Z"

// FormatTime formats t the way the platform expects in filters and sends in records.
func FormatTime(t time.Time) string { return t.UTC().Format(TimeLayout) }

// ParseTime parses a platform timestamp, with or without fractional seconds.
func ParseTime(s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("atomapi: bad timestamp %q: want %s", s, TimeLayout)
	}
	return t.UTC(), nil
}

// Long is a 64-bit number that the platform serialises as the typed tuple
// ["Long", n] (executionDuration, inboundDocumentSize, …). It decodes both the
// tuple and a bare number, and encodes as the tuple.
type Long int64

// MarshalJSON encodes l as ["Long", n], the platform's shape.
func (l Long) MarshalJSON() ([]byte, error) {
	return []byte(`["Long",` + strconv.FormatInt(int64(l), 10) + `]`), nil
}

// UnmarshalJSON accepts ["Long", n], a bare number, a quoted number, or null.
func (l *Long) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if n, ok := parseLongFast(b); ok {
		*l = Long(n)
		return nil
	}
	return l.unmarshalGeneral(b)
}

// unmarshalGeneral is UnmarshalJSON for every shape, through encoding/json;
// b is trimmed.
func (l *Long) unmarshalGeneral(b []byte) error {
	if len(b) == 0 || string(b) == "null" {
		*l = 0
		return nil
	}
	switch b[0] {
	case '[':
		var tuple []json.RawMessage
		if err := json.Unmarshal(b, &tuple); err != nil {
			return fmt.Errorf("atomapi: Long: %w", err)
		}
		if len(tuple) != 2 {
			return fmt.Errorf("atomapi: Long: want [\"Long\", n], got %d elements", len(tuple))
		}
		return l.UnmarshalJSON(tuple[1])
	case '"':
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return fmt.Errorf("atomapi: Long: %w", err)
		}
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return fmt.Errorf("atomapi: Long: %q is not a number", s)
		}
		*l = Long(n)
		return nil
	default:
		var n json.Number
		if err := json.Unmarshal(b, &n); err != nil {
			return fmt.Errorf("atomapi: Long: %w", err)
		}
		i, err := n.Int64()
		if err != nil {
			f, ferr := n.Float64()
			if ferr != nil {
				return fmt.Errorf("atomapi: Long: %s is not a number", n)
			}
			i = int64(f)
		}
		*l = Long(i)
		return nil
	}
}

// parseLongFast decodes the shapes the platform actually sends, ["Long",n]
// (JSON whitespace allowed around the tokens) and a bare n, where n is a JSON
// integer that fits an int64, without the encoding/json machinery: that
// machinery cost ~16 allocations per Long, a third of an ExecutionRecord's
// decoding. Anything else (quoted numbers, fractions, exponents, overflow,
// null, other tuple heads, bad JSON) reports ok == false and takes the general
// path, so the results are those of the general path.
func parseLongFast(b []byte) (n int64, ok bool) {
	if len(b) == 0 {
		return 0, false
	}
	if b[0] != '[' {
		return parseJSONInt(b)
	}
	i := skipJSONSpace(b, 1)
	if !bytes.HasPrefix(b[i:], []byte(`"Long"`)) {
		return 0, false
	}
	i = skipJSONSpace(b, i+len(`"Long"`))
	if i >= len(b) || b[i] != ',' {
		return 0, false
	}
	i = skipJSONSpace(b, i+1)
	j := i
	for j < len(b) && (b[j] == '-' || b[j] >= '0' && b[j] <= '9') {
		j++
	}
	k := skipJSONSpace(b, j)
	if k != len(b)-1 || b[k] != ']' {
		return 0, false
	}
	return parseJSONInt(b[i:j])
}

// skipJSONSpace returns the index of the first byte at or after i that is not
// JSON whitespace.
func skipJSONSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// parseJSONInt parses b if it is exactly a JSON integer (-?(0|[1-9][0-9]*))
// that fits an int64.
func parseJSONInt(b []byte) (int64, bool) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	if len(b) == 0 || len(b) > 19 || b[0] == '0' && len(b) > 1 {
		return 0, false
	}
	var u uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		u = u*10 + uint64(c-'0') // 19 digits cannot overflow a uint64
	}
	switch {
	case neg && u <= 1<<63:
		return int64(-u), true
	case !neg && u < 1<<63:
		return int64(u), true
	}
	return 0, false
}

// FlexString is a value the platform sends sometimes as a string and sometimes as
// a number or boolean (componentVersion: 2 in CREATE answers, "2.0" in queries;
// filter arguments: "true" or true). It always holds the text form.
type FlexString string

// UnmarshalJSON accepts a string, a number, a boolean or null.
func (f *FlexString) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	if len(b) == 0 || string(b) == "null" {
		*f = ""
		return nil
	}
	if b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*f = FlexString(s)
		return nil
	}
	switch string(b) {
	case "true", "false":
		*f = FlexString(b)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("atomapi: want a string or number, got %.40s", b)
	}
	*f = FlexString(n.String())
	return nil
}

// Query operators (atomsphere-api.md 2.2). The grouping operators are lower case.
const (
	OpEquals             = "EQUALS"
	OpNotEquals          = "NOT_EQUALS"
	OpLike               = "LIKE"
	OpStartsWith         = "STARTS_WITH"
	OpContains           = "CONTAINS"
	OpNotContains        = "NOT_CONTAINS"
	OpIsNull             = "IS_NULL"
	OpIsNotNull          = "IS_NOT_NULL"
	OpBetween            = "BETWEEN"
	OpGreaterThan        = "GREATER_THAN"
	OpGreaterThanOrEqual = "GREATER_THAN_OR_EQUAL"
	OpLessThan           = "LESS_THAN"
	OpLessThanOrEqual    = "LESS_THAN_OR_EQUAL"
	OpAnd                = "and"
	OpOr                 = "or"
)

// OperatorArgs gives the number of arguments each simple operator takes.
var OperatorArgs = map[string]int{
	OpEquals: 1, OpNotEquals: 1, OpLike: 1, OpStartsWith: 1, OpContains: 1, OpNotContains: 1,
	OpIsNull: 0, OpIsNotNull: 0, OpBetween: 2,
	OpGreaterThan: 1, OpGreaterThanOrEqual: 1, OpLessThan: 1, OpLessThanOrEqual: 1,
}

// Expression is a query filter expression: a simple expression (Property,
// Operator, Argument) or a grouping expression (Operator "and"/"or" with
// NestedExpression).
type Expression struct {
	Operator         string       `json:"operator"`
	Property         string       `json:"property,omitempty"`
	Argument         []FlexString `json:"argument,omitempty"`
	NestedExpression []Expression `json:"nestedExpression,omitempty"`
}

// IsGroup reports whether e is a grouping ("and"/"or") expression.
func (e Expression) IsGroup() bool {
	return e.Operator == OpAnd || e.Operator == OpOr
}

// QueryFilter wraps the optional top-level expression; an empty filter matches all.
type QueryFilter struct {
	Expression *Expression `json:"expression,omitempty"`
}

// SortField is one entry of a QuerySort (ExecutionRecord only).
type SortField struct {
	FieldName string `json:"fieldName"`
	SortOrder string `json:"sortOrder"`
}

// QuerySort orders ExecutionRecord query results.
type QuerySort struct {
	SortField []SortField `json:"sortField"`
}

// QueryConfig is the body of POST /{Object}/query.
type QueryConfig struct {
	QueryFilter QueryFilter `json:"QueryFilter"`
	QuerySort   *QuerySort  `json:"QuerySort,omitempty"`
}

// PageSize is the platform's maximum number of results per query page.
const PageSize = 100

// QueryResult is one page of a QUERY or queryMore answer. Result holds the raw
// records, so that exports can write exactly what the platform sent; a missing
// "result" key decodes as an empty page.
type QueryResult struct {
	Type            string            `json:"@type,omitempty"`
	Result          []json.RawMessage `json:"result,omitempty"`
	NumberOfResults int               `json:"numberOfResults"`
	QueryToken      string            `json:"queryToken,omitempty"`
}

// ExecutionRecord statuses (atomsphere-api.md 4.1).
const (
	StatusAborted           = "ABORTED"
	StatusAbortedRecovering = "ABORTED_RECOVERING"
	StatusComplete          = "COMPLETE"
	StatusCompleteWarn      = "COMPLETE_WARN"
	StatusDiscarded         = "DISCARDED"
	StatusEnqueued          = "ENQUEUED"
	StatusError             = "ERROR"
	StatusInProcess         = "INPROCESS"
	StatusStarted           = "STARTED"
)

// TerminalStatus reports whether an ExecutionRecord status is final.
// Non-terminal: INPROCESS, STARTED, ENQUEUED, ABORTED_RECOVERING (the reference's
// recommended reading).
func TerminalStatus(s string) bool {
	switch s {
	case StatusComplete, StatusCompleteWarn, StatusError, StatusAborted, StatusDiscarded:
		return true
	}
	return false
}

// SucceededStatus reports whether a terminal status counts as success.
func SucceededStatus(s string) bool { return s == StatusComplete || s == StatusCompleteWarn }

// ExecutionRecord is one process execution (atomsphere-api.md 4.1).
type ExecutionRecord struct {
	Type                      string `json:"@type,omitempty"`
	Account                   string `json:"account,omitempty"`
	AtomID                    string `json:"atomId,omitempty"`
	AtomName                  string `json:"atomName,omitempty"`
	ExecutionDuration         Long   `json:"executionDuration,omitempty"`
	ExecutionID               string `json:"executionId,omitempty"`
	ExecutionTime             string `json:"executionTime,omitempty"`
	ExecutionType             string `json:"executionType,omitempty"`
	InboundDocumentCount      int    `json:"inboundDocumentCount,omitempty"`
	InboundDocumentSize       Long   `json:"inboundDocumentSize,omitempty"`
	InboundErrorDocumentCount int    `json:"inboundErrorDocumentCount,omitempty"`
	LauncherID                string `json:"launcherID,omitempty"`
	Message                   string `json:"message,omitempty"`
	NodeID                    string `json:"nodeId,omitempty"`
	OriginalExecutionID       string `json:"originalExecutionId,omitempty"`
	OutboundDocumentCount     int    `json:"outboundDocumentCount,omitempty"`
	OutboundDocumentSize      Long   `json:"outboundDocumentSize,omitempty"`
	ParentExecutionID         string `json:"parentExecutionId,omitempty"`
	ProcessID                 string `json:"processId,omitempty"`
	ProcessName               string `json:"processName,omitempty"`
	RecordedDate              string `json:"recordedDate,omitempty"`
	ReportKey                 string `json:"reportKey,omitempty"`
	Status                    string `json:"status,omitempty"`
	TopLevelExecutionID       string `json:"topLevelExecutionId,omitempty"`
}

// AuditLogProperty is one name/value pair of an AuditLog record.
type AuditLogProperty struct {
	Name          string `json:"name"`
	Value         string `json:"value,omitempty"`
	PreviousValue string `json:"previousValue,omitempty"`
}

// AuditLog is one audit record (atomsphere-api.md 4.2).
type AuditLog struct {
	Type             string             `json:"@type,omitempty"`
	DocumentID       string             `json:"documentId"`
	AccountID        string             `json:"accountId,omitempty"`
	ContainerID      string             `json:"containerId,omitempty"`
	UserID           string             `json:"userId,omitempty"`
	Date             string             `json:"date"`
	AuditType        string             `json:"type,omitempty"`
	Action           string             `json:"action,omitempty"`
	Modifier         string             `json:"modifier,omitempty"`
	Level            string             `json:"level,omitempty"`
	Source           string             `json:"source,omitempty"`
	Message          string             `json:"message,omitempty"`
	AuditLogProperty []AuditLogProperty `json:"AuditLogProperty,omitempty"`
}

// Event is one platform event (atomsphere-api.md 4.3). Events purge after 7 days.
type Event struct {
	Type                  string `json:"@type,omitempty"`
	EventID               string `json:"eventId"`
	AccountID             string `json:"accountId,omitempty"`
	AtomID                string `json:"atomId,omitempty"`
	AtomName              string `json:"atomName,omitempty"`
	Classification        string `json:"classification,omitempty"`
	EndTime               string `json:"endTime,omitempty"`
	Environment           string `json:"environment,omitempty"`
	Error                 string `json:"error,omitempty"`
	ErrorDocumentCount    int    `json:"errorDocumentCount,omitempty"`
	ErrorType             string `json:"errorType,omitempty"`
	ErroredStepLabel      string `json:"erroredStepLabel,omitempty"`
	ErroredStepType       string `json:"erroredStepType,omitempty"`
	EventDate             string `json:"eventDate,omitempty"`
	EventLevel            string `json:"eventLevel,omitempty"`
	EventType             string `json:"eventType,omitempty"`
	ExecutionID           string `json:"executionId,omitempty"`
	InboundDocumentCount  int    `json:"inboundDocumentCount,omitempty"`
	OutboundDocumentCount int    `json:"outboundDocumentCount,omitempty"`
	ProcessID             string `json:"processId,omitempty"`
	ProcessName           string `json:"processName,omitempty"`
	RecordDate            string `json:"recordDate,omitempty"`
	StartTime             string `json:"startTime,omitempty"`
	Status                string `json:"status,omitempty"`
	Title                 string `json:"title,omitempty"`
	TopLevelProcessID     string `json:"topLevelProcessId,omitempty"`
	UpdateDate            string `json:"updateDate,omitempty"`
}

// Environment is a deployment environment (atomsphere-api.md 4.7).
type Environment struct {
	Type              string `json:"@type,omitempty"`
	ID                string `json:"id"`
	Name              string `json:"name,omitempty"`
	Classification    string `json:"classification,omitempty"`
	ParentAccount     string `json:"parentAccount,omitempty"`
	ParentEnvironment string `json:"parentEnvironment,omitempty"`
}

// Atom is a runtime (atomsphere-api.md 4.6); only the commonly used fields.
type Atom struct {
	Type           string `json:"@type,omitempty"`
	ID             string `json:"id"`
	Name           string `json:"name,omitempty"`
	Status         string `json:"status,omitempty"`
	StatusDetail   string `json:"statusDetail,omitempty"`
	AtomType       string `json:"type,omitempty"`
	HostName       string `json:"hostName,omitempty"`
	DateInstalled  string `json:"dateInstalled,omitempty"`
	CurrentVersion string `json:"currentVersion,omitempty"`
	CreatedBy      string `json:"createdBy,omitempty"`
}

// Process is a process component as the Process object describes it (4.5).
type Process struct {
	Type        string `json:"@type,omitempty"`
	ID          string `json:"id"`
	Name        string `json:"name,omitempty"`
	Description string `json:"Description,omitempty"`
}

// PackagedComponent is a packaged version of a component (3.4).
type PackagedComponent struct {
	Type             string     `json:"@type,omitempty"`
	PackageID        string     `json:"packageId,omitempty"`
	PackageVersion   string     `json:"packageVersion,omitempty"`
	ComponentID      string     `json:"componentId,omitempty"`
	ComponentVersion FlexString `json:"componentVersion,omitempty"`
	ComponentType    string     `json:"componentType,omitempty"`
	CreatedDate      string     `json:"createdDate,omitempty"`
	CreatedBy        string     `json:"createdBy,omitempty"`
	Shareable        bool       `json:"shareable,omitempty"`
	Deleted          bool       `json:"deleted,omitempty"`
	BranchName       string     `json:"branchName,omitempty"`
	Notes            string     `json:"notes,omitempty"`
}

// DeployedPackage is a package deployed to an environment (3.4). As a CREATE
// body only EnvironmentID, PackageID or ComponentID, Notes and ListenerStatus are
// sent.
type DeployedPackage struct {
	Type             string     `json:"@type,omitempty"`
	DeploymentID     string     `json:"deploymentId,omitempty"`
	Version          int        `json:"version,omitempty"`
	PackageID        string     `json:"packageId,omitempty"`
	PackageVersion   string     `json:"packageVersion,omitempty"`
	EnvironmentID    string     `json:"environmentId,omitempty"`
	ComponentID      string     `json:"componentId,omitempty"`
	ComponentVersion FlexString `json:"componentVersion,omitempty"`
	ComponentType    string     `json:"componentType,omitempty"`
	DeployedDate     string     `json:"deployedDate,omitempty"`
	DeployedBy       string     `json:"deployedBy,omitempty"`
	Notes            string     `json:"notes,omitempty"`
	Active           bool       `json:"active,omitempty"`
	BranchName       string     `json:"branchName,omitempty"`
	ListenerStatus   string     `json:"listenerStatus,omitempty"`
	Message          string     `json:"message,omitempty"`
}

// Deployment is a legacy deployment (3.3, deprecated by the platform). Digest is
// returned only by GET /Deployment/{id}.
type Deployment struct {
	Type           string `json:"@type,omitempty"`
	ID             string `json:"id,omitempty"`
	Digest         string `json:"digest,omitempty"`
	EnvironmentID  string `json:"environmentId,omitempty"`
	ProcessID      string `json:"processId,omitempty"`
	ComponentID    string `json:"componentId,omitempty"`
	ComponentType  string `json:"componentType,omitempty"`
	Current        bool   `json:"current,omitempty"`
	Notes          string `json:"notes,omitempty"`
	Version        int    `json:"version,omitempty"`
	DeployedOn     string `json:"deployedOn,omitempty"`
	DeployedBy     string `json:"deployedBy,omitempty"`
	ListenerStatus string `json:"listenerStatus,omitempty"`
	Message        string `json:"message,omitempty"`
}

// DynamicProcessProperty is one name/value pair of an ExecutionRequest.
type DynamicProcessProperty struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// DynamicProcessProperties wraps the ExecutionRequest's dynamic properties.
type DynamicProcessProperties struct {
	DynamicProcessProperty []DynamicProcessProperty `json:"DynamicProcessProperty"`
}

// ExecutionRequest is the body and answer of POST /ExecutionRequest (3.2).
// RequestID and RecordURL are set only in the answer.
type ExecutionRequest struct {
	Type                     string                    `json:"@type"`
	AtomID                   string                    `json:"atomId"`
	ProcessID                string                    `json:"processId,omitempty"`
	ProcessName              string                    `json:"processName,omitempty"`
	DynamicProcessProperties *DynamicProcessProperties `json:"DynamicProcessProperties,omitempty"`
	RequestID                string                    `json:"requestId,omitempty"`
	RecordURL                string                    `json:"recordUrl,omitempty"`
}

// ProcessProperty is one property of the legacy executeProcess action. Note the
// capitalised Name/Value, unlike ExecutionRequest's.
type ProcessProperty struct {
	Type  string `json:"@type"`
	Name  string `json:"Name"`
	Value string `json:"Value"`
}

// ProcessProperties wraps executeProcess's properties.
type ProcessProperties struct {
	Type            string            `json:"@type"`
	ProcessProperty []ProcessProperty `json:"ProcessProperty"`
}

// ExecuteProcessRequest is the body of the legacy POST /executeProcess (3.1).
// The platform answers 200 with no executionId.
type ExecuteProcessRequest struct {
	ProcessProperties *ProcessProperties `json:"ProcessProperties,omitempty"`
	ProcessID         string             `json:"processId,omitempty"`
	ProcessName       string             `json:"processName,omitempty"`
	AtomID            string             `json:"atomId"`
}

// AsyncExecutionResult is the wrapped answer of GET /ExecutionRecord/async/{id}:
// {"responseStatusCode":200,"numberOfResults":1,"result":[record]}. The reference
// is UNCONFIRMED between this and a bare ExecutionRecord; the client accepts both.
type AsyncExecutionResult struct {
	Type               string            `json:"@type,omitempty"`
	ResponseStatusCode int               `json:"responseStatusCode,omitempty"`
	NumberOfResults    int               `json:"numberOfResults,omitempty"`
	Result             []ExecutionRecord `json:"result,omitempty"`
}

// ErrorBody decodes both documented error shapes (5.2):
// {"@type":"Error","message":"…"} and {"error":{"message":"…"}}.
type ErrorBody struct {
	Type    string `json:"@type,omitempty"`
	Message string `json:"message,omitempty"`
	Error   *struct {
		Message string `json:"message"`
	} `json:"error,omitempty"`
}

// Text returns the error message from whichever shape was sent.
func (e ErrorBody) Text() string {
	if e.Message != "" {
		return e.Message
	}
	if e.Error != nil {
		return e.Error.Message
	}
	return ""
}

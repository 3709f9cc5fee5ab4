package atomsim

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"runnerd/internal/atomapi"
)

// kind is how a property's values compare.
type kind int

const (
	kString kind = iota
	kDate
	kNumber
	kBool
)

// field reads one queryable property of a record (a pointer to a wire type).
// ok is false when the value is NULL (absent).
type field struct {
	kind kind
	get  func(rec any) (v string, ok bool)
	num  func(rec any) float64 // kNumber fields held as integers: read without formatting
}

// value returns the record's typed value; ok is false for NULL or a value that
// does not parse as the field's kind.
func (f field) value(r any) (value, bool) {
	if f.num != nil {
		return value{k: kNumber, f: f.num(r)}, true
	}
	s, ok := f.get(r)
	if !ok {
		return value{}, false
	}
	v, err := parseValue(f.kind, s)
	return v, err == nil
}

func str[T any](get func(*T) string) field {
	return field{kind: kString, get: func(r any) (string, bool) { v := get(r.(*T)); return v, v != "" }}
}

func date[T any](get func(*T) string) field {
	return field{kind: kDate, get: func(r any) (string, bool) { v := get(r.(*T)); return v, v != "" }}
}

func num[T any](get func(*T) int64) field {
	return field{
		kind: kNumber,
		get:  func(r any) (string, bool) { return strconv.FormatInt(get(r.(*T)), 10), true },
		num:  func(r any) float64 { return float64(get(r.(*T))) },
	}
}

func numText[T any](get func(*T) string) field {
	return field{kind: kNumber, get: func(r any) (string, bool) { v := get(r.(*T)); return v, v != "" }}
}

func boolean[T any](get func(*T) bool) field {
	return field{kind: kBool, get: func(r any) (string, bool) { return strconv.FormatBool(get(r.(*T))), true }}
}

func null[T any]() field {
	return field{kind: kString, get: func(any) (string, bool) { return "", false }}
}

// object is one queryable API object.
type object struct {
	name     string
	fields   map[string]field
	ops      map[string]bool // allowed simple operators; nil = all
	order    string          // the date property of the default order, "" for none
	id       string          // the id property, the default order's tie-break
	sortable bool            // accepts QuerySort
	// list returns pointers to the candidate records; called with s.mu held.
	list func(now time.Time) []any
	// value returns what to encode for a record pointer: a copy, so that
	// later changes do not show in pages already queried.
	value func(rec any) any
}

func (s *Server) buildObjects() map[string]*object {
	objs := []*object{
		{
			name: "AuditLog", order: "date", id: "documentId",
			fields: map[string]field{
				"containerId": str(func(a *atomapi.AuditLog) string { return a.ContainerID }),
				"userId":      str(func(a *atomapi.AuditLog) string { return a.UserID }),
				"date":        date(func(a *atomapi.AuditLog) string { return a.Date }),
				"type":        str(func(a *atomapi.AuditLog) string { return a.AuditType }),
				"action":      str(func(a *atomapi.AuditLog) string { return a.Action }),
				"modifier":    str(func(a *atomapi.AuditLog) string { return a.Modifier }),
				"level":       str(func(a *atomapi.AuditLog) string { return a.Level }),
				"source":      str(func(a *atomapi.AuditLog) string { return a.Source }),
				"documentId":  str(func(a *atomapi.AuditLog) string { return a.DocumentID }), // order only
			},
			list:  func(time.Time) []any { return ptrs(s.data.AuditLogs) },
			value: func(r any) any { return *r.(*atomapi.AuditLog) },
		},
		{
			name: "ExecutionRecord", order: "executionTime", id: "executionId", sortable: true,
			fields: map[string]field{
				"executionId":           str(func(e *atomapi.ExecutionRecord) string { return e.ExecutionID }),
				"originalExecutionId":   str(func(e *atomapi.ExecutionRecord) string { return e.OriginalExecutionID }),
				"account":               str(func(e *atomapi.ExecutionRecord) string { return e.Account }),
				"executionTime":         date(func(e *atomapi.ExecutionRecord) string { return e.ExecutionTime }),
				"status":                str(func(e *atomapi.ExecutionRecord) string { return e.Status }),
				"executionType":         str(func(e *atomapi.ExecutionRecord) string { return e.ExecutionType }),
				"processName":           str(func(e *atomapi.ExecutionRecord) string { return e.ProcessName }),
				"processId":             str(func(e *atomapi.ExecutionRecord) string { return e.ProcessID }),
				"atomName":              str(func(e *atomapi.ExecutionRecord) string { return e.AtomName }),
				"atomId":                str(func(e *atomapi.ExecutionRecord) string { return e.AtomID }),
				"inboundDocumentCount":  num(func(e *atomapi.ExecutionRecord) int64 { return int64(e.InboundDocumentCount) }),
				"outboundDocumentCount": num(func(e *atomapi.ExecutionRecord) int64 { return int64(e.OutboundDocumentCount) }),
				"executionDuration":     num(func(e *atomapi.ExecutionRecord) int64 { return int64(e.ExecutionDuration) }),
				"message":               str(func(e *atomapi.ExecutionRecord) string { return e.Message }),
				"reportKey":             str(func(e *atomapi.ExecutionRecord) string { return e.ReportKey }),
				"launcherId":            str(func(e *atomapi.ExecutionRecord) string { return e.LauncherID }),
				"nodeId":                str(func(e *atomapi.ExecutionRecord) string { return e.NodeID }),
				"recordedDate":          date(func(e *atomapi.ExecutionRecord) string { return e.RecordedDate }),
			},
			list: func(now time.Time) []any {
				out := ptrs(s.data.ExecutionRecords)
				for _, x := range s.execs {
					if rec, ok := x.record(now); ok {
						out = append(out, &rec)
					}
				}
				return out
			},
			value: func(r any) any { return *r.(*atomapi.ExecutionRecord) },
		},
		{
			name: "Event", order: "eventDate", id: "eventId",
			fields: map[string]field{
				"eventId":               str(func(e *atomapi.Event) string { return e.EventID }),
				"accountId":             str(func(e *atomapi.Event) string { return e.AccountID }),
				"atomId":                str(func(e *atomapi.Event) string { return e.AtomID }),
				"atomName":              str(func(e *atomapi.Event) string { return e.AtomName }),
				"eventLevel":            str(func(e *atomapi.Event) string { return e.EventLevel }),
				"eventDate":             date(func(e *atomapi.Event) string { return e.EventDate }),
				"status":                str(func(e *atomapi.Event) string { return e.Status }),
				"eventType":             str(func(e *atomapi.Event) string { return e.EventType }),
				"executionId":           str(func(e *atomapi.Event) string { return e.ExecutionID }),
				"title":                 str(func(e *atomapi.Event) string { return e.Title }),
				"updateDate":            date(func(e *atomapi.Event) string { return e.UpdateDate }),
				"startTime":             date(func(e *atomapi.Event) string { return e.StartTime }),
				"endTime":               date(func(e *atomapi.Event) string { return e.EndTime }),
				"errorDocumentCount":    num(func(e *atomapi.Event) int64 { return int64(e.ErrorDocumentCount) }),
				"inboundDocumentCount":  num(func(e *atomapi.Event) int64 { return int64(e.InboundDocumentCount) }),
				"outboundDocumentCount": num(func(e *atomapi.Event) int64 { return int64(e.OutboundDocumentCount) }),
				"processName":           str(func(e *atomapi.Event) string { return e.ProcessName }),
				"recordDate":            date(func(e *atomapi.Event) string { return e.RecordDate }),
				"error":                 str(func(e *atomapi.Event) string { return e.Error }),
				"environment":           str(func(e *atomapi.Event) string { return e.Environment }),
				"classification":        str(func(e *atomapi.Event) string { return e.Classification }),
			},
			list:  func(time.Time) []any { return ptrs(s.data.Events) },
			value: func(r any) any { return *r.(*atomapi.Event) },
		},
		{
			name: "Environment", id: "id",
			fields: map[string]field{
				"id":             str(func(e *atomapi.Environment) string { return e.ID }),
				"name":           str(func(e *atomapi.Environment) string { return e.Name }),
				"classification": str(func(e *atomapi.Environment) string { return e.Classification }),
			},
			list:  func(time.Time) []any { return ptrs(s.data.Environments) },
			value: func(r any) any { return *r.(*atomapi.Environment) },
		},
		{
			name: "Atom", id: "id",
			ops: map[string]bool{atomapi.OpEquals: true, atomapi.OpNotEquals: true, atomapi.OpContains: true, atomapi.OpNotContains: true},
			fields: map[string]field{
				"id":                str(func(a *atomapi.Atom) string { return a.ID }),
				"name":              str(func(a *atomapi.Atom) string { return a.Name }),
				"hostname":          str(func(a *atomapi.Atom) string { return a.HostName }),
				"status":            str(func(a *atomapi.Atom) string { return a.Status }),
				"type":              str(func(a *atomapi.Atom) string { return a.AtomType }),
				"capabilities":      null[atomapi.Atom](),
				"cloudId":           null[atomapi.Atom](),
				"attachmentCloudId": null[atomapi.Atom](),
				"cloudMoleculeId":   null[atomapi.Atom](),
				"instanceId":        null[atomapi.Atom](),
				"isCloudAttachment": boolean(func(*atomapi.Atom) bool { return false }),
			},
			list:  func(time.Time) []any { return ptrs(s.data.Atoms) },
			value: func(r any) any { return *r.(*atomapi.Atom) },
		},
		{
			name: "Process", id: "id",
			fields: map[string]field{
				"id":                        str(func(p *atomapi.Process) string { return p.ID }),
				"name":                      str(func(p *atomapi.Process) string { return p.Name }),
				"integrationPackId":         null[atomapi.Process](),
				"integrationPackInstanceId": null[atomapi.Process](),
			},
			list:  func(time.Time) []any { return ptrs(s.data.Processes) },
			value: func(r any) any { return *r.(*atomapi.Process) },
		},
		{
			name: "PackagedComponent", order: "createdDate", id: "packageId",
			fields: map[string]field{
				"packageId":        str(func(p *atomapi.PackagedComponent) string { return p.PackageID }),
				"packageVersion":   str(func(p *atomapi.PackagedComponent) string { return p.PackageVersion }),
				"componentId":      str(func(p *atomapi.PackagedComponent) string { return p.ComponentID }),
				"componentVersion": numText(func(p *atomapi.PackagedComponent) string { return string(p.ComponentVersion) }),
				"componentType":    str(func(p *atomapi.PackagedComponent) string { return p.ComponentType }),
				"createdDate":      date(func(p *atomapi.PackagedComponent) string { return p.CreatedDate }),
				"createdBy":        str(func(p *atomapi.PackagedComponent) string { return p.CreatedBy }),
				"notes":            str(func(p *atomapi.PackagedComponent) string { return p.Notes }),
				"branchName":       str(func(p *atomapi.PackagedComponent) string { return p.BranchName }),
				"shareable":        boolean(func(p *atomapi.PackagedComponent) bool { return p.Shareable }),
				"deleted":          boolean(func(p *atomapi.PackagedComponent) bool { return p.Deleted }),
			},
			list:  func(time.Time) []any { return ptrs(s.data.PackagedComponents) },
			value: func(r any) any { return *r.(*atomapi.PackagedComponent) },
		},
		{
			name: "DeployedPackage", order: "deployedDate", id: "deploymentId",
			fields: map[string]field{
				"uid":              str(func(p *atomapi.DeployedPackage) string { return p.DeploymentID }),
				"deploymentId":     str(func(p *atomapi.DeployedPackage) string { return p.DeploymentID }),
				"notes":            str(func(p *atomapi.DeployedPackage) string { return p.Notes }),
				"current":          boolean(func(p *atomapi.DeployedPackage) bool { return p.Active }),
				"active":           boolean(func(p *atomapi.DeployedPackage) bool { return p.Active }),
				"packageNotes":     str(func(p *atomapi.DeployedPackage) string { return s.packageNotes(p.PackageID) }),
				"componentId":      str(func(p *atomapi.DeployedPackage) string { return p.ComponentID }),
				"componentVersion": numText(func(p *atomapi.DeployedPackage) string { return string(p.ComponentVersion) }),
				"componentName":    str(func(p *atomapi.DeployedPackage) string { return s.processName(p.ComponentID) }),
				"componentType":    str(func(p *atomapi.DeployedPackage) string { return p.ComponentType }),
				"deployedBy":       str(func(p *atomapi.DeployedPackage) string { return p.DeployedBy }),
				"deployedDate":     date(func(p *atomapi.DeployedPackage) string { return p.DeployedDate }),
				"environmentId":    str(func(p *atomapi.DeployedPackage) string { return p.EnvironmentID }),
				"environmentName":  str(func(p *atomapi.DeployedPackage) string { return s.environmentName(p.EnvironmentID) }),
				"packageId":        str(func(p *atomapi.DeployedPackage) string { return p.PackageID }),
				"packageVersion":   str(func(p *atomapi.DeployedPackage) string { return p.PackageVersion }),
				"version":          num(func(p *atomapi.DeployedPackage) int64 { return int64(p.Version) }),
				"accountId":        str(func(*atomapi.DeployedPackage) string { return s.opts.Account }),
				"branch":           str(func(p *atomapi.DeployedPackage) string { return p.BranchName }),
			},
			list:  func(time.Time) []any { return ptrs(s.data.DeployedPackages) },
			value: func(r any) any { return *r.(*atomapi.DeployedPackage) },
		},
		{
			name: "Deployment", order: "deployedOn", id: "id",
			fields: map[string]field{
				"environmentId": str(func(d *atomapi.Deployment) string { return d.EnvironmentID }),
				"processId":     str(func(d *atomapi.Deployment) string { return d.ProcessID }),
				"componentId":   str(func(d *atomapi.Deployment) string { return d.ComponentID }),
				"componentType": str(func(d *atomapi.Deployment) string { return d.ComponentType }),
				"current":       boolean(func(d *atomapi.Deployment) bool { return d.Current }),
				"id":            str(func(d *atomapi.Deployment) string { return d.ID }),          // order only
				"deployedOn":    date(func(d *atomapi.Deployment) string { return d.DeployedOn }), // order only
			},
			list: func(time.Time) []any { return ptrs(s.data.Deployments) },
			value: func(r any) any {
				d := *r.(*atomapi.Deployment)
				d.Digest = "" // only GET returns the digest
				return d
			},
		},
		{
			name: "EnvironmentAtomAttachment", id: "id",
			fields: map[string]field{
				"atomId":        str(func(a *Attachment) string { return a.AtomID }),
				"environmentId": str(func(a *Attachment) string { return a.EnvironmentID }),
				"id":            str(func(a *Attachment) string { return a.ID }), // order only
			},
			list:  func(time.Time) []any { return ptrs(s.data.Attachments) },
			value: func(r any) any { return *r.(*Attachment) },
		},
	}
	m := make(map[string]*object, len(objs))
	for _, o := range objs {
		m[o.name] = o
	}
	return m
}

// orderOnly lists properties that order results but are not filterable.
var orderOnly = map[string]map[string]bool{
	"AuditLog":                  {"documentId": true},
	"Deployment":                {"id": true, "deployedOn": true},
	"EnvironmentAtomAttachment": {"id": true},
}

func ptrs[T any](s []T) []any {
	out := make([]any, len(s))
	for i := range s {
		out[i] = &s[i]
	}
	return out
}

// badRequest is an error answered with HTTP 400 and its text.
type badRequest string

func (e badRequest) Error() string { return string(e) }

func badf(format string, args ...any) error { return badRequest(fmt.Sprintf(format, args...)) }

type pred func(rec any) bool

// compile turns a filter expression into a predicate, or a 400 error.
func (o *object) compile(e *atomapi.Expression) (pred, error) {
	if e == nil {
		return func(any) bool { return true }, nil
	}
	return o.compileExpr(*e, 0)
}

func (o *object) compileExpr(e atomapi.Expression, depth int) (pred, error) {
	if depth > 32 {
		return nil, badf("filter nested too deeply")
	}
	if e.Operator == atomapi.OpAnd || e.Operator == atomapi.OpOr {
		if len(e.NestedExpression) == 0 {
			return nil, badf("grouping expression %q has no nestedExpression", e.Operator)
		}
		ps := make([]pred, len(e.NestedExpression))
		for i, n := range e.NestedExpression {
			p, err := o.compileExpr(n, depth+1)
			if err != nil {
				return nil, err
			}
			ps[i] = p
		}
		if e.Operator == atomapi.OpAnd {
			return func(r any) bool {
				for _, p := range ps {
					if !p(r) {
						return false
					}
				}
				return true
			}, nil
		}
		return func(r any) bool {
			for _, p := range ps {
				if p(r) {
					return true
				}
			}
			return false
		}, nil
	}
	return o.compileSimple(e)
}

func (o *object) compileSimple(e atomapi.Expression) (pred, error) {
	nargs, ok := atomapi.OperatorArgs[e.Operator]
	if !ok {
		return nil, badf("unknown operator %q", e.Operator)
	}
	if len(e.NestedExpression) > 0 {
		return nil, badf("simple expression %s on %q has a nestedExpression", e.Operator, e.Property)
	}
	f, ok := o.fields[e.Property]
	if !ok || orderOnly[o.name][e.Property] {
		return nil, badf("unknown property %q for %s", e.Property, o.name)
	}
	if o.ops != nil && !o.ops[e.Operator] {
		return nil, badf("operator %s is not supported for %s", e.Operator, o.name)
	}
	if len(e.Argument) != nargs {
		return nil, badf("operator %s takes %d argument(s), got %d", e.Operator, nargs, len(e.Argument))
	}
	args := make([]string, len(e.Argument))
	for i, a := range e.Argument {
		args[i] = string(a)
	}
	get := f.get
	switch e.Operator {
	case atomapi.OpIsNull:
		return func(r any) bool { _, ok := get(r); return !ok }, nil
	case atomapi.OpIsNotNull:
		return func(r any) bool { _, ok := get(r); return ok }, nil
	case atomapi.OpLike:
		m := likeMatcher(args[0])
		return func(r any) bool { v, ok := get(r); return ok && m(v) }, nil
	case atomapi.OpStartsWith:
		return func(r any) bool { v, ok := get(r); return ok && strings.HasPrefix(v, args[0]) }, nil
	case atomapi.OpContains:
		return func(r any) bool { v, ok := get(r); return ok && strings.Contains(v, args[0]) }, nil
	case atomapi.OpNotContains:
		return func(r any) bool { v, ok := get(r); return ok && !strings.Contains(v, args[0]) }, nil
	}
	// Typed comparisons.
	vals := make([]value, len(args))
	for i, a := range args {
		v, err := parseValue(f.kind, a)
		if err == nil && f.kind == kDate {
			_, err = atomapi.ParseTime(a) // a canonical-looking argument must still be a real time
		}
		if err != nil {
			return nil, badf("argument %q for %s %s: %v", a, e.Property, e.Operator, err)
		}
		vals[i] = v
	}
	if f.kind == kBool && e.Operator != atomapi.OpEquals && e.Operator != atomapi.OpNotEquals {
		return nil, badf("operator %s is not supported for boolean property %q", e.Operator, e.Property)
	}
	var test func(c int) bool
	switch e.Operator {
	case atomapi.OpEquals:
		test = func(c int) bool { return c == 0 }
	case atomapi.OpNotEquals:
		test = func(c int) bool { return c != 0 }
	case atomapi.OpGreaterThan:
		test = func(c int) bool { return c > 0 }
	case atomapi.OpGreaterThanOrEqual:
		test = func(c int) bool { return c >= 0 }
	case atomapi.OpLessThan:
		test = func(c int) bool { return c < 0 }
	case atomapi.OpLessThanOrEqual:
		test = func(c int) bool { return c <= 0 }
	case atomapi.OpBetween:
		lo, hi := vals[0], vals[1]
		return func(r any) bool {
			v, ok := f.value(r)
			return ok && v.cmp(lo) >= 0 && v.cmp(hi) <= 0
		}, nil
	default:
		return nil, badf("operator %s is not supported", e.Operator)
	}
	arg := vals[0]
	return func(r any) bool {
		v, ok := f.value(r)
		return ok && test(v.cmp(arg))
	}, nil
}

// value is a typed property value for comparisons and sorting.
type value struct {
	k     kind
	s     string
	f     float64
	t     time.Time
	canon bool // a date whose s is in the canonical layout: compares as text, t unset
}

// canonical reports whether s is a timestamp in exactly the platform layout
// (yyyy-MM-ddTHH:mm:ssZ); such timestamps order as text as they do as times.
func canonical(s string) bool {
	if len(s) != len(atomapi.TimeLayout) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch i {
		case 4, 7:
			if c != '-' {
				return false
			}
		case 10:
			if c != 'T' {
				return false
			}
		case 13, 16:
			if c != ':' {
				return false
			}
		case 19:
			if c != 'Z' {
				return false
			}
		default:
			if c < '0' || c > '9' {
				return false
			}
		}
	}
	return true
}

func parseValue(k kind, s string) (value, error) {
	v := value{k: k, s: s}
	switch k {
	case kDate:
		if canonical(s) { // the records' own form: no parsing needed
			v.canon = true
			return v, nil
		}
		t, err := atomapi.ParseTime(s)
		if err != nil {
			return v, fmt.Errorf("not a timestamp (want %s)", atomapi.TimeLayout)
		}
		v.t = t
		if t.Nanosecond() == 0 {
			v.s, v.canon = atomapi.FormatTime(t), true
		}
	case kNumber:
		f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
		if err != nil {
			return v, fmt.Errorf("not a number")
		}
		v.f = f
	case kBool:
		b, err := strconv.ParseBool(strings.ToLower(strings.TrimSpace(s)))
		if err != nil {
			return v, fmt.Errorf("not a boolean")
		}
		if b {
			v.f = 1
		}
	}
	return v, nil
}

func (v value) time() time.Time {
	if v.canon && v.t.IsZero() {
		t, _ := time.Parse(atomapi.TimeLayout, v.s)
		return t
	}
	return v.t
}

func (v value) cmp(w value) int {
	switch v.k {
	case kDate:
		if v.canon && w.canon {
			return strings.Compare(v.s, w.s)
		}
		return v.time().Compare(w.time())
	case kNumber, kBool:
		switch {
		case v.f < w.f:
			return -1
		case v.f > w.f:
			return 1
		}
		return 0
	}
	return strings.Compare(v.s, w.s)
}

// likeMatcher matches case-insensitively with % as the only wildcard.
func likeMatcher(pattern string) func(string) bool {
	parts := strings.Split(strings.ToLower(pattern), "%")
	return func(s string) bool {
		s = strings.ToLower(s)
		if len(parts) == 1 {
			return s == parts[0]
		}
		if !strings.HasPrefix(s, parts[0]) {
			return false
		}
		s = s[len(parts[0]):]
		last := parts[len(parts)-1]
		for _, p := range parts[1 : len(parts)-1] {
			i := strings.Index(s, p)
			if i < 0 {
				return false
			}
			s = s[i+len(p):]
		}
		return strings.HasSuffix(s, last)
	}
}

// sortKey is one ordering criterion.
type sortKey struct {
	f    field
	desc bool
}

// orderKeys returns the ordering of a query: QuerySort's fields (ExecutionRecord
// only), else the object's date property; the id always breaks ties.
func (o *object) orderKeys(qs *atomapi.QuerySort) ([]sortKey, error) {
	var keys []sortKey
	if qs != nil {
		if !o.sortable {
			return nil, badf("QuerySort is not supported for %s", o.name)
		}
		for _, sf := range qs.SortField {
			f, ok := o.fields[sf.FieldName]
			if !ok {
				return nil, badf("unknown sort field %q for %s", sf.FieldName, o.name)
			}
			var desc bool
			switch strings.ToUpper(sf.SortOrder) {
			case "ASC", "":
			case "DESC":
				desc = true
			default:
				return nil, badf("unknown sortOrder %q (want ASC or DESC)", sf.SortOrder)
			}
			keys = append(keys, sortKey{f, desc})
		}
	}
	if len(keys) == 0 && o.order != "" {
		keys = append(keys, sortKey{f: o.fields[o.order]})
	}
	return append(keys, sortKey{f: o.fields[o.id]}), nil
}

// sortRecords orders recs by keys; NULL sorts before any value.
func sortRecords(recs []any, keys []sortKey) {
	type row struct {
		rec  any
		vals []value
		null []bool
	}
	rows := make([]row, len(recs))
	for i, r := range recs {
		rw := row{rec: r, vals: make([]value, len(keys)), null: make([]bool, len(keys))}
		for j, k := range keys {
			v, ok := k.f.value(r)
			rw.vals[j], rw.null[j] = v, !ok
		}
		rows[i] = rw
	}
	// The last key is the unique id, so the order is total and need not be stable.
	slices.SortFunc(rows, func(a, b row) int {
		for j, k := range keys {
			var c int
			switch na, nb := a.null[j], b.null[j]; {
			case na && nb:
				c = 0
			case na:
				c = -1
			case nb:
				c = 1
			default:
				c = a.vals[j].cmp(b.vals[j])
			}
			if k.desc {
				c = -c
			}
			if c != 0 {
				return c
			}
		}
		return 0
	})
	for i := range rows {
		recs[i] = rows[i].rec
	}
}

// cursor is the state behind one queryToken: the query's result snapshot and
// the offset of the page the token returns.
type cursor struct {
	object  string
	items   []any
	offset  int
	expires time.Time
	next    string // the token of the following page, once issued
}

const maxTokens = 100_000

// newToken issues an opaque, base64 token (it always contains '+', '/' and
// '='). Called with s.mu held.
func (s *Server) newToken(c *cursor, now time.Time) string {
	if len(s.tokens) >= maxTokens/2 {
		for k, v := range s.tokens {
			if !now.Before(v.expires) {
				delete(s.tokens, k)
			}
		}
		for k := range s.tokens { // still full: drop arbitrary ones
			if len(s.tokens) < maxTokens {
				break
			}
			delete(s.tokens, k)
		}
	}
	s.tokenSeq++
	b := make([]byte, 28)
	copy(b, []byte{0xfb, 0xff, 0xbf})
	binary.BigEndian.PutUint64(b[3:], s.tokenSeq)
	for i := 11; i < len(b); i++ {
		b[i] = byte(s.rng.Uint32())
	}
	tok := base64.StdEncoding.EncodeToString(b)
	s.tokens[tok] = c
	return tok
}

// runQuery evaluates a QueryConfig and returns the first page.
func (s *Server) runQuery(o *object, body []byte, now time.Time) ([]byte, error) {
	var cfg atomapi.QueryConfig
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&cfg); err != nil {
		return nil, badf("malformed QueryConfig: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, badf("malformed QueryConfig: trailing data")
	}
	p, err := o.compile(cfg.QueryFilter.Expression)
	if err != nil {
		return nil, err
	}
	keys, err := o.orderKeys(cfg.QuerySort)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	var matched []any
	for _, r := range o.list(now) {
		if p(r) {
			matched = append(matched, r)
		}
	}
	sortRecords(matched, keys)
	items := make([]any, len(matched))
	for i, r := range matched {
		items[i] = o.value(r)
	}
	page := s.pageLocked(&cursor{object: o.name, items: items}, now)
	s.mu.Unlock()
	return page.encode()
}

// runQueryMore answers a queryMore with the page its token stands for.
func (s *Server) runQueryMore(o *object, body []byte, now time.Time) ([]byte, error) {
	tok := string(bytes.TrimSpace(body))
	s.mu.Lock()
	c, ok := s.tokens[tok]
	if ok && !now.Before(c.expires) {
		delete(s.tokens, tok)
		ok = false
	}
	if !ok || c.object != o.name {
		s.mu.Unlock()
		return nil, badf("invalid or expired queryToken")
	}
	page := s.pageLocked(c, now)
	s.mu.Unlock()
	return page.encode()
}

type page struct {
	items []any
	total int
	token string
}

// pageLocked cuts the page at c.offset and issues a token for the next one.
func (s *Server) pageLocked(c *cursor, now time.Time) page {
	end := min(c.offset+atomapi.PageSize, len(c.items))
	p := page{items: c.items[c.offset:end], total: len(c.items)}
	if s.opts.PageCountResults {
		p.total = len(p.items)
	}
	if end < len(c.items) {
		if n, ok := s.tokens[c.next]; ok && now.Before(n.expires) {
			p.token = c.next // a replayed page names the same next token
		} else {
			p.token = s.newToken(&cursor{object: c.object, items: c.items, offset: end, expires: now.Add(s.opts.QueryTokenTTL)}, now)
			c.next = p.token
		}
	}
	return p
}

func (p page) encode() ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`{"@type":"QueryResult"`)
	if len(p.items) > 0 {
		b.WriteString(`,"result":[`)
		for i, it := range p.items {
			if i > 0 {
				b.WriteByte(',')
			}
			j, err := json.Marshal(it)
			if err != nil {
				return nil, err
			}
			b.Write(j)
		}
		b.WriteByte(']')
	}
	fmt.Fprintf(&b, `,"numberOfResults":%d`, p.total)
	if p.token != "" {
		b.WriteString(`,"queryToken":`)
		j, _ := json.Marshal(p.token)
		b.Write(j)
	}
	b.WriteString("}\n")
	return b.Bytes(), nil
}

// handleQuery serves POST /{Object}/query and /{Object}/queryMore.
func (s *Server) handleQuery(w http.ResponseWriter, r *http.Request, objName string, more bool, now time.Time) {
	o, ok := s.objects[objName]
	if !ok {
		writeError(w, http.StatusNotFound, "no such object "+objName)
		return
	}
	body, err := readBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	var out []byte
	if more {
		out, err = s.runQueryMore(o, body, now)
	} else {
		if !isJSON(r) {
			writeError(w, http.StatusUnsupportedMediaType, "Content-Type must be application/json")
			return
		}
		out, err = s.runQuery(o, body, now)
	}
	if err != nil {
		writeErr(w, err)
		return
	}
	writeRaw(w, http.StatusOK, out)
}

// Package report holds what runnerd prints for machines: the -json shape of
// each object (DESIGN 3.2: runs, ledger calls, audit records, notification
// deliveries, plan steps, audit coverage) and the audit CSV. The command line
// prints them, and the control socket carries a Run, so every path that
// shows one of these says it with the same fields.
package report

import (
	"encoding/csv"
	"encoding/json"
	"io"
	"time"

	"runnerd"
	"runnerd/internal/notify"
	"runnerd/internal/store"
)

// RFC3339 formats t in UTC, and the zero time as "" (a field not set yet).
func RFC3339(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

// Call is the -json shape of a ledger row (DESIGN 3.2); request_id,
// safe and bytes are additions.
type Call struct {
	ID         int64  `json:"id"`
	RunID      int64  `json:"run_id"`
	Job        string `json:"job"`
	StartedAt  string `json:"started_at"`
	FinishedAt string `json:"finished_at"`
	Method     string `json:"method"`
	Path       string `json:"path"`
	Operation  string `json:"operation"`
	Status     int    `json:"status"`
	DurationMS int64  `json:"duration_ms"`
	Attempt    int    `json:"attempt"`
	Error      string `json:"error"`
	RequestID  string `json:"request_id"`
	Bytes      int64  `json:"bytes"`
}

// ToCall is the -json shape of a ledger row.
func ToCall(c store.Call) Call {
	return Call{
		ID: c.ID, RunID: c.RunID, Job: c.Job, StartedAt: RFC3339(c.StartedAt), FinishedAt: RFC3339(c.FinishedAt),
		Method: c.Method, Path: c.Path, Operation: c.Operation, Status: c.Status, DurationMS: c.DurationMS,
		Attempt: c.Attempt, Error: c.Error, RequestID: c.RequestID, Bytes: c.Bytes,
	}
}

// Run is the -json shape of a run (DESIGN 3.2); reason, estimate,
// not_before and detail are additions.
type Run struct {
	ID          int64           `json:"id"`
	Job         string          `json:"job"`
	Kind        string          `json:"kind"`
	NominalTime string          `json:"nominal_time"`
	StartedAt   string          `json:"started_at"`
	FinishedAt  string          `json:"finished_at"`
	State       string          `json:"state"`
	Calls       int             `json:"calls"`
	Lookups     int             `json:"lookups,omitempty"` // of calls: reconciliation's recovery lookups
	Error       string          `json:"error"`
	Reason      string          `json:"reason,omitempty"`
	Estimate    int             `json:"estimate"`
	NotBefore   string          `json:"not_before,omitempty"`
	Detail      json.RawMessage `json:"detail,omitempty"`
	// Evidence is what runnerd keeps of a failed execution (an addition).
	Evidence []Evidence `json:"evidence,omitempty"`
}

// Evidence is the -json shape of one piece of failure evidence.
type Evidence struct {
	Kind        string `json:"kind"`  // log | artifacts
	State       string `json:"state"` // pending | kept | given_up | pruned
	Reason      string `json:"reason,omitempty"`
	ExecutionID string `json:"execution_id"`
	Level       string `json:"level,omitempty"`
	Path        string `json:"path,omitempty"`
	Bytes       int64  `json:"bytes,omitempty"`
	SHA256      string `json:"sha256,omitempty"`
	NextAt      string `json:"next_at,omitempty"` // pending: the next attempt
	UpdatedAt   string `json:"updated_at"`
}

// ToEvidence is the -json shape of a piece of evidence.
func ToEvidence(e store.Evidence) Evidence {
	j := Evidence{Kind: e.Kind, State: e.State, Reason: e.Reason, ExecutionID: e.ExecutionID, Level: e.Level,
		Path: e.Path, Bytes: e.Bytes, SHA256: e.SHA256, UpdatedAt: RFC3339(e.UpdatedAt)}
	if e.State == store.EvidencePending {
		j.NextAt = RFC3339(e.NextAt)
	}
	return j
}

// ToRun is the -json shape of a run; a detail that is not JSON is left out.
func ToRun(r runnerd.Run) Run {
	j := Run{
		ID: r.ID, Job: r.Job, Kind: r.Kind, NominalTime: RFC3339(r.NominalTime), StartedAt: RFC3339(r.StartedAt),
		FinishedAt: RFC3339(r.FinishedAt), State: string(r.State), Calls: r.Calls, Error: r.Error,
		Reason: r.Reason, Estimate: r.Estimate, NotBefore: RFC3339(r.NotBefore),
	}
	if r.Detail != "" && json.Valid([]byte(r.Detail)) {
		j.Detail = json.RawMessage(r.Detail)
	}
	return j
}

// Audit is the -json shape of an audit record (snake_case).
type Audit struct {
	DocumentID  string          `json:"document_id"`
	Date        string          `json:"date"`
	UserID      string          `json:"user_id"`
	Type        string          `json:"type"`
	Action      string          `json:"action"`
	Modifier    string          `json:"modifier"`
	Level       string          `json:"level"`
	Source      string          `json:"source"`
	ContainerID string          `json:"container_id"`
	Message     string          `json:"message"`
	Properties  []AuditProperty `json:"properties"`
}

type AuditProperty struct {
	Name          string `json:"name"`
	Value         string `json:"value"`
	PreviousValue string `json:"previous_value"`
}

// ToAudit is the -json shape of an audit record.
func ToAudit(r store.AuditRecord) Audit {
	j := Audit{
		DocumentID: r.DocumentID, Date: RFC3339(r.Date), UserID: r.UserID, Type: r.Type, Action: r.Action,
		Modifier: r.Modifier, Level: r.Level, Source: r.Source, ContainerID: r.ContainerID, Message: r.Message,
		Properties: []AuditProperty{},
	}
	for _, p := range r.Properties {
		j.Properties = append(j.Properties, AuditProperty{Name: p.Name, Value: p.Value, PreviousValue: p.PreviousValue})
	}
	return j
}

// AuditCSVHeader are the -csv columns: the -json fields, properties as a JSON
// array in one column (lossless; a CSV parser unquotes it).
var AuditCSVHeader = []string{"document_id", "date", "user_id", "type", "action", "modifier", "level", "source",
	"container_id", "message", "properties"}

// WriteAuditCSV writes recs as CSV under AuditCSVHeader.
func WriteAuditCSV(w io.Writer, recs []store.AuditRecord) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(AuditCSVHeader); err != nil {
		return err
	}
	for _, r := range recs {
		j := ToAudit(r)
		props, err := json.Marshal(j.Properties)
		if err != nil {
			return err
		}
		if err := cw.Write([]string{j.DocumentID, j.Date, j.UserID, j.Type, j.Action, j.Modifier, j.Level, j.Source,
			j.ContainerID, j.Message, string(props)}); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

// Coverage is a -coverage -json line.
type Coverage struct {
	From    string   `json:"from"`
	To      string   `json:"to"`
	State   string   `json:"state"`
	Hours   float64  `json:"hours"`
	Records int      `json:"records"`
	Jobs    []string `json:"jobs,omitempty"`
	Runs    []string `json:"runs,omitempty"`
}

// Delivery is the -json shape of a delivery.
type Delivery struct {
	Target     string `json:"target"`
	EventID    string `json:"event_id,omitempty"`
	Event      string `json:"event"`
	Job        string `json:"job,omitempty"`
	RunID      int64  `json:"run_id,omitempty"`
	EventTime  string `json:"event_time"`
	FinishedAt string `json:"finished_at"`
	Attempts   int    `json:"attempts"`
	Status     string `json:"status"`
	HTTPStatus int    `json:"http_status,omitempty"`
	Error      string `json:"error,omitempty"`
}

// ToDelivery is the -json shape of a notification delivery.
func ToDelivery(d notify.Delivery) Delivery {
	return Delivery{
		Target: d.Target, EventID: d.EventID, Event: d.Event, Job: d.Job, RunID: d.RunID,
		EventTime: RFC3339(d.Time), FinishedAt: RFC3339(d.FinishedAt), Attempts: d.Attempts, Status: d.Status,
		HTTPStatus: d.HTTPStatus, Error: d.Error,
	}
}

// Plan is one line of `runnerd plan -json`.
type Plan struct {
	Job            string `json:"job"`
	Time           string `json:"time"`
	Priority       string `json:"priority"`
	Estimate       int    `json:"estimate"`
	Basis          string `json:"estimate_basis"`
	Admit          bool   `json:"admit"`
	Reason         string `json:"reason,omitempty"`
	RemainingAfter int    `json:"remaining_after"`
}

// Status is `runnerd status -json`.
type Status struct {
	Daemon      string `json:"daemon"` // "running" or "not running"
	Socket      string `json:"socket"`
	Config      string `json:"config"`
	DB          string `json:"db"`
	DailyLimit  int    `json:"daily_limit"`
	Reserve     int    `json:"reserve"`
	Used        int    `json:"used"`
	Remaining   int    `json:"remaining"`
	InFlight    int    `json:"in_flight"`
	Deferred    int    `json:"deferred"`
	Unknown     int    `json:"unknown"`
	Failed24h   int    `json:"failed_24h"`
	Undelivered int    `json:"undelivered_24h"`
	// Owed are the resumes releases still owe (an addition): "schedules of
	// P on A (job J, run N)", "listener L on A (job J, run N)".
	Owed []string `json:"owed,omitempty"`
	// Instances and Leases: the runnerd sharing a PostgreSQL ledger and who
	// runs each job (an addition; absent on SQLite).
	Instances []Instance `json:"instances,omitempty"`
	Leases    []Lease    `json:"leases,omitempty"`
	Next      []NextRun  `json:"next"`
	Problems  []string   `json:"problems"`
	At        string     `json:"at"`
}

// Instance is one runnerd on a shared ledger (Status.Instances).
type Instance struct {
	Name        string  `json:"name"`
	Host        string  `json:"host"`
	PID         int     `json:"pid"`
	State       string  `json:"state"` // running | stopped | silent
	HeartbeatAt string  `json:"heartbeat_at"`
	Leases      int     `json:"leases"`
	Calls24h    int     `json:"calls_24h"`
	Share       float64 `json:"share"` // of the window's calls, 0–1
}

// Lease is who runs a job until when (Status.Leases).
type Lease struct {
	Job       string `json:"job"`
	Instance  string `json:"instance"`
	ExpiresAt string `json:"expires_at"`
}

// NextRun is one of Status's next fires.
type NextRun struct {
	Job      string `json:"job"`
	Time     string `json:"time"`
	Estimate int    `json:"estimate"`
}

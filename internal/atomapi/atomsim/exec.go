package atomsim

import (
	"net/http"
	"time"

	"runnerd/internal/atomapi"
)

// Execution is one execution started through the API.
type Execution struct {
	RequestID   string // the starting request's X-Runnerd-Request-Id header
	PlatformID  string // the requestId answered ("executionrecord-<uuid>"); "" for executeProcess
	ExecutionID string // "execution-<uuid>-<yyyy.MM.dd>"
	ProcessID   string
	AtomID      string
	Started     time.Time // simulated clock
	Via         string    // "ExecutionRequest" or "executeProcess"
}

// execution is an Execution with what the simulator needs to report it.
type execution struct {
	Execution
	account, processName, atomName string
	visible, end                   time.Time
	status, message                string
}

// never is the end of an execution that runs until it is cancelled.
var never = time.Date(9999, 12, 31, 0, 0, 0, 0, time.UTC)

// record returns the ExecutionRecord as of now; ok is false before it appears.
// Called with s.mu held (cancelExecution changes the end).
func (x *execution) record(now time.Time) (rec atomapi.ExecutionRecord, ok bool) {
	if now.Before(x.visible) {
		return rec, false
	}
	return x.recordAt(now), true
}

// recordAt returns the ExecutionRecord as of now, whether or not it has appeared.
func (x *execution) recordAt(now time.Time) atomapi.ExecutionRecord {
	rec := atomapi.ExecutionRecord{
		Type: "ExecutionRecord", Account: x.account, AtomID: x.AtomID, AtomName: x.atomName,
		ExecutionID: x.ExecutionID, ExecutionTime: atomapi.FormatTime(x.Started), ExecutionType: "exec_manual",
		ProcessID: x.ProcessID, ProcessName: x.processName, Status: atomapi.StatusInProcess,
		TopLevelExecutionID: x.ExecutionID,
	}
	if x.Via == "executeProcess" {
		rec.ExecutionType = "exec_remote"
	}
	if !now.Before(x.end) {
		rec.Status = x.status
		rec.Message = x.message
		rec.ExecutionDuration = atomapi.Long(x.end.Sub(x.Started).Milliseconds())
		rec.RecordedDate = atomapi.FormatTime(x.end)
		switch x.status {
		case atomapi.StatusError:
			rec.InboundDocumentCount, rec.InboundErrorDocumentCount = 1, 1
		case atomapi.StatusAborted:
			rec.InboundDocumentCount, rec.InboundDocumentSize = 10, 2048
		default:
			rec.InboundDocumentCount, rec.OutboundDocumentCount = 10, 10
			rec.InboundDocumentSize, rec.OutboundDocumentSize = 2048, 4096
		}
	}
	return rec
}

// Executions returns the executions started so far, in order.
func (s *Server) Executions() []Execution {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Execution, len(s.execs))
	for i, x := range s.execs {
		out[i] = x.Execution
	}
	return out
}

// start validates and starts an execution; it returns a 400 error for an
// unknown atom or a process that cannot run. Called without s.mu.
func (s *Server) start(reqID, via, atomID, procID, procName string, now time.Time) (*execution, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if procID == "" && procName != "" {
		for _, p := range s.data.Processes {
			if p.Name == procName {
				procID = p.ID
			}
		}
	}
	outcome, ok := processOutcome[procID]
	if !ok {
		return nil, badf("invalid process id %q", procID)
	}
	var atomName string
	for _, a := range s.data.Atoms {
		if a.ID == atomID {
			atomName = a.Name
		}
	}
	if atomID == "" || atomName == "" {
		return nil, badf("invalid atom id %q", atomID)
	}
	g := ids{s.rng}
	x := &execution{
		Execution: Execution{
			RequestID: reqID, ExecutionID: executionID(g.uuid(), now),
			ProcessID: procID, AtomID: atomID, Started: now, Via: via,
		},
		account: s.opts.Account, processName: s.processName(procID), atomName: atomName,
		visible: now.Add(s.opts.RecordDelay), end: now.Add(s.opts.ExecDuration),
		status: outcome.status, message: outcome.message,
	}
	if x.end.Before(x.visible) {
		x.end = x.visible
	}
	if outcome.status == "" {
		x.end = never
	}
	if via == "ExecutionRequest" {
		x.PlatformID = "executionrecord-" + g.uuid()
	}
	s.execs = append(s.execs, x)
	return x, nil
}

// handleExecutionRequest serves POST /ExecutionRequest.
func (s *Server) handleExecutionRequest(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req atomapi.ExecutionRequest
	if !decodeBody(w, r, &req) {
		return
	}
	x, err := s.start(r.Header.Get(atomapi.RequestIDHeader), "ExecutionRequest", req.AtomID, req.ProcessID, req.ProcessName, now)
	if err != nil {
		writeErr(w, err)
		return
	}
	ans := atomapi.ExecutionRequest{
		Type: "ExecutionRequest", AtomID: x.AtomID, ProcessID: x.ProcessID, ProcessName: x.processName,
		DynamicProcessProperties: req.DynamicProcessProperties,
		RequestID:                x.PlatformID,
		RecordURL:                "http://" + r.Host + PathPrefix + s.opts.Account + "/ExecutionRecord/async/" + x.PlatformID,
	}
	writeJSON(w, http.StatusOK, ans)
}

// handleExecuteProcess serves POST /executeProcess: 200 with an empty body.
func (s *Server) handleExecuteProcess(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req atomapi.ExecuteProcessRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if _, err := s.start(r.Header.Get(atomapi.RequestIDHeader), "executeProcess", req.AtomID, req.ProcessID, req.ProcessName, now); err != nil {
		writeErr(w, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleAsync serves GET /ExecutionRecord/async/{requestId}.
func (s *Server) handleAsync(w http.ResponseWriter, requestID string, now time.Time) {
	s.mu.Lock()
	var x *execution
	for _, e := range s.execs {
		if e.PlatformID == requestID {
			x = e
		}
	}
	if x == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Invalid request id: "+requestID)
		return
	}
	rec, ok := x.record(now)
	s.mu.Unlock()
	switch {
	case !ok:
		writeRaw(w, http.StatusAccepted, []byte(`{"@type":"AsyncOperationResult","responseStatusCode":202,"result":[]}`+"\n"))
	case s.opts.BareAsyncRecord:
		writeJSON(w, http.StatusOK, rec)
	default:
		writeJSON(w, http.StatusOK, atomapi.AsyncExecutionResult{
			Type: "AsyncOperationResult", ResponseStatusCode: 200, NumberOfResults: 1, Result: []atomapi.ExecutionRecord{rec},
		})
	}
}

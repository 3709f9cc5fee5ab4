package atomsim

import (
	"archive/zip"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"

	"runnerd/internal/atomapi"
)

// DefaultDownloadOversize is the size of the padding entry of DownloadOversize.
const DefaultDownloadOversize = 64 << 20

// DownloadFault is what the download URLs and the LogDownload operations do
// instead of their normal answer; see SetDownloadFault.
type DownloadFault int

// Download faults.
const (
	DownloadNormal             DownloadFault = iota // no fault
	DownloadNeverReady                              // a known download answers 202 forever, even past DownloadTTL
	DownloadExpired                                 // a known download answers 404, as when expired
	DownloadTruncated                               // a ready download answers 200 with the ZIP's first half only
	DownloadOversize                                // a ready download answers 200 with a valid ZIP padded by an incompressible entry (SetDownloadOversize)
	DownloadRuntimeUnavailable                      // ProcessLog and ExecutionArtifacts answer 200 with statusCode 504 and no url
)

// logLevels are the ProcessLog levels, most severe first; ALL admits every line.
var logLevels = []string{"SEVERE", "WARNING", "INFO", "CONFIG", "FINE", "FINER", "FINEST", "ALL"}

func levelRank(l string) int {
	for i, v := range logLevels {
		if v == l {
			return i
		}
	}
	return -1
}

// evidence is the state of the log, artifact and cancel operations; guarded by s.mu.
type evidence struct {
	downloads        map[string]*download
	cancels          []string
	fault            DownloadFault
	oversize         int64
	host             string
	artifactsOff     bool
	cancelOnPlatform bool
	cancelOff        bool
}

// download is a file created by ProcessLog or ExecutionArtifacts.
type download struct {
	kind    string // "ProcessLog" or "ExecutionArtifacts"
	x       *execution
	level   string // ProcessLog's logLevel
	created time.Time
}

// logDownload is the LogDownload answer; StatusCode is a number for
// ProcessLog and a string for ExecutionArtifacts, as in the OpenAPI examples.
type logDownload struct {
	Type       string `json:"@type"`
	URL        string `json:"url,omitempty"`
	Message    string `json:"message"`
	StatusCode any    `json:"statusCode"`
}

// SetDownloadFault makes the download operations misbehave as f says, until
// it is set back to DownloadNormal.
func (s *Server) SetDownloadFault(f DownloadFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.fault = f
}

// SetDownloadOversize sets the size in bytes of DownloadOversize's padding
// entry (padding.bin, stored, random bytes; the ZIP is streamed without a
// Content-Length); default DefaultDownloadOversize (64 MiB); n ≤ 0 restores
// the default.
func (s *Server) SetDownloadOversize(n int64) {
	if n <= 0 {
		n = DefaultDownloadOversize
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.oversize = n
}

// SetDownloadHost makes LogDownload urls use hostport instead of the
// request's Host (e.g. another server, to check that a client never sends
// the credentials there); "" restores the request's Host.
func (s *Server) SetDownloadHost(hostport string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.host = hostport
}

// SetArtifactsDisabled makes ExecutionArtifacts answer 403, as when the
// account setting "Enable Download of Execution Artifacts and Worker Logs" is off.
func (s *Server) SetArtifactsDisabled(off bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.artifactsOff = off
}

// SetCancelOnPlatform makes cancelExecution answer on the platform path
// (/api/rest/v1/…) too, not only on the Partner API's.
func (s *Server) SetCancelOnPlatform(on bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.cancelOnPlatform = on
}

// SetCancelUnavailable makes cancelExecution 404 on both paths.
func (s *Server) SetCancelUnavailable(off bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ev.cancelOff = off
}

// Cancels returns the execution ids cancelled so far, in order.
func (s *Server) Cancels() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.ev.cancels...)
}

// cancelOn reports whether cancelExecution is offered on the partner path
// (or, with partner false, on the platform path).
func (s *Server) cancelOn(partner bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ev.cancelOff && (partner || s.ev.cancelOnPlatform)
}

// routePartner serves the Partner API: only cancelExecution.
func (s *Server) routePartner(w http.ResponseWriter, r *http.Request, seg []string, now time.Time) {
	if r.Method == http.MethodPost && len(seg) == 2 && seg[0] == "cancelExecution" && seg[1] != "" && s.cancelOn(true) {
		s.handleCancel(w, seg[1], now)
		return
	}
	writeError(w, http.StatusNotFound, "no such operation: "+r.Method+" "+PartnerPathPrefix+"…/"+strings.Join(seg, "/"))
}

// handleCancel serves POST /cancelExecution/{executionId}: the execution ends
// ABORTED now.
func (s *Server) handleCancel(w http.ResponseWriter, id string, now time.Time) {
	s.mu.Lock()
	x := s.findExecution(id)
	switch {
	case x == nil:
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Invalid execution id: "+id)
		return
	case !now.Before(x.end):
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Cannot cancel: the execution is not running: "+id)
		return
	}
	x.end, x.status, x.message = now, atomapi.StatusAborted, CancelMessage
	s.ev.cancels = append(s.ev.cancels, id)
	s.mu.Unlock()
	writeRaw(w, http.StatusAccepted, []byte(`{"message":"Operation completed successfully."}`+"\n"))
}

// findExecution returns the started execution with that executionId, or nil.
// Called with s.mu held.
func (s *Server) findExecution(id string) *execution {
	for _, x := range s.execs {
		if x.ExecutionID == id {
			return x
		}
	}
	return nil
}

// handleProcessLog serves POST /ProcessLog.
func (s *Server) handleProcessLog(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req struct {
		ExecutionID string `json:"executionId"`
		LogLevel    string `json:"logLevel"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.LogLevel == "" {
		req.LogLevel = "ALL"
	}
	if levelRank(req.LogLevel) < 0 {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid logLevel %q: one of %s", req.LogLevel, strings.Join(logLevels, ", ")))
		return
	}
	s.createDownload(w, r, "ProcessLog", req.ExecutionID, req.LogLevel, now)
}

// handleExecutionArtifacts serves POST /ExecutionArtifacts.
func (s *Server) handleExecutionArtifacts(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req struct {
		ExecutionID string `json:"executionId"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	off := s.ev.artifactsOff
	s.mu.Unlock()
	if off {
		writeError(w, http.StatusForbidden, `The account setting "Enable Download of Execution Artifacts and Worker Logs" is off: execution artifacts cannot be downloaded`)
		return
	}
	s.createDownload(w, r, "ExecutionArtifacts", req.ExecutionID, "", now)
}

// createDownload answers a LogDownload for a new download of the execution.
func (s *Server) createDownload(w http.ResponseWriter, r *http.Request, kind, execID, level string, now time.Time) {
	code := func(n int) any {
		if kind == "ExecutionArtifacts" {
			return strconv.Itoa(n)
		}
		return n
	}
	s.mu.Lock()
	x := s.findExecution(execID)
	if x == nil {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, "Invalid execution id: "+execID)
		return
	}
	if s.ev.fault == DownloadRuntimeUnavailable {
		s.mu.Unlock()
		writeJSON(w, http.StatusOK, logDownload{Type: "LogDownload", Message: "Runtime is unavailable.", StatusCode: 504})
		return
	}
	name := kind + "-" + ids{s.rng}.uuid()
	s.ev.downloads[name] = &download{kind: kind, x: x, level: level, created: now}
	host := s.ev.host
	s.mu.Unlock()
	if host == "" {
		host = r.Host
	}
	writeJSON(w, http.StatusOK, logDownload{
		Type: "LogDownload", URL: "http://" + host + downloadPrefix + s.opts.Account + "/api/download/" + name,
		Message: "Beginning download.", StatusCode: code(202),
	})
}

// routeDownload serves /account/{account}/…: only GET api/download/{name}.
func (s *Server) routeDownload(w http.ResponseWriter, r *http.Request, seg []string, now time.Time) {
	if r.Method != http.MethodGet || len(seg) != 3 || seg[0] != "api" || seg[1] != "download" || seg[2] == "" {
		writeError(w, http.StatusNotFound, "no such operation: "+r.Method+" "+r.URL.Path)
		return
	}
	name := seg[2]
	s.mu.Lock()
	d, fault, oversize := s.ev.downloads[name], s.ev.fault, s.ev.oversize
	var x execution
	if d != nil {
		x = *d.x // a copy: cancelExecution may change the original
	}
	s.mu.Unlock()
	switch {
	case d == nil:
		writeError(w, http.StatusNotFound, "No such download: "+name)
		return
	case fault == DownloadNeverReady:
		w.WriteHeader(http.StatusAccepted)
		return
	case fault == DownloadExpired || !now.Before(d.created.Add(s.opts.DownloadTTL)):
		writeError(w, http.StatusNotFound, "The download has expired: "+name)
		return
	}
	at := d.created.Add(s.opts.DownloadDelay) // the file is made when it is ready
	if now.Before(at) {
		w.WriteHeader(http.StatusAccepted)
		return
	}
	w.Header().Set("Content-Type", "application/zip")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.zip"`)
	if fault == DownloadOversize {
		w.WriteHeader(http.StatusOK)
		writeZip(w, d, &x, at, oversize) // streamed, no Content-Length
		return
	}
	var buf bytes.Buffer
	writeZip(&buf, d, &x, at, 0)
	body := buf.Bytes()
	if fault == DownloadTruncated {
		body = body[:len(body)/2]
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	w.Write(body)
}

// writeZip writes the download's ZIP as of at, with a stored entry of pad
// random bytes when pad > 0.
func writeZip(out io.Writer, d *download, x *execution, at time.Time, pad int64) error {
	zw := zip.NewWriter(out)
	add := func(name string, body []byte) error {
		f, err := zw.CreateHeader(&zip.FileHeader{Name: name, Method: zip.Deflate, Modified: at})
		if err == nil {
			_, err = f.Write(body)
		}
		return err
	}
	var err error
	if d.kind == "ProcessLog" {
		err = add("process_log_"+x.ExecutionID+".log", processLog(x, d.level, at))
	} else {
		rec, _ := json.MarshalIndent(x.recordAt(at), "", "  ")
		if err = add("execution.json", append(rec, '\n')); err == nil {
			err = add("documents/input-1.dat", []byte(fmt.Sprintf("order_id,total\n%s-1,120.50\n%s-2,80.00\n", x.ExecutionID, x.ExecutionID)))
		}
		if err == nil && !at.Before(x.end) && x.status != atomapi.StatusError && x.status != atomapi.StatusAborted {
			err = add("documents/output-1.dat", []byte(`{"orders":2,"total":"200.50"}`+"\n"))
		}
	}
	if err == nil && pad > 0 {
		var f io.Writer
		if f, err = zw.CreateHeader(&zip.FileHeader{Name: "padding.bin", Method: zip.Store, Modified: at}); err == nil {
			err = writeRandom(f, pad)
		}
	}
	if err != nil {
		return err
	}
	return zw.Close()
}

// writeRandom writes n incompressible bytes.
func writeRandom(w io.Writer, n int64) error {
	r := rand.New(rand.NewPCG(uint64(n), 0xbad51e))
	buf := make([]byte, 64<<10)
	for n > 0 {
		for i := 0; i+8 <= len(buf); i += 8 {
			binary.LittleEndian.PutUint64(buf[i:], r.Uint64())
		}
		k := min(n, int64(len(buf)))
		if _, err := w.Write(buf[:k]); err != nil {
			return err
		}
		n -= k
	}
	return nil
}

// processLog renders the execution's log as of at, leaving out the lines
// below level.
func processLog(x *execution, level string, at time.Time) []byte {
	var b bytes.Buffer
	ended := !at.Before(x.end)
	line := func(t time.Time, lvl, shape, msg string) {
		if ended && t.After(x.end) {
			t = x.end
		}
		if levelRank(lvl) > levelRank(level) || t.After(at) {
			return
		}
		fmt.Fprintf(&b, "%s\t%s\t[%s]\t%s\n", t.UTC().Format("2006-01-02T15:04:05.000Z"), lvl, shape, msg)
	}
	st := x.Started
	step := func(i int) time.Time { return st.Add(time.Duration(i) * 100 * time.Millisecond) }
	line(step(0), "INFO", "Process", fmt.Sprintf("Executing process %s (%s), execution %s, on runtime %s (%s)", x.processName, x.ProcessID, x.ExecutionID, x.atomName, x.AtomID))
	line(step(0), "CONFIG", "Process", "Execution type "+map[bool]string{true: "exec_remote", false: "exec_manual"}[x.Via == "executeProcess"]+", launched through the API ("+x.Via+")")
	line(step(1), "FINE", "Start", "Shape executed; 1 document(s) out")
	line(step(2), "FINER", "Connector Orders DB", "Opening connection to orders-db.example.com:5432")
	line(step(2), "FINEST", "Connector Orders DB", "Connection pool: 1 active, 0 idle")
	if !ended {
		return b.Bytes()
	}
	end := x.end
	switch x.status {
	case atomapi.StatusError:
		line(end, "SEVERE", "Connector Orders DB", x.message)
	case atomapi.StatusAborted:
		line(end, "WARNING", "Process", x.message)
	case atomapi.StatusCompleteWarn:
		line(step(3), "INFO", "Map", "Shape executed; 10 document(s) out")
		line(step(4), "WARNING", "Decision", "2 document(s) without a tax id")
	default:
		line(step(3), "INFO", "Map", "Shape executed; 10 document(s) out")
	}
	msg := fmt.Sprintf("Process execution %s ended with status %s after %d ms", x.ExecutionID, x.status, end.Sub(st).Milliseconds())
	lvl := "INFO"
	switch x.status {
	case atomapi.StatusError:
		msg, lvl = msg+": "+x.message, "SEVERE"
	case atomapi.StatusAborted, atomapi.StatusCompleteWarn:
		lvl = "WARNING"
	}
	line(end, lvl, "Process", msg)
	return b.Bytes()
}

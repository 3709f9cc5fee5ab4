package atomsim

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// FaultKind is a kind of injected fault.
type FaultKind int

// Fault kinds.
const (
	FaultLatency       FaultKind = iota + 1 // wait Latency (real time) before handling the request normally
	FaultStatus                             // answer Status (default 500) with an HTML body
	FaultReset                              // read the whole request, then reset the connection (RST)
	FaultMalformedJSON                      // 200 with a body that is not JSON
	FaultTruncatedJSON                      // handle normally, then send 200 with the first half of the body
	Fault503Storm                           // answer 503 (HTML) to the next Count requests
	FaultTrickle                            // handle normally, then write the body in 16-byte chunks, Latency apart
	FaultHugeBody                           // 200 with a JSON-looking body of Size bytes (default 1 GiB), streamed
	FaultRedirect                           // 302 to Location (default: the request's own path)
)

var faultNames = map[FaultKind]string{
	FaultLatency: "latency", FaultStatus: "status", FaultReset: "reset", FaultMalformedJSON: "malformed-json",
	FaultTruncatedJSON: "truncated-json", Fault503Storm: "503-storm", FaultTrickle: "trickle",
	FaultHugeBody: "huge-body", FaultRedirect: "redirect",
}

// String returns the name Requests() records for the kind, e.g. "reset".
func (k FaultKind) String() string {
	if n, ok := faultNames[k]; ok {
		return n
	}
	return "fault-" + strconv.Itoa(int(k))
}

// Fault is an injected fault. Faults stand for the network and the platform's
// edge: they are applied before authentication and the limits, and the request
// does not reach the platform (it has no effect and is not counted) — except
// FaultLatency, FaultTrickle and FaultTruncatedJSON, which handle the request
// normally, and any fault with AfterHandling.
type Fault struct {
	Kind         FaultKind
	Count        int           // requests affected; default 1
	PathContains string        // only requests whose URL path contains this; "" = any
	PathSuffix   string        // and, if set, ends with this (e.g. "/DeployedPackage", not its /query)
	Latency      time.Duration // FaultLatency: delay before the headers (default 1s); FaultTrickle: pause between chunks (default 50ms)
	Status       int           // FaultStatus: the status (default 500)
	Location     string        // FaultRedirect: the Location header
	Size         int64         // FaultHugeBody: body size in bytes (default 1 GiB)
	// AfterHandling handles the request normally first (it takes effect and
	// is counted), then discards the answer and applies the fault: e.g. an
	// ExecutionRequest that starts an execution whose answer is lost to a reset.
	AfterHandling bool
}

// Inject queues a fault; each request takes the first queued fault whose
// PathContains matches it, until the fault's Count is used up.
func (s *Server) Inject(f Fault) {
	if f.Count <= 0 {
		f.Count = 1
	}
	s.logMu.Lock()
	defer s.logMu.Unlock()
	s.faults = append(s.faults, &f)
}

func (s *Server) takeFault(path string) *Fault {
	s.logMu.Lock()
	defer s.logMu.Unlock()
	for i, f := range s.faults {
		if !strings.Contains(path, f.PathContains) || !strings.HasSuffix(path, f.PathSuffix) {
			continue
		}
		f.Count--
		if f.Count <= 0 {
			s.faults = append(s.faults[:i], s.faults[i+1:]...)
		}
		c := *f
		return &c
	}
	return nil
}

// bufferWriter captures an answer.
type bufferWriter struct {
	header http.Header
	status int
	body   bytes.Buffer
}

func newBufferWriter() *bufferWriter { return &bufferWriter{header: http.Header{}} }

func (b *bufferWriter) Header() http.Header { return b.header }
func (b *bufferWriter) WriteHeader(code int) {
	if b.status == 0 {
		b.status = code
	}
}
func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.status == 0 {
		b.status = http.StatusOK
	}
	return b.body.Write(p)
}

func sleep(r *http.Request, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.Context().Done():
		return false
	}
}

const edgeHTML = "<html><head><title>%d</title></head><body><h1>%d %s</h1></body></html>\n"

func writeHTML(w http.ResponseWriter, status int) {
	w.Header().Set("Content-Type", "text/html")
	w.WriteHeader(status)
	io.WriteString(w, strings.NewReplacer("%d", strconv.Itoa(status), "%s", http.StatusText(status)).Replace(edgeHTML))
}

func (s *Server) serveFault(w http.ResponseWriter, r *http.Request, f *Fault) {
	switch f.Kind {
	case FaultLatency:
		d := f.Latency
		if d <= 0 {
			d = time.Second
		}
		if sleep(r, d) {
			s.serve(w, r)
		}
		return
	case FaultTrickle:
		d := f.Latency
		if d <= 0 {
			d = 50 * time.Millisecond
		}
		b := newBufferWriter()
		s.serve(b, r)
		for k, v := range b.header {
			w.Header()[k] = v
		}
		w.Header().Del("Content-Length")
		w.WriteHeader(b.status)
		rc := http.NewResponseController(w)
		body := b.body.Bytes()
		for len(body) > 0 {
			n := min(16, len(body))
			if _, err := w.Write(body[:n]); err != nil {
				return
			}
			rc.Flush()
			body = body[n:]
			if len(body) > 0 && !sleep(r, d) {
				return
			}
		}
		return
	case FaultTruncatedJSON:
		b := newBufferWriter()
		s.serve(b, r)
		half := b.body.Bytes()[:b.body.Len()/2]
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(half)))
		w.WriteHeader(http.StatusOK)
		w.Write(half)
		return
	}

	if f.AfterHandling {
		s.serve(newBufferWriter(), r)
	}
	io.Copy(io.Discard, io.LimitReader(r.Body, maxBody))
	switch f.Kind {
	case FaultReset:
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			panic(http.ErrAbortHandler) // closes the connection without a log line
		}
		if tc, ok := conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
		conn.Close()
	case FaultStatus:
		st := f.Status
		if st == 0 {
			st = http.StatusInternalServerError
		}
		writeHTML(w, st)
	case Fault503Storm:
		writeHTML(w, http.StatusServiceUnavailable)
	case FaultMalformedJSON:
		writeRaw(w, http.StatusOK, []byte(`{"@type":"QueryResult","numberOfResults":1,"result":[{"@type":"AuditLog",documentId:'x',}]`+"\n"))
	case FaultHugeBody:
		size := f.Size
		if size <= 0 {
			size = 1 << 30
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusOK)
		head := `{"@type":"QueryResult","numberOfResults":1,"result":[{"@type":"AuditLog","documentId":"huge","message":"`
		tail := `"}]}`
		if _, err := io.WriteString(w, head); err != nil {
			return
		}
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		for left := size - int64(len(head)+len(tail)); left > 0; {
			n := min(left, int64(len(chunk)))
			if _, err := w.Write(chunk[:n]); err != nil {
				return
			}
			left -= n
		}
		io.WriteString(w, tail)
	case FaultRedirect:
		loc := f.Location
		if loc == "" {
			loc = r.URL.RequestURI()
		}
		w.Header().Set("Location", loc)
		w.WriteHeader(http.StatusFound)
	default:
		writeHTML(w, http.StatusInternalServerError)
	}
}

package atomsim_test

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
)

func evidenceOpts() atomsim.Options {
	o := tiny
	o.RecordDelay, o.ExecDuration = time.Second, 30*time.Second
	return o
}

// do sends a bodiless request to a full URL, with the credentials when auth.
func (c *sim) do(method, u string, auth bool, hdr ...string) reply {
	c.t.Helper()
	r, err := http.NewRequest(method, u, nil)
	if err != nil {
		c.t.Fatal(err)
	}
	if auth {
		r.SetBasicAuth(atomsim.DefaultUser, atomsim.DefaultPassword)
	}
	r.Header.Set("Accept", "application/json")
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.hc.Do(r)
	if err != nil {
		c.t.Fatalf("%s %s: %v", method, u, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatalf("%s %s: reading body: %v", method, u, err)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// fetch GETs a download URL as a client would.
func (c *sim) fetch(u string) reply {
	c.t.Helper()
	return c.do("GET", u, true, "Accept", "application/zip")
}

// startExec starts proc on the test atom and returns its executionId.
func (c *sim) startExec(proc string) string {
	c.t.Helper()
	rep := c.req("POST", "/ExecutionRequest", atomapi.ExecutionRequest{Type: "ExecutionRequest", AtomID: atomsim.AtomTest, ProcessID: proc})
	var ans atomapi.ExecutionRequest
	if err := json.Unmarshal(rep.body, &ans); err != nil || rep.status != 200 {
		c.t.Fatalf("ExecutionRequest %s: %d %s", proc, rep.status, rep.body)
	}
	for _, x := range c.s.Executions() {
		if x.PlatformID == ans.RequestID {
			return x.ExecutionID
		}
	}
	c.t.Fatalf("no execution for %s", ans.RequestID)
	return ""
}

// logDownload posts a ProcessLog or ExecutionArtifacts request and decodes
// the LogDownload loosely (statusCode stays a number or a string).
func (c *sim) logDownload(op string, body any) (status int, ld map[string]any, raw []byte) {
	c.t.Helper()
	rep := c.req("POST", "/"+op, body)
	if rep.status == http.StatusOK {
		if err := json.Unmarshal(rep.body, &ld); err != nil || ld["@type"] != "LogDownload" {
			c.t.Fatalf("%s answer %s: %v; want a LogDownload", op, rep.body, err)
		}
	}
	return rep.status, ld, rep.body
}

// downloadURL requests a download and returns its URL.
func (c *sim) downloadURL(op, execID, level string) string {
	c.t.Helper()
	body := map[string]string{"executionId": execID}
	if level != "" {
		body["logLevel"] = level
	}
	st, ld, raw := c.logDownload(op, body)
	u, _ := ld["url"].(string)
	if st != http.StatusOK || u == "" {
		c.t.Fatalf("%s: %d %s; want 200 with a url", op, st, raw)
	}
	return u
}

// unzip opens a ZIP and returns its entries' contents by name.
func unzip(t *testing.T, b []byte) map[string]string {
	t.Helper()
	zr, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatalf("opening the ZIP (%d bytes): %v", len(b), err)
	}
	out := map[string]string{}
	for _, f := range zr.File {
		rc, err := f.Open()
		if err != nil {
			t.Fatal(err)
		}
		data, err := io.ReadAll(rc)
		rc.Close()
		if err != nil {
			t.Fatalf("reading %s: %v", f.Name, err)
		}
		out[f.Name] = string(data)
	}
	return out
}

func TestProcessLogDownload(t *testing.T) {
	c := newSim(t, evidenceOpts())
	id := c.startExec(atomsim.ProcFails)
	c.s.Advance(31 * time.Second)

	st, ld, raw := c.logDownload("ProcessLog", map[string]string{"executionId": id, "logLevel": "ALL"})
	if st != 200 || ld["message"] != "Beginning download." || ld["statusCode"] != float64(202) {
		t.Fatalf("ProcessLog: %d %s; want 200 with statusCode the number 202", st, raw)
	}
	u := ld["url"].(string)
	if want := c.ts.URL + "/account/sim-account/api/download/ProcessLog-"; !strings.HasPrefix(u, want) {
		t.Fatalf("url %q; want prefix %q", u, want)
	}
	if rep := c.fetch(u); rep.status != http.StatusAccepted || len(rep.body) != 0 {
		t.Fatalf("download before DownloadDelay: %d %q; want 202, empty", rep.status, rep.body)
	}
	c.s.Advance(atomsim.DefaultDownloadDelay)
	rep := c.fetch(u)
	if rep.status != 200 || rep.header.Get("Content-Type") != "application/zip" {
		t.Fatalf("download when ready: %d %s %q", rep.status, rep.header.Get("Content-Type"), rep.body)
	}
	files := unzip(t, rep.body)
	log, ok := files["process_log_"+id+".log"]
	if len(files) != 1 || !ok {
		t.Fatalf("entries %v; want only process_log_%s.log", keys(files), id)
	}
	for _, want := range []string{id, "Always Fails", "status ERROR", atomsim.FailMessage, "2025-03-03T12:00:00.000Z", "FINEST"} {
		if !strings.Contains(log, want) {
			t.Errorf("log lacks %q:\n%s", want, log)
		}
	}
	if again := c.fetch(u); again.status != 200 || !bytes.Equal(again.body, rep.body) {
		t.Errorf("second download: %d, same bytes %v; want 200 and the same file", again.status, bytes.Equal(again.body, rep.body))
	}
	if rep := c.fetch(c.ts.URL + "/account/sim-account/api/download/ProcessLog-nope"); rep.status != http.StatusNotFound {
		t.Errorf("unknown download: %d; want 404", rep.status)
	}
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestProcessLogLevels(t *testing.T) {
	c := newSim(t, evidenceOpts())
	id := c.startExec(atomsim.ProcFails)
	c.s.Advance(31 * time.Second)
	get := func(level string) string {
		u := c.downloadURL("ProcessLog", id, level)
		c.s.Advance(atomsim.DefaultDownloadDelay)
		rep := c.fetch(u)
		if rep.status != 200 {
			t.Fatalf("level %q: download %d", level, rep.status)
		}
		return unzip(t, rep.body)["process_log_"+id+".log"]
	}
	severe := get("SEVERE")
	for _, l := range strings.Split(strings.TrimSpace(severe), "\n") {
		if !strings.Contains(l, "\tSEVERE\t") {
			t.Errorf("SEVERE log has %q", l)
		}
	}
	if !strings.Contains(severe, atomsim.FailMessage) {
		t.Errorf("SEVERE log lacks the failure:\n%s", severe)
	}
	if info := get("INFO"); strings.Contains(info, "\tCONFIG\t") || !strings.Contains(info, "\tINFO\t") {
		t.Errorf("INFO log:\n%s", info)
	}
	if all := get(""); !strings.Contains(all, "\tFINEST\t") {
		t.Errorf("absent logLevel (ALL) lacks FINEST:\n%s", all)
	}
	for _, bad := range []string{"info", "DEBUG", "ERROR"} {
		if st, _, raw := c.logDownload("ProcessLog", map[string]string{"executionId": id, "logLevel": bad}); st != 400 {
			t.Errorf("logLevel %q: %d %s; want 400", bad, st, raw)
		}
	}
	for _, unknown := range []string{"", "execution-00000000-0000-4000-8000-000000000000-2025.03.03"} {
		st, _, raw := c.logDownload("ProcessLog", map[string]string{"executionId": unknown})
		if st != 400 || !strings.Contains(string(raw), "Invalid execution id") {
			t.Errorf("executionId %q: %d %s; want 400 Invalid execution id", unknown, st, raw)
		}
	}
}

func TestExecutionArtifacts(t *testing.T) {
	c := newSim(t, evidenceOpts())
	id := c.startExec(atomsim.ProcOrders)
	c.s.Advance(31 * time.Second)
	st, ld, raw := c.logDownload("ExecutionArtifacts", map[string]string{"executionId": id})
	if st != 200 || ld["statusCode"] != "202" || ld["message"] != "Beginning download." {
		t.Fatalf("ExecutionArtifacts: %d %s; want 200 with statusCode the string \"202\"", st, raw)
	}
	u := ld["url"].(string)
	if !strings.Contains(u, "/account/sim-account/api/download/ExecutionArtifacts-") {
		t.Fatalf("url %q", u)
	}
	c.s.Advance(atomsim.DefaultDownloadDelay)
	rep := c.fetch(u)
	if rep.status != 200 {
		t.Fatalf("download: %d %s", rep.status, rep.body)
	}
	files := unzip(t, rep.body)
	if len(files) < 2 || files["documents/input-1.dat"] == "" {
		t.Fatalf("entries %v; want execution.json, documents/input-1.dat, …", keys(files))
	}
	var rec atomapi.ExecutionRecord
	if err := json.Unmarshal([]byte(files["execution.json"]), &rec); err != nil || rec.ExecutionID != id || rec.Status != atomapi.StatusComplete {
		t.Errorf("execution.json %s: %v; want the COMPLETE record of %s", files["execution.json"], err, id)
	}

	c.s.SetArtifactsDisabled(true)
	st, _, raw = c.logDownload("ExecutionArtifacts", map[string]string{"executionId": id})
	if st != http.StatusForbidden || !strings.Contains(string(raw), "Enable Download of Execution Artifacts and Worker Logs") {
		t.Errorf("disabled: %d %s; want 403 naming the account setting", st, raw)
	}
	if st, _, _ := c.logDownload("ProcessLog", map[string]string{"executionId": id}); st != 200 {
		t.Errorf("ProcessLog with artifacts disabled: %d; want 200", st)
	}
}

func TestDownloadFaults(t *testing.T) {
	setup := func(t *testing.T) (*sim, string) {
		c := newSim(t, evidenceOpts())
		id := c.startExec(atomsim.ProcFails)
		c.s.Advance(31 * time.Second)
		return c, id
	}
	t.Run("expiry", func(t *testing.T) {
		c, id := setup(t)
		u := c.downloadURL("ProcessLog", id, "ALL")
		c.s.Advance(atomsim.DefaultDownloadTTL - time.Second)
		if st := c.fetch(u).status; st != 200 {
			t.Fatalf("just before DownloadTTL: %d; want 200", st)
		}
		c.s.Advance(time.Second)
		if st := c.fetch(u).status; st != http.StatusNotFound {
			t.Errorf("at DownloadTTL: %d; want 404", st)
		}
	})
	t.Run("never-ready", func(t *testing.T) {
		c, id := setup(t)
		c.s.SetDownloadFault(atomsim.DownloadNeverReady)
		u := c.downloadURL("ProcessLog", id, "ALL")
		for _, d := range []time.Duration{0, atomsim.DefaultDownloadDelay, 2 * atomsim.DefaultDownloadTTL} {
			c.s.Advance(d)
			if rep := c.fetch(u); rep.status != http.StatusAccepted || len(rep.body) != 0 {
				t.Errorf("after %v more: %d %q; want 202", d, rep.status, rep.body)
			}
		}
		c.s.SetDownloadFault(atomsim.DownloadNormal)
		if st := c.fetch(u).status; st != http.StatusNotFound {
			t.Errorf("fault off, past the TTL: %d; want 404", st)
		}
	})
	t.Run("expired", func(t *testing.T) {
		c, id := setup(t)
		c.s.SetDownloadFault(atomsim.DownloadExpired)
		u := c.downloadURL("ProcessLog", id, "ALL")
		for range 2 {
			if st := c.fetch(u).status; st != http.StatusNotFound {
				t.Errorf("expired: %d; want 404", st)
			}
			c.s.Advance(atomsim.DefaultDownloadDelay)
		}
	})
	t.Run("truncated", func(t *testing.T) {
		c, id := setup(t)
		c.s.SetDownloadFault(atomsim.DownloadTruncated)
		u := c.downloadURL("ProcessLog", id, "ALL")
		c.s.Advance(atomsim.DefaultDownloadDelay)
		rep := c.fetch(u)
		if rep.status != 200 || len(rep.body) == 0 {
			t.Fatalf("truncated: %d, %d bytes; want 200 with a body", rep.status, len(rep.body))
		}
		if _, err := zip.NewReader(bytes.NewReader(rep.body), int64(len(rep.body))); err == nil {
			t.Error("archive/zip opened the truncated ZIP")
		}
		c.s.SetDownloadFault(atomsim.DownloadNormal)
		if full := c.fetch(u); full.status != 200 || len(full.body) != 2*len(rep.body) && len(full.body) != 2*len(rep.body)+1 {
			t.Errorf("full download %d bytes; the truncated one %d", len(full.body), len(rep.body))
		}
	})
	t.Run("oversize", func(t *testing.T) {
		c, id := setup(t)
		c.s.SetDownloadFault(atomsim.DownloadOversize)
		c.s.SetDownloadOversize(3 << 20)
		u := c.downloadURL("ExecutionArtifacts", id, "")
		c.s.Advance(atomsim.DefaultDownloadDelay)
		rep := c.fetch(u)
		if rep.status != 200 || len(rep.body) < 3<<20 {
			t.Fatalf("oversize: %d, %d bytes; want 200 with more than 3 MiB", rep.status, len(rep.body))
		}
		files := unzip(t, rep.body)
		if len(files["padding.bin"]) != 3<<20 || files["execution.json"] == "" {
			t.Errorf("entries %v, padding %d bytes; want execution.json and 3 MiB of padding", keys(files), len(files["padding.bin"]))
		}
	})
	t.Run("runtime-unavailable", func(t *testing.T) {
		c, id := setup(t)
		c.s.SetDownloadFault(atomsim.DownloadRuntimeUnavailable)
		for _, op := range []string{"ProcessLog", "ExecutionArtifacts"} {
			st, ld, raw := c.logDownload(op, map[string]string{"executionId": id})
			if _, hasURL := ld["url"]; st != 200 || ld["statusCode"] != float64(504) || hasURL || ld["message"] != "Runtime is unavailable." {
				t.Errorf("%s: %d %s; want 200, statusCode 504, no url", op, st, raw)
			}
		}
	})
	t.Run("foreign-host", func(t *testing.T) {
		c, id := setup(t)
		var hits atomic.Int64
		other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
		defer other.Close()
		host := strings.TrimPrefix(other.URL, "http://")
		c.s.SetDownloadHost(host)
		u := c.downloadURL("ProcessLog", id, "ALL")
		pu, err := url.Parse(u)
		if err != nil || pu.Host != host || !strings.HasPrefix(pu.Path, "/account/sim-account/api/download/ProcessLog-") {
			t.Fatalf("url %q: %v; want host %s", u, err, host)
		}
		c.s.Advance(atomsim.DefaultDownloadDelay)
		if st := c.fetch(c.ts.URL + pu.Path).status; st != 200 {
			t.Errorf("the same path on the simulator: %d; want 200", st)
		}
		if n := hits.Load(); n != 0 {
			t.Errorf("the foreign host got %d requests", n)
		}
	})
}

func TestDownloadAuthAndLimits(t *testing.T) {
	o := evidenceOpts()
	o.Rate = 3
	c := newSim(t, o)
	id := c.startExec(atomsim.ProcFails)
	c.s.Advance(31 * time.Second)
	u := c.downloadURL("ProcessLog", id, "ALL")
	c.s.Advance(atomsim.DefaultDownloadDelay)

	if rep := c.do("GET", u, false, "Accept", "application/zip"); rep.status != http.StatusUnauthorized {
		t.Errorf("without credentials: %d; want 401", rep.status)
	}
	other := strings.Replace(u, "/account/sim-account/", "/account/other-account/", 1)
	if rep := c.fetch(other); rep.status != http.StatusForbidden {
		t.Errorf("another account: %d; want 403", rep.status)
	}
	used, _ := c.s.Usage()
	var ok, refused int
	for range 4 {
		switch st := c.fetch(u).status; st {
		case 200:
			ok++
		case http.StatusServiceUnavailable:
			refused++
		default:
			t.Fatalf("download: %d", st)
		}
	}
	if ok != 3 || refused != 1 {
		t.Errorf("4 downloads in one instant at rate 3: %d ok, %d refused; want 3, 1", ok, refused)
	}
	if now, _ := c.s.Usage(); now != used+3 {
		t.Errorf("usage %d → %d; want +3 (refusals not counted)", used, now)
	}
	var logged int
	for _, r := range c.s.Requests() {
		if strings.Contains(r.Path, "/api/download/") {
			logged++
		}
	}
	if logged != 6 {
		t.Errorf("Requests() logs %d downloads; want 6", logged)
	}
}

func TestCancelExecution(t *testing.T) {
	c := newSim(t, evidenceOpts())
	partner := c.ts.URL + atomsim.PartnerPathPrefix + "sim-account/cancelExecution/"
	platform := c.base + "/cancelExecution/"
	record := func(id string) atomapi.ExecutionRecord {
		for _, r := range c.s.Data().ExecutionRecords {
			if r.ExecutionID == id {
				return r
			}
		}
		t.Fatalf("no record of %s", id)
		return atomapi.ExecutionRecord{}
	}

	id := c.startExec(atomsim.ProcHangs)
	c.s.Advance(24 * time.Hour)
	if rec := record(id); rec.Status != atomapi.StatusInProcess || rec.ProcessName != "Hangs Forever" {
		t.Fatalf("proc-hangs after a day: %+v; want INPROCESS", rec)
	}
	if rep := c.do("POST", platform+id, true); rep.status != http.StatusNotFound {
		t.Errorf("platform path by default: %d %s; want 404", rep.status, rep.body)
	}
	if rep := c.do("POST", partner+id, false); rep.status != http.StatusUnauthorized {
		t.Errorf("partner path without credentials: %d; want 401", rep.status)
	}
	if rep := c.do("POST", strings.Replace(partner, "/sim-account/", "/other/", 1)+id, true); rep.status != http.StatusForbidden {
		t.Errorf("partner path, other account: %d; want 403", rep.status)
	}
	rep := c.do("POST", partner+id, true)
	if rep.status != http.StatusAccepted || strings.TrimSpace(string(rep.body)) != `{"message":"Operation completed successfully."}` {
		t.Fatalf("cancel: %d %s; want 202", rep.status, rep.body)
	}
	rec := record(id)
	if rec.Status != atomapi.StatusAborted || rec.Message != atomsim.CancelMessage || rec.RecordedDate != atomapi.FormatTime(t0.Add(24*time.Hour)) {
		t.Errorf("after cancel: %+v; want ABORTED now with the cancel message", rec)
	}
	if rep := c.do("POST", partner+id, true); rep.status != 400 || !strings.Contains(string(rep.body), "not running") {
		t.Errorf("second cancel: %d %s; want 400 not running", rep.status, rep.body)
	}
	if rep := c.do("POST", partner+"execution-unknown", true); rep.status != 400 {
		t.Errorf("unknown id: %d; want 400", rep.status)
	}
	done := c.startExec(atomsim.ProcOrders)
	c.s.Advance(31 * time.Second)
	if rep := c.do("POST", partner+done, true); rep.status != 400 {
		t.Errorf("cancel of an ended execution: %d; want 400", rep.status)
	}

	// The log of the cancelled execution says so.
	u := c.downloadURL("ProcessLog", id, "WARNING")
	c.s.Advance(atomsim.DefaultDownloadDelay)
	if log := unzip(t, c.fetch(u).body)["process_log_"+id+".log"]; !strings.Contains(log, "status ABORTED") || !strings.Contains(log, atomsim.CancelMessage) {
		t.Errorf("log of the cancelled execution:\n%s", log)
	}

	c.s.SetCancelOnPlatform(true)
	id2 := c.startExec(atomsim.ProcHangs)
	if rep := c.do("POST", platform+id2, true); rep.status != http.StatusAccepted {
		t.Errorf("platform path with SetCancelOnPlatform: %d %s; want 202", rep.status, rep.body)
	}
	c.s.SetCancelUnavailable(true)
	id3 := c.startExec(atomsim.ProcHangs)
	for _, p := range []string{platform, partner} {
		if rep := c.do("POST", p+id3, true); rep.status != http.StatusNotFound {
			t.Errorf("%s with SetCancelUnavailable: %d; want 404", p, rep.status)
		}
	}
	if got := c.s.Cancels(); len(got) != 2 || got[0] != id || got[1] != id2 {
		t.Errorf("Cancels() = %v; want [%s %s]", got, id, id2)
	}
	var partnerLogged int
	for _, r := range c.s.Requests() {
		if strings.HasPrefix(r.Path, atomsim.PartnerPathPrefix) {
			partnerLogged++
		}
	}
	if partnerLogged != 7 {
		t.Errorf("Requests() logs %d partner requests; want 7", partnerLogged)
	}
	if ps := c.s.Data().Processes; ps[len(ps)-1].ID != atomsim.ProcHangs {
		t.Errorf("last seeded process %s; want %s appended", ps[len(ps)-1].ID, atomsim.ProcHangs)
	}
}

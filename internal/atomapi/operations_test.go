package atomapi_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
)

// opCase is one client operation: what it must send and a good answer.
type opCase struct {
	name   string
	call   func(ctx context.Context, c *atomapi.Client) (any, error)
	method string
	path   string // escaped, below the account prefix
	query  string
	ctype  string // "" = no body and no Content-Type
	body   string // the JSON (or raw text) body it must send
	op     string // Call.Operation
	object string
	safe   bool
	// prelude answers the requests that precede the one under test (the first
	// page before a queryMore); it reports whether it answered.
	prelude func(w http.ResponseWriter, r *http.Request) bool
	reply   string // a good 200 answer
	check   func(t *testing.T, got any)
	// ignoresBody: the answer's body is not read (executeProcess).
	ignoresBody bool
	// emptyOK: an empty 200 body is a valid answer (deployProcess).
	emptyOK    bool
	platformID string // Result.PlatformID recorded for the good answer
}

const queryMoreToken = "AbC+dEf/gHi==/+x%2B&y=z"

func opCases() []opCase {
	auditPage := `{"@type":"QueryResult","numberOfResults":2,"result":[` +
		`{"@type":"AuditLog","documentId":"d1","date":"2026-01-01T01:00:00Z","type":"as.process.manual_execution"},` +
		`{"@type":"AuditLog","documentId":"d2","date":"2026-01-01T02:00:00Z","type":"as.process.manual_execution"}]}`
	auditFilter := atomapi.QueryConfig{QueryFilter: atomapi.QueryFilter{Expression: atomapi.And(
		atomapi.Eq("type", "as.process.manual_execution"),
		atomapi.Between("date", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z"))}}
	auditFilterJSON := `{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[` +
		`{"operator":"EQUALS","property":"type","argument":["as.process.manual_execution"]},` +
		`{"operator":"BETWEEN","property":"date","argument":["2026-01-01T00:00:00Z","2026-01-02T00:00:00Z"]}]}}}`
	wantAudit := func(t *testing.T, got any) {
		t.Helper()
		logs := got.([]atomapi.AuditLog)
		if len(logs) != 2 || logs[0].DocumentID != "d1" || logs[1].DocumentID != "d2" {
			t.Errorf("records = %+v; want d1, d2", logs)
		}
	}
	return []opCase{
		{
			name: "Get",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				var a atomapi.AuditLog
				err := c.Get(ctx, "AuditLog", "doc/1 x", &a)
				return a, err
			},
			method: "GET", path: "/AuditLog/doc%2F1%20x", op: "AuditLog.get", object: "AuditLog", safe: true,
			reply: `{"@type":"AuditLog","documentId":"doc/1 x","date":"2026-01-01T00:00:00Z","level":"INFO"}`,
			check: func(t *testing.T, got any) {
				if a := got.(atomapi.AuditLog); a.DocumentID != "doc/1 x" || a.Level != "INFO" {
					t.Errorf("Get = %+v; want documentId doc/1 x, level INFO", a)
				}
			},
		},
		{
			name: "Query",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return atomapi.QueryAll[atomapi.AuditLog](ctx, c, "AuditLog", auditFilter)
			},
			method: "POST", path: "/AuditLog/query", ctype: "application/json", body: auditFilterJSON,
			op: "AuditLog.query", object: "AuditLog", safe: true, reply: auditPage, check: wantAudit,
		},
		{
			name: "QueryMore",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return atomapi.QueryAll[atomapi.AuditLog](ctx, c, "AuditLog", auditFilter)
			},
			prelude: func(w http.ResponseWriter, r *http.Request) bool {
				if !strings.HasSuffix(r.URL.Path, "/AuditLog/query") {
					return false
				}
				fmt.Fprintf(w, `{"@type":"QueryResult","numberOfResults":3,"queryToken":%q,"result":[`+
					`{"documentId":"d0","date":"2026-01-01T00:30:00Z"}]}`, queryMoreToken)
				return true
			},
			method: "POST", path: "/AuditLog/queryMore", ctype: "text/plain", body: queryMoreToken,
			op: "AuditLog.queryMore", object: "AuditLog", safe: true, reply: auditPage,
			check: func(t *testing.T, got any) {
				logs := got.([]atomapi.AuditLog)
				if len(logs) != 3 || logs[0].DocumentID != "d0" || logs[2].DocumentID != "d2" {
					t.Errorf("records = %+v; want d0, d1, d2", logs)
				}
			},
		},
		{
			name: "CreateExecutionRequest",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.CreateExecutionRequest(ctx, atomapi.ExecutionRequest{AtomID: "atom-test", ProcessID: "proc-orders",
					DynamicProcessProperties: &atomapi.DynamicProcessProperties{
						DynamicProcessProperty: []atomapi.DynamicProcessProperty{{Name: "k", Value: "v"}}}})
			},
			method: "POST", path: "/ExecutionRequest", ctype: "application/json",
			body: `{"@type":"ExecutionRequest","atomId":"atom-test","processId":"proc-orders",` +
				`"DynamicProcessProperties":{"DynamicProcessProperty":[{"name":"k","value":"v"}]}}`,
			op: "ExecutionRequest.create", object: "ExecutionRequest", safe: false,
			reply: `{"@type":"ExecutionRequest","atomId":"atom-test","processId":"proc-orders",` +
				`"requestId":"executionrecord-42","recordUrl":"https://x/ExecutionRecord/async/executionrecord-42"}`,
			platformID: "executionrecord-42",
			check: func(t *testing.T, got any) {
				if r := got.(atomapi.ExecutionRequest); r.RequestID != "executionrecord-42" {
					t.Errorf("CreateExecutionRequest().RequestID = %q; want executionrecord-42", r.RequestID)
				}
			},
		},
		{
			name: "ExecutionRecordAsync",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				rec, pending, err := c.ExecutionRecordAsync(ctx, "executionrecord-42")
				if err == nil && pending {
					return nil, errors.New("pending; want a record")
				}
				return rec, err
			},
			method: "GET", path: "/ExecutionRecord/async/executionrecord-42",
			op: "ExecutionRecord.async", object: "ExecutionRecord", safe: true,
			reply: `{"@type":"AsyncOperationResult","responseStatusCode":200,"numberOfResults":1,"result":[` +
				`{"@type":"ExecutionRecord","executionId":"execution-1-2026.01.01","status":"COMPLETE","executionDuration":["Long",3832]}]}`,
			check: func(t *testing.T, got any) {
				if r := got.(atomapi.ExecutionRecord); r.Status != "COMPLETE" || r.ExecutionDuration != 3832 {
					t.Errorf("ExecutionRecordAsync = %+v; want COMPLETE, duration 3832", r)
				}
			},
		},
		{
			name: "QueryExecutionRecords",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.QueryExecutionRecords(ctx, atomapi.And(atomapi.Eq("processId", "proc-orders")),
					&atomapi.QuerySort{SortField: []atomapi.SortField{{FieldName: "executionTime", SortOrder: "DESC"}}})
			},
			method: "POST", path: "/ExecutionRecord/query", ctype: "application/json",
			body: `{"QueryFilter":{"expression":{"operator":"EQUALS","property":"processId","argument":["proc-orders"]}},` +
				`"QuerySort":{"sortField":[{"fieldName":"executionTime","sortOrder":"DESC"}]}}`,
			op: "ExecutionRecord.query", object: "ExecutionRecord", safe: true,
			reply: `{"@type":"QueryResult","numberOfResults":1,"result":[{"executionId":"e1","status":"ERROR","inboundDocumentSize":["Long",7]}]}`,
			check: func(t *testing.T, got any) {
				if r := got.([]atomapi.ExecutionRecord); len(r) != 1 || r[0].InboundDocumentSize != 7 {
					t.Errorf("QueryExecutionRecords = %+v; want one record of size 7", r)
				}
			},
		},
		{
			name: "ExecuteProcess",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return nil, c.ExecuteProcess(ctx, atomapi.ExecuteProcessRequest{AtomID: "atom-test", ProcessID: "proc-orders",
					ProcessProperties: &atomapi.ProcessProperties{Type: "ProcessProperties",
						ProcessProperty: []atomapi.ProcessProperty{{Name: "priority", Value: "medium"}}}})
			},
			method: "POST", path: "/executeProcess", ctype: "application/json",
			body: `{"ProcessProperties":{"@type":"ProcessProperties","ProcessProperty":[{"@type":"","Name":"priority","Value":"medium"}]},` +
				`"processId":"proc-orders","atomId":"atom-test"}`,
			op: "executeProcess", object: "executeProcess", safe: false, reply: "", ignoresBody: true,
			check: func(t *testing.T, got any) {},
		},
		{
			name: "QueryPackagedComponents",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.QueryPackagedComponents(ctx, atomapi.Or(atomapi.Eq("componentId", "proc-orders"), atomapi.IsNull("branchName")))
			},
			method: "POST", path: "/PackagedComponent/query", ctype: "application/json",
			body: `{"QueryFilter":{"expression":{"operator":"or","nestedExpression":[` +
				`{"operator":"EQUALS","property":"componentId","argument":["proc-orders"]},{"operator":"IS_NULL","property":"branchName"}]}}}`,
			op: "PackagedComponent.query", object: "PackagedComponent", safe: true,
			reply: `{"numberOfResults":1,"result":[{"packageId":"pkg-orders-3","packageVersion":"3.0","componentVersion":"2.0"}]}`,
			check: func(t *testing.T, got any) {
				if p := got.([]atomapi.PackagedComponent); len(p) != 1 || p[0].ComponentVersion != "2.0" {
					t.Errorf("QueryPackagedComponents = %+v; want componentVersion 2.0", p)
				}
			},
		},
		{
			name: "CreatePackagedComponent",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.CreatePackagedComponent(ctx, atomapi.PackagedComponent{ComponentID: "proc-orders", PackageVersion: "3.0", Notes: "n"})
			},
			method: "POST", path: "/PackagedComponent", ctype: "application/json",
			body: `{"componentId":"proc-orders","packageVersion":"3.0","notes":"n"}`,
			op:   "PackagedComponent.create", object: "PackagedComponent", safe: false,
			reply: `{"@type":"PackagedComponent","packageId":"pkg-1","packageVersion":"3.0","componentId":"proc-orders","componentVersion":2}`,
			check: func(t *testing.T, got any) {
				if p := got.(atomapi.PackagedComponent); p.PackageID != "pkg-1" || p.ComponentVersion != "2" {
					t.Errorf("CreatePackagedComponent = %+v; want pkg-1, componentVersion 2", p)
				}
			},
		},
		{
			name: "QueryDeployedPackages",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.QueryDeployedPackages(ctx, atomapi.And(atomapi.Eq("environmentId", "env-test"), atomapi.Eq("active", "true")))
			},
			method: "POST", path: "/DeployedPackage/query", ctype: "application/json",
			body: `{"QueryFilter":{"expression":{"operator":"and","nestedExpression":[` +
				`{"operator":"EQUALS","property":"environmentId","argument":["env-test"]},{"operator":"EQUALS","property":"active","argument":["true"]}]}}}`,
			op: "DeployedPackage.query", object: "DeployedPackage", safe: true,
			reply: `{"numberOfResults":1,"result":[{"deploymentId":"dp-1","packageId":"pkg-orders-3","active":true,"componentVersion":3}]}`,
			check: func(t *testing.T, got any) {
				if d := got.([]atomapi.DeployedPackage); len(d) != 1 || !d[0].Active || d[0].ComponentVersion != "3" {
					t.Errorf("QueryDeployedPackages = %+v; want one active, componentVersion 3", d)
				}
			},
		},
		{
			name: "CreateDeployedPackage",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.CreateDeployedPackage(ctx, atomapi.DeployedPackage{EnvironmentID: "env-prod", PackageID: "pkg-orders-3",
					Notes: "n", ListenerStatus: "RUNNING", Active: true, DeployedBy: "me", Version: 9, DeploymentID: "x"})
			},
			method: "POST", path: "/DeployedPackage", ctype: "application/json",
			body: `{"environmentId":"env-prod","packageId":"pkg-orders-3","notes":"n","listenerStatus":"RUNNING"}`,
			op:   "DeployedPackage.create", object: "DeployedPackage", safe: false,
			reply:      `{"@type":"DeployedPackage","deploymentId":"dp-9","version":4,"packageId":"pkg-orders-3","environmentId":"env-prod","active":true}`,
			platformID: "dp-9",
			check: func(t *testing.T, got any) {
				if d := got.(atomapi.DeployedPackage); d.DeploymentID != "dp-9" || d.Version != 4 {
					t.Errorf("CreateDeployedPackage = %+v; want dp-9 version 4", d)
				}
			},
		},
		{
			name: "QueryDeployments",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.QueryDeployments(ctx, nil)
			},
			method: "POST", path: "/Deployment/query", ctype: "application/json", body: `{"QueryFilter":{}}`,
			op: "Deployment.query", object: "Deployment", safe: true,
			reply: `{"numberOfResults":1,"result":[{"id":"dep-orders-test","current":true}]}`,
			check: func(t *testing.T, got any) {
				if d := got.([]atomapi.Deployment); len(d) != 1 || d[0].ID != "dep-orders-test" {
					t.Errorf("QueryDeployments = %+v; want dep-orders-test", d)
				}
			},
		},
		{
			name: "GetDeployment",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.GetDeployment(ctx, "dep-orders-test")
			},
			method: "GET", path: "/Deployment/dep-orders-test", op: "Deployment.get", object: "Deployment", safe: true,
			reply: `{"@type":"Deployment","id":"dep-orders-test","digest":"d1g3st","current":true}`,
			check: func(t *testing.T, got any) {
				if d := got.(atomapi.Deployment); d.Digest != "d1g3st" {
					t.Errorf("GetDeployment().Digest = %q; want d1g3st", d.Digest)
				}
			},
		},
		{
			name: "DeployProcess",
			call: func(ctx context.Context, c *atomapi.Client) (any, error) {
				return c.DeployProcess(ctx, "dep-orders-test", "env-prod", "ab/c+d=", "RUNNING")
			},
			method: "POST", path: "/deployProcess/dep-orders-test/env-prod/ab%2Fc+d=", query: "listenerStatus=RUNNING",
			op: "deployProcess", object: "deployProcess", safe: false, emptyOK: true,
			reply:      `{"@type":"Deployment","id":"dep-new","environmentId":"env-prod","current":true}`,
			platformID: "dep-new",
			check: func(t *testing.T, got any) {
				if d := got.(atomapi.Deployment); d.ID != "dep-new" {
					t.Errorf("DeployProcess().ID = %q; want dep-new", d.ID)
				}
			},
		},
	}
}

// assertRequest checks what the client sent for oc, and that the attempt's
// ledger row was begun before the request arrived.
func assertRequest(t *testing.T, oc opCase, rec *recorder, r *http.Request, body []byte) {
	t.Helper()
	if r.Method != oc.method {
		t.Errorf("method = %s; want %s", r.Method, oc.method)
	}
	if got, want := r.URL.EscapedPath(), testPrefix+oc.path; got != want {
		t.Errorf("path = %s; want %s", got, want)
	}
	if r.URL.RawQuery != oc.query {
		t.Errorf("query = %q; want %q", r.URL.RawQuery, oc.query)
	}
	if got := r.Header.Get("Accept"); got != "application/json" {
		t.Errorf("Accept = %q; want application/json", got)
	}
	if got := r.Header.Get("Content-Type"); got != oc.ctype {
		t.Errorf("Content-Type = %q; want %q", got, oc.ctype)
	}
	if u, p, ok := r.BasicAuth(); !ok || u != testUser || p != testPassword {
		t.Errorf("BasicAuth = %q, %q, %v; want %q and the password", u, p, ok, testUser)
	}
	id := r.Header.Get(atomapi.RequestIDHeader)
	if id == "" || !rec.hasBegun(id) {
		t.Errorf("request id %q: Begin not called before the request reached the server", id)
	}
	switch {
	case oc.ctype == "":
		if len(body) != 0 {
			t.Errorf("body = %q; want none", body)
		}
	case oc.ctype == "text/plain":
		if string(body) != oc.body {
			t.Errorf("body = %q; want the raw token %q", body, oc.body)
		}
	default:
		var got, want any
		if err := json.Unmarshal(body, &got); err != nil {
			t.Errorf("body %q is not JSON: %v", body, err)
		}
		if err := json.Unmarshal([]byte(oc.body), &want); err != nil {
			t.Fatalf("bad want body: %v", err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("body = %s; want %s", body, oc.body)
		}
	}
}

func TestOperationsRequestAndAnswer(t *testing.T) {
	for _, oc := range opCases() {
		t.Run(oc.name, func(t *testing.T) {
			var h *harness
			var hits atomic.Int64
			h = newHarness(t, func(w http.ResponseWriter, r *http.Request) {
				if oc.prelude != nil && oc.prelude(w, r) {
					return
				}
				hits.Add(1)
				body, _ := io.ReadAll(r.Body)
				assertRequest(t, oc, h.rec, r, body)
				io.WriteString(w, oc.reply)
			})
			ctx := atomapi.WithCallInfo(t.Context(), atomapi.CallInfo{RunID: 7, Job: "job-a", Priority: runnerd.PriorityHigh})
			got, err := oc.call(ctx, h.c)
			if err != nil {
				t.Fatalf("%s: %v", oc.name, err)
			}
			oc.check(t, got)
			if hits.Load() != 1 {
				t.Errorf("requests = %d; want 1", hits.Load())
			}
			h.rec.checkBalanced(t)
			calls, results := h.rec.calls()
			last, res := calls[len(calls)-1], results[len(results)-1]
			want := atomapi.Call{CallInfo: atomapi.CallInfo{RunID: 7, Job: "job-a", Priority: runnerd.PriorityHigh},
				RequestID: last.RequestID, Operation: oc.op, Object: oc.object, Method: oc.method, Path: oc.path,
				Safe: oc.safe, Attempt: 1, StartedAt: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC), LedgerID: last.LedgerID}
			if last != want {
				t.Errorf("Call = %+v; want %+v", last, want)
			}
			if res.Status != 200 || !res.Sent || res.Err != nil || res.PlatformID != oc.platformID || res.Bytes != int64(len(oc.reply)) {
				t.Errorf("Result = %+v; want status 200, sent, no error, PlatformID %q, Bytes %d", res, oc.platformID, len(oc.reply))
			}
		})
	}
}

// respCase is a canned answer and what every operation must make of it.
type respCase struct {
	name  string
	mod   func(*atomapi.Config)
	serve func(w http.ResponseWriter, r *http.Request, other string)
	want  func(oc opCase) expect
}

type expect struct {
	ok       bool    // no error
	is       []error // sentinels err must match
	isNot    []error // sentinels it must not match
	status   int     // *APIError status or *DecodeError status; 0 = neither
	message  string  // APIError.Message
	attempts int
	sent     bool // TransportError.Sent, when errors.Is(err, ErrTransport)
	check    func(t *testing.T, err error, h *harness)
}

var allSentinels = []error{atomapi.ErrRateLimited, atomapi.ErrAuth, atomapi.ErrNotFound, atomapi.ErrBadRequest,
	atomapi.ErrServer, atomapi.ErrDuplicateDeploy, atomapi.ErrTransport, atomapi.ErrDecode}

func attemptsIf(safe bool) int {
	if safe {
		return 3
	}
	return 1
}

func respCases() []respCase {
	jsonErr := func(status int, body string) func(w http.ResponseWriter, r *http.Request, _ string) {
		return func(w http.ResponseWriter, r *http.Request, _ string) {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(status)
			io.WriteString(w, body)
		}
	}
	ok200 := func(body string) func(w http.ResponseWriter, r *http.Request, _ string) {
		return func(w http.ResponseWriter, r *http.Request, _ string) { io.WriteString(w, body) }
	}
	decodeFail := func(oc opCase) expect {
		if oc.ignoresBody {
			return expect{ok: true, attempts: 1}
		}
		return expect{is: []error{atomapi.ErrDecode}, status: 200, attempts: 1}
	}
	htmlPage := "<html><head><title>503 Service Temporarily Unavailable</title></head><body><h1>503</h1></body></html>"
	return []respCase{
		{
			name:  "400 @type Error",
			serve: jsonErr(400, `{"@type":"Error","message":"bad filter: no such property"}`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrBadRequest}, isNot: []error{atomapi.ErrDuplicateDeploy},
					status: 400, message: "bad filter: no such property", attempts: 1}
			},
		},
		{
			name:  "400 duplicate",
			serve: jsonErr(400, `{"error":{"message":"Deployment of this version is a duplicate."}}`),
			want: func(oc opCase) expect {
				e := expect{is: []error{atomapi.ErrBadRequest}, status: 400,
					message: "Deployment of this version is a duplicate.", attempts: 1}
				if oc.op == "DeployedPackage.create" {
					e.is = append(e.is, atomapi.ErrDuplicateDeploy)
				} else {
					e.isNot = []error{atomapi.ErrDuplicateDeploy}
				}
				return e
			},
		},
		{
			name:  "401",
			serve: jsonErr(401, `{"@type":"Error","message":"Unauthorized"}`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrAuth}, status: 401, message: "Unauthorized", attempts: 1}
			},
		},
		{
			name: "403 XML UserMessage",
			serve: jsonErr(403, `<UserMessage id="error.user.login" type="error">`+
				`<Data>Incorrect user name and password combination.</Data></UserMessage>`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrAuth}, status: 403,
					message: "Incorrect user name and password combination.", attempts: 1}
			},
		},
		{
			name: "404 text",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				http.Error(w, "no such endpoint", 404)
			},
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrNotFound}, status: 404, attempts: 1}
			},
		},
		{
			name: "429 Retry-After",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(429)
			},
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrRateLimited}, isNot: []error{atomapi.ErrServer}, status: 429, attempts: 3,
					check: func(t *testing.T, err error, h *harness) {
						if s := h.slept(); !reflect.DeepEqual(s, []time.Duration{2 * time.Second, 2 * time.Second}) {
							t.Errorf("sleeps = %v; want [2s 2s] (Retry-After)", s)
						}
						if ae, _ := errorsAs[*atomapi.APIError](err); ae == nil || ae.RetryAfter != 2*time.Second {
							t.Errorf("APIError.RetryAfter = %v; want 2s", ae)
						}
					}}
			},
		},
		{
			name:  "500",
			serve: jsonErr(500, `{"@type":"Error","message":"internal"}`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrServer}, status: 500, attempts: attemptsIf(oc.safe)}
			},
		},
		{
			name:  "502",
			serve: jsonErr(502, `bad gateway`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrServer}, status: 502, attempts: attemptsIf(oc.safe)}
			},
		},
		{
			name:  "503 JSON",
			serve: jsonErr(503, `{"@type":"Error","message":"Rate limit exceeded"}`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrRateLimited}, isNot: []error{atomapi.ErrServer}, status: 503,
					message: "Rate limit exceeded", attempts: 3,
					check: func(t *testing.T, err error, h *harness) {
						for i, d := range h.slept() {
							if ceil := 100 * time.Millisecond << i; d < 0 || d > ceil {
								t.Errorf("sleep %d = %v; want within [0, %v] (full jitter)", i, d, ceil)
							}
						}
					}}
			},
		},
		{
			name: "503 HTML",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(503)
				io.WriteString(w, htmlPage)
			},
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrRateLimited}, status: 503, attempts: 3,
					check: func(t *testing.T, err error, h *harness) {
						if ae, _ := errorsAs[*atomapi.APIError](err); ae == nil || ae.Excerpt != htmlPage {
							t.Errorf("APIError = %#v; want the HTML page as Excerpt", ae)
						}
					}}
			},
		},
		{
			name: "503 oversized HTML",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				w.WriteHeader(503)
				io.WriteString(w, "<html>"+strings.Repeat("é", 1<<20))
			},
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrRateLimited}, status: 503, attempts: 3,
					check: func(t *testing.T, err error, h *harness) {
						ae, _ := errorsAs[*atomapi.APIError](err)
						if ae == nil || len(ae.Excerpt) > 2048+3 || !strings.HasPrefix(ae.Excerpt, "<html>é") {
							t.Errorf("Excerpt = %d bytes; want at most 2 KiB of the page", len(ae.Excerpt))
						}
						_, results := h.rec.calls()
						for _, r := range results {
							if r.Bytes > 64<<10 {
								t.Errorf("Result.Bytes = %d; want at most 64 KiB read of an error body", r.Bytes)
							}
						}
					}}
			},
		},
		{
			name:  "504",
			serve: jsonErr(504, `{"error":{"message":"gateway timeout"}}`),
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrServer}, status: 504, message: "gateway timeout", attempts: attemptsIf(oc.safe)}
			},
		},
		{name: "200 malformed JSON", serve: ok200(`{"result": [}`), want: decodeFail},
		{name: "200 non-JSON", serve: ok200(`<html>hello</html>`), want: decodeFail},
		{name: "200 truncated JSON", serve: ok200(`{"@type":"QueryResult","result":[{"documentId":"a"`), want: decodeFail},
		{
			name: "200 truncated body",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				w.Header().Set("Content-Length", "1000")
				io.WriteString(w, `{"@type":"QueryResult",`)
			},
			want: decodeFail,
		},
		{
			name:  "200 empty",
			serve: ok200(""),
			want: func(oc opCase) expect {
				if oc.emptyOK {
					return expect{ok: true, attempts: 1}
				}
				return decodeFail(oc)
			},
		},
		{
			name: "200 oversized chunked",
			mod:  func(c *atomapi.Config) { c.MaxBody = 1024 },
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				io.WriteString(w, `{"result":[`+strings.Repeat(`{"a":"xxxxxxxxxxxxxxxx"},`, 400)+`{}]}`)
			},
			want: decodeFail,
		},
		{
			name: "200 oversized Content-Length",
			mod:  func(c *atomapi.Config) { c.MaxBody = 1024 },
			serve: func(w http.ResponseWriter, r *http.Request, _ string) {
				body := `{"result":[` + strings.Repeat(`{"a":"xxxxxxxxxxxxxxxx"},`, 400) + `{}]}`
				w.Header().Set("Content-Length", fmt.Sprint(len(body)))
				io.WriteString(w, body)
			},
			want: decodeFail,
		},
		{
			name: "redirect to another host",
			serve: func(w http.ResponseWriter, r *http.Request, other string) {
				http.Redirect(w, r, other+r.URL.Path, http.StatusTemporaryRedirect)
			},
			want: func(oc opCase) expect {
				return expect{status: 307, attempts: 1, isNot: allSentinels}
			},
		},
		{
			name:  "connection reset",
			serve: func(w http.ResponseWriter, r *http.Request, _ string) { hijackClose(w) },
			want: func(oc opCase) expect {
				return expect{is: []error{atomapi.ErrTransport}, attempts: attemptsIf(oc.safe), sent: true}
			},
		},
	}
}

func TestOperationsErrors(t *testing.T) {
	for _, oc := range opCases() {
		for _, rc := range respCases() {
			t.Run(oc.name+"/"+rc.name, func(t *testing.T) {
				var otherHits atomic.Int64
				other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					otherHits.Add(1)
					io.WriteString(w, oc.reply)
				}))
				t.Cleanup(other.Close)
				var h *harness
				mods := []func(*atomapi.Config){}
				if rc.mod != nil {
					mods = append(mods, rc.mod)
				}
				h = newHarness(t, func(w http.ResponseWriter, r *http.Request) {
					if oc.prelude != nil && oc.prelude(w, r) {
						return
					}
					body, _ := io.ReadAll(r.Body)
					assertRequest(t, oc, h.rec, r, body)
					rc.serve(w, r, other.URL)
				}, mods...)
				want := rc.want(oc)

				_, err := oc.call(t.Context(), h.c)

				if want.ok {
					if err != nil {
						t.Fatalf("%s = %v; want no error", oc.name, err)
					}
				} else if err == nil {
					t.Fatalf("%s = nil error; want one", oc.name)
				}
				for _, s := range want.is {
					if !errors.Is(err, s) {
						t.Errorf("errors.Is(%v, %v) = false; want true", err, s)
					}
				}
				for _, s := range want.isNot {
					if errors.Is(err, s) {
						t.Errorf("errors.Is(%v, %v) = true; want false", err, s)
					}
				}
				if want.status != 0 {
					ae, isAPI := errorsAs[*atomapi.APIError](err)
					de, isDecode := errorsAs[*atomapi.DecodeError](err)
					switch {
					case isAPI && ae.Status == want.status && ae.Operation == oc.op:
						if want.message != "" && ae.Message != want.message {
							t.Errorf("APIError.Message = %q; want %q", ae.Message, want.message)
						}
					case isDecode && de.Status == want.status && de.Operation == oc.op:
					default:
						t.Errorf("err = %#v; want an APIError or DecodeError for %s with status %d", err, oc.op, want.status)
					}
				}
				if errors.Is(err, atomapi.ErrTransport) {
					te, _ := errorsAs[*atomapi.TransportError](err)
					if te.Sent != want.sent || te.Operation != oc.op {
						t.Errorf("TransportError = %+v; want Sent %v, Operation %s", te, want.sent, oc.op)
					}
				}
				h.rec.checkBalanced(t)
				calls, _ := h.rec.calls()
				n := 0
				for i, c := range calls {
					if c.Operation == oc.op {
						n++
						if c.Attempt != n {
							t.Errorf("call %d: Attempt = %d; want %d", i, c.Attempt, n)
						}
					}
				}
				if n != want.attempts {
					t.Errorf("attempts of %s = %d; want %d", oc.op, n, want.attempts)
				}
				if s := h.slept(); len(s) != want.attempts-1 {
					t.Errorf("sleeps = %v; want %d", s, want.attempts-1)
				}
				if otherHits.Load() != 0 {
					t.Errorf("other host got %d requests; want 0", otherHits.Load())
				}
				if want.check != nil {
					want.check(t, err, h)
				}
			})
		}
	}
}

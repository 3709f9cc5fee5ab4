package atomapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
)

// Operation names (Call.Operation) of the fixed operations. Generic ones are
// "<Object>.query", "<Object>.queryMore" and "<Object>.get".
const (
	opExecutionRequestCreate  = "ExecutionRequest.create"
	opExecutionRecordAsync    = "ExecutionRecord.async"
	opExecuteProcess          = "executeProcess"
	opPackagedComponentCreate = "PackagedComponent.create"
	opDeployedPackageCreate   = "DeployedPackage.create"
	opDeployProcess           = "deployProcess"
)

// The operations that start an execution, as the ledger names them: only
// their platform ids (ExecutionRequest requestIds) identify executions.
const (
	OpExecutionRequestCreate = opExecutionRequestCreate
	OpExecuteProcess         = opExecuteProcess
)

const (
	contentJSON = "application/json"
	contentText = "text/plain"
)

// Get reads one object: GET /{object}/{id}, decoded into out.
func (c *Client) Get(ctx context.Context, object, id string, out any) error {
	if err := checkObject(object); err != nil {
		return err
	}
	if id == "" {
		return fmt.Errorf("atomapi: %s.get: empty id", object)
	}
	return c.do(ctx, &op{
		name:   object + ".get",
		object: object,
		method: http.MethodGet,
		path:   "/" + object + "/" + url.PathEscape(id),
		safe:   true,
		handle: func(_ int, data []byte) (string, error) { return "", json.Unmarshal(data, out) },
	})
}

// Query runs POST /{object}/query and follows queryToken with
// POST /{object}/queryMore (the raw token as text/plain), yielding one page at a
// time. Each page is one call (with its own retries). After an error it yields
// (nil, err) once and stops. A numberOfResults that fits neither reading (page
// count, query total) is logged, never an error.
func (c *Client) Query(ctx context.Context, object string, q QueryConfig) iter.Seq2[*QueryResult, error] {
	return func(yield func(*QueryResult, error) bool) {
		if err := checkObject(object); err != nil {
			yield(nil, err)
			return
		}
		body, err := json.Marshal(q)
		if err != nil {
			yield(nil, fmt.Errorf("atomapi: %s.query: encode filter: %w", object, err))
			return
		}
		o := &op{name: object + ".query", object: object, method: http.MethodPost,
			path: "/" + object + "/query", body: body, ctype: contentJSON, safe: true}
		var (
			first     = -1   // the first page's numberOfResults
			total     = 0    // records seen
			pageCount = true // every page's numberOfResults was its own length
		)
		for {
			page, err := c.queryPage(ctx, o)
			if err != nil {
				yield(nil, err)
				return
			}
			if first < 0 {
				first = page.NumberOfResults
			}
			total += len(page.Result)
			pageCount = pageCount && page.NumberOfResults == len(page.Result)
			token := page.QueryToken
			if !yield(page, nil) {
				return
			}
			if token == "" {
				if first != total && !pageCount {
					c.log.LogAttrs(ctx, slog.LevelWarn, "atomapi: numberOfResults does not match the records received",
						slog.String("object", object), slog.Int("number_of_results", first), slog.Int("received", total))
				}
				return
			}
			if o.name == object+".queryMore" && string(o.body) == token {
				yield(nil, &DecodeError{Operation: o.name, Status: http.StatusOK,
					Err: fmt.Errorf("queryMore answered with the token it was given")})
				return
			}
			o = &op{name: object + ".queryMore", object: object, method: http.MethodPost,
				path: "/" + object + "/queryMore", body: []byte(token), ctype: contentText, safe: true}
		}
	}
}

func (c *Client) queryPage(ctx context.Context, o *op) (*QueryResult, error) {
	var page *QueryResult
	o.handle = func(_ int, data []byte) (string, error) {
		var err error
		page, err = decodeQueryResult(data)
		return "", err
	}
	if err := c.do(ctx, o); err != nil {
		return nil, err
	}
	return page, nil
}

// QueryAll runs Query and decodes every record into T. On error it returns the
// records of the pages completed so far together with the error.
func QueryAll[T any](ctx context.Context, c *Client, object string, q QueryConfig) ([]T, error) {
	var all []T
	for page, err := range c.Query(ctx, object, q) {
		if err != nil {
			return all, err
		}
		all = slices.Grow(all, len(page.Result))
		for _, raw := range page.Result {
			var v T
			if err := json.Unmarshal(raw, &v); err != nil {
				return all, &DecodeError{Operation: object + ".query", Status: http.StatusOK,
					Err: fmt.Errorf("record %d: %w", len(all), err)}
			}
			all = append(all, v)
		}
	}
	return all, nil
}

// CreateExecutionRequest starts a process: POST /ExecutionRequest (unsafe: never
// retried once it may have been sent). The answer carries requestId, which the
// ledger records as the call's PlatformID; an accepted answer without one is a
// DecodeError.
func (c *Client) CreateExecutionRequest(ctx context.Context, r ExecutionRequest) (ExecutionRequest, error) {
	if r.Type == "" {
		r.Type = "ExecutionRequest"
	}
	r.RequestID, r.RecordURL = "", ""
	var out ExecutionRequest
	err := c.doJSON(ctx, &op{name: opExecutionRequestCreate, object: "ExecutionRequest",
		method: http.MethodPost, path: "/ExecutionRequest",
		handle: func(_ int, data []byte) (string, error) {
			if err := json.Unmarshal(data, &out); err != nil {
				return "", err
			}
			if out.RequestID == "" {
				return "", errNoRequestID
			}
			return out.RequestID, nil
		}}, r)
	return out, err
}

// ExecutionRecordAsync polls GET /ExecutionRecord/async/{requestId}. pending is
// true while no record exists (HTTP 202, or a 200 wrapper with
// responseStatusCode 202 or an empty result). A returned record may still be
// running: poll until TerminalStatus(rec.Status).
func (c *Client) ExecutionRecordAsync(ctx context.Context, requestID string) (rec ExecutionRecord, pending bool, err error) {
	if requestID == "" {
		return rec, false, fmt.Errorf("atomapi: %s: empty requestId", opExecutionRecordAsync)
	}
	err = c.do(ctx, &op{name: opExecutionRecordAsync, object: "ExecutionRecord", method: http.MethodGet,
		path: "/ExecutionRecord/async/" + url.PathEscape(requestID), safe: true,
		handle: func(status int, data []byte) (string, error) {
			rec, pending = ExecutionRecord{}, false
			switch status {
			case http.StatusAccepted:
				pending = true
				return "", nil
			case http.StatusNoContent:
				return "", &APIError{Operation: opExecutionRecordAsync, Status: status,
					Message: "async result no longer available; query ExecutionRecord instead"}
			}
			var err error
			rec, pending, err = decodeAsyncRecord(opExecutionRecordAsync, data)
			return "", err
		}})
	return rec, pending, err
}

// QueryExecutionRecords returns every ExecutionRecord matching expr (nil: all),
// in the order sort asks for (nil: the platform's).
func (c *Client) QueryExecutionRecords(ctx context.Context, expr *Expression, sort *QuerySort) ([]ExecutionRecord, error) {
	return QueryAll[ExecutionRecord](ctx, c, "ExecutionRecord",
		QueryConfig{QueryFilter: QueryFilter{Expression: expr}, QuerySort: sort})
}

// ExecuteProcess runs the legacy POST /executeProcess (unsafe). The platform
// answers 200 without an executionId; the body is ignored.
func (c *Client) ExecuteProcess(ctx context.Context, r ExecuteProcessRequest) error {
	return c.doJSON(ctx, &op{name: opExecuteProcess, object: "executeProcess",
		method: http.MethodPost, path: "/executeProcess"}, r)
}

// QueryPackagedComponents returns every PackagedComponent matching expr.
func (c *Client) QueryPackagedComponents(ctx context.Context, expr *Expression) ([]PackagedComponent, error) {
	return QueryAll[PackagedComponent](ctx, c, "PackagedComponent", QueryConfig{QueryFilter: QueryFilter{Expression: expr}})
}

// CreatePackagedComponent packages a component version: POST /PackagedComponent (unsafe).
func (c *Client) CreatePackagedComponent(ctx context.Context, p PackagedComponent) (PackagedComponent, error) {
	var out PackagedComponent
	err := c.doJSON(ctx, &op{name: opPackagedComponentCreate, object: "PackagedComponent",
		method: http.MethodPost, path: "/PackagedComponent",
		handle: func(_ int, data []byte) (string, error) {
			return "", json.Unmarshal(data, &out)
		}}, p)
	return out, err
}

// QueryDeployedPackages returns every DeployedPackage matching expr.
func (c *Client) QueryDeployedPackages(ctx context.Context, expr *Expression) ([]DeployedPackage, error) {
	return QueryAll[DeployedPackage](ctx, c, "DeployedPackage", QueryConfig{QueryFilter: QueryFilter{Expression: expr}})
}

// CreateDeployedPackage deploys: POST /DeployedPackage (unsafe). Only the fields
// valid in a request body are sent (environmentId, packageId, componentId, notes,
// listenerStatus). A 400 whose message contains "duplicate" matches
// ErrDuplicateDeploy (and ErrBadRequest). The answer's deploymentId is recorded
// as the call's PlatformID.
func (c *Client) CreateDeployedPackage(ctx context.Context, d DeployedPackage) (DeployedPackage, error) {
	in := struct {
		EnvironmentID  string `json:"environmentId,omitempty"`
		PackageID      string `json:"packageId,omitempty"`
		ComponentID    string `json:"componentId,omitempty"`
		Notes          string `json:"notes,omitempty"`
		ListenerStatus string `json:"listenerStatus,omitempty"`
	}{d.EnvironmentID, d.PackageID, d.ComponentID, d.Notes, d.ListenerStatus}
	var out DeployedPackage
	err := c.doJSON(ctx, &op{name: opDeployedPackageCreate, object: "DeployedPackage",
		method: http.MethodPost, path: "/DeployedPackage",
		handle: func(_ int, data []byte) (string, error) {
			err := json.Unmarshal(data, &out)
			return out.DeploymentID, err
		}}, in)
	return out, err
}

// QueryDeployments returns every legacy Deployment matching expr.
func (c *Client) QueryDeployments(ctx context.Context, expr *Expression) ([]Deployment, error) {
	return QueryAll[Deployment](ctx, c, "Deployment", QueryConfig{QueryFilter: QueryFilter{Expression: expr}})
}

// GetDeployment reads a legacy Deployment, the only way to learn its digest.
func (c *Client) GetDeployment(ctx context.Context, id string) (Deployment, error) {
	var d Deployment
	err := c.Get(ctx, "Deployment", id, &d)
	return d, err
}

// DeployProcess copies a legacy deployment to another environment:
// POST /deployProcess/{deploymentId}/{environmentId}/{digest}?listenerStatus=…
// with no body (unsafe). listenerStatus "" is left out. An empty 2xx body gives a
// zero Deployment.
func (c *Client) DeployProcess(ctx context.Context, deploymentID, environmentID, digest, listenerStatus string) (Deployment, error) {
	if deploymentID == "" || environmentID == "" || digest == "" {
		return Deployment{}, fmt.Errorf("atomapi: %s: deploymentId, environmentId and digest are required", opDeployProcess)
	}
	o := &op{name: opDeployProcess, object: "deployProcess", method: http.MethodPost,
		path: "/deployProcess/" + url.PathEscape(deploymentID) + "/" + url.PathEscape(environmentID) + "/" + url.PathEscape(digest)}
	if listenerStatus != "" {
		o.rawQuery = url.Values{"listenerStatus": {listenerStatus}}.Encode()
	}
	var out Deployment
	o.handle = func(_ int, data []byte) (string, error) {
		if len(bytes.TrimSpace(data)) == 0 {
			return "", nil
		}
		err := json.Unmarshal(data, &out)
		return out.ID, err
	}
	err := c.do(ctx, o)
	return out, err
}

// doJSON encodes in as o's JSON body and runs o.
func (c *Client) doJSON(ctx context.Context, o *op, in any) error {
	body, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("atomapi: %s: encode body: %w", o.name, err)
	}
	o.body, o.ctype = body, contentJSON
	return c.do(ctx, o)
}

// checkObject accepts API object names (letters, digits, underscore), which are
// used unescaped in paths and operation names.
func checkObject(object string) error {
	if object == "" {
		return fmt.Errorf("atomapi: empty object name")
	}
	for _, r := range object {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '_') {
			return fmt.Errorf("atomapi: object name %q: want letters, digits or _", object)
		}
	}
	return nil
}

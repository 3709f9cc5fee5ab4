// Package atomsim is a simulated Boomi AtomSphere platform API: the REST paths
// and JSON shapes of atomsphere-api.md, served by an http.Handler with seeded,
// deterministic data, the platform's limits (a per-second rate and a rolling
// 24-hour allowance in UTC hour buckets, both answered with HTTP 503), its own
// clock that tests can move, and fault injection.
//
// It shares nothing with the client in internal/atomapi beyond the wire types of
// wire.go, so that a misreading of the reference in one is not silently repeated
// in the other.
//
// # Routes
//
// The platform's routes are served under /api/rest/v1/{account}:
//
//	GET  /{Object}/{id}                 AuditLog, Process, Atom, Environment, Deployment (with digest),
//	                                    DeployedPackage, PackagedComponent
//	POST /{Object}/query                QueryConfig (JSON); pages of 100 with a queryToken when more remain
//	POST /{Object}/queryMore            the raw queryToken as the body (text/plain)
//	POST /ExecutionRequest              → requestId "executionrecord-<uuid>"
//	GET  /ExecutionRecord/async/{id}    202 until the record exists, then 200
//	POST /executeProcess                200, empty body, no executionId
//	POST /PackagedComponent             creates a package of a process
//	POST /DeployedPackage               deploys a package (400 "duplicate" when already active)
//	POST /deployProcess/{dep}/{env}/{digest}?listenerStatus=RUNNING|PAUSED
//	POST /ProcessLog                    {"executionId","logLevel"} → LogDownload, statusCode the number 202
//	POST /ExecutionArtifacts            {"executionId"} → LogDownload, statusCode the string "202"
//	POST /cancelExecution/{executionId} 404 unless Server.SetCancelOnPlatform(true)
//	GET  /ProcessScheduleStatus/{id}    also query/queryMore (EQUALS on atomId, processId)
//	POST /ProcessScheduleStatus/{id}    {"id","atomId","processId","enabled"} → the updated object
//	POST /ProcessScheduleStatus/bulk    {"type":"GET","request":[{"id"},…]}, 1 to 100 ids → BulkResult
//	POST /changeListenerStatus          {"listenerId","containerId","action"} → empty 200 (accepted);
//	                                    takes effect Options.ListenerDelay later
//	POST /async/ListenerStatus/query    containerId EQUALS [and listenerId EQUALS] → AsyncOperationTokenResult
//	GET  /async/ListenerStatus/response/{token}
//	                                    202 until Options.ListenerStatusDelay, then 200 AsyncOperationResult
//	GET  /EnvironmentExtensions/{id}    also query/queryMore (EQUALS on environmentId, extensionGroupId)
//	POST /EnvironmentExtensions/{id}    partial or full update → the object after it
//
// and two more prefixes, with the same auth, account check, limits and faults:
//
//	POST /partner/api/rest/v1/{account}/cancelExecution/{executionId}
//	                                    202 {"message":"Operation completed successfully."}; the
//	                                    execution ends ABORTED now; 400 when it has ended or is unknown
//	GET  /account/{account}/api/download/{name}
//	                                    the LogDownload url: 202 (empty) until Options.DownloadDelay,
//	                                    then 200 application/zip; 404 when unknown or expired
//
// ProcHangs' executions stay INPROCESS until they are cancelled.
//
// Seeded for releases (release.go): a ProcessScheduleStatus, enabled, for
// proc-orders and proc-listener on atom-prod and atom-test; the listener
// proc-listener (connector wss, listening) on atom-prod and atom-test; and
// EnvironmentExtensions for env-prod and env-test: connection conn-orders-db
// (host, port, user, and an encrypted, set password), process-property
// component pp-orders (batch-size, mode, and an encrypted, unset api-key) and
// the property REGION. Server.ScheduleStatus, ListenerState, ListenerChanges,
// Extensions (a snapshot with the stored secrets) and ExtensionUpdates show
// them to tests; SetListenerStuck and SetListenerErrored make listeners misbehave.
//
// # Choices where the reference is UNCONFIRMED
//
//   - Responses are JSON only: a request whose Accept header mentions neither
//     JSON nor */* gets 406 (the platform would answer XML); a POST other than
//     queryMore whose Content-Type is not JSON gets 415. queryMore takes any
//     Content-Type; its body is the raw token (surrounding whitespace ignored).
//   - Order of checks: faults, Basic auth (401), account (403), limits (503),
//     Accept (406), route (404), then the operation (400 on bad input).
//     Download URLs skip the Accept check (clients send Accept: application/zip)
//     but are otherwise treated, and counted, like every other request.
//   - cancelExecution is a Partner API operation: the platform path answers 404
//     (as an unknown path, counted) unless SetCancelOnPlatform(true);
//     SetCancelUnavailable(true) makes both paths 404. Only executions started
//     through the API can be cancelled, and only while they run; an execution
//     that has not yet appeared can be.
//   - ProcessLog and ExecutionArtifacts accept only executions started through
//     the API (400 "Invalid execution id" otherwise), including running ones;
//     an absent logLevel is ALL; log lines below the level are left out.
//   - A download answers 202 with an empty body (not an empty 200) until it is
//     ready; its ZIP is made as of that moment (Options.DownloadDelay after its
//     creation) and is the same on every later GET. After Options.DownloadTTL
//     it answers 404 (expired), as one client reads a 404; an unknown name is
//     also 404. The ZIP entries are process_log_<executionId>.log for a
//     ProcessLog; execution.json, documents/input-1.dat (and, when it ended
//     COMPLETE or COMPLETE_WARN, documents/output-1.dat) for ExecutionArtifacts.
//   - The 504 LogDownload of SetDownloadFault(DownloadRuntimeUnavailable) has
//     statusCode the number 504 for both operations.
//   - numberOfResults is the total for the whole query, on every page (the Go
//     SDK's reading); Options.PageCountResults makes it the page's count instead.
//   - Error bodies are {"@type":"Error","message":"…"}; injected 5xx and 503
//     storms answer HTML, as an edge proxy would.
//   - An unknown object id (GET) is 400, not 404; an unknown path is 404.
//   - Filters: a NULL (absent) value satisfies only IS_NULL; LIKE is
//     case-insensitive with % as the only wildcard; EQUALS, STARTS_WITH and
//     CONTAINS are case-sensitive; BETWEEN is inclusive. Atom accepts only
//     EQUALS, NOT_EQUALS, CONTAINS and NOT_CONTAINS (the OpenAPI enum).
//   - Query tokens stay valid (and reusable, so a client may retry a page) for
//     Options.QueryTokenTTL of simulated time after they are issued.
//   - A refused request (401, 403, 503) is not counted against the limits; every
//     other answered request is, whatever its status (downloads included).
//   - The legacy Deployment model and the DeployedPackage model are separate:
//     deployProcess changes what Deployment reports as current, DeployedPackage
//     CREATE changes what DeployedPackage reports as active.
//   - ProcessScheduleStatus ids are base64url (no padding) of
//     "ProcessScheduleStatus|<processId>|<atomId>": opaque, safe in a path.
//     An UPDATE needs atomId, processId (both matching the object) and
//     enabled; the body's id, when given, must be the path's; all else is 400.
//     Booleans (enabled, partial, useDefault) may be true or "true".
//   - Bulk GET: type must be GET; 1 to 100 ids; an unknown id is a 400 item
//     ({"@type":"BulkResponse","index","id","statusCode":400,"errorMessage"})
//     inside the HTTP 200; a known one has statusCode 200 and "Result".
//   - changeListenerStatus also takes the body wrapped as
//     {"ChangeListenerStatusRequest":{…}} (flat keys that differ from the
//     wrapped ones are 400). Actions are lower case; pause, resume and restart
//     need a listenerId, the *_all actions must omit it. A container is any
//     atom (atom-dev has no listener: *_all does nothing there); an unknown
//     container or a listener not on it is 400. Only accepted changes are
//     recorded. pause makes a listener paused, resume makes a paused one
//     listening (an errored one stays errored), restart makes any listening.
//     SetListenerStuck applies to resume and restart accepted while it is on.
//   - A ListenerStatus query needs containerId EQUALS; listenerId EQUALS is
//     optional; only EQUALS and "and" are accepted; an unknown container or
//     listener is 400. Its result holds the statuses as of the query (the
//     POST), frozen; the token stays valid; an unknown token is 404. The 202
//     body is {"@type":"AsyncOperationResult","responseStatusCode":202}.
//   - EnvironmentExtensions answers have only connections, processProperties
//     and properties (the other sections are absent); an encrypted value has
//     no "value" key, an empty plain value none either. properties and
//     property carry "@type":"" as in the OpenAPI example. id is the
//     environment id; extensionGroupId is "" (and EQUALS "" matches it).
//   - EnvironmentExtensions UPDATE: the body may be wrapped as
//     {"EnvironmentExtensions":{…}}; a list of one may be the bare object.
//     Unknown connection, field, component, key or property names are 400 and
//     nothing changes. A given value with useDefault true is reset (value "",
//     useDefault true, encryptedValueSet false) even when a value is given; a
//     given value sets it (useDefault false; encrypted: encryptedValueSet is
//     value != ""); given with neither, it is left as it was. A process-property
//     component given is given whole: its keys not in the body are reset.
//     partial true changes only what is given; otherwise (absent or false) it
//     is a full update and every field, value and property not given is reset
//     (a property to ""). Every UPDATE request is recorded (ExtensionUpdates),
//     also refused ones, with its status; Body is re-encoded (keys sorted) with
//     "***" for the value of any object whose usesEncryption or encrypted is
//     true or whose id or key names an encrypted field or value.
package atomsim

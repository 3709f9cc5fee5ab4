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
// Everything is served under /api/rest/v1/{account}:
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
//
// # Choices where the reference is UNCONFIRMED
//
//   - Responses are JSON only: a request whose Accept header mentions neither
//     JSON nor */* gets 406 (the platform would answer XML); a POST other than
//     queryMore whose Content-Type is not JSON gets 415. queryMore takes any
//     Content-Type; its body is the raw token (surrounding whitespace ignored).
//   - Order of checks: faults, Basic auth (401), account (403), limits (503),
//     Accept (406), route (404), then the operation (400 on bad input).
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
//   - A refused request (401, 503) is not counted against the limits; every
//     other answered request is, whatever its status.
//   - The legacy Deployment model and the DeployedPackage model are separate:
//     deployProcess changes what Deployment reports as current, DeployedPackage
//     CREATE changes what DeployedPackage reports as active.
package atomsim

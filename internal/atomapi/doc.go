// Package atomapi is the Boomi AtomSphere REST client: Basic auth, JSON codecs
// for the platform's quirks, QUERY with queryMore paging, ExecutionRequest and
// ExecutionRecord polling, executeProcess, PackagedComponent/DeployedPackage and
// legacy Deployment/deployProcess, and typed errors. Every attempt passes a Gate
// (rate and budget) and a Recorder (the ledger); the client never decides on its
// own whether a call is affordable.
package atomapi

package atomsim

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"

	"runnerd/internal/atomapi"
)

// DeployEvent is one deploy write the simulator received: a DeployedPackage
// CREATE or a deployProcess, accepted or refused as a duplicate.
type DeployEvent struct {
	Time          time.Time // simulated clock
	RequestID     string    // the request's X-Runnerd-Request-Id header
	EnvironmentID string    // the target environment
	ComponentID   string    // the process deployed
	PackageID     string    // "" for deployProcess
	DeploymentID  string    // the new deployment's id; "" when refused
	Via           string    // "DeployedPackage" or "deployProcess"
	Duplicate     bool      // refused with 400 "duplicate": the package was already active there
}

// Deploys returns the deploy writes received so far, in order.
func (s *Server) Deploys() []DeployEvent {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]DeployEvent(nil), s.deploys...)
}

// versionNumber renders a component version as the number CREATE answers carry
// ("7.0" → 7).
func versionNumber(v atomapi.FlexString) json.Number {
	t := strings.TrimSuffix(string(v), ".0")
	if t == "" {
		t = "0"
	}
	return json.Number(t)
}

// packageAnswer is a PackagedComponent as a CREATE answers it: componentVersion
// is a number there.
type packageAnswer struct {
	atomapi.PackagedComponent
	ComponentVersion json.Number `json:"componentVersion,omitempty"`
}

// deployedAnswer is a DeployedPackage as a CREATE answers it.
type deployedAnswer struct {
	atomapi.DeployedPackage
	ComponentVersion json.Number `json:"componentVersion,omitempty"`
}

func (s *Server) hasEnvironment(id string) bool {
	for _, e := range s.data.Environments {
		if e.ID == id {
			return true
		}
	}
	return false
}

func (s *Server) hasProcess(id string) bool { return s.processName(id) != "" }

// newPackageLocked creates a package of component; called with s.mu held.
func (s *Server) newPackageLocked(component, version, notes, branch, user string, now time.Time) (atomapi.PackagedComponent, error) {
	compVersion := atomapi.FlexString("1.0")
	n := 0
	for _, p := range s.data.PackagedComponents {
		if p.ComponentID != component {
			continue
		}
		n++
		compVersion = p.ComponentVersion
		if version != "" && p.PackageVersion == version {
			return p, badf("Package version %s already exists for component %s", version, component)
		}
	}
	if version == "" {
		version = fmt.Sprintf("%d.0", n+1)
	}
	p := atomapi.PackagedComponent{
		Type: "PackagedComponent", PackageID: ids{s.rng}.uuid(), PackageVersion: version, ComponentID: component,
		ComponentVersion: compVersion, ComponentType: "process", CreatedDate: atomapi.FormatTime(now), CreatedBy: user,
		Notes: notes, BranchName: branch,
	}
	s.data.PackagedComponents = append(s.data.PackagedComponents, p)
	return p, nil
}

// handleCreatePackage serves POST /PackagedComponent.
func (s *Server) handleCreatePackage(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req atomapi.PackagedComponent
	if !decodeBody(w, r, &req) {
		return
	}
	s.mu.Lock()
	if !s.hasProcess(req.ComponentID) {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid componentId: %q", req.ComponentID))
		return
	}
	p, err := s.newPackageLocked(req.ComponentID, req.PackageVersion, req.Notes, req.BranchName, s.opts.User, now)
	s.mu.Unlock()
	if err != nil {
		writeErr(w, err)
		return
	}
	writeJSON(w, http.StatusOK, packageAnswer{PackagedComponent: p, ComponentVersion: versionNumber(p.ComponentVersion)})
}

func validListenerStatus(v string) (string, error) {
	switch v {
	case "":
		return "RUNNING", nil
	case "RUNNING", "PAUSED":
		return v, nil
	}
	return "", badf("invalid listenerStatus %q (want RUNNING or PAUSED)", v)
}

// handleCreateDeployedPackage serves POST /DeployedPackage.
func (s *Server) handleCreateDeployedPackage(w http.ResponseWriter, r *http.Request, now time.Time) {
	var req atomapi.DeployedPackage
	if !decodeBody(w, r, &req) {
		return
	}
	listener, err := validListenerStatus(req.ListenerStatus)
	if err != nil {
		writeErr(w, err)
		return
	}
	reqID := r.Header.Get(atomapi.RequestIDHeader)
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.hasEnvironment(req.EnvironmentID) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid environment id: %q", req.EnvironmentID))
		return
	}
	var pkg *atomapi.PackagedComponent
	switch {
	case req.PackageID != "":
		for i := range s.data.PackagedComponents {
			if p := &s.data.PackagedComponents[i]; p.PackageID == req.PackageID && !p.Deleted {
				pkg = p
			}
		}
		if pkg == nil {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid packageId: %q", req.PackageID))
			return
		}
	case req.ComponentID != "":
		if !s.hasProcess(req.ComponentID) {
			writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid componentId: %q", req.ComponentID))
			return
		}
		for i := range s.data.PackagedComponents { // the latest package of the component
			if p := &s.data.PackagedComponents[i]; p.ComponentID == req.ComponentID && !p.Deleted {
				pkg = p
			}
		}
		if pkg == nil {
			p, err := s.newPackageLocked(req.ComponentID, "", req.Notes, "", s.opts.User, now)
			if err != nil {
				writeErr(w, err)
				return
			}
			pkg = &p
		}
	default:
		writeError(w, http.StatusBadRequest, "packageId or componentId is required")
		return
	}
	ev := DeployEvent{Time: now, RequestID: reqID, EnvironmentID: req.EnvironmentID, ComponentID: pkg.ComponentID,
		PackageID: pkg.PackageID, Via: "DeployedPackage"}
	version := 0
	for _, d := range s.data.DeployedPackages {
		if d.EnvironmentID != req.EnvironmentID || d.ComponentID != pkg.ComponentID {
			continue
		}
		version = max(version, d.Version)
		if d.Active && d.PackageID == pkg.PackageID {
			ev.Duplicate = true
		}
	}
	if ev.Duplicate {
		s.deploys = append(s.deploys, ev)
		writeError(w, http.StatusBadRequest, fmt.Sprintf(
			"Deployment failed: a duplicate deployment exists, package %s (version %s) is already deployed to environment %s",
			pkg.PackageID, pkg.PackageVersion, req.EnvironmentID))
		return
	}
	for i := range s.data.DeployedPackages {
		if d := &s.data.DeployedPackages[i]; d.EnvironmentID == req.EnvironmentID && d.ComponentID == pkg.ComponentID {
			d.Active = false
		}
	}
	dp := atomapi.DeployedPackage{
		Type: "DeployedPackage", DeploymentID: ids{s.rng}.uuid(), Version: version + 1, PackageID: pkg.PackageID,
		PackageVersion: pkg.PackageVersion, EnvironmentID: req.EnvironmentID, ComponentID: pkg.ComponentID,
		ComponentVersion: pkg.ComponentVersion, ComponentType: pkg.ComponentType, DeployedDate: atomapi.FormatTime(now),
		DeployedBy: s.opts.User, Notes: req.Notes, Active: true, BranchName: pkg.BranchName, ListenerStatus: listener,
	}
	s.data.DeployedPackages = append(s.data.DeployedPackages, dp)
	ev.DeploymentID = dp.DeploymentID
	s.deploys = append(s.deploys, ev)
	writeJSON(w, http.StatusOK, deployedAnswer{DeployedPackage: dp, ComponentVersion: versionNumber(dp.ComponentVersion)})
}

// handleDeployProcess serves POST /deployProcess/{deploymentId}/{environmentId}/{digest}.
func (s *Server) handleDeployProcess(w http.ResponseWriter, r *http.Request, depID, envID, digest string, now time.Time) {
	listener, err := validListenerStatus(r.URL.Query().Get("listenerStatus"))
	if err != nil {
		writeErr(w, err)
		return
	}
	reqID := r.Header.Get(atomapi.RequestIDHeader)
	s.mu.Lock()
	defer s.mu.Unlock()
	var src *atomapi.Deployment
	for i := range s.data.Deployments {
		if d := &s.data.Deployments[i]; d.ID == depID {
			src = d
		}
	}
	if src == nil {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid deployment id: %q", depID))
		return
	}
	if !s.hasEnvironment(envID) {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("Invalid environment id: %q", envID))
		return
	}
	if digest != src.Digest {
		writeError(w, http.StatusBadRequest, fmt.Sprintf("The digest %q does not match deployment %s", digest, depID))
		return
	}
	version := 0
	for i := range s.data.Deployments {
		d := &s.data.Deployments[i]
		if d.EnvironmentID == envID && d.ProcessID == src.ProcessID {
			version = max(version, d.Version)
			d.Current = false
		}
	}
	nd := atomapi.Deployment{
		Type: "Deployment", ID: "dep-" + ids{s.rng}.uuid(), Digest: src.Digest, EnvironmentID: envID,
		ProcessID: src.ProcessID, ComponentID: src.ComponentID, ComponentType: src.ComponentType, Current: true,
		Notes: "deployed from " + depID, Version: version + 1, DeployedOn: atomapi.FormatTime(now), DeployedBy: s.opts.User,
		ListenerStatus: listener,
	}
	s.data.Deployments = append(s.data.Deployments, nd)
	s.deploys = append(s.deploys, DeployEvent{Time: now, RequestID: reqID, EnvironmentID: envID, ComponentID: src.ProcessID,
		DeploymentID: nd.ID, Via: "deployProcess"})
	nd.Digest = ""
	writeJSON(w, http.StatusOK, nd)
}

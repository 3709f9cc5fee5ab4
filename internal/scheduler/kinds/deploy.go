package kinds

import (
	"context"
	"fmt"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/scheduler"
)

// Deploy methods.
const (
	MethodPackage       = "package"       // PackagedComponent + DeployedPackage (default)
	MethodDeployProcess = "deployProcess" // legacy Deployment + deployProcess
)

// DeployClient is what the deploy kind needs from the AtomSphere client.
type DeployClient interface {
	QueryDeployedPackages(ctx context.Context, expr *atomapi.Expression) ([]atomapi.DeployedPackage, error)
	CreateDeployedPackage(ctx context.Context, d atomapi.DeployedPackage) (atomapi.DeployedPackage, error)
	QueryDeployments(ctx context.Context, expr *atomapi.Expression) ([]atomapi.Deployment, error)
	GetDeployment(ctx context.Context, id string) (atomapi.Deployment, error)
	DeployProcess(ctx context.Context, deploymentID, environmentID, digest, listenerStatus string) (atomapi.Deployment, error)
}

// Deploy promotes a process from one environment to another, idempotently: it
// looks first and writes only when the target does not already run what the
// source runs.
type Deploy struct {
	Client         DeployClient
	ProcessID      string
	FromEnv, ToEnv string
	Method         string // MethodPackage (default) or MethodDeployProcess
	ListenerStatus string // RUNNING | PAUSED | "" (platform default)
	Priority       runnerd.Priority
	// IsBudgetStop recognises a budget refusal; nil: errors.Is(err, budget.ErrExhausted).
	IsBudgetStop func(error) bool

	// known, when set, is the active packages lookup already made (a
	// release's pre-check, on a copy of the kind for one run): not made again.
	known *[]atomapi.DeployedPackage
}

// DeployDetail is the run's Detail for a deploy run.
type DeployDetail struct {
	Method string `json:"method"`
	// Result: "deployed", "already deployed" or "duplicate" (the platform said
	// it already had it).
	Result         string `json:"result,omitempty"`
	PackageID      string `json:"package_id,omitempty"`
	PackageVersion string `json:"package_version,omitempty"`
	DeploymentID   string `json:"deployment_id,omitempty"` // the new deployment in the target
	SourceID       string `json:"source_deployment_id,omitempty"`
	Digest         string `json:"digest,omitempty"`
	Message        string `json:"message,omitempty"` // the platform's message (license warnings)
	Calls          int    `json:"calls"`             // client operations spent (the ledger counts attempts)
}

// Run implements scheduler.Kind.
func (k *Deploy) Run(ctx context.Context, rc *scheduler.RunContext) scheduler.Outcome {
	ctx = callCtx(ctx, rc, k.Priority)
	isBudget := k.IsBudgetStop
	if isBudget == nil {
		isBudget = defaultIsBudgetStop
	}
	switch k.Method {
	case "", MethodPackage:
		return k.runPackage(ctx, rc, isBudget)
	case MethodDeployProcess:
		return k.runDeployProcess(ctx, isBudget)
	}
	return scheduler.Outcome{State: runnerd.StateFailed, Err: fmt.Errorf("deploy: unknown method %q", k.Method)}
}

func (k *Deploy) runPackage(ctx context.Context, rc *scheduler.RunContext, isBudget func(error) bool) scheduler.Outcome {
	d := &DeployDetail{Method: MethodPackage}
	// One lookup answers both questions: what is active for the process in the
	// source, and whether the target already runs it. A second run of a
	// promotion that is already done therefore costs exactly one call.
	var pkgs []atomapi.DeployedPackage
	if k.known != nil {
		pkgs = *k.known
	} else {
		d.Calls++
		var err error
		if pkgs, err = k.activePackages(ctx); err != nil {
			return readFailure("deploy: active packages", err, isBudget, d)
		}
	}
	var src, dst []atomapi.DeployedPackage
	for _, p := range pkgs {
		switch p.EnvironmentID {
		case k.FromEnv:
			src = append(src, p)
		case k.ToEnv:
			dst = append(dst, p)
		}
	}
	from, ok := latestPackage(src)
	if !ok {
		return scheduler.Outcome{State: runnerd.StateFailed, Detail: toJSON(d),
			Err: fmt.Errorf("deploy: process %s has no active package in environment %s", k.ProcessID, k.FromEnv)}
	}
	d.PackageID, d.PackageVersion = from.PackageID, from.PackageVersion
	for _, p := range dst {
		if p.PackageID == from.PackageID && p.Active {
			d.Result, d.DeploymentID = "already deployed", p.DeploymentID
			return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
		}
	}

	if err := ctx.Err(); err != nil {
		return scheduler.Outcome{State: runnerd.StateFailed, Retryable: true, Detail: toJSON(d), Err: fmt.Errorf("deploy: not sent: %w", err)}
	}
	d.Calls++
	ans, err := k.Client.CreateDeployedPackage(ctx, atomapi.DeployedPackage{
		EnvironmentID:  k.ToEnv,
		PackageID:      from.PackageID,
		ListenerStatus: k.ListenerStatus,
		Notes:          runnerd.DeployNotes(rc.Run.Job, atomapi.FormatTime(rc.Run.NominalTime)),
	})
	switch class := classifySend(err, isBudget); class {
	case sendAccepted:
		d.Result, d.DeploymentID, d.Message = "deployed", ans.DeploymentID, ans.Message
	case sendDuplicate:
		d.Result = "duplicate"
	default:
		return sendFailure("deploy: create deployed package", class, err, d)
	}
	return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
}

// activePackages is the one lookup of a package deploy: the process's active
// packages in the source and the target environment.
func (k *Deploy) activePackages(ctx context.Context) ([]atomapi.DeployedPackage, error) {
	return k.Client.QueryDeployedPackages(ctx, and(
		eq("componentId", k.ProcessID),
		eq("active", "true"),
		*or(eq("environmentId", k.FromEnv), eq("environmentId", k.ToEnv)),
	))
}

// pending says, from the active packages, which package a deploy would bring
// to the target: from, and whether the target already runs it.
func (k *Deploy) pending(pkgs []atomapi.DeployedPackage) (from, to atomapi.DeployedPackage, found, done bool) {
	var src, dst []atomapi.DeployedPackage
	for _, p := range pkgs {
		switch p.EnvironmentID {
		case k.FromEnv:
			src = append(src, p)
		case k.ToEnv:
			dst = append(dst, p)
		}
	}
	from, found = latestPackage(src)
	to, _ = latestPackage(dst)
	for _, p := range dst {
		if found && p.PackageID == from.PackageID && p.Active {
			done = true
		}
	}
	return from, to, found, done
}

// latestPackage picks the active package of highest deployment version (there
// should be one).
func latestPackage(ps []atomapi.DeployedPackage) (atomapi.DeployedPackage, bool) {
	var best atomapi.DeployedPackage
	found := false
	for _, p := range ps {
		if p.PackageID == "" {
			continue
		}
		if !found || p.Version > best.Version {
			best, found = p, true
		}
	}
	return best, found
}

func (k *Deploy) runDeployProcess(ctx context.Context, isBudget func(error) bool) scheduler.Outcome {
	d := &DeployDetail{Method: MethodDeployProcess}
	current := func(env string) *atomapi.Expression {
		return and(eq("processId", k.ProcessID), eq("environmentId", env), eq("current", "true"))
	}
	d.Calls++
	src, err := k.Client.QueryDeployments(ctx, current(k.FromEnv))
	if err != nil {
		return readFailure("deploy: source deployment", err, isBudget, d)
	}
	from, ok := latestDeployment(src)
	if !ok {
		return scheduler.Outcome{State: runnerd.StateFailed, Detail: toJSON(d),
			Err: fmt.Errorf("deploy: process %s has no current deployment in environment %s", k.ProcessID, k.FromEnv)}
	}
	d.SourceID = from.ID
	// The digest is returned only by GET (atomsphere-api.md 3.3).
	d.Calls++
	full, err := k.Client.GetDeployment(ctx, from.ID)
	if err != nil {
		return readFailure("deploy: source digest", err, isBudget, d)
	}
	if full.Digest == "" {
		return scheduler.Outcome{State: runnerd.StateFailed, Detail: toJSON(d), Err: fmt.Errorf("deploy: deployment %s has no digest", from.ID)}
	}
	d.Digest = full.Digest

	d.Calls++
	dst, err := k.Client.QueryDeployments(ctx, current(k.ToEnv))
	if err != nil {
		return readFailure("deploy: target deployment", err, isBudget, d)
	}
	if to, ok := latestDeployment(dst); ok {
		digest := to.Digest
		if digest == "" {
			d.Calls++
			t, err := k.Client.GetDeployment(ctx, to.ID)
			if err != nil {
				return readFailure("deploy: target digest", err, isBudget, d)
			}
			digest = t.Digest
		}
		if digest == full.Digest {
			d.Result, d.DeploymentID = "already deployed", to.ID
			return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
		}
	}

	if err := ctx.Err(); err != nil {
		return scheduler.Outcome{State: runnerd.StateFailed, Retryable: true, Detail: toJSON(d), Err: fmt.Errorf("deploy: not sent: %w", err)}
	}
	d.Calls++
	ans, err := k.Client.DeployProcess(ctx, from.ID, k.ToEnv, full.Digest, k.ListenerStatus)
	switch class := classifySend(err, isBudget); class {
	case sendAccepted:
		d.Result, d.DeploymentID, d.Message = "deployed", ans.ID, ans.Message
	case sendDuplicate:
		d.Result = "duplicate"
	default:
		return sendFailure("deploy: deployProcess", class, err, d)
	}
	return scheduler.Outcome{State: runnerd.StateSucceeded, Detail: toJSON(d)}
}

func latestDeployment(ds []atomapi.Deployment) (atomapi.Deployment, bool) {
	var best atomapi.Deployment
	found := false
	for _, d := range ds {
		if d.ID == "" {
			continue
		}
		if !found || d.Version > best.Version {
			best, found = d, true
		}
	}
	return best, found
}

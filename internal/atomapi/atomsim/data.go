package atomsim

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"runnerd/internal/atomapi"
)

// Well-known ids that the simulator always seeds (jobs.example.toml uses them).
const (
	DefaultAccount  = "sim-account"
	DefaultUser     = "runnerd@sim"
	DefaultPassword = "sim-password"

	EnvTest = "env-test" // TEST, name "Test"
	EnvProd = "env-prod" // PROD, name "Production"
	EnvDev  = "env-dev"  // TEST, name "Development"; no well-known process is deployed there

	AtomTest = "atom-test" // attached to env-test
	AtomProd = "atom-prod" // attached to env-prod
	AtomDev  = "atom-dev"  // attached to env-dev, OFFLINE

	ProcOrders   = "proc-orders"   // "Orders Sync": executions end COMPLETE
	ProcInvoices = "proc-invoices" // "Invoice Export": executions end COMPLETE_WARN
	ProcFails    = "proc-fails"    // "Always Fails": executions end ERROR with a message
	ProcHangs    = "proc-hangs"    // "Hangs Forever": executions stay INPROCESS until cancelled
	ProcListener = "proc-listener" // "Web Service Listener": a listener (connector wss) on atom-prod and atom-test

	PkgOrders     = "pkg-orders-3"    // proc-orders' package "3.0", active in env-test only
	DepOrdersTest = "dep-orders-test" // the current legacy Deployment of proc-orders in env-test
)

// FailMessage is the message of proc-fails' executions.
const FailMessage = "Simulated failure: connector \"Orders DB\" refused the connection, check the credentials"

// CancelMessage is the message of an execution ended by cancelExecution.
const CancelMessage = "Process execution was cancelled by API request"

// Attachment is an EnvironmentAtomAttachment record.
type Attachment struct {
	Type          string `json:"@type,omitempty"`
	ID            string `json:"id"`
	AtomID        string `json:"atomId"`
	EnvironmentID string `json:"environmentId"`
}

// Dataset is the simulator's data: the seeded records and what requests have
// changed since (packages created, deployments made). Server.Data returns a copy.
type Dataset struct {
	AuditLogs          []atomapi.AuditLog
	ExecutionRecords   []atomapi.ExecutionRecord // seeded history; Data() adds started executions as of now
	Events             []atomapi.Event
	Environments       []atomapi.Environment
	Atoms              []atomapi.Atom
	Processes          []atomapi.Process
	Attachments        []Attachment
	PackagedComponents []atomapi.PackagedComponent
	DeployedPackages   []atomapi.DeployedPackage
	Deployments        []atomapi.Deployment // Digest is set here; queries do not return it
}

func (d *Dataset) clone() *Dataset {
	c := &Dataset{
		AuditLogs:          append([]atomapi.AuditLog(nil), d.AuditLogs...),
		ExecutionRecords:   append([]atomapi.ExecutionRecord(nil), d.ExecutionRecords...),
		Events:             append([]atomapi.Event(nil), d.Events...),
		Environments:       append([]atomapi.Environment(nil), d.Environments...),
		Atoms:              append([]atomapi.Atom(nil), d.Atoms...),
		Processes:          append([]atomapi.Process(nil), d.Processes...),
		Attachments:        append([]Attachment(nil), d.Attachments...),
		PackagedComponents: append([]atomapi.PackagedComponent(nil), d.PackagedComponents...),
		DeployedPackages:   append([]atomapi.DeployedPackage(nil), d.DeployedPackages...),
		Deployments:        append([]atomapi.Deployment(nil), d.Deployments...),
	}
	for i := range c.AuditLogs {
		c.AuditLogs[i].AuditLogProperty = append([]atomapi.AuditLogProperty(nil), c.AuditLogs[i].AuditLogProperty...)
	}
	return c
}

// terminal outcome of the well-known processes; a status "" never ends.
var processOutcome = map[string]struct{ status, message string }{
	ProcOrders:   {atomapi.StatusComplete, ""},
	ProcInvoices: {atomapi.StatusCompleteWarn, ""},
	ProcFails:    {atomapi.StatusError, FailMessage},
	ProcHangs:    {"", ""},
}

// ids generates deterministic ids from a seeded source.
type ids struct{ r *rand.Rand }

func (g ids) uuid() string {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], g.r.Uint64())
	binary.BigEndian.PutUint64(b[8:], g.r.Uint64())
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:])
}

const docIDAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

func (g ids) documentID() string {
	var sb strings.Builder
	for range 20 {
		sb.WriteByte(docIDAlphabet[g.r.IntN(len(docIDAlphabet))])
	}
	return sb.String()
}

func (g ids) hex(n int) string {
	var sb strings.Builder
	for range n {
		sb.WriteByte("0123456789abcdef"[g.r.IntN(16)])
	}
	return sb.String()
}

func executionID(uuid string, t time.Time) string {
	return "execution-" + uuid + "-" + t.UTC().Format("2006.01.02")
}

// weighted picks an index by weight.
func weighted(r *rand.Rand, weights ...int) int {
	total := 0
	for _, w := range weights {
		total += w
	}
	n := r.IntN(total)
	for i, w := range weights {
		if n < w {
			return i
		}
		n -= w
	}
	return len(weights) - 1
}

var seedUsers = []string{
	DefaultUser,
	"alice.martin@example.com",
	"bob.o'neil@example.com",
	"chen.wei@example.com",
	"dana.kowalski@example.com",
	"BOOMI_TOKEN.ops@example.com",
	"eve.dupont@example.com",
	"farid.haddad@example.com",
	"grace.lee@example.com",
	"henrik.sørensen@example.com",
}

// seed builds the initial dataset, deterministic from opts.Seed and end.
func seed(opts Options, end time.Time) *Dataset {
	r := rand.New(rand.NewPCG(uint64(opts.Seed), 0x5eed0a70))
	g := ids{r}
	end = end.UTC().Truncate(time.Second)
	start := end.Add(-time.Duration(opts.AuditDays) * 24 * time.Hour)
	span := int64(end.Sub(start) / time.Second)
	randTime := func() time.Time { return start.Add(time.Duration(r.Int64N(span)) * time.Second) }
	user := func() string { return seedUsers[r.IntN(len(seedUsers))] }

	d := &Dataset{}
	d.Environments = []atomapi.Environment{
		{Type: "Environment", ID: EnvTest, Name: "Test", Classification: "TEST"},
		{Type: "Environment", ID: EnvProd, Name: "Production", Classification: "PROD"},
		{Type: "Environment", ID: EnvDev, Name: "Development", Classification: "TEST"},
	}
	installed := atomapi.FormatTime(start.Add(-90 * 24 * time.Hour))
	d.Atoms = []atomapi.Atom{
		{Type: "Atom", ID: AtomTest, Name: "Test Atom", Status: "ONLINE", StatusDetail: "ONLINE_RUNNING", AtomType: "ATOM",
			HostName: "test-host.example.com", DateInstalled: installed, CurrentVersion: "25.09.1", CreatedBy: seedUsers[1]},
		{Type: "Atom", ID: AtomProd, Name: "Production Molecule", Status: "ONLINE", StatusDetail: "ONLINE_RUNNING", AtomType: "MOLECULE",
			HostName: "prod-node1.example.com", DateInstalled: installed, CurrentVersion: "25.09.1", CreatedBy: seedUsers[1]},
		{Type: "Atom", ID: AtomDev, Name: "Dev Cloud Atom", Status: "OFFLINE", StatusDetail: "OFFLINE_NOT_STOPPED", AtomType: "CLOUD",
			DateInstalled: installed, CurrentVersion: "25.08.2", CreatedBy: seedUsers[3]},
	}
	d.Attachments = []Attachment{
		{Type: "EnvironmentAtomAttachment", ID: "att-test", AtomID: AtomTest, EnvironmentID: EnvTest},
		{Type: "EnvironmentAtomAttachment", ID: "att-prod", AtomID: AtomProd, EnvironmentID: EnvProd},
		{Type: "EnvironmentAtomAttachment", ID: "att-dev", AtomID: AtomDev, EnvironmentID: EnvDev},
	}
	d.Processes = []atomapi.Process{
		{Type: "Process", ID: ProcOrders, Name: "Orders Sync", Description: "Copies new orders from the shop to the ERP"},
		{Type: "Process", ID: ProcInvoices, Name: "Invoice Export", Description: "Exports invoices; warns on missing tax ids"},
		{Type: "Process", ID: ProcFails, Name: "Always Fails", Description: "Fails on purpose"},
		{Type: "Process", ID: "proc-customers", Name: "Customer Sync"},
		{Type: "Process", ID: "proc-inventory", Name: "Inventory, Daily"},
		{Type: "Process", ID: "proc-payroll", Name: "Payroll \"Q\" Feed"},
		{Type: "Process", ID: "proc-shipments", Name: "Shipment Tracking"},
		{Type: "Process", ID: ProcListener, Name: "Web Service Listener"},
		{Type: "Process", ID: "proc-archive", Name: "Nightly Archive"},
		// Appended last: pickProc's weights index the entries above.
		{Type: "Process", ID: ProcHangs, Name: "Hangs Forever", Description: "Runs until it is cancelled"},
	}

	atomEnv := map[string]string{AtomTest: EnvTest, AtomProd: EnvProd, AtomDev: EnvDev}
	envClass := map[string]string{EnvTest: "TEST", EnvProd: "PROD", EnvDev: "TEST"}
	envName := map[string]string{EnvTest: "Test", EnvProd: "Production", EnvDev: "Development"}
	atomName := map[string]string{}
	for _, a := range d.Atoms {
		atomName[a.ID] = a.Name
	}
	procName := map[string]string{}
	for _, p := range d.Processes {
		procName[p.ID] = p.Name
	}
	pickAtom := func() string { return []string{AtomTest, AtomProd, AtomDev}[weighted(r, 5, 4, 1)] }
	pickProc := func() string { return d.Processes[weighted(r, 6, 4, 2, 2, 2, 1, 1, 1, 1)].ID }

	// Packages, deployments (current model) and legacy deployments.
	daysAgo := func(n int) string { return atomapi.FormatTime(end.Add(-time.Duration(n) * 24 * time.Hour)) }
	d.PackagedComponents = []atomapi.PackagedComponent{
		{Type: "PackagedComponent", PackageID: "pkg-orders-1", PackageVersion: "1.0", ComponentID: ProcOrders, ComponentVersion: "3.0", ComponentType: "process", CreatedDate: daysAgo(60), CreatedBy: seedUsers[1], Notes: "first release"},
		{Type: "PackagedComponent", PackageID: "pkg-orders-2", PackageVersion: "2.0", ComponentID: ProcOrders, ComponentVersion: "5.0", ComponentType: "process", CreatedDate: daysAgo(40), CreatedBy: seedUsers[1], Notes: "retry on timeouts"},
		{Type: "PackagedComponent", PackageID: PkgOrders, PackageVersion: "3.0", ComponentID: ProcOrders, ComponentVersion: "7.0", ComponentType: "process", CreatedDate: daysAgo(10), CreatedBy: seedUsers[2], Notes: "batch size 500, new mapping"},
		{Type: "PackagedComponent", PackageID: "pkg-invoices-1", PackageVersion: "1.0", ComponentID: ProcInvoices, ComponentVersion: "2.0", ComponentType: "process", CreatedDate: daysAgo(50), CreatedBy: seedUsers[3]},
		{Type: "PackagedComponent", PackageID: "pkg-fails-1", PackageVersion: "1.0", ComponentID: ProcFails, ComponentVersion: "1.0", ComponentType: "process", CreatedDate: daysAgo(45), CreatedBy: seedUsers[3]},
	}
	dp := func(pkg, env string, version int, active bool, ago int) atomapi.DeployedPackage {
		var pc atomapi.PackagedComponent
		for _, p := range d.PackagedComponents {
			if p.PackageID == pkg {
				pc = p
			}
		}
		return atomapi.DeployedPackage{
			Type: "DeployedPackage", DeploymentID: g.uuid(), Version: version, PackageID: pkg, PackageVersion: pc.PackageVersion,
			EnvironmentID: env, ComponentID: pc.ComponentID, ComponentVersion: pc.ComponentVersion, ComponentType: pc.ComponentType,
			DeployedDate: daysAgo(ago), DeployedBy: seedUsers[1], Active: active, ListenerStatus: "RUNNING",
		}
	}
	d.DeployedPackages = []atomapi.DeployedPackage{
		dp("pkg-orders-2", EnvTest, 1, false, 39),
		dp(PkgOrders, EnvTest, 2, true, 9),
		dp("pkg-invoices-1", EnvTest, 1, true, 49),
		dp("pkg-invoices-1", EnvProd, 1, true, 48),
		dp("pkg-fails-1", EnvTest, 1, true, 44),
	}
	legacy := func(id, env, proc string, version int, current bool, ago int) atomapi.Deployment {
		return atomapi.Deployment{
			Type: "Deployment", ID: id, Digest: g.hex(32), EnvironmentID: env, ProcessID: proc, ComponentID: proc,
			ComponentType: "process", Current: current, Version: version, DeployedOn: daysAgo(ago), DeployedBy: seedUsers[1],
			ListenerStatus: "RUNNING",
		}
	}
	d.Deployments = []atomapi.Deployment{
		legacy("dep-orders-test-v2", EnvTest, ProcOrders, 2, false, 30),
		legacy(DepOrdersTest, EnvTest, ProcOrders, 3, true, 9),
		legacy("dep-invoices-test", EnvTest, ProcInvoices, 1, true, 49),
		legacy("dep-invoices-prod", EnvProd, ProcInvoices, 1, true, 48),
	}

	// Execution history.
	execTypes := []string{"exec_sched", "exec_manual", "exec_listener", "retry_manual", "sub_process", "test_manual"}
	for range opts.ExecutionRecords {
		t := randTime()
		proc := pickProc()
		atom := pickAtom()
		var status, msg string
		if o, ok := processOutcome[proc]; ok {
			status, msg = o.status, o.message
		} else {
			status = []string{atomapi.StatusComplete, atomapi.StatusCompleteWarn, atomapi.StatusError, atomapi.StatusAborted, atomapi.StatusDiscarded}[weighted(r, 80, 6, 9, 3, 2)]
			if status == atomapi.StatusError {
				msg = []string{
					"Connection refused: orders-db.example.com:5432",
					"Data error at shape \"Map, Orders\":\nfield 'total' is not a number",
					"Timeout after 300s waiting for \"SFTP Get\"",
				}[r.IntN(3)]
			}
		}
		dur := 200 + r.Int64N(600_000)
		et := execTypes[weighted(r, 60, 15, 15, 3, 5, 2)]
		rec := atomapi.ExecutionRecord{
			Type: "ExecutionRecord", Account: opts.Account, AtomID: atom, AtomName: atomName[atom],
			ExecutionDuration: atomapi.Long(dur), ExecutionID: executionID(g.uuid(), t), ExecutionTime: atomapi.FormatTime(t),
			ExecutionType: et, InboundDocumentCount: r.IntN(500), InboundDocumentSize: atomapi.Long(r.Int64N(5 << 20)),
			OutboundDocumentCount: r.IntN(500), OutboundDocumentSize: atomapi.Long(r.Int64N(5 << 20)),
			Message: msg, ProcessID: proc, ProcessName: procName[proc],
			RecordedDate: atomapi.FormatTime(t.Add(time.Duration(dur) * time.Millisecond)), Status: status,
		}
		if status == atomapi.StatusError {
			rec.InboundErrorDocumentCount = 1 + r.IntN(5)
		}
		if et == "exec_manual" || et == "retry_manual" || et == "test_manual" {
			rec.LauncherID = user()
		}
		if atom == AtomProd {
			rec.NodeID = fmt.Sprintf("node-%d", 1+r.IntN(3))
		}
		if et == "exec_listener" && r.IntN(2) == 0 {
			rec.ReportKey = "ws-user-" + g.hex(6)
		}
		if et == "retry_manual" && len(d.ExecutionRecords) > 0 {
			rec.OriginalExecutionID = d.ExecutionRecords[r.IntN(len(d.ExecutionRecords))].ExecutionID
		}
		rec.TopLevelExecutionID = rec.ExecutionID
		d.ExecutionRecords = append(d.ExecutionRecords, rec)
	}

	// Events.
	for range opts.Events {
		t := randTime()
		atom := pickAtom()
		env := atomEnv[atom]
		ev := atomapi.Event{
			Type: "Event", EventID: g.uuid(), AccountID: opts.Account, AtomID: atom, AtomName: atomName[atom],
			Classification: envClass[env], Environment: envName[env], EventDate: atomapi.FormatTime(t),
			RecordDate: atomapi.FormatTime(t.Add(time.Duration(1+r.IntN(30)) * time.Second)),
		}
		ev.UpdateDate = ev.RecordDate
		switch weighted(r, 60, 15, 10, 15) {
		case 0:
			proc := pickProc()
			ev.EventType = "process.execution"
			ev.ProcessID, ev.ProcessName, ev.TopLevelProcessID = proc, procName[proc], proc
			ev.ExecutionID = executionID(g.uuid(), t)
			ev.Status = atomapi.StatusComplete
			if o, ok := processOutcome[proc]; ok {
				ev.Status = o.status
			} else if r.IntN(8) == 0 {
				ev.Status = atomapi.StatusError
			}
			ev.StartTime = atomapi.FormatTime(t.Add(-time.Duration(1+r.IntN(600)) * time.Second))
			ev.EndTime = ev.EventDate
			ev.InboundDocumentCount, ev.OutboundDocumentCount = r.IntN(300), r.IntN(300)
			ev.EventLevel = "INFO"
			ev.Title = "Process " + procName[proc] + " " + strings.ToLower(ev.Status)
			if ev.Status == atomapi.StatusError {
				ev.EventLevel = "ERROR"
				ev.ErrorType = "PROCESS"
				ev.Error = "Connection refused, retry later"
				ev.ErrorDocumentCount = 1 + r.IntN(3)
				ev.ErroredStepLabel = "Orders DB"
				ev.ErroredStepType = "connectoraction"
			} else if ev.Status == atomapi.StatusCompleteWarn {
				ev.EventLevel = "WARNING"
			}
		case 1:
			ev.EventType = "atom.status"
			ev.Status = []string{"ONLINE", "OFFLINE", "WARNING"}[weighted(r, 5, 3, 2)]
			ev.EventLevel = map[string]string{"ONLINE": "INFO", "OFFLINE": "ERROR", "WARNING": "WARNING"}[ev.Status]
			ev.Title = "Atom " + atomName[atom] + " is " + strings.ToLower(ev.Status)
		case 2:
			proc := pickProc()
			ev.EventType = "process.missedSchedule"
			ev.ProcessID, ev.ProcessName = proc, procName[proc]
			ev.EventLevel = "WARNING"
			ev.Title = "Missed schedule for " + procName[proc]
		default:
			proc := pickProc()
			ev.EventType = "user.notification"
			ev.ProcessID, ev.ProcessName = proc, procName[proc]
			ev.EventLevel = []string{"INFO", "WARNING", "ERROR"}[weighted(r, 6, 3, 1)]
			ev.Status = []string{"Batch done, 120 rows", "Check \"vendor\" list", "Rows skipped:\n3 duplicates"}[r.IntN(3)]
			ev.Title = "Notification from " + procName[proc]
			ev.ExecutionID = executionID(g.uuid(), t)
		}
		d.Events = append(d.Events, ev)
	}

	// Audit logs.
	for range opts.AuditLogs {
		t := randTime()
		a := atomapi.AuditLog{
			Type: "AuditLog", DocumentID: g.documentID(), AccountID: opts.Account, UserID: user(), Date: atomapi.FormatTime(t),
			Level:  []string{"INFO", "WARNING", "ERROR", "DEBUG"}[weighted(r, 80, 10, 5, 5)],
			Source: []string{"UI", "API", "INTERNAL", "MOBILE", "UNKNOWN"}[weighted(r, 50, 30, 15, 3, 2)],
		}
		atom := pickAtom()
		proc := pickProc()
		env := atomEnv[atom]
		prop := func(name, value, prev string) {
			a.AuditLogProperty = append(a.AuditLogProperty, atomapi.AuditLogProperty{Name: name, Value: value, PreviousValue: prev})
		}
		switch weighted(r, 30, 12, 12, 8, 8, 15, 5, 4, 6) {
		case 0:
			a.AuditType, a.Action, a.Modifier, a.ContainerID = "as.process.manual_execution", "EXECUTE", "MANUAL", atom
			a.Message = fmt.Sprintf("Process %q executed manually on atom %q", procName[proc], atomName[atom])
			prop("PROCESS_ID", proc, "")
			prop("ATOM_ID", atom, "")
		case 1:
			a.AuditType, a.Action, a.Modifier, a.ContainerID = "as.atom.process", []string{"ATTACH", "DETACH"}[weighted(r, 4, 1)], "NONE", atom
			a.Message = fmt.Sprintf("Process %s, version %d: %s environment %s", procName[proc], 1+r.IntN(9), strings.ToLower(a.Action)+"ed to", envName[env])
			prop("ENVIRONMENT_ID", env, "")
			prop("VERSION_STRING", fmt.Sprintf("%d.0", 1+r.IntN(9)), "")
		case 2:
			a.AuditType, a.Action, a.ContainerID = "as.schedules", []string{"UPDATE", "RESUME", "STOP"}[weighted(r, 3, 1, 1)], atom
			a.Modifier = []string{"NONE", "ALL", "SINGLE"}[r.IntN(3)]
			a.Message = fmt.Sprintf("Schedule of %s changed:\nevery %d minutes, Mon-Fri", procName[proc], 5*(1+r.IntN(12)))
		case 3:
			a.AuditType, a.Action, a.Modifier = "as.extensions", "EDIT", "NONE"
			a.Message = "Extension \"db.url\" changed, was \"jdbc:postgresql://old\""
			prop("ENVIRONMENT_ID", env, "")
			prop("NEW_VALUE", "jdbc:postgresql://db-"+g.hex(4), "jdbc:postgresql://old")
		case 4:
			a.AuditType, a.Action, a.Modifier, a.ContainerID = "as.atom", []string{"PAUSE", "RESUME", "START"}[r.IntN(3)], "MANUAL", atom
			a.Message = fmt.Sprintf("Listeners on %q: %s", atomName[atom], strings.ToLower(a.Action))
		case 5:
			a.AuditType, a.Action, a.Modifier = "account", "ON_ENTRY", "SUCCESS"
			a.Message = "User " + a.UserID + " signed in"
		case 6:
			a.AuditType, a.Action, a.Modifier = "user.token", []string{"ADD", "UPDATE", "DELETE"}[r.IntN(3)], "AUTHENTICATION"
			a.Message = fmt.Sprintf("API token %q %s", "ci-"+g.hex(4), strings.ToLower(a.Action))
		case 7:
			a.AuditType, a.Action, a.Modifier = "as.packaged.component", []string{"DELETE", "RESTORE"}[r.IntN(2)], "NONE"
			a.Message = fmt.Sprintf("Packaged component %s, version %d.0, %s", procName[proc], 1+r.IntN(5), strings.ToLower(a.Action)+"d")
			prop("VERSION_STRING", fmt.Sprintf("%d.0", 1+r.IntN(5)), "")
		default:
			a.AuditType, a.Action, a.Modifier = "as.environment", []string{"ATTACH", "DETACH", "DELETE", "UPDATE"}[weighted(r, 3, 1, 1, 3)], "NONE"
			a.Message = fmt.Sprintf("Environment %q: %s", envName[env], strings.ToLower(a.Action))
			if a.Action == "UPDATE" {
				prop("NEW_VALUE", envName[env]+" (renamed)", envName[env])
			}
			prop("ENVIRONMENT_ID", env, "")
		}
		d.AuditLogs = append(d.AuditLogs, a)
	}
	return d
}

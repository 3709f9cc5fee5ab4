package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"github.com/rogpeppe/go-internal/testscript"

	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/store"
)

// simstate schedule ATOM PROCESS enabled|disabled
// simstate listener ATOM LISTENER listening|paused
// simstate extension ENV CONNECTION FIELD VALUE
// simstate updates partial-only: every EnvironmentExtensions update the
// simulator received was partial.
func cmdScriptSimState(ts *testscript.TestScript, neg bool, args []string) {
	s := simOf(ts)
	if len(args) < 2 {
		ts.Fatalf("usage: simstate schedule|listener|extension|updates ...")
	}
	var ok bool
	var got string
	switch args[0] {
	case "schedule":
		if len(args) != 4 {
			ts.Fatalf("usage: simstate schedule ATOM PROCESS enabled|disabled")
		}
		en, found := s.ScheduleStatus(args[1], args[2])
		got = map[bool]string{true: "enabled", false: "disabled"}[en]
		ok = found && got == args[3]
	case "listener":
		if len(args) != 4 {
			ts.Fatalf("usage: simstate listener ATOM LISTENER STATUS")
		}
		got = s.ListenerState(args[1], args[2])
		ok = got == args[3]
	case "extension":
		if len(args) != 5 {
			ts.Fatalf("usage: simstate extension ENV CONNECTION FIELD VALUE")
		}
		x, found := s.Extensions(args[1])
		for _, c := range x.Connections {
			for _, f := range c.Fields {
				if found && c.ID == args[2] && f.ID == args[3] {
					got = f.Value
				}
			}
		}
		ok = got == args[4]
	case "updates":
		n := 0
		ok = true
		for _, u := range s.ExtensionUpdates() {
			n++
			ok = ok && u.Partial
		}
		got = fmt.Sprintf("%d updates, partial only: %v", n, ok)
		if args[1] != "partial-only" {
			ts.Fatalf("usage: simstate updates partial-only")
		}
	default:
		ts.Fatalf("simstate: unknown %q", args[0])
	}
	if ok == neg {
		ts.Fatalf("simstate %s: got %q", strings.Join(args, " "), got)
	}
}

// ledgerops DB: print each ledger row as "RUN OPERATION[ recovery]", oldest
// first, so a script can check the calls of a run and their order.
func cmdScriptLedgerOps(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: ledgerops DB")
	}
	db, err := scriptStore(ts, args[0], store.Options{ReadOnly: true})
	ts.Check(err)
	defer db.Close()
	calls, err := db.ListCalls(context.Background(), store.CallFilter{Status: -1})
	ts.Check(err)
	for i := len(calls) - 1; i >= 0; i-- {
		c := calls[i]
		line := strconv.FormatInt(c.RunID, 10) + " " + c.Operation
		if c.Recovery {
			line += " recovery"
		}
		fmt.Fprintln(ts.Stdout(), line)
	}
}

// siminject [-suffix] PATH STATUS [COUNT]: the next COUNT (default 1)
// requests whose path holds PATH (with -suffix: ends with it) are answered
// STATUS.
func cmdScriptSimInject(ts *testscript.TestScript, neg bool, args []string) {
	suffix := len(args) > 0 && args[0] == "-suffix"
	if suffix {
		args = args[1:]
	}
	if len(args) < 2 {
		ts.Fatalf("usage: siminject PATH STATUS [COUNT]")
	}
	status, err := strconv.Atoi(args[1])
	ts.Check(err)
	n := 1
	if len(args) > 2 {
		n, err = strconv.Atoi(args[2])
		ts.Check(err)
	}
	f := atomsim.Fault{Kind: atomsim.FaultStatus, Status: status, PathContains: args[0], Count: n}
	if suffix {
		f.PathContains, f.PathSuffix = "", args[0]
	}
	simOf(ts).Inject(f)
}

// Command runnerd runs Boomi AtomSphere chores on cron schedules and keeps the
// account inside its API rate and rolling 24-hour allowance.
//
// Usage: runnerd COMMAND [flags]; "runnerd help" lists the commands.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"

	"runnerd/internal/config"
	"runnerd/internal/engine"
)

// Exit codes, in one place (DESIGN 3.2).
const (
	exitOK      = 0
	exitFailed  = 1 // the work failed or was deferred
	exitUsage   = 2 // usage or configuration error
	defaultConf = "/etc/runnerd/jobs.toml"
)

// usageError marks a usage or configuration problem: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef returns a usage error.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// configErr turns the engine's configuration errors into usage errors
// (exit 2); others pass as they are.
func configErr(err error) error {
	var ce engine.ConfigError
	if errors.As(err, &ce) {
		return usageError{err}
	}
	return err
}

// exitCode maps an error returned by run to the process exit code.
func exitCode(err error) int {
	var ue usageError
	var ce engine.ConfigError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return exitOK
	case errors.As(err, &ue), errors.As(err, &ce):
		return exitUsage
	default:
		return exitFailed
	}
}

// env is what every subcommand gets: where to write and how to read the
// environment, so tests can run commands in-process.
type env struct {
	stdout, stderr io.Writer
	getenv         func(string) string
}

type command struct {
	summary string
	args    string // the synopsis after the flags
	run     func(ctx context.Context, e *env, args []string) error
}

var commands = map[string]command{
	"serve":    {"run the daemon", "", cmdServe},
	"validate": {"check the configuration; show next fire times and estimated cost", "", cmdValidate},
	"run":      {"run one job now (through the daemon when one is running)", " JOB", cmdRun},
	"release":  {"run a release job now; -dry-run: its steps, what each would change, the cost, and nothing changed", " JOB", cmdRelease},
	"plan":     {"what will run, when, at what cost, and the budget left after each hour", "", cmdPlan},
	"budget":   {"used and remaining calls in the rolling 24 hours, per hour", "", cmdBudget},
	"history":  {"runs: job, nominal time, state, calls, duration, error", "", cmdHistory},
	"calls":    {"the call ledger", "", cmdCalls},
	"logs":     {"print (or -o write) the process log or artifacts kept of a failed run", " RUN", cmdLogs},
	"audit":    {"query the audit-log records export jobs stored (no API calls); -coverage for gaps", "", cmdAudit},
	"pause":    {"pause a job (persisted)", " JOB", cmdPause},
	"resume":   {"resume a paused job", " JOB", cmdResume},

	"status":      {"is the daemon up, what is left, what runs now and next, what needs a person (exit 1: a problem)", "", cmdStatus},
	"resume-auth": {"close the daemon's auth breaker after the credential was fixed on the platform", "", cmdResumeAuth},
	"migrate":     {"apply database migrations", "", cmdMigrate},
	"backup":      {"write a consistent copy of the database", " FILE", cmdBackup},
	"check":       {"check the database file (-full: every page); read-only", "", cmdCheck},
	"sim":         {"serve the simulated AtomSphere API", "", cmdSim},
	"demo":        {"the simulator and the daemon together on jobs.example.toml", "", cmdDemo},
	"version":     {"print version, commit and Go version", "", cmdVersion},

	"notify-test": {"send a sample event to a [[notify]] target; -deliveries lists deliveries", " TARGET", cmdNotifyTest},
}

// synopsis is commands without their functions, for the usage lines (read in
// newFlagSet, which the functions call: built in init to keep the
// initialisation acyclic).
var synopsis map[string]command

func init() {
	synopsis = make(map[string]command, len(commands))
	for n, c := range commands {
		synopsis[n] = command{summary: c.summary, args: c.args}
	}
}

func main() { os.Exit(mainExit()) }

// mainExit runs the command line and returns the process exit code.
func mainExit() int {
	ctx, stop := signalContext()
	defer stop()
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	if err != nil && !errors.Is(err, errSilent) && !errors.Is(err, errHelp) {
		fmt.Fprintf(os.Stderr, "runnerd: %v\n", err)
	}
	return exitCode(err)
}

// signalContext is cancelled by the first SIGINT or SIGTERM. After it, the
// default action is restored: a second signal ends the process at once (SQLite's
// WAL keeps the database consistent).
func signalContext() (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop()
	}()
	return ctx, stop
}

// errSilent is returned when the command already told the user what went wrong.
var errSilent = errors.New("failed")

// run is main without the process: it parses args and runs one subcommand.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	e := &env{stdout: stdout, stderr: stderr, getenv: os.Getenv}
	if len(args) == 0 {
		printUsage(stderr)
		return usageError{errSilent}
	}
	if args[0] == "help" || args[0] == "-h" || args[0] == "--help" || args[0] == "-help" {
		if len(args) > 1 && commands[args[1]].run != nil { // runnerd help SUB
			return commands[args[1]].run(ctx, e, []string{"-h"})
		}
		printUsage(stdout)
		return nil
	}
	c, ok := commands[args[0]]
	if !ok {
		if s := closest(args[0]); s != "" {
			return usagef("unknown command %q; did you mean %q? (runnerd -h lists the commands)", args[0], s)
		}
		return usagef("unknown command %q (runnerd -h lists the commands)", args[0])
	}
	return c.run(ctx, e, args[1:])
}

// closest is the command name nearest to s, or "".
func closest(s string) string {
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return config.Suggest(s, names)
}

func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: runnerd COMMAND [flags]\n\ncommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-12s %s\n", n, commands[n].summary)
	}
	fmt.Fprintln(w, "\nEvery command takes -config FILE (default $RUNNERD_CONFIG, else "+defaultConf+").")
}

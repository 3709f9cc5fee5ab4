// Package audit turns the questions `runnerd audit` answers (who deployed,
// who ran what by hand, who signed in, who changed a schedule) into filters
// on the AuditLog records export jobs keep in the local store. It decides
// what a question means (atomsphere-api.md 4.2); the command line parses
// flags and prints.
package audit

import (
	"fmt"
	"slices"
	"strings"
	"time"

	"runnerd/internal/store"
)

// Shortcut is a named question: a type and the actions (any of) and
// modifier it maps to (atomsphere-api.md 4.2).
type Shortcut struct {
	Name     string
	Type     string
	Actions  []string
	Modifier string // "" = any
	Help     string
}

// Shortcuts are the named questions. deploys: 4.2 documents as.atom.process
// ATTACH/DETACH as deploy/undeploy, and a packaged deployment
// (DeployedPackage) is logged the same way (the record carries the
// ENVIRONMENT_ID and VERSION_STRING of the package); 4.2 lists no other type
// for deployments. as.packaged.component DELETE/RESTORE is a package's own
// life cycle, not a deployment, so it is not included (-type
// as.packaged.component asks for it).
var Shortcuts = []Shortcut{
	{"deploys", "as.atom.process", []string{"ATTACH", "DETACH"}, "",
		"deployments and undeployments, packaged ones included: type as.atom.process, action ATTACH or DETACH, any modifier"},
	{"manual-runs", "as.process.manual_execution", []string{"EXECUTE"}, "MANUAL",
		"processes run by hand: type as.process.manual_execution, action EXECUTE, modifier MANUAL"},
	{"logins", "account", []string{"ON_ENTRY"}, "SUCCESS",
		"sign-ins and account switches: type account, action ON_ENTRY, modifier SUCCESS"},
	{"schedule-changes", "as.schedules", []string{"UPDATE", "RESUME", "STOP"}, "",
		"schedule changes: type as.schedules, action UPDATE, RESUME or STOP, any modifier (NONE, ALL, SINGLE)"},
}

// Documented enums of AuditLog (atomsphere-api.md 4.2).
var (
	Levels  = []string{"DEBUG", "ERROR", "INFO", "WARNING"}
	Sources = []string{"API", "INTERNAL", "MOBILE", "UI", "UNKNOWN"}
)

// Query is a question as the operator asked it. Fields are compared as
// given except Action, Modifier, Level and Source, which are upper-cased
// (the platform's enums are).
type Query struct {
	User, Type, Action, Modifier, Level, Source, Container string
	Since, Until                                           time.Time // zero: open
	Property                                               string    // NAME or NAME=VALUE
	Text                                                   string
	Limit                                                  int      // 0: all
	Shortcuts                                              []string // names of Shortcuts chosen
}

// Filter checks q and turns it into a store filter, newest first with
// q.Limit. Each error names the flag (as -name) it is about.
func (q Query) Filter() (store.AuditFilter, error) {
	f := store.AuditFilter{
		UserID: q.User, Type: q.Type, Action: strings.ToUpper(q.Action), Modifier: strings.ToUpper(q.Modifier),
		Level: strings.ToUpper(q.Level), Source: strings.ToUpper(q.Source), ContainerID: q.Container,
		Text: q.Text, Since: q.Since, Until: q.Until, Newest: true, Limit: q.Limit,
	}
	if f.Level != "" && !slices.Contains(Levels, f.Level) {
		return f, fmt.Errorf("-level %q: want one of %s", q.Level, strings.Join(Levels, ", "))
	}
	if f.Source != "" && !slices.Contains(Sources, f.Source) {
		return f, fmt.Errorf("-source %q: want one of %s", q.Source, strings.Join(Sources, ", "))
	}
	if q.Limit < 0 {
		return f, fmt.Errorf("-limit %d: want 0 (all) or more", q.Limit)
	}
	if !f.Since.IsZero() && !f.Until.IsZero() && !f.Since.Before(f.Until) {
		return f, fmt.Errorf("-since %s is not before -until %s", f.Since.UTC().Format(time.RFC3339), f.Until.UTC().Format(time.RFC3339))
	}
	if q.Property != "" {
		name, value, _ := strings.Cut(q.Property, "=")
		if name == "" {
			return f, fmt.Errorf("-property %q: want NAME or NAME=VALUE", q.Property)
		}
		f.Property, f.PropertyValue = name, value
	}
	switch len(q.Shortcuts) {
	case 0:
		return f, nil
	case 1:
	default:
		return f, fmt.Errorf("-%s: choose one shortcut", strings.Join(q.Shortcuts, " and -"))
	}
	i := slices.IndexFunc(Shortcuts, func(s Shortcut) bool { return s.Name == q.Shortcuts[0] })
	if i < 0 {
		return f, fmt.Errorf("-%s: no such shortcut", q.Shortcuts[0])
	}
	s := Shortcuts[i]
	if f.Type != "" && f.Type != s.Type {
		return f, fmt.Errorf("-%s selects type %s; -type %s contradicts it", s.Name, s.Type, f.Type)
	}
	f.Type = s.Type
	if f.Action != "" && !slices.Contains(s.Actions, f.Action) {
		return f, fmt.Errorf("-%s selects action %s; -action %s contradicts it", s.Name, strings.Join(s.Actions, " or "), f.Action)
	}
	if f.Action == "" {
		f.Actions = s.Actions
	}
	if s.Modifier != "" {
		if f.Modifier != "" && f.Modifier != s.Modifier {
			return f, fmt.Errorf("-%s selects modifier %s; -modifier %s contradicts it", s.Name, s.Modifier, f.Modifier)
		}
		f.Modifier = s.Modifier
	}
	return f, nil
}

// Narrows reports whether anything but the limit narrows q: then an answer
// may be incomplete where the store has gaps, and the caller says so.
func (q Query) Narrows() bool {
	for _, s := range []string{q.User, q.Type, q.Action, q.Modifier, q.Level, q.Source, q.Container, q.Property, q.Text} {
		if s != "" {
			return true
		}
	}
	return !q.Since.IsZero() || !q.Until.IsZero() || len(q.Shortcuts) > 0
}

// OnlyTime reports whether f selects by nothing but its time range (what a
// coverage report accepts: coverage is per range, not per user or type).
func OnlyTime(f store.AuditFilter) bool {
	return f.UserID == "" && f.Type == "" && f.Action == "" && f.Modifier == "" && f.Level == "" && f.Source == "" &&
		f.ContainerID == "" && len(f.Actions) == 0 && f.Property == "" && f.Text == ""
}

package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

const oversubConfig = `
[account]
id = "a"
user = "u"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000
reserve = 100

[store]
path = "never-created.db"

[[job]]
name = "deploy-hi"
kind = "deploy"
schedule = "0 * * * *"
priority = "high"
process_id = "p"
from_environment = "a"
to_environment = "b"

[[job]]
name = "orders"
kind = "execute"
schedule = "*/5 * * * *"
process_id = "p"
atom_id = "a"

[[job]]
name = "audit"
kind = "export"
schedule = "*/10 * * * *"
priority = "low"
object = "AuditLog"
window_property = "date"
output = "x/{job}/{window_start}.jsonl"
`

// TestValidateStrictOversubscribed: a schedule of about 3 times the
// allowance is named per priority by validate and plan; validate exits 0,
// validate -strict 1; a schedule that fits passes -strict.
func TestValidateStrictOversubscribed(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "x")
	dir := t.TempDir()
	t.Chdir(dir)
	conf := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(conf, []byte(oversubConfig), 0o600); err != nil {
		t.Fatal(err)
	}
	out, _, err := runCmd(t, "validate", "-config", conf)
	if err != nil {
		t.Fatalf("validate: %v", err)
	}
	for _, want := range []string{"normal priority: about 2016 calls a day needed by orders; 804 left",
		"low priority: about 720 calls a day needed by audit; 0 left after higher priorities: none of their runs can run"} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, err := runCmd(t, "validate", "-strict", "-config", conf); !errors.Is(err, errSilent) || !strings.Contains(errOut, "2 priority class(es)") {
		t.Errorf("validate -strict = %v, %q; want exit 1 naming 2 classes", err, errOut)
	}
	out, _, err = runCmd(t, "validate", "-strict", "-json", "-config", conf)
	if !errors.Is(err, errSilent) || !strings.Contains(out, `"oversubscribed":[{"available":804,"calls_per_day":2016,"jobs":["orders"],"priority":"normal"}`) {
		t.Errorf("validate -strict -json = %v:\n%s", err, out)
	}
	out, _, err = runCmd(t, "plan", "-config", conf, "-hours", "1")
	if err != nil || !strings.Contains(out, "over-subscribed: low priority") {
		t.Errorf("plan = %v:\n%s\nwant the over-subscribed classes named", err, out)
	}
	fits := strings.Replace(oversubConfig, "daily_limit = 1000", "daily_limit = 100000", 1)
	if err := os.WriteFile(conf, []byte(fits), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, "validate", "-strict", "-config", conf); err != nil || strings.Contains(out, "priority:") {
		t.Errorf("validate -strict on a schedule that fits = %v:\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "never-created.db")); err == nil {
		t.Error("validate or plan created the database")
	}
}

// TestPlanForeseesRecoveryLookups: plan counts the open unknown runs (not the
// flagged ones) and foresees their lookups; those the reserve cannot hold
// come first in the plan, as high-priority work.
func TestPlanForeseesRecoveryLookups(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "x")
	dir := t.TempDir()
	t.Chdir(dir)
	conf := filepath.Join(dir, "jobs.toml")
	cfgText := strings.Replace(strings.Replace(oversubConfig, "daily_limit = 1000", "daily_limit = 100000", 1),
		`path = "never-created.db"`, `path = "runnerd.db"`, 1)
	if err := os.WriteFile(conf, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	seedUnknown := func(reserve int) {
		t.Helper()
		text := strings.Replace(cfgText, "reserve = 100", fmt.Sprintf("reserve = %d", reserve), 1)
		if err := os.WriteFile(conf, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	db, err := store.Open(ctx, filepath.Join(dir, "runnerd.db"), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	for i := range 4 {
		r, _, err := db.CreateRun(ctx, runnerd.Run{Job: "orders", Kind: "execute", NominalTime: nominal.Add(time.Duration(i) * time.Hour),
			State: runnerd.StateUnknown})
		if err != nil {
			t.Fatal(err)
		}
		if i == 3 {
			r.Detail = `{"flagged":true}`
			if err := db.UpdateRun(ctx, r); err != nil {
				t.Fatal(err)
			}
		}
	}
	db.Close()

	out, _, err := runCmd(t, "plan", "-config", conf, "-hours", "1")
	if err != nil || !strings.Contains(out, "recovery: 3 unknown runs to reconcile: about 6 lookups foreseen, which may use the reserve of 100\n") {
		t.Errorf("plan = %v:\n%s\nwant 3 unknown runs (the flagged one left out), 6 lookups from the reserve", err, out)
	}
	seedUnknown(4)
	out, _, err = runCmd(t, "plan", "-config", conf, "-hours", "1")
	if err != nil || !strings.Contains(out, "the 2 beyond what is left of it are planned first") ||
		!strings.Contains(out, "reconciliation") {
		t.Errorf("plan with reserve 4 = %v:\n%s\nwant 2 lookups beyond the reserve, planned as reconciliation", err, out)
	}
}

// TestReadOnlyCommandsNeverCreateTheLedger: with no database at [store]
// path, the commands that only read create none: history, calls, budget
// and audit refuse (exit 2, naming the path); plan and validate answer from
// the configuration alone. Nothing appears in the directory.
func TestReadOnlyCommandsNeverCreateTheLedger(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "x")
	dir := t.TempDir()
	t.Chdir(dir)
	conf := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(conf, []byte(strings.Replace(oversubConfig, "daily_limit = 1000", "daily_limit = 100000", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"history"}, {"calls"}, {"budget"}, {"audit"}, {"audit", "-coverage"}} {
		_, errOut, err := runCmd(t, append(args, "-config", conf)...)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error()+errOut, "never-created.db") {
			t.Errorf("runnerd %s with no ledger = %v; want a usage error (exit 2) naming the file", strings.Join(args, " "), err)
		}
	}
	for _, args := range [][]string{{"plan"}, {"validate"}} {
		if _, _, err := runCmd(t, append(args, "-config", conf)...); err != nil {
			t.Errorf("runnerd %s with no ledger = %v; want an answer from the configuration", strings.Join(args, " "), err)
		}
	}
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.Name() != "jobs.toml" {
			t.Errorf("a read-only command created %s", e.Name())
		}
	}
}

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// TestHistoryShowsLookups: `runnerd history` says how many of a run's calls
// were reconciliation's recovery lookups (table and -json), and nothing for
// a run that had none.
func TestHistoryShowsLookups(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "runnerd.db")
	conf := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`
[account]
id = "sim-account"
url = "http://127.0.0.1:1/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000

[store]
path = %q

[[job]]
name = "exec"
kind = "execute"
schedule = "@hourly"
process_id = "proc-orders"
atom_id = "atom-prod"
`, dbPath)), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("RUNNERD_PASSWORD", "x")
	ctx := context.Background()
	db, err := store.Open(ctx, dbPath, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	nominal := time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)
	reconciled, _, err := db.CreateRun(ctx, runnerd.Run{Job: "exec", Kind: "execute", NominalTime: nominal})
	if err != nil {
		t.Fatal(err)
	}
	plain, _, err := db.CreateRun(ctx, runnerd.Run{Job: "exec", Kind: "execute", NominalTime: nominal.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []store.Call{{RunID: reconciled.ID, Job: "exec"}, {RunID: reconciled.ID, Job: "exec", Recovery: true},
		{RunID: reconciled.ID, Job: "exec", Recovery: true}, {RunID: plain.ID, Job: "exec"}} {
		if _, err := db.BeginCall(ctx, c); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()

	out, _, err := runCmd(t, "history", "-config", conf)
	if err != nil {
		t.Fatalf("history: %v", err)
	}
	lines := strings.Split(out, "\n")
	var gotReconciled, gotPlain string
	for _, l := range lines {
		f := strings.Fields(l)
		if len(f) > 0 && f[0] == fmt.Sprint(reconciled.ID) {
			gotReconciled = l
		}
		if len(f) > 0 && f[0] == fmt.Sprint(plain.ID) {
			gotPlain = l
		}
	}
	if !strings.Contains(gotReconciled, "3 (2 lookups)") {
		t.Errorf("history row of the reconciled run = %q; want its calls as \"3 (2 lookups)\"\n%s", gotReconciled, out)
	}
	if gotPlain == "" || strings.Contains(gotPlain, "lookups") {
		t.Errorf("history row of the plain run = %q; want no lookups\n%s", gotPlain, out)
	}
	out, _, err = runCmd(t, "history", "-config", conf, "-json")
	if err != nil {
		t.Fatalf("history -json: %v", err)
	}
	if !strings.Contains(out, `"calls":3,"lookups":2,`) || strings.Count(out, `"lookups"`) != 1 {
		t.Errorf("history -json =\n%s\nwant \"lookups\":2 on the reconciled run only", out)
	}
}

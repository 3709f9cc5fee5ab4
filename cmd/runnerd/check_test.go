package main

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"runnerd/internal/store"
)

// TestCheckCommand: runnerd check passes a sound ledger (cheap and -full);
// damage inside a table's page passes the cheap check and is found by -full
// (exit 2 naming the file); a damaged header is refused without -full; the
// file is never changed.
func TestCheckCommand(t *testing.T) {
	t.Setenv("RUNNERD_PASSWORD", "x")
	dir := t.TempDir()
	t.Chdir(dir)
	conf := filepath.Join(dir, "jobs.toml")
	cfgText := strings.Replace(oversubConfig, `path = "never-created.db"`, `path = "runnerd.db"`, 1)
	if err := os.WriteFile(conf, []byte(cfgText), 0o600); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "runnerd.db")
	ctx := context.Background()
	db, err := store.Open(ctx, path, store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	for range 200 {
		if _, err := db.BeginCall(ctx, store.Call{Job: "orders", Method: "POST", Path: "/Process/query", Error: strings.Repeat("x", 200)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Checkpoint(ctx); err != nil {
		t.Fatal(err)
	}
	db.Close()
	for _, args := range [][]string{{"check"}, {"check", "-full"}} {
		out, _, err := runCmd(t, append(args, "-config", conf)...)
		if err != nil || !strings.Contains(out, "runnerd.db: ok") {
			t.Fatalf("runnerd %s on a sound ledger = %v, %q; want ok", strings.Join(args, " "), err, out)
		}
	}

	// Damage the calls table's root page (its cell area), as a bad disk would.
	raw, err := sql.Open("sqlite3", path+"?mode=ro")
	if err != nil {
		t.Fatal(err)
	}
	var ps, root int
	raw.QueryRow("PRAGMA page_size").Scan(&ps)
	raw.QueryRow("SELECT rootpage FROM sqlite_schema WHERE name = 'calls'").Scan(&root)
	raw.Close()
	if ps == 0 || root == 0 {
		t.Fatalf("page size %d, calls root page %d", ps, root)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for i := root*ps - ps/2; i < root*ps; i++ {
		b[i] = 0xA5
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, _, err := runCmd(t, "check", "-config", conf); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("cheap check of page damage = %v, %q; want ok (only -full reads every page)", err, out)
	}
	_, _, err = runCmd(t, "check", "-full", "-config", conf)
	var ue usageError
	if !errors.As(err, &ue) || !errors.Is(err, store.ErrCorrupt) || !strings.Contains(err.Error(), "runnerd.db") {
		t.Errorf("check -full of page damage = %v; want exit 2, ErrCorrupt naming runnerd.db", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
		t.Error("check changed the damaged file")
	}

	// A damaged header: refused at open, without -full.
	copy(b[16:], []byte{0xff, 0xff, 0xff})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, _, err := runCmd(t, "check", "-config", conf); !errors.As(err, &ue) {
		t.Errorf("check of a damaged header = %v; want exit 2", err)
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, b) {
		t.Error("check changed the file with a damaged header")
	}
}

package main

import (
	"bytes"
	"context"
	"database/sql"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A database whose schema is newer than the binary is refused by every command
// that opens it, with exit code 2 and a message naming the file; the file is
// not changed.
func TestSchemaNewerExit2(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "jobs.toml")
	dbPath := filepath.Join(dir, "runnerd.db")
	conf := "[account]\nid = \"a\"\nuser = \"u\"\npassword_env = \"PW\"\n[budget]\ndaily_limit = 100\n[store]\npath = " +
		`"` + dbPath + `"` + "\n"
	if err := os.WriteFile(cfg, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	var out, errb bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "-config", cfg}, &out, &errb); err != nil {
		t.Fatalf("migrate: %v (%s)", err, errb.String())
	}
	db, err := sql.Open("sqlite3", dbPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.Exec(`INSERT INTO schema_migrations (version, name, applied_at) VALUES (9999, '9999_future.sql', 0)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	before, _ := os.ReadFile(dbPath)
	for _, cmd := range [][]string{{"history"}, {"calls"}, {"budget"}, {"migrate"}, {"backup", filepath.Join(dir, "b.db")}} {
		args := append([]string{cmd[0], "-config", cfg}, cmd[1:]...)
		err := run(context.Background(), args, &out, &errb)
		if code := exitCode(err); code != exitUsage || !strings.Contains(err.Error(), "runnerd.db") || !strings.Contains(err.Error(), "newer") {
			t.Errorf("runnerd %s: exit %d, %v; want exit 2 naming the file and saying it is newer", cmd[0], code, err)
		}
	}
	if after, _ := os.ReadFile(dbPath); !bytes.Equal(before, after) {
		t.Errorf("the refused database file was changed")
	}
}

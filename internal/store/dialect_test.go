package store

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"runnerd/internal/pgtest"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// testOnPostgres reports whether this run tests the PostgreSQL store:
// RUNNERD_TEST_STORE=postgres makes MustOpenDB open a fresh PostgreSQL
// database (internal/pgtest) instead of a SQLite file, so that every test
// written against MustOpenDB runs against both (.ci/run runs the package
// twice). Tests of SQLite's file (integrity, pragmas, backups, query plans)
// call sqliteOnly.
func testOnPostgres() bool { return os.Getenv("RUNNERD_TEST_STORE") == "postgres" }

// sqliteOnly skips a test of the SQLite file itself in a PostgreSQL run.
func sqliteOnly(tb testing.TB) {
	tb.Helper()
	if testOnPostgres() {
		tb.Skip("a test of the SQLite file; this run tests the PostgreSQL store")
	}
}

func TestPgTranslate(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`SELECT a FROM t WHERE b = ? AND c = ?`, `SELECT a FROM t WHERE b = $1 AND c = $2`},
		{`UPDATE t SET a = ?2 WHERE id = ?1 AND b = ?2`, `UPDATE t SET a = $2 WHERE id = $1 AND b = $2`},
		{`SELECT '?' , "a?b", ? FROM t WHERE m LIKE ? ESCAPE '\'`, `SELECT '?' , "a?b", $1 FROM t WHERE m ILIKE $2 ESCAPE '\'`},
		{`SELECT 'it''s ?', ?`, `SELECT 'it''s ?', $1`},
		{`SELECT likeness FROM t WHERE unlike = ?`, `SELECT likeness FROM t WHERE unlike = $1`},
	} {
		if got := pgTranslate(c.in); got != c.want {
			t.Errorf("pgTranslate(%s)\n= %s\nwant %s", c.in, got, c.want)
		}
	}
}

// TestPostgresOpenNamesNoPassword: a PostgreSQL ledger that cannot be
// reached is refused with the URL named, and neither the password given
// apart (Options.Password) nor one in the URL appears in the error.
func TestPostgresOpenNamesNoPassword(t *testing.T) {
	port := pgtest.Get(t).Port()
	// A port nothing listens on: the server's, plus one, is refused on a
	// loopback where nothing else runs there.
	for _, loc := range []string{
		fmt.Sprintf("postgres://runnerd@127.0.0.1:%d/x?connect_timeout=2", port+1),
		fmt.Sprintf("postgres://runnerd:canary-url@127.0.0.1:%d/x?connect_timeout=2", port+1),
	} {
		_, err := Open(context.Background(), loc, Options{Password: "canary-pw"})
		if err == nil {
			t.Fatalf("Open(%s) = nil error", RedactURL(loc))
		}
		if strings.Contains(err.Error(), "canary") {
			t.Errorf("the error shows a password: %v", err)
		}
		if !strings.Contains(err.Error(), "store: open postgres://runnerd") {
			t.Errorf("the error does not name the ledger: %v", err)
		}
	}
	if got, want := RedactURL("postgres://u:pw@h/db?password=pw2"), "postgres://u:xxxxx@h/db?password=xxxxx"; got != want {
		t.Errorf("RedactURL = %s; want %s", got, want)
	}
}

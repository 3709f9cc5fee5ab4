package pgtest

import (
	"context"
	"database/sql"
	"testing"
)

func TestMain(m *testing.M) { Main(m) }

// TestServer: a database of its own answers, and is gone after the test.
func TestServer(t *testing.T) {
	var url string
	t.Run("db", func(t *testing.T) {
		url = NewDatabase(t)
		db, err := sql.Open("pgx", url)
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		var v string
		if err := db.QueryRowContext(context.Background(), "SHOW server_version").Scan(&v); err != nil {
			t.Fatal(err)
		}
		t.Logf("PostgreSQL %s on port %d", v, Get(t).Port())
		if _, err := db.Exec("CREATE TABLE x (a bigint)"); err != nil {
			t.Fatal(err)
		}
	})
	db, err := sql.Open("pgx", url)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Ping(); err == nil {
		t.Fatalf("the test's database %s is still there after the test", url)
	}
}

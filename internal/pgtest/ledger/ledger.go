// Package ledger opens a test's ledger on either store: a SQLite file, or —
// with RUNNERD_TEST_STORE=postgres, as .ci/run's second pass sets — a fresh
// PostgreSQL database on the test binary's server (internal/pgtest). A
// package whose tests use it calls pgtest.Main from its TestMain.
package ledger

import (
	"context"
	"os"
	"testing"

	"runnerd/internal/pgtest"
	"runnerd/internal/store"
)

// OnPostgres reports whether this run tests the PostgreSQL store.
func OnPostgres() bool { return os.Getenv("RUNNERD_TEST_STORE") == "postgres" }

// Open opens the ledger at path for tb, or, on PostgreSQL, a database of
// tb's own (path is then only the SQLite name it stands for: the same path
// opened twice in one test is the same database).
func Open(tb testing.TB, path string, opts store.Options) (*store.DB, error) {
	tb.Helper()
	if !OnPostgres() {
		return store.Open(context.Background(), path, opts)
	}
	return store.Open(context.Background(), urlFor(tb, path), opts)
}

// urls maps a test's SQLite paths to its databases.
var urls = map[string]string{}

func urlFor(tb testing.TB, path string) string {
	tb.Helper()
	key := tb.Name() + "\x00" + path
	if u, ok := urls[key]; ok {
		return u
	}
	u := pgtest.NewDatabase(tb)
	urls[key] = u
	tb.Cleanup(func() { delete(urls, key) })
	return u
}

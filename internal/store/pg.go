package store

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/stdlib"
)

// IsPostgresURL reports whether a store location is a PostgreSQL URL rather
// than a SQLite file name.
func IsPostgresURL(loc string) bool {
	return strings.HasPrefix(loc, "postgres://") || strings.HasPrefix(loc, "postgresql://")
}

// RedactURL returns loc with any password replaced by "xxxxx": what the store
// names in its messages (a PostgreSQL URL may carry one; a file name never).
func RedactURL(loc string) string {
	if !IsPostgresURL(loc) {
		return loc
	}
	u, err := url.Parse(loc)
	if err != nil {
		return "postgres://(a URL that does not parse)"
	}
	q := u.Query()
	if q.Has("password") {
		q.Set("password", "xxxxx")
		u.RawQuery = q.Encode()
	}
	return u.Redacted()
}

// OpenPostgres opens the ledger in the PostgreSQL database at url (what
// [store] url names; issue 21), checks that it answers, and applies pending
// migrations (migrations/postgres) unless opts.NoMigrate. The tables are the
// SQLite ledger's, column for column; the store's methods are the same.
//
// What differs from a file: there is no file to check or mark (the server
// keeps its own integrity; Options.Daemon, FullCheck and Synchronous are
// SQLite's), writes are not funnelled through one connection (PostgreSQL
// serialises what must be: unique keys, and the advisory locks of the rules
// that need them), and ReadOnly opens read-only transactions.
//
// A password is never part of an error: the URL is named redacted.
func OpenPostgres(ctx context.Context, loc string, opts Options) (*DB, error) {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	name := RedactURL(loc)
	cc, err := pgx.ParseConfig(loc)
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %s", name, redactErr(err, loc))
	}
	if opts.Password != "" {
		cc.Password = opts.Password
	}
	if opts.Instance != "" {
		cc.RuntimeParams["application_name"] = opts.Instance
	}
	conns := stdlib.OpenDB(*cc)
	conns.SetMaxOpenConns(8)
	conns.SetMaxIdleConns(8)
	p := &pool{DB: conns, pg: true}
	db := &DB{path: name, now: opts.Now, busy: opts.BusyTimeout, writer: p, reader: p, pg: true, readOnly: opts.ReadOnly}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.NoMigrate && !opts.ReadOnly {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// redactErr is err's text with loc's password, if any, taken out: a driver
// may quote the connection string.
func redactErr(err error, loc string) string {
	s := err.Error()
	if u, perr := url.Parse(loc); perr == nil {
		if pw, ok := u.User.Password(); ok && pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
		if pw := u.Query().Get("password"); pw != "" {
			s = strings.ReplaceAll(s, pw, "xxxxx")
		}
	}
	return s
}

// IsPostgres reports whether db is a PostgreSQL ledger.
func (db *DB) IsPostgres() bool { return db.pg }

// errPostgres is returned by the SQLite file operations on a PostgreSQL
// ledger.
var errPostgres = errors.New("not for a PostgreSQL ledger (use the server's own tools: pg_dump, amcheck)")

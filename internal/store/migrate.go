package store

import (
	"context"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"

	"runnerd/migrations"
)

// migration is one embedded NNNN_name.sql file.
type migration struct {
	version int
	name    string // file name
	sql     string
}

var (
	loadOnce sync.Once
	loaded   []migration
	loadErr  error
	embedded = migrations.FS

	pgLoadOnce sync.Once
	pgLoaded   []migration
	pgLoadErr  error
)

// allMigrations returns the embedded migrations in version order. The set is
// fixed at build time, so it is read once.
func allMigrations() ([]migration, error) {
	loadOnce.Do(func() { loaded, loadErr = readMigrations(embedded) })
	return loaded, loadErr
}

// pgMigrations are the PostgreSQL twins (migrations/postgres), version for
// version.
func pgMigrations() ([]migration, error) {
	pgLoadOnce.Do(func() {
		sub, err := fs.Sub(migrations.PostgresFS, "postgres")
		if err != nil {
			pgLoadErr = err
			return
		}
		pgLoaded, pgLoadErr = readMigrations(sub)
	})
	return pgLoaded, pgLoadErr
}

// migrations returns db's dialect's migrations.
func (db *DB) migrations() ([]migration, error) {
	if db.pg {
		return pgMigrations()
	}
	return allMigrations()
}

func (db *DB) latestVersion() int {
	ms, _ := db.migrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

func (db *DB) migrationByVersion(v int) (migration, bool) {
	ms, _ := db.migrations()
	for _, m := range ms {
		if m.version == v {
			return m, true
		}
	}
	return migration{}, false
}

func readMigrations(fsys fs.FS) ([]migration, error) {
	names, err := fs.Glob(fsys, "*.sql")
	if err != nil {
		return nil, err
	}
	var ms []migration
	seen := map[int]string{}
	for _, name := range names {
		num, _, ok := strings.Cut(path.Base(name), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || len(num) != 4 {
			return nil, fmt.Errorf("store: migration %s: want a name like 0001_name.sql", name)
		}
		if prev, dup := seen[v]; dup {
			return nil, fmt.Errorf("store: migrations %s and %s share version %d", prev, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, name)
		if err != nil {
			return nil, fmt.Errorf("store: migration %s: %w", name, err)
		}
		ms = append(ms, migration{version: v, name: name, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].version < ms[j].version })
	return ms, nil
}

// qTableExists counts the tables named ?1 (0 or 1).
var qTableExists = pgQuery(`SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1`,
	`SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = $1`)

func latestVersion() int {
	ms, _ := allMigrations()
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].version
}

func migrationByVersion(v int) (migration, bool) {
	ms, _ := allMigrations()
	for _, m := range ms {
		if m.version == v {
			return m, true
		}
	}
	return migration{}, false
}

var createSchemaMigrations = pgQuery(`CREATE TABLE IF NOT EXISTS schema_migrations (
	version    INTEGER PRIMARY KEY,
	name       TEXT    NOT NULL,
	applied_at INTEGER NOT NULL -- unix ms UTC
) STRICT`, `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    BIGINT PRIMARY KEY,
	name       TEXT   NOT NULL,
	applied_at BIGINT NOT NULL -- unix ms UTC
)`)

// pgMigrateLock is the advisory lock (pg_advisory_xact_lock) that makes
// PostgreSQL migrations one at a time across hosts, as SQLite's write lock
// does on one: each file re-checks schema_migrations under it.
const pgMigrateLock = 0x72756e6e6d6967 // "runnmig"

// Migrate applies the pending migrations, each file in its own transaction
// recorded in schema_migrations, and returns the names of those it applied.
// It is idempotent and safe against a second process migrating at the same
// time (each file re-checks under the write lock).
func (db *DB) Migrate(ctx context.Context) (applied []string, err error) {
	ms, err := db.migrations()
	if err != nil {
		return nil, err
	}
	done, err := db.appliedVersions(ctx)
	if err != nil {
		return nil, fmt.Errorf("store: migrate %s: %w", db.path, err)
	}
	have := map[int]bool{}
	for _, v := range done {
		if _, ok := db.migrationByVersion(v); !ok {
			return nil, fmt.Errorf("%w: %s has schema version %d, this binary knows up to %d: "+
				"run a newer runnerd; the file was not changed", ErrSchemaTooNew, db.path, maxInt(done), db.latestVersion())
		}
		have[v] = true
	}
	for _, m := range ms {
		if have[m.version] {
			continue
		}
		ok, err := db.migrateFile(ctx, m)
		if err != nil {
			return applied, fmt.Errorf("store: migrate %s: %s: %w", db.path, m.name, err)
		}
		if ok {
			applied = append(applied, m.name)
		}
	}
	return applied, nil
}

// migrateFile applies one migration unless it is already recorded, and
// reports whether it did.
func (db *DB) migrateFile(ctx context.Context, m migration) (bool, error) {
	tx, err := db.begin(ctx)
	if err != nil {
		return false, err
	}
	defer tx.Rollback()
	if db.pg {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(?)`, int64(pgMigrateLock)); err != nil {
			return false, err
		}
	}
	if _, err := tx.ExecContext(ctx, createSchemaMigrations); err != nil {
		return false, err
	}
	var n int
	if err := tx.QueryRowContext(ctx, `SELECT count(*) FROM schema_migrations WHERE version = ?`, m.version).Scan(&n); err != nil {
		return false, err
	}
	if n > 0 {
		return false, nil
	}
	if _, err := tx.ExecContext(ctx, m.sql); err != nil {
		return false, err
	}
	if _, err := tx.ExecContext(ctx, `INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)`,
		m.version, m.name, tx.now.UnixMilli()); err != nil {
		return false, err
	}
	return true, tx.Commit()
}

// appliedVersions lists the versions recorded in schema_migrations (none if
// the table does not exist yet). It reads through the writer so that it works
// before the first migration and sees the writer's own commits.
func (db *DB) appliedVersions(ctx context.Context) ([]int, error) {
	var exists int
	err := db.writer.QueryRowContext(ctx, qTableExists, "schema_migrations").Scan(&exists)
	if err != nil {
		return nil, err
	}
	if exists == 0 {
		return nil, nil
	}
	rows, err := db.writer.QueryContext(ctx, `SELECT version FROM schema_migrations ORDER BY version`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var vs []int
	for rows.Next() {
		var v int
		if err := rows.Scan(&v); err != nil {
			return nil, err
		}
		vs = append(vs, v)
	}
	return vs, rows.Err()
}

// SchemaVersion returns the highest migration applied to the database and the
// highest this binary knows.
func (db *DB) SchemaVersion(ctx context.Context) (current, latest int, err error) {
	vs, err := db.appliedVersions(ctx)
	if err != nil {
		return 0, 0, fmt.Errorf("store: schema version: %w", err)
	}
	if _, err := db.migrations(); err != nil {
		return 0, 0, err
	}
	return maxInt(vs), db.latestVersion(), nil
}

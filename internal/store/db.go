package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/mattn/go-sqlite3"
)

// Defaults for Options.
const (
	DefaultBusyTimeout = 5 * time.Second
	DefaultSynchronous = "FULL"
	// DefaultRetention is the age beyond which call rows are pruned when the
	// caller has no setting of its own (DESIGN 3.3). Rollups are kept.
	DefaultRetention = 90 * 24 * time.Hour
)

// Sentinel errors. They are wrapped with the file name and what to do; test
// them with errors.Is.
var (
	// ErrSchemaTooNew means the database holds migrations this binary does not
	// know: it was written by a newer runnerd.
	ErrSchemaTooNew = errors.New("store: database schema is newer than this runnerd")
	// ErrCorrupt means SQLite reports the file as damaged or not a database.
	// The file is never deleted or changed.
	ErrCorrupt = errors.New("store: database file is corrupt")
	// ErrNotFound means the run, call or key does not exist.
	ErrNotFound = errors.New("store: not found")
)

// Options tune Open. The zero value is the production setting.
type Options struct {
	// Now is the clock used for default timestamps; time.Now if nil.
	Now func() time.Time
	// BusyTimeout is how long a write waits for another writer (another
	// process) before failing with SQLITE_BUSY; DefaultBusyTimeout if zero.
	BusyTimeout time.Duration
	// Synchronous is "FULL" (default: a commit survives power loss) or
	// "NORMAL" (survives a process crash only; for benchmarks).
	Synchronous string
	// NoMigrate opens without applying pending migrations (runnerd migrate
	// applies them explicitly). A schema newer than the binary is refused
	// either way.
	NoMigrate bool
}

// DB is runnerd's ledger. All writes go through one connection (SQLite has one
// writer anyway, and queueing in-process is cheaper and clearer than
// SQLITE_BUSY); reads use a separate pool and never wait for the writer (WAL).
type DB struct {
	path   string
	now    func() time.Time
	busy   time.Duration
	writer *sql.DB // MaxOpenConns 1
	reader *sql.DB
}

// Open opens (creating if needed) the ledger at path, checks it, and applies
// pending migrations unless opts.NoMigrate. A corrupt file is refused with
// ErrCorrupt, a newer schema with ErrSchemaTooNew; in both cases the file is
// left exactly as it was.
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if path == "" || path == ":memory:" || strings.HasPrefix(path, "file:") {
		return nil, fmt.Errorf("store: open %q: need a file path (not :memory: or a URI)", path)
	}
	if strings.ContainsAny(path, "?#") {
		return nil, fmt.Errorf("store: open %q: the path must not contain '?' or '#'", path)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.BusyTimeout <= 0 {
		opts.BusyTimeout = DefaultBusyTimeout
	}
	sync := strings.ToUpper(opts.Synchronous)
	if sync == "" {
		sync = DefaultSynchronous
	}
	if sync != "FULL" && sync != "NORMAL" {
		return nil, fmt.Errorf("store: open %s: synchronous %q: want FULL or NORMAL", path, opts.Synchronous)
	}

	busy := strconv.FormatInt(opts.BusyTimeout.Milliseconds(), 10)
	// Order matters in go-sqlite3: _journal_mode=WAL silently lowers
	// synchronous to NORMAL unless _synchronous is also given.
	wq := url.Values{}
	wq.Set("_journal_mode", "WAL")
	wq.Set("_synchronous", sync)
	wq.Set("_busy_timeout", busy)
	wq.Set("_txlock", "immediate")
	wq.Set("_foreign_keys", "1")
	writer, err := sql.Open("sqlite3", path+"?"+wq.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	writer.SetMaxOpenConns(1)
	writer.SetMaxIdleConns(1)
	writer.SetConnMaxLifetime(0)
	writer.SetConnMaxIdleTime(0)

	rq := url.Values{}
	rq.Set("_busy_timeout", busy)
	rq.Set("_txlock", "deferred")
	rq.Set("_foreign_keys", "1")
	rq.Set("_query_only", "1")
	reader, err := sql.Open("sqlite3", path+"?"+rq.Encode())
	if err != nil {
		writer.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	reader.SetMaxOpenConns(4)
	reader.SetMaxIdleConns(4)

	db := &DB{path: path, now: opts.Now, busy: opts.BusyTimeout, writer: writer, reader: reader}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.NoMigrate {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	return db, nil
}

// check connects (which sets the journal mode), runs quick_check and refuses
// a schema the binary does not know. It writes nothing.
func (db *DB) check(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return db.openError(err)
	}
	problems, err := db.quickCheck(ctx)
	if err != nil {
		return db.openError(err)
	}
	if problems != "ok" {
		return fmt.Errorf("%w: %s: quick_check reports: %s; the file was left in place: "+
			"restore it from a backup (runnerd backup FILE) or move it aside to start an empty ledger",
			ErrCorrupt, db.path, firstLines(problems, 5))
	}
	known, err := db.appliedVersions(ctx)
	if err != nil {
		return db.openError(err)
	}
	latest := latestVersion()
	for _, v := range known {
		if _, ok := migrationByVersion(v); !ok {
			return fmt.Errorf("%w: %s has schema version %d, this binary knows up to %d: "+
				"run a newer runnerd, or restore a backup made by this version; the file was not changed",
				ErrSchemaTooNew, db.path, maxInt(known), latest)
		}
	}
	return nil
}

func (db *DB) quickCheck(ctx context.Context) (string, error) {
	rows, err := db.writer.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return "", err
	}
	return joinRows(rows)
}

// openError turns a failure while opening into ErrCorrupt when SQLite says so.
func (db *DB) openError(err error) error {
	if isCorrupt(err) {
		return fmt.Errorf("%w: %s: %v; the file was left in place: "+
			"restore it from a backup (runnerd backup FILE) or move it aside to start an empty ledger",
			ErrCorrupt, db.path, err)
	}
	return fmt.Errorf("store: open %s: %w", db.path, err)
}

func isCorrupt(err error) bool {
	var se sqlite3.Error
	if errors.As(err, &se) {
		return se.Code == sqlite3.ErrCorrupt || se.Code == sqlite3.ErrNotADB
	}
	return false
}

// Close closes both pools. The WAL is checkpointed by SQLite when the last
// connection closes.
func (db *DB) Close() error {
	rerr := db.reader.Close()
	werr := db.writer.Close()
	if err := errors.Join(werr, rerr); err != nil {
		return fmt.Errorf("store: close %s: %w", db.path, err)
	}
	return nil
}

// Path returns the database file name given to Open.
func (db *DB) Path() string { return db.path }

// Ping runs a real query through the writer connection, so it fails when the
// writer is wedged or the file is unreadable (the systemd watchdog uses it).
func (db *DB) Ping(ctx context.Context) error {
	var n int
	if err := db.writer.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&n); err != nil {
		return fmt.Errorf("store: ping %s: %w", db.path, err)
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns "ok" or the problems,
// one per line.
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	rows, err := db.reader.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	s, err := joinRows(rows)
	if err != nil {
		return "", fmt.Errorf("store: integrity check: %w", err)
	}
	return s, nil
}

// Backup writes a consistent copy of the database to path with VACUUM INTO.
// It refuses to overwrite an existing file.
func (db *DB) Backup(ctx context.Context, path string) error {
	if path == "" {
		return errors.New("store: backup: empty file name")
	}
	if _, err := os.Lstat(path); err == nil {
		return fmt.Errorf("store: backup to %s: %w: choose a new file name", path, os.ErrExist)
	} else if !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	// VACUUM INTO only reads this database (a WAL snapshot), so it needs no
	// write lock; it runs on a connection of its own so that neither the
	// writer (busy for the whole copy) nor the query_only read pool (which
	// forbids VACUUM) is involved.
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(db.busy.Milliseconds(), 10))
	conn, err := sql.Open("sqlite3", db.path+"?"+q.Encode())
	if err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "VACUUM INTO ?", path); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	if err := conn.Close(); err != nil {
		return fmt.Errorf("store: backup to %s: %w", path, err)
	}
	return nil
}

// Checkpoint copies the WAL into the database file and truncates it
// (PRAGMA wal_checkpoint(TRUNCATE)).
func (db *DB) Checkpoint(ctx context.Context) error {
	var busy, logPages, done int
	err := db.writer.QueryRowContext(ctx, "PRAGMA wal_checkpoint(TRUNCATE)").Scan(&busy, &logPages, &done)
	if err != nil {
		return fmt.Errorf("store: checkpoint: %w", err)
	}
	if busy != 0 {
		return fmt.Errorf("store: checkpoint: incomplete (%d of %d pages): readers or another writer kept it busy", done, logPages)
	}
	return nil
}

// tx is a write transaction (BEGIN IMMEDIATE through the single writer
// connection) carrying the time it began, in UTC.
type tx struct {
	*sql.Tx
	now time.Time
}

func (db *DB) begin(ctx context.Context) (*tx, error) {
	t, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &tx{Tx: t, now: db.now().UTC()}, nil
}

// ms stores a time as UTC unix milliseconds; the zero time is NULL.
func ms(t time.Time) any {
	if t.IsZero() {
		return nil
	}
	return t.UnixMilli()
}

// fromMS reads a column written by ms.
func fromMS(v sql.NullInt64) time.Time {
	if !v.Valid {
		return time.Time{}
	}
	return time.UnixMilli(v.Int64).UTC()
}

// hourMS is the start of t's UTC hour in unix milliseconds.
func hourMS(t time.Time) int64 {
	const h = int64(time.Hour / time.Millisecond)
	m := t.UnixMilli()
	r := m % h
	if r < 0 {
		r += h
	}
	return m - r
}

func nullString(s string) any {
	if s == "" {
		return nil
	}
	return s
}

func nullID(id int64) any {
	if id == 0 {
		return nil
	}
	return id
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func joinRows(rows *sql.Rows) (string, error) {
	defer rows.Close()
	var lines []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return "", err
		}
		lines = append(lines, s)
	}
	if err := rows.Err(); err != nil {
		return "", err
	}
	return strings.Join(lines, "\n"), nil
}

func firstLines(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = append(lines[:n], fmt.Sprintf("(%d more)", len(lines)-n))
	}
	return strings.Join(lines, "; ")
}

func maxInt(vs []int) int {
	m := 0
	for _, v := range vs {
		m = max(m, v)
	}
	return m
}

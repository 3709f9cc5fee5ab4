package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
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
	// ErrNoDatabase means a read-only open found no file at the path: the
	// path is wrong, or no daemon has created the ledger yet. Nothing is
	// created.
	ErrNoDatabase = errors.New("store: no database file")
	// ErrReadOnly is returned by every write on a store opened ReadOnly.
	ErrReadOnly = errors.New("store: opened read-only")
	// ErrNotWritable means a daemon's open found the file, or the directory
	// its -wal and -shm files live in, not writable: it would have failed at
	// its first call's ledger row instead. Nothing is changed.
	ErrNotWritable = errors.New("store: database is not writable")
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
	// ReadOnly opens the file read-only (SQLite mode=ro): no migrations, no
	// journal-mode change, never a file created (a missing one is
	// ErrNoDatabase), every write refused with ErrReadOnly. For the commands
	// that only read the ledger. A schema older than the binary is opened as
	// it is (runnerd migrate or the daemon upgrades it).
	ReadOnly bool
	// Daemon marks the open as the daemon's. If the last daemon did not
	// close the store cleanly (its marker, the meta row DaemonMarkerKey, is
	// still there: killed, crashed, power lost), the full PRAGMA quick_check
	// runs before anything is written, and a corrupt file is refused with
	// ErrCorrupt, untouched. Then the marker is set; a clean Close removes it.
	// Ignored with ReadOnly.
	Daemon bool
	// FullCheck runs the full PRAGMA quick_check at open whatever the marker
	// says (runnerd check -full). It reads the whole file: seconds on a
	// 90-day ledger.
	FullCheck bool
	// Password is a PostgreSQL ledger's password, given to the driver apart
	// from the URL so that no URL string holds it.
	Password string
	// Instance names the runnerd on a PostgreSQL ledger: its sessions'
	// application_name, which the calls it begins are recorded with.
	Instance string
}

// DaemonMarkerKey is the meta row a store opened with Options.Daemon holds
// while it is open: "pid N since TIME". A clean Close deletes it; finding it
// at the next daemon open means the last one stopped uncleanly.
const DaemonMarkerKey = "store.daemon_open"

// DB is runnerd's ledger. All writes go through one connection (SQLite has one
// writer anyway, and queueing in-process is cheaper and clearer than
// SQLITE_BUSY); reads use a separate pool and never wait for the writer (WAL).
type DB struct {
	path     string
	now      func() time.Time
	busy     time.Duration
	writer   *pool // MaxOpenConns 1; the reader itself when readOnly
	reader   *pool
	pg       bool // PostgreSQL (a postgres:// URL): see dialect.go
	readOnly bool
	daemon   bool   // holds the daemon marker; Close clears it
	unclean  string // the marker found at open ("" if none): the last daemon's
	checked  bool   // quick_check ran at open

	writeTx atomic.Int64 // write transactions begun (see WriteTransactions)
	stmts   stmtCache

	historyOnce sync.Once // JobHistory's statement, prepared on the reader pool at first use
	history     *sql.Stmt
	historyErr  error
}

// Open opens (creating if needed) the ledger at path, checks it, and applies
// pending migrations unless opts.NoMigrate. A corrupt file is refused with
// ErrCorrupt, a newer schema with ErrSchemaTooNew; in both cases the file is
// left exactly as it was.
//
// A path that is a postgres:// or postgresql:// URL opens a PostgreSQL
// ledger instead (see OpenPostgres).
func Open(ctx context.Context, path string, opts Options) (*DB, error) {
	if IsPostgresURL(path) {
		return OpenPostgres(ctx, path, opts)
	}
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
	if opts.ReadOnly {
		return openReadOnly(ctx, path, opts, busy)
	}
	// The cheap part of the integrity check reads the file's header before
	// SQLite touches it (and before a journal-mode change could write).
	if err := checkFiles(path, true); err != nil {
		return nil, err
	}
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

	db := &DB{path: path, now: opts.Now, busy: opts.BusyTimeout, writer: &pool{DB: writer}, reader: &pool{DB: reader}}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if opts.Daemon {
		marker, err := db.marker(ctx)
		if err != nil {
			db.Close()
			return nil, db.openError(err)
		}
		db.unclean = marker
	}
	if opts.FullCheck || db.unclean != "" {
		if err := db.fullCheck(ctx, db.writer); err != nil {
			db.Close()
			return nil, err
		}
		db.checked = true
	}
	if opts.Daemon {
		// Before migrations, which would fail with a less telling error.
		if err := db.checkWritable(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	if !opts.NoMigrate {
		if _, err := db.Migrate(ctx); err != nil {
			db.Close()
			return nil, err
		}
	}
	if opts.Daemon {
		if err := db.setMarker(ctx); err != nil {
			db.Close()
			return nil, err
		}
		db.daemon = true
	}
	db.stmts.prepare(ctx, db.writer)
	return db, nil
}

// OpenReadOnly is Open with opts.ReadOnly set: for commands that only read.
func OpenReadOnly(ctx context.Context, path string, opts Options) (*DB, error) {
	opts.ReadOnly = true
	return Open(ctx, path, opts)
}

func openReadOnly(ctx context.Context, path string, opts Options, busy string) (*DB, error) {
	if fi, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w: %s does not exist (opened read-only, so it was not created)", ErrNoDatabase, path)
	} else if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	} else if fi.IsDir() {
		return nil, fmt.Errorf("store: open %s: is a directory, not a database file", path)
	}
	if err := checkFiles(path, false); err != nil {
		return nil, err
	}
	// A file: URI, so that SQLite sees mode=ro; go-sqlite3 passes the whole
	// URI on and SQLite ignores the driver's _ parameters. '?' and '#' are
	// refused in paths, so '%' is the only character to escape.
	q := url.Values{}
	q.Set("mode", "ro")
	q.Set("_busy_timeout", busy)
	q.Set("_txlock", "deferred")
	q.Set("_query_only", "1")
	reader, err := sql.Open("sqlite3", "file:"+strings.ReplaceAll(path, "%", "%25")+"?"+q.Encode())
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	reader.SetMaxOpenConns(4)
	reader.SetMaxIdleConns(4)
	rp := &pool{DB: reader}
	db := &DB{path: path, now: opts.Now, busy: opts.BusyTimeout, writer: rp, reader: rp, readOnly: true}
	if err := db.check(ctx); err != nil {
		db.Close()
		return nil, err
	}
	if opts.FullCheck {
		if err := db.fullCheck(ctx, db.reader); err != nil {
			db.Close()
			return nil, err
		}
		db.checked = true
	}
	return db, nil
}

// qCountSchema reads the schema: the cheap sign that the database answers.
var qCountSchema = pgQuery(`SELECT count(*) FROM sqlite_schema`,
	`SELECT count(*) FROM information_schema.tables WHERE table_schema = current_schema()`)

// check connects (which sets the journal mode), parses the schema, reads
// schema_migrations and refuses a schema the binary does not know: the cheap
// integrity check run at every open, whose cost does not grow with the file
// (the header and WAL were checked by checkFiles). Damage inside the tables
// is found by the full check (fullCheck: after an unclean daemon stop, with
// FullCheck, by QuickCheck and `runnerd check -full`) or by the query that
// meets it. It writes nothing.
func (db *DB) check(ctx context.Context) error {
	if err := db.writer.PingContext(ctx); err != nil {
		return db.openError(err)
	}
	var n int
	if err := db.writer.QueryRowContext(ctx, qCountSchema).Scan(&n); err != nil {
		return db.openError(err)
	}
	known, err := db.appliedVersions(ctx)
	if err != nil {
		return db.openError(err)
	}
	latest := db.latestVersion()
	for _, v := range known {
		if _, ok := db.migrationByVersion(v); !ok {
			return fmt.Errorf("%w: %s has schema version %d, this binary knows up to %d: "+
				"run a newer runnerd, or restore a backup made by this version; the file was not changed",
				ErrSchemaTooNew, db.path, maxInt(known), latest)
		}
	}
	return nil
}

// fullCheck runs PRAGMA quick_check through pool and turns problems into
// ErrCorrupt naming the file.
func (db *DB) fullCheck(ctx context.Context, conns interface {
	QueryContext(context.Context, string, ...any) (*sql.Rows, error)
}) error {
	rows, err := conns.QueryContext(ctx, "PRAGMA quick_check")
	if err != nil {
		return db.openError(err)
	}
	problems, err := joinRows(rows)
	if err != nil {
		return db.openError(err)
	}
	if problems != "ok" {
		return fmt.Errorf("%w: %s: quick_check reports: %s; the file was left in place: "+
			"restore it from a backup (runnerd backup FILE) or move it aside to start an empty ledger",
			ErrCorrupt, db.path, firstLines(problems, 5))
	}
	return nil
}

// UncleanStop returns the daemon marker found when this store was opened
// with Options.Daemon ("pid N since TIME" of the daemon that did not close
// it), or "" if the last daemon stopped cleanly.
func (db *DB) UncleanStop() string { return db.unclean }

// FullyChecked reports whether quick_check ran (and passed) at open.
func (db *DB) FullyChecked() bool { return db.checked }

// DaemonMarker returns the daemon marker held in the file now ("" if none):
// a running daemon's, or one left by a daemon that stopped uncleanly.
func (db *DB) DaemonMarker(ctx context.Context) (string, error) {
	m, err := db.marker(ctx)
	if err != nil {
		return "", fmt.Errorf("store: daemon marker: %w", err)
	}
	return m, nil
}

func (db *DB) marker(ctx context.Context) (string, error) {
	var exists int
	if err := db.writer.QueryRowContext(ctx, qTableExists, "meta").Scan(&exists); err != nil || exists == 0 {
		return "", err
	}
	var v string
	err := db.writer.QueryRowContext(ctx, `SELECT value FROM meta WHERE key = ?`, DaemonMarkerKey).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	return v, err
}

// checkWritable makes a real write in a transaction that is rolled back, and
// creates and removes a file in the database's directory (where SQLite keeps
// the -wal and -shm files), so that a daemon refuses to start on a ledger it
// could not record in: ErrNotWritable naming the file and the cause.
func (db *DB) checkWritable(ctx context.Context) error {
	fail := func(what string, err error) error {
		return fmt.Errorf("%w: %s: %s: %v", ErrNotWritable, db.path, what, err)
	}
	tx, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return fail("begin a write", err)
	}
	_, err = tx.ExecContext(ctx, `CREATE TABLE runnerd_write_check (x)`)
	if err == nil {
		_, err = tx.ExecContext(ctx, `DROP TABLE runnerd_write_check`)
	}
	if rerr := tx.Rollback(); err == nil && rerr != nil {
		err = rerr
	}
	if err != nil {
		return fail("a write (rolled back) failed", err)
	}
	if err := probeDir(filepath.Dir(db.path)); err != nil {
		return fail(dirNotWritable, err)
	}
	return nil
}

const dirNotWritable = "its directory, where the -wal and -shm files live, is not writable"

// probeDir creates and removes a file in dir.
func probeDir(dir string) error {
	f, err := os.CreateTemp(dir, ".runnerd-write-check-*")
	if err != nil {
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

func (db *DB) setMarker(ctx context.Context) error {
	v := fmt.Sprintf("pid %d since %s", os.Getpid(), db.now().UTC().Format(time.RFC3339))
	if err := db.SetMeta(ctx, DaemonMarkerKey, v); err != nil {
		return fmt.Errorf("store: open %s: set the daemon marker: %w", db.path, err)
	}
	return nil
}

// QuickCheck runs the full PRAGMA quick_check in the background of a
// running daemon: on a connection of its own, from an OS thread at the
// lowest CPU priority (nice 19) and idle I/O class where the system allows,
// so that calls and queries go first. It reads one WAL snapshot, which keeps
// checkpoints from completing past it while it runs (seconds on a 90-day
// ledger). It returns nil if the file is sound, ErrCorrupt naming the file if
// not, or ctx's error if cancelled.
func (db *DB) QuickCheck(ctx context.Context) error {
	if db.pg {
		return nil // the server keeps its own integrity
	}
	q := url.Values{}
	q.Set("_busy_timeout", strconv.FormatInt(db.busy.Milliseconds(), 10))
	q.Set("_query_only", "1")
	dsn := db.path + "?" + q.Encode()
	if db.readOnly {
		q.Set("mode", "ro")
		dsn = "file:" + strings.ReplaceAll(db.path, "%", "%25") + "?" + q.Encode()
	}
	conn, err := sql.Open("sqlite3", dsn)
	if err != nil {
		return fmt.Errorf("store: quick check %s: %w", db.path, err)
	}
	defer conn.Close()
	conn.SetMaxOpenConns(1)
	done := make(chan error, 1)
	go func() {
		// The thread is left locked: it ends with the goroutine, so its
		// lowered priority never reaches other goroutines.
		runtime.LockOSThread()
		lowerThreadPriority()
		done <- db.fullCheck(ctx, conn)
	}()
	if err := <-done; err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("store: quick check %s: %w", db.path, ctx.Err())
		}
		return err
	}
	return nil
}

// openError turns a failure while opening into ErrCorrupt when SQLite says so.
func (db *DB) openError(err error) error {
	if db.pg {
		return fmt.Errorf("store: open %s: %w", db.path, err)
	}
	if isCorrupt(err) {
		return fmt.Errorf("%w: %s: %v; the file was left in place: "+
			"restore it from a backup (runnerd backup FILE) or move it aside to start an empty ledger",
			ErrCorrupt, db.path, err)
	}
	var se sqlite3.Error
	if errors.As(err, &se) && (se.Code == sqlite3.ErrReadonly || se.Code == sqlite3.ErrCantOpen) {
		// SQLite could not write the file or create its -wal/-shm: say which.
		if derr := probeDir(filepath.Dir(db.path)); derr != nil {
			return fmt.Errorf("%w: %s: %s: %v (%v)", ErrNotWritable, db.path, dirNotWritable, derr, err)
		}
		return fmt.Errorf("%w: %s: %v", ErrNotWritable, db.path, err)
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

// Close closes both pools, first removing the daemon marker of a store
// opened with Options.Daemon (a clean stop). The WAL is checkpointed by
// SQLite when the last connection closes.
func (db *DB) Close() error {
	var merr error
	if db.daemon {
		db.daemon = false
		if _, err := db.writer.Exec(`DELETE FROM meta WHERE key = ?`, DaemonMarkerKey); err != nil {
			merr = fmt.Errorf("clear the daemon marker (the next start will run a full check): %w", err)
		}
	}
	db.stmts.close()
	if db.history != nil {
		db.history.Close()
	}
	rerr := db.reader.Close()
	var werr error
	if db.writer != db.reader {
		werr = db.writer.Close()
	}
	if err := errors.Join(merr, werr, rerr); err != nil {
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
	if err := db.writer.QueryRowContext(ctx, qCountSchema).Scan(&n); err != nil {
		return fmt.Errorf("store: ping %s: %w", db.path, err)
	}
	return nil
}

// IntegrityCheck runs PRAGMA integrity_check and returns "ok" or the problems,
// one per line.
func (db *DB) IntegrityCheck(ctx context.Context) (string, error) {
	if db.pg {
		return "", fmt.Errorf("store: integrity check: %w", errPostgres)
	}
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
	if db.pg {
		return fmt.Errorf("store: backup: %w", errPostgres)
	}
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
	if db.pg {
		return nil // PostgreSQL checkpoints itself
	}
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
	*dtx
	now time.Time
	db  *DB
}

func (db *DB) begin(ctx context.Context) (*tx, error) {
	if db.readOnly {
		return nil, fmt.Errorf("%w: %s", ErrReadOnly, db.path)
	}
	db.writeTx.Add(1)
	t, err := db.writer.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	return &tx{dtx: t, now: db.now().UTC(), db: db}, nil
}

// WriteTransactions returns how many write transactions this DB has begun
// (committed or not) since it was opened, migrations included: for tests
// that count a code path's transactions, each of which costs an fsync.
func (db *DB) WriteTransactions() int64 { return db.writeTx.Load() }

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

// Package pgtest starts a real PostgreSQL for tests: initdb and pg_ctl (from
// Debian's postgresql package) in a temporary directory, listening on
// 127.0.0.1 on a free port, one server per test binary, one fresh database
// per test.
//
// Where the binaries are absent a test is skipped, unless
// RUNNERD_REQUIRE_POSTGRES=1 (as .ci/run sets), where it fails: CI never
// passes by skipping. A package using it calls Main from its TestMain, which
// stops the server when the tests end.
package pgtest

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
)

// Server is a running PostgreSQL cluster.
type Server struct {
	dir  string // the temporary directory: data/, the socket, the log
	bin  string // the directory of initdb, pg_ctl and postgres
	port int
	run  []string // the prefix that runs a command as the cluster's owner
	log  string
}

var (
	once    sync.Once
	shared  *Server
	errOnce error
	dbs     atomic.Int64
)

// Required reports whether a missing PostgreSQL fails the tests instead of
// skipping them.
func Required() bool { return os.Getenv("RUNNERD_REQUIRE_POSTGRES") == "1" }

// Main runs the package's tests and then stops the server, if one was
// started.
func Main(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// Get returns the test binary's server, starting it at the first call. It
// skips tb (or fails it, if Required) when PostgreSQL cannot be started here.
func Get(tb testing.TB) *Server {
	tb.Helper()
	once.Do(func() { shared, errOnce = start() })
	if errOnce != nil {
		if Required() {
			tb.Fatalf("pgtest: RUNNERD_REQUIRE_POSTGRES=1 and PostgreSQL did not start: %v", errOnce)
		}
		tb.Skipf("pgtest: no PostgreSQL here (%v); RUNNERD_REQUIRE_POSTGRES=1 makes this a failure", errOnce)
	}
	return shared
}

// Shared returns the test binary's server, starting it at the first call,
// for callers without a testing.TB (testscript's Setup); the caller stops
// it (Stop) when its tests end, as Main does.
func Shared() (*Server, error) {
	once.Do(func() { shared, errOnce = start() })
	return shared, errOnce
}

// Start starts a server of tb's own, stopped when tb ends: for a package
// whose TestMain is not Main's (or a test that stops the server itself).
// Skips or fails as Get does.
func Start(tb testing.TB) *Server {
	tb.Helper()
	s, err := start()
	if err != nil {
		if Required() {
			tb.Fatalf("pgtest: RUNNERD_REQUIRE_POSTGRES=1 and PostgreSQL did not start: %v", err)
		}
		tb.Skipf("pgtest: no PostgreSQL here (%v); RUNNERD_REQUIRE_POSTGRES=1 makes this a failure", err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// NewDatabase creates an empty database for tb on the test binary's server
// (Get), dropped when tb ends, and returns its URL.
func NewDatabase(tb testing.TB) string {
	tb.Helper()
	return Get(tb).NewDatabase(tb)
}

// NewDatabase creates an empty database for tb on s, dropped when tb ends,
// and returns its URL.
func (s *Server) NewDatabase(tb testing.TB) string {
	tb.Helper()
	name := fmt.Sprintf("t%d_%d", os.Getpid(), dbs.Add(1))
	if err := s.Exec("CREATE DATABASE " + name); err != nil {
		tb.Fatalf("pgtest: %v", err)
	}
	tb.Cleanup(func() {
		// WITH (FORCE) ends the sessions of a test that left some open.
		if err := s.Exec("DROP DATABASE IF EXISTS " + name + " WITH (FORCE)"); err != nil {
			tb.Logf("pgtest: %v", err)
		}
	})
	return s.URL(name)
}

// URL is the connection URL of database name on s.
func (s *Server) URL(name string) string {
	return fmt.Sprintf("postgres://runnerd@127.0.0.1:%d/%s?sslmode=disable", s.port, name)
}

// Port is the TCP port s listens on (127.0.0.1).
func (s *Server) Port() int { return s.port }

// Exec runs one statement in the maintenance database.
func (s *Server) Exec(q string) error {
	db, err := sql.Open("pgx", s.URL("postgres"))
	if err != nil {
		return err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := db.ExecContext(ctx, q); err != nil {
		return fmt.Errorf("%s: %w", q, err)
	}
	return nil
}

// Stop stops the server (fast shutdown) and removes its directory.
func (s *Server) Stop() {
	s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "immediate", "-w", "stop").Run()
	os.RemoveAll(s.dir)
}

// Restart stops the server and starts it again on the same port: what a
// test of a lost database connection needs.
func (s *Server) Restart() error {
	if err := s.StopKeep(); err != nil {
		return err
	}
	return s.startServer()
}

// StopKeep stops the server and keeps its data, for Restart or StartAgain.
func (s *Server) StopKeep() error {
	out, err := s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-m", "fast", "-w", "stop").CombinedOutput()
	if err != nil {
		return fmt.Errorf("pg_ctl stop: %v: %s", err, out)
	}
	return nil
}

// StartAgain starts a server stopped by StopKeep.
func (s *Server) StartAgain() error { return s.startServer() }

// binDir finds initdb and pg_ctl: on PATH, or in Debian's versioned
// directory (the newest), which is not on PATH.
func binDir() (string, error) {
	if p, err := exec.LookPath("initdb"); err == nil {
		if r, err := filepath.EvalSymlinks(p); err == nil {
			p = r
		}
		if _, err := os.Stat(filepath.Join(filepath.Dir(p), "pg_ctl")); err == nil {
			return filepath.Dir(p), nil
		}
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "initdb")); err == nil {
			return d, nil
		}
	}
	return "", errors.New("initdb and pg_ctl not found (Debian: apt-get install postgresql)")
}

func start() (*Server, error) {
	bin, err := binDir()
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "runnerd-pg-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir, bin: bin, log: filepath.Join(dir, "postgres.log")}
	// initdb refuses to run as root: as root, the cluster belongs to the
	// postgres user the package creates.
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			os.RemoveAll(dir)
			return nil, fmt.Errorf("running as root and there is no postgres user to own the cluster: %w", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		if err := os.Chmod(dir, 0o755); err != nil {
			return nil, err
		}
		if err := os.Chown(dir, uid, gid); err != nil {
			return nil, err
		}
		runuser, err := exec.LookPath("runuser")
		if err != nil {
			return nil, err
		}
		s.run = []string{runuser, "-u", "postgres", "--"}
	}
	out, err := s.command("initdb", "-D", filepath.Join(dir, "data"), "-U", "runnerd", "-A", "trust",
		"-E", "UTF8", "--locale=C", "--no-sync").CombinedOutput()
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("initdb: %v: %s", err, out)
	}
	for attempt := 0; ; attempt++ {
		if s.port, err = freePort(); err == nil {
			if err = s.startServer(); err == nil {
				return s, nil
			}
		}
		if attempt == 4 {
			os.RemoveAll(dir)
			return nil, err
		}
	}
}

// startServer starts postgres on s.port, tuned for tests: no fsync (a test
// never survives the machine), the socket in s.dir.
func (s *Server) startServer() error {
	opts := strings.Join([]string{
		"-c listen_addresses=127.0.0.1", "-p " + strconv.Itoa(s.port), "-k " + s.dir,
		"-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
		"-c max_connections=200", "-c shared_buffers=64MB",
	}, " ")
	out, err := s.command("pg_ctl", "-D", filepath.Join(s.dir, "data"), "-l", s.log, "-o", opts, "-w", "-t", "60",
		"start").CombinedOutput()
	if err != nil {
		log, _ := os.ReadFile(s.log)
		return fmt.Errorf("pg_ctl start: %v: %s\n%s", err, out, tail(log, 2000))
	}
	return nil
}

func (s *Server) command(name string, args ...string) *exec.Cmd {
	argv := append(append(append([]string(nil), s.run...), filepath.Join(s.bin, name)), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = s.dir
	// pg_ctl's server outlives the command; its own process group keeps a
	// test's ^C from reaching it before Stop does.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}

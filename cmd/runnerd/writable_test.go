package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"runnerd/internal/engine"
	"runnerd/internal/store"
)

// TestServeRefusesUnwritableLedger: serve on a ledger it cannot write to (the
// file read-only; the directory of its -wal and -shm files read-only) sends
// no READY=1 and exits 2 naming the file and the cause, the file untouched.
// As root every file is writable, so the daemon then runs as nobody.
func TestServeRefusesUnwritableLedger(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	var cred *syscall.Credential
	if os.Geteuid() == 0 {
		cred = &syscall.Credential{Uid: 65534, Gid: 65534}
	}
	for _, tc := range []struct {
		name      string
		fileMode  os.FileMode // the database file's
		dirMode   os.FileMode // its directory's
		wantCause string
	}{
		{"read-only file", 0o444, 0o777, "a write (rolled back) failed"},
		{"read-only directory", 0o666, 0o555, "directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			top, err := os.MkdirTemp("", "runnerd-ro-")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Chmod(filepath.Join(top, "state"), 0o755); os.RemoveAll(top) })
			state := filepath.Join(top, "state")
			mustDo(t, os.Chmod(top, 0o755), os.Mkdir(state, 0o755))
			bin := filepath.Join(top, "runnerd")
			data, err := os.ReadFile(runnerdBin(t))
			if err != nil {
				t.Fatal(err)
			}
			dbPath := filepath.Join(state, "runnerd.db")
			conf := filepath.Join(top, "jobs.toml")
			mustDo(t, os.WriteFile(bin, data, 0o755),
				os.WriteFile(conf, []byte(fmt.Sprintf(`
[account]
id = "sim-account"
url = "http://127.0.0.1:1/api/rest/v1"
user = "runnerd@sim"
password_env = "RUNNERD_PASSWORD"

[budget]
daily_limit = 1000

[store]
path = %q

[[job]]
name = "promote"
kind = "deploy"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`, dbPath)), 0o644))
			db, err := store.Open(context.Background(), dbPath, store.Options{})
			if err != nil {
				t.Fatal(err)
			}
			mustDo(t, db.Close())
			// The spender lock beside the database exists and is the
			// daemon's to take: only the ledger is at fault.
			lock := engine.LockPath(dbPath)
			mustDo(t, os.WriteFile(lock, nil, 0o666), os.Chmod(lock, 0o666),
				os.Chmod(dbPath, tc.fileMode), os.Chmod(state, tc.dirMode))
			before := sum(t, dbPath)

			sdir, err := os.MkdirTemp("", "sdn")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.RemoveAll(sdir) })
			sock := filepath.Join(sdir, "notify")
			conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			mustDo(t, os.Chmod(sdir, 0o777), os.Chmod(sock, 0o777))

			cmd := exec.Command(bin, "serve", "-config", conf)
			cmd.Dir = top
			cmd.Env = childEnv("NOTIFY_SOCKET="+sock, "RUNNERD_PASSWORD=sim-password")
			cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
			var out bytes.Buffer
			cmd.Stdout, cmd.Stderr = &out, &out
			err = cmd.Run()
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 2 {
				t.Fatalf("serve = %v; want exit 2; output:\n%s", err, out.String())
			}
			for _, want := range []string{dbPath, "not writable", tc.wantCause} {
				if !strings.Contains(out.String(), want) {
					t.Errorf("output does not name %q:\n%s", want, out.String())
				}
			}
			conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			buf := make([]byte, 4096)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					break
				}
				if m := string(buf[:n]); strings.Contains(m, "READY=1") {
					t.Errorf("sd_notify %q sent on an unwritable ledger", m)
				}
			}
			if after := sum(t, dbPath); after != before {
				t.Error("the database file changed")
			}
		})
	}
}

func mustDo(t *testing.T, errs ...error) {
	t.Helper()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func sum(t *testing.T, path string) [32]byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

package control

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestServeAndCall(t *testing.T) {
	path := filepath.Join(t.TempDir(), "runnerd.sock")
	if err := os.WriteFile(path, nil, 0o644); err != nil { // a stale file left by a crash
		t.Fatal(err)
	}
	stop, err := Serve(context.Background(), path, func(ctx context.Context, req Request) Response {
		if req.Op != "ping" {
			return Response{Error: "unknown operation " + req.Op, Usage: true}
		}
		return Response{OK: true, Was: req.Job}
	})
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket %s: %v, mode %v; want a socket with mode 0600", path, err, fi.Mode())
	}
	resp, ok, err := Call(t.Context(), path, Request{Op: "ping", Job: "echo"})
	if err != nil || !ok || !resp.OK || resp.Was != "echo" {
		t.Fatalf("Call(ping) = %+v, %v, %v; want the handler's answer", resp, ok, err)
	}
	if resp, _, _ := Call(t.Context(), path, Request{Op: "nope"}); resp.OK || !resp.Usage {
		t.Errorf("Call(nope) = %+v; want a usage error", resp)
	}
	// A line that is not a request is answered, not dropped.
	conn, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	conn.Write([]byte("{not json\n"))
	buf := make([]byte, 512)
	n, _ := conn.Read(buf)
	conn.Close()
	if !strings.Contains(string(buf[:n]), "bad request") {
		t.Errorf("answer to a bad line = %q; want a bad request error", buf[:n])
	}
	stop()
	stop() // twice is fine
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("socket after stop: %v; want it removed", err)
	}
	if _, ok, err := Call(t.Context(), path, Request{Op: "ping"}); ok || err != nil {
		t.Errorf("Call with no daemon = ok %v, %v; want ok false and no error (work in-process)", ok, err)
	}
}

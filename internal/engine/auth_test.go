package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/atomapi"
	"runnerd/internal/atomapi/atomsim"
	"runnerd/internal/config"
)

const authJobs = `
[account]
id = "sim-account"
url = "http://sim.invalid/api/rest/v1"
user = "runnerd@sim"
password_file = %q

[budget]
daily_limit = 1000
reserve = 0
rate = 50

[store]
path = %q

[[job]]
name = "promote"
kind = "deploy"
schedule = "0 2 * * *"
process_id = "proc-orders"
from_environment = "env-test"
to_environment = "env-prod"
`

// TestAuthBreakerClosedByReload: two runs meet 401 (a wrong password in
// password_file) and open the breaker; the third sends nothing; the file is
// fixed and the configuration reloaded (SIGHUP): the next run works. The
// breaker is visible in /metrics while it is open.
func TestAuthBreakerClosedByReload(t *testing.T) {
	dir := t.TempDir()
	pwFile := filepath.Join(dir, "password")
	if err := os.WriteFile(pwFile, []byte("wrong\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	confPath := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(confPath, []byte(fmt.Sprintf(authJobs, pwFile, filepath.Join(dir, "runnerd.db"))), 0o600); err != nil {
		t.Fatal(err)
	}
	getenv := func(string) string { return "" }
	load := func() *config.Config {
		cfg, err := config.Load(confPath, config.LoadOptions{Getenv: getenv})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	sim := atomsim.New(atomsim.Options{Rate: 50, DailyLimit: -1, ExecutionRecords: -1, AuditLogs: -1, Events: -1})
	e, err := Open(t.Context(), Options{
		Config: load(), Getenv: getenv, Logger: slog.New(slog.DiscardHandler),
		Client: func(c *atomapi.Config) { c.HTTPClient = &http.Client{Transport: memTransport{sim}} },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ctx := context.Background()
	gauge := func() float64 {
		mfs, err := e.Metrics().Registry().Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() == "runnerd_auth_breaker_open" {
				return mf.GetMetric()[0].GetGauge().GetValue()
			}
		}
		t.Fatal("no runnerd_auth_breaker_open in /metrics")
		return -1
	}
	for i := 1; i <= 2; i++ {
		r, err := e.RunNow(ctx, "promote", time.Time{}, time.Time{})
		if err != nil || r.State == runnerd.StateSucceeded {
			t.Fatalf("run %d with a wrong password = %s, %v; want a failed run", i, r.State, err)
		}
	}
	if g := gauge(); g != 1 {
		t.Errorf("runnerd_auth_breaker_open = %v after two 401; want 1", g)
	}
	sent := len(sim.Requests())
	r, _ := e.RunNow(ctx, "promote", time.Time{}, time.Time{})
	if len(sim.Requests()) != sent || !strings.Contains(r.Error, "resume-auth") {
		t.Fatalf("third run: %d requests sent, error %q; want none sent and an error naming the ways out", len(sim.Requests())-sent, r.Error)
	}

	if err := os.WriteFile(pwFile, []byte(atomsim.DefaultPassword+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	warnings, err := e.Reload(ctx, load())
	if err != nil {
		t.Fatalf("Reload() = %v (warnings %v)", err, warnings)
	}
	if g := gauge(); g != 0 {
		t.Errorf("runnerd_auth_breaker_open = %v after the reload; want 0", g)
	}
	r, err = e.RunNow(ctx, "promote", time.Time{}, time.Time{})
	if err != nil || r.State != runnerd.StateSucceeded {
		t.Fatalf("run after the reload = %s (%s), %v; want succeeded with the re-read password", r.State, r.Error, err)
	}
}

package config

import (
	"os"
	"path/filepath"
	"testing"
)

const testFile = "jobs.toml"

// env returns a Getenv over a fixed map.
func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func testOpts() LoadOptions {
	return LoadOptions{Getenv: env("RUNNERD_PASSWORD", "sim-password")}
}

func readExample(t testing.TB) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("..", "..", "jobs.example.toml"))
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// mustParse parses src and fails the test on error.
func mustParse(t *testing.T, src string) *Config {
	t.Helper()
	c, err := Parse(testFile, []byte(src), testOpts())
	if err != nil {
		t.Fatalf("Parse() error:\n%v\nsource:\n%s", err, src)
	}
	return c
}

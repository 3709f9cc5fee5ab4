package config

import (
	"strings"
	"testing"
)

// TestStoreURL: [store] url names a PostgreSQL ledger, and its password
// follows the account's rules: a file, an environment variable or a
// credential, never in the URL; the message never repeats the URL.
func TestStoreURL(t *testing.T) {
	c, err := Parse(testFile, []byte(base+`[store]
url = "postgres://runnerd@db.example.com:5432/runnerd?sslmode=verify-full"
password_env = "LEDGER_PW"
instance = "host-a"
`), testOpts())
	if err != nil {
		t.Fatal(err)
	}
	if c.Store.URL != "postgres://runnerd@db.example.com:5432/runnerd?sslmode=verify-full" || c.Store.Instance != "host-a" ||
		c.Store.Path == "" {
		t.Errorf("store = %+v", c.Store)
	}
	pw, err := c.Store.Password(LoadOptions{Getenv: func(k string) string {
		if k == "LEDGER_PW" {
			return "canary-pw"
		}
		return ""
	}})
	if err != nil || pw.Reveal() != "canary-pw" {
		t.Errorf("Password() = %v, %v", pw, err)
	}
	if _, err := c.Store.Password(LoadOptions{Getenv: func(string) string { return "" }}); err == nil ||
		!strings.Contains(err.Error(), "store.password_env: environment variable LEDGER_PW is not set") {
		t.Errorf("Password() without the variable: %v", err)
	}
	var none Store
	if pw, err := none.Password(LoadOptions{}); err != nil || pw.Reveal() != "" {
		t.Errorf("no password source: %v, %v", pw, err)
	}

	for _, tc := range []struct{ src, want string }{
		{`url = "postgres://runnerd:canary@db.example.com/runnerd"`, `jobs.toml:10: store.url: a password must not be written`},
		{`url = "postgres://runnerd@db.example.com/runnerd?password=canary"`, `jobs.toml:10: store.url: a password must not be written`},
		{`url = "mysql://db.example.com/runnerd"`, `jobs.toml:10: store.url: must be a postgres:// URL`},
		{`url = "postgres:///runnerd"`, `jobs.toml:10: store.url: names no host`},
		{`password_file = "/etc/runnerd/ledger.secret"`, `jobs.toml:10: store.password_file: is for a PostgreSQL ledger; set url too`},
		{"url = \"postgres://db/x\"\npassword_env = \"A\"\ncredential = \"b\"", `store.credential: give at most one of password_file, password_env, credential`},
		{`instance = "a"`, `store.instance: names this runnerd among those sharing a PostgreSQL ledger`},
		{"url = \"postgres://db/x\"\ninstance = \"two words\"", `store.instance: "two words": want 1 to 64 printable characters`},
		{`password = "canary"`, `store.password: a password must not be written in the configuration file`},
	} {
		_, err := Parse(testFile, []byte(base+"[store]\n"+tc.src+"\n"), testOpts())
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s:\n got %v\nwant %s", tc.src, err, tc.want)
		}
		if err != nil && strings.Contains(err.Error(), "canary") {
			t.Errorf("%s: the error shows the password: %v", tc.src, err)
		}
	}
}

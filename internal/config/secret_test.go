package config

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const canary = "canary-7f3a9c-s3cr3t"

// writeSecret writes canary (with a trailing newline) to a file of mode perm.
func writeSecret(t *testing.T, dir, name string, perm fs.FileMode) string {
	t.Helper()
	path := filepath.Join(dir, name)
	if err := os.WriteFile(path, []byte(canary+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, perm); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestSecretFilePermissions(t *testing.T) {
	dir := t.TempDir()
	ok600 := writeSecret(t, dir, "ok600", 0o600)
	ok400 := writeSecret(t, dir, "ok400", 0o400)
	p644 := writeSecret(t, dir, "p644", 0o644)
	p640 := writeSecret(t, dir, "p640", 0o640)
	p604 := writeSecret(t, dir, "p604", 0o604)
	link := filepath.Join(dir, "link")
	if err := os.Symlink(ok600, link); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "adir")
	if err := os.Mkdir(sub, 0o700); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	newline := filepath.Join(dir, "newline")
	if err := os.WriteFile(newline, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	me := os.Getuid()
	otherOwner := func(fs.FileInfo) (int, bool) { return me + 4242, true }
	rootOwner := func(fs.FileInfo) (int, bool) { return 0, true }

	tests := []struct {
		name    string
		path    string
		owner   func(fs.FileInfo) (int, bool)
		wantErr string // "" = accepted
	}{
		{"0600", ok600, nil, ""},
		{"0400", ok400, nil, ""},
		{"owned by root", ok600, rootOwner, ""},
		{"0644", p644, nil, p644 + " is accessible by group or others (mode 0644); run: chmod 0600 " + p644},
		{"0640", p640, nil, p640 + " is accessible by group or others (mode 0640); run: chmod 0600 " + p640},
		{"0604", p604, nil, p604 + " is accessible by group or others (mode 0604); run: chmod 0600 " + p604},
		{"symlink", link, nil, link + " is a symbolic link; name the file itself (secret files are not followed through links)"},
		{"directory", sub, nil, sub + " is a directory, not a file"},
		{"missing", filepath.Join(dir, "nope"), nil, filepath.Join(dir, "nope") + " does not exist"},
		{"wrong owner", ok600, otherOwner, fmt.Sprintf("%s is owned by uid %d, not by root or runnerd's uid %d; run: chown %d %s", ok600, me+4242, me, me, ok600)},
		{"empty", empty, nil, empty + " is empty"},
		{"only a newline", newline, nil, newline + " is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := LoadOptions{FileOwner: tt.owner}
			a := Account{PasswordFile: tt.path}
			s, err := a.PasswordWith(opts)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Password(%q) error = %v; want none", tt.path, err)
				}
				if s.Reveal() != canary {
					t.Errorf("Password(%q) = %d bytes; want the canary without its newline", tt.path, len(s.Reveal()))
				}
				return
			}
			want := "account.password_file: " + tt.wantErr
			if err == nil || err.Error() != want {
				t.Errorf("Password(%q) error = %v; want %q", tt.path, err, want)
			}
			if err != nil && strings.Contains(err.Error(), canary) {
				t.Errorf("Password(%q) error shows the secret", tt.path)
			}
			// Load refuses the same file, at the key's line.
			src := "[account]\nid = \"x\"\nuser = \"u\"\npassword_file = \"" + tt.path + "\"\n[budget]\ndaily_limit = 10\n"
			cfgPath := filepath.Join(t.TempDir(), "jobs.toml")
			if err := os.WriteFile(cfgPath, []byte(src), 0o644); err != nil {
				t.Fatal(err)
			}
			if tt.path == newline {
				return // Load looks at the file, not into it
			}
			_, lerr := Load(cfgPath, opts)
			wantLoad := cfgPath + ":4: account.password_file: " + tt.wantErr
			if lerr == nil || lerr.Error() != wantLoad {
				t.Errorf("Load() error = %v; want %q", lerr, wantLoad)
			}
			if _, err := Load(cfgPath, LoadOptions{FileOwner: tt.owner, SkipFileChecks: true}); err != nil {
				t.Errorf("Load(SkipFileChecks) error = %v; want none", err)
			}
		})
	}
}

func TestPasswordSources(t *testing.T) {
	creds := t.TempDir()
	if err := os.WriteFile(filepath.Join(creds, "boomi"), []byte(canary+"\r\n"), 0o444); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		a       Account
		getenv  func(string) string
		wantErr string
	}{
		{"env", Account{PasswordEnv: "PW"}, env("PW", canary), ""},
		{"env unset", Account{PasswordEnv: "PW"}, env(), "account.password_env: environment variable PW is not set or empty"},
		{"credential (mode relaxed)", Account{Credential: "boomi"}, env("CREDENTIALS_DIRECTORY", creds), ""},
		{"credential missing", Account{Credential: "other"}, env("CREDENTIALS_DIRECTORY", creds),
			"account.credential: " + filepath.Join(creds, "other") + " does not exist"},
		{"credential outside systemd", Account{Credential: "boomi"}, env(),
			`account.credential: credential "boomi": $CREDENTIALS_DIRECTORY is not set; systemd sets it for a unit with LoadCredential=boomi:/etc/runnerd/boomi.secret (outside systemd, use password_file)`},
		{"two sources", Account{PasswordEnv: "PW", Credential: "boomi"}, env("PW", canary), "account: give exactly one of password_file, password_env, credential"},
		{"none", Account{}, env(), "account: give exactly one of password_file, password_env, credential"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := tt.a.Password(tt.getenv)
			if tt.wantErr == "" {
				if err != nil || s.Reveal() != canary {
					t.Fatalf("Password() = %d bytes, %v; want the canary", len(s.Reveal()), err)
				}
				return
			}
			if err == nil || err.Error() != tt.wantErr {
				t.Errorf("Password() error = %v; want %q", err, tt.wantErr)
			}
		})
	}
}

func TestSecretNeverPrints(t *testing.T) {
	dir := t.TempDir()
	pwFile := writeSecret(t, dir, "pw", 0o600)
	hook := writeSecret(t, dir, "hook", 0o600)
	src := fmt.Sprintf(`[account]
id = "x"
user = "u"
password_file = %q
[budget]
daily_limit = 10
[[notify]]
kind = "webhook"
url = "https://hooks.example.com/x"
secret_file = %q
`, pwFile, hook)
	cfgPath := filepath.Join(dir, "jobs.toml")
	if err := os.WriteFile(cfgPath, []byte(src), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(cfgPath, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pw, err := c.Account.Password(nil)
	if err != nil || pw.Reveal() != canary {
		t.Fatalf("Password() = %v; want the canary", err)
	}
	hs, err := c.Notify[0].Secret(LoadOptions{})
	if err != nil || hs.Reveal() != canary {
		t.Fatalf("Notify.Secret() = %v; want the canary", err)
	}
	type holder struct {
		Pub  Secret
		priv Secret
	}
	h := holder{pw, hs}
	var outs []string
	for _, f := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%10.3s"} {
		outs = append(outs, fmt.Sprintf(f, c), fmt.Sprintf(f, *c), fmt.Sprintf(f, pw), fmt.Sprintf(f, &pw), fmt.Sprintf(f, h), fmt.Sprintf(f, &h))
	}
	outs = append(outs, fmt.Sprint(pw), fmt.Sprintln(h), pw.String(), pw.GoString())
	js, _ := json.Marshal(h)
	outs = append(outs, string(js))
	txt, _ := pw.MarshalText()
	outs = append(outs, string(txt))
	var logBuf bytes.Buffer
	l := slog.New(slog.NewJSONHandler(&logBuf, nil))
	l.Info("x", "pw", pw, "h", h)
	slog.New(slog.NewTextHandler(&logBuf, nil)).Info("x", "pw", pw)
	outs = append(outs, logBuf.String())
	var buf bytes.Buffer
	if err := c.Encode(&buf); err != nil {
		t.Fatal(err)
	}
	outs = append(outs, buf.String())
	for _, o := range outs {
		if strings.Contains(o, canary) || strings.Contains(o, fmt.Sprintf("%x", canary)) {
			t.Fatalf("output shows the secret: %s", o)
		}
	}
	if got := fmt.Sprintf("%v|%#v", pw, pw); got != "[REDACTED]|config.Secret{[REDACTED]}" {
		t.Errorf("Sprintf(%%v|%%#v) = %q", got)
	}
	if !strings.Contains(string(js), `"Pub":"[REDACTED]"`) {
		t.Errorf("json.Marshal = %s; want the redacted marker", js)
	}
}

func TestInlineSecretNeverEchoed(t *testing.T) {
	for _, src := range []string{
		"[account]\nid = \"x\"\nuser = \"u\"\npassword = \"" + canary + "\"\n[budget]\ndaily_limit = 10\n",
		"password = \"" + canary + "\"\n",
		"[account]\npassword = \"" + canary + "\\q\"\n",                                  // bad escape
		"[account]\npassword = '''" + canary + "\n",                                      // unterminated
		"[[notify]]\nkind = \"command\"\ncommand = \"x\"\nsecret = \"" + canary + "\"\n", // notify secret
		"[account]\npassword = " + canary + "\n",                                         // bare value
		"[account]\napi_password = " + canary + "\n",                                     // any key naming a password
	} {
		_, err := Parse(testFile, []byte(src), testOpts())
		if err == nil {
			t.Fatalf("Parse(%q) = nil error", src)
		}
		if strings.Contains(err.Error(), canary[:10]) {
			t.Errorf("Parse(%q) error shows the secret: %v", src, err)
		}
	}
}

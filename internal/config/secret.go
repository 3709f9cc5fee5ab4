package config

import (
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
)

// Secret holds a password or key. It does not print: String, GoString,
// Format (every verb), MarshalJSON, MarshalText and LogValue all give
// "[REDACTED]". The value sits behind a pointer, so even a Secret inside an
// unexported field of a printed struct shows only an address. Reveal returns
// the value, for the one place that needs it (the Authorization header).
type Secret struct{ p *string }

const redacted = "[REDACTED]"

// NewSecret wraps s.
func NewSecret(s string) Secret { return Secret{&s} }

// Reveal returns the secret's value.
func (s Secret) Reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// IsZero reports whether the secret is empty.
func (s Secret) IsZero() bool { return s.Reveal() == "" }

// String returns "[REDACTED]".
func (s Secret) String() string { return redacted }

// GoString returns a redacted Go form.
func (s Secret) GoString() string { return "config.Secret{" + redacted + "}" }

// Format prints "[REDACTED]" for every verb.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') {
		io.WriteString(f, s.GoString())
		return
	}
	io.WriteString(f, redacted)
}

// MarshalJSON returns "[REDACTED]" as a JSON string.
func (s Secret) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText returns "[REDACTED]".
func (s Secret) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue returns "[REDACTED]".
func (s Secret) LogValue() slog.Value { return slog.StringValue(redacted) }

// maxSecret bounds what is read from a secret file.
const maxSecret = 64 << 10

// Password resolves the account's password from password_file, password_env or
// credential. getenv reads the environment (nil: os.Getenv).
func (a Account) Password(getenv func(string) string) (Secret, error) {
	return a.PasswordWith(LoadOptions{Getenv: getenv})
}

// PasswordWith is Password with the owner checks of opts (for tests).
func (a Account) PasswordWith(opts LoadOptions) (Secret, error) {
	n := 0
	for _, s := range []string{a.PasswordFile, a.PasswordEnv, a.Credential} {
		if s != "" {
			n++
		}
	}
	if n != 1 {
		return Secret{}, errors.New("account: give exactly one of password_file, password_env, credential")
	}
	switch {
	case a.PasswordFile != "":
		s, err := ReadSecretFile(a.PasswordFile, opts)
		if err != nil {
			return Secret{}, fmt.Errorf("account.password_file: %w", err)
		}
		return s, nil
	case a.PasswordEnv != "":
		v := opts.getenv(a.PasswordEnv)
		if v == "" {
			return Secret{}, fmt.Errorf("account.password_env: environment variable %s is not set or empty", a.PasswordEnv)
		}
		return NewSecret(v), nil
	default:
		s, err := readCredential(a.Credential, opts)
		if err != nil {
			return Secret{}, fmt.Errorf("account.credential: %w", err)
		}
		return s, nil
	}
}

// Password resolves the PostgreSQL ledger's password from [store]'s
// password_file, password_env or credential, with the account's rules; a
// store without one has the zero Secret (the server trusts the host, or
// PGPASSFILE answers).
func (s Store) Password(opts LoadOptions) (Secret, error) {
	a := Account{PasswordFile: s.PasswordFile, PasswordEnv: s.PasswordEnv, Credential: s.Credential}
	if a.PasswordFile == "" && a.PasswordEnv == "" && a.Credential == "" {
		return Secret{}, nil
	}
	sec, err := a.PasswordWith(opts)
	if err != nil {
		return Secret{}, fmt.Errorf("store.%s", strings.TrimPrefix(err.Error(), "account."))
	}
	return sec, nil
}

// Secret reads the notify target's secret_file; a target without one has the
// zero Secret.
func (n Notify) Secret(opts LoadOptions) (Secret, error) {
	if n.SecretFile == "" {
		return Secret{}, nil
	}
	s, err := ReadSecretFile(n.SecretFile, opts)
	if err != nil {
		return Secret{}, fmt.Errorf("notify %q: secret_file: %w", n.Name, err)
	}
	return s, nil
}

// credentialPath returns $CREDENTIALS_DIRECTORY/name.
func credentialPath(name string, opts LoadOptions) (string, error) {
	dir := opts.getenv("CREDENTIALS_DIRECTORY")
	if dir == "" {
		return "", fmt.Errorf("credential %q: $CREDENTIALS_DIRECTORY is not set; systemd sets it for a unit with LoadCredential=%s:/etc/runnerd/boomi.secret (outside systemd, use password_file)", name, name)
	}
	return filepath.Join(dir, name), nil
}

// readCredential reads a systemd credential. systemd owns the directory and
// the file's mode, so only the file type is checked.
func readCredential(name string, opts LoadOptions) (Secret, error) {
	path, err := credentialPath(name, opts)
	if err != nil {
		return Secret{}, err
	}
	fi, err := os.Stat(path)
	if err != nil {
		return Secret{}, statProblem(path, err)
	}
	if !fi.Mode().IsRegular() {
		return Secret{}, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return Secret{}, statProblem(path, err)
	}
	defer f.Close()
	return readSecret(path, f)
}

// ReadSecretFile reads a secret from path after checking that it is a regular
// file (not a symbolic link), that neither group nor others have any access,
// and that it belongs to root or the current user. One trailing newline is
// trimmed. Errors name the file and the fix, never the contents.
func ReadSecretFile(path string, opts LoadOptions) (Secret, error) {
	fi, err := checkSecretFile(path, opts)
	if err != nil {
		return Secret{}, err
	}
	f, err := os.OpenFile(path, os.O_RDONLY|openNoFollow, 0)
	if err != nil {
		return Secret{}, statProblem(path, err)
	}
	defer f.Close()
	ffi, err := f.Stat()
	if err != nil {
		return Secret{}, statProblem(path, err)
	}
	if !os.SameFile(fi, ffi) {
		return Secret{}, fmt.Errorf("%s changed while it was being opened; try again", path)
	}
	if err := checkSecretInfo(path, ffi, opts); err != nil {
		return Secret{}, err
	}
	return readSecret(path, f)
}

func readSecret(path string, r io.Reader) (Secret, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxSecret+1))
	if err != nil {
		return Secret{}, statProblem(path, err)
	}
	if len(data) > maxSecret {
		return Secret{}, fmt.Errorf("%s is larger than %d KiB; it should hold only the password", path, maxSecret>>10)
	}
	s := strings.TrimSuffix(string(data), "\n")
	s = strings.TrimSuffix(s, "\r")
	if s == "" {
		return Secret{}, fmt.Errorf("%s is empty", path)
	}
	return NewSecret(s), nil
}

// checkSecretFile looks at (not into) a secret file.
func checkSecretFile(path string, opts LoadOptions) (fs.FileInfo, error) {
	fi, err := os.Lstat(path)
	if err != nil {
		return nil, statProblem(path, err)
	}
	return fi, checkSecretInfo(path, fi, opts)
}

func checkSecretInfo(path string, fi fs.FileInfo, opts LoadOptions) error {
	mode := fi.Mode()
	switch {
	case mode&fs.ModeSymlink != 0:
		return fmt.Errorf("%s is a symbolic link; name the file itself (secret files are not followed through links)", path)
	case mode.IsDir():
		return fmt.Errorf("%s is a directory, not a file", path)
	case !mode.IsRegular():
		return fmt.Errorf("%s is not a regular file", path)
	case mode.Perm()&0o077 != 0:
		return fmt.Errorf("%s is accessible by group or others (mode %04o); run: chmod 0600 %s", path, mode.Perm(), path)
	case fi.Size() == 0:
		return fmt.Errorf("%s is empty", path)
	}
	if uid, ok := opts.owner(fi); ok {
		if me := opts.getuid(); uid != 0 && uid != me {
			return fmt.Errorf("%s is owned by uid %d, not by root or runnerd's uid %d; run: chown %d %s", path, uid, me, me, path)
		}
	}
	return nil
}

// statProblem words an error from stat or open.
func statProblem(path string, err error) error {
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("%s does not exist", path)
	case errors.Is(err, fs.ErrPermission):
		return fmt.Errorf("%s cannot be read by uid %d: permission denied", path, os.Getuid())
	}
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s: %w", path, pe.Op, pe.Err)
	}
	return fmt.Errorf("%s: %w", path, err)
}

// checkFiles looks at the files the configuration names, as Load does.
func (r *result) checkFiles(opts LoadOptions) ErrorList {
	c, p := r.cfg, r.p
	var errs ErrorList
	add := func(line int, key string, err error) {
		errs = append(errs, &Error{File: p.file, Line: line, Key: key, Msg: err.Error()})
	}
	a := c.Account
	if a.PasswordFile != "" {
		if _, err := checkSecretFile(a.PasswordFile, opts); err != nil {
			add(p.ix.Line("account", "password_file"), "account.password_file", err)
		}
	}
	if a.Credential != "" && opts.getenv("CREDENTIALS_DIRECTORY") != "" {
		if path, err := credentialPath(a.Credential, opts); err == nil {
			if fi, err := os.Stat(path); err != nil {
				add(p.ix.Line("account", "credential"), "account.credential", statProblem(path, err))
			} else if !fi.Mode().IsRegular() {
				add(p.ix.Line("account", "credential"), "account.credential", fmt.Errorf("%s is not a regular file", path))
			}
		}
	}
	if a.CAFile != "" {
		if data, err := os.ReadFile(a.CAFile); err != nil {
			add(p.ix.Line("account", "ca_file"), "account.ca_file", statProblem(a.CAFile, err))
		} else if !x509.NewCertPool().AppendCertsFromPEM(data) {
			add(p.ix.Line("account", "ca_file"), "account.ca_file", fmt.Errorf("%s holds no PEM certificate", a.CAFile))
		}
	}
	for i, n := range c.Notify {
		if n.SecretFile == "" {
			continue
		}
		if _, err := checkSecretFile(n.SecretFile, opts); err != nil {
			add(p.ix.Line("notify", idx(i), "secret_file"), "notify.secret_file", err)
		}
	}
	return errs
}

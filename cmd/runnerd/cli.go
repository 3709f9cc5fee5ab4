package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"runnerd/internal/config"
	"runnerd/internal/engine"
	"runnerd/internal/store"
)

// common holds the flags every subcommand takes.
type common struct {
	config string
	json   bool
}

// newFlagSet returns a flag set for subcommand name with -config (and -json when
// withJSON) registered.
func newFlagSet(e *env, name string, c *common, withJSON bool) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	def := e.getenv("RUNNERD_CONFIG")
	if def == "" {
		def = defaultConf
	}
	fs.StringVar(&c.config, "config", def, "configuration `file`")
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print one JSON object per line")
	}
	return fs
}

// parseFlags parses args and turns flag errors into usage errors. Positional
// arguments may come before or after the flags.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, usageError{errSilent}
			}
			return nil, usageError{err}
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// loadConfig loads and validates the configuration; its problems are usage errors
// (exit 2), printed one per line as FILE:LINE: job "x": key: problem.
func loadConfig(e *env, path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
	if err != nil {
		return nil, usageError{err}
	}
	return cfg, nil
}

// openStore opens the configured database. Refusals (a corrupt file, a schema
// newer than this binary) are configuration errors: exit 2.
func openStore(ctx context.Context, cfg *config.Config, opts store.Options) (*store.DB, error) {
	db, err := engine.OpenStore(ctx, cfg, opts)
	return db, configErr(err)
}

// openConfigStore loads the configuration at path and opens its database: what
// every command that reads the ledger starts with. The caller closes the store.
func openConfigStore(ctx context.Context, e *env, path string, opts store.Options) (*config.Config, *store.DB, error) {
	cfg, err := loadConfig(e, path)
	if err != nil {
		return nil, nil, err
	}
	db, err := openStore(ctx, cfg, opts)
	if err != nil {
		return nil, nil, err
	}
	return cfg, db, nil
}

// jsonLines writes v as one JSON object per line.
func jsonLines(w io.Writer, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	b = append(b, '\n')
	_, err = w.Write(b)
	return err
}

// table is an aligned text table.
type table struct{ tw *tabwriter.Writer }

func newTable(w io.Writer, header ...string) *table {
	t := &table{tw: tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)}
	t.row(header...)
	return t
}

func (t *table) row(cols ...string) {
	for i, c := range cols {
		cols[i] = strings.NewReplacer("\t", " ", "\n", " ").Replace(c)
	}
	fmt.Fprintln(t.tw, strings.Join(cols, "\t"))
}

func (t *table) flush() error { return t.tw.Flush() }

// shortTime formats t for tables: UTC, minutes, or "-" for the zero time.
func shortTime(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04:05")
}

// parseSince accepts an RFC 3339 time or a duration back from now ("36h", "7d").
func parseSince(s string, now time.Time) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t.UTC(), nil
	}
	if t, err := time.Parse("2006-01-02", s); err == nil {
		return t.UTC(), nil
	}
	d, err := parseAge(s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is neither an RFC 3339 time, a date (2006-01-02) nor an age such as 36h or 7d", s)
	}
	return now.Add(-d), nil
}

// parseAge parses a Go duration, also accepting whole days ("7d").
func parseAge(s string) (time.Duration, error) {
	if n, ok := strings.CutSuffix(s, "d"); ok {
		var days int
		if _, err := fmt.Sscanf(n, "%d", &days); err == nil && days >= 0 && fmt.Sprint(days) == n {
			return time.Duration(days) * 24 * time.Hour, nil
		}
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("bad age %q", s)
	}
	return d, nil
}

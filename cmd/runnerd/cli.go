package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
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
	fs.SetOutput(&flagOut{w: e.stderr, help: e.stdout})
	def := e.getenv("RUNNERD_CONFIG")
	if def == "" {
		def = defaultConf
	}
	fs.StringVar(&c.config, "config", def, "configuration `file` ($RUNNERD_CONFIG sets the default)")
	if withJSON {
		fs.BoolVar(&c.json, "json", false, "print one JSON object per line")
	}
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: runnerd %s [flags]%s\n\n%s.\n\nflags:\n", name, synopsis[name].args, synopsis[name].summary)
		fs.PrintDefaults()
	}
	return fs
}

// flagOut is a flag set's output: errors to stderr, -h to stdout (asked for,
// so not an error).
type flagOut struct {
	w, help io.Writer
	asked   bool
}

func (o *flagOut) Write(p []byte) (int, error) {
	if o.asked {
		return o.help.Write(p)
	}
	return o.w.Write(p)
}

// flagHint is "; did you mean -x?" for an unknown flag close to one of fs's.
func flagHint(fs *flag.FlagSet, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "flag provided but not defined: -")
	if !ok {
		return ""
	}
	var names []string
	fs.VisitAll(func(f *flag.Flag) { names = append(names, f.Name) })
	if s := config.Suggest(strings.TrimPrefix(name, "-"), names); s != "" {
		return "; did you mean -" + s + "?"
	}
	return ""
}

// errHelp: -h was asked for and the usage printed: exit 0.
var errHelp = errors.New("help shown")

// parseFlags parses flags and positional arguments in any order. -h, -help
// and --help print the command's usage to stdout (errHelp: exit 0); a bad
// flag is reported once, with a pointer to -h.
func parseFlags(fs *flag.FlagSet, args []string) ([]string, error) {
	for _, a := range args {
		if a == "--" {
			break
		}
		if a == "-h" || a == "-help" || a == "--help" || a == "--h" {
			if o, ok := fs.Output().(*flagOut); ok {
				o.asked = true
			}
			fs.Usage()
			return nil, errHelp
		}
	}
	// The error is printed once, by main, not also by the flag package with
	// the whole usage.
	usage, out := fs.Usage, fs.Output()
	fs.Usage = func() {}
	fs.SetOutput(io.Discard)
	defer func() { fs.Usage = usage; fs.SetOutput(out) }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v%s (runnerd %s -h for its flags)", fs.Name(), err, flagHint(fs, err), fs.Name())
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func loadConfig(e *env, path string) (*config.Config, error) {
	cfg, err := config.Load(path, config.LoadOptions{Getenv: e.getenv})
	if errors.Is(err, fs.ErrNotExist) {
		return nil, usagef("%v: name the configuration with -config FILE or $RUNNERD_CONFIG (jobs.example.toml documents every key)", err)
	}
	if err != nil {
		return nil, usageError{err}
	}
	if testConfigHook != nil {
		testConfigHook(cfg)
	}
	return cfg, nil
}

// testConfigHook is set only by the test binary acting as runnerd (see
// pgscript_test.go): the end-to-end scripts run again with every
// configuration's ledger moved to a PostgreSQL database. nil in runnerd.
var testConfigHook func(*config.Config)

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

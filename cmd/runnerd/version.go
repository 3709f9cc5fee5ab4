package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
)

// version and commit are set at build time:
//
//	go build -ldflags "-X main.version=1.2.3 -X main.commit=abcdef" ./cmd/runnerd
//
// Without them, the module version and VCS revision from the build info are used.
var (
	version = ""
	commit  = ""
)

// buildVersion returns the version and commit, falling back to build info.
func buildVersion() (v, c string) {
	v, c = version, commit
	if bi, ok := debug.ReadBuildInfo(); ok {
		if v == "" && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && c == "" {
				c = s.Value
			}
		}
	}
	if v == "" {
		v = "(devel)"
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

func cmdVersion(ctx context.Context, e *env, args []string) error {
	var flags common
	fs := newFlagSet(e, "version", &flags, true)
	if pos, err := parseFlags(fs, args); err != nil {
		return err
	} else if len(pos) > 0 {
		return usagef("version: takes no arguments")
	}
	v, c := buildVersion()
	if flags.json {
		return jsonLines(e.stdout, map[string]string{"version": v, "commit": c, "go": runtime.Version()})
	}
	fmt.Fprintf(e.stdout, "runnerd %s (commit %s, %s)\n", v, c, runtime.Version())
	return nil
}

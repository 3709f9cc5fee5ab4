package main

import (
	"context"
	"fmt"
	"strings"

	"runnerd/internal/atomapi/atomsim"
)

func cmdSim(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "sim", &c, false)
	addr := fs.String("addr", "127.0.0.1:9090", "listen `address`")
	var o atomsim.Options
	fs.StringVar(&o.Account, "account", "sim-account", "account `id`")
	fs.StringVar(&o.User, "user", "runnerd@sim", "user `name`")
	fs.StringVar(&o.Password, "password", "sim-password", "`password`")
	fs.IntVar(&o.Rate, "rate", 5, "requests per second (any 1-second window); -1 = unlimited")
	fs.IntVar(&o.DailyLimit, "daily-limit", 10000, "requests per rolling 24 hours (hour buckets); -1 = unlimited")
	fs.Int64Var(&o.Seed, "seed", 1, "seed of the generated data")
	fs.IntVar(&o.AuditLogs, "audit-logs", 25000, "seeded AuditLog records")
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	return atomsim.ListenAndServe(ctx, *addr, o, func(url string) {
		base := strings.TrimSuffix(url, "/"+o.Account)
		fmt.Fprintf(e.stdout, "atomsim: serving the simulated AtomSphere API at %s\n", url)
		fmt.Fprintf(e.stdout, "  [account] url = %q\n  id       %s\n  user     %s\n  password %s\n", base, o.Account, o.User, o.Password)
		fmt.Fprintf(e.stdout, "  limits   %d requests/s, %d per rolling 24h (hour buckets)\n", o.Rate, o.DailyLimit)
	})
}

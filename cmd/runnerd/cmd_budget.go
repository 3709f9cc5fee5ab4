package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/engine"
	"runnerd/internal/report"
	"runnerd/internal/store"
)

// budgetJSON is `runnerd budget -json`: the window's Status (DESIGN 3.2), plus
// next_frees and the 503 classification as additions.
type budgetJSON struct {
	budget.Status
	NextFrees            int    `json:"next_frees"`
	Classification       string `json:"classification"`
	ClassificationReason string `json:"classification_reason,omitempty"`
	ClassificationUntil  string `json:"classification_until,omitempty"`
}

// budgetOf reads the budget as cfg's ledger shows it at now.
func budgetOf(ctx context.Context, cfg *config.Config, db *store.DB, now time.Time) (budgetJSON, error) {
	v, err := engine.LoadBudgetView(ctx, cfg, db, now)
	if err != nil {
		return budgetJSON{}, err
	}
	st, c := v.Window.Status(v.Now), v.Classification
	return budgetJSON{Status: st, NextFrees: st.NextFrees, Classification: c.Kind,
		ClassificationReason: c.Reason, ClassificationUntil: report.RFC3339(c.Until)}, nil
}

func cmdBudget(ctx context.Context, e *env, args []string) error {
	var c common
	fs := newFlagSet(e, "budget", &c, true)
	if _, err := parseFlags(fs, args); err != nil {
		return err
	}
	cfg, db, err := openConfigStore(ctx, e, c.config, store.Options{ReadOnly: true})
	if err != nil {
		return err
	}
	defer db.Close()
	j, err := budgetOf(ctx, cfg, db, time.Now())
	if err != nil {
		return err
	}
	if c.json {
		return jsonLines(e.stdout, j)
	}
	w := e.stdout
	fmt.Fprintf(w, "daily limit %d, reserve %d, rate %g/s\n", j.DailyLimit, j.Reserve, j.Rate)
	fmt.Fprintf(w, "used %d in the rolling 24 h since %s; %d left for runnerd's work\n", j.Used, report.RFC3339(j.WindowStart), j.Remaining)
	if !j.NextFreeAt.IsZero() {
		fmt.Fprintf(w, "next capacity frees at %s (%d calls)\n", report.RFC3339(j.NextFreeAt), j.NextFrees)
	}
	fmt.Fprintf(w, "503 classification: %s", j.Classification)
	if j.ClassificationReason != "" {
		fmt.Fprintf(w, " (%s)", j.ClassificationReason)
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w)
	writeBars(w, j.Hours)
	return nil
}

// writeBars draws the hour buckets as a small text bar chart.
func writeBars(w io.Writer, hours []budget.HourCount) {
	max := 1
	for _, h := range hours {
		if h.Calls > max {
			max = h.Calls
		}
	}
	const width = 40
	for _, h := range hours {
		n := h.Calls * width / max
		if h.Calls > 0 && n == 0 {
			n = 1
		}
		fmt.Fprintf(w, "%s %-*s %d\n", h.Hour.UTC().Format("Jan 02 15h"), width, strings.Repeat("█", n), h.Calls)
	}
}

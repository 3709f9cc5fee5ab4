package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"runnerd/internal/budget"
	"runnerd/internal/config"
	"runnerd/internal/engine"
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

// budgetView is the budget as the ledger shows it at now.
type budgetView struct {
	limits budget.Limits
	window *budget.Window
	class  budget.Classification
	now    time.Time
}

// loadBudgetView rebuilds the window from the ledger's hourly rollup and reads
// the last recorded 503 classification.
func loadBudgetView(ctx context.Context, cfg *config.Config, db *store.DB, now time.Time) (*budgetView, error) {
	v := &budgetView{
		limits: engine.Limits(cfg),
		now:    now,
	}
	var err error
	if v.window, err = engine.LoadWindow(ctx, db, v.limits, now); err != nil {
		return nil, err
	}
	// The daemon records each change of its 503 classification; what it last
	// believed holds until its Until (an "ok" has none).
	v.class = budget.Classification{Kind: "ok"}
	s, err := db.Meta(ctx, engine.MetaClassification)
	if errors.Is(err, store.ErrNotFound) {
		s, err = "", nil // no 503 seen yet
	}
	if err != nil {
		return nil, fmt.Errorf("budget: read the last 503 classification: %w", err)
	}
	if s != "" {
		var c budget.Classification
		if json.Unmarshal([]byte(s), &c) == nil && (c.Until.IsZero() || c.Until.After(now)) {
			v.class = c
		}
	}
	return v, nil
}

func (v *budgetView) json() budgetJSON {
	st := v.window.Status(v.now)
	return budgetJSON{Status: st, NextFrees: st.NextFrees, Classification: v.class.Kind,
		ClassificationReason: v.class.Reason, ClassificationUntil: rfc3339(v.class.Until)}
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
	v, err := loadBudgetView(ctx, cfg, db, time.Now())
	if err != nil {
		return err
	}
	j := v.json()
	if c.json {
		return jsonLines(e.stdout, j)
	}
	w := e.stdout
	fmt.Fprintf(w, "daily limit %d, reserve %d, rate %g/s\n", j.DailyLimit, j.Reserve, j.Rate)
	fmt.Fprintf(w, "used %d in the rolling 24 h since %s; %d left for runnerd's work\n", j.Used, rfc3339(j.WindowStart), j.Remaining)
	if !j.NextFreeAt.IsZero() {
		fmt.Fprintf(w, "next capacity frees at %s (%d calls)\n", rfc3339(j.NextFreeAt), j.NextFrees)
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

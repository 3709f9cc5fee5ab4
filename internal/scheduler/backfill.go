package scheduler

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// A backfill's window (RunNow's from/to) is kept in the run's Detail under
// these keys, next to whatever the kind records there, so that a run picked
// up again — deferred, interrupted by a stop, refired — exports the window it
// was asked for rather than the next incremental one.
const (
	keyBackfillFrom = "backfill_from"
	keyBackfillTo   = "backfill_to"
)

// withBackfill returns detail (JSON text, "" for none) with the window from/to
// added; detail itself when the window is zero. A detail that is not a JSON
// object is kept as a string under "detail".
func withBackfill(detail string, from, to time.Time) string {
	if from.IsZero() && to.IsZero() {
		return detail
	}
	m := map[string]json.RawMessage{}
	if strings.TrimSpace(detail) != "" {
		if err := json.Unmarshal([]byte(detail), &m); err != nil || m == nil {
			raw, _ := json.Marshal(detail)
			m = map[string]json.RawMessage{"detail": raw}
		}
	}
	delete(m, keyBackfillFrom)
	delete(m, keyBackfillTo)
	put := func(k string, t time.Time) {
		if !t.IsZero() {
			m[k], _ = json.Marshal(t.UTC().Format(time.RFC3339Nano))
		}
	}
	put(keyBackfillFrom, from)
	put(keyBackfillTo, to)
	b, err := json.Marshal(m) // map keys sorted: stable text
	if err != nil {
		return detail // not reached: every value is valid JSON
	}
	return string(b)
}

// backfillWindow reads the window withBackfill recorded in a run's Detail:
// zero times for a run that is not a backfill, an error when the Detail names
// a window that cannot be read back.
func backfillWindow(detail string) (from, to time.Time, err error) {
	if !strings.Contains(detail, `"`+keyBackfillFrom+`"`) && !strings.Contains(detail, `"`+keyBackfillTo+`"`) {
		return time.Time{}, time.Time{}, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal([]byte(detail), &m); err != nil {
		return time.Time{}, time.Time{}, fmt.Errorf("run detail: %w", err)
	}
	read := func(k string) (time.Time, error) {
		raw, ok := m[k]
		if !ok {
			return time.Time{}, nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return time.Time{}, fmt.Errorf("run detail %s: %w", k, err)
		}
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return time.Time{}, fmt.Errorf("run detail %s: %w", k, err)
		}
		return t, nil
	}
	if from, err = read(keyBackfillFrom); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if to, err = read(keyBackfillTo); err != nil {
		return time.Time{}, time.Time{}, err
	}
	if from.IsZero() && to.IsZero() {
		if _, ok := m[keyBackfillFrom]; ok {
			return from, to, fmt.Errorf("run detail %s: zero time", keyBackfillFrom)
		}
		if _, ok := m[keyBackfillTo]; ok {
			return from, to, fmt.Errorf("run detail %s: zero time", keyBackfillTo)
		}
	}
	return from, to, nil
}

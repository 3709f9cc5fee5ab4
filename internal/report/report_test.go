package report

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"runnerd"
	"runnerd/internal/store"
)

// keys returns the JSON object keys of v.
func keys(t *testing.T, v any) map[string]bool {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	out := map[string]bool{}
	for k := range m {
		out[k] = true
	}
	return out
}

// TestDesignFields: the field names DESIGN 3.2 makes the contract are all
// there, for an object with every field at its zero value too.
func TestDesignFields(t *testing.T) {
	at := time.Date(2026, 12, 3, 2, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		name string
		v    any
		want string
	}{
		{"call", ToCall(store.Call{ID: 1, StartedAt: at}), "id, run_id, job, started_at, finished_at, method, path, operation, status, duration_ms, attempt, error"},
		{"zero call", ToCall(store.Call{}), "id, run_id, job, started_at, finished_at, method, path, operation, status, duration_ms, attempt, error"},
		{"run", ToRun(runnerd.Run{ID: 1, NominalTime: at, State: runnerd.StateSucceeded}), "id, job, kind, nominal_time, started_at, finished_at, state, calls, error"},
		{"zero run", ToRun(runnerd.Run{}), "id, job, kind, nominal_time, started_at, finished_at, state, calls, error"},
	} {
		got := keys(t, tc.v)
		for _, k := range strings.Split(tc.want, ", ") {
			if !got[k] {
				t.Errorf("%s: no %q in %v", tc.name, k, got)
			}
		}
	}
}

func TestTimesAreRFC3339UTC(t *testing.T) {
	at := time.Date(2026, 3, 29, 3, 30, 0, 0, time.FixedZone("CEST", 2*3600))
	r := ToRun(runnerd.Run{NominalTime: at, Detail: "not json"})
	if r.NominalTime != "2026-03-29T01:30:00Z" {
		t.Errorf("nominal_time = %q; want 2026-03-29T01:30:00Z", r.NominalTime)
	}
	if r.StartedAt != "" {
		t.Errorf("started_at of a run not started = %q; want empty", r.StartedAt)
	}
	if r.Detail != nil {
		t.Errorf("detail = %s; want it left out when it is not JSON", r.Detail)
	}
}

func TestAuditCSVRoundTrip(t *testing.T) {
	recs := []store.AuditRecord{{DocumentID: "d1", Date: time.Date(2026, 1, 5, 10, 0, 0, 0, time.UTC), UserID: "ops@example.com",
		Message: "a, \"quoted\"\nmessage", Properties: []store.AuditProperty{{Name: "ENVIRONMENT_ID", Value: "env-prod"}}}}
	var b strings.Builder
	if err := WriteAuditCSV(&b, recs); err != nil {
		t.Fatal(err)
	}
	lines := b.String()
	if !strings.HasPrefix(lines, strings.Join(AuditCSVHeader, ",")+"\n") {
		t.Errorf("CSV does not start with the header: %q", lines)
	}
	if !strings.Contains(lines, `"a, ""quoted""`+"\nmessage\"") || !strings.Contains(lines, `ENVIRONMENT_ID`) {
		t.Errorf("CSV = %q; want the message quoted and the properties kept", lines)
	}
}

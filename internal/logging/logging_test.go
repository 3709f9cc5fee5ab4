package logging

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	env := func(m map[string]string) func(string) string { return func(k string) string { return m[k] } }
	for _, tc := range []struct {
		name, level, format string
		env                 map[string]string
		wantTime, wantJSON  bool
	}{
		{"text off a terminal", "info", "auto", nil, true, false},
		{"journald drops the time", "info", "auto", map[string]string{"JOURNAL_STREAM": "8:1234"}, false, false},
		{"json", "info", "json", nil, true, true},
		{"json under journald", "info", "json", map[string]string{"JOURNAL_STREAM": "8:1234"}, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			log, lv, err := New(&b, tc.level, tc.format, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			log.Debug("hidden")
			log.Info("shown", "job", "promote")
			out := b.String()
			if strings.Contains(out, "hidden") || !strings.Contains(out, "shown") {
				t.Errorf("at info: %q", out)
			}
			if got := strings.Contains(out, "time"); got != tc.wantTime {
				t.Errorf("time in %q: %v; want %v", out, got, tc.wantTime)
			}
			if got := strings.HasPrefix(out, "{"); got != tc.wantJSON {
				t.Errorf("JSON %q: %v; want %v", out, got, tc.wantJSON)
			}
			if err := SetLevel(lv, "debug"); err != nil || lv.Level() != slog.LevelDebug {
				t.Errorf("SetLevel(debug) = %v, level %v", err, lv.Level())
			}
		})
	}
	if _, _, err := New(&bytes.Buffer{}, "loud", "text", env(nil)); err == nil || !strings.Contains(err.Error(), "loud") {
		t.Errorf("level loud: %v; want an error naming it", err)
	}
	if _, _, err := New(&bytes.Buffer{}, "info", "xml", env(nil)); err == nil || !strings.Contains(err.Error(), "xml") {
		t.Errorf("format xml: %v; want an error naming it", err)
	}
}

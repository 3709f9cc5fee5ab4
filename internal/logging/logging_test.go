package logging

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
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
			if got := strings.HasPrefix(strings.TrimPrefix(out, "<6>"), "{"); got != tc.wantJSON {
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

// TestJournalPriorities: under JOURNAL_STREAM every line starts with its
// syslog priority, so `journalctl -p err` shows the errors; a zero time is
// never printed; loggers made With attributes keep the prefix; concurrent
// records each get their own.
func TestJournalPriorities(t *testing.T) {
	for _, format := range []string{"text", "json", "auto"} {
		var b bytes.Buffer
		log, _, err := New(&b, "debug", format, func(k string) string {
			if k == "JOURNAL_STREAM" {
				return "8:1234"
			}
			return ""
		})
		if err != nil {
			t.Fatal(err)
		}
		log.Error("reload: configuration refused", "not_before", time.Time{})
		log.Warn("deferred")
		log.Info("ready")
		log.With("job", "promote").Debug("asked")
		lines := strings.Split(strings.TrimSuffix(b.String(), "\n"), "\n")
		want := []string{"<3>", "<4>", "<6>", "<7>"}
		if len(lines) != len(want) {
			t.Fatalf("%s: %d lines %q; want %d", format, len(lines), lines, len(want))
		}
		for i, l := range lines {
			if !strings.HasPrefix(l, want[i]) || strings.Count(l, "<") != 1 {
				t.Errorf("%s: line %d = %q; want it to start with %s, once", format, i, l, want[i])
			}
		}
		if strings.Contains(b.String(), "0001-01-01") || strings.Contains(b.String(), "not_before") {
			t.Errorf("%s: the zero time was printed: %q", format, lines[0])
		}
	}
	// Off the journal: no prefix.
	var b bytes.Buffer
	log, _, _ := New(&b, "info", "text", func(string) string { return "" })
	log.Error("x")
	if strings.HasPrefix(b.String(), "<") {
		t.Errorf("without JOURNAL_STREAM: %q; want no priority prefix", b.String())
	}
	// Concurrent records: each line carries its own record's priority.
	b.Reset()
	log, _, _ = New(&syncBuffer{b: &b}, "info", "text", func(string) string { return "8:1" })
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for range 200 {
				if i%2 == 0 {
					log.Error("e")
				} else {
					log.Info("i")
				}
			}
		})
	}
	wg.Wait()
	for _, l := range strings.Split(strings.TrimSpace(b.String()), "\n") {
		if !(strings.HasPrefix(l, "<3>") && strings.Contains(l, "level=ERROR")) && !(strings.HasPrefix(l, "<6>") && strings.Contains(l, "level=INFO")) {
			t.Fatalf("line %q: priority and level disagree", l)
		}
	}
}

type syncBuffer struct {
	mu sync.Mutex
	b  *bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// TestUnderJournalMatchesTheStream: JOURNAL_STREAM counts only for the file
// it names (device:inode), so a command run from a shell inside a unit, its
// stderr elsewhere, logs without prefixes.
func TestUnderJournalMatchesTheStream(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stream")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	if !underJournal(f, fmt.Sprintf("%d:%d", st.Dev, st.Ino)) {
		t.Error("the named stream: not taken as the journal")
	}
	if underJournal(f, fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)) {
		t.Error("another stream: taken as the journal")
	}
}

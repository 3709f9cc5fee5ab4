// Package logging builds runnerd's slog logger from the [log] section: tint on
// a terminal, plain key=value lines or JSON otherwise, and a level that a
// reload can change. Under journald (JOURNAL_STREAM names the stream the log
// goes to) each line starts with its syslog priority, <3> for errors, <4>
// warnings, <6> info, <7> debug (sd-daemon(3)), so `journalctl -p err` finds
// them, and carries no timestamp (journald stamps each line). An attribute
// holding the zero time is left out: it says "not set", not year 1.
package logging

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/lmittmann/tint"
	"github.com/mattn/go-isatty"
)

// New builds the daemon's logger:
//   - format "json": slog's JSON handler;
//   - format "text", or "auto" under journald (JOURNAL_STREAM set) or off a terminal:
//     plain key=value lines, without timestamps when journald adds its own;
//   - "auto" on a terminal: tint, coloured.
func New(w io.Writer, level, format string, getenv func(string) string) (*slog.Logger, *slog.LevelVar, error) {
	lv := new(slog.LevelVar)
	if err := SetLevel(lv, level); err != nil {
		return nil, nil, err
	}
	journald := underJournal(w, getenv("JOURNAL_STREAM"))
	dropTime := func(groups []string, a slog.Attr) slog.Attr {
		if journald && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		if a.Value.Kind() == slog.KindTime && a.Value.Time().IsZero() {
			return slog.Attr{}
		}
		return a
	}
	var pw *prefixWriter
	if journald {
		pw = &prefixWriter{w: w}
		w = pw
	}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
	case "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
	case "", "auto":
		if f, ok := w.(*os.File); ok && !journald && isatty.IsTerminal(f.Fd()) {
			h = tint.NewTextHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly, ReplaceAttr: dropTime})
		} else {
			h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
		}
	default:
		return nil, nil, fmt.Errorf("log format %q: want auto, text or json", format)
	}
	if pw != nil {
		h = &journalHandler{inner: h, pw: pw}
	}
	return slog.New(h), lv, nil
}

// underJournal reports whether w is the journal stream JOURNAL_STREAM names
// ("DEVICE:INODE" of the stream's file). A w that is not a file (a test's
// buffer) is taken at the variable's word; a file that is another stream (a
// command run from a shell inside a unit, its stderr a terminal) is not.
func underJournal(w io.Writer, stream string) bool {
	if stream == "" {
		return false
	}
	f, ok := w.(*os.File)
	if !ok {
		return true
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return stream == fmt.Sprintf("%d:%d", st.Dev, st.Ino)
}

// Priority is the syslog priority journald files a record of level l under.
func Priority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

// journalHandler writes each record with its "<N>" priority in front. slog's
// handlers write a record in one Write; the lock makes that Write the one
// whose prefix was set for it.
type journalHandler struct {
	inner slog.Handler
	pw    *prefixWriter
}

type prefixWriter struct {
	mu     sync.Mutex
	w      io.Writer
	prefix []byte
	buf    []byte
}

func (p *prefixWriter) Write(b []byte) (int, error) {
	p.buf = append(append(p.buf[:0], p.prefix...), b...)
	if _, err := p.w.Write(p.buf); err != nil {
		return 0, err
	}
	return len(b), nil
}

func (h *journalHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *journalHandler) Handle(ctx context.Context, r slog.Record) error {
	h.pw.mu.Lock()
	defer h.pw.mu.Unlock()
	h.pw.prefix = append(h.pw.prefix[:0], '<', byte('0'+Priority(r.Level)), '>')
	return h.inner.Handle(ctx, r)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	return &journalHandler{inner: h.inner.WithAttrs(as), pw: h.pw}
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	return &journalHandler{inner: h.inner.WithGroup(name), pw: h.pw}
}

// SetLevel sets lv from a [log] level name.
func SetLevel(lv *slog.LevelVar, level string) error {
	switch level {
	case "debug":
		lv.Set(slog.LevelDebug)
	case "", "info":
		lv.Set(slog.LevelInfo)
	case "warn":
		lv.Set(slog.LevelWarn)
	case "error":
		lv.Set(slog.LevelError)
	default:
		return fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	return nil
}

// Package logging builds runnerd's slog logger from the [log] section: tint on
// a terminal, plain key=value lines or JSON otherwise, without timestamps
// under journald (which stamps each line itself), and a level that a reload
// can change.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
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
	journald := getenv("JOURNAL_STREAM") != ""
	dropTime := func(groups []string, a slog.Attr) slog.Attr {
		if journald && len(groups) == 0 && a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}
	var h slog.Handler
	switch format {
	case "json":
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
	case "text":
		h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
	case "", "auto":
		if f, ok := w.(*os.File); ok && !journald && isatty.IsTerminal(f.Fd()) {
			h = tint.NewTextHandler(w, &tint.Options{Level: lv, TimeFormat: time.TimeOnly})
		} else {
			h = slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv, ReplaceAttr: dropTime})
		}
	default:
		return nil, nil, fmt.Errorf("log format %q: want auto, text or json", format)
	}
	return slog.New(h), lv, nil
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

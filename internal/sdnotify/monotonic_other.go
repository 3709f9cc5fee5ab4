//go:build !linux

package sdnotify

import (
	"errors"
	"time"
)

// monotonicNow is unavailable off Linux, where there is no systemd.
func monotonicNow() (time.Duration, error) {
	return 0, errors.New("CLOCK_MONOTONIC is only read on linux")
}

//go:build !linux

package store

// lowerThreadPriority is a no-op where per-thread priorities are not
// available.
func lowerThreadPriority() {}

package atomapi

import "sync/atomic"

// Failpoint names: the moments at which the crash suite kills runnerd.
const (
	// FailAfterBegin: the ledger row of an unsafe call is committed and the
	// request has not been written.
	FailAfterBegin = "after-begin"
	// FailAfterWrite: the request of an unsafe call is written (httptrace
	// WroteRequest) and its answer has not been read.
	FailAfterWrite = "after-write"
	// FailAfterAnswer: the answer of an unsafe call is read and the ledger row
	// is not yet completed.
	FailAfterAnswer = "after-answer"
	// FailMidExport: an export has written part of a window to its temporary
	// file (internal/scheduler/kinds/export.go).
	FailMidExport = "mid-export"
)

// failpoint is the test-only hook; nil (always, in a shipped binary) costs one
// atomic load per hit.
var failpoint atomic.Pointer[func(name string)]

// SetFailpoint installs f, called at each named failpoint (nil removes it).
// Only test code calls it: cmd/runnerd's crash suite installs, from an init in
// a _test.go file, a hook that kills the process at a chosen hit of a chosen
// failpoint (RUNNERD_FAILPOINT=name[:count]). A runnerd built by `go build`
// has no such init, so the environment variable means nothing to it.
func SetFailpoint(f func(name string)) {
	if f == nil {
		failpoint.Store(nil)
		return
	}
	failpoint.Store(&f)
}

// Failpoint marks a named moment for the crash suite; a no-op unless a test
// installed a hook with SetFailpoint.
func Failpoint(name string) {
	if f := failpoint.Load(); f != nil {
		(*f)(name)
	}
}

package store

import "syscall"

// lowerThreadPriority puts the calling OS thread at nice 19 and, where the
// kernel allows, in the idle I/O scheduling class. Best effort: errors are
// ignored (the check then runs at normal priority).
func lowerThreadPriority() {
	tid := syscall.Gettid()
	_ = syscall.Setpriority(syscall.PRIO_PROCESS, tid, 19)
	const (
		ioprioWhoProcess = 1
		ioprioClassIdle  = 3
		ioprioClassShift = 13
	)
	_, _, _ = syscall.Syscall(syscall.SYS_IOPRIO_SET, ioprioWhoProcess, uintptr(tid), ioprioClassIdle<<ioprioClassShift)
}

//go:build unix

package notify

import (
	"os/exec"
	"syscall"
)

// setGroup runs cmd in a process group of its own, and makes its
// cancellation kill the whole group.
func setGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

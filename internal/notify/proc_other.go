//go:build !unix

package notify

import "os/exec"

// setGroup leaves cancellation to exec: only the program itself is killed.
func setGroup(cmd *exec.Cmd) {}

//go:build !race

package atomsim_test

const raceEnabled = false

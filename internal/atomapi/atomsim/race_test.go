//go:build race

package atomsim_test

const raceEnabled = true

//go:build race

package budget

// raceEnabled: the race detector slows the simulations down about tenfold.
const raceEnabled = true

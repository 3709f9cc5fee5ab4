// Package budget keeps the account inside its limits: the per-second rate, the
// rolling 24-hour allowance counted in UTC hour buckets, the planner that admits
// or defers runs by priority with a 24-hour look-ahead, and the classification
// of 503 answers. It is pure: it takes now and does no I/O, and imports neither
// the client (internal/budget/apigate adapts the Gate to the client's hooks)
// nor the store (internal/engine loads the window from the ledger).
package budget

// Package kinds implements the three job kinds behind scheduler.Kind: execute
// (start a process, optionally follow it to its outcome), deploy (promote a
// process between environments, idempotently) and export (paged QUERY of an
// object to files and to the local store).
package kinds

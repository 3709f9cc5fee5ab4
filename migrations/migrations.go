// Package migrations holds runnerd's numbered SQL schema migrations,
// NNNN_name.sql, embedded into the binary. A released file is never edited: a
// change is a new file.
package migrations

import "embed"

// FS holds every migration file.
//
//go:embed *.sql
var FS embed.FS

// PostgresFS holds the PostgreSQL twins of the migrations, postgres/NNNN_name.sql:
// version for version the same tables, with PostgreSQL's types.
//
//go:embed postgres/*.sql
var PostgresFS embed.FS

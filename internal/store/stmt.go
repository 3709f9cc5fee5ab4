package store

import (
	"context"
	"database/sql"
)

// stmtCache holds the hot write paths' statements, prepared once on the
// writer pool (one connection) when the store is opened; a transaction binds
// them with Tx.StmtContext, which reuses the connection's prepared statement
// instead of parsing the SQL again. It is filled before the DB is shared and
// only read afterwards. A statement that could not be prepared (an old schema
// opened with NoMigrate) is simply run unprepared.
type stmtCache struct {
	m map[string]*sql.Stmt
}

// hotStatements are prepared at open: the per-call and per-page writes.
var hotStatements = []string{qBumpRunCalls, qInsertCall, qBumpHour, qDropHour, qCallStarted, qEndCall,
	qInsertAudit, qInsertAuditProperty, qSetLastNominal}

// prepare fills the cache. It must run while no transaction holds the
// writer's connection (Prepare needs it).
func (c *stmtCache) prepare(ctx context.Context, db *sql.DB) {
	c.m = make(map[string]*sql.Stmt, len(hotStatements))
	for _, q := range hotStatements {
		if s, err := db.PrepareContext(ctx, q); err == nil {
			c.m[q] = s
		}
	}
}

func (c *stmtCache) close() {
	for _, s := range c.m {
		s.Close()
	}
	c.m = nil
}

// exec runs q in the transaction, through the prepared statement if there
// is one.
func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	if s, ok := t.db.stmts.m[q]; ok {
		return t.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

// queryRow is exec for a query of one row.
func (t *tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	if s, ok := t.db.stmts.m[q]; ok {
		return t.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return t.QueryRowContext(ctx, q, args...)
}

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
	qCheckAudit, qMaxAuditID, qInsertNewAudit, qInsertNewAuditProperties, qInsertAudit, qInsertAuditProperties,
	qSetLastNominal}

// prepare fills the cache. It must run while no transaction holds the
// writer's connection (Prepare needs it).
func (c *stmtCache) prepare(ctx context.Context, db *pool) {
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
//
// The statement runs under a context that is never cancelled: go-sqlite3
// starts a goroutine to watch a cancellable context for every statement, a
// scheduler round-trip that cost more than the statement on the hot paths;
// a write transaction's statements are short, and the transaction itself
// still ends with ctx.
func (t *tx) exec(ctx context.Context, q string, args ...any) (sql.Result, error) {
	ctx = context.WithoutCancel(ctx)
	if s, ok := t.db.stmts.m[q]; ok {
		return t.StmtContext(ctx, s).ExecContext(ctx, args...)
	}
	return t.ExecContext(ctx, q, args...)
}

// queryRow is exec for a query of one row.
func (t *tx) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	ctx = context.WithoutCancel(ctx)
	if s, ok := t.db.stmts.m[q]; ok {
		return t.StmtContext(ctx, s).QueryRowContext(ctx, args...)
	}
	return t.QueryRowContext(ctx, q, args...)
}

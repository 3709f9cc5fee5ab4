package store

import (
	"context"
	"database/sql"
	"strconv"
	"strings"
	"sync"
)

// The store's SQL is written for SQLite. On PostgreSQL (a store opened with
// a postgres:// URL, issue 21) each statement is translated once, when first
// used, and the translation cached:
//
//   - placeholders become PostgreSQL's: ? is numbered in order, ?N is $N;
//   - LIKE becomes ILIKE (SQLite's LIKE ignores the case of ASCII letters; in
//     a C-collated database, so does ILIKE, and only of those);
//   - a statement that needs more than that (SQLite's catalogue, its JSON and
//     date functions, a two-argument max) has its PostgreSQL text registered
//     with pgQuery beside the SQLite one.
//
// The schema is the same in both, column for column, with PostgreSQL's types
// (BIGINT for SQLite's INTEGER: times are unix milliseconds), from
// migrations/postgres.

// pool is a database/sql pool that speaks the store's dialect.
type pool struct {
	*sql.DB
	pg bool
}

func (p *pool) q(s string) string {
	if p.pg {
		return pgSQL(s)
	}
	return s
}

func (p *pool) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return p.DB.ExecContext(ctx, p.q(q), args...)
}

func (p *pool) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return p.DB.QueryContext(ctx, p.q(q), args...)
}

func (p *pool) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return p.DB.QueryRowContext(ctx, p.q(q), args...)
}

func (p *pool) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return p.DB.PrepareContext(ctx, p.q(q))
}

func (p *pool) Exec(q string, args ...any) (sql.Result, error) {
	return p.DB.ExecContext(context.Background(), p.q(q), args...)
}

func (p *pool) Query(q string, args ...any) (*sql.Rows, error) {
	return p.DB.QueryContext(context.Background(), p.q(q), args...)
}

func (p *pool) QueryRow(q string, args ...any) *sql.Row {
	return p.DB.QueryRowContext(context.Background(), p.q(q), args...)
}

func (p *pool) Prepare(q string) (*sql.Stmt, error) {
	return p.DB.PrepareContext(context.Background(), p.q(q))
}

func (p *pool) Begin() (*dtx, error) { return p.BeginTx(context.Background(), nil) }

func (p *pool) BeginTx(ctx context.Context, opts *sql.TxOptions) (*dtx, error) {
	t, err := p.DB.BeginTx(ctx, opts)
	if err != nil {
		return nil, err
	}
	return &dtx{Tx: t, pg: p.pg}, nil
}

// dtx is a transaction of a pool.
type dtx struct {
	*sql.Tx
	pg bool
}

func (t *dtx) q(s string) string {
	if t.pg {
		return pgSQL(s)
	}
	return s
}

func (t *dtx) ExecContext(ctx context.Context, q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(ctx, t.q(q), args...)
}

func (t *dtx) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(ctx, t.q(q), args...)
}

func (t *dtx) QueryRowContext(ctx context.Context, q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(ctx, t.q(q), args...)
}

func (t *dtx) Exec(q string, args ...any) (sql.Result, error) {
	return t.Tx.ExecContext(context.Background(), t.q(q), args...)
}

func (t *dtx) Query(q string, args ...any) (*sql.Rows, error) {
	return t.Tx.QueryContext(context.Background(), t.q(q), args...)
}

func (t *dtx) QueryRow(q string, args ...any) *sql.Row {
	return t.Tx.QueryRowContext(context.Background(), t.q(q), args...)
}

func (t *dtx) PrepareContext(ctx context.Context, q string) (*sql.Stmt, error) {
	return t.Tx.PrepareContext(ctx, t.q(q))
}

var (
	pgOverrides = map[string]string{} // SQLite text → PostgreSQL text, filled at init
	pgCache     sync.Map              // SQLite text → translation
)

// pgQuery registers the PostgreSQL text of a statement whose SQLite text
// needs more than the mechanical translation. It returns sqlite, so that a
// statement is declared as const-like var q = pgQuery(`sqlite`, `pg`).
func pgQuery(sqlite, pg string) string {
	pgOverrides[sqlite] = pg
	return sqlite
}

// pgSQL returns q's PostgreSQL text.
func pgSQL(q string) string {
	if t, ok := pgCache.Load(q); ok {
		return t.(string)
	}
	t, ok := pgOverrides[q]
	if !ok {
		t = pgTranslate(q)
	}
	pgCache.Store(q, t)
	return t
}

// pgTranslate numbers q's placeholders and makes its LIKE an ILIKE, outside
// string literals and quoted names.
func pgTranslate(q string) string {
	var b strings.Builder
	b.Grow(len(q) + 16)
	n := 0
	for i := 0; i < len(q); i++ {
		switch c := q[i]; c {
		case '\'', '"':
			j := strings.IndexByte(q[i+1:], c)
			if j < 0 {
				b.WriteString(q[i:])
				return b.String()
			}
			b.WriteString(q[i : i+j+2])
			i += j + 1
		case '?':
			j := i + 1
			for j < len(q) && q[j] >= '0' && q[j] <= '9' {
				j++
			}
			b.WriteByte('$')
			if j > i+1 {
				b.WriteString(q[i+1 : j])
			} else {
				n++
				b.WriteString(strconv.Itoa(n))
			}
			i = j - 1
		case 'L', 'l':
			if i > 0 && isSpace(q[i-1]) && i+5 <= len(q) && strings.EqualFold(q[i:i+4], "LIKE") && isSpace(q[i+4]) {
				b.WriteString("ILIKE")
				i += 3
				continue
			}
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\t' || c == '\r' }

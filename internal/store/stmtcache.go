package store

import (
	"context"
	"database/sql"
	"sync"
	"sync/atomic"

	"github.com/jmoiron/sqlx"
)

// stmtCache keeps the record database's recurring queries prepared. A
// processing transaction runs twenty-odd short statements; compiling their
// SQL each time was about a sixth of processing's CPU on the embedded store.
// database/sql prepares a DB-level statement at most once per connection and
// lends it to any transaction on that connection, so a query is compiled once
// per connection instead of once per use.
//
// Statements are prepared only outside transactions: the embedded store has
// a single connection, and preparing on the pool while a transaction holds it
// would wait forever. A query seen inside a transaction is therefore run
// directly and remembered; once it has been seen twice (one-off queries are
// not worth a statement) it is prepared after the transaction ends.
type stmtCache struct {
	x       *sqlx.DB
	mu      sync.RWMutex
	ready   map[string]*sqlx.Stmt
	seen    map[string]int
	pending atomic.Bool // some query waits to be prepared
}

// maxStatements bounds the cache; queries built with a variable number of
// parameters stay unprepared once it is full.
const maxStatements = 256

func newStmtCache(x *sqlx.DB) *stmtCache {
	return &stmtCache{x: x, ready: map[string]*sqlx.Stmt{}, seen: map[string]int{}}
}

// lookup returns the prepared statement for query, or nil after noting that
// query was wanted.
func (c *stmtCache) lookup(query string) *sqlx.Stmt {
	c.mu.RLock()
	s := c.ready[query]
	c.mu.RUnlock()
	if s != nil {
		return s
	}
	c.mu.Lock()
	if len(c.ready)+len(c.seen) < 4*maxStatements || c.seen[query] > 0 {
		c.seen[query]++
		if c.seen[query] >= 2 {
			c.pending.Store(true)
		}
	}
	c.mu.Unlock()
	return nil
}

// prepareWanted prepares the queries seen at least twice. It must be called
// outside any transaction on the cache's database. A query that does not
// prepare is forgotten and keeps running unprepared.
func (c *stmtCache) prepareWanted(ctx context.Context) {
	if !c.pending.Swap(false) {
		return
	}
	c.mu.Lock()
	var want []string
	for q, n := range c.seen {
		if n >= 2 && len(c.ready)+len(want) < maxStatements {
			want = append(want, q)
		}
	}
	for _, q := range want {
		delete(c.seen, q)
	}
	c.mu.Unlock()
	for _, q := range want {
		s, err := c.x.PreparexContext(ctx, q)
		if err != nil {
			continue
		}
		c.mu.Lock()
		if old := c.ready[q]; old != nil {
			_ = s.Close()
		} else {
			c.ready[q] = s
		}
		c.mu.Unlock()
	}
}

// prepared tells whether query has a statement.
func (c *stmtCache) prepared(query string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.ready[query] != nil
}

func (c *stmtCache) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for q, s := range c.ready {
		_ = s.Close()
		delete(c.ready, q)
	}
}

// txExt runs a transaction's queries through the cache's statements. It
// satisfies sqlx.ExtContext, so repositories written against sqlx (the MPI's)
// get the same benefit as the store's own queries.
type txExt struct {
	tx    *sqlx.Tx
	cache *stmtCache
	bound map[*sqlx.Stmt]*sqlx.Stmt // DB statement → this transaction's handle
}

var _ sqlx.ExtContext = (*txExt)(nil)

func (e *txExt) stmt(ctx context.Context, query string) *sqlx.Stmt {
	if e.cache == nil {
		return nil
	}
	p := e.cache.lookup(query)
	if p == nil {
		return nil
	}
	if s := e.bound[p]; s != nil {
		return s
	}
	if e.bound == nil {
		e.bound = map[*sqlx.Stmt]*sqlx.Stmt{}
	}
	s := e.tx.StmtxContext(ctx, p)
	e.bound[p] = s
	return s
}

func (e *txExt) DriverName() string                                 { return e.tx.DriverName() }
func (e *txExt) Rebind(query string) string                         { return e.tx.Rebind(query) }
func (e *txExt) BindNamed(q string, arg any) (string, []any, error) { return e.tx.BindNamed(q, arg) }

func (e *txExt) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	if s := e.stmt(ctx, query); s != nil {
		return s.ExecContext(ctx, args...)
	}
	return e.tx.ExecContext(ctx, query, args...)
}

func (e *txExt) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	if s := e.stmt(ctx, query); s != nil {
		return s.QueryContext(ctx, args...)
	}
	return e.tx.QueryContext(ctx, query, args...)
}

func (e *txExt) QueryxContext(ctx context.Context, query string, args ...any) (*sqlx.Rows, error) {
	if s := e.stmt(ctx, query); s != nil {
		return s.QueryxContext(ctx, args...)
	}
	return e.tx.QueryxContext(ctx, query, args...)
}

func (e *txExt) QueryRowxContext(ctx context.Context, query string, args ...any) *sqlx.Row {
	if s := e.stmt(ctx, query); s != nil {
		return s.QueryRowxContext(ctx, args...)
	}
	return e.tx.QueryRowxContext(ctx, query, args...)
}

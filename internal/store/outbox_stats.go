package store

import (
	"context"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// OutboxOldestPending returns, per subscriber with pending rows, when its
// oldest pending (neither sent nor dead-lettered) row was created.
func (db *DB) OutboxOldestPending(ctx context.Context) (map[string]time.Time, error) {
	rows, err := db.x.QueryxContext(ctx, `SELECT subscriber, created_at FROM outbox WHERE seq IN (
		SELECT MIN(seq) FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL GROUP BY subscriber)`)
	if err != nil {
		return nil, fmt.Errorf("outbox oldest pending: %w", err)
	}
	defer rows.Close()
	out := map[string]time.Time{}
	for rows.Next() {
		var sub string
		var at time.Time
		if err := rows.Scan(&sub, &at); err != nil {
			return nil, fmt.Errorf("outbox oldest pending: %w", err)
		}
		out[sub] = at
	}
	return out, rows.Err()
}

// ReleaseOutbox gives claimed rows back unpublished, due again at next,
// without counting an attempt (the relay holds a row back while an earlier
// row for the same key waits for its retry).
func (db *DB) ReleaseOutbox(ctx context.Context, seqs []int64, next time.Time) error {
	if len(seqs) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE outbox SET next_attempt_at = ?, claimed_until = NULL WHERE seq IN (?)`, next.UTC(), seqs)
	if err != nil {
		return fmt.Errorf("release outbox: %w", err)
	}
	if _, err := db.x.ExecContext(ctx, db.rebind(q), args...); err != nil {
		return fmt.Errorf("release outbox: %w", err)
	}
	db.unclaim(seqs)
	return nil
}

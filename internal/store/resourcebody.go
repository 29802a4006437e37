package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// ResourceBodies returns the stored JSON of the resources ids that exist,
// as this transaction sees them, in one query.
func (t *Tx) ResourceBodies(ctx context.Context, ids []string) (map[string][]byte, error) {
	q, args, err := sqlx.In(`SELECT id, body FROM resources WHERE id IN (?)`, ids)
	if err != nil {
		return nil, err
	}
	rows, err := t.x.QueryxContext(ctx, t.db.rebind(q), args...)
	if err != nil {
		return nil, fmt.Errorf("read resources: %w", err)
	}
	defer rows.Close()
	out := make(map[string][]byte, len(ids))
	for rows.Next() {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			return nil, fmt.Errorf("read resources: %w", err)
		}
		out[id] = []byte(body)
	}
	return out, rows.Err()
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// ResourceBody returns the stored JSON of resource id as this transaction
// sees it, or nil when there is none.
func (t *Tx) ResourceBody(ctx context.Context, id string) ([]byte, error) {
	var body string
	err := sqlx.GetContext(ctx, t.x, &body, t.db.rebind(`SELECT body FROM resources WHERE id = ?`), id)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		return nil, nil
	case err != nil:
		return nil, fmt.Errorf("read resource %s: %w", id, err)
	}
	return []byte(body), nil
}

package store

import (
	"context"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// ResourceBodies returns the stored JSON of the resources ids that exist,
// as this transaction sees them, in one query. On the embedded store the
// transaction keeps what it read, so that PutResource of these ids writes
// without reading them again, and ids it already knows are not read.
func (t *Tx) ResourceBodies(ctx context.Context, ids []string) (map[string][]byte, error) {
	if t.db.backend == Postgres || t.plain {
		return t.readBodies(ctx, ids)
	}
	var missing []string
	for _, id := range ids {
		if _, ok := t.known[id]; !ok {
			missing = append(missing, id)
		}
	}
	if len(missing) > 0 {
		q, args, err := sqlx.In(`SELECT id, version, body, patient_id, source_authority, source_mrn FROM resources
			WHERE id IN (?)`, missing)
		if err != nil {
			return nil, err
		}
		rows, err := t.x.QueryxContext(ctx, t.db.rebind(q), args...)
		if err != nil {
			return nil, fmt.Errorf("read resources: %w", err)
		}
		defer rows.Close()
		read := make(map[string]storedRow, len(missing))
		for rows.Next() {
			var id string
			r := storedRow{found: true}
			if err := rows.Scan(&id, &r.version, &r.body, &r.patientID, &r.authority, &r.mrn); err != nil {
				return nil, fmt.Errorf("read resources: %w", err)
			}
			read[id] = r
		}
		if err := rows.Err(); err != nil {
			return nil, fmt.Errorf("read resources: %w", err)
		}
		for _, id := range missing {
			t.remember(id, read[id]) // a zero storedRow: no such resource
		}
	}
	out := make(map[string][]byte, len(ids))
	for _, id := range ids {
		if r := t.known[id]; r != nil && r.found {
			out[id] = []byte(r.body)
		}
	}
	return out, nil
}

// readBodies is ResourceBodies without keeping what it read.
func (t *Tx) readBodies(ctx context.Context, ids []string) (map[string][]byte, error) {
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

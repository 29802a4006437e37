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
		read := make(map[string]storedRow, len(missing))
		err := t.queryIDs(ctx, `SELECT id, version, body, patient_id, source_authority, source_mrn FROM resources
			WHERE id IN (?)`, missing, func(rows *sqlx.Rows) error {
			var id string
			r := storedRow{found: true}
			if err := rows.Scan(&id, &r.version, &r.body, &r.patientID, &r.authority, &r.mrn); err != nil {
				return err
			}
			read[id] = r
			return nil
		})
		if err != nil {
			return nil, err
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
	out := make(map[string][]byte, len(ids))
	err := t.queryIDs(ctx, `SELECT id, body FROM resources WHERE id IN (?)`, ids, func(rows *sqlx.Rows) error {
		var id, body string
		if err := rows.Scan(&id, &body); err != nil {
			return err
		}
		out[id] = []byte(body)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// queryIDs runs q, whose "IN (?)" takes ids, and calls scan for each row;
// errors of the query and its rows are those of reading resources.
func (t *Tx) queryIDs(ctx context.Context, q string, ids []string, scan func(*sqlx.Rows) error) error {
	q, args, err := sqlx.In(q, ids)
	if err != nil {
		return err
	}
	rows, err := t.x.QueryxContext(ctx, t.db.rebind(q), args...)
	if err != nil {
		return fmt.Errorf("read resources: %w", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return fmt.Errorf("read resources: %w", err)
		}
	}
	return rows.Err()
}

package store

import (
	"context"
	"errors"
	"io/fs"
	"testing"

	"github.com/pressly/goose/v3"
)

// TestIdentityThroughMPITables checks lookups by identifier through the
// master patient index's tables (following a merge) and moving resources
// with their source record.
func TestIdentityThroughMPITables(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		ins := db.rebind(`INSERT INTO mpi_entry (authority, mrn, enterprise_id, active, merged_authority, merged_mrn, version, body)
			VALUES (?, ?, ?, ?, ?, ?, 1, '{}')`)
		for _, r := range [][]any{
			{"urn:a", "1", "E1", 1, "", ""},
			{"urn:a", "0", "E0", 0, "urn:a", "1"}, // merged into urn:a|1
			{"urn:b", "7", "E1", 1, "", ""},
		} {
			if _, err := db.x.ExecContext(ctx, ins, r...); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := db.x.ExecContext(ctx, db.rebind(`INSERT INTO mpi_identifier (id_type, id_authority, id_value, authority, mrn)
			VALUES ('SS', 'urn:ssa', '123', 'urn:b', '7')`)); err != nil {
			t.Fatal(err)
		}
		for _, c := range []struct{ system, value, want string }{
			{"urn:a", "1", "E1"}, {"urn:a", "0", "E1"}, {"urn:ssa", "123", "E1"},
		} {
			got, err := db.PatientByIdentifier(ctx, c.system, c.value)
			if err != nil || got != c.want {
				t.Errorf("patient of %s|%s: %q %v, want %s", c.system, c.value, got, err, c.want)
			}
		}
		if _, err := db.PatientByIdentifier(ctx, "urn:a", "404"); !errors.Is(err, ErrNotFound) {
			t.Errorf("unknown identifier: %v", err)
		}
		ids, err := db.PatientIdentifiers(ctx, "E1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ids) != 3 || ids[0] != (Identifier{"urn:a", "1"}) || ids[1] != (Identifier{"urn:b", "7"}) || ids[2] != (Identifier{"urn:ssa", "123"}) {
			t.Errorf("identifiers of E1: %v", ids)
		}
		var moved int64
		err = db.InTx(ctx, func(tx *Tx) error {
			for _, r := range []Resource{
				{ID: "r1", Type: "Encounter", PatientID: "E1", Body: []byte(`{"a":1}`), SourceAuthority: "urn:b", SourceMRN: "7"},
				{ID: "r2", Type: "Encounter", PatientID: "E1", Body: []byte(`{"a":2}`), SourceAuthority: "urn:a", SourceMRN: "1"},
			} {
				if _, _, err := tx.PutResource(ctx, "env", "s", r); err != nil {
					return err
				}
			}
			var err error
			moved, err = tx.MoveSource(ctx, "urn:b", "7", "E2")
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if moved != 1 {
			t.Errorf("moved %d resources, want 1", moved)
		}
		for id, want := range map[string]string{"r1": "E2", "r2": "E1"} {
			r, err := db.GetResource(ctx, id)
			if err != nil || r.PatientID != want {
				t.Errorf("resource %s: patient %v %v, want %s", id, r, err, want)
			}
		}
	})
}

// TestMPIMigrationDownAndUp reverts migration 00002 and applies it again.
func TestMPIMigrationDownAndUp(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		dialect := goose.DialectSQLite3
		if db.backend == Postgres {
			dialect = goose.DialectPostgres
		}
		sub, err := fs.Sub(migrations, "migrations/"+db.backend)
		if err != nil {
			t.Fatal(err)
		}
		p, err := goose.NewProvider(dialect, db.x.DB, sub)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.DownTo(ctx, 1); err != nil {
			t.Fatalf("down to 1: %v", err)
		}
		if _, err := db.x.ExecContext(ctx, `SELECT source_mrn FROM resources`); err == nil {
			t.Fatal("resources.source_mrn still there after down")
		}
		if _, err := p.Up(ctx); err != nil {
			t.Fatalf("up again: %v", err)
		}
		if v, err := db.SchemaVersion(ctx); err != nil || v < 2 {
			t.Fatalf("schema version %d %v", v, err)
		}
	})
}

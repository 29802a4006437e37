package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"

	"github.com/jmoiron/sqlx"
)

// The master patient index (internal/mpi/sqlstore) keeps its tables in this
// schema (migration 00002). The queries here read them where the record
// needs identity: lookups by identifier and moving resources with their
// source record.

// MoveSource points every resource that came from the source record
// (authority, mrn) at the enterprise patient patientID, and returns how many
// rows changed.
func (t *Tx) MoveSource(ctx context.Context, authority, mrn, patientID string) (int64, error) {
	t.forgetResources()
	res, err := t.x.ExecContext(ctx, t.db.rebind(`UPDATE resources SET patient_id = ?
		WHERE source_authority = ? AND source_mrn = ? AND patient_id <> ?`), patientID, authority, mrn, patientID)
	if err != nil {
		return 0, fmt.Errorf("move resources of a source record: %w", err)
	}
	n, _ := res.RowsAffected()
	return n, nil
}

// mpiPatient returns the enterprise patient of the MPI record (authority,
// mrn), following merges; "" when the index does not know it.
func (db *DB) mpiPatient(ctx context.Context, authority, mrn string) (string, error) {
	q := db.rebind(`SELECT enterprise_id, active, merged_authority, merged_mrn FROM mpi_entry WHERE authority = ? AND mrn = ?`)
	for range 16 {
		var row struct {
			EID    string `db:"enterprise_id"`
			Active int    `db:"active"`
			MA     string `db:"merged_authority"`
			MM     string `db:"merged_mrn"`
		}
		err := db.x.GetContext(ctx, &row, q, authority, mrn)
		if errors.Is(err, sql.ErrNoRows) {
			return "", nil
		}
		if err != nil {
			return "", fmt.Errorf("look up mpi record: %w", err)
		}
		if row.Active == 1 || row.MA == "" {
			return row.EID, nil
		}
		authority, mrn = row.MA, row.MM
	}
	return "", errors.New("look up mpi record: merge chain longer than 16")
}

// PatientByIdentifier returns the enterprise patient that owns an
// identifier: a record's key in the master patient index (system is the
// assigning authority, value the MRN), else another identifier a record
// carries, else the identifier table of patients linked without the index.
func (db *DB) PatientByIdentifier(ctx context.Context, system, value string) (string, error) {
	id, err := db.mpiPatient(ctx, system, value)
	if err != nil || id != "" {
		return id, err
	}
	var keys []struct {
		Authority string `db:"authority"`
		MRN       string `db:"mrn"`
	}
	if err := db.x.SelectContext(ctx, &keys, db.rebind(`SELECT DISTINCT authority, mrn FROM mpi_identifier
		WHERE id_authority = ? AND id_value = ? ORDER BY authority, mrn`), system, value); err != nil {
		return "", fmt.Errorf("look up mpi identifier: %w", err)
	}
	for _, k := range keys {
		if id, err := db.mpiPatient(ctx, k.Authority, k.MRN); err != nil || id != "" {
			return id, err
		}
	}
	err = db.x.GetContext(ctx, &id, db.rebind(`SELECT patient_id FROM patient_identifiers WHERE system = ? AND value = ?`), system, value)
	if err != nil {
		return "", notFound(err)
	}
	return id, nil
}

// PatientIdentifiers lists the identifiers of an enterprise patient: the
// keys of its records in the master patient index (merged ones included)
// and the other identifiers they carry, then those linked without the index.
func (db *DB) PatientIdentifiers(ctx context.Context, patientID string) ([]Identifier, error) {
	var out []Identifier
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT system, value FROM (
			SELECT authority AS system, mrn AS value FROM mpi_entry WHERE enterprise_id = ?
			UNION
			SELECT i.id_authority AS system, i.id_value AS value FROM mpi_identifier i
				JOIN mpi_entry e ON e.authority = i.authority AND e.mrn = i.mrn WHERE e.enterprise_id = ?
			UNION
			SELECT system, value FROM patient_identifiers WHERE patient_id = ?
		) ids ORDER BY system, value`), patientID, patientID, patientID)
	if err != nil {
		return nil, fmt.Errorf("patient identifiers: %w", err)
	}
	return out, nil
}

// SourceResources returns the current resources of one type that came from
// the source record (authority, mrn).
func (t *Tx) SourceResources(ctx context.Context, authority, mrn, resourceType string) ([]StoredResource, error) {
	var out []StoredResource
	err := sqlx.SelectContext(ctx, t.x, &out, t.db.rebind(`SELECT id, resource_type, patient_id, version, body, envelope_id, sender, updated_at
		FROM resources WHERE source_authority = ? AND source_mrn = ? AND resource_type = ? ORDER BY id`), authority, mrn, resourceType)
	if err != nil {
		return nil, fmt.Errorf("resources of a source record: %w", err)
	}
	return out, nil
}

package store

import (
	"context"
	"fmt"
)

// Note is something processing noticed about an envelope that did not stop
// it: an unmapped code kept as sent, a value the mapping left out.
type Note struct {
	Kind   string `json:"kind"` // NoteUnmappedCode, NoteWarning
	Detail string `json:"detail"`
}

// Note kinds.
const (
	NoteUnmappedCode = "unmapped-code"
	NoteWarning      = "warning"
)

// SetNotes replaces the notes of an envelope inside the processing
// transaction. again says the envelope was processed before, so that old
// notes must go even when there are no new ones.
func (t *Tx) SetNotes(ctx context.Context, envelopeID string, again bool, notes []Note) error {
	if again {
		if _, err := t.x.ExecContext(ctx, t.db.rebind(`DELETE FROM envelope_notes WHERE envelope_id = ?`), envelopeID); err != nil {
			return fmt.Errorf("clear envelope notes: %w", err)
		}
	}
	for i, n := range notes {
		if _, err := t.x.ExecContext(ctx, t.db.rebind(`INSERT INTO envelope_notes (envelope_id, seq, kind, detail)
			VALUES (?, ?, ?, ?)`), envelopeID, i+1, n.Kind, n.Detail); err != nil {
			return fmt.Errorf("add envelope note: %w", err)
		}
	}
	return nil
}

// EnvelopeNotes returns the notes of an envelope, in the order made.
func (db *DB) EnvelopeNotes(ctx context.Context, envelopeID string) ([]Note, error) {
	var out []Note
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT kind, detail FROM envelope_notes WHERE envelope_id = ?
		ORDER BY seq`), envelopeID)
	if err != nil {
		return nil, fmt.Errorf("envelope notes: %w", err)
	}
	return out, nil
}

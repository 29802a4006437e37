package store

import (
	"context"
	"fmt"
	"testing"
)

// TestNotesAreReplacedWhenProcessedAgain: notes commit with the processing
// transaction, a rolled-back one leaves none, and processing again replaces
// them (with nothing, after the mapping was fixed).
func TestNotesAreReplacedWhenProcessedAgain(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		first := []Note{{Kind: NoteUnmappedCode, Detail: "OBX^1^3^1: GLU"}, {Kind: NoteWarning, Detail: "PID-7 left out"}}
		if err := db.InTx(ctx, func(tx *Tx) error { return tx.SetNotes(ctx, "e1", false, first) }); err != nil {
			t.Fatal(err)
		}
		_ = db.InTx(ctx, func(tx *Tx) error {
			if err := tx.SetNotes(ctx, "e2", false, first); err != nil {
				return err
			}
			return fmt.Errorf("roll back")
		})
		got, err := db.EnvelopeNotes(ctx, "e1")
		if err != nil || fmt.Sprint(got) != fmt.Sprint(first) {
			t.Fatalf("notes %v %v, want %v", got, err, first)
		}
		if got, _ := db.EnvelopeNotes(ctx, "e2"); len(got) != 0 {
			t.Fatalf("a rolled-back transaction left notes: %v", got)
		}
		if err := db.InTx(ctx, func(tx *Tx) error { return tx.SetNotes(ctx, "e1", true, nil) }); err != nil {
			t.Fatal(err)
		}
		if got, _ := db.EnvelopeNotes(ctx, "e1"); len(got) != 0 {
			t.Fatalf("notes of the earlier processing remain: %v", got)
		}
	})
}

package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

// TestLostLogUpdatesRepairedInBulk: the repair of lost log updates works
// both for a few pending envelopes (looked up one by one) and for more than
// fewPending of them (one IN query), and the prepared statements keep
// working across many commits and duplicates.
func TestLostLogUpdatesRepairedInBulk(t *testing.T) {
	for _, n := range []int{fewPending - 1, fewPending + 5} {
		t.Run(fmt.Sprint(n, " pending"), func(t *testing.T) {
			ctx := context.Background()
			db, err := Open(ctx, Options{DataDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			defer db.Close()
			for i := range n {
				e := env(fmt.Sprint("e", i), "A", fmt.Sprint(i))
				if _, err := db.InsertEnvelopes(ctx, []*Envelope{e}); err != nil {
					t.Fatal(err)
				}
			}
			again, err := db.InsertEnvelopes(ctx, []*Envelope{env("x", "A", "0"), env("y", "A", fmt.Sprint(n))})
			if err != nil {
				t.Fatal(err)
			}
			if !again[0].Duplicate || again[0].ID != "e0" || again[1].Duplicate {
				t.Fatalf("duplicate detection: %+v", again)
			}
			finishedIDs := []string{"e0", "e2", fmt.Sprint("e", n-1)}
			for _, id := range finishedIDs {
				if err := db.InTx(ctx, func(tx *Tx) error { return tx.FinishEnvelope(ctx, id, "p-"+id, "v1") }); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := db.log.Exec(`UPDATE envelopes SET status = 'received', patient_id = ''`); err != nil {
				t.Fatal(err)
			}
			pend, err := db.PendingEnvelopes(ctx, 0, 100)
			if err != nil {
				t.Fatal(err)
			}
			if want := n + 1 - len(finishedIDs); len(pend) != want {
				t.Fatalf("%d pending, want %d", len(pend), want)
			}
			for _, e := range pend {
				for _, id := range finishedIDs {
					if e.ID == id {
						t.Fatalf("%s was processed but is pending again", id)
					}
				}
			}
			for _, id := range finishedIDs {
				got, err := db.GetEnvelope(ctx, id)
				if err != nil || got.Status != "processed" || got.PatientID != "p-"+id {
					t.Fatalf("%s not repaired: %+v %v", id, got, err)
				}
			}
		})
	}
}

// TestLogBehindIsNotProcessedAgain: a processing commit whose log update
// fails says so (ErrLogBehind); processing the envelope again is refused
// (ErrAlreadyProcessed) instead of writing it twice, and the next read of
// pending envelopes brings the log up to date.
func TestLogBehindIsNotProcessedAgain(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("e1", "A", "1")}); err != nil {
		t.Fatal(err)
	}
	finish := func() error {
		return db.InTx(ctx, func(tx *Tx) error { return tx.FinishEnvelope(ctx, "e1", "p1", "v1") })
	}
	db.FailLogUpdates(1)
	if err := finish(); !errors.Is(err, ErrLogBehind) {
		t.Fatalf("commit with a failed log update: %v, want ErrLogBehind", err)
	}
	if e, err := db.GetEnvelope(ctx, "e1"); err != nil || e.Status != "received" {
		t.Fatalf("log after the failed update: %+v %v", e, err)
	}
	if err := finish(); !errors.Is(err, ErrAlreadyProcessed) {
		t.Fatalf("processing it again: %v, want ErrAlreadyProcessed", err)
	}
	if pend, err := db.PendingEnvelopes(ctx, 0, 10); err != nil || len(pend) != 0 {
		t.Fatalf("pending after the repair: %d %v", len(pend), err)
	}
	if e, err := db.GetEnvelope(ctx, "e1"); err != nil || e.Status != "processed" || e.PatientID != "p1" {
		t.Fatalf("log after the repair: %+v %v", e, err)
	}
}

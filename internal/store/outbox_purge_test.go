package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// PurgeOutbox deletes published rows created before the cutoff, in batches,
// and keeps rows not yet published, dead-lettered rows and rows created
// after the cutoff, on both backends.
func TestPurgeOutbox(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		defer func(n int) { purgeBatch = n }(purgeBatch)
		purgeBatch = 2 // several statements for the 5 rows to go
		add := func(n int, key string) {
			t.Helper()
			if err := db.InTx(ctx, func(tx *Tx) error {
				for i := range n {
					if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "s", Topic: "t", Key: fmt.Sprint(key, i),
						Headers: map[string]string{}, Payload: []byte("bundle")}); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				t.Fatal(err)
			}
		}
		claim := func() []int64 {
			t.Helper()
			rows, err := db.ClaimOutbox(ctx, "me", 100, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			var seqs []int64
			for _, r := range rows {
				seqs = append(seqs, r.Seq)
			}
			return seqs
		}
		add(8, "old")
		old := claim()
		if len(old) != 8 {
			t.Fatalf("claimed %d", len(old))
		}
		// 5 published, 1 dead-lettered, 2 waiting (given back for later).
		if err := db.MarkSent(ctx, old[:5]); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkDead(ctx, old[5:6], "too large"); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkRetry(ctx, old[6:], "broker down", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		time.Sleep(10 * time.Millisecond)
		cutoff := time.Now()
		time.Sleep(10 * time.Millisecond)
		add(3, "new")
		if err := db.MarkSent(ctx, claim()); err != nil {
			t.Fatal(err)
		}
		n, err := db.PurgeOutbox(ctx, cutoff)
		if err != nil || n != 5 {
			t.Fatalf("purged %d, %v; want the 5 old published rows", n, err)
		}
		counts, err := db.OutboxCounts(ctx)
		if err != nil || len(counts) != 1 || counts[0].Sent != 3 || counts[0].Dead != 1 || counts[0].Pending != 2 {
			t.Fatalf("left %+v, %v; want 3 sent (new), 1 dead, 2 pending", counts, err)
		}
		if n, err := db.PurgeOutbox(ctx, cutoff); err != nil || n != 0 {
			t.Fatalf("a second purge deleted %d, %v", n, err)
		}
		// Past every row: the new published ones go too, the others stay.
		if n, err := db.PurgeOutbox(ctx, time.Now().Add(time.Hour)); err != nil || n != 3 {
			t.Fatalf("purge of everything published: %d, %v", n, err)
		}
	})
}

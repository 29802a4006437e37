package store

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
)

// TestQueuedRowsMatchOneByOne: a transaction writes its outbox rows and
// processed marks together at the end (several statements past 500 rows);
// they come out as writing each when it was queued made them: outbox rows
// numbered in the order queued, each envelope recorded once (the first mark
// of an envelope already recorded stays), nothing of a transaction rolled
// back; on both backends.
func TestQueuedRowsMatchOneByOne(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		envs := []*Envelope{env("e1", "A", "e1"), env("e2", "A", "e2"), env("e3", "A", "e3"), env("e4", "A", "e4")}
		for i := range 1200 {
			envs = append(envs, env(fmt.Sprint("m", i), "A", fmt.Sprint("m", i)))
		}
		if _, err := db.InsertEnvelopes(ctx, envs); err != nil {
			t.Fatal(err)
		}
		var want []string
		queue := func(tx *Tx, n int, env string) error {
			var entries []OutboxEntry
			for i := range n {
				e := OutboxEntry{Subscriber: fmt.Sprint("s", i%3), Topic: "t", Key: fmt.Sprint("k", i), EventType: "admit",
					EnvelopeID: env, Headers: map[string]string{"n": fmt.Sprint(i), "<": "&"}, Payload: fmt.Appendf(nil, "p%s-%d", env, i)}
				entries = append(entries, e)
				headers := fmt.Sprintf(`{"\u003c":"\u0026","n":"%d"}`, i)
				if db.backend == Postgres {
					headers = fmt.Sprintf(`{"<": "&", "n": "%d"}`, i) // jsonb's layout
				}
				want = append(want, fmt.Sprintf("%s %s %s %s %s %s admit %s", e.Subscriber, e.Topic, e.Key, e.Payload,
					headers, env, env))
			}
			// In two calls, as the pipeline queues a message's events.
			if err := tx.AddOutbox(ctx, entries[:n/2]...); err != nil {
				return err
			}
			return tx.AddOutbox(ctx, entries[n/2:]...)
		}
		err := db.InTx(ctx, func(tx *Tx) error {
			if err := queue(tx, 7, "e1"); err != nil {
				return err
			}
			if err := tx.FinishEnvelope(ctx, "e1", "p1", "v1"); err != nil {
				return err
			}
			if err := queue(tx, 1100, "e2"); err != nil {
				return err
			}
			for i := range 1200 {
				if err := tx.FinishEnvelope(ctx, fmt.Sprint("m", i), "p2", "v1"); err != nil {
					return err
				}
			}
			return tx.FinishEnvelope(ctx, "e2", "p2", "v1")
		})
		if err != nil {
			t.Fatal(err)
		}
		kept := len(want)
		err = db.InTx(ctx, func(tx *Tx) error {
			if err := queue(tx, 3, "e3"); err != nil {
				return err
			}
			if err := tx.FinishEnvelope(ctx, "e3", "p3", "v1"); err != nil {
				return err
			}
			return errors.New("roll back")
		})
		if err == nil {
			t.Fatal("no error")
		}
		want = want[:kept]
		err = db.InTx(ctx, func(tx *Tx) error {
			if err := queue(tx, 2, "e4"); err != nil {
				return err
			}
			if err := tx.FinishEnvelope(ctx, "e4", "p4", "v1"); err != nil {
				return err
			}
			return tx.FinishEnvelope(ctx, "e4", "p5", "v2")
		})
		if err != nil {
			t.Fatal(err)
		}
		payload := `CAST(payload AS TEXT)`
		if db.backend == Postgres {
			payload = `convert_from(payload, 'UTF8')`
		}
		var got []string
		if err := db.x.SelectContext(ctx, &got, `SELECT subscriber || ' ' || topic || ' ' || msg_key || ' ' || `+payload+
			` || ' ' || headers || ' ' || envelope_id || ' ' || event_type || ' ' || envelope_id FROM outbox ORDER BY seq`); err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			i := firstDiff(got, want)
			t.Fatalf("outbox has %d rows, want %d; first difference at %d: %q", len(got), len(want), i, got[min(i, len(got)-1)])
		}
		// The marks: processed_envelopes on the embedded store, the
		// envelopes' own status on PostgreSQL.
		marksQuery := `SELECT envelope_id || ' ' || patient_id || ' ' || mapping_version
			FROM processed_envelopes ORDER BY envelope_id`
		if db.backend == Postgres {
			marksQuery = `SELECT id || ' ' || patient_id || ' ' || mapping_version
				FROM envelopes WHERE status = 'processed' ORDER BY id`
		}
		var gotMarks []string
		if err := db.x.SelectContext(ctx, &gotMarks, marksQuery); err != nil {
			t.Fatal(err)
		}
		wantMarks := []string{"e1 p1 v1", "e2 p2 v1", "e4 p4 v1"}
		for i := range 1200 {
			wantMarks = append(wantMarks, fmt.Sprintf("m%d p2 v1", i))
		}
		slices.Sort(wantMarks)
		if !slices.Equal(gotMarks, wantMarks) {
			t.Fatalf("marks: %d rows, first difference at %d", len(gotMarks), firstDiff(gotMarks, wantMarks))
		}
	})
}

func firstDiff(a, b []string) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

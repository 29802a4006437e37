package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestConsoleQueries(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("e1", "LAB", "1"), env("e2", "LAB", "2"), env("e3", "EMR", "1")}); err != nil {
			t.Fatal(err)
		}
		// e1 writes two resources; e2 changes one of them and leaves the other
		// as it was.
		err := db.InTx(ctx, func(tx *Tx) error {
			for _, r := range []Resource{
				{ID: "p1", Type: "Patient", Body: []byte(`{"resourceType":"Patient","id":"p1","gender":"female"}`)},
				{ID: "o1", Type: "Observation", Body: []byte(`{"resourceType":"Observation","id":"o1","status":"final"}`)},
			} {
				if _, _, err := tx.PutResource(ctx, "e1", "LAB", r); err != nil {
					return err
				}
			}
			if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "default", Topic: "hie.events", Key: "p1", EventType: "result",
				EnvelopeID: "e1", Headers: map[string]string{}, Payload: []byte(`{"resourceType":"Bundle"}`)}); err != nil {
				return err
			}
			return tx.FinishEnvelope(ctx, "e1", "p1", "v1")
		})
		if err != nil {
			t.Fatal(err)
		}
		err = db.InTx(ctx, func(tx *Tx) error {
			if _, _, err := tx.PutResource(ctx, "e2", "LAB", Resource{ID: "p1", Type: "Patient",
				Body: []byte(`{"resourceType":"Patient","id":"p1","gender":"male"}`)}); err != nil {
				return err
			}
			if _, changed, err := tx.PutResource(ctx, "e2", "LAB", Resource{ID: "o1", Type: "Observation",
				Body: []byte(`{"resourceType":"Observation","id":"o1","status":"final"}`)}); err != nil || changed {
				return fmt.Errorf("unchanged observation: changed=%v err=%v", changed, err)
			}
			return tx.FinishEnvelope(ctx, "e2", "p1", "v1")
		})
		if err != nil {
			t.Fatal(err)
		}

		got, err := db.EnvelopeResources(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		want := []string{"Observation/o1/v1/current", "Patient/p1/v1/superseded"}
		if s := describe(got); fmt.Sprint(s) != fmt.Sprint(want) {
			t.Fatalf("e1 resources: got %v, want %v", s, want)
		}
		for _, r := range got {
			if r.RecordedAt.IsZero() || r.Body == "" {
				t.Fatalf("resource %s lacks time or body: %+v", r.ID, r)
			}
		}
		got, err = db.EnvelopeResources(ctx, "e2")
		if err != nil {
			t.Fatal(err)
		}
		if s := describe(got); fmt.Sprint(s) != fmt.Sprint([]string{"Patient/p1/v2/current"}) {
			t.Fatalf("e2 resources: %v", s)
		}
		if none, err := db.EnvelopeResources(ctx, "e3"); err != nil || len(none) != 0 {
			t.Fatalf("e3 resources: %v %v", none, err)
		}

		ev, err := db.EnvelopeOutbox(ctx, "e1")
		if err != nil {
			t.Fatal(err)
		}
		if len(ev) != 1 || ev[0].Subscriber != "default" || ev[0].Topic != "hie.events" || ev[0].State() != "pending" ||
			ev[0].PayloadBytes != int64(len(`{"resourceType":"Bundle"}`)) {
			t.Fatalf("e1 outbox: %+v", ev)
		}
		if err := db.MarkSent(ctx, []int64{ev[0].Seq}); err != nil {
			t.Fatal(err)
		}
		ev, err = db.EnvelopeOutbox(ctx, "e1")
		if err != nil || len(ev) != 1 || ev[0].State() != "sent" {
			t.Fatalf("after sent: %+v %v", ev, err)
		}
		if ev, err := db.EnvelopeOutbox(ctx, "e2"); err != nil || len(ev) != 0 {
			t.Fatalf("e2 outbox: %+v %v", ev, err)
		}

		senders, err := db.Senders(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(senders) != 2 || senders[0].Sender != "EMR" || senders[0].Messages != 1 ||
			senders[1].Sender != "LAB" || senders[1].Messages != 2 {
			t.Fatalf("senders: %+v", senders)
		}
		if time.Since(senders[0].Last) > time.Hour || senders[0].Last.IsZero() {
			t.Fatalf("last received time not read back: %v", senders[0].Last)
		}
	})
}

func describe(rs []EnvelopeResource) []string {
	var out []string
	for _, r := range rs {
		state := "superseded"
		if r.Current {
			state = "current"
		}
		out = append(out, fmt.Sprintf("%s/%s/v%d/%s", r.Type, r.ID, r.Version, state))
	}
	return out
}

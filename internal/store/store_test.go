package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// backends runs the same test against the embedded store and, when
// configured, PostgreSQL.
func backends(t *testing.T, fn func(t *testing.T, db *DB)) {
	t.Run("sqlite", func(t *testing.T) {
		db, err := Open(context.Background(), Options{DataDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fn(t, db)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := TestPostgresDSN(t)
		db, err := Open(context.Background(), Options{PostgresDSN: dsn})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		fn(t, db)
	})
}

// insertOneProcessed stores envelopes e1 and e2 of sender A, and processes
// e1 (for patient p1, mapping version v1).
func insertOneProcessed(t *testing.T, db *DB) {
	t.Helper()
	ctx := context.Background()
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("e1", "A", "1"), env("e2", "A", "2")}); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.FinishEnvelope(ctx, "e1", "p1", "v1") }); err != nil {
		t.Fatal(err)
	}
}

func env(id, sender, key string) *Envelope {
	return &Envelope{ID: id, Channel: "mllp", Sender: sender, ReceivedAt: time.Now(), Kind: "hl7v2",
		MessageType: "ADT^A01", ControlID: key, DedupKey: "msh10:" + key, SHA256: "x", Status: "received",
		ACK: []byte("ACK-" + id), Raw: []byte("MSH|" + id)}
}

func TestEnvelopesAndDuplicates(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		res, err := db.InsertEnvelopes(ctx, []*Envelope{env("e1", "A", "1"), env("e2", "A", "2"), env("e3", "B", "1")})
		if err != nil {
			t.Fatal(err)
		}
		for i, r := range res {
			if r.Duplicate {
				t.Fatalf("row %d reported duplicate", i)
			}
		}
		// Same sender and control id again, also twice inside one batch.
		res, err = db.InsertEnvelopes(ctx, []*Envelope{env("e4", "A", "1"), env("e5", "C", "9"), env("e6", "C", "9")})
		if err != nil {
			t.Fatal(err)
		}
		if !res[0].Duplicate || res[0].ID != "e1" || string(res[0].ACK) != "ACK-e1" {
			t.Fatalf("duplicate not recognised: %+v", res[0])
		}
		if res[1].Duplicate || !res[2].Duplicate || res[2].ID != "e5" {
			t.Fatalf("in-batch duplicate: %+v %+v", res[1], res[2])
		}
		pend, err := db.PendingEnvelopes(ctx, 0, 10)
		if err != nil {
			t.Fatal(err)
		}
		var ids []string
		for _, p := range pend {
			ids = append(ids, p.ID)
		}
		if fmt.Sprint(ids) != "[e1 e2 e3 e5]" {
			t.Fatalf("pending order %v", ids)
		}
		if string(pend[0].Raw) != "MSH|e1" {
			t.Fatalf("raw %q", pend[0].Raw)
		}
		counts, err := db.CountEnvelopes(ctx)
		if err != nil || counts["received"] != 4 {
			t.Fatalf("counts %v %v", counts, err)
		}
	})
}

func TestProcessingTransaction(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("e1", "A", "1"), env("e2", "B", "1")}); err != nil {
			t.Fatal(err)
		}
		var p1, p2 string
		err := db.InTx(ctx, func(tx *Tx) error {
			var created bool
			var err error
			p1, created, err = tx.ResolvePatient(ctx, "A", []Identifier{{"urn:a", "1"}})
			if err != nil || !created {
				return fmt.Errorf("first resolve: created=%v err=%v", created, err)
			}
			v, changed, err := tx.PutResource(ctx, "e1", "A", Resource{ID: "r1", Type: "Patient", PatientID: p1, Body: []byte(`{"a":1,"b":2}`)})
			if err != nil || v != 1 || !changed {
				return fmt.Errorf("put: %d %v %v", v, changed, err)
			}
			if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "default", Topic: "t", Key: p1, EventType: "admit",
				EnvelopeID: "e1", Headers: map[string]string{"h": "v"}, Payload: []byte("{}")}); err != nil {
				return err
			}
			return tx.FinishEnvelope(ctx, "e1", p1, "v1")
		})
		if err != nil {
			t.Fatal(err)
		}
		// A second sender's record sharing one identifier joins the same patient.
		err = db.InTx(ctx, func(tx *Tx) error {
			var err error
			p2, _, err = tx.ResolvePatient(ctx, "B", []Identifier{{"urn:b", "7"}, {"urn:a", "1"}})
			if err != nil {
				return err
			}
			v, changed, err := tx.PutResource(ctx, "e2", "B", Resource{ID: "r1", Type: "Patient", PatientID: p2, Body: []byte(`{"b":2, "a":1}`)})
			if err != nil || changed || v != 1 {
				return fmt.Errorf("identical body should not make a version: %d %v %v", v, changed, err)
			}
			v, changed, err = tx.PutResource(ctx, "e2", "B", Resource{ID: "r1", Type: "Patient", PatientID: p2, Body: []byte(`{"a":3}`)})
			if err != nil || !changed || v != 2 {
				return fmt.Errorf("changed body: %d %v %v", v, changed, err)
			}
			return tx.FinishEnvelope(ctx, "e2", p2, "v1")
		})
		if err != nil {
			t.Fatal(err)
		}
		if p1 != p2 {
			t.Fatalf("shared identifier gave two patients %s %s", p1, p2)
		}
		ids, _ := db.PatientIdentifiers(ctx, p1)
		if len(ids) != 2 {
			t.Fatalf("identifiers %v", ids)
		}
		rs, err := db.PatientResources(ctx, p1, 0, 10)
		if err != nil || len(rs) != 1 || rs[0].Version != 2 {
			t.Fatalf("resources %+v %v", rs, err)
		}
		pend, _ := db.PendingEnvelopes(ctx, 0, 10)
		if len(pend) != 0 {
			t.Fatalf("still pending: %d", len(pend))
		}
		// A failing transaction leaves nothing behind.
		err = db.InTx(ctx, func(tx *Tx) error {
			if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "default", Topic: "t", Key: "k", Headers: map[string]string{}, Payload: []byte("x")}); err != nil {
				return err
			}
			return fmt.Errorf("boom")
		})
		if err == nil {
			t.Fatal("expected error")
		}
		rows, err := db.ClaimOutbox(ctx, "relay-1", 10, time.Minute)
		if err != nil || len(rows) != 1 || rows[0].Headers()["h"] != "v" {
			t.Fatalf("claim: %+v %v", rows, err)
		}
	})
}

func TestOutboxClaimRetryDead(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		err := db.InTx(ctx, func(tx *Tx) error {
			for i := range 5 {
				if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "s", Topic: "t", Key: fmt.Sprint(i), Headers: map[string]string{}, Payload: []byte("p")}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		a, err := db.ClaimOutbox(ctx, "r1", 3, time.Minute)
		if err != nil || len(a) != 3 {
			t.Fatalf("claim a: %d %v", len(a), err)
		}
		b, err := db.ClaimOutbox(ctx, "r2", 10, time.Minute)
		if err != nil || len(b) != 2 || b[0].Seq <= a[2].Seq {
			t.Fatalf("second relay must get the other rows: %d %v", len(b), err)
		}
		if err := db.MarkSent(ctx, []int64{a[0].Seq, a[1].Seq}); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkRetry(ctx, []int64{a[2].Seq}, "broker down", time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		if err := db.MarkDead(ctx, []int64{b[0].Seq}, "too big"); err != nil {
			t.Fatal(err)
		}
		c, err := db.ClaimOutbox(ctx, "r3", 10, time.Minute)
		if err != nil || len(c) != 1 || c[0].Seq != a[2].Seq || c[0].Attempts != 1 || c[0].LastError != "broker down" {
			t.Fatalf("retry claim: %+v %v", c, err)
		}
		counts, err := db.OutboxCounts(ctx)
		if err != nil || len(counts) != 1 || counts[0].Sent != 2 || counts[0].Dead != 1 || counts[0].Pending != 2 {
			t.Fatalf("counts %+v %v", counts, err)
		}
	})
}

func TestRefusesNewerSchema(t *testing.T) {
	dir := t.TempDir()
	db, err := Open(context.Background(), Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.x.Exec(`INSERT INTO goose_db_version (version_id, is_applied) VALUES (9999, 1)`); err != nil {
		t.Fatal(err)
	}
	db.Close()
	if _, err := Open(context.Background(), Options{DataDir: dir}); err == nil {
		t.Fatal("opening a newer schema must fail")
	}
}

// TestSQLiteSettings: both embedded database files run in WAL mode and are
// checkpointed every 10,000 pages, on a new file and on one opened again.
func TestSQLiteSettings(t *testing.T) {
	dir := t.TempDir()
	for _, round := range []string{"new", "reopened"} {
		db, err := Open(context.Background(), Options{DataDir: dir})
		if err != nil {
			t.Fatal(err)
		}
		for name, x := range map[string]interface {
			Get(dest any, query string, args ...any) error
		}{"records": db.x, "intake": db.log} {
			var mode string
			var pages int
			if err := x.Get(&mode, `PRAGMA journal_mode`); err != nil {
				t.Fatal(err)
			}
			if err := x.Get(&pages, `PRAGMA wal_autocheckpoint`); err != nil {
				t.Fatal(err)
			}
			if mode != "wal" || pages != 10000 {
				t.Errorf("%s, %s database: journal_mode %q, wal_autocheckpoint %d; want wal, 10000", round, name, mode, pages)
			}
		}
		db.Close()
	}
}

// TestLostLogUpdateIsRepaired: on the embedded store the envelope log is its
// own file; if the log's status update after a processing commit is lost, the
// envelope is not processed again and its status is repaired.
func TestLostLogUpdateIsRepaired(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	insertOneProcessed(t, db)
	got, err := db.GetEnvelope(ctx, "e1")
	if err != nil || got.Status != "processed" || got.PatientID != "p1" {
		t.Fatalf("after processing: %+v %v", got, err)
	}
	// Simulate a crash between the record's commit and the log's update.
	if _, err := db.log.Exec(`UPDATE envelopes SET status = 'received', patient_id = '' WHERE id = 'e1'`); err != nil {
		t.Fatal(err)
	}
	pend, err := db.PendingEnvelopes(ctx, 0, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(pend) != 1 || pend[0].ID != "e2" {
		t.Fatalf("pending after a lost log update: %+v", pend)
	}
	got, _ = db.GetEnvelope(ctx, "e1")
	if got.Status != "processed" || got.PatientID != "p1" || got.MappingVersion != "v1" {
		t.Fatalf("log not repaired: %+v", got)
	}
}

func TestPurgeRawKeepsTheLogAndTheAnswer(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		old := env("e1", "A", "1")
		old.ReceivedAt = time.Now().Add(-48 * time.Hour)
		pending := env("e2", "A", "2")
		pending.ReceivedAt = old.ReceivedAt
		recent := env("e3", "A", "3")
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{old, pending, recent}); err != nil {
			t.Fatal(err)
		}
		for _, id := range []string{"e1", "e3"} {
			if err := db.InTx(ctx, func(tx *Tx) error { return tx.FinishEnvelope(ctx, id, "p", "v") }); err != nil {
				t.Fatal(err)
			}
		}
		n, err := db.PurgeRaw(ctx, time.Now().Add(-24*time.Hour))
		if err != nil || n != 1 {
			t.Fatalf("purged %d (%v), want 1: only the old settled envelope", n, err)
		}
		e1, _ := db.GetEnvelope(ctx, "e1")
		if len(e1.Raw) != 0 || string(e1.ACK) != "ACK-e1" || e1.SHA256 == "" {
			t.Fatalf("old envelope after purge: raw %d bytes, ack %q", len(e1.Raw), e1.ACK)
		}
		for _, id := range []string{"e2", "e3"} {
			if e, _ := db.GetEnvelope(ctx, id); len(e.Raw) == 0 {
				t.Fatalf("%s lost its body: it is unsettled or recent", id)
			}
		}
		res, err := db.InsertEnvelopes(ctx, []*Envelope{env("e4", "A", "1")})
		if err != nil || !res[0].Duplicate || string(res[0].ACK) != "ACK-e1" {
			t.Fatalf("a duplicate of a purged message: %+v %v", res, err)
		}
	})
}

func TestReplayCopiesOriginalsOnce(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		err := db.InTx(ctx, func(tx *Tx) error {
			for i := range 3 {
				if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "practice", Topic: "t", Key: fmt.Sprint("p", i),
					Headers: map[string]string{"n": fmt.Sprint(i)}, Payload: []byte(fmt.Sprint(i))}); err != nil {
					return err
				}
			}
			return tx.AddOutbox(ctx, OutboxEntry{Subscriber: "lab", Topic: "l", Key: "x", Headers: map[string]string{}, Payload: []byte("x")})
		})
		if err != nil {
			t.Fatal(err)
		}
		rows, _ := db.ClaimOutbox(ctx, "r", 100, time.Minute)
		var seqs []int64
		for _, r := range rows {
			seqs = append(seqs, r.Seq)
		}
		if err := db.MarkSent(ctx, seqs); err != nil {
			t.Fatal(err)
		}
		since := time.Now().Add(-time.Hour)
		for round := 1; round <= 2; round++ {
			n, err := db.ReplayOutbox(ctx, "practice", since)
			if err != nil || n != 3 {
				t.Fatalf("replay %d queued %d (%v), want 3", round, n, err)
			}
		}
		again, err := db.ClaimOutbox(ctx, "r", 100, time.Minute)
		if err != nil || len(again) != 6 {
			t.Fatalf("claimed %d after two replays, want 6", len(again))
		}
		for i, r := range again {
			if r.Subscriber != "practice" || string(r.Payload) != fmt.Sprint(i%3) || r.Headers()["n"] != fmt.Sprint(i%3) {
				t.Fatalf("replayed row %d: %+v", i, r)
			}
		}
	})
}

func TestWithDSNParam(t *testing.T) {
	cases := map[string]string{
		"postgres://u@h:5432/db?sslmode=verify-full": "postgres://u@h:5432/db?binary_parameters=yes&sslmode=verify-full",
		"postgresql://u@h/db":                        "postgresql://u@h/db?binary_parameters=yes",
		"host=h dbname=db sslmode=disable":           "host=h dbname=db sslmode=disable binary_parameters=yes",
	}
	for in, want := range cases {
		if got := withDSNParam(in, "binary_parameters", "yes"); got != want {
			t.Errorf("%s: %s, want %s", in, got, want)
		}
	}
}

// TestPatientMessagesFollowMerges: after a merge, the surviving patient's
// message list holds the messages processed for the merged one.
func TestPatientMessagesFollowMerges(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("m1", "A", "1"), env("m2", "A", "2"), env("m3", "B", "3")}); err != nil {
			t.Fatal(err)
		}
		var p1, p2 string
		err := db.InTx(ctx, func(tx *Tx) error {
			var err error
			if p1, _, err = tx.ResolvePatient(ctx, "A", []Identifier{{"urn:a", "1"}}); err != nil {
				return err
			}
			if p2, _, err = tx.ResolvePatient(ctx, "B", []Identifier{{"urn:b", "2"}}); err != nil {
				return err
			}
			for id, p := range map[string]string{"m1": p1, "m2": p1, "m3": p2} {
				body := []byte(`{"resourceType":"Provenance","id":"prov-` + id + `"}`)
				if _, _, err := tx.PutResource(ctx, id, "A", Resource{ID: "prov-" + id, Type: "Provenance", PatientID: p, Body: body}); err != nil {
					return err
				}
				if err := tx.FinishEnvelope(ctx, id, p, "v1"); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		list := func(p string) []string {
			es, err := db.ListEnvelopes(ctx, EnvelopeFilter{PatientID: p})
			if err != nil {
				t.Fatal(err)
			}
			var ids []string
			for _, e := range es {
				ids = append(ids, e.ID)
			}
			return ids
		}
		if got := list(p2); len(got) != 1 || got[0] != "m3" {
			t.Fatalf("before the merge %s has %v", p2, got)
		}
		if err := db.InTx(ctx, func(tx *Tx) error { return tx.MergePatient(ctx, p1, p2) }); err != nil {
			t.Fatal(err)
		}
		if got := list(p2); len(got) != 3 || got[0] != "m3" || got[2] != "m1" {
			t.Fatalf("after the merge %s has %v, want m3 m2 m1", p2, got)
		}
	})
}

// TestOutboxLeaseExpires: a claim whose lease ran out (its relay died or
// hangs) lets another relay claim the row; a settled row is never claimed
// again.
func TestOutboxLeaseExpires(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if err := db.InTx(ctx, func(tx *Tx) error {
			for i := range 2 {
				if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "s", Topic: "t", Key: fmt.Sprint(i), Headers: map[string]string{}, Payload: []byte("p")}); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		a, err := db.ClaimOutbox(ctx, "r1", 10, time.Second)
		if err != nil || len(a) != 2 {
			t.Fatalf("claim: %d %v", len(a), err)
		}
		if err := db.MarkSent(ctx, []int64{a[0].Seq}); err != nil {
			t.Fatal(err)
		}
		if b, _ := db.ClaimOutbox(ctx, "r2", 10, time.Minute); len(b) != 0 {
			t.Fatalf("rows under a live lease were claimed again: %+v", b)
		}
		// A lease of a second, not milliseconds: a loaded machine may take
		// that long between the claim and the check above.
		time.Sleep(1200 * time.Millisecond)
		b, err := db.ClaimOutbox(ctx, "r2", 10, time.Minute)
		if err != nil || len(b) != 1 || b[0].Seq != a[1].Seq {
			t.Fatalf("after the lease ran out: %+v %v, want row %d only", b, err, a[1].Seq)
		}
	})
}

package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

func appAck(env, sender, control, status string) AppAck {
	return AppAck{EnvelopeID: env, Sender: sender, ControlID: control, AckControlID: "ACK" + control, Code: "AA",
		Message: []byte("MSH|^~\\&|A\rMSA|AA|" + control + "\r"), Status: status}
}

func seqsOf(as []AppAck) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.ControlID)
	}
	return out
}

// TestAppAckQueue: at most one acknowledgement per envelope, only with a
// committed transaction; claims in order, one owner per sender at a time; a
// failed head blocks the queue until its next attempt; sent and refused are
// final; no_route rows are parked until a route appears.
func TestAppAckQueue(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		// Three for sender A in the processing transaction, one twice.
		var queued []bool
		for _, c := range []string{"1", "2", "3", "2"} {
			err := db.InTx(ctx, func(tx *Tx) error {
				q, err := tx.EnqueueAppAck(ctx, appAck("env-"+c, "A", c, AppAckPending))
				queued = append(queued, q)
				return err
			})
			if err != nil {
				t.Fatal(err)
			}
		}
		if fmt.Sprint(queued) != "[true true true false]" {
			t.Fatalf("queued %v", queued)
		}
		if n := len(mustList(t, db, AppAckFilter{Sender: "A"})); n != 3 {
			t.Fatalf("sender A has %d acks, want 3 (one per envelope)", n)
		}
		again, err := db.EnqueueAppAck(ctx, appAck("env-1", "A", "1", AppAckPending))
		if err != nil || again {
			t.Fatalf("second ack for env-1 queued=%v err=%v", again, err)
		}
		// A rolled-back transaction leaves nothing.
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *Tx) error {
			if _, err := tx.EnqueueAppAck(ctx, appAck("env-x", "A", "x", AppAckPending)); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) || len(mustList(t, db, AppAckFilter{EnvelopeID: "env-x"})) != 0 {
			t.Fatalf("rolled-back ack stored (err %v)", err)
		}
		if _, err := db.EnqueueAppAck(ctx, appAck("env-b1", "B", "b1", AppAckNoRoute)); err != nil {
			t.Fatal(err)
		}
		if _, err := db.EnqueueAppAck(ctx, appAck("env-bad", "B", "bad", AppAckSent)); err == nil {
			t.Fatal("an ack queued as already sent")
		}

		senders, err := db.AppAckSenders(ctx)
		if err != nil || fmt.Sprint(senders) != "[A]" {
			t.Fatalf("senders with pending acks %v %v", senders, err)
		}

		// Owner one claims the first two; owner two gets nothing while that claim lives.
		got, err := db.ClaimAppAcks(ctx, "A", "one", 2, time.Minute)
		if err != nil || fmt.Sprint(seqsOf(got)) != "[1 2]" {
			t.Fatalf("claim: %v %v", seqsOf(got), err)
		}
		if string(got[0].Message) != "MSH|^~\\&|A\rMSA|AA|1\r" || got[0].Code != "AA" || got[0].AckControlID != "ACK1" {
			t.Fatalf("claimed row %+v", got[0])
		}
		if other, err := db.ClaimAppAcks(ctx, "A", "two", 10, time.Minute); err != nil || len(other) != 0 {
			t.Fatalf("second owner claimed %v while the first one's claim lives (%v)", seqsOf(other), err)
		}
		if err := db.MarkAppAckSent(ctx, got[0].Seq, "CA"); err != nil {
			t.Fatal(err)
		}
		// The second could not be delivered: it waits, and so does the third.
		if err := db.MarkAppAckRetry(ctx, got[1].Seq, "connection refused", time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		if blocked, err := db.ClaimAppAcks(ctx, "A", "one", 10, time.Minute); err != nil || len(blocked) != 0 {
			t.Fatalf("claimed %v behind a head waiting for its retry (%v)", seqsOf(blocked), err)
		}
		if err := db.MarkAppAckRetry(ctx, got[1].Seq, "connection refused", time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		// Due again: owner two may take the queue now, in order.
		got, err = db.ClaimAppAcks(ctx, "A", "two", 10, time.Minute)
		if err != nil || fmt.Sprint(seqsOf(got)) != "[2 3]" {
			t.Fatalf("claim after retry: %v %v", seqsOf(got), err)
		}
		if got[0].Attempts != 2 || got[0].LastError != "connection refused" {
			t.Fatalf("retried row %+v", got[0])
		}
		if err := db.MarkAppAckRefused(ctx, got[0].Seq, "CR", "MSA-3: unknown message"); err != nil {
			t.Fatal(err)
		}
		if err := db.ReleaseAppAcks(ctx, "two", []int64{got[1].Seq}); err != nil {
			t.Fatal(err)
		}
		got, err = db.ClaimAppAcks(ctx, "A", "one", 10, time.Minute)
		if err != nil || fmt.Sprint(seqsOf(got)) != "[3]" {
			t.Fatalf("claim after release: %v %v", seqsOf(got), err)
		}
		if err := db.MarkAppAckSent(ctx, got[0].Seq, "CA"); err != nil {
			t.Fatal(err)
		}
		// Marking a settled row again changes nothing.
		if err := db.MarkAppAckRetry(ctx, got[0].Seq, "late", time.Now()); err != nil {
			t.Fatal(err)
		}
		rows := mustList(t, db, AppAckFilter{Sender: "A"})
		var states []string
		for _, r := range rows {
			states = append(states, r.ControlID+":"+r.Status+":"+r.ReplyCode)
			if r.DoneAt == nil {
				t.Fatalf("settled row %s has no done_at", r.ControlID)
			}
		}
		if fmt.Sprint(states) != "[1:sent:CA 2:refused:CR 3:sent:CA]" {
			t.Fatalf("states %v", states)
		}
		if rows[1].LastError != "MSA-3: unknown message" {
			t.Fatalf("refusal reason %q", rows[1].LastError)
		}
		if left, err := db.ClaimAppAcks(ctx, "A", "one", 10, time.Minute); err != nil || len(left) != 0 {
			t.Fatalf("settled rows claimed again: %v %v", seqsOf(left), err)
		}

		// B had no route; once it has one its ack is pending.
		if n, err := db.RouteAppAcks(ctx, "B", true); err != nil || n != 1 {
			t.Fatalf("route B: %d %v", n, err)
		}
		got, err = db.ClaimAppAcks(ctx, "B", "one", 10, time.Minute)
		if err != nil || fmt.Sprint(seqsOf(got)) != "[b1]" {
			t.Fatalf("claim B: %v %v", seqsOf(got), err)
		}
		if n, err := db.RouteAppAcks(ctx, "B", false); err != nil || n != 1 {
			t.Fatalf("unroute B: %d %v", n, err)
		}
		counts, err := db.AppAckCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(counts) != "[{A refused 1} {A sent 2} {B no_route 1}]" {
			t.Fatalf("counts %v", counts)
		}
	})
}

func mustList(t *testing.T, db *DB, f AppAckFilter) []AppAck {
	t.Helper()
	out, err := db.ListAppAcks(context.Background(), f)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestClaimsReleasedAtStart: on the embedded store a restart gives back what
// the previous process had claimed, without waiting for the lease.
func TestClaimsReleasedAtStart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := db.EnqueueAppAck(ctx, appAck("env-1", "A", "1", AppAckPending)); err != nil {
		t.Fatal(err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error {
		return tx.AddOutbox(ctx, OutboxEntry{Subscriber: "s", Topic: "t", Key: "k", Headers: map[string]string{}, Payload: []byte("p")})
	}); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ClaimAppAcks(ctx, "A", "dead", 10, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("claim acks: %v %v", got, err)
	}
	if got, err := db.ClaimOutbox(ctx, "dead", 10, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("claim outbox: %v %v", got, err)
	}
	// Still claimed for this process's life.
	if got, _ := db.ClaimOutbox(ctx, "other", 10, time.Hour); len(got) != 0 {
		t.Fatalf("a live claim was taken: %v", got)
	}
	db.Close()
	db, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if got, err := db.ClaimAppAcks(ctx, "A", "next", 10, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("after restart, acks: %v %v", got, err)
	}
	if got, err := db.ClaimOutbox(ctx, "next", 10, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("after restart, outbox: %v %v", got, err)
	}
}

// TestOwnClaimsReleasedAtStart: on PostgreSQL a gateway restarted under the
// same name gives back what its crashed predecessor had claimed, and leaves
// other gateways' live claims alone.
func TestOwnClaimsReleasedAtStart(t *testing.T) {
	db := testPostgres(t)
	ctx := context.Background()
	for i, sender := range []string{"A", "B"} {
		if _, err := db.EnqueueAppAck(ctx, appAck(fmt.Sprint("env-", i), sender, "1", AppAckPending)); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.InTx(ctx, func(tx *Tx) error {
		for i := range 4 {
			if err := tx.AddOutbox(ctx, OutboxEntry{Subscriber: "s", Topic: "t", Key: fmt.Sprint(i), Headers: map[string]string{}, Payload: []byte("p")}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	claim := func(owner, sender string, outbox int) {
		t.Helper()
		if got, err := db.ClaimAppAcks(ctx, sender, owner, 10, time.Hour); err != nil || len(got) != 1 {
			t.Fatalf("%s claims acks of %s: %v %v", owner, sender, got, err)
		}
		if got, err := db.ClaimOutbox(ctx, owner, outbox, time.Hour); err != nil || len(got) != outbox {
			t.Fatalf("%s claims outbox: %d rows, %v", owner, len(got), err)
		}
	}
	claim("host:/data", "A", 3)
	claim("other:/data", "B", 1)
	if err := db.ReleaseOwnClaims(ctx, "host:/data"); err != nil {
		t.Fatal(err)
	}
	if got, err := db.ClaimOutbox(ctx, "host:/data", 10, time.Hour); err != nil || len(got) != 3 {
		t.Fatalf("after the restart the gateway claims %d outbox rows (%v), want its own 3", len(got), err)
	}
	if got, err := db.ClaimAppAcks(ctx, "A", "host:/data", 10, time.Hour); err != nil || len(got) != 1 {
		t.Fatalf("after the restart, acks of A: %v %v", got, err)
	}
	if got, err := db.ClaimAppAcks(ctx, "B", "third:/data", 10, time.Hour); err != nil || len(got) != 0 {
		t.Fatalf("another gateway's live claim was released: %v %v", got, err)
	}
}

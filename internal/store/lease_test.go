package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestProcessingLease: replicas sharing PostgreSQL compete for the lease;
// a transaction fenced by it cannot commit after another replica took it.
func TestProcessingLease(t *testing.T) {
	ctx := context.Background()
	db := testPostgres(t)
	hold := func(owner string, ttl time.Duration, want bool, wantHolder string) {
		t.Helper()
		held, holder, err := db.HoldLease(ctx, "processing", owner, ttl)
		if err != nil || held != want || holder != wantHolder {
			t.Fatalf("%s takes the lease: held %v by %q (%v), want %v by %q", owner, held, holder, err, want, wantHolder)
		}
	}
	hold("a", time.Minute, true, "a")
	hold("b", time.Minute, false, "a")
	hold("a", time.Minute, true, "a") // renewal
	// A transaction of the holder passes the fence; one of b does not.
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"processing"}, "a") }); err != nil {
		t.Fatalf("holder's fence: %v", err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"processing"}, "b") }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("other's fence: %v, want ErrLeaseLost", err)
	}
	// An expired lease goes to whoever asks next, and its old holder's
	// transactions fail.
	hold("a", time.Millisecond, true, "a")
	time.Sleep(20 * time.Millisecond)
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"processing"}, "a") }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("expired holder's fence: %v, want ErrLeaseLost", err)
	}
	hold("b", time.Minute, true, "b")
	hold("a", time.Minute, false, "b")
	if err := db.ReleaseLease(ctx, "processing", "a"); err != nil { // not a's: no effect
		t.Fatal(err)
	}
	hold("a", time.Minute, false, "b")
	// The holder renews its lease while one of its fenced transactions is
	// open: the renewal does not wait for it (a long transaction must not
	// make its own replica's lease lapse).
	fenced := func(owner string) (finish chan struct{}, done chan error) {
		inTx := make(chan struct{})
		finish, done = make(chan struct{}), make(chan error, 1)
		go func() {
			done <- db.InTx(ctx, func(tx *Tx) error {
				if err := tx.CheckLease(ctx, []string{"processing"}, owner); err != nil {
					return err
				}
				close(inTx)
				<-finish
				return nil
			})
		}()
		<-inTx
		return finish, done
	}
	finish, done := fenced("b")
	renewed := make(chan error, 1)
	go func() {
		held, holder, err := db.HoldLease(ctx, "processing", "b", time.Minute)
		if err == nil && !held {
			err = fmt.Errorf("b lost its lease to %q", holder)
		}
		renewed <- err
	}()
	select {
	case err := <-renewed:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		close(finish)
		t.Fatal("the holder's renewal waited for its own fenced transaction")
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// A takeover waits for the holder's fenced transaction to end, even
	// when the lease expires meanwhile.
	hold("b", 300*time.Millisecond, true, "b")
	finish, done = fenced("b")
	time.Sleep(400 * time.Millisecond) // the lease expires
	taken := make(chan error, 1)
	go func() {
		held, holder, err := db.HoldLease(ctx, "processing", "a", time.Minute)
		if err == nil && (!held || holder != "a") {
			err = fmt.Errorf("a did not get the expired lease: held %v by %q", held, holder)
		}
		taken <- err
	}()
	select {
	case err := <-taken:
		close(finish)
		<-done
		t.Fatalf("the lease changed hands during the holder's transaction (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatalf("holder's transaction: %v", err)
	}
	if err := <-taken; err != nil {
		t.Fatal(err)
	}
	// A fenced transaction that does not end holds a takeover up for one
	// TTL of the lease asked for, not for ever: then it is refused.
	hold("a", 100*time.Millisecond, true, "a")
	finish, done = fenced("a")
	time.Sleep(200 * time.Millisecond) // a's lease expires, its transaction stays open
	refused := make(chan error, 1)
	go func() {
		held, holder, err := db.HoldLease(ctx, "processing", "b", 300*time.Millisecond)
		if err == nil && (held || holder != "a") {
			err = fmt.Errorf("held %v by %q, want a refusal naming a", held, holder)
		}
		refused <- err
	}()
	var refusal error
	select {
	case refusal = <-refused:
	case <-time.After(10 * time.Second):
		refusal = errors.New("a takeover waited more than its TTL for a fenced transaction")
	}
	close(finish)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if refusal != nil {
		t.Fatal(refusal)
	}
	hold("b", time.Minute, true, "b") // the transaction over, the expired lease is taken
	// Released, the lease goes at once.
	if err := db.ReleaseLease(ctx, "processing", "a"); err != nil {
		t.Fatal(err)
	}
	hold("b", time.Minute, true, "b")
	hold("a", time.Minute, false, "b")

	// Several leases: a transaction needs all of them; live ones are
	// counted by prefix.
	for _, n := range []string{"p/0", "p/1", "p/member/a"} {
		if held, _, err := db.HoldLease(ctx, n, "a", time.Minute); err != nil || !held {
			t.Fatalf("%s: %v %v", n, held, err)
		}
	}
	if held, _, err := db.HoldLease(ctx, "p/member/b", "b", time.Millisecond); err != nil || !held {
		t.Fatalf("member b: %v %v", held, err)
	}
	time.Sleep(20 * time.Millisecond)
	if n, err := db.LiveLeases(ctx, "p/member/"); err != nil || n != 1 {
		t.Fatalf("live members: %d %v, want 1", n, err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"p/0", "p/1"}, "a") }); err != nil {
		t.Fatalf("both held: %v", err)
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"p/0", "p/2"}, "a") }); !errors.Is(err, ErrLeaseLost) {
		t.Fatalf("one not held: %v, want ErrLeaseLost", err)
	}
}

// TestProcessingLeaseEmbedded: the embedded store has one process, which
// always holds the lease.
func TestProcessingLeaseEmbedded(t *testing.T) {
	ctx := context.Background()
	db := TestEmbedded(t)
	for _, owner := range []string{"a", "b"} {
		if held, _, err := db.HoldLease(ctx, "processing", owner, time.Minute); err != nil || !held {
			t.Fatalf("%s: held %v, %v", owner, held, err)
		}
		if err := db.InTx(ctx, func(tx *Tx) error { return tx.CheckLease(ctx, []string{"processing"}, owner) }); err != nil {
			t.Fatal(err)
		}
	}
}

// TestAlreadyProcessedRollsBack: on PostgreSQL a processing transaction that
// would mark processed an envelope another replica has processed since it
// was read fails whole.
func TestAlreadyProcessedRollsBack(t *testing.T) {
	ctx := context.Background()
	db := testPostgres(t)
	insertOneProcessed(t, db)
	err := db.InTx(ctx, func(tx *Tx) error {
		if err := tx.FinishEnvelope(ctx, "e2", "p2", "v2"); err != nil {
			return err
		}
		return tx.FinishEnvelope(ctx, "e1", "p9", "v2")
	})
	if !errors.Is(err, ErrAlreadyProcessed) {
		t.Fatalf("processing e1 again: %v, want ErrAlreadyProcessed", err)
	}
	for id, want := range map[string]string{"e1": "p1", "e2": ""} {
		e, err := db.GetEnvelope(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.PatientID != want || e.Attempts > 1 {
			t.Errorf("%s: patient %q after %d attempts, want %q", id, e.PatientID, e.Attempts, want)
		}
	}
}

// TestMarkFailedKeepsProcessed: a failure reported for an envelope that is
// already processed (by another replica) does not undo that.
func TestMarkFailedKeepsProcessed(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		insertOneProcessed(t, db)
		for _, id := range []string{"e1", "e2"} {
			if err := db.MarkFailed(ctx, id, "bad date"); err != nil {
				t.Fatal(err)
			}
		}
		for id, want := range map[string]string{"e1": "processed", "e2": "failed"} {
			e, err := db.GetEnvelope(ctx, id)
			if err != nil || e.Status != want {
				t.Errorf("%s: %q (%v), want %s", id, e.Status, err, want)
			}
		}
	})
}

// testPostgres opens a store on a schema of its own (skipped without
// PostgreSQL).
func testPostgres(t *testing.T) *DB {
	t.Helper()
	db, err := Open(context.Background(), Options{PostgresDSN: TestPostgresDSN(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

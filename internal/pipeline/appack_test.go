package pipeline_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// fakeAcks stands in for the application acknowledgements.
type fakeAcks struct {
	queue        func(ctx context.Context, tx *store.Tx, e store.Envelope) (func(), error)
	queueFailure func(e store.Envelope) error
}

func (f fakeAcks) Queue(ctx context.Context, tx *store.Tx, e store.Envelope, failure error) (func(), error) {
	return f.queue(ctx, tx, e)
}

func (f fakeAcks) QueueFailure(_ context.Context, e store.Envelope, _ error) error {
	return f.queueFailure(e)
}

var _ pipeline.AppAcks = fakeAcks{}

// TestAppAckHooks: the acknowledgement of a processed envelope is part of
// its processing transaction (an error there means the envelope is not
// processed, and it is tried again) and is told after the commit; the
// acknowledgement of a failure is queued before the envelope is marked
// failed (an error there leaves it to be processed again).
func TestAppAckHooks(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()

	var mu sync.Mutex
	calls := map[string]int{}
	committed := map[string]bool{}
	count := func(k string) int {
		mu.Lock()
		defer mu.Unlock()
		calls[k]++
		return calls[k]
	}
	acks := fakeAcks{
		queue: func(ctx context.Context, tx *store.Tx, e store.Envelope) (func(), error) {
			if count("queue "+e.ID) == 1 {
				return nil, errors.New("store hiccup") // rolls the processing back
			}
			if _, err := tx.EnqueueAppAck(ctx, store.AppAck{EnvelopeID: e.ID, Sender: e.Sender, ControlID: e.ControlID,
				AckControlID: "A" + e.ControlID, Code: "AA", Message: []byte("MSA|AA"), Status: store.AppAckPending}); err != nil {
				return nil, err
			}
			return func() {
				mu.Lock()
				defer mu.Unlock()
				committed[e.ID] = true
			}, nil
		},
		queueFailure: func(e store.Envelope) error {
			if count("fail "+e.ID) == 1 {
				return errors.New("store hiccup")
			}
			return nil
		},
	}
	norm := &flaky{}
	norm.fixed.Store(true)
	p := pipeline.New(db, norm, route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil),
		pipeline.Options{Lanes: 1, Poll: time.Hour, AppAcks: acks})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	raw := msg("A01", "C1", person{auth: "H", mrn: "1", family: "DOE", given: "JANE", dob: "19800101", sex: "F"})
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{hl7Envelope("ok", "C1", raw)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	waitStatus(t, db, "ok", "processed")
	p.Wait()
	mu.Lock()
	if calls["queue ok"] != 2 || !committed["ok"] {
		t.Fatalf("queue calls %d, told after commit %v", calls["queue ok"], committed["ok"])
	}
	mu.Unlock()
	if rows, err := db.ListAppAcks(ctx, store.AppAckFilter{EnvelopeID: "ok"}); err != nil || len(rows) != 1 {
		t.Fatalf("acks of the processed envelope: %d %v", len(rows), err)
	}

	// A content failure whose acknowledgement cannot be queued stays
	// received; processed again, it is queued and then marked failed.
	norm.fixed.Store(false)
	raw = msg("A01", "C2", person{auth: "H", mrn: "2", family: "ROE", given: "RICH", dob: "19700101", sex: "M"})
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{hl7Envelope("bad", "C2", raw)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		n := calls["fail bad"]
		mu.Unlock()
		if n >= 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failure's acknowledgement was never queued")
		}
		time.Sleep(5 * time.Millisecond)
	}
	p.Wait()
	if e, err := db.GetEnvelope(ctx, "bad"); err != nil {
		t.Fatalf("envelope whose failure ack was not queued: %v", err)
	} else if e.Status != "received" {
		t.Fatalf("envelope whose failure ack was not queued is %s, want received", e.Status)
	}
	p.Rescan()
	waitStatus(t, db, "bad", "failed")
	cancel()
	<-done
	mu.Lock()
	defer mu.Unlock()
	if calls["fail bad"] != 2 || calls["queue bad"] != 0 {
		t.Fatalf("calls %v", calls)
	}
}

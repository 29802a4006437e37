package pipeline_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// flaky fails every message until fixed, like a mapping with a bug.
type flaky struct {
	pidNormalizer
	fixed atomic.Bool
}

func (f *flaky) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	if !f.fixed.Load() {
		return pipeline.Normalized{}, errors.New("PID-7: not a date")
	}
	return f.pidNormalizer.NormalizeHL7(sender, m)
}

// TestRequeuedEnvelopeIsProcessedWithoutRestart: an envelope that failed is
// older than the dispatcher's cursor; after it is requeued and Rescan is
// called, it must be processed by the running pipeline.
func TestRequeuedEnvelopeIsProcessedWithoutRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	norm := &flaky{}
	p := pipeline.New(db, norm, route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil),
		pipeline.Options{Lanes: 2, Poll: time.Hour}) // only notifications wake it
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()

	raw := msg("A01", "C1", person{auth: "H", mrn: "1", family: "DOE", given: "JANE", dob: "19800101", sex: "F"})
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{hl7Envelope("e1", "C1", raw)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	waitStatus(t, db, "e1", "failed")
	// A later envelope moves the cursor past the failed one.
	raw2 := msg("A01", "C2", person{auth: "H", mrn: "2", family: "ROE", given: "RICH", dob: "19700101", sex: "M"})
	norm.fixed.Store(true)
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{hl7Envelope("e2", "C2", raw2)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	waitStatus(t, db, "e2", "processed")

	if n, err := db.Requeue(ctx, store.RequeueFilter{Sender: "H"}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	p.Rescan()
	waitStatus(t, db, "e1", "processed")
	cancel()
	<-done
}

func waitStatus(t *testing.T, db *store.DB, id, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := db.GetEnvelope(context.Background(), id)
		if err == nil && e.Status == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("envelope %s: status %q, want %q (err %v)", id, e.Status, want, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestRequeueElsewhereIsFound: an envelope requeued without a word to this
// pipeline (by hiegw replay --failed, or another replica's API) is found by
// the next polls while few envelopes are pending, not only by the rescan
// every sixty polls.
func TestRequeueElsewhereIsFound(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	norm := &flaky{}
	p := pipeline.New(db, norm, route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil),
		pipeline.Options{Lanes: 2, Poll: 200 * time.Millisecond}) // sixty polls: 12 s
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	raw := msg("A01", "C1", person{auth: "H", mrn: "1", family: "DOE", given: "JANE", dob: "19800101", sex: "F"})
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{hl7Envelope("e1", "C1", raw)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	waitStatus(t, db, "e1", "failed")
	norm.fixed.Store(true)
	if n, err := db.Requeue(ctx, store.RequeueFilter{Sender: "H"}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitStatus(t, db, "e1", "processed") // within 10 s
	cancel()
	<-done
}

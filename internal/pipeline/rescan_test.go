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

// openDB opens an embedded store for the test.
func openDB(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// runPipeline runs a pipeline of two lanes reading st, polling as given,
// until the test ends.
func runPipeline(t *testing.T, st pipeline.Store, norm pipeline.Normalizer, poll time.Duration) *pipeline.Pipeline {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.New(st, norm, route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil),
		pipeline.Options{Lanes: 2, Poll: poll})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done }) // before the store closes
	return p
}

// insertA01 stores an ADT^A01 envelope about a patient of sender H and
// tells p.
func insertA01(t *testing.T, db *store.DB, p *pipeline.Pipeline, id, control, mrn string) {
	t.Helper()
	raw := msg("A01", control, person{auth: "H", mrn: mrn, family: "DOE", given: "JANE", dob: "19800101", sex: "F"})
	if _, err := db.InsertEnvelopes(context.Background(), []*store.Envelope{hl7Envelope(id, control, raw)}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
}

// TestRequeuedEnvelopeIsProcessedWithoutRestart: an envelope that failed is
// older than the dispatcher's cursor; after it is requeued and Rescan is
// called, it must be processed by the running pipeline.
func TestRequeuedEnvelopeIsProcessedWithoutRestart(t *testing.T) {
	db := openDB(t)
	norm := &flaky{}
	p := runPipeline(t, db, norm, time.Hour) // only notifications wake it
	insertA01(t, db, p, "e1", "C1", "1")
	waitStatus(t, db, "e1", "failed")
	// A later envelope moves the cursor past the failed one.
	norm.fixed.Store(true)
	insertA01(t, db, p, "e2", "C2", "2")
	waitStatus(t, db, "e2", "processed")

	if n, err := db.Requeue(context.Background(), store.RequeueFilter{Sender: "H"}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	p.Rescan()
	waitStatus(t, db, "e1", "processed")
}

// TestRequeueElsewhereIsFound: an envelope requeued without a word to this
// pipeline (by hiegw replay --failed, or another replica's API) is found by
// the next polls while few envelopes are pending, not only by the rescan
// every sixty polls.
func TestRequeueElsewhereIsFound(t *testing.T) {
	db := openDB(t)
	norm := &flaky{}
	p := runPipeline(t, db, norm, 200*time.Millisecond) // sixty polls: 12 s
	insertA01(t, db, p, "e1", "C1", "1")
	waitStatus(t, db, "e1", "failed")
	norm.fixed.Store(true)
	if n, err := db.Requeue(context.Background(), store.RequeueFilter{Sender: "H"}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitStatus(t, db, "e1", "processed") // within 10 s
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

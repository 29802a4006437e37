package pipeline_test

import (
	"context"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/store"
)

// blockingNormalizer holds the message with control id hold until release
// is closed, and tells when it has started on it.
type blockingNormalizer struct {
	pidNormalizer
	hold    string
	started chan struct{}
	release chan struct{}
}

func (b blockingNormalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	if m.Header().ControlID == b.hold {
		close(b.started)
		<-b.release
	}
	return b.pidNormalizer.NormalizeHL7(sender, m)
}

// TestPauseHoldsProcessing: a pause lets the envelope under way finish but
// starts no other, including those a lane already holds; Resume processes
// the rest; a shutdown while paused leaves them pending.
func TestPauseHoldsProcessing(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := store.TestEmbedded(t)
	envs := storeUpdates(t, db, 10, 500)
	norm := blockingNormalizer{hold: "P01", started: make(chan struct{}), release: make(chan struct{})}
	p := pipeline.New(db, norm, &captureRouter{}, pipeline.Options{Lanes: 1, Batch: 1, Poll: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	<-norm.started // P01 is under way; the others wait in the lane or the store
	p.Pause()
	if !p.Paused() {
		t.Fatal("not paused")
	}
	close(norm.release)
	waitStatus(t, db, "eP01", "processed")
	p.Notify()
	p.Rescan()
	time.Sleep(400 * time.Millisecond) // several polls
	for _, e := range envs[1:] {
		got, err := db.GetEnvelope(ctx, e.ID)
		if err != nil || got.Status != "received" {
			t.Fatalf("%s while paused: %+v %v", e.ID, got, err)
		}
	}
	p.Resume()
	for _, e := range envs {
		waitStatus(t, db, e.ID, "processed")
	}

	// Paused again, new envelopes wait, and a shutdown leaves them pending.
	p.Pause()
	late := hl7Envelope("eLATE", "LATE", msg("A08", "LATE", person{auth: "H", mrn: "900", family: "ROE", given: "AL", dob: "19600101", sex: "F"}))
	if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{late}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return while paused")
	}
	got, err := db.GetEnvelope(context.Background(), "eLATE")
	if err != nil || got.Status != "received" {
		t.Fatalf("after a paused shutdown: %+v %v", got, err)
	}
}

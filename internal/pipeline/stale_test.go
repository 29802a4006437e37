package pipeline_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/store"
)

// heldNormalizer counts the messages it normalises and holds each until
// released.
type heldNormalizer struct {
	pidNormalizer
	calls   atomic.Int32
	entered chan struct{}
	release chan struct{}
}

func (h *heldNormalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	h.calls.Add(1)
	h.entered <- struct{}{}
	<-h.release
	return h.pidNormalizer.NormalizeHL7(sender, m)
}

// lateReads answers a read of pending envelopes, when armed, only after the
// envelope it names was processed: its answer is then out of date, as when
// a lane commits while the dispatcher's read is on its way.
type lateReads struct {
	*store.DB
	p      *pipeline.Pipeline
	mu     sync.Mutex
	armed  string
	served chan struct{}
}

func (l *lateReads) PendingEnvelopes(ctx context.Context, after int64, limit int) ([]store.Envelope, error) {
	envs, err := l.DB.PendingEnvelopes(ctx, after, limit)
	l.mu.Lock()
	id, p := l.armed, l.p
	l.armed = ""
	l.mu.Unlock()
	if id != "" {
		p.Wait() // the lane has finished the envelope and forgotten it
		l.served <- struct{}{}
	}
	return envs, err
}

// TestOutOfDateReadDoesNotProcessAgain: an envelope read as pending while
// its lane was processing it, and finished before the dispatcher looked at
// the read, is not handed to a lane a second time.
func TestOutOfDateReadDoesNotProcessAgain(t *testing.T) {
	db := openDB(t)
	norm := &heldNormalizer{entered: make(chan struct{}, 4), release: make(chan struct{})}
	reads := &lateReads{DB: db, served: make(chan struct{}, 1)}
	p := runPipeline(t, reads, norm, time.Hour)
	reads.mu.Lock()
	reads.p = p
	reads.mu.Unlock()
	insertA01(t, db, p, "e1", "C1", "1")
	<-norm.entered // e1 is in its lane
	reads.mu.Lock()
	reads.armed = "e1"
	reads.mu.Unlock()
	p.Rescan() // the read from the start sees e1 still pending...
	time.Sleep(50 * time.Millisecond)
	close(norm.release) // ...and e1 is processed before the read is answered
	select {
	case <-reads.served:
	case <-time.After(10 * time.Second):
		t.Fatal("the rescan's read was not answered")
	}
	waitStatus(t, db, "e1", "processed")
	// One more read and wait: whatever the stale read handed out is done.
	p.Notify()
	time.Sleep(100 * time.Millisecond)
	p.Wait()
	if n := norm.calls.Load(); n != 1 {
		t.Fatalf("e1 was normalised %d times, want 1", n)
	}
}

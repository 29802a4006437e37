package pipeline_test

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
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
// pipeline (by hiegw replay --failed, or another replica's API) is found at
// the next poll, not only by the rescan every sixty polls.
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

// busyNormalizer fails C1 until fixed and holds C2 until released.
type busyNormalizer struct {
	flaky
	entered, release chan struct{}
}

func (b *busyNormalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	if m.Get("MSH-10") == "C2" {
		b.entered <- struct{}{}
		<-b.release
	}
	return b.flaky.NormalizeHL7(sender, m)
}

// fromStart counts the reads of pending envelopes from the start (the ones
// that read again the bodies of envelopes already in lanes).
type fromStart struct {
	*store.DB
	n atomic.Int32
}

func (f *fromStart) PendingEnvelopes(ctx context.Context, after int64, limit int) ([]store.Envelope, error) {
	if after == 0 {
		f.n.Add(1)
	}
	return f.DB.PendingEnvelopes(ctx, after, limit)
}

// otherLane is a sender whose lane, of two, is not sender H's.
func otherLane() string {
	lane := func(s string) uint32 { h := fnv.New32a(); h.Write([]byte(s)); return h.Sum32() % 2 }
	for _, s := range []string{"K", "L", "M", "N", "P"} {
		if lane(s) != lane("H") {
			return s
		}
	}
	panic("no sender on the other lane")
}

// TestRequeueBehindFoundWhileBusy: while an envelope is in a lane, polls do
// not read pending envelopes from the start again (their bodies would be
// read once a second for nothing), yet a failed envelope requeued behind
// the cursor is found at the next poll.
func TestRequeueBehindFoundWhileBusy(t *testing.T) {
	db := openDB(t)
	reads := &fromStart{DB: db}
	norm := &busyNormalizer{entered: make(chan struct{}, 1), release: make(chan struct{})}
	defer close(norm.release)
	p := runPipeline(t, reads, norm, 200*time.Millisecond) // sixty polls: 12 s
	insertA01(t, db, p, "e1", "C1", "1")
	waitStatus(t, db, "e1", "failed")
	raw := msg("A01", "C2", person{auth: "H", mrn: "2", family: "ROE", given: "RICH", dob: "19700101", sex: "M"})
	e2 := hl7Envelope("e2", "C2", raw)
	e2.Sender = otherLane()
	if _, err := db.InsertEnvelopes(context.Background(), []*store.Envelope{e2}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	<-norm.entered // e2 is in its lane, pending, behind the cursor
	before := reads.n.Load()
	time.Sleep(time.Second) // five polls
	if n := reads.n.Load() - before; n != 0 {
		t.Fatalf("%d reads from the start while only an envelope in a lane was pending", n)
	}
	norm.fixed.Store(true)
	if n, err := db.Requeue(context.Background(), store.RequeueFilter{IDs: []string{"e1"}}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitStatus(t, db, "e1", "processed") // within 10 s, e2 still held
}

// holdSenders holds every message of the senders in held until release is
// closed, and fails C-FAIL until fixed.
type holdSenders struct {
	flaky
	held    map[string]bool
	release chan struct{}
}

func (h *holdSenders) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	if h.held[sender] {
		<-h.release
	}
	return h.flaky.NormalizeHL7(sender, m)
}

// TestRequeueBehindAFullBacklogFound: with more envelopes in the lanes than
// one page of the look behind the cursor (512), an envelope requeued after
// them is still found at the next poll, not at the rescan every sixty
// polls.
func TestRequeueBehindAFullBacklogFound(t *testing.T) {
	db := openDB(t)
	const lanes = 4
	lane := func(s string) uint32 { h := fnv.New32a(); h.Write([]byte(s)); return h.Sum32() % lanes }
	// A sender on each lane: three held with a backlog that their lanes'
	// queues take whole (200 each, a queue holds 256), one whose message
	// fails and is requeued.
	var senders []string
	seen := map[uint32]bool{}
	for c := 'A'; len(senders) < lanes; c++ {
		if s := string(c) + "X"; !seen[lane(s)] {
			seen[lane(s)] = true
			senders = append(senders, s)
		}
	}
	norm := &holdSenders{held: map[string]bool{senders[0]: true, senders[1]: true, senders[2]: true}, release: make(chan struct{})}
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.New(db, norm, route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil),
		pipeline.Options{Lanes: lanes, Poll: 200 * time.Millisecond}) // sixty polls: 12 s
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); close(norm.release); <-done }()

	var backlog []*store.Envelope
	for i := range 600 {
		s := senders[i%3]
		raw := msg("A01", fmt.Sprint("B", i), person{auth: s, mrn: fmt.Sprint(i), family: "DOE", given: "JO", dob: "19800101", sex: "F"})
		e := hl7Envelope(fmt.Sprint("b", i), fmt.Sprint("B", i), raw)
		e.Sender = s
		backlog = append(backlog, e)
	}
	if _, err := db.InsertEnvelopes(context.Background(), backlog); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	raw := msg("A01", "C-FAIL", person{auth: senders[3], mrn: "9", family: "ROE", given: "RICH", dob: "19700101", sex: "M"})
	failing := hl7Envelope("e-fail", "C-FAIL", raw)
	failing.Sender = senders[3]
	if _, err := db.InsertEnvelopes(context.Background(), []*store.Envelope{failing}); err != nil {
		t.Fatal(err)
	}
	p.Notify()
	waitStatus(t, db, "e-fail", "failed")
	norm.fixed.Store(true)
	if n, err := db.Requeue(context.Background(), store.RequeueFilter{IDs: []string{"e-fail"}}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitStatus(t, db, "e-fail", "processed") // within 10 s, the backlog still held
}

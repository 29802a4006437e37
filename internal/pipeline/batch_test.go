package pipeline_test

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/store"
)

// countingStore counts processing transactions.
type countingStore struct {
	*store.DB
	txs atomic.Int64
}

func (c *countingStore) InTx(ctx context.Context, fn func(*store.Tx) error) error {
	c.txs.Add(1)
	return c.DB.InTx(ctx, fn)
}

// refuses fails to normalise the messages whose control id it names, and
// gives the messages it names in noID a Patient without identifiers, which
// only the processing transaction refuses.
type refuses struct {
	pidNormalizer
	bad, noID map[string]bool
}

func (r refuses) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	cid := m.Header().ControlID
	if r.bad[cid] {
		return pipeline.Normalized{}, fmt.Errorf("PID-7: not a date")
	}
	n, err := r.pidNormalizer.NormalizeHL7(sender, m)
	if err == nil && r.noID[cid] {
		delete(n.Resources[0], "identifier")
	}
	return n, err
}

// TestWaitingEnvelopesShareTransactions: envelopes already waiting in a lane
// are committed together, an envelope that cannot be normalised fails on its
// own between them, one that fails inside the shared transaction sends the
// others of its run through one by one, and every good envelope's events
// come out in the order received.
func TestWaitingEnvelopesShareTransactions(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db := store.TestEmbedded(t)
	const n = 40
	norm := refuses{bad: map[string]bool{"C07": true, "C21": true}, noID: map[string]bool{"C30": true}}
	var envs []*store.Envelope
	for i := 1; i <= n; i++ {
		cid := fmt.Sprintf("C%02d", i)
		raw := msg("A08", cid, person{auth: "H", mrn: fmt.Sprint(100 + i%5), family: "DOE", given: "JANE",
			dob: "19800101", sex: "F"})
		envs = append(envs, hl7Envelope("e"+cid, cid, raw))
	}
	// Everything is stored before the pipeline starts, so its lane finds
	// runs waiting.
	if _, err := db.InsertEnvelopes(ctx, envs); err != nil {
		t.Fatal(err)
	}
	cs := &countingStore{DB: db}
	rt := &captureRouter{}
	runLane(t, db, cs, norm, rt, envs, func(cid string) bool { return norm.bad[cid] || norm.noID[cid] })

	var got, want []string
	for _, ev := range rt.all() {
		if ev.Type != "update" {
			continue
		}
		got = append(got, ev.ControlID)
	}
	for _, e := range envs {
		if !norm.bad[e.ControlID] && !norm.noID[e.ControlID] {
			want = append(want, e.ControlID)
		}
	}
	// The run that held C30 was rolled back and redone one by one, so its
	// events were routed twice; the committed outbox holds them once, in
	// order.
	got = dedupe(got)
	if !slices.Equal(got, want) {
		t.Fatalf("events in order %v, want %v", got, want)
	}
	// 37 good envelopes; committed one by one they would take 37
	// transactions (plus the redone run of C30).
	t.Logf("%d processing transactions for %d envelopes", cs.txs.Load(), n)
	if txs := cs.txs.Load(); txs > 20 {
		t.Fatalf("%d processing transactions for %d envelopes: waiting envelopes were not committed together", txs, n)
	}
	e, err := db.GetEnvelope(context.Background(), "eC30")
	if err != nil || e.Error == "" {
		t.Fatalf("C30 failed without a reason: %+v %v", e, err)
	}
}

// storeUpdates stores n ADT^A08 envelopes P01, P02, ... of sender H, each
// about its own patient (MRN mrnBase+i), and returns them.
func storeUpdates(t *testing.T, db *store.DB, n, mrnBase int) []*store.Envelope {
	t.Helper()
	var envs []*store.Envelope
	for i := 1; i <= n; i++ {
		cid := fmt.Sprintf("P%02d", i)
		raw := msg("A08", cid, person{auth: "H", mrn: fmt.Sprint(mrnBase + i), family: "DOE", given: "JO", dob: "19700101", sex: "M"})
		envs = append(envs, hl7Envelope("e"+cid, cid, raw))
	}
	if _, err := db.InsertEnvelopes(context.Background(), envs); err != nil {
		t.Fatal(err)
	}
	return envs
}

// runLane runs a one-lane pipeline on st (over db) until each of envs, all
// stored already, is processed, or failed where fails says so, and stops
// it.
func runLane(t *testing.T, db *store.DB, st pipeline.Store, norm pipeline.Normalizer, rt pipeline.Router, envs []*store.Envelope, fails func(controlID string) bool) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.New(st, norm, rt, pipeline.Options{Lanes: 1, Batch: 8, Poll: time.Hour})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, e := range envs {
		want := "processed"
		if fails(e.ControlID) {
			want = "failed"
		}
		waitStatus(t, db, e.ID, want)
	}
}

func dedupe(ids []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// hl7Envelope is a received HL7 v2 envelope of sender H.
func hl7Envelope(id, controlID string, raw []byte) *store.Envelope {
	return &store.Envelope{ID: id, Channel: "mllp", Sender: "H", ReceivedAt: time.Now(), Kind: "hl7v2",
		ControlID: controlID, DedupKey: "msh10:" + controlID, SHA256: controlID, Status: "received", Raw: raw}
}

// panicky panics while normalising the messages named in norm, and makes
// the processing transaction of those named in commit panic (through
// trapStore).
type panicky struct {
	pidNormalizer
	norm, commit map[string]bool
	trap         *atomic.Bool
}

func (p panicky) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	cid := m.Header().ControlID
	if p.norm[cid] {
		var resources map[string]int
		resources[cid]++ // a defect: assignment to entry in nil map
	}
	if p.commit[cid] {
		p.trap.Store(true)
	}
	return p.pidNormalizer.NormalizeHL7(sender, m)
}

// trapStore panics inside the next processing transaction once trap is set.
type trapStore struct {
	*store.DB
	trap *atomic.Bool
}

func (s trapStore) InTx(ctx context.Context, fn func(*store.Tx) error) error {
	return s.DB.InTx(ctx, func(tx *store.Tx) error {
		if err := fn(tx); err != nil {
			return err
		}
		if s.trap.Swap(false) {
			panic("a defect inside the transaction")
		}
		return nil
	})
}

// TestPanicFailsOneEnvelope: a panic while processing (a defect of hiegw),
// in normalisation or inside a run's shared transaction, fails only the
// envelope that caused it, with a reason; the transaction is rolled back,
// and the pipeline goes on with the others.
func TestPanicFailsOneEnvelope(t *testing.T) {
	db := store.TestEmbedded(t)
	trap := &atomic.Bool{}
	norm := panicky{norm: map[string]bool{"P05": true}, commit: map[string]bool{"P12": true}, trap: trap}
	envs := storeUpdates(t, db, 20, 200)
	runLane(t, db, trapStore{DB: db, trap: trap}, norm, &captureRouter{}, envs, func(cid string) bool { return norm.norm[cid] || norm.commit[cid] })
	for _, id := range []string{"eP05", "eP12"} {
		e, err := db.GetEnvelope(context.Background(), id)
		if err != nil || !strings.Contains(e.Error, "internal error in hiegw") {
			t.Fatalf("%s failed with %q (%v), want the internal error named", id, e.Error, err)
		}
	}
}

// countsNormalized counts how often each message is normalised.
type countsNormalized struct {
	pidNormalizer
	mu sync.Mutex
	n  map[string]int
}

func (c *countsNormalized) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	c.mu.Lock()
	c.n[m.Header().ControlID]++
	c.mu.Unlock()
	return c.pidNormalizer.NormalizeHL7(sender, m)
}

// TestLogBehindIsNotProcessedAgain: a run whose commit succeeded but whose
// message log update failed (store.ErrLogBehind, a full disk) is done: its
// envelopes are not normalised and committed a second time, and the log
// catches up from the record.
func TestLogBehindIsNotProcessedAgain(t *testing.T) {
	db := store.TestEmbedded(t)
	envs := storeUpdates(t, db, 5, 500)
	db.FailLogUpdates(1)
	norm := &countsNormalized{n: map[string]int{}}
	ctx, cancel := context.WithCancel(context.Background())
	p := pipeline.New(db, norm, &captureRouter{}, pipeline.Options{Lanes: 1, Batch: 8, Poll: 50 * time.Millisecond})
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	for _, e := range envs {
		waitStatus(t, db, e.ID, "processed")
	}
	norm.mu.Lock()
	defer norm.mu.Unlock()
	for _, e := range envs {
		if n := norm.n[e.ControlID]; n != 1 {
			t.Errorf("%s normalised %d times", e.ControlID, n)
		}
	}
	var events int
	if err := db.SQL().QueryRow(`SELECT COUNT(*) FROM outbox`).Scan(&events); err != nil || events != len(envs) {
		t.Fatalf("%d events for %d envelopes (%v)", events, len(envs), err)
	}
}

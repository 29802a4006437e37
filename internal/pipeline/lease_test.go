package pipeline_test

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// replica is one gateway's pipeline on a database shared with others.
type replica struct {
	db     *store.DB
	rt     *captureRouter
	reg    *prometheus.Registry
	p      *pipeline.Pipeline
	cancel context.CancelFunc
	done   chan struct{}
}

func startReplica(t *testing.T, dsn, owner string, norm pipeline.Normalizer) *replica {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{PostgresDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	r := &replica{db: db, rt: &captureRouter{}, done: make(chan struct{})}
	r.reg = prometheus.NewRegistry()
	r.p = pipeline.New(db, norm, r.rt, pipeline.Options{Lanes: 2, Poll: 50 * time.Millisecond, Registerer: r.reg,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", owner),
		Lease:  &pipeline.Lease{Store: db, Owner: owner, TTL: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.p.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *replica) stop() { r.cancel(); <-r.done }

// leaseEnvelopes are envelopes from to of twelve senders, in turn, each
// sender about a patient of its own (without the MPI's up-front locking,
// transactions that resolve the same patients in different orders may
// deadlock and be retried, and the test router counts each try).
func leaseEnvelopes(from, to int) []*store.Envelope {
	var envs []*store.Envelope
	for i := from; i <= to; i++ {
		cid := fmt.Sprintf("L%03d", i)
		raw := msg("A08", cid, person{auth: "H", mrn: fmt.Sprint(700 + i%12), family: "DOE", given: "JO", dob: "19700101", sex: "M"})
		e := hl7Envelope("e"+cid, cid, raw)
		e.Sender = fmt.Sprint("S", i%12)
		envs = append(envs, e)
	}
	return envs
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) { w.t.Log(string(b)); return len(b), nil }

// gaugeValue reads a registered gauge.
func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); !ok(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("waited too long for %s", what)
		}
	}
}

// TestLeaseSplitsProcessing: two replicas sharing PostgreSQL split the
// sender partitions between them (a paused one gives its partitions to the
// other); each envelope is processed once, by the replica holding its
// sender's partition, in order per sender; when one shuts down the other
// takes every partition over at once.
func TestLeaseSplitsProcessing(t *testing.T) {
	dsn := store.TestPostgresDSN(t)
	ctx := context.Background()
	a := startReplica(t, dsn, "a", pidNormalizer{})
	waitFor(t, "a to hold every partition", func() bool { return a.p.Partitions() == pipeline.Partitions })
	b := startReplica(t, dsn, "b", pidNormalizer{})
	waitFor(t, "the partitions to be split", func() bool {
		return a.p.Partitions() == pipeline.Partitions/2 && b.p.Partitions() == pipeline.Partitions/2
	})
	if gaugeValue(t, a.reg, "hiegw_pipeline_standby") != 0 || gaugeValue(t, b.reg, "hiegw_pipeline_standby") != 0 {
		t.Fatal("a replica holding partitions says it stands by")
	}
	// A paused replica's partitions go to the other, and come back when
	// it resumes.
	a.p.Pause()
	waitFor(t, "b to take a's partitions while a is paused", func() bool {
		return a.p.Partitions() == 0 && b.p.Partitions() == pipeline.Partitions
	})
	a.p.Resume()
	waitFor(t, "the partitions to be split again", func() bool {
		return a.p.Partitions() == pipeline.Partitions/2 && b.p.Partitions() == pipeline.Partitions/2
	})
	if _, err := b.db.InsertEnvelopes(ctx, leaseEnvelopes(1, 120)); err != nil {
		t.Fatal(err)
	}
	a.p.Notify()
	b.p.Notify()
	waitFor(t, "120 envelopes processed", func() bool {
		counts, err := b.db.CountEnvelopes(ctx)
		return err == nil && counts["processed"] == 120
	})
	bySender := map[string]string{} // sender: the replica that routed its events
	for name, r := range map[string]*replica{"a": a, "b": b} {
		last := map[string]string{}
		for _, ev := range r.rt.all() {
			if other, ok := bySender[ev.Sender]; ok && other != name {
				t.Fatalf("sender %s processed by both replicas", ev.Sender)
			}
			bySender[ev.Sender] = name
			if ev.EnvelopeID <= last[ev.Sender] {
				t.Fatalf("sender %s out of order on %s: %s after %s", ev.Sender, name, ev.EnvelopeID, last[ev.Sender])
			}
			last[ev.Sender] = ev.EnvelopeID
		}
	}
	if n := len(a.rt.all()) + len(b.rt.all()); n != 120 || len(a.rt.all()) == 0 || len(b.rt.all()) == 0 {
		t.Fatalf("a routed %d, b %d events; want 120 between both", len(a.rt.all()), len(b.rt.all()))
	}

	a.stop() // a clean shutdown gives the partitions back
	waitFor(t, "b to take every partition", func() bool { return b.p.Partitions() == pipeline.Partitions })
	before := len(b.rt.all())
	if _, err := b.db.InsertEnvelopes(ctx, leaseEnvelopes(121, 150)); err != nil {
		t.Fatal(err)
	}
	b.p.Notify()
	waitFor(t, "b to process what came after a stopped", func() bool {
		counts, err := b.db.CountEnvelopes(ctx)
		return err == nil && counts["processed"] == 150
	})
	if n := len(b.rt.all()) - before; n != 30 {
		t.Fatalf("b routed %d events after a stopped, want 30", n)
	}
}

// holdOnce holds the first normalisation of the message with control id
// hold until release is closed.
type holdOnce struct {
	pidNormalizer
	hold    string
	once    sync.Once
	started chan struct{}
	release chan struct{}
}

func (h *holdOnce) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	if m.Header().ControlID == h.hold {
		h.once.Do(func() {
			close(h.started)
			<-h.release
		})
	}
	return h.pidNormalizer.NormalizeHL7(sender, m)
}

// TestLeaseLostCommitsNothing: a replica whose partition another took while
// it was working on a message commits nothing of it, gives the partition up,
// and processes the message once the partition comes back to it.
func TestLeaseLostCommitsNothing(t *testing.T) {
	dsn := store.TestPostgresDSN(t)
	ctx := context.Background()
	norm := &holdOnce{hold: "L001", started: make(chan struct{}), release: make(chan struct{})}
	a := startReplica(t, dsn, "a", norm)
	if _, err := a.db.InsertEnvelopes(ctx, leaseEnvelopes(1, 1)); err != nil {
		t.Fatal(err)
	}
	a.p.Notify()
	<-norm.started
	// Another replica takes the lease over, as after a's lease expired
	// during a stall, and holds it for a while.
	admin, err := store.Open(ctx, store.Options{PostgresDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	part := pipeline.LeaseName("processing", "S1")
	if err := admin.ReleaseLease(ctx, part, "a"); err != nil {
		t.Fatal(err)
	}
	if held, _, err := admin.HoldLease(ctx, part, "other", time.Hour); err != nil || !held {
		t.Fatalf("take the lease over: %v %v", held, err)
	}
	close(norm.release)
	waitFor(t, "a to give the partition up", func() bool { return a.p.Partitions() == pipeline.Partitions-1 })
	e, err := a.db.GetEnvelope(ctx, "eL001")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != "received" || len(a.rt.all()) != 0 {
		t.Fatalf("after the lease was lost: status %q, %d events; want received and none", e.Status, len(a.rt.all()))
	}
	if err := admin.ReleaseLease(ctx, part, "other"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a.db, "eL001", "processed")
	if n := len(a.rt.all()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

// flakyLeases holds every lease it is asked for, and panics the first time.
type flakyLeases struct {
	mu       sync.Mutex
	panicked bool
}

func (f *flakyLeases) HoldLease(_ context.Context, name, owner string, _ time.Duration) (bool, string, error) {
	f.mu.Lock()
	first := !f.panicked
	f.panicked = true
	f.mu.Unlock()
	if first {
		var m map[string]int
		m[name]++ // a defect in a lease round
	}
	return true, owner, nil
}

func (f *flakyLeases) ReleaseLease(context.Context, string, string) error { return nil }

func (f *flakyLeases) LiveLeases(context.Context, string) (int, error) { return 1, nil }

// TestLeaseRoundSurvivesPanic: a panic in a round of the lease loop ends
// that round only; the next one takes the partitions. Without the guard it
// ends the test binary.
func TestLeaseRoundSurvivesPanic(t *testing.T) {
	db := openDB(t)
	p := pipeline.New(db, pidNormalizer{}, &captureRouter{}, pipeline.Options{Lanes: 1, Poll: time.Hour,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil)),
		Lease:  &pipeline.Lease{Store: &flakyLeases{}, Owner: "r1", TTL: 300 * time.Millisecond}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitFor(t, "every partition held after the panicking round", func() bool { return p.Partitions() == pipeline.Partitions })
}

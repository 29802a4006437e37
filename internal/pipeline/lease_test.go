package pipeline_test

import (
	"context"
	"fmt"
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
		Lease: &pipeline.Lease{Store: db, Owner: owner, TTL: time.Second}})
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.p.Run(ctx); close(r.done) }()
	t.Cleanup(func() { cancel(); <-r.done })
	return r
}

func (r *replica) stop() { r.cancel(); <-r.done }

func leaseEnvelopes(from, to int) []*store.Envelope {
	var envs []*store.Envelope
	for i := from; i <= to; i++ {
		cid := fmt.Sprintf("L%03d", i)
		raw := msg("A08", cid, person{auth: "H", mrn: fmt.Sprint(700 + i%5), family: "DOE", given: "JO", dob: "19700101", sex: "M"})
		envs = append(envs, hl7Envelope("e"+cid, cid, raw))
	}
	return envs
}

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

// TestLeaseOneReplicaProcesses: of two replicas sharing PostgreSQL only the
// one holding the processing lease processes; when it shuts down the other
// takes over at once.
func TestLeaseOneReplicaProcesses(t *testing.T) {
	dsn := store.TestPostgresDSN(t)
	ctx := context.Background()
	a := startReplica(t, dsn, "a", pidNormalizer{})
	waitFor(t, "a to hold the lease", func() bool { return !a.p.Standby() })
	b := startReplica(t, dsn, "b", pidNormalizer{})
	if _, err := b.db.InsertEnvelopes(ctx, leaseEnvelopes(1, 30)); err != nil {
		t.Fatal(err)
	}
	a.p.Notify()
	b.p.Notify()
	waitFor(t, "30 events", func() bool { return len(a.rt.all())+len(b.rt.all()) >= 30 })
	time.Sleep(300 * time.Millisecond) // b polls several times meanwhile
	if n := len(b.rt.all()); n != 0 || !b.p.Standby() {
		t.Fatalf("the replica without the lease processed %d envelopes (standby %v)", n, b.p.Standby())
	}
	if a, b := gaugeValue(t, a.reg, "hiegw_pipeline_standby"), gaugeValue(t, b.reg, "hiegw_pipeline_standby"); a != 0 || b != 1 {
		t.Fatalf("hiegw_pipeline_standby: holder %v, the other %v", a, b)
	}
	if n := len(a.rt.all()); n != 30 {
		t.Fatalf("the lease holder processed %d envelopes, want 30", n)
	}

	a.stop() // a clean shutdown releases the lease
	if _, err := b.db.InsertEnvelopes(ctx, leaseEnvelopes(31, 40)); err != nil {
		t.Fatal(err)
	}
	b.p.Notify()
	waitFor(t, "b to process what came after a stopped", func() bool {
		counts, err := b.db.CountEnvelopes(ctx)
		return err == nil && counts["processed"] == 40
	})
	if n := len(b.rt.all()); n < 10 || b.p.Standby() {
		t.Fatalf("b routed %d events (standby %v), want 10", n, b.p.Standby())
	}
	if n := len(a.rt.all()); n != 30 {
		t.Fatalf("a routed %d events after it stopped, want 30 in all", n)
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

// TestLeaseLostCommitsNothing: a replica whose lease another took while it
// was working on a message commits nothing of it, stands by, and processes
// the message once the lease comes back to it.
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
	if err := admin.ReleaseLease(ctx, "processing", "a"); err != nil {
		t.Fatal(err)
	}
	if held, _, err := admin.HoldLease(ctx, "processing", "other", time.Hour); err != nil || !held {
		t.Fatalf("take the lease over: %v %v", held, err)
	}
	close(norm.release)
	waitFor(t, "a to stand by", a.p.Standby)
	e, err := a.db.GetEnvelope(ctx, "eL001")
	if err != nil {
		t.Fatal(err)
	}
	if e.Status != "received" || len(a.rt.all()) != 0 {
		t.Fatalf("after the lease was lost: status %q, %d events; want received and none", e.Status, len(a.rt.all()))
	}
	if err := admin.ReleaseLease(ctx, "processing", "other"); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, a.db, "eL001", "processed")
	if n := len(a.rt.all()); n != 1 {
		t.Fatalf("%d events, want 1", n)
	}
}

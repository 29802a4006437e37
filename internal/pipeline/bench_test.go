package pipeline_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/appack"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// BenchmarkProcess processes ADT messages of 200 patients from two senders
// on the embedded store, with the master patient index and with identifier
// links only.
func BenchmarkProcess(b *testing.B) {
	for _, withMPI := range []bool{true, false} {
		b.Run(fmt.Sprintf("mpi=%v", withMPI), func(b *testing.B) {
			ctx := context.Background()
			db, err := store.Open(ctx, store.Options{DataDir: b.TempDir(), Sync: "normal"})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			rt := &captureRouter{}
			o := pipeline.Options{}
			if withMPI {
				ix, err := mpi.New(sqlstore.New(db.SQL()), mpi.DefaultConfig())
				if err != nil {
					b.Fatal(err)
				}
				o.Identity = pipeline.NewIdentity(ix, db, rt)
			}
			p := pipeline.New(db, pidNormalizer{}, rt, o)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				e := benchEnvelope(i)
				if _, err := db.InsertEnvelopes(ctx, []*store.Envelope{e}); err != nil {
					b.Fatal(err)
				}
				if err := p.Process(ctx, *e); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkBacklog processes a backlog of ADT messages (200 patients, two
// senders, MPI on) with the pipeline running, committing one envelope per
// transaction or up to 16 waiting envelopes of a lane together, on the
// embedded store and (with HIEGW_TEST_POSTGRES_DSN) on PostgreSQL.
func BenchmarkBacklog(b *testing.B) {
	for _, backend := range []string{store.SQLite, store.Postgres} {
		for _, batch := range []int{1, 16, 64} {
			b.Run(fmt.Sprintf("%s/batch=%d", backend, batch), func(b *testing.B) { benchBacklog(b, backend, batch) })
		}
	}
}

func benchBacklog(b *testing.B, backend string, batch int) {
	rt := &captureRouter{}
	benchRun(b, backend, batch, pidNormalizer{}, rt, benchEnvelope, nil)
	if got := len(rt.all()); got < b.N {
		b.Fatalf("%d events for %d envelopes", got, b.N)
	}
}

// benchRun stores b.N envelopes made by envelope, then times the pipeline
// processing them with the master patient index, up to batch waiting
// envelopes per transaction.
func benchRun(b *testing.B, backend string, batch int, norm pipeline.Normalizer, rt pipeline.Router,
	envelope func(int) *store.Envelope, acks func(*store.DB) pipeline.AppAcks) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	o := store.Options{DataDir: b.TempDir(), Sync: "normal"}
	if backend == store.Postgres {
		o = store.Options{PostgresDSN: store.TestPostgresDSN(b)}
	}
	db, err := store.Open(ctx, o)
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	var envs []*store.Envelope
	for i := 0; i < b.N; i++ {
		envs = append(envs, envelope(i))
	}
	for i := 0; i < len(envs); i += 500 {
		if _, err := db.InsertEnvelopes(ctx, envs[i:min(i+500, len(envs))]); err != nil {
			b.Fatal(err)
		}
	}
	ix, err := mpi.New(sqlstore.New(db.SQL()), mpi.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	counted := &countingAcks{done: make(chan struct{}, 1)}
	if acks != nil {
		counted.inner = acks(db)
	}
	p := pipeline.New(db, norm, rt, pipeline.Options{Batch: batch, Poll: time.Hour,
		Identity: pipeline.NewIdentity(ix, db, rt), AppAcks: counted})
	b.ResetTimer()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	for counted.n.Load() < int64(b.N) {
		<-counted.done
	}
	b.StopTimer()
	cancel()
	<-done
}

// countingAcks counts the envelopes whose processing committed (the
// benchmarks wait for them without querying the store), passing the
// acknowledgements on to inner when there is one.
type countingAcks struct {
	inner pipeline.AppAcks
	n     atomic.Int64
	done  chan struct{}
}

func (c *countingAcks) Queue(ctx context.Context, tx *store.Tx, e store.Envelope, failure error) (func(), error) {
	var then func()
	if c.inner != nil {
		var err error
		if then, err = c.inner.Queue(ctx, tx, e, failure); err != nil {
			return nil, err
		}
	}
	return func() {
		if then != nil {
			then()
		}
		c.n.Add(1)
		select {
		case c.done <- struct{}{}:
		default:
		}
	}, nil
}

func (c *countingAcks) QueueFailure(ctx context.Context, e store.Envelope, failure error) error {
	if c.inner != nil {
		return c.inner.QueueFailure(ctx, e, failure)
	}
	return nil
}

// benchEnvelope is the i-th ADT^A08 of the benchmarks: 200 patients, senders
// ghh and nlab alternating, each with its own assigning authority.
func benchEnvelope(i int) *store.Envelope {
	n := i % 200
	pr := person{mrn: fmt.Sprint(1000 + n), auth: "GHH", family: fmt.Sprintf("Fam%03d", n), given: "Given",
		dob: fmt.Sprintf("19%02d0%d1%d", n%100, 1+n%9, n%10), sex: "F", street: fmt.Sprintf("%d Main St", n),
		city: "Springfield", zip: fmt.Sprint(62000 + n), phone: fmt.Sprint(2175550000 + n)}
	sender := "ghh"
	if i%2 == 1 {
		sender, pr.auth, pr.mrn = "nlab", "NLAB", "L"+pr.mrn
	}
	id := fmt.Sprintf("e%d", i)
	return &store.Envelope{ID: id, Channel: "mllp", Sender: sender, ReceivedAt: time.Now(), Kind: intake.KindHL7,
		MessageType: "ADT", ControlID: id, DedupKey: id, SHA256: id, Status: "received", Raw: msg("A08", id, pr)}
}

// BenchmarkMapped processes a backlog of the sample ADT^A01
// (testdata/hl7/adt_a01.hl7) the way the gateway does: mapped with the
// shipped mapping set, identified in the master patient index, routed by
// the default subscription, with application acknowledgements, up to 16
// waiting envelopes per transaction. With patients=1 every copy is the same
// patient (as deployments/load.sh sends it); with patients=200 the MRN, names,
// birth date, social security number, address and phone vary.
func BenchmarkMapped(b *testing.B) {
	for _, backend := range []string{store.SQLite, store.Postgres} {
		for _, patients := range []int{1, 200} {
			b.Run(fmt.Sprintf("%s/patients=%d", backend, patients), func(b *testing.B) {
				set, err := mapping.Load("../../mappings")
				if err != nil {
					b.Fatal(err)
				}
				sample, err := os.ReadFile("../../testdata/hl7/adt_a01.hl7")
				if err != nil {
					b.Fatal(err)
				}
				sample = bytes.ReplaceAll(bytes.TrimSpace(sample), []byte("\n"), []byte("\r"))
				envelope := func(i int) *store.Envelope {
					n := i % patients
					raw := bytes.Replace(sample, []byte("|ADT0001|"), fmt.Appendf(nil, "|C%d|", i), 1)
					if patients > 1 {
						raw = bytes.Replace(raw, []byte("4455667^"), fmt.Appendf(nil, "%d^", 5000000+n), 1)
						raw = bytes.Replace(raw, []byte("MUÑOZ^JOSÉ^"), fmt.Appendf(nil, "%s%s^%s^",
							benchSyllables[n%len(benchSyllables)], benchSyllables[(n/len(benchSyllables)+3)%len(benchSyllables)],
							benchGiven[n%len(benchGiven)]), 1)
						raw = bytes.Replace(raw, []byte("^62704^"), fmt.Appendf(nil, "^%d^", 60000+37*n), 1)
						raw = bytes.Replace(raw, []byte("|19670315|"), fmt.Appendf(nil, "|19%02d0%d1%d|", n%100, 1+n%9, n%10), 1)
						raw = bytes.Replace(raw, []byte("999-88-7777^"), fmt.Appendf(nil, "999-88-%04d^", n), 1)
						raw = bytes.Replace(raw, []byte("742 EVERGREEN"), fmt.Appendf(nil, "%d MAIN", n), 1)
						raw = bytes.Replace(raw, []byte("^5550123"), fmt.Appendf(nil, "^555%04d", n), 1)
					}
					id := fmt.Sprintf("e%d", i)
					return &store.Envelope{ID: id, Channel: "mllp", Sender: "GOODHEALTH", ReceivedAt: time.Now(),
						Kind: intake.KindHL7, MessageType: "ADT^A01", ControlID: fmt.Sprintf("C%d", i), DedupKey: id,
						SHA256: id, Status: "received", Raw: raw}
				}
				rt := route.NewRouter([]route.Subscription{route.DefaultSubscription}, nil)
				benchRun(b, backend, 16, mappedNormalizer{set}, rt, envelope, func(db *store.DB) pipeline.AppAcks {
					return appack.New(db, appack.Options{})
				})
			})
		}
	}
}

var (
	benchSyllables = []string{"BAR", "KOV", "LIN", "MOR", "PET", "SAN", "TOR", "WEL", "ZIM", "HAR", "DUN", "FEL", "GRO"}
	benchGiven     = []string{"ANNA", "BORIS", "CARLA", "DMITRI", "ELENA", "FRANK", "GRETA", "HUGO", "IRIS", "JONAS", "KATE"}
)

// mappedNormalizer maps HL7 v2 with a mapping set, as the gateway's
// normalizer does.
type mappedNormalizer struct{ set *mapping.Set }

func (n mappedNormalizer) Version() string { return n.set.Version() }

func (n mappedNormalizer) NormalizeCCDA(string, []byte) (pipeline.Normalized, error) {
	return pipeline.Normalized{}, fmt.Errorf("no C-CDA here")
}

func (n mappedNormalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	res, err := n.set.MapHL7(sender, m)
	if err != nil {
		return pipeline.Normalized{}, err
	}
	ev := res.Event
	if ev == "" {
		ev = route.EventOther
	}
	return pipeline.Normalized{Event: ev, Resources: res.Resources, Keep: res.Keep}, nil
}

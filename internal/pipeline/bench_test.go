package pipeline_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/pipeline"
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
		for _, batch := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/batch=%d", backend, batch), func(b *testing.B) { benchBacklog(b, backend, batch) })
		}
	}
}

func benchBacklog(b *testing.B, backend string, batch int) {
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
		envs = append(envs, benchEnvelope(i))
	}
	for i := 0; i < len(envs); i += 500 {
		if _, err := db.InsertEnvelopes(ctx, envs[i:min(i+500, len(envs))]); err != nil {
			b.Fatal(err)
		}
	}
	rt := &captureRouter{}
	ix, err := mpi.New(sqlstore.New(db.SQL()), mpi.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	p := pipeline.New(db, pidNormalizer{}, rt, pipeline.Options{Batch: batch, Poll: time.Hour,
		Identity: pipeline.NewIdentity(ix, db, rt)})
	b.ResetTimer()
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	count := `SELECT COUNT(*) FROM processed_envelopes`
	if backend == store.Postgres {
		count = `SELECT COUNT(*) FROM envelopes WHERE status = 'processed'`
	}
	for {
		var n int
		if err := db.SQL().GetContext(ctx, &n, count); err != nil {
			b.Fatal(err)
		}
		if n == b.N {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	if got := len(rt.all()); got < b.N {
		b.Fatalf("%d events for %d envelopes", got, b.N)
	}
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

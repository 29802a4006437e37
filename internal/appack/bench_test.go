package appack_test

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/appack"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

func benchEnvelope(i int) store.Envelope {
	id := fmt.Sprintf("C%08d", i)
	return store.Envelope{ID: "env-" + id, Channel: intake.ChannelMLLP, Kind: intake.KindHL7, Sender: "lab", ControlID: id,
		Raw: []byte("MSH|^~\\&|LIS|CITYLAB|HIEGW|HIE|20261124101500||ORU^R01^ORU_R01|" + id + "|P|2.5.1|||AL|AL\rPID|1\r")}
}

// receiver is the sender's MLLP receiver answering CA to everything.
func receiver(b *testing.B) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &mllp.Server{Handler: mllp.HandlerFunc(func(_ context.Context, _ mllp.ConnInfo, frame []byte, _ error) []byte {
		h, d, _ := hl7.ParseHeader(frame)
		return hl7.NewACK(h, d, hl7.CommitAccept, "R", time.Now())
	})}
	go func() { _ = srv.Serve(ln) }()
	b.Cleanup(func() { _ = srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// BenchmarkQueue: building an application acknowledgement and queueing it
// in a write transaction of the embedded store (the part processing pays),
// beside the same transaction without it (one audit row each).
func BenchmarkQueue(b *testing.B) {
	for _, queue := range []bool{false, true} {
		b.Run(map[bool]string{false: "tx", true: "tx+queue"}[queue], func(b *testing.B) {
			ctx := context.Background()
			db, err := store.Open(ctx, store.Options{DataDir: b.TempDir()})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			a := appack.New(db, appack.Options{Routes: map[string]appack.Route{"lab": {Addr: "127.0.0.1:1"}}})
			b.ResetTimer()
			for i := range b.N {
				err := db.InTx(ctx, func(tx *store.Tx) error {
					if err := tx.Audit(ctx, store.AuditEntry{Actor: "bench", Action: "bench"}); err != nil || !queue {
						return err
					}
					_, err := a.Queue(ctx, tx, benchEnvelope(i), nil)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeliver: b.N queued acknowledgements of one sender delivered in
// order over one MLLP connection to a local receiver, each waiting for its
// CA and recorded as sent in the embedded store.
func BenchmarkDeliver(b *testing.B) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	db, err := store.Open(ctx, store.Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	a := appack.New(db, appack.Options{Routes: map[string]appack.Route{"lab": {Addr: receiver(b)}}, Poll: 10 * time.Millisecond})
	for i := range b.N {
		if err := a.QueueFailure(ctx, benchEnvelope(i), nil); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	done := make(chan struct{})
	go func() { a.Run(ctx); close(done) }()
	for {
		rows, err := db.ListAppAcks(ctx, store.AppAckFilter{Status: store.AppAckPending, Limit: 1})
		if err != nil {
			b.Fatal(err)
		}
		if len(rows) == 0 {
			break
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cancel()
	<-done
	counts, _ := db.AppAckCounts(context.Background())
	if len(counts) != 1 || counts[0].Status != store.AppAckSent || counts[0].N != int64(b.N) {
		b.Fatalf("counts %v", counts)
	}
}

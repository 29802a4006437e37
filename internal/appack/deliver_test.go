package appack

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

// panicOnce is the store, but its first claim panics (a defect of hiegw).
type panicOnce struct {
	*store.DB
	claims atomic.Int32
}

func (p *panicOnce) ClaimAppAcks(ctx context.Context, sender, owner string, limit int, lease time.Duration) ([]store.AppAck, error) {
	if p.claims.Add(1) == 1 {
		var m map[string]int
		m[sender]++
	}
	return p.DB.ClaimAppAcks(ctx, sender, owner, limit, lease)
}

// TestDeliverySurvivesPanic: a panic while delivering a sender's
// acknowledgements ends that round only; the gateway goes on and the
// acknowledgement is delivered in the next.
func TestDeliverySurvivesPanic(t *testing.T) {
	db := store.TestEmbedded(t)
	ctx := context.Background()
	ack := store.AppAck{EnvelopeID: "e1", Sender: "LAB", ControlID: "C1", AckControlID: "ACK1", Code: "AA",
		Message: []byte("MSH|^~\\&|HIEGW|HIE|LAB|GHH|20260101||ACK^R01^ACK|ACK1|P|2.5.1\rMSA|AA|C1\r"), Status: store.AppAckPending}
	if _, err := db.EnqueueAppAck(ctx, ack); err != nil {
		t.Fatal(err)
	}
	addr := acceptingReceiver(t)
	st := &panicOnce{DB: db}
	a := New(st, Options{Routes: map[string]Route{"LAB": {Addr: addr}}, Poll: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts, err := db.AppAckCounts(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range counts {
			if c.Sender == "LAB" && c.Status == store.AppAckSent && c.N == 1 {
				if st.claims.Load() < 2 {
					t.Fatalf("sent after %d claims; the first should have panicked", st.claims.Load())
				}
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("not delivered after the panic: %+v", counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// acceptingReceiver is a sender's MLLP receiver that answers every
// acknowledgement with an accept; it returns its address.
func acceptingReceiver(t *testing.T) string {
	srv := &mllp.Server{Handler: mllp.HandlerFunc(func(_ context.Context, _ mllp.ConnInfo, frame []byte, _ error) []byte {
		m, err := hl7.Parse(frame)
		if err != nil {
			return nil
		}
		return []byte("MSH|^~\\&|LAB|GHH|HIEGW|HIE|20260101||ACK|R1|P|2.5.1\rMSA|CA|" + m.Get("MSH-10") + "\r")
	}), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return ln.Addr().String()
}

// waitStatus waits until sender has n acknowledgements in status.
func waitStatus(t *testing.T, db *store.DB, sender, status string, n int64) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		counts, err := db.AppAckCounts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range counts {
			if c.Sender == sender && c.Status == status && c.N == n {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: want %d %s, have %+v", sender, n, status, counts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSetRoutes: a route put in force while Run runs has the
// acknowledgements kept for want of it delivered; one removed has those
// waiting for it kept again.
func TestSetRoutes(t *testing.T) {
	db := store.TestEmbedded(t)
	ctx := context.Background()
	row := func(sender, id, status string) store.AppAck {
		return store.AppAck{EnvelopeID: "e-" + id, Sender: sender, ControlID: id, AckControlID: "ACK-" + id, Code: "AA",
			Message: []byte("MSH|^~\\&|HIEGW|HIE|LAB|GHH|20260101||ACK^R01^ACK|ACK-" + id + "|P|2.5.1\rMSA|AA|" + id + "\r"), Status: status}
	}
	if _, err := db.EnqueueAppAck(ctx, row("LAB", "C1", store.AppAckNoRoute)); err != nil {
		t.Fatal(err)
	}
	a := New(db, Options{Poll: 20 * time.Millisecond, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { a.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitStatus(t, db, "LAB", store.AppAckNoRoute, 1)

	a.SetRoutes(map[string]Route{"LAB": {Addr: acceptingReceiver(t)}})
	waitStatus(t, db, "LAB", store.AppAckSent, 1)
	if _, ok := a.Routes()["LAB"]; !ok {
		t.Fatal("the route put in force is not listed")
	}

	a.SetRoutes(map[string]Route{})
	if _, err := db.EnqueueAppAck(ctx, row("LAB", "C2", store.AppAckPending)); err != nil {
		t.Fatal(err)
	}
	a.Notify()
	waitStatus(t, db, "LAB", store.AppAckNoRoute, 1)
}

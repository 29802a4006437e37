package gateway

import (
	"context"
	"testing"

	"github.com/hiegw/hiegw/internal/store"
)

func TestRequeueFromAnotherProcessEmbedded(t *testing.T) { requeueFromAnotherProcess(t, "") }

func TestRequeueFromAnotherProcessPostgres(t *testing.T) {
	requeueFromAnotherProcess(t, store.TestPostgresDSN(t))
}

// requeueFromAnotherProcess: a message that failed is requeued through a
// store handle of its own, as `hiegw replay --failed` does beside a running
// gateway, and the running gateway processes it again without being told.
func requeueFromAnotherProcess(t *testing.T, dsn string) {
	dir := t.TempDir()
	c := testConfig(t, dir, dsn)
	r := start(t, c)
	defer r.shutdown(t)
	// Enhanced mode: committed (CA), then failed in processing (an MRN
	// without its assigning authority).
	if ack := send(t, r.g.MLLPAddr(), adtAck("ACME", "RQ-1", "AL", "NE", false)); ack.Get("MSA-1") != "CA" {
		t.Fatalf("ack %q", ack.Raw())
	}
	attempts := func(want int) func() bool {
		return func() bool {
			es, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{Status: "failed"})
			return err == nil && len(es) == 1 && es[0].ControlID == "RQ-1" && es[0].Attempts == want
		}
	}
	waitFor(t, "the message to fail", attempts(1))

	other, err := store.Open(context.Background(), store.Options{PostgresDSN: c.Store.PostgresDSN, DataDir: dir, NoIntake: true})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	if n, err := other.Requeue(context.Background(), store.RequeueFilter{Sender: "nobody"}); err != nil || n != 0 {
		t.Fatalf("requeue of another sender: %d %v", n, err)
	}
	if n, err := other.Requeue(context.Background(), store.RequeueFilter{}); err != nil || n != 1 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	waitFor(t, "the running gateway to process it again", attempts(2))
}

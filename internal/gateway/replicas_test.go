package gateway

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/journal"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/store"
)

// twoReplicas starts two gateways on one PostgreSQL database (the test's
// own), each with its own data directory; they stop when the test ends.
func twoReplicas(t *testing.T) (a, b *running) {
	dsn := store.TestPostgresDSN(t)
	a = start(t, testConfig(t, t.TempDir(), dsn))
	t.Cleanup(func() { a.shutdown(t) })
	b = start(t, testConfig(t, t.TempDir(), dsn))
	t.Cleanup(func() { b.shutdown(t) })
	return a, b
}

// TestReplicasSplitProcessing: two gateways on one PostgreSQL database,
// each with its own data directory, split the sender partitions between
// them; messages sent to either are each processed once, whichever replica
// holds the sender's partition.
func TestReplicasSplitProcessing(t *testing.T) {
	a, b := twoReplicas(t)
	partitions := func(r *running) int {
		resp, err := http.Get("http://" + r.g.HTTPAddr() + "/api/v1/pipeline")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var s struct{ Partitions int }
		if err := json.NewDecoder(resp.Body).Decode(&s); err != nil {
			t.Fatal(err)
		}
		return s.Partitions
	}
	waitFor(t, "the partitions to be split", func() bool {
		return partitions(a) == pipeline.Partitions/2 && partitions(b) == pipeline.Partitions/2
	})
	// Twelve senders, each about a patient of its own, through both gateways.
	base := readFile(t, "adt_a01.hl7")
	const senders, each = 12, 5
	for s := range senders {
		for i := range each {
			msg := bytes.Replace(base, []byte("|GOODHEALTH|HIEGW|"), fmt.Appendf(nil, "|FAC%d|HIEGW|", s), 1)
			msg = bytes.Replace(msg, []byte("|ADT0001|"), fmt.Appendf(nil, "|R%d-%d|", s, i), 1)
			msg = bytes.Replace(msg, []byte("4455667^^^GOODHEALTH"), fmt.Appendf(nil, "77%02d^^^GOODHEALTH", s), 1)
			to := a
			if (s+i)%2 == 1 {
				to = b
			}
			if ack := send(t, to.g.MLLPAddr(), msg); ack.Get("MSA-1") != "CA" {
				t.Fatalf("sender %d message %d: %q", s, i, ack.Raw())
			}
		}
	}
	waitFor(t, "every message processed", func() bool {
		n, err := a.g.DB().CountEnvelopes(context.Background())
		return err == nil && n["processed"] == senders*each
	})
	// One event per envelope and event type: processed twice, an
	// envelope's events would repeat.
	var envelopes, dup int
	err := a.g.DB().SQL().QueryRow(`SELECT COUNT(DISTINCT envelope_id), COUNT(*) - COUNT(DISTINCT (envelope_id, event_type, topic))
		FROM outbox`).Scan(&envelopes, &dup)
	if err != nil {
		t.Fatal(err)
	}
	if envelopes != senders*each || dup != 0 {
		t.Fatalf("outbox: events of %d envelopes, %d repeated; want %d envelopes, none repeated", envelopes, dup, senders*each)
	}
}

// TestRestartTakesBackOwnClaims: on PostgreSQL a gateway restarted on the
// same host and data directory after a crash publishes at once the events
// its predecessor had claimed and not published, instead of waiting for
// the claim's lease (here an hour) to run out.
func TestRestartTakesBackOwnClaims(t *testing.T) {
	dsn := store.TestPostgresDSN(t)
	dir := t.TempDir()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{PostgresDSN: dsn})
	if err != nil {
		t.Fatal(err)
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		return tx.AddOutbox(ctx, store.OutboxEntry{Subscriber: "default", Topic: "hie.events", Key: "crashed",
			Headers: map[string]string{}, Payload: []byte(`{"resourceType":"Bundle","type":"collection"}`)})
	})
	if err != nil {
		t.Fatal(err)
	}
	owner, err := ownerName(dir, journal.LocksAcrossProcesses)
	if err != nil {
		t.Fatal(err)
	}
	if rows, err := db.ClaimOutbox(ctx, owner, 10, time.Hour); err != nil || len(rows) != 1 {
		t.Fatalf("the crashed gateway's claim: %v %v", rows, err)
	}
	db.Close()
	r := start(t, testConfig(t, dir, dsn))
	defer r.shutdown(t)
	waitFor(t, "the predecessor's claimed event to be published", func() bool {
		var unsent int
		err := r.g.DB().SQL().QueryRow(`SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL`).Scan(&unsent)
		return err == nil && unsent == 0
	})
}

// TestRetentionOnOneReplica: of two gateways sharing PostgreSQL, the one
// holding the retention lease purges; the other leaves it to it.
func TestRetentionOnOneReplica(t *testing.T) {
	a, b := twoReplicas(t)
	// One round, then the lease given up, as enforceRetention does when
	// the gateway stops.
	purge := func(r *running) {
		r.g.retainOnce(context.Background(), time.Hour, time.Nanosecond, 0)
		r.g.releaseRetention(context.Background())
	}
	base := readFile(t, "adt_a01.hl7")
	processed := func(control string) string {
		msg := bytes.Replace(base, []byte("|ADT0001|"), []byte("|"+control+"|"), 1)
		if ack := send(t, a.g.MLLPAddr(), msg); !accepted(ack.Raw()) {
			t.Fatalf("%s: %q", control, ack.Raw())
		}
		var id string
		waitFor(t, control+" processed", func() bool {
			envs, err := a.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: control, Status: "processed"})
			if err == nil && len(envs) == 1 {
				id = envs[0].ID
			}
			return id != ""
		})
		return id
	}
	rawLen := func(id string) int {
		e, err := a.g.DB().GetEnvelope(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		return len(e.Raw)
	}
	first := processed("RET-1")
	purge(a)
	if n := rawLen(first); n != 0 {
		t.Fatalf("the lease holder's purge left %d bytes", n)
	}
	second := processed("RET-2")
	// b, while a holds the lease: nothing.
	held, _, err := a.g.DB().HoldLease(context.Background(), retentionLease, a.g.owner, time.Hour)
	if err != nil || !held {
		t.Fatalf("a takes the retention lease back: %v %v", held, err)
	}
	purge(b)
	if n := rawLen(second); n == 0 {
		t.Fatal("the replica without the retention lease purged")
	}
	purge(a)
	if n := rawLen(second); n != 0 {
		t.Fatalf("the lease holder's second purge left %d bytes", n)
	}
	// The holder gave the lease up: the other replica takes it at once.
	third := processed("RET-3")
	purge(b)
	if n := rawLen(third); n != 0 {
		t.Fatalf("after the holder gave the lease up, the other's purge left %d bytes", n)
	}
}

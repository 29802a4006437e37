package gateway

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
	"github.com/twmb/franz-go/pkg/kfake"
)

// externalBroker is a Kafka-protocol broker outside the gateway, on a fixed
// address and data directory so that it can be stopped and started again.
type externalBroker struct {
	addr, dir string
	c         *kfake.Cluster
}

func (b *externalBroker) start(t *testing.T) {
	t.Helper()
	_, portStr, _ := net.SplitHostPort(b.addr)
	port, _ := strconv.Atoi(portStr)
	var err error
	// The port may linger briefly after a stop.
	for i := 0; i < 50; i++ {
		b.c, err = kfake.NewCluster(kfake.NumBrokers(1), kfake.Ports(port), kfake.DataDir(b.dir), kfake.SyncWrites(),
			kfake.AllowAutoTopicCreation(), kfake.DefaultNumPartitions(4), kfake.SeedTopics(4, "hie.events"))
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("start broker on %s: %v", b.addr, err)
}

func (b *externalBroker) stop() {
	if b.c != nil {
		b.c.Close()
		b.c = nil
	}
}

func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestBrokerOutageEmbedded(t *testing.T) { brokerOutage(t, "") }

func TestBrokerOutagePostgres(t *testing.T) { brokerOutage(t, store.TestPostgresDSN(t)) }

// brokerOutage stops the broker while messages keep arriving: they are
// acknowledged and queued, and published when the broker returns.
func brokerOutage(t *testing.T, dsn string) {
	if testing.Short() {
		t.Skip("broker outage test skipped with -short")
	}
	dir := t.TempDir()
	b := &externalBroker{addr: freePort(t), dir: filepath.Join(dir, "broker")}
	b.start(t)
	defer b.stop()
	c := testConfig(t, filepath.Join(dir, "data"), dsn)
	c.Kafka.Brokers = []string{b.addr}
	c.Kafka.MaxAttempts = 1000 // an outage must not dead-letter anything
	r := start(t, c)
	defer r.shutdown(t)

	const patients = 6
	var sent []string
	batch := func(from, to int) [][]byte {
		var msgs [][]byte
		for i := from; i < to; i++ {
			id := fmt.Sprintf("O%04d", i)
			sent = append(sent, id)
			mrn := fmt.Sprint(3000 + i%patients)
			if i%3 == 0 {
				msgs = append(msgs, adtMsg("GOODHEALTH", id, "A08", mrn, ""))
			} else {
				msgs = append(msgs, oruMsg("GOODHEALTH", id, mrn, i))
			}
		}
		return msgs
	}
	sendAll(t, r.g.MLLPAddr(), batch(0, 30))
	if got := readTopic(t, b.addr, "hie.events", 30, 60*time.Second); len(got) != 30 {
		t.Fatalf("before the outage: %d events, want 30", len(got))
	}

	b.stop()
	// Ingestion and ACKs continue (sendAll fails on anything but AA/CA) and
	// the outbox grows.
	sendAll(t, r.g.MLLPAddr(), batch(30, 90))
	waitOutbox(t, r.g.DB(), func(pending, sent int64) bool { return pending == 60 && sent == 30 }, "60 pending, 30 sent")

	b.start(t)
	waitOutbox(t, r.g.DB(), func(pending, sent int64) bool { return pending == 0 }, "drained")
	got := readTopic(t, b.addr, "hie.events", 90, 60*time.Second)
	seen := map[string]int{}
	byKey := map[string][]string{}
	for _, m := range got {
		seen[m.control]++
		byKey[m.key] = append(byKey[m.key], m.control)
	}
	for _, id := range sent {
		if seen[id] == 0 {
			t.Errorf("%s never published", id)
		}
	}
	if len(byKey) != patients {
		t.Errorf("%d keys, want %d patients", len(byKey), patients)
	}
	// One sender, so each patient's events are in the order sent (a
	// duplicate after a retry may repeat an event, never reorder the last
	// copies).
	for key, ids := range byKey {
		if !inOrderLastCopies(ids) {
			t.Errorf("key %s: events out of order: %v", key, ids)
		}
	}
}

// inOrderLastCopies reports whether the last copy of each id appears in
// increasing id order.
func inOrderLastCopies(ids []string) bool {
	last := map[string]int{}
	for i, id := range ids {
		last[id] = i
	}
	prev := ""
	for i, id := range ids {
		if last[id] != i {
			continue
		}
		if id < prev {
			return false
		}
		prev = id
	}
	return true
}

func waitOutbox(t *testing.T, db *store.DB, ok func(pending, sent int64) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(90 * time.Second)
	for {
		st, err := db.OutboxCounts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var p, s int64
		for _, x := range st {
			p, s = p+x.Pending, s+x.Sent
		}
		if ok(p, s) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox never %s: pending %d, sent %d", what, p, s)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

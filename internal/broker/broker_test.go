package broker

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/segmentio/kafka-go"
)

func TestPersistsAcrossRestart(t *testing.T) {
	dir := t.TempDir()
	b, err := Start(Options{Addr: "127.0.0.1:0", DataDir: dir, Topics: []string{"t1"}})
	if err != nil {
		t.Fatal(err)
	}
	addr := b.Addr()
	w := &kafka.Writer{Addr: kafka.TCP(addr), Topic: "t1", Balancer: &kafka.Hash{}, RequiredAcks: kafka.RequireAll,
		BatchTimeout: time.Millisecond}
	var msgs []kafka.Message
	for i := range 50 {
		msgs = append(msgs, kafka.Message{Key: []byte(fmt.Sprint("patient-", i%5)), Value: []byte(fmt.Sprint(i))})
	}
	if err := w.WriteMessages(context.Background(), msgs...); err != nil {
		t.Fatal(err)
	}
	w.Close()
	b.Close()

	b2, err := Start(Options{Addr: addr, DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer b2.Close()
	conn, err := kafka.Dial("tcp", b2.Addr())
	if err != nil {
		t.Fatal(err)
	}
	parts, err := conn.ReadPartitions("t1")
	conn.Close()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	perKey := map[string][]string{}
	for _, p := range parts {
		r := kafka.NewReader(kafka.ReaderConfig{Brokers: []string{b2.Addr()}, Topic: "t1", Partition: p.ID, MaxWait: 50 * time.Millisecond})
		for {
			ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
			m, err := r.ReadMessage(ctx)
			cancel()
			if err != nil {
				break
			}
			seen[string(m.Value)] = true
			perKey[string(m.Key)] = append(perKey[string(m.Key)], string(m.Value))
		}
		r.Close()
	}
	if len(seen) != 50 {
		t.Fatalf("read back %d of 50 messages after restart", len(seen))
	}
	// Messages of one key stay in the order they were written.
	for k, vs := range perKey {
		for i := 1; i < len(vs); i++ {
			var a, b int
			fmt.Sscan(vs[i-1], &a)
			fmt.Sscan(vs[i], &b)
			if a >= b {
				t.Fatalf("key %s out of order: %v", k, vs)
			}
		}
	}
}

func TestBadAddress(t *testing.T) {
	if _, err := Start(Options{Addr: "nope", DataDir: t.TempDir()}); err == nil {
		t.Fatal("want an error for a bad address")
	}
}

package route

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
	"github.com/twmb/franz-go/pkg/kfake"
)

// BenchmarkRelay measures outbox rows published per second into an
// in-process Kafka-protocol broker (kfake, acks=all), from each store.
func BenchmarkRelay(b *testing.B) {
	b.Run("embedded", func(b *testing.B) {
		db, err := store.Open(context.Background(), store.Options{DataDir: b.TempDir(), Sync: "normal"})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchRelay(b, db)
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(b)})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchRelay(b, db)
	})
}

func benchRelay(b *testing.B, db *store.DB) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"), kfake.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	k, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs()})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	payload := make([]byte, 1500) // about a FHIR Bundle of one result
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	b.StopTimer()
	var batch []store.OutboxEntry
	for i := range b.N {
		batch = append(batch, store.OutboxEntry{Subscriber: "bench", Topic: "bench", Key: fmt.Sprint("patient-", i%500),
			EventType: EventResult, EnvelopeID: fmt.Sprint(i), Payload: payload, Headers: map[string]string{"hiegw-event": EventResult}})
		if len(batch) == 1000 || i == b.N-1 {
			queue(b, db, batch...)
			batch = batch[:0]
		}
	}
	r := NewRelay(db, k, RelayOptions{Owner: "bench", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	b.ReportAllocs()
	b.StartTimer()
	start := time.Now()
	if err := r.Drain(context.Background()); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	b.StopTimer()
	if p, _, _ := pending(b, db); p != 0 {
		b.Fatalf("%d rows left", p)
	}
}

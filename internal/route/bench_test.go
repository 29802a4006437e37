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
	for _, compression := range []string{"none", "snappy", "lz4", "zstd"} {
		b.Run("embedded/"+compression, func(b *testing.B) {
			db, err := store.Open(context.Background(), store.Options{DataDir: b.TempDir(), Sync: "normal"})
			if err != nil {
				b.Fatal(err)
			}
			defer db.Close()
			benchRelay(b, db, compression)
		})
	}
	b.Run("postgres", func(b *testing.B) {
		db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(b)})
		if err != nil {
			b.Fatal(err)
		}
		defer db.Close()
		benchRelay(b, db, "snappy")
	})
}

func benchRelay(b *testing.B, db *store.DB, compression string) {
	c, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(4, "bench"), kfake.AllowAutoTopicCreation())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	k, err := NewKafka(KafkaOptions{Brokers: c.ListenAddrs(), Compression: compression})
	if err != nil {
		b.Fatal(err)
	}
	defer k.Close()
	// about the FHIR Bundle of one result
	payload := fmt.Appendf(nil, `{"resourceType":"Bundle","type":"collection","entry":[{"fullUrl":"urn:uuid:%[1]s",`+
		`"resource":{"resourceType":"Patient","id":"%[1]s","identifier":[{"system":"urn:oid:2.16.840.1.113883.3.72","value":"555001"}],`+
		`"name":[{"family":"Example","given":["Pat"]}],"gender":"male","birthDate":"1970-03-01"}},{"fullUrl":"urn:uuid:%[2]s",`+
		`"resource":{"resourceType":"Observation","id":"%[2]s","status":"final","category":[{"coding":[{"system":`+
		`"http://terminology.hl7.org/CodeSystem/observation-category","code":"laboratory","display":"Laboratory"}]}],`+
		`"code":{"coding":[{"system":"http://loinc.org","code":"2345-7","display":"Glucose"}]},"subject":{"reference":"Patient/%[1]s"},`+
		`"effectiveDateTime":"2024-01-11T08:00:00-05:00","valueQuantity":{"value":95.3,"unit":"mg/dL","system":"http://unitsofmeasure.org","code":"mg/dL"},`+
		`"referenceRange":[{"text":"70-99"}]}},{"fullUrl":"urn:uuid:%[3]s","resource":{"resourceType":"Provenance","id":"%[3]s",`+
		`"target":[{"reference":"Observation/%[2]s"}],"recorded":"2024-01-11T10:15:00Z","agent":[{"who":{"display":"GHH LAB"}}]}}]}`,
		"0f8fad5b-d9cb-469f-a165-70867728950e", "7c9e6679-7425-40de-944b-e07fc1f90ae7", "16fd2706-8baf-433b-82eb-8c7fada847da")
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

package store

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"time"
)

// reportCPU adds the process's CPU time (user + system) per operation to the
// benchmark's output. On a shared machine the wall time of a durable commit
// is mostly the disk's fsync queue; the CPU time is what a change to the
// commit path itself moves.
func reportCPU(b *testing.B) func() {
	b.Helper()
	start := cpuTime()
	return func() {
		if b.N > 0 {
			b.ReportMetric(float64((cpuTime()-start).Microseconds())/float64(b.N), "cpu-µs/op")
		}
	}
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkInsertEnvelope commits one envelope per transaction, durably:
// the cost of acknowledging one MLLP message on a single connection.
func BenchmarkInsertEnvelope(b *testing.B) {
	db, err := Open(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw := make([]byte, 450)
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i++ {
		e := &Envelope{ID: fmt.Sprint("e", i), Channel: "mllp", Sender: "S", ReceivedAt: time.Now(), Kind: "hl7v2",
			ControlID: fmt.Sprint(i), DedupKey: fmt.Sprint("msh10:", i), SHA256: "x", Status: "received", Raw: raw, ACK: raw[:200]}
		if _, err := db.InsertEnvelopes(context.Background(), []*Envelope{e}); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkInsertEnvelopesGrouped commits 64 envelopes per transaction: the
// cost per message when eight busy connections share each commit.
func BenchmarkInsertEnvelopesGrouped(b *testing.B) {
	db, err := Open(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw := make([]byte, 450)
	var mu sync.Mutex
	n := 0
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i += 64 {
		batch := make([]*Envelope, 0, 64)
		mu.Lock()
		for j := 0; j < 64; j++ {
			n++
			batch = append(batch, &Envelope{ID: fmt.Sprint("e", n), Channel: "mllp", Sender: "S", ReceivedAt: time.Now(), Kind: "hl7v2",
				ControlID: fmt.Sprint(n), DedupKey: fmt.Sprint("msh10:", n), SHA256: "x", Status: "received", Raw: raw, ACK: raw[:200]})
		}
		mu.Unlock()
		if _, err := db.InsertEnvelopes(context.Background(), batch); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkIngest copies envelopes from the journal into the message log in
// groups of 64, as the embedded store's copier does after the ACKs went
// out (no fsync): the CPU every received message costs besides its commit.
// Envelopes are the shape of the sample ADT^A01 (1.6 KB raw, a 200-byte
// ACK, uuid ids).
func BenchmarkIngest(b *testing.B) {
	db, err := Open(context.Background(), Options{DataDir: b.TempDir()})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	raw := make([]byte, 1600)
	for i := range raw {
		raw[i] = 'a' + byte(i%26)
	}
	batch := make([]journaled, 64)
	b.ResetTimer()
	defer reportCPU(b)()
	for i := 0; i < b.N; i += len(batch) {
		for k := range batch {
			n := i + k
			batch[k] = journaled{env: &Envelope{ID: fmt.Sprintf("0193a5c2-7e1f-7%03x-8000-%012x", n%4096, n), Channel: "mllp",
				Sender: "NORTHLAB", Peer: "127.0.0.1:40000", ReceivedAt: time.Now(), Kind: "hl7v2", MessageType: "ADT^A01",
				ControlID: fmt.Sprint("MSG", n), DedupKey: fmt.Sprint("msh10:MSG", n), SHA256: fmt.Sprintf("%064x", n),
				Status: "received", Raw: raw, ACK: raw[:200]}}
		}
		if err := db.ingest(context.Background(), batch, false); err != nil {
			b.Fatal(err)
		}
	}
}

package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/twmb/franz-go/pkg/kfake"
)

// TestKafkaTLSAndSCRAM publishes through a Kafka-protocol broker that
// requires TLS and SASL SCRAM-SHA-512, with the settings wired from the
// configuration; a wrong password publishes nothing.
func TestKafkaTLSAndSCRAM(t *testing.T) {
	ca := testcert.NewCA(t, "kafka test CA")
	srv := ca.Server(t, "kafka")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "hie.events"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{srv.TLS}, MinVersion: tls.VersionTLS12}),
		kfake.EnableSASL(), kfake.Superuser("SCRAM-SHA-512", "hiegw", "right-password"))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	caFile := ca.WriteFile(t, t.TempDir(), "ca")

	run := func(password string) (pending, sent int64) {
		c := testConfig(t, t.TempDir(), "")
		c.Kafka.Brokers = cluster.ListenAddrs()
		c.Kafka.TLS = config.TLS{CA: caFile}
		c.Kafka.SASL.Mechanism, c.Kafka.SASL.User, c.Kafka.SASL.Password = "SCRAM-SHA-512", "hiegw", password
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer r.shutdown(t)
		if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
			t.Fatalf("ACK %q", ack.Raw())
		}
		for i := 0; i < 200; i++ {
			st, err := r.g.DB().OutboxCounts(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if len(st) == 1 {
				pending, sent = st[0].Pending, st[0].Sent
				if sent == 1 || (password != "right-password" && r.g.relay.LastError() != nil) {
					return pending, sent
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		return pending, sent
	}
	if pending, sent := run("right-password"); sent != 1 || pending != 0 {
		t.Fatalf("with the right password: pending %d sent %d", pending, sent)
	}
	if pending, sent := run("wrong-password"); sent != 0 || pending != 1 {
		t.Fatalf("with a wrong password: pending %d sent %d", pending, sent)
	}
}

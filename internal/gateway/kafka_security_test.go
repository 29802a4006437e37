package gateway

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/twmb/franz-go/pkg/kfake"
)

// publishOverTLS starts a gateway publishing to brokers over TLS verified
// with caFile (mod, when set, changes its configuration further) and sends
// it an ORU^R01, accepted.
func publishOverTLS(t *testing.T, brokers []string, caFile string, mod func(*config.Config)) *running {
	t.Helper()
	c := testConfig(t, t.TempDir(), "")
	c.Kafka.Brokers = brokers
	c.Kafka.TLS = config.TLS{CA: caFile}
	if mod != nil {
		mod(c)
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
		r.shutdown(t)
		t.Fatalf("ACK %q", ack.Raw())
	}
	return r
}

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
		r := publishOverTLS(t, cluster.ListenAddrs(), caFile, func(c *config.Config) {
			c.Kafka.SASL.Mechanism, c.Kafka.SASL.User, c.Kafka.SASL.Password = "SCRAM-SHA-512", "hiegw", password
		})
		defer r.shutdown(t)
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

// TestKafkaCARotation: the brokers move to a certificate of a new
// authority; once the new CA is appended to kafka.tls.ca (as a CA rotation
// does before the brokers change), events are published again without a
// restart, and a CA file that does not load is refused with the
// authorities in force kept.
func TestKafkaCARotation(t *testing.T) {
	oldCA, newCA := testcert.NewCA(t, "kafka CA 2025"), testcert.NewCA(t, "kafka CA 2026")
	cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(1, "hie.events"),
		kfake.TLS(&tls.Config{Certificates: []tls.Certificate{newCA.Server(t, "kafka").TLS}, MinVersion: tls.VersionTLS12}))
	if err != nil {
		t.Fatal(err)
	}
	defer cluster.Close()
	caFile := filepath.Join(t.TempDir(), "kafka-ca.pem")
	if err := os.WriteFile(caFile, oldCA.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	r := publishOverTLS(t, cluster.ListenAddrs(), caFile, nil)
	defer r.shutdown(t)
	waitFor(t, "a publish refused for the broker's unknown authority", func() bool {
		err := r.g.relay.LastError()
		return err != nil && strings.Contains(err.Error(), "unknown authority")
	})

	// Half written: no certificate in it; refused, the old CA stays.
	if err := os.WriteFile(caFile, []byte("-----BEGIN CERT"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = r.g.Reload()
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "tls.reload" && e.Target == "kafka" && strings.HasPrefix(e.Outcome, "refused")
	})
	refused := r.g.reloadRefused.WithLabelValues("tls kafka ca")
	if v := testutil.ToFloat64(refused); v != 1 {
		t.Fatalf("hiegw_reload_refused{what=tls kafka ca} %v after a refused file, want 1", v)
	}

	if err := os.WriteFile(caFile, append(append([]byte{}, oldCA.PEM...), newCA.PEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = r.g.Reload()
	waitFor(t, "the event published after the new CA was added", func() bool {
		st, err := r.g.DB().OutboxCounts(context.Background())
		return err == nil && len(st) == 1 && st[0].Sent == 1 && st[0].Pending == 0
	})
	if v := testutil.ToFloat64(refused); v != 0 {
		t.Fatalf("hiegw_reload_refused{what=tls kafka ca} %v once the file loaded, want 0", v)
	}
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestDefaults(t *testing.T) {
	c, err := Load(nil, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.MLLP.Addr != "127.0.0.1:2575" || c.HTTP.Addr != "127.0.0.1:8080" || c.Broker.Addr != "127.0.0.1:9092" || c.DataDir != "data" {
		t.Fatalf("defaults: %+v", c)
	}
}

func TestPrecedenceFileEnvFlag(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hiegw.yaml")
	os.WriteFile(f, []byte("mllp:\n  addr: 127.0.0.1:1001\nhttp:\n  addr: 127.0.0.1:1002\ndata_dir: /tmp/x\n"), 0o600)
	c, err := Load([]string{"--config", f, "--http-addr", "127.0.0.1:3002"},
		env(map[string]string{"HIEGW_MLLP_ADDR": "127.0.0.1:2001", "HIEGW_HTTP_ADDR": "127.0.0.1:2002"}), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.MLLP.Addr != "127.0.0.1:2001" || c.HTTP.Addr != "127.0.0.1:3002" || c.DataDir != "/tmp/x" {
		t.Fatalf("precedence: mllp %s http %s data %s", c.MLLP.Addr, c.HTTP.Addr, c.DataDir)
	}
}

func TestUnknownKeyAndBadValues(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "bad.yaml")
	os.WriteFile(f, []byte("mllp:\n  adr: x\n"), 0o600)
	_, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "adr") || !strings.Contains(err.Error(), "line 2") {
		t.Fatalf("unknown key: %v", err)
	}
	_, err = Load([]string{"--mllp-addr", "nope", "--log-level", "loud"}, env(map[string]string{"HIEGW_KAFKA_BROKERS": "a:b"}), os.Stderr)
	for _, want := range []string{"mllp.addr", "log.level", "kafka.brokers[0]"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("want %q in %v", want, err)
		}
	}
}

func TestTLSMustBeUsable(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "tls.yaml")
	os.WriteFile(f, []byte("mllp:\n  tls:\n    cert: /nonexistent/cert.pem\n"), 0o600)
	_, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err == nil || !strings.Contains(err.Error(), "mllp.tls") {
		t.Fatalf("tls: %v", err)
	}
}

func TestPlainPasswordRefusedAndRedaction(t *testing.T) {
	c := Default()
	c.SFTP.Accounts = []SFTPAccount{{Name: "emr", PasswordHash: "secret"}}
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "sftp.accounts[0].password_hash") {
		t.Fatalf("plain password accepted: %v", err)
	}
	c.Store.PostgresDSN = "postgres://hie:s3cret@db:5432/hie"
	c.Kafka.SASL.Password = "p"
	r := c.Redacted()
	if strings.Contains(r.Store.PostgresDSN, "s3cret") || r.Kafka.SASL.Password != "REDACTED" || r.SFTP.Accounts[0].PasswordHash != "REDACTED" {
		t.Fatalf("not redacted: %+v", r)
	}
	if c.SFTP.Accounts[0].PasswordHash != "secret" {
		t.Fatal("redaction changed the original")
	}
	if got := redactDSN("host=db password=x user=u"); got != "host=db password=REDACTED user=u" {
		t.Fatal(got)
	}
}

func TestLeaseTTL(t *testing.T) {
	c := Default()
	if time.Duration(c.Pipeline.LeaseTTL) != 15*time.Second {
		t.Fatalf("default pipeline.lease_ttl %s", c.Pipeline.LeaseTTL)
	}
	for ttl, ok := range map[time.Duration]bool{0: true, time.Second: true, 10 * time.Minute: true,
		500 * time.Millisecond: false, time.Hour: false} {
		c.Pipeline.LeaseTTL = Duration(ttl)
		err := c.Validate()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "pipeline.lease_ttl") {
			t.Errorf("pipeline.lease_ttl %s: %v", ttl, err)
		}
	}
}

// Both retentions are 0 (keep) or at least an hour, and named when wrong.
func TestRetentions(t *testing.T) {
	for ret, ok := range map[time.Duration]bool{0: true, time.Hour: true, 30 * 24 * time.Hour: true,
		time.Minute: false, -time.Hour: false} {
		c := Default()
		c.Store.RawRetention, c.Store.OutboxRetention = Duration(ret), 0
		if err := c.Validate(); ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "store.raw_retention") {
			t.Errorf("store.raw_retention %s: %v", ret, err)
		}
		c.Store.RawRetention, c.Store.OutboxRetention = 0, Duration(ret)
		if err := c.Validate(); ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "store.outbox_retention") {
			t.Errorf("store.outbox_retention %s: %v", ret, err)
		}
	}
}

// Connection bounds: none negative, the per-address one within the total.
func TestMLLPConnectionBounds(t *testing.T) {
	for _, c := range []struct {
		total, perAddr int
		bad            string
	}{
		{256, 0, ""}, {256, 16, ""}, {0, 16, ""}, {256, 256, ""},
		{256, 300, "mllp.max_connections_per_address"}, {256, -1, "mllp.max_connections_per_address"},
		{-1, 0, "mllp.max_connections"},
	} {
		cfg := Default()
		cfg.MLLP.MaxConnections, cfg.MLLP.MaxConnectionsPerAddress = c.total, c.perAddr
		err := cfg.Validate()
		if c.bad == "" && err != nil || c.bad != "" && (err == nil || !strings.Contains(err.Error(), c.bad)) {
			t.Errorf("max_connections %d, per address %d: %v", c.total, c.perAddr, err)
		}
	}
}

func TestKafkaCompression(t *testing.T) {
	c := Default()
	if c.Kafka.Compression != "snappy" {
		t.Fatalf("default kafka.compression %q", c.Kafka.Compression)
	}
	for codec, ok := range map[string]bool{"none": true, "gzip": true, "snappy": true, "lz4": true, "zstd": true,
		"": false, "brotli": false, "Snappy": false} {
		c.Kafka.Compression = codec
		err := c.Validate()
		if ok != (err == nil) || err != nil && !strings.Contains(err.Error(), "kafka.compression") {
			t.Errorf("kafka.compression %q: %v", codec, err)
		}
	}
}

func TestSASLPasswordFromEnvironment(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "kafka.yaml")
	os.WriteFile(f, []byte("kafka:\n  brokers: [\"k1:9092\"]\n  sasl:\n    mechanism: SCRAM-SHA-512\n    user: hiegw\n"), 0o600)
	if _, err := Load([]string{"--config", f}, env(nil), os.Stderr); err == nil || !strings.Contains(err.Error(), "kafka.sasl") {
		t.Fatalf("a SASL user without a password: %v", err)
	}
	c, err := Load([]string{"--config", f}, env(map[string]string{"HIEGW_KAFKA_SASL_PASSWORD": "s3cret"}), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.Kafka.SASL.Password != "s3cret" || c.Redacted().Kafka.SASL.Password == "s3cret" {
		t.Fatalf("password %q", c.Kafka.SASL.Password)
	}
}

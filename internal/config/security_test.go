package config

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func hashOf(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// files writes placeholder PEM files so that path checks pass; their content
// is checked when the gateway loads them, not here.
func files(t *testing.T) (cert, key, ca string) {
	dir := t.TempDir()
	for _, n := range []string{"cert.pem", "key.pem", "ca.pem"} {
		if err := os.WriteFile(filepath.Join(dir, n), []byte("x"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem"), filepath.Join(dir, "ca.pem")
}

// TestInsecureCombinationsRefused checks every combination Validate must
// refuse, one at a time, each named by its setting.
func TestInsecureCombinationsRefused(t *testing.T) {
	cert, key, ca := files(t)
	cases := []struct {
		name, want string
		edit       func(c *Config)
	}{
		{"client_ca without TLS", "mllp.tls: client_ca needs cert and key", func(c *Config) { c.MLLP.TLS.ClientCA = ca }},
		{"http client_ca without TLS", "http.tls: client_ca needs cert and key", func(c *Config) { c.HTTP.TLS.ClientCA = ca }},
		{"server TLS without a certificate", "mllp.tls: TLS settings need cert and key", func(c *Config) { c.MLLP.TLS = TLS{MinVersion: "1.3"} }},
		{"server CA only", "http.tls: TLS settings need cert and key", func(c *Config) { c.HTTP.TLS = TLS{CA: ca} }},
		{"TLS 1.0", "mllp.tls.min_version", func(c *Config) { c.MLLP.TLS = TLS{Cert: cert, Key: key, MinVersion: "1.0"} }},
		{"TLS 1.1 on HTTP", "http.tls.min_version", func(c *Config) { c.HTTP.TLS = TLS{Cert: cert, Key: key, MinVersion: "1.1"} }},
		{"plain SFTP password", "sftp.accounts[0].password_hash", func(c *Config) {
			c.SFTP.Accounts = []SFTPAccount{{Name: "emr", PasswordHash: "hunter2"}}
		}},
		{"API without tokens on every interface", "http.tokens: none configured", func(c *Config) { c.HTTP.Addr = ":8080" }},
		{"API without tokens on a LAN address", "http.tokens: none configured", func(c *Config) { c.HTTP.Addr = "10.1.2.3:8080" }},
		{"plain token instead of hash", "http.tokens[0].hash", func(c *Config) {
			c.HTTP.Tokens = []APIToken{{Name: "ops", Hash: "my-secret-token", Role: RoleOperator}}
		}},
		{"unknown role", "http.tokens[0].role", func(c *Config) {
			c.HTTP.Tokens = []APIToken{{Name: "ops", Hash: hashOf("a"), Role: "admin"}}
		}},
		{"same token twice", "http.tokens[1].hash", func(c *Config) {
			c.HTTP.Tokens = []APIToken{{Name: "a", Hash: hashOf("a"), Role: RoleOperator}, {Name: "b", Hash: hashOf("a"), Role: RoleReadOnly}}
		}},
		{"reserved token name", "http.tokens[0].name", func(c *Config) {
			c.HTTP.Tokens = []APIToken{{Name: "unknown", Hash: hashOf("a"), Role: RoleOperator}}
		}},
		{"senders without client_ca", "mllp.senders: are recognised by client certificate", func(c *Config) {
			c.MLLP.Senders = []MLLPSender{{Name: "lab", CertCN: "lab.example"}}
		}},
		{"sender without identity", "mllp.senders[0]: needs cert_cn or cert_sha256", func(c *Config) {
			c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
			c.MLLP.Senders = []MLLPSender{{Name: "lab"}}
		}},
		{"bad fingerprint", "mllp.senders[0].cert_sha256", func(c *Config) {
			c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
			c.MLLP.Senders = []MLLPSender{{Name: "lab", CertSHA256: "abc"}}
		}},
		{"two senders, one CN", "mllp.senders[1].cert_cn", func(c *Config) {
			c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
			c.MLLP.Senders = []MLLPSender{{Name: "a", CertCN: "x"}, {Name: "b", CertCN: "x"}}
		}},
		{"DSN without sslmode", "store.postgres_dsn: must set sslmode", func(c *Config) { c.Store.PostgresDSN = "postgres://hie@db/hie" }},
		{"DSN with unknown sslmode", "store.postgres_dsn: sslmode", func(c *Config) { c.Store.PostgresDSN = "host=db sslmode=maybe" }},
		{"Kafka SASL on the embedded broker", "kafka.tls/kafka.sasl", func(c *Config) {
			c.Kafka.SASL.User, c.Kafka.SASL.Password = "u", "p"
		}},
		{"Kafka password without user", "kafka.sasl.user", func(c *Config) {
			c.Kafka.Brokers = []string{"kafka:9093"}
			c.Kafka.SASL.Password = "p"
		}},
		{"Kafka client_ca", "kafka.tls.client_ca", func(c *Config) {
			c.Kafka.Brokers = []string{"kafka:9093"}
			c.Kafka.TLS = TLS{CA: ca, ClientCA: ca}
		}},
		{"Kafka TLS 1.1", "kafka.tls.min_version", func(c *Config) {
			c.Kafka.Brokers = []string{"kafka:9093"}
			c.Kafka.TLS = TLS{CA: ca, MinVersion: "1.1"}
		}},
		{"profiles on every interface", "debug.pprof_addr: \":6060\" is not a loopback address", func(c *Config) { c.Debug.PprofAddr = ":6060" }},
		{"profiles on a LAN address", "debug.pprof_addr: \"10.1.2.3:6060\" is not a loopback address", func(c *Config) { c.Debug.PprofAddr = "10.1.2.3:6060" }},
		{"negative gathering delay", "intake.gather_delay: -1ms must be between", func(c *Config) { c.Intake.GatherDelay = Duration(-time.Millisecond) }},
		{"long gathering delay", "intake.gather_delay: 50ms must be between", func(c *Config) { c.Intake.GatherDelay = Duration(50 * time.Millisecond) }},
		{"profiles without a port", "debug.pprof_addr: \"localhost\" is not host:port", func(c *Config) { c.Debug.PprofAddr = "localhost" }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.edit(c)
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestSecureCombinationsAccepted(t *testing.T) {
	cert, key, ca := files(t)
	c := Default()
	c.HTTP.Addr = "0.0.0.0:8443"
	c.HTTP.TLS = TLS{Cert: cert, Key: key, MinVersion: "1.3"}
	c.HTTP.Tokens = []APIToken{{Name: "ops", Hash: hashOf("t1"), Role: RoleOperator},
		{Name: "ana", Hash: strings.ToUpper(hashOf("t2")[7:]), Role: RoleAnalyst}}
	c.HTTP.Tokens[1].Hash = "sha256:" + c.HTTP.Tokens[1].Hash
	c.MLLP.Addr = "0.0.0.0:2575"
	c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
	fp := strings.Repeat("ab:", 31) + "ab"
	c.MLLP.Senders = []MLLPSender{{Name: "lab", CertCN: "lab.example", Facilities: []string{"LAB"}}, {Name: "adt", CertSHA256: fp}}
	c.Kafka.Brokers = []string{"kafka-1:9093"}
	c.Kafka.TLS = TLS{CA: ca}
	c.Kafka.SASL.Mechanism, c.Kafka.SASL.User, c.Kafka.SASL.Password = "SCRAM-SHA-512", "hiegw", "pw"
	c.Store.PostgresDSN = "postgres://hie@db.example/hie?sslmode=verify-full"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := c.Warnings(); len(w) != 0 {
		t.Fatalf("warnings for a secure configuration: %q", w)
	}
	// Loopback without tokens is the laptop default.
	for _, a := range []string{"127.0.0.1:8080", "localhost:8080", "[::1]:8080"} {
		d := Default()
		d.HTTP.Addr = a
		if err := d.Validate(); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
}

func TestWarnings(t *testing.T) {
	c := Default()
	c.MLLP.Addr = "0.0.0.0:2575"
	c.Log.LogMessageBodies = true
	c.Kafka.Brokers = []string{"kafka:9092"}
	c.Store.PostgresDSN = "postgres://hie@db.example/hie?sslmode=disable"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	cert, key, ca := files(t)
	c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
	w := strings.Join(c.Warnings(), "\n")
	for _, want := range []string{"log_message_bodies", "client_ca without mllp.senders", "sslmode=disable", "kafka.brokers"} {
		if !strings.Contains(w, want) {
			t.Errorf("no warning about %s in:\n%s", want, w)
		}
	}
	// A local socket with sslmode=disable is not worth a warning.
	c.MLLP.TLS = TLS{}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "mllp.addr is not a loopback address and has neither TLS nor an allow-list") {
		t.Errorf("no warning about plain MLLP on every interface:\n%s", w)
	}
	d := Default()
	d.Store.PostgresDSN = "host=/var/run/postgresql dbname=hie sslmode=disable"
	if w := d.Warnings(); len(w) != 0 {
		t.Fatalf("local socket: %q", w)
	}
}

func TestTokensFromFile(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "hiegw.yaml")
	yaml := "http:\n  addr: 0.0.0.0:8080\n  tokens:\n    - name: oncall\n      hash: " + hashOf("s3cret") + "\n      role: operator\n"
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.HTTP.Tokens) != 1 || c.HTTP.Tokens[0].Role != RoleOperator {
		t.Fatalf("tokens: %+v", c.HTTP.Tokens)
	}
	if h, ok := TokenHash(c.HTTP.Tokens[0].Hash); !ok || "sha256:"+h != hashOf("s3cret") {
		t.Fatalf("hash %q", h)
	}
}

// TestShippedExampleLoads keeps the example configuration valid against the
// settings and checks defined here.
func TestShippedExampleLoads(t *testing.T) {
	f := filepath.Join("..", "..", "deployments", "hiegw.example.yaml")
	if _, err := os.Stat(f); err != nil {
		t.Skip("deployments/hiegw.example.yaml is absent")
	}
	c, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, tok := range c.HTTP.Tokens {
		if _, ok := TokenHash(tok.Hash); !ok {
			t.Errorf("token %s: hash not accepted", tok.Name)
		}
	}
}

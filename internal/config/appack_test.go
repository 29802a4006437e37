package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// mtls is a configuration with mutual TLS on MLLP and one sender.
func mtls(t *testing.T, s MLLPSender) *Config {
	cert, key, ca := files(t)
	c := Default()
	c.MLLP.TLS = TLS{Cert: cert, Key: key, ClientCA: ca}
	if s.Name == "" {
		s.Name = "lab"
	}
	if s.CertCN == "" {
		s.CertCN = "lab.example"
	}
	c.MLLP.Senders = []MLLPSender{s}
	return c
}

// TestAckAddrValidation: every way to get a sender's return address wrong is
// refused and named by its path.
func TestAckAddrValidation(t *testing.T) {
	_, _, ca := files(t)
	cases := []struct {
		name, want string
		s          MLLPSender
	}{
		{"no port", "mllp.senders[0].ack_addr: \"lab.example\" is not host:port", MLLPSender{AckAddr: "lab.example"}},
		{"bad port", "mllp.senders[0].ack_addr: \"lab.example:70000\" has no valid port", MLLPSender{AckAddr: "lab.example:70000"}},
		{"no host", "mllp.senders[0].ack_addr: \":2576\" must name a host and a port", MLLPSender{AckAddr: ":2576"}},
		{"port zero", "mllp.senders[0].ack_addr: \"lab.example:0\" must name a host and a port", MLLPSender{AckAddr: "lab.example:0"}},
		{"TLS without address", "mllp.senders[0].ack_tls: applies to ack_addr", MLLPSender{AckTLS: TLS{CA: ca}}},
		{"client_ca on a client", "mllp.senders[0].ack_tls.client_ca: is for servers", MLLPSender{AckAddr: "lab.example:2576",
			AckTLS: TLS{ClientCA: ca}}},
		{"cert without key", "mllp.senders[0].ack_tls: cert and key must be given together", MLLPSender{AckAddr: "lab.example:2576",
			AckTLS: TLS{Cert: ca}}},
		{"TLS 1.1", "mllp.senders[0].ack_tls.min_version", MLLPSender{AckAddr: "lab.example:2576", AckTLS: TLS{MinVersion: "1.1"}}},
		{"missing CA file", "mllp.senders[0].ack_tls.ca", MLLPSender{AckAddr: "lab.example:2576",
			AckTLS: TLS{CA: filepath.Join(t.TempDir(), "absent.pem")}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := mtls(t, tc.s).Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestAckAddrAcceptedAndWarned(t *testing.T) {
	cert, key, ca := files(t)
	c := mtls(t, MLLPSender{AckAddr: "lab.example:2576", AckTLS: TLS{CA: ca, Cert: cert, Key: key, MinVersion: "1.3"}})
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "ack_addr") {
		t.Fatalf("warning for a TLS return address: %s", w)
	}
	c.MLLP.Senders[0].AckTLS = TLS{}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); !strings.Contains(w, "mllp.senders lab: application acknowledgements go to ack_addr without TLS") {
		t.Fatalf("no warning for a plain return address across the network:\n%s", w)
	}
	c.MLLP.Senders[0].AckAddr = "127.0.0.1:2576"
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "ack_addr") {
		t.Fatalf("warning for a loopback return address: %s", w)
	}
}

func TestAckAddrFromFile(t *testing.T) {
	cert, key, ca := files(t)
	f := filepath.Join(t.TempDir(), "hiegw.yaml")
	yaml := "mllp:\n  tls:\n    cert: " + cert + "\n    key: " + key + "\n    client_ca: " + ca + "\n" +
		"  senders:\n    - name: lab\n      cert_cn: lab.example\n      ack_addr: lab.example:2576\n      ack_tls:\n        ca: " + ca + "\n"
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	s := c.MLLP.Senders[0]
	if s.AckAddr != "lab.example:2576" || s.AckTLS.CA != ca || !s.AckTLS.Enabled() {
		t.Fatalf("sender %+v", s)
	}
}

// TestAppAckDelivery: the delivery settings default to the documented
// values, are read from the file, and a nonsensical one is refused by name.
func TestAppAckDelivery(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatal(err)
	}
	if a := d.MLLP.AppAck; a.ReplyTimeout.String() != "30s" || a.MinBackoff.String() != "1s" || a.MaxBackoff.String() != "5m0s" {
		t.Fatalf("defaults %+v", a)
	}
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("mllp:\n  app_ack:\n    reply_timeout: 5s\n    min_backoff: 200ms\n    max_backoff: 1m\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", path}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if a := c.MLLP.AppAck; a.ReplyTimeout.String() != "5s" || a.MinBackoff.String() != "200ms" || a.MaxBackoff.String() != "1m0s" {
		t.Fatalf("from the file: %+v", a)
	}
	c.MLLP.AppAck.MaxBackoff = Duration(100 * 1e6)
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mllp.app_ack.max_backoff: 100ms is shorter than min_backoff 200ms") {
		t.Fatalf("max below min: %v", err)
	}
	c.MLLP.AppAck.ReplyTimeout = 0
	if err := c.Validate(); err == nil || !strings.Contains(err.Error(), "mllp.app_ack: reply_timeout, min_backoff and max_backoff must be positive") {
		t.Fatalf("zero timeout: %v", err)
	}
}

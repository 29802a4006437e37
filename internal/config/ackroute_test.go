package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestAckRoutesValidation: every way to get a plain-TCP sender's return
// address wrong is refused and named by its path.
func TestAckRoutesValidation(t *testing.T) {
	cert, _, ca := files(t)
	route := func(facility, addr string) AckRoute { return AckRoute{Facility: facility, Addr: addr} }
	cases := []struct {
		name, want string
		routes     []AckRoute
		edit       func(c *Config)
	}{
		{"no facility", "mllp.ack_routes[0].facility: is required", []AckRoute{route("", "cityhosp.example:6661")}, nil},
		{"blank facility", "mllp.ack_routes[0].facility: is required", []AckRoute{route("  ", "cityhosp.example:6661")}, nil},
		{"padded facility", "mllp.ack_routes[0].facility: \" CITYHOSP\" has leading or trailing spaces",
			[]AckRoute{route(" CITYHOSP", "cityhosp.example:6661")}, nil},
		{"duplicate facility", "mllp.ack_routes[2].facility: \"CITYHOSP\" is given twice (also mllp.ack_routes[0])",
			[]AckRoute{route("CITYHOSP", "a.example:6661"), route("NORTHLAB", "b.example:6661"), route("CITYHOSP", "c.example:6661")}, nil},
		{"no address", "mllp.ack_routes[0].addr: is required", []AckRoute{route("CITYHOSP", "")}, nil},
		{"no port", "mllp.ack_routes[0].addr: \"cityhosp.example\" is not host:port", []AckRoute{route("CITYHOSP", "cityhosp.example")}, nil},
		{"bad port", "mllp.ack_routes[0].addr: \"cityhosp.example:99999\" has no valid port",
			[]AckRoute{route("CITYHOSP", "cityhosp.example:99999")}, nil},
		{"no host", "mllp.ack_routes[0].addr: \":6661\" must name a host and a port", []AckRoute{route("CITYHOSP", ":6661")}, nil},
		{"port zero", "mllp.ack_routes[0].addr: \"cityhosp.example:0\" must name a host and a port",
			[]AckRoute{route("CITYHOSP", "cityhosp.example:0")}, nil},
		{"client_ca on a client", "mllp.ack_routes[0].tls.client_ca: is for servers",
			[]AckRoute{{Facility: "CITYHOSP", Addr: "cityhosp.example:6661", TLS: TLS{ClientCA: ca}}}, nil},
		{"cert without key", "mllp.ack_routes[0].tls: cert and key must be given together",
			[]AckRoute{{Facility: "CITYHOSP", Addr: "cityhosp.example:6661", TLS: TLS{Cert: cert}}}, nil},
		{"TLS 1.1", "mllp.ack_routes[0].tls.min_version",
			[]AckRoute{{Facility: "CITYHOSP", Addr: "cityhosp.example:6661", TLS: TLS{MinVersion: "1.1"}}}, nil},
		{"missing CA file", "mllp.ack_routes[0].tls.ca",
			[]AckRoute{{Facility: "CITYHOSP", Addr: "cityhosp.example:6661", TLS: TLS{CA: filepath.Join(t.TempDir(), "absent.pem")}}}, nil},
		{"a certificate sender's name", "mllp.ack_routes[0].facility: \"lab\" is also the name of a sender in mllp.senders",
			[]AckRoute{route("lab", "lab.example:6661")}, func(c *Config) { *c = *mtls(t, MLLPSender{}) }},
		{"beside certificate senders", "mllp.ack_routes: unused while mllp.senders is set",
			[]AckRoute{route("CITYHOSP", "cityhosp.example:6661")}, func(c *Config) { *c = *mtls(t, MLLPSender{}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			if tc.edit != nil {
				tc.edit(c)
			}
			c.MLLP.AckRoutes = tc.routes
			err := c.Validate()
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("want an error containing %q, got %v", tc.want, err)
			}
		})
	}
}

func TestAckRoutesAcceptedAndWarned(t *testing.T) {
	cert, key, ca := files(t)
	c := Default()
	c.MLLP.AckRoutes = []AckRoute{
		{Facility: "CITYHOSP", Addr: "cityhosp.example:6661", TLS: TLS{CA: ca, Cert: cert, Key: key, MinVersion: "1.3"}},
		{Facility: "NORTHLAB", Addr: "127.0.0.1:6662"},
		{Facility: "cityhosp", Addr: "[::1]:6663"}, // sender names are compared exactly, as MSH-4 is
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if w := strings.Join(c.Warnings(), "\n"); strings.Contains(w, "ack_routes") {
		t.Fatalf("warning for TLS or loopback return addresses: %s", w)
	}
	c.MLLP.AckRoutes[0].TLS = TLS{}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	w := strings.Join(c.Warnings(), "\n")
	if !strings.Contains(w, "mllp.ack_routes CITYHOSP: application acknowledgements go to addr without TLS") {
		t.Fatalf("no warning for a plain return address across the network:\n%s", w)
	}
	if strings.Contains(w, "NORTHLAB") || strings.Contains(w, "mllp.ack_routes cityhosp") {
		t.Fatalf("warning for a loopback return address:\n%s", w)
	}
}

func TestAckRoutesFromFile(t *testing.T) {
	_, _, ca := files(t)
	f := filepath.Join(t.TempDir(), "hiegw.yaml")
	yaml := "mllp:\n  ack_routes:\n    - facility: CITYHOSP\n      addr: cityhosp.example:6661\n      tls:\n        ca: " + ca +
		"\n    - facility: NORTHLAB\n      addr: 127.0.0.1:6662\n"
	if err := os.WriteFile(f, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	rs := c.MLLP.AckRoutes
	if len(rs) != 2 || rs[0].Facility != "CITYHOSP" || rs[0].Addr != "cityhosp.example:6661" || rs[0].TLS.CA != ca ||
		!rs[0].TLS.Enabled() || rs[1].Facility != "NORTHLAB" || rs[1].TLS.Enabled() {
		t.Fatalf("ack routes %+v", rs)
	}
	// A misspelt key is an error naming it, like every other.
	if err := os.WriteFile(f, []byte("mllp:\n  ack_routes:\n    - facilty: CITYHOSP\n      addr: cityhosp.example:6661\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load([]string{"--config", f}, env(nil), os.Stderr); err == nil || !strings.Contains(err.Error(), "facilty") {
		t.Fatalf("misspelt key: %v", err)
	}
}

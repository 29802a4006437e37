package config

import (
	"encoding/hex"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
)

// validateSecurity checks the settings that decide who may connect and how:
// MLLP senders, API tokens, the PostgreSQL sslmode. It refuses combinations
// that would expose protected health information.
func (c *Config) validateSecurity(bad func(path, format string, args ...any)) {
	names, cns, prints := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for i, s := range c.MLLP.Senders {
		p := fmt.Sprintf("mllp.senders[%d]", i)
		switch {
		case s.Name == "":
			bad(p+".name", "is required")
		case names[s.Name]:
			bad(p+".name", "%q is given twice", s.Name)
		}
		names[s.Name] = true
		if s.CertCN == "" && s.CertSHA256 == "" {
			bad(p, "needs cert_cn or cert_sha256 to recognise the sender's client certificate")
		}
		if s.CertCN != "" && s.CertSHA256 == "" {
			if cns[s.CertCN] {
				bad(p+".cert_cn", "%q identifies two senders", s.CertCN)
			}
			cns[s.CertCN] = true
		}
		if s.CertSHA256 != "" {
			fp, ok := Fingerprint(s.CertSHA256)
			switch {
			case !ok:
				bad(p+".cert_sha256", "is not 64 hexadecimal digits (colons allowed)")
			case prints[fp]:
				bad(p+".cert_sha256", "identifies two senders")
			}
			prints[fp] = true
		}
		for j, f := range s.Facilities {
			if strings.TrimSpace(f) == "" {
				bad(fmt.Sprintf("%s.facilities[%d]", p, j), "is empty")
			}
		}
	}
	if len(c.MLLP.Senders) > 0 && c.MLLP.TLS.ClientCA == "" {
		bad("mllp.senders", "are recognised by client certificate: set mllp.tls.cert, key and client_ca")
	}

	tokNames, hashes := map[string]bool{}, map[string]bool{}
	for i, t := range c.HTTP.Tokens {
		p := fmt.Sprintf("http.tokens[%d]", i)
		switch {
		case t.Name == "":
			bad(p+".name", "is required")
		case t.Name == "unknown" || t.Name == "system" || t.Name == "anonymous":
			bad(p+".name", "%q is reserved for the audit log", t.Name)
		case tokNames[t.Name]:
			bad(p+".name", "%q is given twice", t.Name)
		}
		tokNames[t.Name] = true
		switch t.Role {
		case RoleOperator, RoleAnalyst, RoleReadOnly:
		default:
			bad(p+".role", "%q is not operator, analyst or read-only", t.Role)
		}
		h, ok := TokenHash(t.Hash)
		switch {
		case !ok:
			bad(p+".hash", "must be sha256: followed by 64 hexadecimal digits (the hash of the token, never the token)")
		case hashes[h]:
			bad(p+".hash", "is the same token as another entry")
		}
		hashes[h] = true
	}
	if len(c.HTTP.Tokens) == 0 && c.HTTP.Addr != "" && !IsLoopback(c.HTTP.Addr) {
		bad("http.tokens", "none configured while http.addr %q is not a loopback address: the API would serve patient data to anyone; add tokens or listen on 127.0.0.1", c.HTTP.Addr)
	}

	if dsn := c.Store.PostgresDSN; dsn != "" {
		mode, _ := dsnParam(dsn, "sslmode")
		switch mode {
		case "disable", "allow", "prefer", "require", "verify-ca", "verify-full":
		case "":
			bad("store.postgres_dsn", "must set sslmode (verify-full in production, disable only on a trusted local link)")
		default:
			bad("store.postgres_dsn", "sslmode %q is not disable, allow, prefer, require, verify-ca or verify-full", mode)
		}
	}
}

// Warnings lists settings that are allowed but weaken security; the gateway
// logs them at start-up.
func (c *Config) Warnings() []string {
	var w []string
	if c.Log.LogMessageBodies {
		w = append(w, "log.log_message_bodies is on: message bodies (protected health information) are logged at debug level")
	}
	if !c.MLLP.TLS.Enabled() && !IsLoopback(c.MLLP.Addr) {
		if len(c.MLLP.Allow) == 0 {
			w = append(w, "mllp.addr is not a loopback address and has neither TLS nor an allow-list: any host can send messages")
		} else {
			w = append(w, "mllp.addr is not a loopback address and has no TLS: messages cross the network in plain text")
		}
	}
	for _, s := range c.MLLP.Senders {
		if s.AckAddr != "" && !s.AckTLS.Enabled() && !IsLoopback(s.AckAddr) {
			w = append(w, fmt.Sprintf("mllp.senders %s: application acknowledgements go to ack_addr without TLS (set ack_tls)", s.Name))
		}
	}
	for _, r := range c.MLLP.AckRoutes {
		if r.Addr != "" && !r.TLS.Enabled() && !IsLoopback(r.Addr) {
			w = append(w, fmt.Sprintf("mllp.ack_routes %s: application acknowledgements go to addr without TLS (set tls)", r.Facility))
		}
	}
	if c.MLLP.TLS.ClientCA != "" && len(c.MLLP.Senders) == 0 {
		w = append(w, "mllp.tls.client_ca without mllp.senders: any certificate the CA signed may send as any facility")
	}
	if dsn := c.Store.PostgresDSN; dsn != "" {
		mode, host := dsnParam(dsn, "sslmode")
		local := host == "" || strings.HasPrefix(host, "/") || isLoopbackHost(host) // "" and /path: a Unix socket
		if (mode == "disable" || mode == "allow" || mode == "prefer") && !local {
			w = append(w, fmt.Sprintf("store.postgres_dsn: sslmode=%s to a host that is not loopback: the link may be unencrypted", mode))
		} else if mode == "require" {
			w = append(w, "store.postgres_dsn: sslmode=require encrypts but does not verify the server; prefer verify-full")
		}
	}
	if len(c.Kafka.Brokers) > 0 && !c.Kafka.TLS.Enabled() {
		for _, b := range c.Kafka.Brokers {
			if !IsLoopback(b) {
				w = append(w, "kafka.brokers are reached without TLS: events (protected health information) cross the network in plain text")
				break
			}
		}
	}
	return w
}

// IsLoopback tells whether a host:port address binds or points to the
// loopback interface only ("localhost", 127.0.0.0/8, ::1). An empty host
// (every interface) is not loopback.
func IsLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	return isLoopbackHost(host)
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.Unmap().IsLoopback()
}

// TokenHash checks a configured token hash ("sha256:HEX") and returns its
// lower-case hex digest.
func TokenHash(s string) (string, bool) {
	h, ok := strings.CutPrefix(s, "sha256:")
	if !ok || len(h) != 64 {
		return "", false
	}
	h = strings.ToLower(h)
	if _, err := hex.DecodeString(h); err != nil {
		return "", false
	}
	return h, true
}

// Fingerprint normalises a SHA-256 certificate fingerprint (hex, with or
// without colons, any case) to lower-case hex without colons.
func Fingerprint(s string) (string, bool) {
	h := strings.ToLower(strings.ReplaceAll(strings.TrimSpace(s), ":", ""))
	if len(h) != 64 {
		return "", false
	}
	if _, err := hex.DecodeString(h); err != nil {
		return "", false
	}
	return h, true
}

// dsnParam returns a parameter of a PostgreSQL DSN (URL or key=value form)
// and the DSN's host.
func dsnParam(dsn, key string) (value, host string) {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			return "", ""
		}
		host = u.Hostname()
		if h := u.Query().Get("host"); h != "" {
			host = h
		}
		return u.Query().Get(key), host
	}
	for _, kv := range strings.Fields(dsn) {
		k, v, _ := strings.Cut(kv, "=")
		v = strings.Trim(v, "'")
		switch k {
		case key:
			value = v
		case "host":
			host = v
		}
	}
	return value, host
}

package gateway

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// pki is a test certificate authority, a rogue one, and the server's files.
type pki struct {
	ca, rogue *testcert.CA
}

func (p *pki) client(t *testing.T, cn string, fromRogue bool) *tls.Config {
	issuer := p.ca
	if fromRogue {
		issuer = p.rogue
	}
	leaf := issuer.Client(t, cn)
	return &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1",
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }}
}

// secureConfig is a gateway with mutual TLS on MLLP (one sender, ADT feed of
// GOODHEALTH, recognised by its certificate's CN; one lab by fingerprint)
// and API tokens.
func secureConfig(t *testing.T) (*config.Config, *pki, map[string]string) {
	t.Helper()
	dir := t.TempDir()
	p := &pki{ca: testcert.NewCA(t, "hie test CA"), rogue: testcert.NewCA(t, "rogue CA")}
	c := testConfig(t, t.TempDir(), "")
	cert, key := p.ca.Server(t, "hiegw").WriteFiles(t, dir, "server")
	c.MLLP.TLS = config.TLS{Cert: cert, Key: key, ClientCA: p.ca.WriteFile(t, dir, "ca")}
	c.MLLP.Senders = []config.MLLPSender{
		{Name: "goodhealth-adt", CertCN: "adt.goodhealth.example", Facilities: []string{"GOODHEALTH"}},
		{Name: "citylab", CertCN: "lab.city.example", Facilities: []string{"CITYLAB"}},
	}
	toks := map[string]string{}
	for _, tr := range []struct{ name, role string }{{"oncall", config.RoleOperator}, {"dashboard", config.RoleReadOnly}} {
		tok, hash, err := api.NewToken()
		if err != nil {
			t.Fatal(err)
		}
		toks[tr.name] = tok
		c.HTTP.Tokens = append(c.HTTP.Tokens, config.APIToken{Name: tr.name, Hash: hash, Role: tr.role})
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c, p, toks
}

func startLogged(t *testing.T, c *config.Config, log *slog.Logger) *running {
	t.Helper()
	g, err := New(context.Background(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{g: g, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	return r
}

// sendTLS sends one message and returns the ACK, or the connection's error.
func sendTLS(addr string, tc *tls.Config, msg []byte) (*hl7.Message, error) {
	cl, err := mllp.Dial(context.Background(), addr, tc)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	cl.Timeout = 20 * time.Second
	reply, err := cl.Send(context.Background(), msg)
	if err != nil {
		return nil, err
	}
	return hl7.Parse(reply)
}

// waitAudit waits until an entry matching ok is in the audit log.
func waitAudit(t *testing.T, db *store.DB, ok func(store.AuditEntry) bool) store.AuditEntry {
	t.Helper()
	for i := 0; i < 400; i++ {
		es, err := db.AuditLog(context.Background(), 200)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range es {
			if ok(e) {
				return e
			}
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatal("audit entry not found")
	return store.AuditEntry{}
}

func apiGet(t *testing.T, url, tok string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest("GET", url, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// TestMLLPAccessRules: the trusted sender is identified by its certificate
// and its envelopes carry its name; a wrong facility is answered AR, stored
// as rejected and audited; an untrusted certificate, no certificate and an
// unregistered certificate are refused and audited.
func TestMLLPAccessRules(t *testing.T) {
	c, p, _ := secureConfig(t)
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	addr, db := r.g.MLLPAddr(), r.g.DB()

	adt := readFile(t, "adt_a01.hl7")
	ack, err := sendTLS(addr, p.client(t, "adt.goodhealth.example", false), adt)
	if err != nil || ack.Get("MSA-1") != "CA" {
		t.Fatalf("trusted sender: %v %v", ack, err)
	}
	envs, err := db.ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "ADT0001"})
	if err != nil || len(envs) != 1 || envs[0].Sender != "goodhealth-adt" {
		t.Fatalf("envelope sender: %+v %v", envs, err)
	}

	// The lab's certificate may not send as GOODHEALTH.
	ack, err = sendTLS(addr, p.client(t, "lab.city.example", false), bytes.Replace(adt, []byte("ADT0001"), []byte("ADT0002"), 1))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "CR" || !strings.Contains(string(ack.Raw()), "MSH^1^4") {
		t.Fatalf("wrong facility: %q", ack.Raw())
	}
	envs, _ = db.ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "ADT0002"})
	if len(envs) != 1 || envs[0].Status != "rejected" || envs[0].Sender != "citylab" {
		t.Fatalf("wrong-facility envelope: %+v", envs)
	}
	e := waitAudit(t, db, func(e store.AuditEntry) bool { return e.Action == "mllp.facility_denied" })
	if e.Actor != "citylab" || e.Target != envs[0].ID || e.Peer != "127.0.0.1" || !strings.HasPrefix(e.Outcome, "rejected") {
		t.Fatalf("facility audit %+v", e)
	}

	// Refused connections.
	if _, err := sendTLS(addr, p.client(t, "adt.goodhealth.example", true), adt); err == nil {
		t.Fatal("certificate from an untrusted CA accepted")
	}
	if _, err := sendTLS(addr, &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1"}, adt); err == nil {
		t.Fatal("connection without a client certificate accepted")
	}
	if _, err := sendTLS(addr, p.client(t, "stranger.example", false), adt); err == nil {
		t.Fatal("unregistered certificate accepted")
	}
	if _, err := sendTLS(addr, nil, adt); err == nil {
		t.Fatal("plain TCP accepted on a TLS listener")
	}
	for _, want := range []struct{ reason, cause string }{
		{"tls-handshake", "unknown authority"},
		{"tls-handshake", "didn't provide a certificate"},
		{"unknown-identity", "matches no configured sender"},
	} {
		e := waitAudit(t, db, func(e store.AuditEntry) bool {
			return e.Action == "mllp.connect" && e.Outcome == "refused: "+want.reason && strings.Contains(e.Detail, want.cause)
		})
		if e.Actor != "unknown" || e.Peer != "127.0.0.1" {
			t.Fatalf("refusal audit %+v", e)
		}
	}
	st := r.g.mllpSrv.Stats()
	if st.Refused < 4 {
		t.Fatalf("refused connections counted: %+v", st)
	}
}

func TestAllowListRefusalAudited(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	c.MLLP.Allow = []string{"192.0.2.0/24"}
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	if _, err := sendTLS(r.g.MLLPAddr(), nil, readFile(t, "oru_r01.hl7")); err == nil {
		t.Fatal("a peer outside the allow-list got an answer")
	}
	e := waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool { return e.Action == "mllp.connect" })
	if e.Outcome != "refused: allow-list" || e.Peer != "127.0.0.1" {
		t.Fatalf("audit %+v", e)
	}
	code, body := apiGet(t, "http://"+r.g.HTTPAddr()+"/metrics", "")
	if code != 200 || !strings.Contains(string(body), `hiegw_mllp_refused_connections_total{reason="allow-list"} 1`) {
		t.Fatalf("metrics: %d", code)
	}
}

// TestAPIAuthThroughGateway checks tokens end to end and the FHIR export of
// the audit log.
func TestAPIAuthThroughGateway(t *testing.T) {
	c, _, toks := secureConfig(t)
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	base := "http://" + r.g.HTTPAddr()
	if code, _ := apiGet(t, base+"/api/v1/messages", ""); code != 401 {
		t.Fatalf("no token: %d", code)
	}
	if code, _ := apiGet(t, base+"/api/v1/messages", "hiegw_wrong"); code != 401 {
		t.Fatalf("wrong token: %d", code)
	}
	if code, _ := apiGet(t, base+"/api/v1/messages", toks["dashboard"]); code != 200 {
		t.Fatalf("read-only GET: %d", code)
	}
	req, _ := http.NewRequest("POST", base+"/api/v1/messages/reprocess", strings.NewReader(`{"sender":"x"}`))
	req.Header.Set("Authorization", "Bearer "+toks["dashboard"])
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 403 {
		t.Fatalf("read-only POST: %d", resp.StatusCode)
	}
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if code, _ := apiGet(t, base+p, ""); code != 200 {
			t.Fatalf("%s: %d", p, code)
		}
	}
	code, body := apiGet(t, base+"/api/v1/audit?format=fhir", toks["oncall"])
	if code != 200 {
		t.Fatalf("export: %d %s", code, body)
	}
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string
				Outcome      string
				Agent        []struct{ Who struct{ Display string } }
				Subtype      []struct{ Code string }
			}
		}
	}
	if err := json.Unmarshal(body, &b); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "AuditEvent" {
			t.Fatalf("entry %+v", e)
		}
		seen[e.Resource.Subtype[0].Code+"/"+e.Resource.Agent[0].Who.Display+"/"+e.Resource.Outcome]++
	}
	if seen["api.authenticate/unknown/4"] != 2 || seen["api.authorize/dashboard/4"] != 1 {
		t.Fatalf("exported events: %v", seen)
	}
}

// TestNoPHIInLogs sends messages with a distinctive patient through every
// path (accepted, rejected, failing its mapping, wrong facility), reads the
// patient through the API, and checks that nothing of the patient or the
// message text reaches the log at info level.
func TestNoPHIInLogs(t *testing.T) {
	const family, given, mrn, street = "QWERTYXAVIER", "ZEBEDIAHNOX", "MRN7070707", "17 ZANZIBARCLOSE"
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	c, p, toks := secureConfig(t)
	c.Log.Level = "info"
	r := startLogged(t, c, log)
	addr := r.g.MLLPAddr()

	phi := strings.NewReplacer("MUÑOZ", family, "JOSÉ", given, "4455667", mrn, "742 EVERGREEN TERRACE", street)
	adt := []byte(phi.Replace(string(readFile(t, "adt_a01.hl7"))))
	oru := []byte(phi.Replace(string(readFile(t, "oru_r01.hl7"))))
	adtTLS, labTLS := p.client(t, "adt.goodhealth.example", false), p.client(t, "lab.city.example", false)
	msgs := []struct {
		name string
		tc   *tls.Config
		msg  []byte
		want string
	}{
		{"accepted ADT", adtTLS, adt, "CA"},
		{"accepted ORU", labTLS, oru, "AA"},
		{"rejected: no MSH-9", labTLS, bytes.Replace(oru, []byte("ORU^R01^ORU_R01|LAB0001"), []byte("|LAB0002"), 1), "AR"},
		{"fails mapping: no OBX-3", labTLS, bytes.Replace(bytes.Replace(oru, []byte("2345-7^Glucose^LN"), nil, 1),
			[]byte("LAB0001"), []byte("LAB0003"), 1), "AE"},
		{"wrong facility", labTLS, bytes.Replace(adt, []byte("ADT0001"), []byte("ADT0009"), 1), "CR"},
		{"unparseable body", labTLS, []byte("MSH|^~\\&|LABSYS|CITYLAB|HIEGW|HIE|20261124||ORU^R01|LAB0004|P|2.5.1\rPID|1||" + mrn + "^^^X^MR||" + family + "^" + given + "\r\x01bad"), ""},
	}
	for _, m := range msgs {
		ack, err := sendTLS(addr, m.tc, m.msg)
		if err != nil {
			t.Fatalf("%s: %v", m.name, err)
		}
		if m.want != "" && ack.Get("MSA-1") != m.want {
			t.Fatalf("%s: ACK %q", m.name, ack.Raw())
		}
	}
	// An untrusted client, to log a refusal too.
	_, _ = sendTLS(addr, p.client(t, "x", true), adt)

	// Wait for the pipeline, then read the patient through the API.
	var pid string
	for i := 0; i < 400 && pid == ""; i++ {
		envs, _ := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "ADT0001"})
		if len(envs) == 1 && envs[0].Status == "processed" {
			pid = envs[0].PatientID
		}
		time.Sleep(25 * time.Millisecond)
	}
	if pid == "" {
		t.Fatal("the ADT was not processed")
	}
	base := "http://" + r.g.HTTPAddr()
	if code, body := apiGet(t, base+"/api/v1/patients/"+pid+"/everything", toks["dashboard"]); code != 200 || !strings.Contains(string(body), family) {
		t.Fatalf("everything: %d", code)
	}
	apiGet(t, base+"/api/v1/patients?system=GOODHEALTH&value="+mrn, "wrong-token")
	r.shutdown(t)

	out := logs.String()
	if testing.Verbose() {
		t.Log(out)
	}
	if !strings.Contains(out, "mllp connection refused") || !strings.Contains(out, "level=WARN") {
		t.Fatalf("the log sink saw nothing; is the logger wired? %q", out)
	}
	for _, s := range []string{family, given, mrn, street, "PID|", "OBX|", "EVN|"} {
		if strings.Contains(out, s) {
			i := strings.Index(out, s)
			line := out[strings.LastIndex(out[:i], "\n")+1:]
			if j := strings.Index(line, "\n"); j >= 0 {
				line = line[:j]
			}
			t.Errorf("log at info level holds %q in: %s", s, line)
		}
	}
}

// TestReloadsAudited: a mapping reload and a refused subscriptions reload
// are both in the audit log.
func TestReloadsAudited(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	subs := t.TempDir() + "/subscriptions.yaml"
	if err := os.WriteFile(subs, []byte("subscriptions:\n  - name: all\n    topic: hie.events\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.Subscriptions.File = subs
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(subs, []byte("subscriptions:\n  - name: all\n    topic: \"bad topic\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := r.g.Reload(); err == nil {
		t.Fatal("an invalid subscriptions file was accepted")
	}
	db := r.g.DB()
	waitAudit(t, db, func(e store.AuditEntry) bool {
		return e.Action == "mappings.reload" && e.Outcome == "ok" && e.Actor == "system"
	})
	waitAudit(t, db, func(e store.AuditEntry) bool {
		return e.Action == "subscriptions.reload" && e.Outcome == "ok" && e.Detail == "1 subscriptions"
	})
	e := waitAudit(t, db, func(e store.AuditEntry) bool { return e.Action == "subscriptions.reload" && e.Outcome == "refused" })
	if e.Target != subs || e.Detail == "" {
		t.Fatalf("refused reload audit %+v", e)
	}
}

// TestUnusableTLSRefusesToStart: every TLS setting that cannot be honoured
// stops start-up with an error naming it; nothing falls back to plain text.
func TestUnusableTLSRefusesToStart(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "ca")
	cert, key := ca.Server(t, "hiegw").WriteFiles(t, dir, "server")
	empty := dir + "/empty.pem"
	if err := os.WriteFile(empty, []byte("no certificate here\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, want string
		edit       func(c *config.Config)
	}{
		{"mllp client_ca without certificates", "mllp.tls", func(c *config.Config) {
			c.MLLP.TLS = config.TLS{Cert: cert, Key: key, ClientCA: empty}
		}},
		{"mllp key of another certificate", "mllp.tls", func(c *config.Config) {
			_, otherKey := ca.Server(t, "other").WriteFiles(t, dir, "other")
			c.MLLP.TLS = config.TLS{Cert: cert, Key: otherKey}
		}},
		{"http certificate unreadable", "http.tls", func(c *config.Config) { c.HTTP.TLS = config.TLS{Cert: empty, Key: key} }},
		{"kafka CA without certificates", "kafka.tls", func(c *config.Config) {
			c.Kafka.Brokers = []string{"127.0.0.1:1"}
			c.Kafka.TLS = config.TLS{CA: empty}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := testConfig(t, t.TempDir(), "")
			tc.edit(c)
			if err := c.Validate(); err != nil {
				t.Fatalf("validation should pass (the files exist): %v", err)
			}
			g, err := New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
			if err == nil {
				g.closeAll()
				t.Fatal("started with unusable TLS")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %s: %v", tc.want, err)
			}
		})
	}
}

// TestHTTPOverTLS serves the API over TLS 1.3 only, on every interface, with
// tokens; a TLS 1.2 client is refused.
func TestHTTPOverTLS(t *testing.T) {
	c, _, toks := secureConfig(t)
	c.MLLP.TLS, c.MLLP.Senders = config.TLS{}, nil
	dir := t.TempDir()
	ca := testcert.NewCA(t, "http CA")
	cert, key := ca.Server(t, "hiegw").WriteFiles(t, dir, "http")
	c.HTTP.Addr = "0.0.0.0:0"
	c.HTTP.TLS = config.TLS{Cert: cert, Key: key, MinVersion: "1.3"}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	_, port, err := net.SplitHostPort(r.g.HTTPAddr())
	if err != nil {
		t.Fatal(err)
	}
	url := "https://127.0.0.1:" + port + "/api/v1/stats"
	client := func(maxVersion uint16) *http.Client {
		return &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), MaxVersion: maxVersion}}}
	}
	req, _ := http.NewRequest("GET", url, nil)
	req.Header.Set("Authorization", "Bearer "+toks["dashboard"])
	resp, err := client(0).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("over TLS 1.3: %d", resp.StatusCode)
	}
	if resp, err := client(tls.VersionTLS12).Do(req); err == nil {
		resp.Body.Close()
		t.Fatal("a TLS 1.2 client was served")
	}
}

// TestTokenRevokedOnReload: a token removed from the configuration stops
// working at the next request after a reload (SIGHUP), a new one works, and
// the change is audited; a configuration that does not load changes
// nothing.
func TestTokenRevokedOnReload(t *testing.T) {
	c, _, toks := secureConfig(t)
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	base := "http://" + r.g.HTTPAddr() + "/api/v1/messages"
	if code, _ := apiGet(t, base, toks["dashboard"]); code != 200 {
		t.Fatalf("before: %d", code)
	}
	// The configuration now holds only a new token (and the operator's).
	tok, hash, err := api.NewToken()
	if err != nil {
		t.Fatal(err)
	}
	next := *c
	next.HTTP.Tokens = []config.APIToken{c.HTTP.Tokens[0], {Name: "dashboard-2", Hash: hash, Role: config.RoleReadOnly}}
	broken := errors.New("hiegw.yaml: line 3: unknown key")
	var source error
	r.g.SetConfigSource(func() (*config.Config, error) { return &next, source })

	source = broken
	if err := r.g.Reload(); err == nil || !strings.Contains(err.Error(), "in force stay") {
		t.Fatalf("reload of a broken configuration: %v", err)
	}
	if code, _ := apiGet(t, base, toks["dashboard"]); code != 200 {
		t.Fatalf("after a refused reload the old token gets %d", code)
	}
	source = nil
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if code, _ := apiGet(t, base, toks["dashboard"]); code != 401 {
		t.Fatalf("the revoked token gets %d", code)
	}
	if code, _ := apiGet(t, base, tok); code != 200 {
		t.Fatalf("the new token gets %d", code)
	}
	if code, _ := apiGet(t, base, toks["oncall"]); code != 200 {
		t.Fatalf("the token kept gets %d", code)
	}
	e := waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool { return e.Action == "api.tokens_reload" && e.Outcome == "ok" })
	if !strings.Contains(e.Detail, "dashboard-2 (read-only)") || strings.Contains(e.Detail, hash) {
		t.Fatalf("audit %+v", e)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool { return e.Action == "config.reload" && e.Outcome == "refused" })
}

// TestAllowListReloaded: an address added to mllp.allow is let in after a
// reload (SIGHUP) without a restart, and one removed is kept out; the
// change is audited.
func TestAllowListReloaded(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	c.MLLP.Allow = []string{"192.0.2.0/24"}
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	msg := readFile(t, "oru_r01.hl7")
	if _, err := sendTLS(r.g.MLLPAddr(), nil, msg); err == nil {
		t.Fatal("a peer outside the allow-list got an answer")
	}
	next := *c
	next.MLLP.Allow = []string{"192.0.2.0/24", "127.0.0.1"}
	r.g.SetConfigSource(func() (*config.Config, error) { return &next, nil })
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if ack, err := sendTLS(r.g.MLLPAddr(), nil, msg); err != nil || ack.Get("MSA-1") != "AA" {
		t.Fatalf("after 127.0.0.1 was allowed: %v", err)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "mllp.allow_reload" && e.Outcome == "ok" && e.Detail == "192.0.2.0/24, 127.0.0.1"
	})
	next2 := next
	next2.MLLP.Allow = []string{"192.0.2.0/24"}
	r.g.SetConfigSource(func() (*config.Config, error) { return &next2, nil })
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, err := sendTLS(r.g.MLLPAddr(), nil, bytes.Replace(msg, []byte("LAB0001"), []byte("LAB0002"), 1)); err == nil {
		t.Fatal("after 127.0.0.1 was removed, a new connection got an answer")
	}
}

// TestSendersReloaded: mllp.senders read again put a new sender's
// certificate and facilities and its application-ACK return address in
// force without a restart, close an open connection of a sender removed
// before its next message, and are audited; a change the listener cannot
// take (no senders left) is refused and the senders in force stay.
func TestSendersReloaded(t *testing.T) {
	c, p, _ := secureConfig(t)
	r := startLogged(t, c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	defer r.shutdown(t)
	addr := r.g.MLLPAddr()
	oru := readFile(t, "oru_r01.hl7")
	msg := func(id string) []byte { return bytes.Replace(oru, []byte("LAB0001"), []byte(id), 1) }

	if _, err := sendTLS(addr, p.client(t, "lab.new.example", false), msg("NEW-1")); err == nil {
		t.Fatal("a certificate no sender has was accepted")
	}
	old, err := mllp.Dial(context.Background(), addr, p.client(t, "lab.city.example", false))
	if err != nil {
		t.Fatal(err)
	}
	defer old.Close()
	old.Timeout = 20 * time.Second
	if reply, err := old.Send(context.Background(), msg("OLD-1")); err != nil || !accepted(reply) {
		t.Fatalf("citylab before the reload: %q %v", reply, err)
	}

	next := *c
	next.MLLP.Senders = []config.MLLPSender{c.MLLP.Senders[0],
		{Name: "newlab", CertCN: "lab.new.example", Facilities: []string{"CITYLAB"}, AckAddr: "127.0.0.1:9"}}
	r.g.SetConfigSource(func() (*config.Config, error) { return &next, nil })
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	ack, err := sendTLS(addr, p.client(t, "lab.new.example", false), msg("NEW-2"))
	if err != nil || !accepted(ack.Raw()) {
		t.Fatalf("the sender added: %v %v", ack, err)
	}
	envs, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "NEW-2"})
	if err != nil || len(envs) != 1 || envs[0].Sender != "newlab" {
		t.Fatalf("the new sender's envelope: %+v %v", envs, err)
	}
	if reply, err := old.Send(context.Background(), msg("OLD-2")); err == nil {
		t.Fatalf("the removed sender's open connection was answered %q", reply)
	}
	if envs, _ := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "OLD-2"}); len(envs) != 0 {
		t.Fatalf("the removed sender's message was stored: %+v", envs)
	}
	if route, ok := r.g.acks.Routes()["newlab"]; !ok || route.Addr != "127.0.0.1:9" {
		t.Fatalf("application-ACK routes in force: %+v", r.g.acks.Routes())
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "mllp.senders_reload" && e.Outcome == "ok" &&
			e.Detail == "senders: goodhealth-adt, newlab; application-ACK routes: newlab"
	})

	// A return address over TLS with hiegw's client certificate: watched
	// while the route has it, forgotten (with its expiry metric) once the
	// route is removed.
	dir := t.TempDir()
	gwCert, gwKey := p.ca.Client(t, "hiegw.example").WriteFiles(t, dir, "hiegw-client")
	withTLS := next
	withTLS.MLLP.Senders = slices.Clone(next.MLLP.Senders)
	withTLS.MLLP.Senders[1].AckTLS = config.TLS{Cert: gwCert, Key: gwKey}
	watched := func() bool {
		for _, cf := range r.g.certList() {
			if cf.endpoint == "mllp ack newlab" {
				return true
			}
		}
		return false
	}
	for _, step := range []struct {
		cfg   *config.Config
		watch bool
	}{{&withTLS, true}, {&next, false}} {
		r.g.SetConfigSource(func() (*config.Config, error) { return step.cfg, nil })
		if err := r.g.Reload(); err != nil {
			t.Fatal(err)
		}
		n, err := testutil.GatherAndCount(r.g.reg, "hiegw_tls_certificate_not_after_seconds")
		if err != nil {
			t.Fatal(err)
		}
		if watched() != step.watch || (n == 2) != step.watch {
			t.Fatalf("ack_tls %v: certificate watched %v, %d expiry series", step.watch, watched(), n)
		}
	}

	none := next
	none.MLLP.Senders = nil
	r.g.SetConfigSource(func() (*config.Config, error) { return &none, nil })
	if err := r.g.Reload(); err == nil || !strings.Contains(err.Error(), "restart") {
		t.Fatalf("removing every sender: %v, want a refusal asking for a restart", err)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "mllp.senders_reload" && strings.HasPrefix(e.Outcome, "refused")
	})
	if v := testutil.ToFloat64(r.g.reloadRefused.WithLabelValues("mllp.senders")); v != 1 {
		t.Fatalf("hiegw_reload_refused{what=mllp.senders} %v after a refused change, want 1", v)
	}
	if ack, err := sendTLS(addr, p.client(t, "lab.new.example", false), msg("NEW-3")); err != nil || !accepted(ack.Raw()) {
		t.Fatalf("after a refused reload: %v %v", ack, err)
	}
}

// TestConfigFileWatched: an edit of the configuration file (a Kubernetes
// ConfigMap updated in place) is read again without a SIGHUP: the MLLP
// allow-list it changes is in force and audited, a setting that takes a
// restart is named in a warning, and a file caught half written is
// refused with the settings in force kept.
func TestConfigFileWatched(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "hiegw.yaml")
	body := func(extra string) []byte {
		return fmt.Appendf(nil, "data_dir: %s\nmllp:\n  addr: 127.0.0.1:0\n%shttp:\n  addr: 127.0.0.1:0\nbroker:\n  addr: 127.0.0.1:0\n"+
			"sftp:\n  addr: \"\"\nmappings:\n  dir: %s\n  reload_interval: 50ms\n",
			filepath.Join(dir, "data"), extra, filepath.Join("..", "..", "mappings"))
	}
	if err := os.WriteFile(file, body(""), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--config", file}
	c, err := config.Load(args, func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	logs := &syncBuffer{}
	r := startLogged(t, c, slog.New(slog.NewTextHandler(logs, nil)))
	defer r.shutdown(t)
	r.g.SetConfigSource(func() (*config.Config, error) {
		return config.Load(args, func(string) string { return "" }, io.Discard)
	})
	msg := readFile(t, "oru_r01.hl7")
	if ack, err := sendTLS(r.g.MLLPAddr(), nil, msg); err != nil || !accepted(ack.Raw()) {
		t.Fatalf("before the edit: %v %v", ack, err)
	}

	if err := os.WriteFile(file, body("  allow: [192.0.2.0/24]\n  max_message_bytes: 2000000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "mllp.allow_reload" && e.Outcome == "ok" && e.Detail == "192.0.2.0/24"
	})
	if _, err := sendTLS(r.g.MLLPAddr(), nil, bytes.Replace(msg, []byte("LAB0001"), []byte("LAB0002"), 1)); err == nil {
		t.Fatal("after the allow-list left 127.0.0.1 out, a new connection got an answer")
	}
	waitFor(t, "the warning naming the setting that takes a restart", func() bool {
		return strings.Contains(logs.String(), `settings=mllp.max_message_bytes`)
	})

	if err := os.WriteFile(file, []byte("mllp: [half"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "config.reload" && strings.HasPrefix(e.Outcome, "refused")
	})
	if _, err := sendTLS(r.g.MLLPAddr(), nil, bytes.Replace(msg, []byte("LAB0001"), []byte("LAB0003"), 1)); err == nil {
		t.Fatal("a refused file changed the allow-list in force")
	}
	refused := r.g.reloadRefused.WithLabelValues("configuration")
	if v := testutil.ToFloat64(refused); v != 1 {
		t.Fatalf("hiegw_reload_refused{what=configuration} %v after a refused file, want 1", v)
	}
	if err := os.WriteFile(file, body("  allow: [192.0.2.0/24]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "hiegw_reload_refused{what=configuration} back to 0", func() bool { return testutil.ToFloat64(refused) == 0 })
}

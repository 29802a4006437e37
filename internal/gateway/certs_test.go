package gateway

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/hiegw/hiegw/internal/store"
)

// servedSerial completes a TLS handshake with the MLLP listener as client
// and returns the serial number of the certificate the server showed.
func servedSerial(t *testing.T, addr string, tc *tls.Config) (string, error) {
	t.Helper()
	c := tc.Clone()
	c.InsecureSkipVerify = true // the test compares serials; trust is tested elsewhere
	conn, err := tls.Dial("tcp", addr, c)
	if err != nil {
		return "", err
	}
	defer conn.Close()
	// With TLS 1.3 a refused client certificate shows at the first read.
	if _, err := sendOn(conn); err != nil {
		return "", err
	}
	return conn.ConnectionState().PeerCertificates[0].SerialNumber.String(), nil
}

// sendOn writes nothing and reads with a short deadline: a connection the
// server refused after the handshake fails here, one it accepted times out.
func sendOn(conn *tls.Conn) (int, error) {
	conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	n, err := conn.Read(make([]byte, 1))
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		return n, nil
	}
	return n, err
}

// A renewed certificate and a client CA with a new authority, written over
// the files while the gateway runs, serve new connections without a
// restart; files that do not load are refused (logged, audited) and the
// certificate in force keeps serving; the expiry metric follows.
func TestCertificateReload(t *testing.T) {
	var logs syncBuffer
	c, p, toks := secureConfig(t)
	r := startLogged(t, c, slog.New(slog.NewTextHandler(&logs, nil)))
	defer r.shutdown(t)
	addr, dir := r.g.MLLPAddr(), c.MLLP.TLS.Cert[:strings.LastIndex(c.MLLP.TLS.Cert, "/")]
	client := p.client(t, "adt.goodhealth.example", false)

	first, err := servedSerial(t, addr, client)
	if err != nil {
		t.Fatal(err)
	}
	renewed := p.ca.Server(t, "hiegw")
	renewed.WriteFiles(t, dir, "server")
	want := renewed.TLS.Leaf.SerialNumber.String()
	var got string
	waitFor(t, "the renewed certificate served", func() bool {
		got, err = servedSerial(t, addr, client)
		return err == nil && got == want
	})
	if got == first {
		t.Fatal("the serial did not change")
	}
	if v := metric(t, r.g.HTTPAddr(), `hiegw_tls_certificate_not_after_seconds{endpoint="mllp"}`); v !=
		fmt.Sprint(float64(renewed.TLS.Leaf.NotAfter.Unix())) {
		t.Fatalf("expiry metric %q, want the renewed certificate's %v", v, renewed.TLS.Leaf.NotAfter)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "tls.reload" && e.Target == "mllp" && e.Outcome == "ok"
	})
	// The console's listeners say until when the certificate in force holds.
	code, body := apiGet(t, "http://"+r.g.HTTPAddr()+"/api/v1/console/status", toks["dashboard"])
	var status struct {
		Listeners []struct {
			Name         string     `json:"name"`
			CertNotAfter *time.Time `json:"cert_not_after"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal(body, &status); code != 200 || err != nil {
		t.Fatalf("console status: %d %v", code, err)
	}
	for _, l := range status.Listeners {
		if l.Name == "mllp" && (l.CertNotAfter == nil || !l.CertNotAfter.Equal(renewed.TLS.Leaf.NotAfter)) ||
			l.Name == "http" && l.CertNotAfter != nil {
			t.Errorf("console listener %s: certificate until %v (renewed: %v)", l.Name, l.CertNotAfter, renewed.TLS.Leaf.NotAfter)
		}
	}

	// A certificate whose key is not there yet is refused; the renewed one
	// keeps serving, also after a reload (SIGHUP).
	other := p.ca.Server(t, "hiegw")
	if err := os.WriteFile(c.MLLP.TLS.Cert, other.CertPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	_ = r.g.Reload()
	if got, err := servedSerial(t, addr, client); err != nil || got != want {
		t.Fatalf("after a mismatched key: serial %s, %v; want %s still", got, err, want)
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "tls.reload" && e.Target == "mllp" && e.Outcome == "refused" && strings.Contains(e.Detail, "private key")
	})
	if !strings.Contains(logs.String(), "tls certificate files changed but do not load") {
		t.Fatalf("the refusal was not logged:\n%s", logs.String())
	}
	// The test certificates live a day: taken at start and at renewal, each
	// is warned about.
	if n := strings.Count(logs.String(), `msg="tls certificate expires soon" endpoint=mllp`); n != 2 {
		t.Errorf("%d expiry warnings, want 2 (start, renewal):\n%s", n, logs.String())
	}

	// A new sender's authority added to the client CA file: its client is
	// accepted, and the old authority's clients still are.
	newCA := testcert.NewCA(t, "second hie CA")
	if err := os.WriteFile(c.MLLP.TLS.ClientCA, append(append([]byte{}, p.ca.PEM...), newCA.PEM...), 0o600); err != nil {
		t.Fatal(err)
	}
	renewed.WriteFiles(t, dir, "server") // the key is back too
	leaf := newCA.Client(t, "adt.goodhealth.example")
	fromNew := &tls.Config{GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &leaf.TLS, nil }}
	_ = r.g.Reload()
	if _, err := servedSerial(t, addr, fromNew); err != nil {
		t.Fatalf("a client of the added authority: %v", err)
	}
	if _, err := servedSerial(t, addr, client); err != nil {
		t.Fatalf("a client of the first authority: %v", err)
	}
}

// hiegw's own client certificate, for application acknowledgements (and
// Kafka), renewed on disk, is presented on the next connection without a
// restart.
func TestClientCertificateReload(t *testing.T) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "hie test CA")
	c := testConfig(t, t.TempDir(), "")
	cert, key := ca.Server(t, "hiegw").WriteFiles(t, dir, "server")
	caFile := ca.WriteFile(t, dir, "ca")
	c.MLLP.TLS = config.TLS{Cert: cert, Key: key, ClientCA: caFile}
	gwCert, gwKey := ca.Client(t, "hiegw.example").WriteFiles(t, dir, "hiegw-client")
	app := &senderApp{addr: freePort(t)}
	c.MLLP.Senders = []config.MLLPSender{{Name: "goodhealth-adt", CertCN: "adt.goodhealth.example",
		AckAddr: app.addr, AckTLS: config.TLS{CA: caFile, Cert: gwCert, Key: gwKey}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var presented []string // serials of the client certificates hiegw presented
	recv := ca.Server(t, "goodhealth receiver")
	app.tls = &tls.Config{Certificates: []tls.Certificate{recv.TLS}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert,
		VerifyConnection: func(cs tls.ConnectionState) error {
			mu.Lock()
			defer mu.Unlock()
			presented = append(presented, cs.PeerCertificates[0].SerialNumber.String())
			return nil
		}}
	app.start(t)
	defer app.stop(t)
	r := start(t, c)
	defer r.shutdown(t)
	leaf := ca.Client(t, "adt.goodhealth.example")
	adt := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{leaf.TLS}}
	lastPresented := func() string {
		mu.Lock()
		defer mu.Unlock()
		if len(presented) == 0 {
			return ""
		}
		return presented[len(presented)-1]
	}
	deliver := func(control string) string {
		t.Helper()
		if _, err := sendTLS(r.g.MLLPAddr(), adt, adtAck("GOODHEALTH", control, "AL", "AL", true)); err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the application ACK of "+control, func() bool {
			for _, m := range app.received() {
				if m.Get("MSA-2") == control {
					return true
				}
			}
			return false
		})
		return lastPresented()
	}
	first := deliver("C1")
	renewed := ca.Client(t, "hiegw.example")
	renewed.WriteFiles(t, dir, "hiegw-client")
	_ = r.g.Reload()
	if got, want := deliver("C2"), renewed.TLS.Leaf.SerialNumber.String(); got != want || got == first {
		t.Fatalf("after renewal hiegw presented %s (first %s), want %s", got, first, want)
	}
	if v := metric(t, r.g.HTTPAddr(), `hiegw_tls_certificate_not_after_seconds{endpoint="mllp ack goodhealth-adt"}`); v !=
		fmt.Sprint(float64(renewed.TLS.Leaf.NotAfter.Unix())) {
		t.Fatalf("expiry metric %q", v)
	}
}

package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mllp/testcert"
)

type refusal struct {
	reason string
	cause  error
}

type refusals struct {
	mu   sync.Mutex
	list []refusal
}

func (r *refusals) add(_ net.Addr, reason string, cause error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.list = append(r.list, refusal{reason, cause})
}

// wait returns the refusals once there are n (or after a generous bound).
func (r *refusals) wait(t *testing.T, n int) []refusal {
	t.Helper()
	for i := 0; i < 500; i++ {
		r.mu.Lock()
		if len(r.list) >= n {
			out := append([]refusal(nil), r.list...)
			r.mu.Unlock()
			return out
		}
		r.mu.Unlock()
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("expected %d refusals, got %d", n, len(r.list))
	return nil
}

func senderHandler() Handler {
	return HandlerFunc(func(_ context.Context, ci ConnInfo, frame []byte, _ error) []byte {
		return []byte("ACK from " + ci.Sender)
	})
}

// TestMutualTLS checks that a client with a certificate from the trusted CA
// is identified, and that an untrusted certificate, no certificate, an
// unregistered identity and TLS 1.1 are all refused and reported.
func TestMutualTLS(t *testing.T) {
	ca, rogue := testcert.NewCA(t, "hie test CA"), testcert.NewCA(t, "rogue CA")
	srvCert := ca.Server(t, "hiegw")
	var ref refusals
	s := &Server{
		Handler:   senderHandler(),
		TLSConfig: &tls.Config{Certificates: []tls.Certificate{srvCert.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12},
		Identify: func(ci ConnInfo) (string, error) {
			if cn := ci.TLS.PeerCertificates[0].Subject.CommonName; cn == "lab.example" {
				return "lab", nil
			}
			return "", errors.New("certificate not registered")
		},
		OnRefuse:    ref.add,
		ReadTimeout: 5 * time.Second,
	}
	addr := startServer(t, s)
	dial := func(cert *testcert.Leaf, maxVersion uint16) (*Client, error) {
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", MaxVersion: maxVersion}
		if cert != nil {
			// Present the certificate even when the server does not list its
			// issuer among the acceptable CAs.
			tc.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return &cert.TLS, nil }
		}
		return Dial(context.Background(), addr, tc)
	}
	// send returns the reply or the error of the first exchange: with TLS 1.3
	// a refused client certificate shows only on the first read.
	send := func(cert *testcert.Leaf, maxVersion uint16) (string, error) {
		cl, err := dial(cert, maxVersion)
		if err != nil {
			return "", err
		}
		defer cl.Close()
		reply, err := cl.Send(context.Background(), []byte("MSH|^~\\&|"))
		return string(reply), err
	}

	if reply, err := send(ca.Client(t, "lab.example"), 0); err != nil || reply != "ACK from lab" {
		t.Fatalf("trusted client: %q %v", reply, err)
	}
	// Each refusal is recorded before the next client dials: the server
	// records it when its side of the handshake ends, which may come after
	// the client has seen its error, so the order would otherwise vary.
	if _, err := send(rogue.Client(t, "lab.example"), 0); err == nil {
		t.Fatal("a certificate from an untrusted CA was accepted")
	}
	ref.wait(t, 1)
	if _, err := send(nil, 0); err == nil {
		t.Fatal("a client without a certificate was accepted")
	}
	ref.wait(t, 2)
	if _, err := send(ca.Client(t, "intruder.example"), 0); err == nil {
		t.Fatal("an unregistered certificate was accepted")
	}
	ref.wait(t, 3)
	if _, err := send(ca.Client(t, "lab.example"), tls.VersionTLS11); err == nil {
		t.Fatal("TLS 1.1 was accepted")
	}
	got := ref.wait(t, 4)
	want := []string{RefusedHandshake, RefusedHandshake, RefusedIdentity, RefusedHandshake}
	for i, w := range want {
		if got[i].reason != w {
			t.Errorf("refusal %d: %s (%v), want %s", i, got[i].reason, got[i].cause, w)
		}
	}
	if !strings.Contains(got[0].cause.Error(), "unknown authority") {
		t.Errorf("untrusted CA cause: %v", got[0].cause)
	}
	if st := s.Stats(); st.Refused != 4 || st.Accepted != 5 {
		t.Errorf("stats %+v", st)
	}
}

func TestAllowListRefusalReported(t *testing.T) {
	var ref refusals
	s := &Server{Handler: senderHandler(), Allow: func(net.Addr) bool { return false }, OnRefuse: ref.add}
	addr := startServer(t, s)
	cl, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if _, err := cl.Send(context.Background(), []byte("MSH|^~\\&|")); err == nil {
		t.Fatal("a refused peer got a reply")
	}
	if got := ref.wait(t, 1); got[0].reason != RefusedAllowList {
		t.Fatalf("reason %q", got[0].reason)
	}
	if s.Stats().Refused != 1 {
		t.Fatalf("stats %+v", s.Stats())
	}
}

// TestReidentify: after Reidentify an open connection is named again before
// its next frame; once Identify no longer recognises it, that frame goes
// unanswered, the connection closes and the refusal is reported.
func TestReidentify(t *testing.T) {
	var mu sync.Mutex
	name, calls := "lab", 0
	var ref refusals
	s := &Server{
		Handler: senderHandler(),
		Identify: func(ConnInfo) (string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			if name == "" {
				return "", errors.New("no longer registered")
			}
			return name, nil
		},
		OnRefuse:    ref.add,
		ReadTimeout: 5 * time.Second,
	}
	addr := startServer(t, s)
	cl, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	send := func() (string, error) {
		reply, err := cl.Send(context.Background(), []byte("MSH|^~\\&|"))
		return string(reply), err
	}
	for range 2 {
		if reply, err := send(); err != nil || reply != "ACK from lab" {
			t.Fatalf("before the change: %q %v", reply, err)
		}
	}
	mu.Lock()
	if calls != 1 {
		t.Fatalf("Identify called %d times for one connection before Reidentify", calls)
	}
	name = "city-lab"
	mu.Unlock()
	s.Reidentify()
	if reply, err := send(); err != nil || reply != "ACK from city-lab" {
		t.Fatalf("after the sender was renamed: %q %v", reply, err)
	}
	mu.Lock()
	name = ""
	mu.Unlock()
	s.Reidentify()
	if reply, err := send(); err == nil {
		t.Fatalf("a connection no longer recognised was answered %q", reply)
	}
	got := ref.wait(t, 1)
	if got[0].reason != RefusedIdentity || !strings.Contains(got[0].cause.Error(), "no longer registered") {
		t.Fatalf("refusal reported: %+v", got[0])
	}
}

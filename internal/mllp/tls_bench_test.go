package mllp

import (
	"context"
	"crypto/tls"
	"net"
	"testing"

	"github.com/hiegw/hiegw/internal/mllp/testcert"
)

// BenchmarkRoundTrip sends one 1.5 KB message and waits for its reply on one
// open connection, over plain TCP and over mutual TLS (handshake excluded),
// and measures a new mutual-TLS connection (handshake and one message).
func BenchmarkRoundTrip(b *testing.B) {
	ca := testcert.NewCA(b, "bench CA")
	srv, cli := ca.Server(b, "hiegw"), ca.Client(b, "lab")
	serverTLS := &tls.Config{Certificates: []tls.Certificate{srv.TLS}, ClientCAs: ca.Pool(), ClientAuth: tls.RequireAndVerifyClientCert}
	clientTLS := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{cli.TLS}}
	msg := make([]byte, 1500)
	for i := range msg {
		msg[i] = 'A' + byte(i%26)
	}
	serve := func(tc *tls.Config) (string, func()) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		s := &Server{Handler: HandlerFunc(func(context.Context, ConnInfo, []byte, error) []byte { return []byte("MSA|AA") }), TLSConfig: tc}
		go s.Serve(ln)
		return ln.Addr().String(), func() { _ = s.Shutdown(context.Background()) }
	}
	for _, bc := range []struct {
		name   string
		srv    *tls.Config
		cli    *tls.Config
		reconn bool
	}{{"plain", nil, nil, false}, {"mtls", serverTLS, clientTLS, false}, {"mtls-new-conn", serverTLS, clientTLS, true}} {
		b.Run(bc.name, func(b *testing.B) {
			addr, stop := serve(bc.srv)
			defer stop()
			var cl *Client
			dial := func() {
				var err error
				if cl, err = Dial(context.Background(), addr, bc.cli); err != nil {
					b.Fatal(err)
				}
			}
			dial()
			b.ReportAllocs()
			for b.Loop() {
				if bc.reconn {
					cl.Close()
					dial()
				}
				if _, err := cl.Send(context.Background(), msg); err != nil {
					b.Fatal(err)
				}
			}
			cl.Close()
		})
	}
}

package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

// runHealth asks a running gateway whether it is ready (GET /readyz) and
// exits 0 if so, 1 with the gateway's answer if not: a container health
// check for images without curl (the distroless image, compose).
func runHealth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hiegw health", flag.ContinueOnError)
	fs.SetOutput(stderr)
	url := fs.String("url", "http://127.0.0.1:8080/readyz", "readiness URL of the gateway (/healthz: alive only)")
	ca := fs.String("ca", "", "for an https URL: the CA file that signed the gateway's certificate (default: the system's roots)")
	timeout := fs.Duration("timeout", 5*time.Second, "time to wait for the answer")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if *ca != "" {
		pool, err := caPool(*ca)
		if err != nil {
			return fmt.Errorf("--ca: %w", err)
		}
		tc.RootCAs = pool
	}
	client := &http.Client{Timeout: *timeout, Transport: &http.Transport{TLSClientConfig: tc}}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		return fmt.Errorf("--url: %w", err)
	}
	resp, err := client.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "hiegw health: %v\n", err)
		return exitCode(1)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "hiegw health: %s: %s\n%s\n", *url, resp.Status, strings.TrimSpace(string(body)))
		return exitCode(1)
	}
	fmt.Fprintf(stdout, "ok: %s\n", *url)
	return nil
}

// caPool reads a PEM file of CA certificates (hiegw send --tls-ca, hiegw
// health --ca).
func caPool(path string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%s holds no PEM certificate", path)
	}
	return pool, nil
}

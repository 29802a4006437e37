package gateway

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/prometheus/client_golang/prometheus"
)

// certFiles serves a certificate and key, and a listener's client CA, from
// their files and reads them again when they change, so that a renewed
// certificate (cert-manager, certbot, an operator's copy) or a client CA
// with a new sender's authority takes effect for new connections without a
// restart; connections already open keep theirs. Listeners (MLLP, HTTP)
// and clients (Kafka, application acknowledgements) use it. Files that do
// not load together (a certificate without its new key, half written) are
// refused and the ones in force keep serving; they are tried again when
// they change again.
type certFiles struct {
	endpoint string // "mllp", "http", "kafka", "mllp ack SENDER"
	t        config.TLS
	load     func(config.TLS) (*tls.Config, *x509.Certificate, error)
	log      *slog.Logger
	notAfter prometheus.Gauge
	audit    func(detail string, err error)

	mu      sync.Mutex
	cur     *tls.Config
	expiry  time.Time // the NotAfter of cur's certificate
	stamp   string    // of the files last tried
	checkAt time.Time // a handshake looks at the files again after this
}

// certCheckEvery bounds how often handshakes look at the files.
const certCheckEvery = time.Second

// newCertFiles loads t's files with load (loadServerTLS, loadClientCert);
// an error stops start-up.
func newCertFiles(endpoint string, t config.TLS, load func(config.TLS) (*tls.Config, *x509.Certificate, error),
	log *slog.Logger, notAfter *prometheus.GaugeVec, audit func(detail string, err error)) (*certFiles, error) {
	c := &certFiles{endpoint: endpoint, t: t, load: load, log: log, notAfter: notAfter.WithLabelValues(endpoint), audit: audit}
	c.stamp = c.stampNow()
	tc, leaf, err := load(t)
	if err != nil {
		return nil, err
	}
	c.use(tc, leaf)
	return c, nil
}

// serverConfig is a listener's tls.Config: each handshake gets the
// certificate and client CA in force.
func (c *certFiles) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: minVersion(c.t), GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return c.current(time.Now()), nil
	}}
}

// clientCertificate gives a client's handshake the certificate in force.
func (c *certFiles) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &c.current(time.Now()).Certificates[0], nil
}

// current returns the tls.Config in force, first loading changed files
// when the last look is older than certCheckEvery.
func (c *certFiles) current(now time.Time) *tls.Config {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.checkAt) {
		c.checkAt = now.Add(certCheckEvery)
		c.refreshLocked()
	}
	return c.cur
}

// refresh loads the files if they changed since they were last tried (the
// gateway's reload on SIGHUP, and its watcher).
func (c *certFiles) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshLocked()
}

func (c *certFiles) refreshLocked() {
	stamp := c.stampNow()
	if stamp == c.stamp {
		return
	}
	c.stamp = stamp
	tc, leaf, err := c.load(c.t)
	if err != nil {
		c.log.Error("tls certificate files changed but do not load; the certificate in force stays",
			"endpoint", c.endpoint, "err", err)
		c.audit(c.endpoint+" certificate", err)
		return
	}
	c.use(tc, leaf)
	c.log.Info("tls certificate reloaded", "endpoint", c.endpoint, "subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	c.audit(fmt.Sprintf("%s certificate %s, valid until %s", c.endpoint, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339)), nil)
}

// expires is when the certificate in force expires.
func (c *certFiles) expires() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.expiry
}

// use puts tc in force; c.mu is held, or c is not shared yet.
func (c *certFiles) use(tc *tls.Config, leaf *x509.Certificate) {
	c.cur, c.expiry = tc, leaf.NotAfter
	c.notAfter.Set(float64(leaf.NotAfter.Unix()))
	// Said when the certificate is taken (at start, at each renewal); the
	// metric is for alerting in between.
	switch left := time.Until(leaf.NotAfter); {
	case left <= 0:
		c.log.Error("tls certificate has expired: peers will refuse it; write a renewed one over the files",
			"endpoint", c.endpoint, "not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	case left < certWarnBefore:
		c.log.Warn("tls certificate expires soon", "endpoint", c.endpoint,
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339), "days_left", int(left.Hours()/24))
	}
}

// certWarnBefore: a certificate taken with less than this left is warned
// about.
const certWarnBefore = 14 * 24 * time.Hour

// stampNow describes the files' sizes and modification times (following
// links, as a Kubernetes secret's are swapped); a file that cannot be read
// counts as changed.
func (c *certFiles) stampNow() string { return fileStamp(c.t.Cert, c.t.Key, c.t.ClientCA) }

// fileStamp describes the sizes and modification times of the files named
// (empty names skipped; a file that cannot be read counts as changed).
func fileStamp(paths ...string) string {
	var b strings.Builder
	for _, p := range paths {
		if p == "" {
			continue
		}
		if fi, err := os.Stat(p); err == nil {
			fmt.Fprintf(&b, "%d.%d;", fi.Size(), fi.ModTime().UnixNano())
		} else {
			b.WriteString("?;")
		}
	}
	return b.String()
}

// loadServerTLS reads a listener's certificate, key and client CA, and
// returns the config with the certificate's leaf.
func loadServerTLS(t config.TLS) (*tls.Config, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, nil, err
	}
	tc := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: minVersion(t)}
	if t.ClientCA != "" {
		pool, err := loadPool(t.ClientCA)
		if err != nil {
			return nil, nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, cert.Leaf, nil
}

// loadClientCert reads a client's certificate and key.
func loadClientCert(t config.TLS) (*tls.Config, *x509.Certificate, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, nil, err
	}
	return &tls.Config{Certificates: []tls.Certificate{cert}}, cert.Leaf, nil
}

// caFile serves the CA bundle with which hiegw verifies a server it
// connects to (kafka.tls.ca, an application-ACK route's ca), reading it
// again when it changes, so that a broker's or receiver's new authority
// (a CA rotation, which adds the new CA to the bundle before the servers
// change certificates) is trusted from the next connection without a
// restart. A bundle that does not load is refused and the one in force
// stays.
type caFile struct {
	endpoint, path string
	log            *slog.Logger
	audit          func(detail string, err error)

	mu      sync.Mutex
	pool    *x509.CertPool
	stamp   string
	checkAt time.Time
}

func newCAFile(endpoint, path string, log *slog.Logger, audit func(detail string, err error)) (*caFile, error) {
	c := &caFile{endpoint: endpoint, path: path, log: log, audit: audit, stamp: fileStamp(path)}
	pool, err := loadPool(path)
	if err != nil {
		return nil, err
	}
	c.pool = pool
	return c, nil
}

// current returns the pool in force, first loading a changed file when the
// last look is older than certCheckEvery.
func (c *caFile) current(now time.Time) *x509.CertPool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if now.After(c.checkAt) {
		c.checkAt = now.Add(certCheckEvery)
		c.refreshLocked()
	}
	return c.pool
}

// refresh loads the file if it changed since it was last tried.
func (c *caFile) refresh() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.refreshLocked()
}

func (c *caFile) refreshLocked() {
	stamp := fileStamp(c.path)
	if stamp == c.stamp {
		return
	}
	c.stamp = stamp
	pool, err := loadPool(c.path)
	if err != nil {
		c.log.Error("tls ca file changed but does not load; the authorities in force stay", "endpoint", c.endpoint, "err", err)
		c.audit(c.endpoint+" ca", err)
		return
	}
	c.pool = pool
	c.log.Info("tls ca reloaded", "endpoint", c.endpoint, "path", c.path)
	c.audit(c.endpoint+" ca "+c.path, nil)
}

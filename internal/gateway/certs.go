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

// certFiles serves a listener's certificate, key and client CA from their
// files and reads them again when they change, so that a renewed
// certificate (cert-manager, certbot, an operator's copy) or a client CA
// with a new sender's authority takes effect for new connections without a
// restart; connections already open keep theirs. Files that do not load
// together (a certificate without its new key, half written) are refused
// and the ones in force keep serving; they are tried again when they
// change again.
type certFiles struct {
	listener string // "mllp", "http"
	t        config.TLS
	log      *slog.Logger
	notAfter prometheus.Gauge
	audit    func(detail string, err error)

	mu      sync.Mutex
	cur     *tls.Config
	stamp   string    // of the files last tried
	checkAt time.Time // a handshake looks at the files again after this
}

// certCheckEvery bounds how often handshakes look at the files.
const certCheckEvery = time.Second

// newCertFiles loads t's files; an error stops start-up.
func newCertFiles(listener string, t config.TLS, log *slog.Logger, notAfter *prometheus.GaugeVec,
	audit func(detail string, err error)) (*certFiles, error) {
	c := &certFiles{listener: listener, t: t, log: log, notAfter: notAfter.WithLabelValues(listener), audit: audit}
	c.stamp = c.stampNow()
	tc, leaf, err := loadServerTLS(t)
	if err != nil {
		return nil, err
	}
	c.use(tc, leaf)
	return c, nil
}

// config is the listener's tls.Config: each handshake gets the certificate
// and client CA in force.
func (c *certFiles) config() *tls.Config {
	return &tls.Config{MinVersion: minVersion(c.t), GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return c.current(time.Now()), nil
	}}
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
	tc, leaf, err := loadServerTLS(c.t)
	if err != nil {
		c.log.Error("tls certificate files changed but do not load; the certificate in force keeps serving",
			"listener", c.listener, "err", err)
		c.audit(c.listener+" certificate", err)
		return
	}
	c.use(tc, leaf)
	c.log.Info("tls certificate reloaded", "listener", c.listener, "subject", leaf.Subject.String(),
		"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
	c.audit(fmt.Sprintf("%s certificate %s, valid until %s", c.listener, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339)), nil)
}

func (c *certFiles) use(tc *tls.Config, leaf *x509.Certificate) {
	c.cur = tc
	c.notAfter.Set(float64(leaf.NotAfter.Unix()))
}

// stampNow describes the files' sizes and modification times (following
// links, as a Kubernetes secret's are swapped); a file that cannot be read
// counts as changed.
func (c *certFiles) stampNow() string {
	var b strings.Builder
	for _, p := range []string{c.t.Cert, c.t.Key, c.t.ClientCA} {
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

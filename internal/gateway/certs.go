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
	log      *slog.Logger
	notAfter prometheus.Gauge
	audit    func(detail string, err error)
	w        *watched[loadedCert]
}

// loadedCert is what certificate files load to: the tls.Config to serve
// and the certificate's leaf.
type loadedCert struct {
	tc   *tls.Config
	leaf *x509.Certificate
}

// certCheckEvery bounds how often handshakes look at the files.
const certCheckEvery = time.Second

// newCertFiles loads t's files with load (loadServerTLS, loadClientCert);
// an error stops start-up.
func newCertFiles(endpoint string, t config.TLS, load func(config.TLS) (*tls.Config, *x509.Certificate, error),
	log *slog.Logger, notAfter *prometheus.GaugeVec, audit func(detail string, err error)) (*certFiles, error) {
	c := &certFiles{endpoint: endpoint, t: t, log: log, notAfter: notAfter.WithLabelValues(endpoint), audit: audit}
	w, err := newWatched([]string{t.Cert, t.Key, t.ClientCA}, func() (loadedCert, error) {
		tc, leaf, err := load(t)
		return loadedCert{tc, leaf}, err
	}, c.use, func(err error) {
		log.Error("tls certificate files changed but do not load; the certificate in force stays",
			"endpoint", endpoint, "err", err)
		audit(endpoint+" certificate", err)
	})
	if err != nil {
		return nil, err
	}
	c.w = w
	return c, nil
}

// serverConfig is a listener's tls.Config: each handshake gets the
// certificate and client CA in force.
func (c *certFiles) serverConfig() *tls.Config {
	return &tls.Config{MinVersion: minVersion(c.t), GetConfigForClient: func(*tls.ClientHelloInfo) (*tls.Config, error) {
		return c.w.current(time.Now()).tc, nil
	}}
}

// clientCertificate gives a client's handshake the certificate in force.
func (c *certFiles) clientCertificate(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	return &c.w.current(time.Now()).tc.Certificates[0], nil
}

// refresh loads the files if they changed since they were last tried (the
// gateway's reload on SIGHUP, and its watcher).
func (c *certFiles) refresh() { c.w.refresh() }

// expires is when the certificate in force expires.
func (c *certFiles) expires() time.Time { return c.w.get().leaf.NotAfter }

// use is told of a certificate put in force (at start: reloaded false).
func (c *certFiles) use(lc loadedCert, reloaded bool) {
	leaf := lc.leaf
	c.notAfter.Set(float64(leaf.NotAfter.Unix()))
	if reloaded {
		c.log.Info("tls certificate reloaded", "endpoint", c.endpoint, "subject", leaf.Subject.String(),
			"not_after", leaf.NotAfter.UTC().Format(time.RFC3339))
		c.audit(fmt.Sprintf("%s certificate %s, valid until %s", c.endpoint, leaf.Subject, leaf.NotAfter.UTC().Format(time.RFC3339)), nil)
	}
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

// watched is what a set of files loads to, loaded again when they change
// (their sizes and modification times, links followed, as a Kubernetes
// secret's are swapped): when a handshake asks and the last look is older
// than certCheckEvery, or at once on refresh. A set that does not load is
// refused (refused is told) and what is in force stays; it is tried again
// when the files change again. took is told of what is put in force, at
// start and at each reload, with w.mu held.
type watched[T any] struct {
	paths   []string
	load    func() (T, error)
	took    func(v T, reloaded bool)
	refused func(error)

	mu      sync.Mutex
	cur     T
	stamp   string    // of the files last tried
	checkAt time.Time // a handshake looks at the files again after this
}

func newWatched[T any](paths []string, load func() (T, error), took func(T, bool), refused func(error)) (*watched[T], error) {
	w := &watched[T]{paths: paths, load: load, took: took, refused: refused, stamp: fileStamp(paths...)}
	v, err := load()
	if err != nil {
		return nil, err
	}
	w.cur = v
	took(v, false)
	return w, nil
}

// current returns what is in force, first loading changed files when the
// last look is older than certCheckEvery.
func (w *watched[T]) current(now time.Time) T {
	w.mu.Lock()
	defer w.mu.Unlock()
	if now.After(w.checkAt) {
		w.checkAt = now.Add(certCheckEvery)
		w.refreshLocked()
	}
	return w.cur
}

// get returns what is in force without looking at the files.
func (w *watched[T]) get() T {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.cur
}

// refresh loads the files if they changed since they were last tried.
func (w *watched[T]) refresh() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.refreshLocked()
}

func (w *watched[T]) refreshLocked() {
	stamp := fileStamp(w.paths...)
	if stamp == w.stamp {
		return
	}
	w.stamp = stamp
	v, err := w.load()
	if err != nil {
		w.refused(err)
		return
	}
	w.cur = v
	w.took(v, true)
}

// certWarnBefore: a certificate taken with less than this left is warned
// about.
const certWarnBefore = 14 * 24 * time.Hour

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
	tc, leaf, err := loadClientCert(t)
	if err != nil {
		return nil, nil, err
	}
	tc.MinVersion = minVersion(t)
	if t.ClientCA != "" {
		pool, err := loadPool(t.ClientCA)
		if err != nil {
			return nil, nil, err
		}
		tc.ClientCAs, tc.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return tc, leaf, nil
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
	endpoint string
	w        *watched[*x509.CertPool]
}

func newCAFile(endpoint, path string, log *slog.Logger, audit func(detail string, err error)) (*caFile, error) {
	w, err := newWatched([]string{path}, func() (*x509.CertPool, error) { return loadPool(path) },
		func(_ *x509.CertPool, reloaded bool) {
			if reloaded {
				log.Info("tls ca reloaded", "endpoint", endpoint, "path", path)
				audit(endpoint+" ca "+path, nil)
			}
		}, func(err error) {
			log.Error("tls ca file changed but does not load; the authorities in force stay", "endpoint", endpoint, "err", err)
			audit(endpoint+" ca", err)
		})
	if err != nil {
		return nil, err
	}
	return &caFile{endpoint: endpoint, w: w}, nil
}

// current returns the pool in force, first loading a changed file when the
// last look is older than certCheckEvery.
func (c *caFile) current(now time.Time) *x509.CertPool { return c.w.current(now) }

// refresh loads the file if it changed since it was last tried.
func (c *caFile) refresh() { c.w.refresh() }

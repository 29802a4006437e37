package gateway

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// senders recognises MLLP senders by their client certificate and knows the
// sending facilities each may use.
type senders struct {
	list []config.MLLPSender
}

// errUnknownCert is returned for a certificate the CA signed that matches no
// configured sender.
var errUnknownCert = errors.New("client certificate matches no configured sender")

// identify names the sender of a mutual-TLS connection. A sender with both
// cert_cn and cert_sha256 must match both.
func (s senders) identify(ci mllp.ConnInfo) (string, error) {
	if ci.TLS == nil || len(ci.TLS.PeerCertificates) == 0 {
		return "", errors.New("no client certificate")
	}
	leaf := ci.TLS.PeerCertificates[0]
	sum := sha256.Sum256(leaf.Raw)
	fp := hex.EncodeToString(sum[:])
	for _, snd := range s.list {
		if snd.CertSHA256 != "" {
			want, _ := config.Fingerprint(snd.CertSHA256)
			if want != fp {
				continue
			}
		}
		if snd.CertCN != "" && snd.CertCN != leaf.Subject.CommonName {
			continue
		}
		return snd.Name, nil
	}
	return "", errUnknownCert
}

// facilities returns the sending facilities name may use; nil allows any.
func (s senders) facilities(name string) []string {
	for _, snd := range s.list {
		if snd.Name == name && len(snd.Facilities) > 0 {
			return snd.Facilities
		}
	}
	return nil
}

// security holds the gateway's access-control state: the sender registry,
// counters of refusals, and a bounded number of audit writes in flight for
// refusals made on the accept path.
type security struct {
	senders  atomic.Pointer[senders] // mllp.senders in force
	refused  *prometheus.CounterVec
	denied   prometheus.Counter
	dropped  prometheus.Counter
	inflight chan struct{}
}

func newSecurity(cfg *config.Config, reg prometheus.Registerer) *security {
	s := &security{
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_mllp_refused_connections_total",
			Help: "MLLP connections refused before their first message, by reason (allow-list, too-many, too-many-from-address, tls-handshake, unknown-identity)."},
			[]string{"reason"}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{Name: "hiegw_mllp_facility_denied_total",
			Help: "MLLP messages rejected because MSH-4 named a facility the sender may not send as."}),
		dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "hiegw_audit_dropped_total",
			Help: "Audit entries of refused connections not written because too many were pending (a flood)."}),
		inflight: make(chan struct{}, 64),
	}
	reg.MustRegister(s.refused, s.denied, s.dropped)
	s.senders.Store(&senders{list: cfg.MLLP.Senders})
	return s
}

// identify names the sender of a mutual-TLS connection by the senders in
// force.
func (s *security) identify(ci mllp.ConnInfo) (string, error) { return s.senders.Load().identify(ci) }

// facilities returns the sending facilities name may use by the senders in
// force; nil allows any.
func (s *security) facilities(name string) []string { return s.senders.Load().facilities(name) }

// onRefuse counts and audits a refused MLLP connection. It never blocks the
// accept loop: past 64 pending writes, entries are counted as dropped.
func (g *Gateway) onRefuse(remote net.Addr, reason string, cause error) {
	g.sec.refused.WithLabelValues(reason).Inc()
	detail := ""
	if cause != nil {
		detail = cause.Error()
	}
	g.auditAsync(store.AuditEntry{Actor: "unknown", Action: "mllp.connect", Target: g.cfg.MLLP.Addr, Outcome: "refused: " + reason,
		Peer: hostOf(remote), Detail: detail})
}

// onSFTPAuthFailure audits a failed SFTP login (never its password).
func (g *Gateway) onSFTPAuthFailure(user, method, peer string) {
	host := peer
	if h, _, err := net.SplitHostPort(peer); err == nil {
		host = h
	}
	g.auditAsync(store.AuditEntry{Actor: "unknown", Action: "sftp.login", Target: user, Outcome: "refused: " + method,
		Peer: host})
}

// auditAsync writes an audit entry without blocking a listener: past 64
// pending writes, entries are counted as dropped.
func (g *Gateway) auditAsync(e store.AuditEntry) {
	select {
	case g.sec.inflight <- struct{}{}:
	default:
		g.sec.dropped.Inc()
		return
	}
	go func() {
		defer func() { <-g.sec.inflight }()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := g.db.Audit(ctx, e); err != nil {
			g.log.Warn("audit write failed", "action", e.Action, "err", err)
		}
	}()
}

// auditDenied records a message refused for its sending facility.
func (g *Gateway) auditDenied(ctx context.Context, sender, peer, envelopeID string) {
	g.sec.denied.Inc()
	err := g.db.Audit(ctx, store.AuditEntry{Actor: sender, Action: "mllp.facility_denied", Target: envelopeID,
		Outcome: "rejected: MSH-4 not registered for the sender", Peer: peer})
	if err != nil {
		g.log.Warn("audit of a denied facility failed", "err", err)
	}
	g.log.Warn("mllp message rejected: sending facility not registered for the sender", "sender", sender, "peer", peer,
		"envelope", envelopeID)
}

func hostOf(a net.Addr) string {
	if a == nil {
		return ""
	}
	h, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return h
}

// apiTokens turns the configured tokens into the API's.
func apiTokens(ts []config.APIToken) []api.Token {
	out := make([]api.Token, 0, len(ts))
	for _, t := range ts {
		h, _ := config.TokenHash(t.Hash) // Validate has checked it
		out = append(out, api.Token{Name: t.Name, SHA256: h, Role: api.Role(t.Role)})
	}
	return out
}

// minVersion is the lowest TLS version a configuration accepts (1.2 unless
// it asks for 1.3).
func minVersion(t config.TLS) uint16 {
	if strings.TrimSpace(t.MinVersion) == "1.3" {
		return tls.VersionTLS13
	}
	return tls.VersionTLS12
}

// logWarnings logs the configuration's security warnings at start-up.
func logWarnings(log *slog.Logger, cfg *config.Config) {
	for _, w := range cfg.Warnings() {
		log.Warn("insecure setting", "warning", w)
	}
}

// auditReload records a reload of mappings or subscriptions (by the file
// watcher or Reload): who is "system", what is the directory or file, the
// outcome ok or refused, and the new version or the error (file and line,
// never message content).
func (g *Gateway) auditReload(action, target, detail string, err error) {
	e := store.AuditEntry{Actor: "system", Action: action, Target: target, Outcome: "ok", Detail: detail}
	if err != nil {
		e.Outcome, e.Detail = "refused", err.Error()
		if len(e.Detail) > 1000 {
			e.Detail = e.Detail[:1000] + "…"
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if aerr := g.db.Audit(ctx, e); aerr != nil {
		g.log.Warn("audit of a reload failed", "action", action, "err", aerr)
	}
}

// Package gateway builds every part of hiegw from the configuration, runs
// them, and shuts them down in order: listeners stop accepting and finish
// what they hold, intake commits what it queued, the pipeline finishes its
// envelopes, the relay flushes the outbox, and the store closes last.
package gateway

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"net/http/pprof"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/appack"
	"github.com/hiegw/hiegw/internal/broker"
	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/journal"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/sftpd"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/hiegw/hiegw/internal/tick"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/crypto/ssh"
)

// Gateway is a running hiegw.
type Gateway struct {
	cfg *config.Config
	log *slog.Logger
	reg *prometheus.Registry

	db       *store.DB
	brk      *broker.Broker
	producer *route.Kafka
	maps     *mapping.Holder
	mapped   *mapCache  // intake's mapping results, reused by processing
	docs     *docCache  // C-CDA documents intake parsed, reused by processing
	files    *fileCheck // checks uploads before they are committed (normalize.go)
	mapState *mappingState
	router   *route.Router
	in       *intake.Intake
	pipe     *pipeline.Pipeline
	identity *pipeline.Identity
	relay    *route.Relay
	acks     *appack.Acks // application acknowledgements (enhanced mode, MSH-16)
	mllpSrv  *mllp.Server
	sftpSrv  atomic.Pointer[sftpd.Server] // nil until there is an account (started at start, or by a reload)
	httpSrv  *http.Server
	pprofSrv *http.Server // debug.pprof_addr; nil when off

	mllpLn, httpLn, pprofLn net.Listener
	certMu                  sync.Mutex
	certs                   []*certFiles                   // on certMu: TLS certificates of listeners and clients, reloaded when their files change (certs.go)
	cas                     []*caFile                      // on certMu: the CA bundles clients verify servers with, likewise
	ackTLS                  map[string]ackTLS              // the application-ACK routes' TLS, by endpoint, kept across reloads
	ackRoutes               []config.AckRoute              // mllp.ack_routes in force
	tokens                  atomic.Pointer[[]api.Token]    // the API's bearer tokens in force
	allow                   atomic.Pointer[allowed]        // mllp.allow in force
	configSource            func() (*config.Config, error) // reads the configuration again (SetConfigSource)
	reloadMu                sync.Mutex                     // one reloadConfig at a time; guards configSource, runErrc and stopping
	runErrc                 chan<- error                   // Run's: a listener started by a reload reports its failure there
	stopping                bool                           // Run is shutting down
	certNotAfter            *prometheus.GaugeVec
	reloadRefused           *prometheus.GaugeVec // hiegw_reload_refused{what}
	sec                     *security            // access control: MLLP senders, refusal counters (senders.go)
	brokerAddr              string

	dirLock *os.File // the data directory's lock: one gateway per directory
	owner   string   // this gateway in leases and claims shared with other replicas
}

// New builds the gateway and binds its listeners; Run serves.
func New(ctx context.Context, cfg *config.Config, log *slog.Logger) (*Gateway, error) {
	g := &Gateway{cfg: cfg, log: log, reg: prometheus.NewRegistry()}
	g.reloadRefused = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_reload_refused",
		Help: "1 while the last change of a file or setting read again was refused and what was in force stays, by what " +
			"(configuration, mllp.allow, mllp.senders, sftp.accounts, subscriptions, tls ENDPOINT); 0 once one is taken."},
		[]string{"what"})
	g.reg.MustRegister(g.reloadRefused)
	g.reloadRefused.WithLabelValues("configuration").Set(0)
	g.sec = newSecurity(cfg, g.reg)
	logWarnings(log, cfg)
	if err := g.build(ctx); err != nil {
		g.closeAll()
		return nil, err
	}
	return g, nil
}

func (g *Gateway) build(ctx context.Context) (err error) {
	cfg, log := g.cfg, g.log
	g.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Which build each replica runs, for dashboards and a mixed-version
	// alert during a rolling upgrade.
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_build_info",
		Help: "Always 1; the labels say which hiegw build runs and with which Go."}, []string{"version", "goversion"})
	info.WithLabelValues(cfg.Version, runtime.Version()).Set(1)
	g.reg.MustRegister(info)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if g.dirLock, err = journal.LockFile(filepath.Join(cfg.DataDir, "hiegw.lock")); err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if g.owner, err = ownerName(cfg.DataDir, journal.LocksAcrossProcesses); err != nil {
		return err
	}
	if g.db, err = store.Open(ctx, store.Options{PostgresDSN: cfg.Store.PostgresDSN, DataDir: cfg.DataDir, Sync: cfg.Store.Sync, Logger: log}); err != nil {
		return err
	}
	if journal.LocksAcrossProcesses {
		// No other process goes by this name: what it still has claimed
		// is a crashed predecessor's, and is taken back now rather than
		// when the claims' leases run out.
		if err := g.db.ReleaseOwnClaims(ctx, g.owner); err != nil {
			return err
		}
	}
	if err := g.startBroker(); err != nil {
		return err
	}
	set, err := mapping.Load(cfg.Mappings.Dir)
	if err != nil {
		return fmt.Errorf("mappings in %s:\n%w", cfg.Mappings.Dir, err)
	}
	g.maps = mapping.NewHolder(set)
	g.mapped = newMapCache(512)
	g.docs = newDocCache(8)
	g.files = newFileCheck(g.maps, g.docs, log)
	g.mapState = newMappingState(g.reg)
	subs := []route.Subscription{route.DefaultSubscription}
	if cfg.Subscriptions.File != "" {
		if subs, err = route.LoadSubscriptions(cfg.Subscriptions.File); err != nil {
			return err
		}
	}
	g.router = route.NewRouter(subs, g.reg)
	g.relay = route.NewRelay(g.db, g.producer, route.RelayOptions{Owner: g.owner, MaxAttempts: cfg.Kafka.MaxAttempts,
		DeadLetterSuffix: cfg.Kafka.DeadLetterSuffix, Registerer: g.reg, Logger: log})
	// The master patient index, with its default settings; every use binds
	// it to a transaction of the store.
	ix, err := mpi.New(sqlstore.New(g.db.SQL()), mpi.DefaultConfig())
	if err != nil {
		return err
	}
	g.identity = pipeline.NewIdentity(ix, g.db, g.router)
	g.identity.OnCommit = g.relay.Notify
	routes, ackTLS, err := g.appAckRoutes(cfg)
	if err != nil {
		return err
	}
	g.ackTLS, g.ackRoutes = ackTLS, cfg.MLLP.AckRoutes
	aa := cfg.MLLP.AppAck
	g.acks = appack.New(g.db, appack.Options{Routes: routes, Owner: g.owner, Registerer: g.reg, Logger: log,
		ReplyTimeout: time.Duration(aa.ReplyTimeout), MinBackoff: time.Duration(aa.MinBackoff), MaxBackoff: time.Duration(aa.MaxBackoff)})
	g.pipe = pipeline.New(g.db, normalizer{maps: g.maps, cache: g.mapped, docs: g.docs, state: g.mapState, log: log}, g.router, pipeline.Options{Lanes: cfg.Pipeline.Lanes,
		OnCommit: g.relay.Notify, Identity: g.identity, AppAcks: g.acks, Lease: processingLease(cfg, g.db, g.owner), Registerer: g.reg, Logger: log})
	g.in = intake.New(g.db, intake.Options{Check: mappingCheck{maps: g.maps, cache: g.mapped, log: log},
		Covers:    func(sender, code, trigger string) bool { return g.maps.Current().Covers(sender, code, trigger) },
		CheckFile: g.files.checkFile, DetectCCDA: ccda.Detect, MaxInFlight: g.db.InsertConcurrency(),
		GatherDelay: gatherDelay(cfg.Intake.GatherDelay),
		OnCommit:    g.pipe.Notify, Registerer: g.reg, Logger: log})
	if err := g.startMLLP(); err != nil {
		return err
	}
	if err := g.startSFTP(); err != nil {
		return err
	}
	if err := g.startHTTP(); err != nil {
		return err
	}
	return g.startPprof()
}

// startPprof binds the runtime profiles' listener when debug.pprof_addr is
// set (Validate has made sure it is loopback).
func (g *Gateway) startPprof() error {
	if g.cfg.Debug.PprofAddr == "" {
		return nil
	}
	ln, err := net.Listen("tcp", g.cfg.Debug.PprofAddr)
	if err != nil {
		return fmt.Errorf("debug.pprof_addr: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	g.pprofSrv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	g.pprofLn = ln
	g.log.Info("pprof listening", "addr", ln.Addr().String())
	return nil
}

// gatherDelay turns intake.gather_delay into intake's option (0s: off).
func gatherDelay(d config.Duration) time.Duration {
	if d == 0 {
		return -1
	}
	return time.Duration(d)
}

// ackTLS is an application-ACK route's TLS settings and the client
// configuration made from them.
type ackTLS struct {
	t     config.TLS
	tc    func() *tls.Config
	files *clientFiles
}

// appAckRoutes are the MLLP senders' return addresses for application
// acknowledgements, by the sender name an envelope carries: a certificate
// sender's name (mllp.senders[].ack_addr, ack_tls), or for senders known by
// their messages, MSH-4 else MSH-3 (mllp.ack_routes). Validate has made sure
// that no name has two. A route whose TLS settings are those of the
// routes in force keeps its client configuration (and certificate watch);
// once the new routes are put in force, commitAckTLS forgets the others.
func (g *Gateway) appAckRoutes(cfg *config.Config) (_ map[string]appack.Route, _ map[string]ackTLS, err error) {
	routes, tlsByEndpoint := map[string]appack.Route{}, map[string]ackTLS{}
	defer func() {
		if err != nil { // what was made for routes that are not put in force
			g.forgetAckTLS(tlsByEndpoint, g.ackTLS)
		}
	}()
	add := func(name, addr string, t config.TLS, setting string) error {
		r := appack.Route{Addr: addr}
		if t.Enabled() {
			endpoint := "mllp ack " + name
			at, ok := g.ackTLS[endpoint]
			if !ok || at.t != t {
				tc, files, err := g.clientTLS(endpoint, t)
				if err != nil {
					return fmt.Errorf("%s: %w", setting, err)
				}
				at = ackTLS{t: t, tc: tc, files: files}
			}
			tlsByEndpoint[endpoint], r.TLS = at, at.tc
		}
		routes[name] = r
		return nil
	}
	for _, s := range cfg.MLLP.Senders {
		if s.AckAddr == "" {
			continue
		}
		if err := add(s.Name, s.AckAddr, s.AckTLS, "mllp.senders "+s.Name+": ack_tls"); err != nil {
			return nil, nil, err
		}
	}
	for _, r := range cfg.MLLP.AckRoutes {
		if err := add(r.Facility, r.Addr, r.TLS, "mllp.ack_routes "+r.Facility+": tls"); err != nil {
			return nil, nil, err
		}
	}
	return routes, tlsByEndpoint, nil
}

// commitAckTLS keeps next as the routes' TLS in force and stops watching
// the certificates of those it no longer holds (or holds changed).
func (g *Gateway) commitAckTLS(next map[string]ackTLS) {
	g.forgetAckTLS(g.ackTLS, next)
	g.ackTLS = next
}

// forgetAckTLS stops watching the files of the routes' TLS in drop that
// keep does not hold the same; an endpoint keep has no certificate for
// loses its expiry series.
func (g *Gateway) forgetAckTLS(drop, keep map[string]ackTLS) {
	for endpoint, at := range drop {
		if k, ok := keep[endpoint]; !ok || k.files != at.files {
			g.unwatch(at.files, !ok || k.files.cert == nil)
		}
	}
}

// processingLease configures the leases by which replicas sharing
// PostgreSQL split processing between them (nil on the embedded store,
// whose data directory one process owns, and when pipeline.lease_ttl is 0).
func processingLease(cfg *config.Config, db *store.DB, owner string) *pipeline.Lease {
	if cfg.Store.PostgresDSN == "" || cfg.Pipeline.LeaseTTL == 0 {
		return nil
	}
	return &pipeline.Lease{Store: db, Owner: owner, TTL: time.Duration(cfg.Pipeline.LeaseTTL)}
}

// ownerName names this gateway in the leases and claims it shares with
// other replicas (processing partitions, outbox and application-ACK
// claims). Where the data directory's lock keeps a second process out, the
// name is the host, the directory and an id made at random when the
// directory was first used and kept in it: the same after a restart, so a
// gateway restarted after a crash takes back at once what it held instead
// of waiting for its leases to expire, yet different for two gateways
// whose hosts and directories are named alike (pods of the same name in
// two namespaces sharing one database). Elsewhere the process id is added.
func ownerName(dataDir string, locked bool) (string, error) {
	h, _ := os.Hostname()
	if abs, err := filepath.Abs(dataDir); err == nil {
		dataDir = abs
	}
	id, err := instanceID(dataDir)
	if err != nil {
		return "", fmt.Errorf("data dir: %w", err)
	}
	name := h + ":" + dataDir + "#" + id
	if !locked {
		name += fmt.Sprintf("/%d", os.Getpid())
	}
	return name, nil
}

// instanceID reads the data directory's id, making it on first use. The
// file is written whole under another name and renamed into place, so a
// crash leaves either no id or a complete one.
func instanceID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "instance-id")
	b, err := os.ReadFile(path)
	if err == nil {
		id := strings.TrimSpace(string(b))
		if len(id) == 0 || len(id) > 64 || strings.ContainsAny(id, " \t/#") {
			return "", fmt.Errorf("%s: not an instance id (delete it to make a new one)", path)
		}
		return id, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return "", err
	}
	var r [8]byte
	if _, err := rand.Read(r[:]); err != nil {
		return "", err
	}
	id := hex.EncodeToString(r[:])
	if err := journal.WriteFileAtomic(path, []byte(id+"\n")); err != nil {
		return "", err
	}
	return id, nil
}

func (g *Gateway) startBroker() error {
	brokers := g.cfg.Kafka.Brokers
	if len(brokers) == 0 {
		b, err := broker.Start(broker.Options{Addr: g.cfg.Broker.Addr, DataDir: filepath.Join(g.cfg.DataDir, "broker"),
			Retention: time.Duration(g.cfg.Broker.Retention), Topics: []string{route.DefaultSubscription.Topic}})
		if err != nil {
			return err
		}
		g.brk = b
		g.brokerAddr = b.Addr()
		brokers = []string{b.Addr()}
		g.log.Info("embedded broker listening", "addr", b.Addr())
	}
	ko := route.KafkaOptions{Brokers: brokers, SASLUser: g.cfg.Kafka.SASL.User, SASLPassword: g.cfg.Kafka.SASL.Password,
		SASLMechanism: g.cfg.Kafka.SASL.Mechanism, Compression: g.cfg.Kafka.Compression}
	if g.cfg.Kafka.TLS.Enabled() {
		tc, _, err := g.clientTLS("kafka", g.cfg.Kafka.TLS)
		if err != nil {
			return fmt.Errorf("kafka.tls: %w", err)
		}
		ko.TLS = tc
	}
	p, err := route.NewKafka(ko)
	if err != nil {
		return err
	}
	g.producer = p
	return nil
}

func (g *Gateway) startMLLP() error {
	c := g.cfg.MLLP
	s := &mllp.Server{
		Handler:         mllp.HandlerFunc(g.serveMLLP),
		IdleTimeout:     time.Duration(c.IdleTimeout),
		ReadTimeout:     time.Duration(c.ReadTimeout),
		WriteTimeout:    30 * time.Second,
		MaxFrameSize:    c.MaxMessageBytes,
		MaxConns:        c.MaxConnections,
		MaxConnsPerAddr: c.MaxConnectionsPerAddress,
		Logger:          g.log,
	}
	if err := g.setAllow(c.Allow); err != nil {
		return err
	}
	s.Allow = func(a net.Addr) bool {
		cur := g.allow.Load()
		return cur.fn == nil || cur.fn(a)
	}
	if c.TLS.Enabled() {
		tc, err := g.serverTLS("mllp", c.TLS)
		if err != nil {
			return fmt.Errorf("mllp.tls: %w (TLS was asked for; hiegw does not fall back to plain TCP)", err)
		}
		s.TLSConfig = tc
	}
	s.OnRefuse = g.onRefuse
	if len(c.Senders) > 0 {
		s.Identify = g.sec.identify
	}
	ln, err := net.Listen("tcp", c.Addr)
	if err != nil {
		return fmt.Errorf("mllp listen: %w", err)
	}
	g.mllpSrv, g.mllpLn = s, ln
	g.registerMLLPMetrics()
	g.log.Info("mllp listening", "addr", ln.Addr().String(), "tls", s.TLSConfig != nil)
	return nil
}

func (g *Gateway) serveMLLP(ctx context.Context, ci mllp.ConnInfo, frame []byte, frameErr error) []byte {
	env := &intake.Envelope{Channel: intake.ChannelMLLP, Peer: ci.Remote.String(), ReceivedAt: time.Now(),
		Raw: append([]byte(nil), frame...), Sender: ci.Sender, Facilities: g.sec.facilities(ci.Sender)}
	if frameErr != nil {
		return g.in.RefuseOversize(ctx, env, frameErr)
	}
	rec, _ := g.in.Accept(ctx, env) // a store failure is counted and logged by intake; rec.ACK says AR
	if rec.Denied {
		g.auditDenied(ctx, ci.Sender, hostOf(ci.Remote), rec.EnvelopeID)
	}
	if g.cfg.Log.LogMessageBodies {
		g.log.Debug("mllp message", "peer", env.Peer, "body", string(frame), "ack", string(rec.ACK))
	}
	return rec.ACK
}

func (g *Gateway) startSFTP() error {
	c := g.cfg.SFTP
	if c.Addr == "" {
		return nil
	}
	if len(c.Accounts) == 0 {
		// Nobody could log in; do not hold the port.
		g.log.Info("sftp listener not started: no sender accounts configured (sftp.accounts)", "addr", c.Addr)
		return nil
	}
	s, err := g.newSFTP(c.Accounts)
	if err != nil {
		return err
	}
	g.useSFTP(s)
	return nil
}

// useSFTP makes s the gateway's SFTP listener, with its metrics.
func (g *Gateway) useSFTP(s *sftpd.Server) {
	g.sftpSrv.Store(s)
	g.registerSFTPMetrics()
}

// newSFTP makes the SFTP listener with the accounts configured, as sftp.*
// configures it.
func (g *Gateway) newSFTP(accts []config.SFTPAccount) (*sftpd.Server, error) {
	accounts, err := sftpAccounts(accts)
	if err != nil {
		return nil, err
	}
	c := g.cfg.SFTP
	hostKey := c.HostKey
	if hostKey == "" {
		hostKey = filepath.Join(g.cfg.DataDir, "sftp_host_ed25519_key")
	}
	maxAuthFailures := c.MaxAuthFailures
	if maxAuthFailures == 0 {
		maxAuthFailures = -1 // sftp.max_auth_failures: 0 turns throttling off; sftpd reads 0 as its default
	}
	s, err := sftpd.New(sftpd.Config{Addr: c.Addr, HostKeyPath: hostKey, Root: filepath.Join(g.cfg.DataDir, "sftp"),
		Accounts: accounts, MaxFileSize: c.MaxFileBytes, MaxFilesPerSession: c.MaxFilesPerSession, Logger: g.log,
		OnAuthFailure: g.onSFTPAuthFailure, MaxAuthFailures: maxAuthFailures,
		AuthFailureWindow: time.Duration(c.AuthFailureWindow), AuthLockout: time.Duration(c.AuthLockout)}, g.in)
	if err != nil {
		return nil, fmt.Errorf("sftp: %w", err)
	}
	return s, nil
}

func readAuthorizedKeys(path string) ([]ssh.PublicKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var keys []ssh.PublicKey
	for len(data) > 0 {
		k, _, _, rest, err := ssh.ParseAuthorizedKey(data)
		if err != nil {
			break
		}
		keys = append(keys, k)
		data = rest
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%s holds no public key", path)
	}
	return keys, nil
}

func (g *Gateway) startHTTP() error {
	checks := []api.Check{
		{Name: "broker", Fn: func(context.Context) error {
			if err := g.relay.LastError(); err != nil {
				return fmt.Errorf("last publish failed: %w", err)
			}
			return nil
		}},
	}
	extra := api.MPIHandlers(g.identity, g.db)
	for pattern, h := range g.mappingRoutes() {
		extra[pattern] = h
	}
	// The analysts' console (static files under /console/ and the JSON it reads).
	for pattern, ch := range api.Console(g.db, api.ConsoleOptions{Mappings: g.maps.Current, Gatherer: g.reg,
		Started: time.Now(), Listeners: g.consoleListeners, Version: g.cfg.Version}) {
		extra[pattern] = ch
	}
	tokens := apiTokens(g.cfg.HTTP.Tokens)
	g.tokens.Store(&tokens)
	h := api.Handler(g.db, api.Options{Gatherer: g.reg, Checks: checks, OnRequeue: g.pipe.Rescan, Pipeline: g.pipe, Logger: g.log,
		Extra: extra, CurrentTokens: func() []api.Token { return *g.tokens.Load() }, Registerer: g.reg})
	ln, err := net.Listen("tcp", g.cfg.HTTP.Addr)
	if err != nil {
		return fmt.Errorf("http listen: %w", err)
	}
	// A client may take a minute to send a request (bodies are at most 1 MB)
	// and keep an idle connection two; responses, such as a long patient
	// record, are not cut short, but one that stops reading is cut off.
	g.httpSrv = &http.Server{Handler: api.CutStalledReaders(h, api.DefaultWriteStall), ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: time.Minute, IdleTimeout: 2 * time.Minute}
	if g.cfg.HTTP.TLS.Enabled() {
		tc, err := g.serverTLS("http", g.cfg.HTTP.TLS)
		if err != nil {
			ln.Close()
			return fmt.Errorf("http.tls: %w", err)
		}
		g.httpSrv.TLSConfig = tc
		ln = tls.NewListener(ln, tc)
	}
	g.httpLn = ln
	g.log.Info("http listening", "addr", ln.Addr().String())
	return nil
}

// consoleListeners describes the bound listeners for the console's status.
func (g *Gateway) consoleListeners() []api.Listener {
	security := func(t config.TLS) string {
		switch {
		case t.ClientCA != "":
			return "mutual TLS"
		case t.Enabled():
			return "TLS"
		}
		return "plain"
	}
	ls := []api.Listener{{Name: "mllp", Addr: g.MLLPAddr(), Security: security(g.cfg.MLLP.TLS)},
		{Name: "http", Addr: g.HTTPAddr(), Security: security(g.cfg.HTTP.TLS)}}
	for i := range ls {
		for _, c := range g.certList() {
			if c.endpoint == ls[i].Name {
				t := c.expires().UTC()
				ls[i].CertNotAfter = &t
			}
		}
	}
	if a := g.SFTPAddr(); a != "" {
		ls = append(ls, api.Listener{Name: "sftp", Addr: a, Security: "SSH"})
	}
	if g.brokerAddr != "" {
		ls = append(ls, api.Listener{Name: "kafka (embedded broker)", Addr: g.brokerAddr, Security: "plain"})
	}
	return ls
}

// MLLPAddr, HTTPAddr, BrokerAddr and SFTPAddr are the bound addresses.
func (g *Gateway) MLLPAddr() string { return g.mllpLn.Addr().String() }
func (g *Gateway) HTTPAddr() string { return g.httpLn.Addr().String() }

// BrokerAddr is the embedded broker's address ("" with real Kafka).
func (g *Gateway) BrokerAddr() string { return g.brokerAddr }

// SFTPAddr is the SFTP listener's address ("" when disabled).
func (g *Gateway) SFTPAddr() string {
	s := g.sftpSrv.Load()
	if s == nil || s.Addr() == nil {
		return ""
	}
	return s.Addr().String()
}

// PprofAddr is the bound address of the runtime profiles' listener, "" when
// debug.pprof_addr is not set.
func (g *Gateway) PprofAddr() string {
	if g.pprofLn == nil {
		return ""
	}
	return g.pprofLn.Addr().String()
}

// DB exposes the store (tests, commands).
func (g *Gateway) DB() *store.DB { return g.db }

// Reload (SIGHUP) reads again the TLS certificate files that changed, the
// configuration's API tokens, MLLP allow-list, senders and application-ACK
// routes and SFTP accounts (reloadConfig), the mapping set and the subscriptions file, and swaps in
// what loads; what does not is refused and what runs stays.
func (g *Gateway) Reload() error {
	g.refreshTLSFiles()
	terr := g.reloadConfig()
	err := g.maps.Reload(g.cfg.Mappings.Dir)
	g.mappingsReloaded(err)
	if g.cfg.Subscriptions.File != "" {
		subs, serr := route.LoadSubscriptions(g.cfg.Subscriptions.File)
		if serr == nil {
			g.router.Swap(subs)
		}
		g.subscriptionsReloaded(len(subs), serr)
		return errors.Join(terr, err, serr)
	}
	return errors.Join(terr, err)
}

// sftpAccounts reads the configured SFTP accounts, their authorized_keys
// files included.
func sftpAccounts(cfg []config.SFTPAccount) ([]sftpd.Account, error) {
	var accounts []sftpd.Account
	for _, a := range cfg {
		acc := sftpd.Account{Name: a.Name, PasswordHash: a.PasswordHash}
		if a.AuthorizedKeys != "" {
			keys, err := readAuthorizedKeys(a.AuthorizedKeys)
			if err != nil {
				return nil, fmt.Errorf("sftp.accounts %s: %w", a.Name, err)
			}
			acc.AuthorizedKeys = keys
		}
		accounts = append(accounts, acc)
	}
	return accounts, nil
}

// reloadSFTPAccounts puts the configured SFTP accounts in force on the
// running listener (an EMR onboarded, a password or key rotated, an account
// closed), audited by name; without a listener (no account at start) it
// starts one for the first account (startSFTPLate).
func (g *Gateway) reloadSFTPAccounts(cfg []config.SFTPAccount) error {
	srv := g.sftpSrv.Load()
	if srv == nil {
		if len(cfg) == 0 || g.cfg.SFTP.Addr == "" {
			return nil
		}
		return g.startSFTPLate(cfg)
	}
	accounts, err := sftpAccounts(cfg)
	if err == nil && len(accounts) == 0 {
		err = errors.New("sftp.accounts: none left; the listener needs at least one (remove sftp.addr and restart to close it)")
	}
	var ch sftpd.AccountChanges
	if err == nil {
		ch, err = srv.SetAccounts(accounts)
	}
	if err != nil {
		return g.refuseReload("sftp.accounts_reload", "sftp.accounts", "sftp accounts reload refused; the accounts in force stay", err)
	}
	if len(ch.Added)+len(ch.Removed)+len(ch.Changed) > 0 {
		detail := fmt.Sprintf("added %v, removed %v, credentials changed %v", ch.Added, ch.Removed, ch.Changed)
		g.log.Info("sftp accounts reloaded", "added", ch.Added, "removed", ch.Removed, "changed", ch.Changed)
		g.auditReload("sftp.accounts_reload", "sftp.accounts", detail, nil)
	}
	return nil
}

// startSFTPLate starts the SFTP listener that did not start for want of an
// account, now that the configuration read again has some (the first EMR
// onboarded); reloadMu is held. A listener that cannot start is refused,
// logged and audited, and the gateway goes on without it.
func (g *Gateway) startSFTPLate(cfg []config.SFTPAccount) error {
	const refused = "sftp listener not started with the accounts read again"
	if g.runErrc == nil || g.stopping {
		return nil // not serving (yet, or any more): the next start takes them
	}
	s, err := g.newSFTP(cfg)
	if err != nil {
		return g.refuseReload("sftp.accounts_reload", "sftp.accounts", refused, err)
	}
	ln, err := net.Listen("tcp", g.cfg.SFTP.Addr)
	if err != nil {
		_ = s.Shutdown(context.Background())
		return g.refuseReload("sftp.accounts_reload", "sftp.accounts", refused, fmt.Errorf("sftp listen: %w", err))
	}
	g.useSFTP(s)
	g.serveSFTP(s, ln, g.runErrc)
	names := make([]string, len(cfg))
	for i, a := range cfg {
		names[i] = a.Name
	}
	g.log.Info("sftp listener started for the accounts read again", "accounts", strings.Join(names, ", "))
	g.auditReload("sftp.accounts_reload", "sftp.accounts", fmt.Sprintf("listener started; added %v", names), nil)
	return nil
}

// serveSFTP serves s on ln (or its configured address when ln is nil)
// until it shuts down; a failure stops the gateway through errc.
func (g *Gateway) serveSFTP(s *sftpd.Server, ln net.Listener, errc chan<- error) {
	go func() {
		var err error
		if ln != nil {
			err = s.Serve(ln)
		} else {
			err = s.ListenAndServe()
		}
		if err != nil && !errors.Is(err, sftpd.ErrServerClosed) {
			errc <- fmt.Errorf("sftp: %w", err)
		}
	}()
}

// allowed is an MLLP allow-list in force: its entries as configured and
// the test made of them (nil: every address).
type allowed struct {
	entries []string
	fn      func(net.Addr) bool
}

// setAllow puts the allow-list entries in force (none: every address).
func (g *Gateway) setAllow(entries []string) error {
	a := &allowed{entries: slices.Clone(entries)}
	if len(entries) > 0 {
		fn, err := allowList(entries)
		if err != nil {
			return err
		}
		a.fn = fn
	}
	g.allow.Store(a)
	return nil
}

// SetConfigSource gives Reload a way to read the configuration again
// (hiegw serve: the same file, environment and flags): the API's tokens,
// the MLLP allow-list, senders and application-ACK routes and the SFTP
// accounts are then taken from it on SIGHUP and when the file changes
// (watchConfig), so that a token can be revoked, a sender onboarded or an
// EMR's account opened without a restart. Other settings still take effect
// at the next start.
func (g *Gateway) SetConfigSource(f func() (*config.Config, error)) {
	g.reloadMu.Lock()
	defer g.reloadMu.Unlock()
	g.configSource = f
}

// reloadConfig reads the configuration again and puts in force its API
// tokens (for the next request), its MLLP allow-list (for the next
// connection), its MLLP senders (for the next message) and application-ACK
// routes, and its SFTP accounts (for the next login); a configuration
// that does not load changes nothing, and each part that does not take
// leaves that part as it was. Changes are logged (token names and roles,
// never hashes) and audited.
func (g *Gateway) reloadConfig() error {
	g.reloadMu.Lock() // SIGHUP and the file watch
	defer g.reloadMu.Unlock()
	if g.configSource == nil || g.tokens.Load() == nil {
		return nil
	}
	cfg, err := g.configSource()
	g.refused("configuration", err)
	if err != nil {
		return g.refuseReload("config.reload", "configuration", "configuration reload refused",
			fmt.Errorf("configuration not reloaded; the API tokens, MLLP allow-list and senders and SFTP accounts in force stay: %w", err))
	}
	next := apiTokens(cfg.HTTP.Tokens)
	if prev := g.tokens.Swap(&next); !slices.Equal(*prev, next) {
		names := make([]string, len(next))
		for i, t := range next {
			names[i] = t.Name + " (" + string(t.Role) + ")"
		}
		g.log.Info("api tokens reloaded", "count", len(next), "tokens", strings.Join(names, ", "))
		g.auditReload("api.tokens_reload", "http.tokens", fmt.Sprintf("%d tokens: %s", len(next), strings.Join(names, ", ")), nil)
	}
	if pending := slices.DeleteFunc(config.Differences(g.cfg, cfg), func(p string) bool { return reloadable[p] }); len(pending) > 0 {
		g.log.Warn("configuration settings changed that take effect only at the next start", "settings", strings.Join(pending, ", "))
	}
	aerr, serr, ferr := g.reloadAllow(cfg.MLLP.Allow), g.reloadSenders(cfg), g.reloadSFTPAccounts(cfg.SFTP.Accounts)
	g.refused("mllp.allow", aerr)
	g.refused("mllp.senders", serr)
	g.refused("sftp.accounts", ferr)
	return errors.Join(aerr, serr, ferr)
}

// refuseReload logs (as msg) and audits (as action on target) a change read
// again and refused, and returns err.
func (g *Gateway) refuseReload(action, target, msg string, err error) error {
	g.log.Error(msg, "err", err)
	g.auditReload(action, target, "", err)
	return err
}

// tlsReloaded counts (as what) and audits a reload of an endpoint's TLS
// files.
func (g *Gateway) tlsReloaded(what, endpoint, detail string, err error) {
	g.refused(what, err)
	g.auditReload("tls.reload", endpoint, detail, err)
}

// refused sets hiegw_reload_refused{what}: 1 after a refused change, 0
// after one taken (or none to take).
func (g *Gateway) refused(what string, err error) {
	v := 0.0
	if err != nil {
		v = 1
	}
	g.reloadRefused.WithLabelValues(what).Set(v)
}

// reloadable are the settings reloadConfig puts in force.
var reloadable = map[string]bool{"http.tokens": true, "mllp.allow": true, "mllp.senders": true, "mllp.ack_routes": true,
	"sftp.accounts": true}

// watchConfig reads the configuration again (reloadConfig) when its file
// changes, looked at every interval: a Kubernetes ConfigMap or Secret
// updated in place, or an operator's edit, takes effect without a SIGHUP.
// A file caught half written does not load and is refused; it is tried
// again when it changes again.
func (g *Gateway) watchConfig(ctx context.Context, interval time.Duration) {
	if g.cfg.File == "" || interval <= 0 {
		return
	}
	stamp := fileStamp(g.cfg.File)
	_ = tick.Every(ctx, interval, false, func() error {
		if now := fileStamp(g.cfg.File); now != stamp {
			stamp = now
			g.log.Info("configuration file changed; reading it again", "file", g.cfg.File)
			_ = g.reloadConfig()
		}
		return nil
	})
}

// reloadSenders puts changed mllp.senders and mllp.ack_routes in force,
// logged and audited: the certificates recognised and the facilities each
// may send as apply from the next message of every open connection (one
// whose certificate no longer names a sender is closed), the return
// addresses for application acknowledgements at once (those kept for want
// of one are queued). Going from no senders to some, or back, changes
// whether the MLLP listener asks for client certificates at all; it is
// refused until a restart, and so is a set whose ack_tls files do not load.
func (g *Gateway) reloadSenders(cfg *config.Config) error {
	cur := g.sec.senders.Load()
	sendersChanged := !sameList(cur.list, cfg.MLLP.Senders)
	if !sendersChanged && sameList(g.ackRoutes, cfg.MLLP.AckRoutes) {
		return nil
	}
	refuse := func(err error) error {
		return g.refuseReload("mllp.senders_reload", "mllp.senders", "mllp senders reload refused",
			fmt.Errorf("mllp senders not reloaded; those in force and their application-ACK routes stay: %w", err))
	}
	if sendersChanged && (len(cur.list) == 0) != (len(cfg.MLLP.Senders) == 0) {
		return refuse(errors.New("adding the first sender or removing the last changes whether the MLLP listener " +
			"asks for client certificates: restart the gateway to apply it"))
	}
	routes, ackTLS, err := g.appAckRoutes(cfg)
	if err != nil {
		return refuse(err)
	}
	if sendersChanged {
		g.sec.senders.Store(&senders{list: cfg.MLLP.Senders})
		if g.mllpSrv != nil {
			g.mllpSrv.Reidentify()
		}
	}
	g.acks.SetRoutes(routes)
	g.commitAckTLS(ackTLS)
	g.ackRoutes = cfg.MLLP.AckRoutes
	names := make([]string, len(cfg.MLLP.Senders))
	for i, s := range cfg.MLLP.Senders {
		names[i] = s.Name
	}
	routed := slices.Sorted(maps.Keys(routes))
	detail := fmt.Sprintf("senders: %s; application-ACK routes: %s", orNone(names), orNone(routed))
	g.log.Info("mllp senders reloaded", "senders", strings.Join(names, ", "), "ack_routes", strings.Join(routed, ", "))
	g.auditReload("mllp.senders_reload", "mllp.senders", detail, nil)
	return nil
}

// sameList reports whether two configuration lists hold the same entries
// (an empty list and none are the same).
func sameList[T any](a, b []T) bool {
	return len(a) == 0 && len(b) == 0 || reflect.DeepEqual(a, b)
}

func orNone(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// reloadAllow puts a changed MLLP allow-list in force, logged and audited.
func (g *Gateway) reloadAllow(entries []string) error {
	cur := g.allow.Load()
	if cur == nil || slices.Equal(cur.entries, entries) {
		return nil
	}
	if err := g.setAllow(entries); err != nil { // Load has validated them; kept for safety
		g.auditReload("mllp.allow_reload", "mllp.allow", "", err)
		return err
	}
	list := strings.Join(entries, ", ")
	if list == "" {
		list = "every address"
	}
	g.log.Info("mllp allow-list reloaded", "allow", list)
	g.auditReload("mllp.allow_reload", "mllp.allow", list, nil)
	return nil
}

// subscriptionsReloaded audits and logs a reload of the subscriptions
// file, n subscriptions or a refusal, with the stack when a defect of
// hiegw refused it.
func (g *Gateway) subscriptionsReloaded(n int, err error) {
	g.refused("subscriptions", err)
	g.auditReload("subscriptions.reload", g.cfg.Subscriptions.File, fmt.Sprintf("%d subscriptions", n), err)
	if err != nil {
		g.log.Error("subscriptions reload refused; the previous set keeps serving", refusalArgs(err)...)
		return
	}
	g.log.Info("subscriptions reloaded", "count", n)
}

// watchCerts looks at the TLS listeners' certificate files every interval,
// so that a renewed certificate is loaded (and its expiry shown in the
// metrics) even before the next connection asks for it.
func (g *Gateway) watchCerts(ctx context.Context, interval time.Duration) {
	if interval <= 0 {
		return
	}
	_ = tick.Every(ctx, interval, false, func() error {
		g.refreshTLSFiles()
		return nil
	})
}

// refusalArgs are the log attributes of a refused reload: the error, and
// the stack when a defect of hiegw, not the file, refused it.
func refusalArgs(err error, args ...any) []any {
	args = append(args, "err", err)
	if stack := defect.StackOf(err); stack != nil {
		args = append(args, "stack", string(stack))
	}
	return args
}

// Run serves until ctx ends, then shuts down gracefully.
func (g *Gateway) Run(ctx context.Context) error {
	errc := make(chan error, 5)
	workCtx, stopWork := context.WithCancel(context.WithoutCancel(ctx))
	var work sync.WaitGroup
	work.Add(3)
	if g.cfg.Pipeline.Paused {
		g.pipe.Pause()
		g.log.Warn("processing is paused (pipeline.paused): messages are received and stored, not processed, until POST /api/v1/pipeline/resume")
	}
	go func() { defer work.Done(); g.pipe.Run(workCtx) }()
	go func() { defer work.Done(); g.acks.Run(workCtx) }()
	relayCtx, stopRelay := context.WithCancel(context.WithoutCancel(ctx))
	go func() { defer work.Done(); g.relay.Run(relayCtx) }()
	go g.maps.Watch(workCtx, g.cfg.Mappings.Dir, time.Duration(g.cfg.Mappings.ReloadInterval), func(_ string, err error) {
		g.mappingsReloaded(err)
	})
	go route.Watch(workCtx, g.cfg.Subscriptions.File, time.Duration(g.cfg.Mappings.ReloadInterval), g.router, g.subscriptionsReloaded)
	go g.watchCerts(workCtx, time.Duration(g.cfg.Mappings.ReloadInterval))
	go g.watchConfig(workCtx, time.Duration(g.cfg.Mappings.ReloadInterval))
	go route.NewLag(g.db, g.reg, g.log).Run(workCtx, 15*time.Second)
	go g.watchJournal(workCtx, time.Second, errc)
	go g.enforceRetention(workCtx, time.Hour)
	go func() {
		if err := g.mllpSrv.Serve(g.mllpLn); err != nil && !errors.Is(err, mllp.ErrServerClosed) {
			errc <- fmt.Errorf("mllp: %w", err)
		}
	}()
	g.reloadMu.Lock() // a reload may start the SFTP listener from now on
	g.runErrc = errc
	if s := g.sftpSrv.Load(); s != nil {
		g.serveSFTP(s, nil, errc)
	}
	g.reloadMu.Unlock()
	go func() {
		if err := g.httpSrv.Serve(g.httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("http: %w", err)
		}
	}()
	if g.pprofSrv != nil {
		go func() {
			if err := g.pprofSrv.Serve(g.pprofLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
				errc <- fmt.Errorf("pprof: %w", err)
			}
		}()
	}
	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
		g.log.Error("shutting down", "err", runErr)
	}
	g.log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := g.mllpSrv.Shutdown(sctx); err != nil {
		g.log.Warn("mllp shutdown", "err", err)
	}
	g.reloadMu.Lock() // no reload starts the SFTP listener any more
	g.stopping = true
	g.reloadMu.Unlock()
	if s := g.sftpSrv.Load(); s != nil {
		if err := s.Shutdown(sctx); err != nil {
			g.log.Warn("sftp shutdown", "err", err)
		}
	}
	g.in.Close()
	stopWork()
	stopRelay()
	work.Wait()
	dctx, dcancel := context.WithTimeout(context.Background(), 10*time.Second)
	if err := g.relay.Drain(dctx); err != nil {
		g.log.Warn("outbox not fully flushed; the rest is published at next start", "err", err)
	}
	dcancel()
	_ = g.httpSrv.Shutdown(sctx)
	if g.pprofSrv != nil {
		_ = g.pprofSrv.Close() // a profile being taken is cut short
	}
	g.closeAll()
	g.log.Info("stopped")
	return runErr
}

// watchJournal stops the gateway when the embedded store's intake journal
// has stopped (a sync failed, or a write for another reason than space: a
// full disk only refuses the messages until space is freed). Such a journal
// refuses every message until the process restarts and recovers it, so the
// gateway exits with the error for its supervisor (systemd, Kubernetes) to
// restart it, rather than staying up and refusing everything.
func (g *Gateway) watchJournal(ctx context.Context, every time.Duration, errc chan<- error) {
	err := tick.Every(ctx, every, false, func() error {
		if err := g.db.JournalStopped(); err != nil {
			return fmt.Errorf("intake journal stopped, a restart recovers what it holds: %w", err)
		}
		return nil
	})
	if err != nil {
		errc <- err
	}
}

func (g *Gateway) closeAll() {
	if g.producer != nil {
		_ = g.producer.Close()
	}
	if g.brk != nil {
		g.brk.Close()
	}
	if g.httpLn != nil {
		g.httpLn.Close()
	}
	if g.pprofLn != nil {
		g.pprofLn.Close()
	}
	if g.mllpLn != nil {
		g.mllpLn.Close()
	}
	if g.db != nil {
		_ = g.db.Close()
	}
	if g.dirLock != nil {
		_ = g.dirLock.Close()
	}
}

func allowList(entries []string) (func(net.Addr) bool, error) {
	var prefixes []netip.Prefix
	for _, e := range entries {
		if p, err := netip.ParsePrefix(e); err == nil {
			prefixes = append(prefixes, p)
			continue
		}
		a, err := netip.ParseAddr(e)
		if err != nil {
			return nil, fmt.Errorf("mllp.allow: %q is neither an address nor a CIDR", e)
		}
		prefixes = append(prefixes, netip.PrefixFrom(a, a.BitLen()))
	}
	return func(addr net.Addr) bool {
		ap, err := netip.ParseAddrPort(addr.String())
		if err != nil {
			return false
		}
		ip := ap.Addr().Unmap()
		for _, p := range prefixes {
			if p.Contains(ip) {
				return true
			}
		}
		return false
	}, nil
}

// serverTLS is the tls.Config of a listener whose certificate and client
// CA are read from t's files, and again when those change (certs.go).
func (g *Gateway) serverTLS(listener string, t config.TLS) (*tls.Config, error) {
	cf, err := g.certFiles(listener, t, loadServerTLS)
	if err != nil {
		return nil, err
	}
	return cf.serverConfig(), nil
}

// clientTLS is a client's TLS (Kafka, application acknowledgements), as a
// function giving each new connection its tls.Config: servers verified
// with the CAs of t.CA in force (the system's roots when empty), and t's
// client certificate, if any, both read again when their files change
// (certs.go); the caller must not change it. It returns what it watches
// too (a field is nil when t has no CA, or no certificate), for a caller
// that may stop using it.
func (g *Gateway) clientTLS(endpoint string, t config.TLS) (func() *tls.Config, *clientFiles, error) {
	base := &tls.Config{MinVersion: minVersion(t)}
	files := &clientFiles{}
	if t.CA != "" {
		ca, err := newCAFile(endpoint, t.CA, g.log, func(detail string, err error) { g.tlsReloaded("tls "+endpoint+" ca", endpoint, detail, err) })
		if err != nil {
			return nil, nil, err
		}
		files.ca = ca
	}
	if t.Cert != "" {
		cf, err := g.certFiles(endpoint, t, loadClientCert)
		if err != nil {
			return nil, nil, err
		}
		files.cert, base.GetClientCertificate = cf, cf.clientCertificate
	}
	g.certMu.Lock()
	if files.ca != nil {
		g.cas = append(g.cas, files.ca)
	}
	g.certMu.Unlock()
	if files.ca == nil {
		return func() *tls.Config { return base }, files, nil // callers clone before they change it
	}
	return func() *tls.Config {
		tc := base.Clone()
		tc.RootCAs = files.ca.current(time.Now())
		return tc
	}, files, nil
}

// clientFiles are what a client's TLS watches: its certificate and its CA
// bundle (each nil when not configured).
type clientFiles struct {
	cert *certFiles
	ca   *caFile
}

// refreshTLSFiles reads again the certificate and CA files that changed.
func (g *Gateway) refreshTLSFiles() {
	g.certMu.Lock()
	certs, cas := slices.Clone(g.certs), slices.Clone(g.cas)
	g.certMu.Unlock()
	for _, c := range certs {
		c.refresh()
	}
	for _, c := range cas {
		c.refresh()
	}
}

// certFiles loads an endpoint's certificate files and keeps them for the
// watcher, the reload and the expiry metric.
func (g *Gateway) certFiles(endpoint string, t config.TLS, load func(config.TLS) (*tls.Config, *x509.Certificate, error)) (*certFiles, error) {
	if g.certNotAfter == nil {
		g.certNotAfter = prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_tls_certificate_not_after_seconds",
			Help: "When the certificate an endpoint (listener or client) presents expires, in Unix seconds."}, []string{"endpoint"})
		g.reg.MustRegister(g.certNotAfter)
	}
	cf, err := newCertFiles(endpoint, t, load, g.log, g.certNotAfter, func(detail string, err error) {
		g.tlsReloaded("tls "+endpoint, endpoint, detail, err)
	})
	if err != nil {
		return nil, err
	}
	g.certMu.Lock()
	g.certs = append(g.certs, cf)
	g.certMu.Unlock()
	return cf, nil
}

// certList is the certificates watched now.
func (g *Gateway) certList() []*certFiles {
	g.certMu.Lock()
	defer g.certMu.Unlock()
	return slices.Clone(g.certs)
}

// unwatch stops watching a client's files (a route removed or changed),
// and when its endpoint is gone (no certificate in the replacement, or none
// at all) removes the endpoint's expiry metric.
func (g *Gateway) unwatch(f *clientFiles, gone bool) {
	g.certMu.Lock()
	defer g.certMu.Unlock()
	g.cas = slices.DeleteFunc(g.cas, func(c *caFile) bool { return c == f.ca })
	if f.ca != nil { // a replacement starts from a CA file that loaded
		g.reloadRefused.DeleteLabelValues("tls " + f.ca.endpoint + " ca")
	}
	if f.cert == nil {
		return
	}
	g.certs = slices.DeleteFunc(g.certs, func(c *certFiles) bool { return c == f.cert })
	if gone {
		g.certNotAfter.DeleteLabelValues(f.cert.endpoint)
		g.reloadRefused.DeleteLabelValues("tls " + f.cert.endpoint)
	}
}

func loadPool(path string) (*x509.CertPool, error) {
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

// enforceRetention removes, at start and every interval, the raw message
// bodies older than store.raw_retention and the published events older
// than store.outbox_retention (both hold PHI); the record and the message
// log stay. Of replicas sharing PostgreSQL, the one holding the
// "retention" lease does it (held for one and a half intervals and renewed
// at each, so another takes over when its holder is gone; given up when it
// stops).
func (g *Gateway) enforceRetention(ctx context.Context, interval time.Duration) {
	if g.cfg.Store.RawRetention <= 0 && g.cfg.Store.OutboxRetention <= 0 {
		return
	}
	defer g.releaseRetention(ctx)
	_ = tick.Every(ctx, interval, true, func() error {
		g.retainOnce(ctx, interval, time.Duration(g.cfg.Store.RawRetention), time.Duration(g.cfg.Store.OutboxRetention))
		return nil
	})
}

// retainOnce runs the purges (raw bodies older than raw, events older than
// outbox; 0 keeps) once if this gateway holds (or takes) the retention
// lease, which it then holds for one and a half intervals.
func (g *Gateway) retainOnce(ctx context.Context, interval, raw, outbox time.Duration) {
	held, holder, err := g.db.HoldLease(ctx, retentionLease, g.owner, interval+interval/2)
	if err != nil {
		if ctx.Err() == nil {
			g.log.Warn("retention purge skipped: its lease could not be taken", "err", err)
		}
		return
	}
	if !held {
		g.log.Debug("retention purge left to the replica holding its lease", "holder", holder)
		return
	}
	g.purge(ctx, "raw message bodies", "store.purge_raw", raw, g.db.PurgeRaw)
	g.purge(ctx, "published events", "store.purge_outbox", outbox, g.db.PurgeOutbox)
}

// releaseRetention gives up the retention lease (when the gateway stops),
// so that another replica takes it at its next round.
func (g *Gateway) releaseRetention(ctx context.Context) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	_ = g.db.ReleaseLease(rctx, retentionLease, g.owner)
}

// retentionLease names the lease of the replica that runs the retention
// purges.
const retentionLease = "retention"

// purge runs one retention: f removes what is older than ret (none when
// ret is 0), which is logged and audited.
func (g *Gateway) purge(ctx context.Context, what, action string, ret time.Duration, f func(context.Context, time.Time) (int64, error)) {
	if ret <= 0 {
		return
	}
	n, err := f(ctx, time.Now().Add(-ret))
	if err != nil && ctx.Err() == nil {
		g.log.Warn("purge of "+what+" failed", "err", err)
	}
	if n > 0 { // also what a purge that failed part of the way removed
		g.log.Info(what+" removed after retention", "count", n, "retention", ret.String())
		_ = g.db.Audit(context.WithoutCancel(ctx), store.AuditEntry{Actor: "system", Action: action, Outcome: "ok",
			Detail: fmt.Sprintf("%d %s older than %s", n, what, ret)})
	}
}

// registerSFTPMetrics exports the SFTP listener's counters.
func (g *Gateway) registerSFTPMetrics() {
	stat := func(name, help string, f func(sftpd.Stats) uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(g.sftpSrv.Load().Stats())) })
	}
	g.reg.MustRegister(
		stat("hiegw_sftp_locked_out_connections_total",
			"SFTP connections closed on accept because their address is locked out after repeated failed logins (sftp.max_auth_failures).",
			func(s sftpd.Stats) uint64 { return s.LockedOut }),
		stat("hiegw_sftp_connections_total", "SFTP connections accepted.", func(s sftpd.Stats) uint64 { return s.Connections }),
		stat("hiegw_sftp_logins_total", "Successful SFTP logins.", func(s sftpd.Stats) uint64 { return s.Logins }),
		stat("hiegw_sftp_auth_failures_total", "Failed SFTP password or public-key attempts.", func(s sftpd.Stats) uint64 { return s.AuthFailures }),
		stat("hiegw_sftp_refused_total", "SFTP requests refused by policy (paths outside the folder, links, exec, forwarding, limits).",
			func(s sftpd.Stats) uint64 { return s.Refused }),
		stat("hiegw_sftp_uploads_total", "SFTP uploads completed with a final name.", func(s sftpd.Stats) uint64 { return s.Uploads }),
		stat("hiegw_sftp_upload_failures_total", "SFTP uploads aborted, too large or failing to write.", func(s sftpd.Stats) uint64 { return s.UploadFailures }),
		stat("hiegw_sftp_files_accepted_total", "Uploaded files committed by intake and moved to processed/.", func(s sftpd.Stats) uint64 { return s.Accepted }),
		stat("hiegw_sftp_files_rejected_total", "Uploaded files rejected and moved to failed/.", func(s sftpd.Stats) uint64 { return s.Rejected }),
		stat("hiegw_sftp_accept_errors_total", "Uploaded files intake could not commit (left in inbox/ and retried).", func(s sftpd.Stats) uint64 { return s.AcceptErrors }),
		stat("hiegw_sftp_panics_total", "SFTP requests failed and connections closed after a panic (a defect of hiegw; the stack is in the error log).",
			func(s sftpd.Stats) uint64 { return s.Panics }),
	)
}

// registerMLLPMetrics exports the MLLP listener's counters.
func (g *Gateway) registerMLLPMetrics() {
	stat := func(f func(mllp.Stats) int64) func() float64 {
		return func() float64 { return float64(f(g.mllpSrv.Stats())) }
	}
	g.reg.MustRegister(
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hiegw_mllp_connections_total",
			Help: "MLLP connections accepted."}, stat(func(s mllp.Stats) int64 { return s.Accepted })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hiegw_mllp_connections_active",
			Help: "MLLP connections open now."}, stat(func(s mllp.Stats) int64 { return s.Active })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hiegw_mllp_frames_total",
			Help: "MLLP frames received (each answered unless the sender asked for no acknowledgement)."}, stat(func(s mllp.Stats) int64 { return s.Frames })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hiegw_mllp_oversize_frames_total",
			Help: "MLLP frames refused for exceeding mllp.max_message_bytes."}, stat(func(s mllp.Stats) int64 { return s.Oversize })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hiegw_mllp_skipped_bytes_total",
			Help: "Bytes received outside MLLP frames and skipped."}, stat(func(s mllp.Stats) int64 { return s.SkippedBytes })),
		prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "hiegw_mllp_panics_total",
			Help: "MLLP connections closed after a panic (a defect of hiegw; the stack is in the log)."}, stat(func(s mllp.Stats) int64 { return s.Panics })),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "hiegw_intake_journal_backlog",
			Help: "Envelopes received through the embedded store's journal and not yet copied into the message log."},
			func() float64 { return float64(g.db.JournalBacklog()) }),
	)
}

// Package sftpd is hiegw's SFTP listener. EMRs that cannot speak MLLP log in
// with a key or a password and drop C-CDA documents and HL7 v2 (batch) files
// into their own inbox/. Each completed upload is handed to intake as one
// Envelope; only after intake has committed it is the file moved to
// processed/ (or to failed/ with a NAME.error.txt when intake rejects it).
//
// A sender sees one folder and nothing else:
//
//	/inbox      write here (the session starts here)
//	/processed  read-only: files intake has committed
//	/failed     read-only: files intake rejected, each with NAME.error.txt
//
// An upload is complete when it is closed without a transfer error, or when a
// temporary name (NAME.part, NAME.tmp, NAME.filepart or a leading dot) is
// renamed to its final name inside inbox/. Files with a final name are written
// to a hidden staging folder and only appear in inbox/ once complete, so a
// crash or an aborted transfer never leaves a partial file where the rescan
// would pick it up.
//
// The package knows transport only: it never looks inside the files.
package sftpd

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/hiegw/hiegw/internal/intake"
)

// Intake commits an envelope durably and answers with a receipt. Accept must
// return only after the envelope is committed; an error means nothing was
// committed and the file will be offered again later.
type Intake interface {
	Accept(ctx context.Context, env *intake.Envelope) (intake.Receipt, error)
}

// ErrServerClosed is returned by Serve and ListenAndServe after Shutdown.
var ErrServerClosed = errors.New("sftpd: server closed")

// Account is one sender allowed to log in. At least one of AuthorizedKeys
// and PasswordHash must be set.
type Account struct {
	Name           string          // login name, also the name of its folder under Config.Root
	AuthorizedKeys []ssh.PublicKey // public keys accepted for this account
	PasswordHash   string          // bcrypt ($2a$, $2b$, $2y$) or argon2id PHC string; never plain text
}

// Config is the listener's configuration, built by the gateway from its own
// configuration file. Zero durations and sizes take the defaults below.
type Config struct {
	Addr               string // listen address for ListenAndServe, e.g. "0.0.0.0:2022"
	HostKeyPath        string // private host key (OpenSSH PEM); an ed25519 key is created, mode 0600, if missing
	Root               string // data directory; each account gets Root/<name>/{inbox,processed,failed}
	Accounts           []Account
	MaxFileSize        int64         // largest accepted upload in bytes (DefaultMaxFileSize)
	MaxFilesPerSession int           // files a connection may open for writing (DefaultMaxFilesPerSession)
	IdleTimeout        time.Duration // a connection silent this long is closed (DefaultIdleTimeout)
	RescanInterval     time.Duration // how often inbox/ is scanned for files to retry (DefaultRescanInterval)
	Logger             *slog.Logger  // slog.Default() if nil
	// OnAuthFailure, when set, is told of every failed login (for the audit
	// log); it never receives the password.
	OnAuthFailure func(user, method, peer string)

	// MaxAuthFailures failed logins from one client address (any port)
	// within AuthFailureWindow lock that address out for AuthLockout: its new
	// connections are closed as soon as they are accepted, before the SSH
	// handshake, and its connections still authenticating fail every further
	// attempt. Authenticated connections are left alone. A successful login
	// forgets the address's failures. Zero takes DefaultMaxAuthFailures; a
	// negative value turns throttling off; at most MaxAuthFailuresLimit.
	MaxAuthFailures   int
	AuthFailureWindow time.Duration // DefaultAuthFailureWindow
	AuthLockout       time.Duration // DefaultAuthLockout
}

// Defaults for the zero values of Config.
const (
	DefaultMaxFileSize        = 64 << 20
	DefaultMaxFilesPerSession = 1000
	DefaultIdleTimeout        = 5 * time.Minute
	DefaultRescanInterval     = time.Minute
	DefaultMaxAuthFailures    = 10
	DefaultAuthFailureWindow  = 10 * time.Minute
	DefaultAuthLockout        = 15 * time.Minute
	// MaxAuthFailuresLimit bounds MaxAuthFailures, and with it the failure
	// times kept per address.
	MaxAuthFailuresLimit = 100
)

const (
	// acceptTimeout bounds one call to Intake.Accept; on timeout the file
	// stays in inbox/ and is retried by the rescan.
	acceptTimeout = time.Minute
	// handshakeTimeout bounds key exchange plus authentication.
	handshakeTimeout = 30 * time.Second
	// maxChannelsPerConn bounds concurrent session channels of a connection.
	maxChannelsPerConn = 8
	// maxPasswordChecks bounds concurrent password verifications, which cost
	// memory (argon2id) and CPU (bcrypt).
	maxPasswordChecks = 2
	// rescanSettle is how long a file in inbox/ must have been left
	// unchanged before the rescan picks it up.
	rescanSettle = time.Second
	// stagingDir holds uploads with a final name until they are complete. It
	// lies inside the account folder but outside what the sender may reach.
	stagingDir = ".upload"
)

// Stats counts what the listener did since it was created. The gateway may
// export them as metrics.
type Stats struct {
	Connections    uint64 // TCP connections accepted
	Logins         uint64 // successful authentications
	AuthFailures   uint64 // failed password or public key attempts
	Refused        uint64 // requests refused by policy: paths outside the folder, links, exec, forwarding, limits
	Uploads        uint64 // uploads completed with a final name (closed cleanly or renamed from a temporary name)
	UploadFailures uint64 // uploads aborted, too large or failing to write; their partial files are discarded
	Accepted       uint64 // files intake committed, moved to processed/
	Rejected       uint64 // files rejected (by intake, or too large when found by the rescan), moved to failed/
	AcceptErrors   uint64 // intake errors; the file stays in inbox/ and is retried
	LockedOut      uint64 // connections closed on accept because their address is locked out (not in Connections)
	Panics         uint64 // requests failed and connections closed after a panic (a defect of hiegw)
}

type counters struct {
	connections, logins, authFailures, refused, uploads, uploadFailures,
	accepted, rejected, acceptErrors, lockedOut, panics atomic.Uint64
}

// Server is an SFTP listener. Create it with New.
type Server struct {
	cfg     Config
	log     *slog.Logger
	in      Intake
	sshCfg  *ssh.ServerConfig
	hostKey ssh.Signer
	fp      string
	// accounts is the account set in force, replaced whole by SetAccounts;
	// opened lists every account whose folder was opened, removed ones
	// included (their sessions may still run), for closing at the end.
	accounts atomic.Pointer[map[string]*account]
	acctMu   sync.Mutex // serialises SetAccounts; guards opened
	opened   []*account
	dummy    *passwordHash // verified for unknown users so timing does not reveal account names
	pwSem    chan struct{}
	throttle *throttle // nil when throttling is off
	stats    counters

	baseCtx    context.Context // cancelled when Shutdown gives up waiting
	cancelBase context.CancelFunc

	closing    atomic.Bool
	stopRescan chan struct{}
	startOnce  sync.Once
	stopOnce   sync.Once

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	addr      net.Addr

	wg       sync.WaitGroup // connection handlers
	rescanWG sync.WaitGroup
}

var accountName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)

// New checks the configuration, loads or creates the host key and creates
// each account's folders. It does not listen yet.
func New(cfg Config, in Intake) (*Server, error) {
	if in == nil {
		return nil, errors.New("sftpd: new: intake is nil")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MaxFileSize <= 0 {
		cfg.MaxFileSize = DefaultMaxFileSize
	}
	if cfg.MaxFilesPerSession <= 0 {
		cfg.MaxFilesPerSession = DefaultMaxFilesPerSession
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.RescanInterval <= 0 {
		cfg.RescanInterval = DefaultRescanInterval
	}
	if cfg.MaxAuthFailures == 0 {
		cfg.MaxAuthFailures = DefaultMaxAuthFailures
	}
	if cfg.MaxAuthFailures > MaxAuthFailuresLimit {
		return nil, fmt.Errorf("sftpd: new: MaxAuthFailures: %d is above %d", cfg.MaxAuthFailures, MaxAuthFailuresLimit)
	}
	if cfg.AuthFailureWindow <= 0 {
		cfg.AuthFailureWindow = DefaultAuthFailureWindow
	}
	if cfg.AuthLockout <= 0 {
		cfg.AuthLockout = DefaultAuthLockout
	}
	if cfg.Root == "" {
		return nil, errors.New("sftpd: new: Root is empty")
	}
	if cfg.HostKeyPath == "" {
		return nil, errors.New("sftpd: new: HostKeyPath is empty")
	}
	if len(cfg.Accounts) == 0 {
		return nil, errors.New("sftpd: new: no accounts")
	}

	s := &Server{
		cfg:        cfg,
		log:        cfg.Logger,
		in:         in,
		pwSem:      make(chan struct{}, maxPasswordChecks),
		stopRescan: make(chan struct{}),
		listeners:  make(map[net.Listener]struct{}),
		conns:      make(map[*conn]struct{}),
	}
	if cfg.MaxAuthFailures > 0 {
		s.throttle = newThrottle(cfg.MaxAuthFailures, cfg.AuthFailureWindow, cfg.AuthLockout, time.Now)
	}
	accounts := make(map[string]*account, len(cfg.Accounts))
	for i, a := range cfg.Accounts {
		acct, err := newAccount(a)
		if err != nil {
			return nil, fmt.Errorf("sftpd: new: Accounts[%d]: %w", i, err)
		}
		if _, dup := accounts[acct.name]; dup {
			return nil, fmt.Errorf("sftpd: new: Accounts[%d].Name: duplicate account name", i)
		}
		accounts[acct.name] = acct
		if pw := acct.creds.Load().password; s.dummy == nil && pw != nil {
			s.dummy = pw
		}
	}
	s.accounts.Store(&accounts)

	signer, created, err := loadOrCreateHostKey(cfg.HostKeyPath)
	if err != nil {
		return nil, fmt.Errorf("sftpd: new: host key: %w", err)
	}
	s.hostKey = signer
	s.fp = ssh.FingerprintSHA256(signer.PublicKey())
	if created {
		s.log.Info("sftp host key created", "path", cfg.HostKeyPath, "fingerprint", s.fp)
	}

	if err := os.MkdirAll(cfg.Root, 0o750); err != nil {
		return nil, fmt.Errorf("sftpd: new: create root: %w", err)
	}
	for _, a := range accounts {
		if err := a.open(filepath.Join(cfg.Root, a.name)); err != nil {
			s.closeRoots()
			return nil, fmt.Errorf("sftpd: new: account %s: %w", a.name, err)
		}
		s.opened = append(s.opened, a)
	}

	s.sshCfg = &ssh.ServerConfig{
		ServerVersion:     "SSH-2.0-hiegw",
		PasswordCallback:  s.checkPassword,
		PublicKeyCallback: s.checkPublicKey,
		AuthLogCallback:   s.logAuth,
	}
	s.sshCfg.AddHostKey(signer)
	s.baseCtx, s.cancelBase = context.WithCancel(context.Background())
	return s, nil
}

// HostKeyFingerprint returns the SHA256 fingerprint of the host key, as
// OpenSSH prints it ("SHA256:...").
func (s *Server) HostKeyFingerprint() string { return s.fp }

// Addr returns the address of the first listener Serve was given, or nil
// before Serve.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Stats returns a snapshot of the counters.
func (s *Server) Stats() Stats {
	c := &s.stats
	return Stats{
		Connections:    c.connections.Load(),
		Logins:         c.logins.Load(),
		AuthFailures:   c.authFailures.Load(),
		Refused:        c.refused.Load(),
		Uploads:        c.uploads.Load(),
		UploadFailures: c.uploadFailures.Load(),
		Accepted:       c.accepted.Load(),
		Rejected:       c.rejected.Load(),
		AcceptErrors:   c.acceptErrors.Load(),
		LockedOut:      c.lockedOut.Load(),
		Panics:         c.panics.Load(),
	}
}

// ListenAndServe listens on Config.Addr and serves until Shutdown.
func (s *Server) ListenAndServe() error {
	if s.cfg.Addr == "" {
		return errors.New("sftpd: listen: Addr is empty")
	}
	if s.closing.Load() {
		return ErrServerClosed
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("sftpd: listen: %w", err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown, then returns
// ErrServerClosed. The first call also starts the background rescan of every
// inbox/. Serve closes ln when it returns.
func (s *Server) Serve(ln net.Listener) error {
	if !s.trackListener(ln, true) {
		ln.Close()
		return ErrServerClosed
	}
	defer s.trackListener(ln, false)
	defer ln.Close()

	s.startOnce.Do(func() {
		s.rescanWG.Add(1)
		go s.rescanLoop()
	})
	s.log.Info("sftp listening", "addr", ln.Addr().String(), "host_key", s.fp)

	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			if transientAccept(err) {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.log.Warn("sftp accept failed; retrying", "err", err, "delay", delay)
				time.Sleep(delay)
				continue
			}
			return fmt.Errorf("sftpd: accept: %w", err)
		}
		delay = 0
		if s.lockedOut(nc.RemoteAddr()) {
			s.stats.lockedOut.Add(1)
			s.log.Debug("sftp connection refused: address locked out", "peer", nc.RemoteAddr().String())
			nc.Close()
			continue
		}
		s.wg.Add(1)
		go s.handleConn(nc)
	}
}

// Shutdown stops accepting connections and the rescan, closes idle
// connections at once and the others as soon as their open uploads are
// closed (and handed to intake). If ctx ends first, every connection is
// closed, uploads still open are discarded, calls to intake in progress are
// cancelled, and ctx's error is returned.
func (s *Server) Shutdown(ctx context.Context) error {
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stopRescan) })

	rescanDone := make(chan struct{})
	go func() { s.rescanWG.Wait(); close(rescanDone) }()

	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		if s.closeIdle() {
			select {
			case <-rescanDone:
				s.wg.Wait()
				s.closeRoots()
				return nil
			default:
			}
		}
		select {
		case <-ctx.Done():
			s.mu.Lock()
			for c := range s.conns {
				c.nc.Close()
			}
			s.mu.Unlock()
			s.cancelBase()
			return fmt.Errorf("sftpd: shutdown: %w", ctx.Err())
		case <-tick.C:
		}
	}
}

// closeIdle closes connections without open uploads and reports whether no
// connection is left.
func (s *Server) closeIdle() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for c := range s.conns {
		if c.busy.Load() == 0 {
			c.nc.Close()
		}
	}
	return len(s.conns) == 0
}

func (s *Server) closeRoots() {
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	for _, a := range s.opened {
		if a.root != nil {
			a.root.Close()
		}
	}
}

// openedAccount returns the latest account called name whose folder was
// opened (in force or removed), or nil; s.acctMu is held.
func (s *Server) openedAccount(name string) *account {
	for _, a := range slices.Backward(s.opened) {
		if a.name == name {
			return a
		}
	}
	return nil
}

// account returns the account called name in the set in force, or nil.
func (s *Server) account(name string) *account { return (*s.accounts.Load())[name] }

// accountList returns the accounts in force, in name order.
func (s *Server) accountList() []*account {
	m := *s.accounts.Load()
	out := make([]*account, 0, len(m))
	for _, name := range slices.Sorted(maps.Keys(m)) {
		out = append(out, m[name])
	}
	return out
}

// AccountChanges says what SetAccounts changed, by account name.
type AccountChanges struct {
	Added, Removed, Changed []string
}

// SetAccounts puts a new set of accounts in force while the server runs,
// as New checks them: an added account's folders are created and it may
// log in at once; a removed one may not log in again, and its sessions
// still open end as they would; an account whose password hash or keys
// changed logs in with the new ones only. Its folders and files stay, and
// the same folder is kept by name, so uploads under way are unaffected; an
// account removed and added again is the same account as before (one
// folder, one lock for its pickups). On an error nothing changes.
func (s *Server) SetAccounts(accts []Account) (AccountChanges, error) {
	s.acctMu.Lock()
	defer s.acctMu.Unlock()
	cur := *s.accounts.Load()
	next := make(map[string]*account, len(accts))
	creds := make(map[string]*credentials, len(accts))
	var ch AccountChanges
	var fresh []*account
	fail := func(err error) (AccountChanges, error) {
		for _, a := range fresh {
			if a.root != nil {
				a.root.Close()
			}
		}
		return AccountChanges{}, err
	}
	for i, a := range accts {
		if _, dup := next[a.Name]; dup {
			return fail(fmt.Errorf("sftpd: accounts[%d].Name: duplicate account name", i))
		}
		// An account in force stays the same account; so does one removed
		// earlier and back now, so that its sessions still open and the new
		// ones share one folder and its lock. (The account in force under a
		// name is the latest opened under it.)
		if acct := s.openedAccount(a.Name); acct != nil && (cur[a.Name] == acct || acct.sameFolder(filepath.Join(s.cfg.Root, a.Name))) {
			c, err := newCredentials(a)
			if err != nil {
				return fail(fmt.Errorf("sftpd: accounts[%d]: %w", i, err))
			}
			switch {
			case cur[a.Name] == nil:
				ch.Added = append(ch.Added, a.Name)
			case c.source != acct.creds.Load().source:
				ch.Changed = append(ch.Changed, a.Name)
			}
			next[a.Name], creds[a.Name] = acct, c
			continue
		}
		acct, err := newAccount(a)
		if err != nil {
			return fail(fmt.Errorf("sftpd: accounts[%d]: %w", i, err))
		}
		if err := acct.open(filepath.Join(s.cfg.Root, acct.name)); err != nil {
			return fail(fmt.Errorf("sftpd: account %s: %w", acct.name, err))
		}
		fresh = append(fresh, acct)
		next[a.Name] = acct
		ch.Added = append(ch.Added, a.Name)
	}
	if len(next) == 0 {
		return fail(errors.New("sftpd: no accounts"))
	}
	for name := range cur {
		if next[name] == nil {
			ch.Removed = append(ch.Removed, name)
		}
	}
	for name, c := range creds {
		next[name].creds.Store(c)
	}
	s.opened = append(s.opened, fresh...)
	s.accounts.Store(&next)
	slices.Sort(ch.Removed)
	return ch, nil
}

func (s *Server) trackListener(ln net.Listener, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.listeners[ln] = struct{}{}
		if s.addr == nil {
			s.addr = ln.Addr()
		}
		return true
	}
	delete(s.listeners, ln)
	return true
}

func (s *Server) trackConn(c *conn, add bool) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		if s.closing.Load() {
			return false
		}
		s.conns[c] = struct{}{}
		return true
	}
	delete(s.conns, c)
	return true
}

// transientAccept reports whether an Accept error may go away by itself
// (too many open files, a connection reset before it was accepted).
func transientAccept(err error) bool {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) || errors.Is(err, syscall.ECONNABORTED)
}

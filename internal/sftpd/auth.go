package sftpd

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// Keys of ssh.Permissions.Extensions set by the authentication callbacks.
const (
	extAccount = "hiegw-account"
	extMethod  = "hiegw-method"
)

var errAuth = errors.New("sftpd: authentication failed")

// passwordHash verifies passwords against a bcrypt hash or an argon2id PHC
// string. It never holds the password itself.
type passwordHash struct {
	bcrypt []byte // set for bcrypt

	// argon2id parameters and digest
	salt, key    []byte
	time, memory uint32
	threads      uint8
}

// parsePasswordHash accepts "$2a$", "$2b$" and "$2y$" bcrypt hashes and
// "$argon2id$v=19$m=...,t=...,p=...$salt$hash" PHC strings. Its errors never
// contain the hash.
func parsePasswordHash(h string) (*passwordHash, error) {
	switch {
	case strings.HasPrefix(h, "$2a$"), strings.HasPrefix(h, "$2b$"), strings.HasPrefix(h, "$2y$"):
		if _, err := bcrypt.Cost([]byte(h)); err != nil {
			return nil, errors.New("malformed bcrypt hash")
		}
		return &passwordHash{bcrypt: []byte(h)}, nil
	case strings.HasPrefix(h, "$argon2id$"):
		return parseArgon2id(h)
	case h == "":
		return nil, errors.New("empty hash")
	default:
		return nil, errors.New("unsupported hash format (want bcrypt $2a$/$2b$/$2y$ or $argon2id$)")
	}
}

func parseArgon2id(h string) (*passwordHash, error) {
	// "", "argon2id", "v=19", "m=65536,t=3,p=4", salt, hash
	parts := strings.Split(h, "$")
	if len(parts) != 6 {
		return nil, errors.New("malformed argon2id hash: want $argon2id$v=19$m=M,t=T,p=P$SALT$HASH")
	}
	if parts[2] != "v=19" {
		return nil, errors.New("malformed argon2id hash: unsupported version (want v=19)")
	}
	p := &passwordHash{}
	var seen int
	for _, kv := range strings.Split(parts[3], ",") {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			return nil, errors.New("malformed argon2id hash: bad parameter list")
		}
		n, err := strconv.ParseUint(v, 10, 32)
		if err != nil || n == 0 {
			return nil, fmt.Errorf("malformed argon2id hash: bad value of parameter %q", k)
		}
		switch k {
		case "m":
			p.memory = uint32(n)
			seen |= 1
		case "t":
			p.time = uint32(n)
			seen |= 2
		case "p":
			if n > 255 {
				return nil, errors.New("malformed argon2id hash: parallelism above 255")
			}
			p.threads = uint8(n)
			seen |= 4
		default:
			return nil, fmt.Errorf("malformed argon2id hash: unknown parameter %q", k)
		}
	}
	if seen != 7 {
		return nil, errors.New("malformed argon2id hash: m, t and p are all required")
	}
	var err error
	if p.salt, err = decodeB64(parts[4]); err != nil || len(p.salt) < 8 {
		return nil, errors.New("malformed argon2id hash: bad salt")
	}
	if p.key, err = decodeB64(parts[5]); err != nil || len(p.key) < 16 {
		return nil, errors.New("malformed argon2id hash: bad digest")
	}
	return p, nil
}

func decodeB64(s string) ([]byte, error) {
	if b, err := base64.RawStdEncoding.DecodeString(s); err == nil {
		return b, nil
	}
	return base64.StdEncoding.DecodeString(s)
}

// verify reports whether password matches, in time independent of where
// they differ.
func (p *passwordHash) verify(password []byte) bool {
	if p.bcrypt != nil {
		return bcrypt.CompareHashAndPassword(p.bcrypt, password) == nil
	}
	got := argon2.IDKey(password, p.salt, p.time, p.memory, p.threads, uint32(len(p.key)))
	return subtle.ConstantTimeCompare(got, p.key) == 1
}

func (s *Server) checkPassword(c ssh.ConnMetadata, password []byte) (*ssh.Permissions, error) {
	s.pwSem <- struct{}{}
	defer func() { <-s.pwSem }()
	// Checked once the turn has come: attempts queued here when the address
	// got locked cost no hash.
	if s.lockedOut(c.RemoteAddr()) {
		return nil, errAuth
	}
	a := s.account(c.User())
	var pw *passwordHash
	if a != nil {
		pw = a.creds.Load().password
	}
	if pw == nil {
		if s.dummy != nil {
			s.dummy.verify(password)
		}
		return nil, errAuth
	}
	if !pw.verify(password) {
		return nil, errAuth
	}
	return permissions(a, "password"), nil
}

func (s *Server) checkPublicKey(c ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	if s.lockedOut(c.RemoteAddr()) {
		return nil, errAuth
	}
	a := s.account(c.User())
	if a == nil {
		return nil, errAuth
	}
	if _, ok := a.creds.Load().keys[string(key.Marshal())]; !ok {
		return nil, errAuth
	}
	return permissions(a, "publickey"), nil
}

func permissions(a *account, method string) *ssh.Permissions {
	return &ssh.Permissions{Extensions: map[string]string{extAccount: a.name, extMethod: method}}
}

// logAuth logs failed attempts at info. It is given the method and the
// outcome only: the password never reaches it.
func (s *Server) logAuth(c ssh.ConnMetadata, method string, err error) {
	if err == nil || method == "none" {
		return
	}
	var partial *ssh.PartialSuccessError
	if errors.As(err, &partial) {
		return
	}
	s.stats.authFailures.Add(1)
	s.log.Info("sftp authentication failed", "user", c.User(), "method", method, "peer", c.RemoteAddr().String())
	if s.cfg.OnAuthFailure != nil {
		s.cfg.OnAuthFailure(c.User(), method, c.RemoteAddr().String())
	}
	s.authFailed(c.RemoteAddr())
}

// lockedOut reports whether the address of a is locked out after repeated
// failed logins.
func (s *Server) lockedOut(a net.Addr) bool {
	if s.throttle == nil {
		return false
	}
	ip, ok := peerAddr(a)
	if !ok {
		return false
	}
	locked, rel := s.throttle.isLocked(ip)
	s.logReleases(rel)
	return locked
}

// authFailed counts a failed login against the address of a, and logs at
// warn when that failure locks the address out. Addresses are not PHI; user
// names stay out of this line.
func (s *Server) authFailed(a net.Addr) {
	if s.throttle == nil {
		return
	}
	ip, ok := peerAddr(a)
	if !ok {
		return
	}
	ev, rel := s.throttle.fail(ip)
	s.logReleases(rel)
	if ev != nil {
		s.log.Warn("sftp address locked out after repeated authentication failures", "addr", ev.addr.String(),
			"failures", ev.failures, "window", s.throttle.window.String(), "until", ev.until.UTC().Format(time.RFC3339))
	}
}

// authSucceeded forgets the failures of the address of a.
func (s *Server) authSucceeded(a net.Addr) {
	if s.throttle == nil {
		return
	}
	if ip, ok := peerAddr(a); ok {
		s.logReleases(s.throttle.success(ip))
	}
}

func (s *Server) logReleases(rel []release) {
	for _, r := range rel {
		s.log.Info("sftp address released from lockout", "addr", r.addr.String(), "locked_until", r.until.UTC().Format(time.RFC3339))
	}
}

// loadOrCreateHostKey reads an OpenSSH private key from path, or creates an
// ed25519 key there (mode 0600) when the file does not exist.
func loadOrCreateHostKey(path string) (signer ssh.Signer, created bool, err error) {
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		return nil, false, fmt.Errorf("%s is readable by other users (mode %v); want 0600", path, fi.Mode().Perm())
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		b, err = createHostKey(path)
		if err == nil {
			created = true
		} else if errors.Is(err, fs.ErrExist) {
			// another process created it first
			b, err = os.ReadFile(path)
			created = false
		}
	}
	if err != nil {
		return nil, false, err
	}
	signer, err = ssh.ParsePrivateKey(b)
	if err != nil {
		return nil, false, fmt.Errorf("parse %s: %w", path, err)
	}
	return signer, created, nil
}

func createHostKey(path string) ([]byte, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "hiegw sftp host key")
	if err != nil {
		return nil, fmt.Errorf("encode: %w", err)
	}
	b := pem.EncodeToMemory(block)
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("create directory: %w", err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("write %s: %w", path, err)
	}
	return b, nil
}

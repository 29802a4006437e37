package sftpd

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/argon2"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/hiegw/hiegw/internal/intake"
)

// fakeIntake records every envelope it is given; acceptFn decides the answer
// (received when nil).
type fakeIntake struct {
	mu       sync.Mutex
	envs     []intake.Envelope
	acceptFn func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error)
}

var _ Intake = (*fakeIntake)(nil)

func (f *fakeIntake) Accept(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
	f.mu.Lock()
	cp := *env
	cp.Raw = bytes.Clone(env.Raw)
	f.envs = append(f.envs, cp)
	n := len(f.envs)
	fn := f.acceptFn
	f.mu.Unlock()
	if fn != nil {
		return fn(ctx, env)
	}
	return intake.Receipt{EnvelopeID: fmt.Sprintf("env-%d", n), Status: intake.StatusReceived}, nil
}

func (f *fakeIntake) setAccept(fn func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error)) {
	f.mu.Lock()
	f.acceptFn = fn
	f.mu.Unlock()
}

func (f *fakeIntake) envelopes() []intake.Envelope {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]intake.Envelope(nil), f.envs...)
}

// bySender returns the envelopes of one sender.
func (f *fakeIntake) bySender(sender string) []intake.Envelope {
	var out []intake.Envelope
	for _, e := range f.envelopes() {
		if e.Sender == sender {
			out = append(out, e)
		}
	}
	return out
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

const (
	carolPassword = "carol-correct-horse"
	davePassword  = "dave-battery-staple"
)

// harness runs a server on a loopback port with four accounts: alice and
// bob (keys), carol (bcrypt password) and dave (argon2id password).
type harness struct {
	t        *testing.T
	srv      *Server
	cfg      Config
	in       *fakeIntake
	logs     *syncBuffer
	keys     map[string]ssh.Signer
	addr     string
	serveErr chan error
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	h := newStoppedHarness(t, mod)
	h.start()
	return h
}

// newStoppedHarness builds the server but does not serve yet.
func newStoppedHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	dir := t.TempDir()
	h := &harness{t: t, in: &fakeIntake{}, logs: &syncBuffer{}, keys: map[string]ssh.Signer{}}
	for _, name := range []string{"alice", "bob", "mallory"} {
		h.keys[name] = newSigner(t)
	}
	bc, err := bcrypt.GenerateFromPassword([]byte(carolPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	h.cfg = Config{
		HostKeyPath: filepath.Join(dir, "keys", "host_ed25519"),
		Root:        filepath.Join(dir, "data"),
		Accounts: []Account{
			{Name: "alice", AuthorizedKeys: []ssh.PublicKey{h.keys["alice"].PublicKey()}},
			{Name: "bob", AuthorizedKeys: []ssh.PublicKey{h.keys["bob"].PublicKey()}},
			{Name: "carol", PasswordHash: string(bc)},
			{Name: "dave", PasswordHash: argon2idHash(davePassword)},
		},
		RescanInterval: time.Hour,
		Logger:         slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if mod != nil {
		mod(&h.cfg)
	}
	srv, err := New(h.cfg, h.in)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	h.srv = srv
	if os.Getenv("SFTPD_TEST_LOGS") != "" {
		t.Cleanup(func() { t.Logf("server log:\n%s", h.logs.String()) })
	}
	return h
}

func (h *harness) start() {
	t := h.t
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h.addr = ln.Addr().String()
	h.serveErr = make(chan error, 1)
	go func() { h.serveErr <- h.srv.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		h.srv.Shutdown(ctx)
		if err := <-h.serveErr; !errors.Is(err, ErrServerClosed) {
			t.Errorf("Serve returned %v, want ErrServerClosed", err)
		}
	})
}

func argon2idHash(password string) string {
	salt := []byte("0123456789abcdef")
	key := argon2.IDKey([]byte(password), salt, 1, 8*1024, 1, 32)
	return fmt.Sprintf("$argon2id$v=19$m=%d,t=%d,p=%d$%s$%s", 8*1024, 1, 1,
		base64.RawStdEncoding.EncodeToString(salt), base64.RawStdEncoding.EncodeToString(key))
}

func newSigner(t testing.TB) ssh.Signer {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func (h *harness) clientConfig(user string, auth ...ssh.AuthMethod) *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            user,
		Auth:            auth,
		HostKeyCallback: ssh.FixedHostKey(h.srv.hostKey.PublicKey()),
		Timeout:         10 * time.Second,
	}
}

// dial logs in with the given methods, or with user's key when none given.
func (h *harness) dial(user string, auth ...ssh.AuthMethod) (*ssh.Client, error) {
	if len(auth) == 0 {
		auth = []ssh.AuthMethod{ssh.PublicKeys(h.keys[user])}
	}
	return ssh.Dial("tcp", h.addr, h.clientConfig(user, auth...))
}

// sftp opens an SFTP session as user with user's key; closed at cleanup.
func (h *harness) sftp(user string, auth ...ssh.AuthMethod) *sftp.Client {
	h.t.Helper()
	sc, err := h.dial(user, auth...)
	if err != nil {
		h.t.Fatalf("dial as %s: %v", user, err)
	}
	c, err := sftp.NewClient(sc)
	if err != nil {
		sc.Close()
		h.t.Fatalf("sftp as %s: %v", user, err)
	}
	h.t.Cleanup(func() { c.Close(); sc.Close() })
	return c
}

// dir returns the host path of an account's folder.
func (h *harness) dir(account, folder string) string {
	return filepath.Join(h.cfg.Root, account, folder)
}

// files lists regular file names in an account folder, sorted.
func (h *harness) files(account, folder string) []string {
	h.t.Helper()
	entries, err := os.ReadDir(h.dir(account, folder))
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	sort.Strings(out)
	return out
}

func (h *harness) readFile(account, folder, name string) []byte {
	h.t.Helper()
	b, err := os.ReadFile(filepath.Join(h.dir(account, folder), name))
	if err != nil {
		h.t.Fatal(err)
	}
	return b
}

// senderWorks checks that a fresh connection of another sender can still
// upload a file that ends in its processed/ folder.
func (h *harness) senderWorks(user string) {
	h.t.Helper()
	c := h.sftp(user)
	name := fmt.Sprintf("check-%d.hl7", time.Now().UnixNano())
	data := []byte("MSH|^~\\&|CHECK\r")
	if err := put(c, name, data); err != nil {
		h.t.Fatalf("%s cannot upload any more: %v", user, err)
	}
	got := h.readFile(user, folderProcessed, name)
	if !bytes.Equal(got, data) {
		h.t.Fatalf("%s: processed/%s holds %q, want %q", user, name, got, data)
	}
}

// put uploads data to path with one Create, Write and Close.
func put(c *sftp.Client, path string, data []byte) error {
	f, err := c.Create(path)
	if err != nil {
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// waitFor polls cond until it holds, failing the test after a generous
// deadline; it never asserts how long anything took.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// sample returns the small HL7 v2 message kept in testdata.
func sample(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/adt_a31_v25_ipf_pixupdate.hl7")
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const corpusDir = "../../../shared/corpus"

// corpusFiles returns the files of the shared corpus under sub, skipping
// the test when the corpus is absent.
func corpusFiles(t testing.TB, sub string) []string {
	t.Helper()
	dir := filepath.Join(corpusDir, sub)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		t.Skipf("shared corpus not found at %s; it is needed for this test", dir)
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		if e.Type().IsRegular() {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out
}

// readAll reads a whole remote file.
func readAll(c *sftp.Client, path string) ([]byte, error) {
	f, err := c.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(f)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func hasPrefix(list []string, p string) bool {
	for _, v := range list {
		if strings.HasPrefix(v, p) {
			return true
		}
	}
	return false
}

func newSFTP(sc *ssh.Client) (*sftp.Client, error) { return sftp.NewClient(sc) }

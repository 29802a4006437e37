package sftpd

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"

	"github.com/hiegw/hiegw/internal/intake"
)

// Shutdown stops accepting at once but lets an open upload finish and be
// handed to intake before it returns.
func TestShutdownLetsUploadFinish(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	idle := h.sftp("bob")
	f, err := c.Create("slow.hl7")
	if err != nil {
		t.Fatal(err)
	}
	data := sample(t)
	if _, err := f.Write(data[:100]); err != nil {
		t.Fatal(err)
	}

	shut := make(chan error, 1)
	go func() { shut <- h.srv.Shutdown(context.Background()) }()
	if err := <-h.serveErr; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve returned %v", err)
	}
	h.serveErr <- ErrServerClosed // for the harness cleanup
	if _, err := h.dial("bob"); err == nil {
		t.Fatal("new connection accepted after Shutdown")
	}
	// The idle connection is closed; the busy one is not.
	waitFor(t, "the idle connection to close", func() bool { _, err := idle.Getwd(); return err != nil })
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with an upload open", err)
	default:
	}
	if _, err := c.Create("another.hl7"); err == nil {
		t.Fatal("new upload opened during Shutdown")
	}

	if _, err := f.Write(data[100:]); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	envs := h.in.envelopes()
	if len(envs) != 1 || !bytes.Equal(envs[0].Raw, data) {
		t.Fatalf("envelopes after Shutdown: %d", len(envs))
	}
	if !bytes.Equal(h.readFile("alice", folderProcessed, "slow.hl7"), data) {
		t.Fatal("processed file differs")
	}
	if err := h.srv.Serve(mustListen(t)); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("Serve after Shutdown: %v", err)
	}
}

// When Shutdown's context ends first, open uploads are dropped, never
// delivered, and their partial files are removed.
func TestShutdownDeadlineDropsOpenUploads(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	f, err := c.Create("never.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("MSH|partial")); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v, want deadline exceeded", err)
	}
	waitFor(t, "the dropped upload to be discarded", func() bool { return h.srv.Stats().UploadFailures == 1 })
	if n := len(h.in.envelopes()); n != 0 {
		t.Fatalf("%d envelopes from a dropped upload", n)
	}
	if got := h.files("alice", stagingDir); len(got) != 0 {
		t.Fatalf("staging = %v", got)
	}
	if got := h.files("alice", folderInbox); len(got) != 0 {
		t.Fatalf("inbox = %v", got)
	}
}

// Intake calls in progress are cancelled when Shutdown gives up; the file
// stays in inbox/ for the next start.
func TestShutdownCancelsSlowIntake(t *testing.T) {
	h := newHarness(t, nil)
	entered := make(chan struct{})
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		close(entered)
		<-ctx.Done()
		return intake.Receipt{}, ctx.Err()
	})
	c := h.sftp("alice")
	go put(c, "stuck.hl7", []byte("MSH|\r"))
	<-entered
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := h.srv.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown = %v", err)
	}
	waitFor(t, "the intake error to be counted", func() bool { return h.srv.Stats().AcceptErrors == 1 })
	if got := h.files("alice", folderInbox); strings.Join(got, ",") != "stuck.hl7" {
		t.Fatalf("inbox = %v", got)
	}
}

func mustListen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// The host key is created once with mode 0600, kept across restarts, and is
// the key clients see; the start line names address and fingerprint.
func TestHostKey(t *testing.T) {
	h := newHarness(t, nil)
	fi, err := os.Stat(h.cfg.HostKeyPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("host key mode %v, want 0600", fi.Mode().Perm())
	}
	fp := h.srv.HostKeyFingerprint()
	if !strings.HasPrefix(fp, "SHA256:") {
		t.Fatalf("fingerprint %q", fp)
	}
	var seen string
	cfg := h.clientConfig("alice", ssh.PublicKeys(h.keys["alice"]))
	cfg.HostKeyCallback = func(_ string, _ net.Addr, key ssh.PublicKey) error {
		seen = ssh.FingerprintSHA256(key)
		return nil
	}
	sc, err := ssh.Dial("tcp", h.addr, cfg)
	if err != nil {
		t.Fatal(err)
	}
	sc.Close()
	if seen != fp {
		t.Fatalf("client saw %s, server reports %s", seen, fp)
	}
	if h.srv.Addr() == nil || h.srv.Addr().String() != h.addr {
		t.Fatalf("Addr() = %v, want %s", h.srv.Addr(), h.addr)
	}
	if !strings.Contains(h.logs.String(), `msg="sftp listening" addr=`+h.addr+" host_key="+fp) {
		t.Fatalf("no start line in log:\n%s", h.logs.String())
	}

	again, err := New(h.cfg, h.in)
	if err != nil {
		t.Fatal(err)
	}
	if again.HostKeyFingerprint() != fp {
		t.Fatal("host key changed across restarts")
	}
}

func TestListenAndServe(t *testing.T) {
	h := newStoppedHarness(t, func(c *Config) { c.Addr = "127.0.0.1:0" })
	done := make(chan error, 1)
	go func() { done <- h.srv.ListenAndServe() }()
	waitFor(t, "the listener", func() bool { return h.srv.Addr() != nil })
	h.addr = h.srv.Addr().String()
	h.t = t
	h.senderWorks("alice")
	if err := h.srv.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ListenAndServe = %v", err)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	dir := t.TempDir()
	key := newSigner(t).PublicKey()
	bc, err := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	base := func() Config {
		return Config{
			HostKeyPath: filepath.Join(dir, "hk"),
			Root:        filepath.Join(dir, "data"),
			Accounts:    []Account{{Name: "ok", AuthorizedKeys: []ssh.PublicKey{key}}},
			Logger:      slog.New(slog.DiscardHandler),
		}
	}
	for _, tc := range []struct {
		name string
		mod  func(*Config)
		want string
	}{
		{"no root", func(c *Config) { c.Root = "" }, "Root"},
		{"no host key path", func(c *Config) { c.HostKeyPath = "" }, "HostKeyPath"},
		{"no accounts", func(c *Config) { c.Accounts = nil }, "no accounts"},
		{"traversal in name", func(c *Config) { c.Accounts[0].Name = "../evil" }, "Accounts[0]: Name"},
		{"dot name", func(c *Config) { c.Accounts[0].Name = "." }, "Accounts[0]: Name"},
		{"slash in name", func(c *Config) { c.Accounts[0].Name = "a/b" }, "Accounts[0]: Name"},
		{"no credentials", func(c *Config) { c.Accounts[0].AuthorizedKeys = nil }, "neither"},
		{"plain text password", func(c *Config) { c.Accounts[0].PasswordHash = "hunter2-plain" }, "PasswordHash: unsupported"},
		{"truncated bcrypt", func(c *Config) { c.Accounts[0].PasswordHash = string(bc[:20]) }, "PasswordHash: malformed bcrypt"},
		{"duplicate", func(c *Config) { c.Accounts = append(c.Accounts, c.Accounts[0]) }, "Accounts[1].Name: duplicate"},
		{"too many auth failures allowed", func(c *Config) { c.MaxAuthFailures = MaxAuthFailuresLimit + 1 }, "MaxAuthFailures"},
		{"host key readable by others", func(c *Config) {
			p := filepath.Join(dir, "loose")
			if _, _, err := loadOrCreateHostKey(p); err != nil {
				t.Fatal(err)
			}
			os.Chmod(p, 0o644)
			c.HostKeyPath = p
		}, "readable by other users"},
		{"bad host key file", func(c *Config) {
			p := filepath.Join(dir, "garbage")
			os.WriteFile(p, []byte("not a key"), 0o600)
			c.HostKeyPath = p
		}, "host key"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := base()
			tc.mod(&cfg)
			_, err := New(cfg, &fakeIntake{})
			if err == nil {
				t.Fatal("accepted")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not mention %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") || strings.Contains(err.Error(), string(bc[:20])) {
				t.Fatalf("error %q shows the secret", err)
			}
		})
	}
	if _, err := New(base(), nil); err == nil {
		t.Fatal("nil intake accepted")
	}
	if _, err := New(base(), &fakeIntake{}); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
}

func TestPasswordHashes(t *testing.T) {
	bc, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	good := map[string]string{
		"bcrypt $2a$": string(bc),
		"bcrypt $2b$": "$2b$" + string(bc[4:]),
		"bcrypt $2y$": "$2y$" + string(bc[4:]),
		"argon2id":    argon2idHash("s3cret"),
	}
	for name, hash := range good {
		p, err := parsePasswordHash(hash)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !p.verify([]byte("s3cret")) {
			t.Errorf("%s: right password refused", name)
		}
		if p.verify([]byte("s3cret ")) || p.verify(nil) {
			t.Errorf("%s: wrong password accepted", name)
		}
	}
	a := argon2idHash("s3cret")
	for _, bad := range []string{
		"", "s3cret", "$1$abc$def", "$argon2i$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA",
		strings.Replace(a, "v=19", "v=16", 1),
		strings.Replace(a, "m=8192,", "", 1),
		strings.Replace(a, "p=1", "p=0", 1),
		strings.Replace(a, "p=1", "p=300", 1),
		strings.Replace(a, "t=1", "t=x", 1),
		strings.Replace(a, "t=1", "t=1,q=2", 1),
		a[:strings.LastIndex(a, "$")],
		a[:strings.LastIndex(a, "$")+1] + "!!",
		a[:strings.LastIndex(a, "$")+1] + "c2hvcnQ",
	} {
		if _, err := parsePasswordHash(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestTemporaryAndValidNames(t *testing.T) {
	for name, want := range map[string]bool{
		"a.hl7": false, "a.part": true, "a.hl7.tmp": true, ".a.hl7": true, "a.FILEPART": true,
		"part": false, "a.parts": false, "a.tmpx": false,
	} {
		if got := isTemporary(name); got != want {
			t.Errorf("isTemporary(%q) = %v", name, got)
		}
	}
	for name, want := range map[string]bool{
		"a.hl7": true, "MUÑOZ.xml": true, "a b.hl7": true, "": false, ".": false, "..": false,
		"a/b": false, "a\\b": false, "a\x00b": false, "a\nb": false, "\xff.hl7": false,
		strings.Repeat("x", 256): false,
	} {
		if got := validName(name); got != want {
			t.Errorf("validName(%q) = %v", name, got)
		}
	}
	for p, want := range map[string]location{
		"/":                {},
		"/inbox":           {folder: "inbox"},
		"/inbox/":          {folder: "inbox"},
		"/inbox/a.hl7":     {folder: "inbox", name: "a.hl7"},
		"/inbox/../failed": {folder: "failed"},
		"/../processed/x":  {folder: "processed", name: "x"},
	} {
		got, ok := parseLocation(p)
		if !ok || got != want {
			t.Errorf("parseLocation(%q) = %+v, %v", p, got, ok)
		}
	}
	for _, p := range []string{"inbox", "/etc", "/inbox/a/b", "/.upload/x", "/inboxx/a", "/inbox/a\x00"} {
		if _, ok := parseLocation(p); ok {
			t.Errorf("parseLocation(%q) accepted", p)
		}
	}
}

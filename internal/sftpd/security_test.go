package sftpd

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func TestAuthentication(t *testing.T) {
	h := newHarness(t, nil)
	for _, tc := range []struct {
		name string
		user string
		auth ssh.AuthMethod
		ok   bool
	}{
		{"right key", "alice", ssh.PublicKeys(h.keys["alice"]), true},
		{"another sender's key", "alice", ssh.PublicKeys(h.keys["bob"]), false},
		{"unknown key", "alice", ssh.PublicKeys(h.keys["mallory"]), false},
		{"unknown user", "mallory", ssh.PublicKeys(h.keys["mallory"]), false},
		{"password for a key-only account", "alice", ssh.Password("anything-alice"), false},
		{"bcrypt right password", "carol", ssh.Password(carolPassword), true},
		{"bcrypt wrong password", "carol", ssh.Password("wrong-carol-pw"), false},
		{"argon2id right password", "dave", ssh.Password(davePassword), true},
		{"argon2id wrong password", "dave", ssh.Password("wrong-dave-pw"), false},
		{"password of another account", "dave", ssh.Password(carolPassword), false},
		{"unknown user with password", "nobody", ssh.Password("nobody-pw"), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sc, err := h.dial(tc.user, tc.auth)
			if tc.ok {
				if err != nil {
					t.Fatalf("login refused: %v", err)
				}
				sc.Close()
				return
			}
			if err == nil {
				sc.Close()
				t.Fatal("login accepted")
			}
			h.senderWorks("bob")
		})
	}
	logs := h.logs.String()
	for _, secret := range []string{"anything-alice", "wrong-carol-pw", "wrong-dave-pw", "nobody-pw", carolPassword, davePassword} {
		if strings.Contains(logs, secret) {
			t.Errorf("a password reached the log: %q", secret)
		}
	}
	if n := strings.Count(logs, "sftp authentication failed"); n < 8 {
		t.Errorf("%d authentication failures logged, want at least 8:\n%s", n, logs)
	}
	if !strings.Contains(logs, `user=mallory`) || !strings.Contains(logs, "method=password") {
		t.Errorf("failures do not name user and method:\n%s", logs)
	}
}

// Paths that leave the sender's folder, or write outside inbox/, are
// refused, create nothing, and leave the server serving others.
func TestPathsOutsideTheFolderRefused(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	outside := filepath.Join(t.TempDir(), "outside")
	if err := os.Mkdir(outside, 0o755); err != nil {
		t.Fatal(err)
	}
	data := []byte("MSH|x\r")
	// bob already has a processed file alice must not reach
	h.senderWorks("bob")

	for _, p := range []string{
		"../x.hl7",
		"../../x.hl7",
		"../../../../../../../../tmp/x.hl7",
		"../bob/inbox/x.hl7",
		"/../bob/inbox/x.hl7",
		"/bob/inbox/x.hl7",
		outside + "/x.hl7",
		"/etc/hiegw-sftpd-test.hl7",
		"/x.hl7",
		"/processed/x.hl7",
		"/failed/x.hl7",
		"/failed/x.hl7.error.txt",
		"/.upload/x.hl7",
		"/inbox/sub/x.hl7",
		"/inbox/..",
	} {
		if err := put(c, p, data); err == nil {
			t.Errorf("upload to %q accepted", p)
		}
	}
	for _, p := range []string{"/etc/passwd", "../../../../etc/passwd", "/../bob/processed", "/bob", outside} {
		if _, err := c.Stat(p); err == nil {
			t.Errorf("stat %q allowed", p)
		}
		if _, err := readAll(c, p); err == nil {
			t.Errorf("read %q allowed", p)
		}
		if _, err := c.ReadDir(p); err == nil {
			t.Errorf("list %q allowed", p)
		}
	}
	// moving files out of inbox, into the read-only folders or across senders
	if err := put(c, "mv.hl7.part", data); err != nil {
		t.Fatal(err)
	}
	for _, dst := range []string{"/processed/mv.hl7", "/failed/mv.hl7", "../bob/inbox/mv.hl7", "/mv.hl7", outside + "/mv.hl7"} {
		if err := c.Rename("mv.hl7.part", dst); err == nil {
			t.Errorf("rename to %q allowed", dst)
		}
	}
	if err := c.Mkdir("/inbox/sub"); err == nil {
		t.Error("mkdir allowed")
	}
	if err := c.RemoveDirectory("/processed"); err == nil {
		t.Error("rmdir allowed")
	}
	if err := c.Remove("/processed/" + h.files("bob", folderProcessed)[0]); err == nil {
		t.Error("remove in processed allowed")
	}
	// "/.." is "/" of the sender's own folder
	entries, err := c.ReadDir("/..")
	if err != nil {
		t.Fatal(err)
	}
	if got := names(entries); got != "failed,inbox,processed" {
		t.Errorf("listing of /.. = %s", got)
	}

	if len(h.in.bySender("alice")) != 0 {
		t.Error("a refused upload reached intake")
	}
	if left, _ := os.ReadDir(outside); len(left) != 0 {
		t.Errorf("files created outside the root: %v", left)
	}
	if _, err := os.Stat("/etc/hiegw-sftpd-test.hl7"); err == nil {
		t.Error("file created in /etc")
	}
	if got := h.files("bob", folderInbox); len(got) != 0 {
		t.Errorf("alice wrote into bob's inbox: %v", got)
	}
	if got := h.files("alice", folderInbox); strings.Join(got, ",") != "mv.hl7.part" {
		t.Errorf("alice's inbox = %v", got)
	}
	if h.srv.Stats().Refused == 0 {
		t.Error("refusals not counted")
	}
	h.senderWorks("bob")
	h.senderWorks("alice")
}

// Symlink and hard link requests are refused; symlinks placed in a sender's
// folder by other means cannot lead out of it.
func TestSymlinksCannotEscape(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RescanInterval = 20 * time.Millisecond })
	c := h.sftp("alice")
	outside := t.TempDir()
	secret := filepath.Join(outside, "secret.txt")
	if err := os.WriteFile(secret, []byte("SECRET-OUTSIDE"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := put(c, "t.hl7.part", []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := c.Symlink(secret, "/inbox/link.hl7"); err == nil {
		t.Error("symlink to an absolute path allowed")
	}
	if err := c.Symlink("../../bob/processed", "/inbox/bob"); err == nil {
		t.Error("symlink to a relative path allowed")
	}
	if err := c.Link("/inbox/t.hl7.part", "/inbox/hard.hl7"); err == nil {
		t.Error("hard link allowed")
	}
	if _, err := c.ReadLink("/inbox/t.hl7.part"); err == nil {
		t.Error("readlink allowed")
	}

	// Links planted on disk (by an operator or another program).
	plant := func(target, folder, name string) {
		if err := os.Symlink(target, filepath.Join(h.dir("alice", folder), name)); err != nil {
			t.Fatal(err)
		}
	}
	plant(secret, folderProcessed, "secret.hl7")
	plant(outside, folderProcessed, "out")
	plant(filepath.Join(outside, "new.txt"), folderInbox, "new.hl7.part")
	plant(secret, folderInbox, "leak.hl7")
	plant("../../bob/inbox", folderFailed, "bobinbox")

	if b, err := readAll(c, "/processed/secret.hl7"); err == nil {
		t.Errorf("read through a symlink out of the folder: %q", b)
	}
	if _, err := c.ReadDir("/processed/out"); err == nil {
		t.Error("listed a directory through a symlink")
	}
	if _, err := c.Stat("/processed/secret.hl7"); err == nil {
		t.Error("stat followed a symlink out of the folder")
	}
	if err := put(c, "new.hl7.part", []byte("escape")); err == nil {
		t.Error("wrote through a symlink out of the folder")
	}
	if _, err := os.Stat(filepath.Join(outside, "new.txt")); err == nil {
		t.Error("file created outside the folder")
	}
	if err := c.Rename("leak.hl7", "leak2.hl7"); err == nil {
		t.Error("renamed a symlink")
	}
	if err := put(c, "/failed/bobinbox/x.hl7", []byte("x")); err == nil {
		t.Error("wrote through a symlinked folder")
	}
	// The rescan never delivers a symlink's target.
	if err := os.WriteFile(filepath.Join(h.dir("alice", folderInbox), "marker.hl7"), []byte("M"), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rescan to deliver the marker", func() bool { return len(h.in.bySender("alice")) > 0 })
	for _, e := range h.in.envelopes() {
		if bytes.Contains(e.Raw, []byte("SECRET-OUTSIDE")) {
			t.Fatalf("%s: a file outside the folder reached intake", e.Filename)
		}
	}
	if b, err := os.ReadFile(secret); err != nil || string(b) != "SECRET-OUTSIDE" {
		t.Fatalf("outside file changed: %q %v", b, err)
	}
	h.senderWorks("bob")
}

// An upload past MaxFileSize fails during the write; nothing is kept and
// nothing reaches intake; the session and the server carry on.
func TestOversizeUploadRefused(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxFileSize = 4096 })
	c := h.sftp("alice")
	big := bytes.Repeat([]byte("OBX|1|TX|||0123456789\r"), 1000) // 22 KB
	for _, name := range []string{"big.hl7", "big.hl7.part"} {
		f, err := c.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		_, werr := f.Write(big)
		cerr := f.Close()
		if werr == nil && cerr == nil {
			t.Fatalf("%s: oversize upload succeeded", name)
		}
	}
	exact := bytes.Repeat([]byte("x"), 4096)
	if err := put(c, "exact.hl7", exact); err != nil {
		t.Fatalf("upload of exactly MaxFileSize: %v", err)
	}
	envs := h.in.envelopes()
	if len(envs) != 1 || envs[0].Filename != "exact.hl7" || !bytes.Equal(envs[0].Raw, exact) {
		t.Fatalf("intake saw %d envelopes", len(envs))
	}
	if got := h.files("alice", folderInbox); len(got) != 0 {
		t.Fatalf("partial kept in inbox: %v", got)
	}
	if got := h.files("alice", stagingDir); len(got) != 0 {
		t.Fatalf("partial kept in staging: %v", got)
	}
	if st := h.srv.Stats(); st.UploadFailures != 2 {
		t.Fatalf("UploadFailures = %d, want 2", st.UploadFailures)
	}
	// A sparse write far beyond the limit is refused too.
	f, err := c.Create("sparse.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte("x"), 1<<40); err == nil {
		t.Error("write at 1 TiB accepted")
	}
	f.Close()
	h.senderWorks("bob")
}

func TestTooManyFilesPerSession(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxFilesPerSession = 3 })
	c := h.sftp("alice")
	for i := 0; i < 3; i++ {
		if err := put(c, fmt.Sprintf("f%d.hl7", i), []byte("MSH|\r")); err != nil {
			t.Fatalf("file %d: %v", i, err)
		}
	}
	if err := put(c, "f3.hl7", []byte("MSH|\r")); err == nil {
		t.Fatal("fourth file accepted")
	}
	if len(h.in.envelopes()) != 3 {
		t.Fatalf("%d envelopes", len(h.in.envelopes()))
	}
	// The session can still read; a new connection has a new allowance.
	if _, err := c.ReadDir("/processed"); err != nil {
		t.Fatal(err)
	}
	c2 := h.sftp("alice")
	if err := put(c2, "f3.hl7", []byte("MSH|\r")); err != nil {
		t.Fatalf("new connection: %v", err)
	}
	h.senderWorks("bob")
}

// Shell, exec, other subsystems, and forwarding are refused; sftp on the
// same connection still works.
func TestNoShellExecOrForwarding(t *testing.T) {
	h := newHarness(t, nil)
	sc, err := h.dial("alice")
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()

	sess, err := sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if out, err := sess.CombinedOutput("id"); err == nil {
		t.Errorf("exec ran: %q", out)
	}
	sess.Close()

	sess, err = sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.Shell(); err == nil {
		t.Error("shell started")
	}
	sess.Close()

	sess, err = sc.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := sess.RequestSubsystem("netconf"); err == nil {
		t.Error("netconf subsystem started")
	}
	sess.Close()

	target, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer target.Close()
	if conn, err := sc.Dial("tcp", target.Addr().String()); err == nil {
		conn.Close()
		t.Error("local port forwarding allowed")
	}
	if ln, err := sc.Listen("tcp", "127.0.0.1:0"); err == nil {
		ln.Close()
		t.Error("remote port forwarding allowed")
	}
	if _, _, err := sc.OpenChannel("x11", nil); err == nil {
		t.Error("x11 channel opened")
	}

	c, err := newSFTP(sc)
	if err != nil {
		t.Fatalf("sftp after refusals: %v", err)
	}
	defer c.Close()
	if err := put(c, "ok.hl7", []byte("MSH|\r")); err != nil {
		t.Fatal(err)
	}
	if st := h.srv.Stats(); st.Refused < 5 {
		t.Errorf("Refused = %d, want at least 5", st.Refused)
	}
	h.senderWorks("bob")
}

// Each sender sees its own three folders and only its own files.
func TestSendersSeeOnlyTheirOwnFolders(t *testing.T) {
	h := newHarness(t, nil)
	a, b := h.sftp("alice"), h.sftp("bob")
	if err := put(a, "from-alice.hl7", []byte("A")); err != nil {
		t.Fatal(err)
	}
	if err := put(b, "from-bob.hl7", []byte("B")); err != nil {
		t.Fatal(err)
	}
	for user, c := range map[string]interface {
		ReadDir(string) ([]os.FileInfo, error)
	}{"alice": a, "bob": b} {
		root, err := c.ReadDir("/")
		if err != nil {
			t.Fatal(err)
		}
		if got := names(root); got != "failed,inbox,processed" {
			t.Errorf("%s sees / = %s", user, got)
		}
		proc, err := c.ReadDir("/processed")
		if err != nil {
			t.Fatal(err)
		}
		if got := names(proc); got != "from-"+user+".hl7" {
			t.Errorf("%s sees processed/ = %s", user, got)
		}
	}
	if _, err := readAll(a, "/processed/from-bob.hl7"); err == nil {
		t.Error("alice read bob's file")
	}
	if e := h.in.bySender("alice"); len(e) != 1 || string(e[0].Raw) != "A" {
		t.Errorf("alice's envelopes: %+v", e)
	}
	if e := h.in.bySender("bob"); len(e) != 1 || string(e[0].Raw) != "B" {
		t.Errorf("bob's envelopes: %+v", e)
	}
}

func TestIdleConnectionClosed(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.IdleTimeout = 100 * time.Millisecond })
	sc, err := h.dial("alice")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- sc.Wait() }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("idle connection never closed")
	}
	h.senderWorks("bob")
}

func names(fis []os.FileInfo) string {
	var n []string
	for _, fi := range fis {
		n = append(n, fi.Name())
	}
	slices.Sort(n)
	return strings.Join(n, ",")
}

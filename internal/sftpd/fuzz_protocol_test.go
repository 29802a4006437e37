package sftpd

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/intake"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// byteChannel is an ssh.Channel whose client side is a byte stream: what
// the client sent, read by the server, and a sink for the answers.
type byteChannel struct {
	io.Reader
	io.Writer
}

func (byteChannel) Close() error      { return nil }
func (byteChannel) CloseWrite() error { return nil }
func (byteChannel) SendRequest(string, bool, []byte) (bool, error) {
	return false, errors.New("no requests")
}
func (byteChannel) Stderr() io.ReadWriter { return new(bytes.Buffer) }

// teeCloser records what a client writes to the server.
type teeCloser struct {
	w   io.WriteCloser
	rec *bytes.Buffer
}

func (t teeCloser) Write(p []byte) (int, error) { t.rec.Write(p); return t.w.Write(p) }
func (t teeCloser) Close() error                { return t.w.Close() }

// fuzzServer makes a server with one key account, alice, under root.
func fuzzServer(tb testing.TB, hostKey, root string) (*Server, *account) {
	tb.Helper()
	key := newSigner(tb)
	srv, err := New(Config{HostKeyPath: hostKey, Root: root, RescanInterval: time.Hour,
		Accounts: []Account{{Name: "alice", AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}}},
		Logger:   slog.New(slog.NewTextHandler(io.Discard, nil))}, discardIntake{})
	if err != nil {
		tb.Fatal(err)
	}
	return srv, srv.account("alice")
}

// discardIntake answers received to every upload and keeps nothing.
type discardIntake struct{}

func (discardIntake) Accept(context.Context, *intake.Envelope) (intake.Receipt, error) {
	return intake.Receipt{EnvelopeID: "env", Status: intake.StatusReceived}, nil
}

// recordSession runs a pkg/sftp client through a working session (uploads,
// listing, stat, rename, reads, refused writes outside inbox/, removal) and
// returns the bytes the client sent.
func recordSession(f *testing.F, hostKey string) []byte {
	srv, a := fuzzServer(f, hostKey, f.TempDir())
	defer srv.Shutdown(context.Background())
	toServer, fromClient := io.Pipe()
	toClient, fromServer := io.Pipe()
	done := make(chan struct{})
	go func() {
		defer close(done)
		srv.serveSFTP(a, &conn{peer: "record"}, byteChannel{toServer, fromServer})
		fromServer.Close()
	}()
	var rec bytes.Buffer
	c, err := sftp.NewClientPipe(toClient, teeCloser{fromClient, &rec})
	if err != nil {
		f.Fatal(err)
	}
	msg := []byte("MSH|^~\\&|A|B|C|D|20250101||ADT^A01|1|P|2.5.1\rPID|1||123^^^H^MR||DOE^JANE\r")
	_ = put(c, "/inbox/a.hl7", msg)
	_ = put(c, "/inbox/.b.part", msg)
	_ = c.Rename("/inbox/.b.part", "/inbox/b.hl7")
	_, _ = c.ReadDir("/inbox")
	_, _ = c.ReadDir("/processed")
	_, _ = c.Stat("/processed/a.hl7")
	_, _ = c.Lstat("/inbox")
	_, _ = readAll(c, "/processed/a.hl7")
	_ = put(c, "/processed/x.hl7", msg)
	_ = c.Mkdir("/inbox/d")
	_ = c.Symlink("/inbox/a.hl7", "/inbox/l")
	_ = c.Remove("/failed/none")
	_ = c.Chmod("/inbox/b.hl7", 0o600)
	_, _ = c.RealPath("../..")
	c.Close()
	<-done
	return rec.Bytes()
}

// FuzzSFTPSession serves whatever bytes a client might send once logged
// in: pkg/sftp decodes the packets and our handlers serve them. No input may
// panic (pkg/sftp runs handlers in its own goroutines, where a panic would
// end the gateway; ours are guarded, and a guarded panic is counted, which
// fails the run too), and nothing is written outside the account's root.
func FuzzSFTPSession(f *testing.F) {
	hostKey := filepath.Join(f.TempDir(), "host_ed25519")
	f.Add(recordSession(f, hostKey))
	f.Add([]byte{0, 0, 0, 5, 1, 0, 0, 0, 3})
	f.Fuzz(func(t *testing.T, data []byte) {
		dir := t.TempDir()
		srv, a := fuzzServer(t, hostKey, filepath.Join(dir, "root"))
		srv.serveSFTP(a, &conn{peer: "fuzz"}, byteChannel{bytes.NewReader(data), io.Discard})
		srv.closeRoots() // never served: no listener or rescan to stop
		if n := srv.Stats().Panics; n > 0 {
			t.Fatalf("%d panic(s) while serving", n)
		}
		ents, err := os.ReadDir(dir)
		if err != nil || len(ents) != 1 || ents[0].Name() != "root" {
			t.Fatalf("wrote outside the root: %v %v", ents, err)
		}
	})
}

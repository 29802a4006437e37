package sftpd

import (
	"context"
	"log/slog"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

// panicOn is a log handler that panics on records with a given message,
// standing for a defect reached while serving a client; it passes the rest
// to next.
type panicOn struct {
	slog.Handler
	msg string
}

func (p panicOn) Handle(ctx context.Context, r slog.Record) error {
	if r.Message == p.msg {
		var m map[string]int
		m[r.Message]++ // a nil map: a runtime error, as a real defect would be
	}
	return p.Handler.Handle(ctx, r)
}

func (p panicOn) WithAttrs(as []slog.Attr) slog.Handler {
	return panicOn{p.Handler.WithAttrs(as), p.msg}
}

func (p panicOn) WithGroup(g string) slog.Handler { return panicOn{p.Handler.WithGroup(g), p.msg} }

// TestPanicInRequestFailsOnlyTheRequest: a panic while serving an SFTP
// request (here while logging a refused path) fails that request; the
// session goes on serving, the stack is logged and the panic counted. Without
// the guard pkg/sftp's goroutine would end the test binary.
func TestPanicInRequestFailsOnlyTheRequest(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Logger = slog.New(panicOn{c.Logger.Handler(), "sftp request refused"})
	})
	c := h.sftp("alice")
	if _, err := c.Open("/outside/secret"); err == nil {
		t.Fatal("a path outside the folders was opened")
	}
	if err := put(c, "after.hl7", sample(t)); err != nil {
		t.Fatalf("upload on the same session after the panic: %v", err)
	}
	waitFor(t, "processed/after.hl7", func() bool { return contains(h.files("alice", folderProcessed), "after.hl7") })
	if st := h.srv.Stats(); st.Panics != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v, want one panic and one file accepted", st)
	}
	if logs := h.logs.String(); !strings.Contains(logs, "sftp request failed after a panic") ||
		!strings.Contains(logs, "assignment to entry in nil map") || !strings.Contains(logs, "goroutine") {
		t.Fatalf("the panic was not logged with its stack:\n%s", logs)
	}
}

// TestPanicInLoginClosesOnlyThatConnection: a panic during a login (here in
// the failed-login hook the gateway audits with) closes that connection;
// other clients log in and upload.
func TestPanicInLoginClosesOnlyThatConnection(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.OnAuthFailure = func(user, method, peer string) {
			var m map[string]int
			m[user]++
		}
	})
	if sc, err := h.dial("carol", ssh.Password("wrong")); err == nil {
		sc.Close()
		t.Fatal("a wrong password logged in")
	}
	c := h.sftp("alice")
	if err := put(c, "other.hl7", sample(t)); err != nil {
		t.Fatalf("another client's upload: %v", err)
	}
	waitFor(t, "processed/other.hl7", func() bool { return contains(h.files("alice", folderProcessed), "other.hl7") })
	waitFor(t, "the panic to be counted", func() bool { return h.srv.Stats().Panics == 1 })
}

package sftpd

import (
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// conn is one TCP connection and, after authentication, its SSH session
// state shared by all its channels.
type conn struct {
	nc   net.Conn
	peer string

	// busy counts uploads open for writing and renames being handled;
	// Shutdown waits for it to drop to zero before closing the connection.
	busy atomic.Int32
	// files counts files opened for writing over the connection's lifetime.
	files atomic.Int64
}

// idleConn closes a connection that has neither sent nor accepted data for
// timeout: every Read and Write pushes the deadline forward.
type idleConn struct {
	net.Conn
	timeout time.Duration
}

func (c *idleConn) Read(p []byte) (int, error) {
	if err := c.Conn.SetReadDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

func (c *idleConn) Write(p []byte) (int, error) {
	if err := c.Conn.SetWriteDeadline(time.Now().Add(c.timeout)); err != nil {
		return 0, err
	}
	return c.Conn.Write(p)
}

func (s *Server) handleConn(nc net.Conn) {
	defer s.wg.Done()
	c := &conn{nc: nc, peer: nc.RemoteAddr().String()}
	account := ""
	defer func() { s.recovered(recover(), "connection", account, c.peer) }() // after the close below
	defer nc.Close()
	if !s.trackConn(c, true) {
		return
	}
	defer s.trackConn(c, false)
	s.stats.connections.Add(1)

	timer := time.AfterFunc(handshakeTimeout, func() { nc.Close() })
	sc, chans, reqs, err := ssh.NewServerConn(&idleConn{Conn: nc, timeout: s.cfg.IdleTimeout}, s.sshCfg)
	timer.Stop()
	if err != nil {
		s.log.Debug("sftp handshake failed", "peer", c.peer, "err", err)
		return
	}
	defer sc.Close()
	a := s.account(sc.Permissions.Extensions[extAccount])
	if a == nil { // removed (SetAccounts) between the login and here
		return
	}
	account = a.name
	s.stats.logins.Add(1)
	s.authSucceeded(nc.RemoteAddr())
	s.log.Info("sftp login", "account", a.name, "peer", c.peer, "method", sc.Permissions.Extensions[extMethod])

	// Global requests (tcpip-forward and the like) are all refused.
	go func() {
		defer func() {
			if s.recovered(recover(), "connection", a.name, c.peer) {
				nc.Close()
			}
		}()
		for req := range reqs {
			if req.Type == "tcpip-forward" || req.Type == "streamlocal-forward@openssh.com" {
				s.refuse(a, c, "forwarding request", "type", req.Type)
			}
			if req.WantReply {
				req.Reply(false, nil)
			}
		}
	}()

	var wg sync.WaitGroup
	var open atomic.Int32
	for nch := range chans {
		if nch.ChannelType() != "session" {
			s.refuse(a, c, "channel type", "type", nch.ChannelType())
			nch.Reject(ssh.Prohibited, "only the sftp subsystem is available")
			continue
		}
		if open.Load() >= maxChannelsPerConn {
			s.refuse(a, c, "too many channels")
			nch.Reject(ssh.ResourceShortage, "too many sessions on this connection")
			continue
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		open.Add(1)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer open.Add(-1)
			defer func() {
				if s.recovered(recover(), "session", a.name, c.peer) {
					ch.Close()
				}
			}()
			s.serveSession(a, c, ch, creqs)
		}()
	}
	wg.Wait()
	s.log.Debug("sftp connection closed", "account", a.name, "peer", c.peer)
}

// serveSession answers a session channel's requests: the sftp subsystem is
// started once; shell, exec, pty, environment, agent and X11 requests and
// other subsystems are refused.
func (s *Server) serveSession(a *account, c *conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer ch.Close()
	var done chan struct{}
	for req := range reqs {
		ok := false
		if req.Type == "subsystem" && done == nil {
			var p struct{ Name string }
			if ssh.Unmarshal(req.Payload, &p) == nil && p.Name == "sftp" {
				ok = true
			}
		}
		if !ok {
			switch req.Type {
			case "exec", "shell", "subsystem", "x11-req", "auth-agent-req@openssh.com":
				s.refuse(a, c, "session request", "type", req.Type)
			default: // env, pty-req, window-change, signals: harmless, refused quietly
			}
		}
		if req.WantReply {
			req.Reply(ok, nil)
		}
		if ok {
			done = make(chan struct{})
			go func() {
				defer close(done)
				defer ch.Close() // ends the request loop, after a panic too
				defer func() { s.recovered(recover(), "session", a.name, c.peer) }()
				s.serveSFTP(a, c, ch)
			}()
		}
	}
	if done != nil {
		<-done
	}
}

func (s *Server) serveSFTP(a *account, c *conn, ch ssh.Channel) {
	h := guarded{&handler{s: s, a: a, c: c}}
	rs := sftp.NewRequestServer(newOpenBarrier(ch), sftp.Handlers{FileGet: h, FilePut: h, FileCmd: h, FileList: h},
		sftp.WithStartDirectory("/"+folderInbox))
	err := rs.Serve()
	rs.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		s.log.Debug("sftp session ended", "account", a.name, "peer", c.peer, "err", err)
	}
}

// refuse counts and logs a request refused by policy.
func (s *Server) refuse(a *account, c *conn, what string, attrs ...any) {
	s.stats.refused.Add(1)
	s.log.Info("sftp request refused", append([]any{"account", a.name, "peer", c.peer, "what", what}, attrs...)...)
}

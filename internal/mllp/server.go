package mllp

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
)

// ErrServerClosed is returned by Serve after Shutdown or Close.
var ErrServerClosed = errors.New("mllp: server closed")

// ConnInfo describes the connection a frame arrived on.
type ConnInfo struct {
	Remote net.Addr
	// TLS is the handshake state, nil on plain TCP.
	TLS *tls.ConnectionState
	// Sender is the name Identify gave the connection ("" without Identify).
	Sender string
}

// Reasons a connection is refused, passed to Server.OnRefuse.
const (
	RefusedAllowList = "allow-list"            // the peer's address is not allowed
	RefusedTooMany   = "too-many"              // MaxConns reached
	RefusedPerPeer   = "too-many-from-address" // MaxConnsPerAddr reached for the peer's address
	RefusedHandshake = "tls-handshake"         // no, untrusted or invalid client certificate, or no common TLS version
	RefusedIdentity  = "unknown-identity"      // Identify did not recognise the peer
)

// Handler answers frames. It is called once per frame, in order, for each
// connection; the reply it returns is written back as one frame before the
// next frame is read. frameErr is non-nil when the frame was refused by the
// codec (ErrFrameTooLarge); frame then holds its first bytes. A Handler
// returns a reply for every frame unless the sender asked not to receive one
// (enhanced mode, MSH-15): nil writes nothing.
type Handler interface {
	ServeMLLP(ctx context.Context, ci ConnInfo, frame []byte, frameErr error) []byte
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, ci ConnInfo, frame []byte, frameErr error) []byte

// ServeMLLP calls f.
func (f HandlerFunc) ServeMLLP(ctx context.Context, ci ConnInfo, frame []byte, frameErr error) []byte {
	return f(ctx, ci, frame, frameErr)
}

// Stats are counters a Server keeps; read them with Stats().
type Stats struct {
	Accepted, Active, Frames, Oversize, SkippedBytes, Refused int64
	Panics                                                    int64 // connections closed after a panic
}

// Server is an MLLP listener shaped like net/http.Server.
type Server struct {
	Handler Handler
	// TLSConfig, when set, makes Serve wrap every connection in TLS.
	TLSConfig *tls.Config
	// IdleTimeout bounds the wait for the next frame on an open connection.
	IdleTimeout time.Duration
	// ReadTimeout bounds the time to receive one whole frame once it starts.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing one reply.
	WriteTimeout time.Duration
	// MaxFrameSize bounds one message; 0 means DefaultMaxFrameSize.
	MaxFrameSize int
	// MaxConns bounds concurrent connections; 0 means unlimited.
	MaxConns int
	// MaxConnsPerAddr bounds the concurrent connections from one IP
	// address, so that one sender that leaks connections (an interface
	// engine reconnecting without closing) cannot take every place of
	// MaxConns from the others; 0 means no bound but MaxConns.
	MaxConnsPerAddr int
	// Allow, when set, is asked for every new connection; false closes it.
	Allow func(net.Addr) bool
	// Identify, when set, names the peer of a new connection after the TLS
	// handshake (from its client certificate, say); the name reaches the
	// Handler in ConnInfo.Sender. An error closes the connection. After
	// Reidentify, open connections are named again before their next frame.
	Identify func(ci ConnInfo) (string, error)
	// OnRefuse, when set, is told of every connection closed before its first
	// frame (or, with RefusedIdentity, one no longer recognised after
	// Reidentify), with one of the Refused* reasons and the cause (which
	// names no message content). It must not block for long.
	OnRefuse func(remote net.Addr, reason string, cause error)
	Logger   *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	perAddr   map[netip.Addr]int // open connections by peer address (MaxConnsPerAddr)
	inFlight  sync.WaitGroup
	closing   atomic.Bool
	idGen     atomic.Uint64 // Reidentify's count: a connection named under an older one is named again
	ctx       context.Context
	cancel    context.CancelFunc

	accepted, active, frames, oversize, skipped, refused, panics atomic.Int64
}

// Reidentify makes every open connection be named again by Identify before
// its next frame (the registry of senders changed): one that Identify no
// longer recognises is closed, its frame unanswered, and refused with
// RefusedIdentity; one it names differently carries the new name.
func (s *Server) Reidentify() { s.idGen.Add(1) }

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{s.accepted.Load(), s.active.Load(), s.frames.Load(), s.oversize.Load(), s.skipped.Load(), s.refused.Load(),
		s.panics.Load()}
}

func (s *Server) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return slog.Default()
}

func (s *Server) init() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listeners == nil {
		s.listeners = map[net.Listener]struct{}{}
		s.conns = map[net.Conn]struct{}{}
		s.ctx, s.cancel = context.WithCancel(context.Background())
	}
}

// ListenAndServe listens on addr and serves.
func (s *Server) ListenAndServe(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("mllp listen %s: %w", addr, err)
	}
	return s.Serve(ln)
}

// Serve accepts connections on ln until Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	s.init()
	if s.closing.Load() {
		return ErrServerClosed
	}
	s.mu.Lock()
	s.listeners[ln] = struct{}{}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.listeners, ln)
		s.mu.Unlock()
	}()
	var sem chan struct{}
	if s.MaxConns > 0 {
		sem = make(chan struct{}, s.MaxConns)
	}
	backoff := 5 * time.Millisecond
	for {
		c, err := ln.Accept()
		if err != nil {
			if s.closing.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				time.Sleep(backoff)
				backoff = min(2*backoff, time.Second)
				continue
			}
			return fmt.Errorf("mllp accept: %w", err)
		}
		backoff = 5 * time.Millisecond
		if s.Allow != nil && !s.Allow(c.RemoteAddr()) {
			s.refuse(c.RemoteAddr(), RefusedAllowList, errors.New("address not in the allow-list"))
			c.Close()
			continue
		}
		addr, counted := s.takeAddr(c.RemoteAddr())
		if !counted && s.MaxConnsPerAddr > 0 {
			s.refuse(c.RemoteAddr(), RefusedPerPeer, fmt.Errorf("more than %d connections from %s", s.MaxConnsPerAddr, addr))
			c.Close()
			continue
		}
		if sem != nil {
			select {
			case sem <- struct{}{}:
			default:
				s.releaseAddr(addr, counted)
				s.refuse(c.RemoteAddr(), RefusedTooMany, fmt.Errorf("more than %d connections", s.MaxConns))
				c.Close()
				continue
			}
		}
		s.accepted.Add(1)
		s.inFlight.Add(1)
		go func() {
			defer s.inFlight.Done()
			defer s.releaseAddr(addr, counted)
			if sem != nil {
				defer func() { <-sem }()
			}
			defer s.recoverConn(c.RemoteAddr())
			s.serveConn(c)
		}()
	}
}

// takeAddr counts a new connection from remote's IP address against
// MaxConnsPerAddr: counted is false when the address already has that many
// (or when there is no bound, which counts nothing).
func (s *Server) takeAddr(remote net.Addr) (addr netip.Addr, counted bool) {
	if s.MaxConnsPerAddr <= 0 {
		return netip.Addr{}, false
	}
	if ap, err := netip.ParseAddrPort(remote.String()); err == nil {
		addr = ap.Addr().Unmap()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr == nil {
		s.perAddr = map[netip.Addr]int{}
	}
	if s.perAddr[addr] >= s.MaxConnsPerAddr {
		return addr, false
	}
	s.perAddr[addr]++
	return addr, true
}

// releaseAddr gives back a place takeAddr counted.
func (s *Server) releaseAddr(addr netip.Addr, counted bool) {
	if !counted {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[addr]--; s.perAddr[addr] <= 0 {
		delete(s.perAddr, addr)
	}
}

// recoverConn ends a connection whose handling panicked (a defect of
// hiegw) as net/http ends a request's: the connection is closed (serveConn's
// deferred calls ran), the stack is logged, and the gateway goes on serving
// its other senders. A sender whose message was stored before the panic
// gets its first answer when it sends the message again (duplicate
// detection).
func (s *Server) recoverConn(remote net.Addr) {
	if r := recover(); r != nil {
		s.panics.Add(1)
		defect.Log(s.logger(), "mllp connection closed after a panic, a defect of hiegw", r, "remote", remote.String())
	}
}

func (s *Server) refuse(remote net.Addr, reason string, cause error) {
	s.refused.Add(1)
	s.logger().Warn("mllp connection refused", "remote", remote.String(), "reason", reason, "err", cause)
	if s.OnRefuse != nil {
		s.OnRefuse(remote, reason, cause)
	}
}

func (s *Server) track(c net.Conn, add bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if add {
		s.conns[c] = struct{}{}
	} else {
		delete(s.conns, c)
	}
}

func (s *Server) serveConn(c net.Conn) {
	s.active.Add(1)
	defer s.active.Add(-1)
	s.track(c, true)
	defer s.track(c, false)
	defer c.Close()
	log := s.logger()
	ci := ConnInfo{Remote: c.RemoteAddr()}
	if s.TLSConfig != nil {
		tc := tls.Server(c, s.TLSConfig)
		hsTimeout := s.ReadTimeout
		if hsTimeout == 0 {
			hsTimeout = 30 * time.Second
		}
		_ = tc.SetDeadline(time.Now().Add(hsTimeout))
		if err := tc.HandshakeContext(s.ctx); err != nil {
			s.refuse(ci.Remote, RefusedHandshake, err)
			return
		}
		_ = tc.SetDeadline(time.Time{})
		st := tc.ConnectionState()
		ci.TLS = &st
		c = tc
	}
	gen := s.idGen.Load()
	if s.Identify != nil {
		name, err := s.Identify(ci)
		if err != nil {
			s.refuse(ci.Remote, RefusedIdentity, err)
			return
		}
		ci.Sender = name
	}
	dr := &deadlineReader{c: c, idle: s.IdleTimeout, read: s.ReadTimeout}
	r := NewReader(dr, s.MaxFrameSize)
	var lastSkipped int64
	for {
		if s.closing.Load() {
			return
		}
		dr.startFrame()
		frame, err := r.ReadFrame()
		if sk := r.Skipped(); sk != lastSkipped {
			s.skipped.Add(sk - lastSkipped)
			lastSkipped = sk
		}
		if err != nil && !errors.Is(err, ErrFrameTooLarge) {
			if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				log.Info("mllp connection ended", "remote", ci.Remote.String(), "err", err)
			}
			return
		}
		if err != nil {
			s.oversize.Add(1)
		}
		s.frames.Add(1)
		if g := s.idGen.Load(); g != gen && s.Identify != nil {
			// The senders changed while this connection was open: a peer no
			// longer recognised is closed with its frame unanswered, so that
			// it sends it again on a connection that is refused.
			gen = g
			name, ierr := s.Identify(ci)
			if ierr != nil {
				s.refuse(ci.Remote, RefusedIdentity, ierr)
				return
			}
			ci.Sender = name
		}
		reply := s.Handler.ServeMLLP(s.ctx, ci, frame, err)
		if reply == nil {
			continue // the sender asked for no acknowledgement (MSH-15 NE, ER, SU)
		}
		if s.WriteTimeout > 0 {
			_ = c.SetWriteDeadline(time.Now().Add(s.WriteTimeout))
		}
		if werr := WriteFrame(c, reply); werr != nil {
			log.Info("mllp write failed", "remote", ci.Remote.String(), "err", werr)
			return
		}
	}
}

// deadlineReader bounds silence (no byte for IdleTimeout) and the time one
// frame may take (IdleTimeout+ReadTimeout from when the server starts waiting
// for it), so a stalled or trickling peer cannot hold a connection forever.
type deadlineReader struct {
	c             net.Conn
	idle, read    time.Duration
	frameDeadline time.Time
}

func (d *deadlineReader) startFrame() {
	if d.read > 0 || d.idle > 0 {
		d.frameDeadline = time.Now().Add(d.idle + d.read)
	}
}

func (d *deadlineReader) Read(p []byte) (int, error) {
	var dl time.Time
	if d.idle > 0 {
		dl = time.Now().Add(d.idle)
	}
	if !d.frameDeadline.IsZero() && (dl.IsZero() || d.frameDeadline.Before(dl)) {
		dl = d.frameDeadline
	}
	_ = d.c.SetReadDeadline(dl)
	return d.c.Read(p)
}

// Shutdown stops accepting, lets each connection finish the message it is
// handling, then closes it; it waits until all are done or ctx ends.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.closing.Store(true)
	s.mu.Lock()
	for ln := range s.listeners {
		ln.Close()
	}
	// Wake connections blocked waiting for a next frame; one in the middle of
	// a handler finishes it and writes its reply first.
	for c := range s.conns {
		_ = c.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.inFlight.Wait(); close(done) }()
	select {
	case <-done:
		s.cancel()
		return nil
	case <-ctx.Done():
		s.cancel()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		return ctx.Err()
	}
}

package mllp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"
)

func startServer(t *testing.T, s *Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Serve(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Shutdown(ctx); err != nil {
			t.Errorf("shutdown: %v", err)
		}
		if err := <-done; !errors.Is(err, ErrServerClosed) {
			t.Errorf("serve returned %v", err)
		}
	})
	return ln.Addr().String()
}

func echoHandler() Handler {
	return HandlerFunc(func(_ context.Context, _ ConnInfo, frame []byte, ferr error) []byte {
		if ferr != nil {
			return []byte("TOO-LARGE " + string(frame[:3]))
		}
		return append([]byte("ACK "), frame...)
	})
}

func TestServerAnswersEveryFrameInOrder(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler(), MaxFrameSize: 100})
	var wg sync.WaitGroup
	for c := 0; c < 8; c++ {
		wg.Add(1)
		go func(c int) {
			defer wg.Done()
			cl, err := Dial(context.Background(), addr, nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer cl.Close()
			for i := 0; i < 50; i++ {
				msg := fmt.Sprintf("MSH|%d|%d", c, i)
				reply, err := cl.Send(context.Background(), []byte(msg))
				if err != nil {
					t.Error(err)
					return
				}
				if string(reply) != "ACK "+msg {
					t.Errorf("reply %q for %q", reply, msg)
				}
			}
		}(c)
	}
	wg.Wait()
}

func TestServerAnswersOversizeFrame(t *testing.T) {
	addr := startServer(t, &Server{Handler: echoHandler(), MaxFrameSize: 100})
	cl, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reply, err := cl.Send(context.Background(), append([]byte("MSH"), bytes.Repeat([]byte("x"), 5000)...))
	if err != nil || string(reply) != "TOO-LARGE MSH" {
		t.Fatalf("oversize: %q %v", reply, err)
	}
	reply, err = cl.Send(context.Background(), []byte("MSH|next"))
	if err != nil || string(reply) != "ACK MSH|next" {
		t.Fatalf("after oversize: %q %v", reply, err)
	}
}

func TestServerIdleTimeoutClosesStalledPeer(t *testing.T) {
	s := &Server{Handler: echoHandler(), IdleTimeout: 50 * time.Millisecond, ReadTimeout: 50 * time.Millisecond}
	addr := startServer(t, s)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_, _ = c.Write([]byte("\x0bMSH|never ends"))
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 10)
	if _, err := c.Read(buf); err == nil {
		t.Fatal("expected the server to close a stalled connection")
	}
	// The server closes the socket before it counts the connection gone.
	for i := 0; i < 500 && s.Stats().Active != 0; i++ {
		time.Sleep(10 * time.Millisecond)
	}
	if s.Stats().Active != 0 {
		t.Fatalf("active connections %d", s.Stats().Active)
	}
}

func TestServerMaxConnsAndAllowList(t *testing.T) {
	block := make(chan struct{})
	s := &Server{
		Handler:  HandlerFunc(func(context.Context, ConnInfo, []byte, error) []byte { <-block; return []byte("ok") }),
		MaxConns: 1,
	}
	addr := startServer(t, s)
	c1, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c1.Close()
	go func() { _, _ = c1.Send(context.Background(), []byte("MSH|1")) }()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Active < 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c2, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	c2.Timeout = 2 * time.Second
	if _, err := c2.Send(context.Background(), []byte("MSH|2")); err == nil {
		t.Fatal("second connection should have been refused")
	}
	close(block)
	if s.Stats().Refused != 1 {
		t.Fatalf("refused = %d", s.Stats().Refused)
	}

	denied := &Server{Handler: echoHandler(), Allow: func(net.Addr) bool { return false }}
	addr2 := startServer(t, denied)
	c3, err := Dial(context.Background(), addr2, nil)
	if err != nil {
		t.Fatal(err)
	}
	c3.Timeout = 2 * time.Second
	if _, err := c3.Send(context.Background(), []byte("MSH|3")); err == nil {
		t.Fatal("allow-list should refuse")
	}
}

func TestShutdownFinishesInFlightMessage(t *testing.T) {
	started := make(chan struct{})
	s := &Server{Handler: HandlerFunc(func(context.Context, ConnInfo, []byte, error) []byte {
		close(started)
		time.Sleep(100 * time.Millisecond)
		return []byte("committed")
	})}
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	go s.Serve(ln)
	cl, err := Dial(context.Background(), ln.Addr().String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan string, 1)
	go func() { r, _ := cl.Send(context.Background(), []byte("MSH|x")); res <- string(r) }()
	<-started
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := <-res; got != "committed" {
		t.Fatalf("in-flight reply %q", got)
	}
}

// TestPanicClosesOnlyItsConnection: a handler that panics (a defect) costs
// its connection, which is closed and counted; the server goes on serving
// the others.
func TestPanicClosesOnlyItsConnection(t *testing.T) {
	s := &Server{Handler: HandlerFunc(func(_ context.Context, _ ConnInfo, frame []byte, _ error) []byte {
		if bytes.Contains(frame, []byte("BOOM")) {
			var m map[string]int
			m["x"]++
		}
		return append([]byte("ACK "), frame...)
	})}
	addr := startServer(t, s)
	good, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer good.Close()
	bad, err := Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	if _, err := bad.Send(context.Background(), []byte("MSH|BOOM")); err == nil {
		t.Fatal("the panicking connection answered")
	}
	for i := range 3 {
		msg := fmt.Sprintf("MSH|%d", i)
		if reply, err := good.Send(context.Background(), []byte(msg)); err != nil || string(reply) != "ACK "+msg {
			t.Fatalf("after a panic on another connection: %q %v", reply, err)
		}
	}
	// The connection is closed before the panic is counted (serveConn's
	// deferred calls run first), so the count may trail the client's error.
	deadline := time.Now().Add(10 * time.Second)
	for st := s.Stats(); st.Panics != 1 || st.Active != 1; st = s.Stats() {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want one panic and one connection open", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// At most MaxConnsPerAddr connections from one address are served; the next
// is refused (too-many-from-address) while the address's others stay, and
// a place given back is taken again. Every test connection comes from
// 127.0.0.1.
func TestMaxConnsPerAddr(t *testing.T) {
	ref := &refusals{}
	s := &Server{Handler: echoHandler(), MaxConns: 10, MaxConnsPerAddr: 2, OnRefuse: ref.add}
	addr := startServer(t, s)
	dial := func() *Client {
		t.Helper()
		c, err := Dial(context.Background(), addr, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.Timeout = 2 * time.Second
		return c
	}
	c1, c2 := dial(), dial()
	for i, c := range []*Client{c1, c2} {
		if got, err := c.Send(context.Background(), []byte(fmt.Sprint("MSH|", i))); err != nil || string(got) != fmt.Sprint("ACK MSH|", i) {
			t.Fatalf("connection %d: %q %v", i+1, got, err)
		}
	}
	c3 := dial()
	if _, err := c3.Send(context.Background(), []byte("MSH|3")); err == nil {
		t.Fatal("a third connection from the address was served")
	}
	c3.Close()
	if r := ref.wait(t, 1); r[0].reason != RefusedPerPeer || !strings.Contains(r[0].cause.Error(), "more than 2 connections from 127.0.0.1") {
		t.Fatalf("refusal %+v", r[0])
	}
	if got, err := c1.Send(context.Background(), []byte("MSH|again")); err != nil || string(got) != "ACK MSH|again" {
		t.Fatalf("the first connection after the refusal: %q %v", got, err)
	}
	c2.Close()
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Active > 1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c4 := dial()
	defer c4.Close()
	if got, err := c4.Send(context.Background(), []byte("MSH|4")); err != nil || string(got) != "ACK MSH|4" {
		t.Fatalf("a connection after one closed: %q %v", got, err)
	}
	c1.Close()
}

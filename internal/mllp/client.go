package mllp

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"time"
)

// Client sends messages over one MLLP connection and waits for each reply.
// It is not safe for concurrent use; open one per sender goroutine.
type Client struct {
	conn    net.Conn
	r       *Reader
	Timeout time.Duration // per message, for writing it and reading the reply
}

// Dial connects to addr; tlsConf, when set, wraps the connection in TLS.
func Dial(ctx context.Context, addr string, tlsConf *tls.Config) (*Client, error) {
	var d net.Dialer
	var c net.Conn
	var err error
	if tlsConf != nil {
		td := tls.Dialer{NetDialer: &d, Config: tlsConf}
		c, err = td.DialContext(ctx, "tcp", addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", addr)
	}
	if err != nil {
		return nil, fmt.Errorf("mllp dial %s: %w", addr, err)
	}
	return &Client{conn: c, r: NewReader(c, 0), Timeout: 30 * time.Second}, nil
}

// Send writes msg as one frame and returns the reply frame (a copy).
func (c *Client) Send(ctx context.Context, msg []byte) ([]byte, error) {
	dl := time.Now().Add(c.Timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = c.conn.SetDeadline(dl)
	if err := WriteFrame(c.conn, msg); err != nil {
		return nil, fmt.Errorf("mllp send: %w", err)
	}
	reply, err := c.r.ReadFrame()
	if err != nil {
		return nil, fmt.Errorf("mllp reply: %w", err)
	}
	return append([]byte(nil), reply...), nil
}

// Close closes the connection.
func (c *Client) Close() error { return c.conn.Close() }

package sftpd

import (
	"encoding/binary"
	"io"
	"sync"
	"time"
)

// SFTP packet types the barrier looks for (draft-ietf-secsh-filexfer-02).
const (
	fxpOpen    = 3
	fxpOpendir = 11
	fxpStatus  = 101
	fxpHandle  = 102
)

// openBarrier sits between a session's channel and pkg/sftp's request
// server. pkg/sftp makes a new handle valid before its open has finished
// setting up the request, and serves reads and writes on other goroutines
// than opens: a client that sends a write on the handle it expects (they are
// numbered in order) before the open is answered has pkg/sftp read the
// request while the open still writes it, a data race inside pkg/sftp that
// a hostile client could repeat at will. The barrier gives pkg/sftp no packet
// after an OPEN or OPENDIR until pkg/sftp has written the answer to it.
// Clients wait for that answer anyway, since it carries the handle, so they
// lose nothing.
type openBarrier struct {
	ch io.ReadWriteCloser

	// reading side: pkg/sftp reads from one goroutine
	pending []byte // rest of the packet being handed over
	buf     []byte
	raw     bool // a packet too long to hold: pass the rest through (pkg/sftp refuses it)

	mu     sync.Mutex
	waitID uint32
	answer chan struct{} // closed when the awaited answer is written; nil when none is awaited
	closed bool

	// writing side: pkg/sftp writes a packet's header and payload in two
	// writes, under its own lock
	wmu  sync.Mutex
	whdr []byte // the first bytes (up to 9) of the packet being written
	wrem int    // bytes of that packet still to come after whdr
}

// barrierWait bounds the wait for an answer, should pkg/sftp never give
// one: the session then goes on as without the barrier.
const barrierWait = 30 * time.Second

func newOpenBarrier(ch io.ReadWriteCloser) *openBarrier {
	return &openBarrier{ch: ch, whdr: make([]byte, 0, 9)}
}

func (b *openBarrier) Read(p []byte) (int, error) {
	if b.raw {
		return b.ch.Read(p)
	}
	if len(b.pending) == 0 {
		b.awaitAnswer()
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// next reads the client's next packet whole into b.pending.
func (b *openBarrier) next() error {
	var hdr [4]byte
	if _, err := io.ReadFull(b.ch, hdr[:]); err != nil {
		return err
	}
	n := binary.BigEndian.Uint32(hdr[:])
	if n > maxPacket {
		b.raw = true
		b.pending = append(b.buf[:0], hdr[:]...)
		return nil
	}
	if cap(b.buf) < 4+int(n) {
		b.buf = make([]byte, 4+int(n))
	}
	b.buf = b.buf[:4+int(n)]
	copy(b.buf, hdr[:])
	if _, err := io.ReadFull(b.ch, b.buf[4:]); err != nil {
		return err
	}
	b.pending = b.buf
	if n >= 5 && (b.buf[4] == fxpOpen || b.buf[4] == fxpOpendir) {
		b.mu.Lock()
		if !b.closed {
			b.waitID, b.answer = binary.BigEndian.Uint32(b.buf[5:9]), make(chan struct{})
		}
		b.mu.Unlock()
	}
	return nil
}

// maxPacket is pkg/sftp's own limit on a packet's length, plus room.
const maxPacket = 256<<10 + 1024

// awaitAnswer waits until the open handed over last was answered, the
// session closed, or barrierWait passed.
func (b *openBarrier) awaitAnswer() {
	b.mu.Lock()
	ch := b.answer
	b.mu.Unlock()
	if ch == nil {
		return
	}
	t := time.NewTimer(barrierWait)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	}
	b.mu.Lock()
	if b.answer == ch {
		b.answer = nil
	}
	b.mu.Unlock()
}

func (b *openBarrier) Write(p []byte) (int, error) {
	b.wmu.Lock()
	defer b.wmu.Unlock()
	n, err := b.ch.Write(p)
	b.observe(p[:n])
	return n, err
}

// observe follows the packets pkg/sftp writes and releases the reading side
// when the answer (a handle or a status) to the awaited open has gone out.
func (b *openBarrier) observe(p []byte) {
	for len(p) > 0 {
		if b.wrem > 0 {
			k := min(b.wrem, len(p))
			b.wrem -= k
			p = p[k:]
			continue
		}
		k := min(9-len(b.whdr), len(p))
		b.whdr = append(b.whdr, p[:k]...)
		p = p[k:]
		if len(b.whdr) < 9 {
			continue
		}
		length := int(binary.BigEndian.Uint32(b.whdr[:4]))
		typ, id := b.whdr[4], binary.BigEndian.Uint32(b.whdr[5:9])
		b.whdr = b.whdr[:0]
		b.wrem = max(length-5, 0)
		if typ == fxpStatus || typ == fxpHandle {
			b.mu.Lock()
			if b.answer != nil && id == b.waitID {
				close(b.answer)
				b.answer = nil
			}
			b.mu.Unlock()
		}
	}
}

// Close closes the channel and releases a reader waiting for an answer.
func (b *openBarrier) Close() error {
	b.mu.Lock()
	b.closed = true
	if b.answer != nil {
		close(b.answer)
		b.answer = nil
	}
	b.mu.Unlock()
	return b.ch.Close()
}

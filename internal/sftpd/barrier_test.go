package sftpd

import (
	"bytes"
	"encoding/binary"
	"io"
	"testing"
	"time"
)

// packet frames an SFTP packet of type typ with request id id and body.
func packet(typ byte, id uint32, body []byte) []byte {
	p := binary.BigEndian.AppendUint32(nil, uint32(5+len(body)))
	p = append(p, typ)
	p = binary.BigEndian.AppendUint32(p, id)
	return append(p, body...)
}

// loopChannel is a channel whose input is fixed and whose output is kept.
type loopChannel struct {
	io.Reader
	out    bytes.Buffer
	closed bool
}

func (c *loopChannel) Write(p []byte) (int, error) { return c.out.Write(p) }
func (c *loopChannel) Close() error                { c.closed = true; return nil }

// readPacket reads one whole packet through the barrier, in small reads as
// pkg/sftp may.
func readPacket(r io.Reader) ([]byte, error) {
	var hdr [4]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, err
	}
	body := make([]byte, binary.BigEndian.Uint32(hdr[:]))
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, err
	}
	return append(hdr[:], body...), nil
}

// After an OPEN, the barrier hands over nothing more until the answer to
// that open (and not to another request) has been written, however pkg/sftp
// splits its writes.
func TestBarrierHoldsPacketsAfterOpen(t *testing.T) {
	open := packet(fxpOpen, 7, []byte("\x00\x00\x00\x0c/inbox/a.hl7\x00\x00\x00\x1a\x00\x00\x00\x00"))
	write := packet(6, 8, []byte("\x00\x00\x00\x011\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02hi"))
	ch := &loopChannel{Reader: bytes.NewReader(append(append([]byte{}, open...), write...))}
	b := newOpenBarrier(ch)
	if got, err := readPacket(b); err != nil || !bytes.Equal(got, open) {
		t.Fatalf("first packet %x (%v), want the open", got, err)
	}
	got := make(chan []byte, 1)
	go func() {
		p, _ := readPacket(b)
		got <- p
	}()
	held := func(what string) {
		select {
		case p := <-got:
			t.Fatalf("%s: the packet after the open was handed over: %x", what, p)
		case <-time.After(100 * time.Millisecond):
		}
	}
	held("before any answer")
	other := packet(fxpStatus, 6, make([]byte, 12))
	b.Write(other[:3]) // an answer to another request, split mid-header
	b.Write(other[3:])
	held("after the answer to request 6")
	answer := packet(fxpHandle, 7, []byte("\x00\x00\x00\x011"))
	b.Write(answer[:7])
	b.Write(answer[7:])
	select {
	case p := <-got:
		if !bytes.Equal(p, write) {
			t.Fatalf("second packet %x, want the write", p)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the packet after the open is still held after its answer")
	}
	if !bytes.Equal(ch.out.Bytes(), append(other, answer...)) {
		t.Fatalf("the answers were not passed on unchanged: %x", ch.out.Bytes())
	}
}

// Closing the session releases a reader held behind an unanswered open.
func TestBarrierCloseReleases(t *testing.T) {
	ch := &loopChannel{Reader: bytes.NewReader(append(packet(fxpOpendir, 1, []byte("\x00\x00\x00\x01/")),
		packet(12, 2, []byte("\x00\x00\x00\x011"))...))}
	b := newOpenBarrier(ch)
	if _, err := readPacket(b); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		_, _ = readPacket(b)
		close(done)
	}()
	b.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("a reader held behind an open was not released by Close")
	}
	if !ch.closed {
		t.Fatal("the channel was not closed")
	}
}

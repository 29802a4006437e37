// Package mllp implements the Minimal Lower Layer Protocol that carries HL7 v2
// over TCP: a pure frame codec, a server shaped like net/http's, and a client.
package mllp

import (
	"bufio"
	"errors"
	"fmt"
	"io"
)

// Frame bytes: <VT> message <FS><CR>.
const (
	StartBlock = 0x0B
	EndBlock   = 0x1C
	CarriageRt = 0x0D
)

// DefaultMaxFrameSize bounds a frame when no limit is configured.
const DefaultMaxFrameSize = 16 << 20

var (
	// ErrFrameTooLarge: a frame grew past the reader's limit. The rest of the
	// frame has been skipped, so the stream stays usable.
	ErrFrameTooLarge = errors.New("mllp: frame too large")
	// ErrMissingEndBlock: the stream ended inside a frame.
	ErrMissingEndBlock = errors.New("mllp: stream ended inside a frame (no end block)")
)

// Reader reads MLLP frames from a stream.
type Reader struct {
	r       *bufio.Reader
	max     int
	skipped int64
	buf     []byte
}

// NewReader returns a Reader that refuses frames larger than max bytes (0
// means DefaultMaxFrameSize).
func NewReader(r io.Reader, max int) *Reader {
	if max <= 0 {
		max = DefaultMaxFrameSize
	}
	return &Reader{r: bufio.NewReaderSize(r, 64<<10), max: max}
}

// Skipped reports how many bytes outside frames have been discarded so far.
func (r *Reader) Skipped() int64 { return r.skipped }

// prefixKept is how much of an oversize frame ReadFrame keeps, so that the
// caller can still read its MSH and answer it.
const prefixKept = 4096

// ReadFrame returns the next frame's payload. The slice is valid until the
// next call. Bytes before a start block are skipped and counted. io.EOF means
// the stream ended cleanly between frames. For a frame over the limit it
// returns the frame's first bytes together with ErrFrameTooLarge.
func (r *Reader) ReadFrame() ([]byte, error) {
	// Find the start block.
	for {
		b, err := r.r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b == StartBlock {
			break
		}
		r.skipped++
	}
	r.buf = r.buf[:0]
	tooLarge := false
	for {
		chunk, err := r.r.ReadSlice(EndBlock)
		switch {
		case err == nil:
			chunk = chunk[:len(chunk)-1]
		case errors.Is(err, bufio.ErrBufferFull):
		case errors.Is(err, io.EOF):
			return nil, ErrMissingEndBlock
		default:
			return nil, err
		}
		if !tooLarge {
			if len(r.buf)+len(chunk) > r.max {
				tooLarge = true
				keep := min(prefixKept, r.max) - len(r.buf)
				if keep > 0 {
					r.buf = append(r.buf, chunk[:min(keep, len(chunk))]...)
				}
			} else {
				r.buf = append(r.buf, chunk...)
			}
		}
		if err == nil {
			break
		}
	}
	// The end block must be followed by CR; tolerate its absence but do not
	// swallow the next frame's start block.
	next, err := r.r.Peek(1)
	if err == nil && next[0] == CarriageRt {
		_, _ = r.r.ReadByte()
	}
	if tooLarge {
		return r.buf, fmt.Errorf("%w (limit %d bytes)", ErrFrameTooLarge, r.max)
	}
	return r.buf, nil
}

// WriteFrame writes payload as one frame.
func WriteFrame(w io.Writer, payload []byte) error {
	buf := make([]byte, 0, len(payload)+3)
	buf = append(buf, StartBlock)
	buf = append(buf, payload...)
	buf = append(buf, EndBlock, CarriageRt)
	_, err := w.Write(buf)
	return err
}

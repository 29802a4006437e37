package sqlstore

import (
	"encoding/binary"
	"errors"
	"strings"
	"unicode/utf8"

	"github.com/hiegw/hiegw/internal/mpi"
)

// The cand column holds what scoring reads of an entry, so that Candidates
// need not decode the entry's JSON body: a format byte, then the record's
// compared fields, its address lines and the entry's "not the same" keys,
// each string as a uvarint length and its bytes. Values are made valid UTF-8
// the way encoding/json does, so a candidate reads the same as its body.

const candFormat = 1

// candFields lists the record's compared string fields in their order in
// the encoding.
func candFields(r *mpi.Record) [10]*string {
	return [10]*string{&r.Family, &r.Given, &r.Middle, &r.BirthDate, &r.Sex, &r.NationalID,
		&r.City, &r.State, &r.Postcode, &r.Phone}
}

func appendString(b []byte, s string) []byte {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// encodeCand encodes the scoring view of e.
func encodeCand(e *mpi.Entry) []byte {
	r := e.Record
	n := 16
	for _, f := range candFields(&r) {
		n += len(*f) + 1
	}
	for _, l := range r.AddressLines {
		n += len(l) + 1
	}
	b := make([]byte, 0, n)
	b = append(b, candFormat)
	for _, f := range candFields(&r) {
		b = appendString(b, *f)
	}
	b = binary.AppendUvarint(b, uint64(len(r.AddressLines)))
	for _, l := range r.AddressLines {
		b = appendString(b, l)
	}
	b = binary.AppendUvarint(b, uint64(len(e.NotSame)))
	for _, k := range e.NotSame {
		b = appendString(b, k.Authority)
		b = appendString(b, k.MRN)
	}
	return b
}

var errBadCand = errors.New("malformed candidate column")

// candReader reads strings out of one encoded value; they share its memory.
type candReader struct {
	s   string
	err error
}

func (c *candReader) uvarint() int {
	if c.err != nil {
		return 0
	}
	var v uint64
	for i := 0; i < len(c.s) && i < binary.MaxVarintLen64; i++ {
		b := c.s[i]
		v |= uint64(b&0x7f) << (7 * i)
		if b < 0x80 {
			if v > uint64(len(c.s)-i-1) {
				break
			}
			c.s = c.s[i+1:]
			return int(v)
		}
	}
	c.err = errBadCand
	return 0
}

func (c *candReader) str() string {
	n := c.uvarint()
	if c.err != nil {
		return ""
	}
	v := c.s[:n]
	c.s = c.s[n:]
	return v
}

// decodeCand fills e's record fields and not-same list from an encoded
// value; the key and enterprise id come from their own columns.
func decodeCand(s string, e *mpi.Entry) error {
	if len(s) == 0 || s[0] != candFormat {
		return errBadCand
	}
	c := candReader{s: s[1:]}
	for _, f := range candFields(&e.Record) {
		*f = c.str()
	}
	if n := c.uvarint(); n > 0 {
		e.Record.AddressLines = make([]string, n)
		for i := range n {
			e.Record.AddressLines[i] = c.str()
		}
	}
	if n := c.uvarint(); n > 0 {
		e.NotSame = make([]mpi.Key, n)
		for i := range n {
			e.NotSame[i] = mpi.Key{Authority: c.str(), MRN: c.str()}
		}
	}
	if c.err == nil && c.s != "" {
		c.err = errBadCand
	}
	return c.err
}

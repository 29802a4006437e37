package hl7

import (
	"bytes"
	"unicode/utf8"

	"golang.org/x/text/encoding/charmap"
)

// charset is the character set a message declares in MSH-18.
type charset struct {
	kind      csKind
	cm        *charmap.Charmap // for csCharmap
	supported bool             // false when MSH-18 names a set we cannot decode (text is then read as UTF-8)
}

type csKind uint8

const (
	csUTF8    csKind = iota // also the default when MSH-18 is empty
	csASCII                 // bytes above 0x7F are errors; read as UTF-8 when valid
	csCharmap               // a single-byte set, e.g. 8859/1
)

// charsetOf maps an MSH-18 value (HL7 table 0211) to a decoder.
func charsetOf(v []byte) charset {
	switch string(v) {
	case "", "UNICODE UTF-8", "UNICODE", "UTF-8", "UTF8":
		return charset{kind: csUTF8, supported: true}
	case "ASCII", "ISO IR6":
		return charset{kind: csASCII, supported: true}
	case "8859/1", "ISO IR100", "ISO-8859-1", "8859-1":
		return charset{kind: csCharmap, cm: charmap.ISO8859_1, supported: true}
	case "8859/2", "ISO IR101":
		return charset{kind: csCharmap, cm: charmap.ISO8859_2, supported: true}
	case "8859/3", "ISO IR109":
		return charset{kind: csCharmap, cm: charmap.ISO8859_3, supported: true}
	case "8859/4", "ISO IR110":
		return charset{kind: csCharmap, cm: charmap.ISO8859_4, supported: true}
	case "8859/5", "ISO IR144":
		return charset{kind: csCharmap, cm: charmap.ISO8859_5, supported: true}
	case "8859/6", "ISO IR127":
		return charset{kind: csCharmap, cm: charmap.ISO8859_6, supported: true}
	case "8859/7", "ISO IR126":
		return charset{kind: csCharmap, cm: charmap.ISO8859_7, supported: true}
	case "8859/8", "ISO IR138":
		return charset{kind: csCharmap, cm: charmap.ISO8859_8, supported: true}
	case "8859/9", "ISO IR148":
		return charset{kind: csCharmap, cm: charmap.ISO8859_9, supported: true}
	case "8859/15":
		return charset{kind: csCharmap, cm: charmap.ISO8859_15, supported: true}
	case "CP1252", "WINDOWS-1252":
		return charset{kind: csCharmap, cm: charmap.Windows1252, supported: true}
	}
	return charset{kind: csUTF8}
}

// plain reports whether b can be handed out as it is: no escape character, and either pure ASCII or valid UTF-8
// in a message read as UTF-8.
func (m *Message) plain(b []byte) bool {
	esc := m.d.Escape
	high := false
	for _, c := range b {
		if c == esc && esc != 0 {
			return false
		}
		if c >= 0x80 {
			high = true
		}
	}
	if !high {
		return true
	}
	return m.cs.kind != csCharmap && utf8.Valid(b)
}

// decode returns raw[s:e] with escapes decoded and converted to UTF-8. When nothing needs changing it returns a
// substring of the message text and allocates nothing (beyond the one copy of the message per Message).
func (m *Message) decode(s, e int32) string {
	b := m.raw[s:e]
	if m.plain(b) {
		return m.text()[s:e]
	}
	return string(m.appendDecoded(make([]byte, 0, len(b)+8), s, e))
}

// appendDecoded appends raw[s:e] decoded to dst.
func (m *Message) appendDecoded(dst []byte, s, e int32) []byte {
	b := m.raw[s:e]
	if m.plain(b) {
		return append(dst, b...)
	}
	start := len(dst)
	dst, _ = unescape(dst, b, m.d, m.opts.KeepHighlight)
	return m.toUTF8(dst, start)
}

// toUTF8 converts dst[start:] from the message's character set to valid UTF-8 in place (invalid bytes become
// U+FFFD).
func (m *Message) toUTF8(dst []byte, start int) []byte {
	t := dst[start:]
	if m.cs.kind == csCharmap {
		if isASCII(t) {
			return dst
		}
		tmp := append([]byte(nil), t...)
		dst = dst[:start]
		for _, c := range tmp {
			dst = utf8.AppendRune(dst, m.cs.cm.DecodeByte(c))
		}
		return dst
	}
	if utf8.Valid(t) {
		return dst
	}
	tmp := append([]byte(nil), t...)
	dst = dst[:start]
	for len(tmp) > 0 {
		r, n := utf8.DecodeRune(tmp)
		dst = utf8.AppendRune(dst, r) // RuneError for invalid bytes
		tmp = tmp[n:]
	}
	return dst
}

func isASCII(b []byte) bool {
	for _, c := range b {
		if c >= 0x80 {
			return false
		}
	}
	return true
}

// unescape appends b to dst with escape sequences decoded: \F\ \S\ \T\ \R\ \E\ (and \P\ when a truncation
// character is declared) become the delimiters, \Xhh..\ the bytes it spells, \.br\ a newline; \H\ and \N\ are
// dropped unless keepHighlight; anything else is kept literally. It reports the first malformed sequence.
func unescape(dst, b []byte, d Delimiters, keepHighlight bool) ([]byte, string) {
	esc := d.Escape
	if esc == 0 {
		return append(dst, b...), ""
	}
	var prob string
	for len(b) > 0 {
		i := bytes.IndexByte(b, esc)
		if i < 0 {
			dst = append(dst, b...)
			break
		}
		dst = append(dst, b[:i]...)
		rest := b[i+1:]
		j := bytes.IndexByte(rest, esc)
		if j < 0 {
			if prob == "" {
				prob = "unterminated escape sequence"
			}
			dst = append(dst, b[i:]...)
			break
		}
		seq := rest[:j]
		whole := b[i : i+j+2]
		b = rest[j+1:]
		if len(seq) == 1 {
			switch seq[0] {
			case 'F':
				dst = append(dst, d.Field)
				continue
			case 'S':
				dst = append(dst, d.Component)
				continue
			case 'T':
				dst = appendOr(dst, d.Subcomponent, whole)
				continue
			case 'R':
				dst = appendOr(dst, d.Repetition, whole)
				continue
			case 'E':
				dst = append(dst, esc)
				continue
			case 'P':
				dst = appendOr(dst, d.Truncation, whole)
				continue
			case 'H', 'N':
				if keepHighlight {
					dst = append(dst, whole...)
				}
				continue
			}
		}
		if len(seq) > 1 && seq[0] == 'X' {
			if out, ok := appendHex(dst, seq[1:]); ok {
				dst = out
				continue
			}
			if prob == "" {
				prob = "hexadecimal escape is not an even number of hexadecimal digits"
			}
		}
		if string(seq) == ".br" {
			dst = append(dst, '\n')
			continue
		}
		if len(seq) == 0 && prob == "" {
			prob = "empty escape sequence"
		}
		dst = append(dst, whole...)
	}
	return dst, prob
}

func appendOr(dst []byte, c byte, whole []byte) []byte {
	if c == 0 {
		return append(dst, whole...)
	}
	return append(dst, c)
}

func appendHex(dst, h []byte) ([]byte, bool) {
	if len(h)%2 != 0 {
		return dst, false
	}
	n := len(dst)
	for i := 0; i < len(h); i += 2 {
		hi, ok1 := unhex(h[i])
		lo, ok2 := unhex(h[i+1])
		if !ok1 || !ok2 {
			return dst[:n], false
		}
		dst = append(dst, hi<<4|lo)
	}
	return dst, true
}

func unhex(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// Unescape decodes the escape sequences of an encoded value written with delimiters d (no character-set
// conversion). It never fails: malformed sequences are kept literally.
func Unescape(value []byte, d Delimiters) []byte {
	out, _ := unescape(make([]byte, 0, len(value)), value, d, false)
	return out
}

// Escape encodes text for use as a value with delimiters d: delimiters become \F\ \S\ \T\ \R\ \E\, newline
// becomes \.br\ and other control characters \Xhh\ (newline too when '.' is one of the delimiters). When d has no
// escape character, delimiters and control characters are replaced by spaces, since they cannot be written safely.
func Escape(text string, d Delimiters) string {
	return string(AppendEscaped(nil, text, d))
}

// has reports whether c is one of d's delimiters.
func (d Delimiters) has(c byte) bool {
	return c == d.Field || c == d.Component || c == d.Repetition || c == d.Escape || c == d.Subcomponent ||
		c == d.Truncation
}

// AppendEscaped appends text encoded with d to dst (see Escape).
func AppendEscaped(dst []byte, text string, d Delimiters) []byte {
	const hexdig = "0123456789ABCDEF"
	esc := d.Escape
	for i := 0; i < len(text); i++ {
		c := text[i]
		var code byte
		switch {
		case c == d.Field:
			code = 'F'
		case c == d.Component:
			code = 'S'
		case c == d.Subcomponent && c != 0:
			code = 'T'
		case c == d.Repetition && c != 0:
			code = 'R'
		case c == esc && c != 0:
			code = 'E'
		case c == d.Truncation && c != 0:
			code = 'P'
		case c == '\n' && !d.has('.'): // with '.' as a delimiter \.br\ cannot be written; use hex
			code = '.'
		case c < ' ' || c == 0x7f:
			code = 'X'
		default:
			dst = append(dst, c)
			continue
		}
		switch {
		case esc == 0:
			dst = append(dst, ' ')
		case code == '.':
			dst = append(dst, esc, '.', 'b', 'r', esc)
		case code == 'X':
			dst = append(dst, esc, 'X', hexdig[c>>4], hexdig[c&15], esc)
		default:
			dst = append(dst, esc, code, esc)
		}
	}
	return dst
}

// common segment names, so Name does not allocate for them.
var segmentNames = func() map[[3]byte]string {
	names := []string{"MSH", "MSA", "ERR", "EVN", "PID", "PD1", "PV1", "PV2", "NK1", "OBR", "OBX", "NTE", "ORC",
		"SPM", "AL1", "DG1", "PR1", "GT1", "IN1", "IN2", "IN3", "MRG", "RXA", "RXR", "RXE", "RXD", "RXO", "RXC",
		"TQ1", "TQ2", "SFT", "ROL", "DB1", "ACC", "UB1", "UB2", "PDA", "ARV", "IAM", "FHS", "FTS", "BHS", "BTS",
		"QRD", "QRF", "QPD", "RCP", "QAK", "TXA", "FT1", "SCH", "AIS", "AIG", "AIL", "AIP", "RGS", "CTD", "TCD",
		"SAC", "PRT", "OBX", "ZPD"}
	out := make(map[[3]byte]string, len(names))
	for _, n := range names {
		out[[3]byte{n[0], n[1], n[2]}] = n
	}
	return out
}()

func segmentName(m *Message, start int32) string {
	if m.strOK {
		return m.str[start : start+3]
	}
	r := m.raw[start : start+3]
	if n, ok := segmentNames[[3]byte{r[0], r[1], r[2]}]; ok {
		return n
	}
	return m.text()[start : start+3]
}

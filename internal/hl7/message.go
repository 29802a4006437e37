package hl7

import (
	"bytes"
)

// Options tune parsing and decoding. The zero value is the default behaviour.
type Options struct {
	// MaxBytes refuses larger messages with ErrTooLarge (0: no limit).
	MaxBytes int
	// MaxSegments refuses messages with more segments with ErrTooLarge (0: no limit).
	MaxSegments int
	// KeepHighlight keeps the \H\ and \N\ highlighting escapes in decoded text instead of stripping them.
	KeepHighlight bool
	// Strict makes Parse also run Validate and fail on its first error.
	Strict bool
}

// segment indexes one segment: its line in raw and where its field boundaries start in Message.bounds.
type segment struct {
	start, end int32 // the line, without terminator
	b0         int32 // index in bounds of the separator that follows the name
	nf         int32 // number of fields after the name (MSH: counting from MSH-2)
	line       int32 // 1-based line number in the input
}

// Message is a parsed message. It references raw without copying; values are decoded when read. The caller
// must not modify raw while the Message is in use. A Message is not safe for concurrent use: reading a value
// may make the message's string copy, so each goroutine parses (or Resets) its own.
type Message struct {
	raw    []byte
	str    string // lazily made copy of raw; decoded values that need no change are substrings of it
	strOK  bool
	d      Delimiters
	segs   []segment
	bounds []int32 // field separator positions; each segment's run ends with its line end
	cs     charset
	opts   Options
}

// Parse parses one message. Segments may be separated by CR, LF or CRLF; a leading UTF-8 byte-order mark and
// blank lines are tolerated. Parse checks structure only (MSH, delimiters, segment names); use Validate to
// check that every value decodes. It returns a *ParseError on failure.
func Parse(raw []byte) (*Message, error) {
	return ParseWith(raw, Options{})
}

// ParseWith is Parse with options; the options stay with the Message for later Resets.
func ParseWith(raw []byte, opts Options) (*Message, error) {
	m := &Message{opts: opts}
	// Size the index up front (counting is vectorised and cheap) so a one-off parse allocates little.
	if opts.MaxBytes <= 0 || len(raw) <= opts.MaxBytes {
		lines := bytes.Count(raw, []byte{'\r'}) + bytes.Count(raw, []byte{'\n'}) + 1
		m.segs = make([]segment, 0, lines)
		if i := bytes.Index(raw, []byte("MSH")); i >= 0 && i+3 < len(raw) {
			m.bounds = make([]int32, 0, bytes.Count(raw, raw[i+3:i+4])+2*lines)
		}
	}
	if err := m.Reset(raw); err != nil {
		return nil, err
	}
	return m, nil
}

// SetOptions changes the options used by the next Reset and by decoding.
func (m *Message) SetOptions(o Options) { m.opts = o }

// Reset re-parses raw into m, reusing its memory: in steady state it allocates nothing. On error m holds no
// message.
func (m *Message) Reset(raw []byte) error {
	m.raw = raw
	m.str, m.strOK = "", false
	m.segs = m.segs[:0]
	m.bounds = m.bounds[:0]
	m.d = Delimiters{}
	m.cs = charset{}
	err := m.index()
	if err == nil && m.opts.Strict {
		err = m.Validate()
	}
	if err != nil {
		m.raw = nil
		m.segs = m.segs[:0]
		m.bounds = m.bounds[:0]
	}
	return err
}

var bom = []byte{0xEF, 0xBB, 0xBF}

// lines iterates over the lines of raw, accepting CR, LF and CRLF as terminators. It finds terminators with
// bytes.IndexByte and remembers the next CR and LF so every byte is scanned once. A lone LF ends a segment only
// when what follows looks like the start of a segment (or a blank line, or the end): senders and editors
// sometimes wrap long CR-terminated segments with LF, and such an LF is kept as data.
type lines struct {
	raw    []byte
	p      int  // start of the next line
	cr, lf int  // position of the next CR / LF at or after p (len(raw) if none)
	n      int  // number of the line last returned
	fs     byte // field separator of the current header segment (MSH, FHS, BHS); 0 before one is seen
}

func newLines(raw []byte, p int) lines {
	return lines{raw: raw, p: p, cr: -1, lf: -1}
}

func (l *lines) nextLF(from int) int {
	if i := bytes.IndexByte(l.raw[from:], '\n'); i >= 0 {
		return from + i
	}
	return len(l.raw)
}

// next returns the next line [s, e) and false at the end of input.
func (l *lines) next() (s, e int, ok bool) {
	raw := l.raw
	if l.p >= len(raw) {
		return 0, 0, false
	}
	s = l.p
	if len(raw)-s > 3 && isHeaderName(raw[s:s+3]) {
		l.fs = raw[s+3]
	}
	if l.cr < s {
		if i := bytes.IndexByte(raw[s:], '\r'); i >= 0 {
			l.cr = s + i
		} else {
			l.cr = len(raw)
		}
	}
	if l.lf < s {
		l.lf = l.nextLF(s)
	}
	for l.lf < l.cr && l.fs != 0 && !segmentFollows(raw[l.lf+1:], l.fs) {
		l.lf = l.nextLF(l.lf + 1)
	}
	e = min(l.cr, l.lf)
	switch {
	case e == len(raw):
		l.p = e
	case raw[e] == '\r' && e+1 < len(raw) && raw[e+1] == '\n':
		l.p = e + 2
	default:
		l.p = e + 1
	}
	l.n++
	return s, e, true
}

func isHeaderName(b []byte) bool {
	switch string(b) {
	case "MSH", "FHS", "BHS":
		return true
	}
	return false
}

// segmentFollows reports whether b starts with a segment (name and field separator), a blank line or nothing.
func segmentFollows(b []byte, fs byte) bool {
	i := 0
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == 0x0b || b[i] == 0x1c) {
		i++
	}
	if i == len(b) || b[i] == '\r' || b[i] == '\n' {
		return true
	}
	if !validSegmentName(b) {
		return false
	}
	return len(b) == 3 || b[3] == fs || b[3] == '\r' || b[3] == '\n'
}

// blank reports whether b holds nothing but spaces, tabs and MLLP framing bytes.
func blank(b []byte) bool {
	for _, c := range b {
		switch c {
		case ' ', '\t', 0x0b, 0x1c:
		default:
			return false
		}
	}
	return true
}

func validSegmentName(b []byte) bool {
	if len(b) < 3 {
		return false
	}
	for i, c := range b[:3] {
		switch {
		case c >= 'A' && c <= 'Z':
		case c >= '0' && c <= '9' && i > 0:
		default:
			return false
		}
	}
	return true
}

// index builds the segment and field index of m.raw.
func (m *Message) index() error {
	raw := m.raw
	if m.opts.MaxBytes > 0 && len(raw) > m.opts.MaxBytes {
		return &ParseError{Err: ErrTooLarge, Detail: "message is larger than the configured maximum"}
	}
	p := 0
	if bytes.HasPrefix(raw, bom) {
		p = len(bom)
	}
	ls := newLines(raw, p)
	var occMSH int
	for {
		s, e, ok := ls.next()
		if !ok {
			break
		}
		line := raw[s:e]
		if blank(line) {
			continue
		}
		segNo := len(m.segs) + 1
		if len(m.segs) == 0 {
			if err := m.header(line, ls.n); err != nil {
				return err
			}
		} else {
			if !validSegmentName(line) || (len(line) > 3 && line[3] != m.d.Field) {
				return &ParseError{Line: ls.n, SegmentIndex: segNo, Err: ErrBadSegmentName,
					Detail: "a segment starts with three upper-case letters or digits and the field separator"}
			}
			if line[0] == 'M' && line[1] == 'S' && line[2] == 'H' {
				occMSH++
				return &ParseError{Line: ls.n, SegmentIndex: segNo, Segment: "MSH", Occurrence: occMSH + 1,
					Err: ErrMultipleMessages, Detail: "split batches and concatenated messages with SplitBatch"}
			}
		}
		if m.opts.MaxSegments > 0 && segNo > m.opts.MaxSegments {
			return &ParseError{Line: ls.n, SegmentIndex: segNo, Err: ErrTooLarge,
				Detail: "more segments than the configured maximum"}
		}
		m.addSegment(s, e, ls.n)
	}
	if len(m.segs) == 0 {
		if p == len(raw) || blank(raw[p:]) || onlyTerminators(raw[p:]) {
			return &ParseError{Err: ErrEmpty}
		}
		return &ParseError{Err: ErrNoMSH}
	}
	m.cs = charsetOf(m.msh18())
	return nil
}

func onlyTerminators(b []byte) bool {
	for _, c := range b {
		switch c {
		case '\r', '\n', ' ', '\t', 0x0b, 0x1c:
		default:
			return false
		}
	}
	return true
}

// header checks the first segment and reads the delimiters from it.
func (m *Message) header(line []byte, n int) error {
	if len(line) < 3 || string(line[:3]) != "MSH" {
		pe := &ParseError{Line: n, SegmentIndex: 1, Err: ErrNoMSH}
		if len(line) >= 3 && (string(line[:3]) == "FHS" || string(line[:3]) == "BHS") {
			pe.Detail = "input is a batch; split it with SplitBatch"
		}
		return pe
	}
	if len(line) < 4 {
		return &ParseError{Line: n, SegmentIndex: 1, Segment: "MSH", Occurrence: 1, Field: 1, Err: ErrBadDelimiters,
			Detail: "field separator is missing"}
	}
	fs := line[3]
	enc := line[4:]
	if i := bytes.IndexByte(enc, fs); i >= 0 {
		enc = enc[:i]
	}
	d, detail := readDelimiters(fs, enc)
	if detail != "" {
		f := 2
		if !validDelimiter(fs) {
			f = 1
		}
		return &ParseError{Line: n, SegmentIndex: 1, Segment: "MSH", Occurrence: 1, Field: f, Err: ErrBadDelimiters,
			Detail: detail}
	}
	m.d = d
	return nil
}

// addSegment records the line [s, e) and the positions of its field separators.
func (m *Message) addSegment(s, e, n int) {
	seg := segment{start: int32(s), end: int32(e), b0: int32(len(m.bounds)), line: int32(n)}
	if e-s > 3 {
		// Fields are mostly short (many are empty), so a plain loop beats bytes.IndexByte's call overhead.
		fs := m.d.Field
		line := m.raw[s+3 : e]
		bounds := append(m.bounds, int32(s+3))
		for i := 1; i < len(line); i++ {
			if line[i] == fs {
				bounds = append(bounds, int32(s+3+i))
			}
		}
		m.bounds = append(bounds, int32(e))
		seg.nf = int32(len(m.bounds)) - seg.b0 - 1
	}
	m.segs = append(m.segs, seg)
}

// msh18 returns the raw first repetition of MSH-18, trimmed of spaces.
func (m *Message) msh18() []byte {
	f := m.Segment(0).Field(18)
	return bytes.TrimSpace(f.Rep(1).Raw())
}

// text returns the whole message as a string, made once per message.
func (m *Message) text() string {
	if !m.strOK {
		m.str = string(m.raw)
		m.strOK = true
	}
	return m.str
}

// Raw returns the bytes the message was parsed from.
func (m *Message) Raw() []byte { return m.raw }

// Delimiters returns the delimiters declared in MSH-1 and MSH-2.
func (m *Message) Delimiters() Delimiters { return m.d }

// SegmentCount returns the number of segments.
func (m *Message) SegmentCount() int { return len(m.segs) }

// Segment returns segment i (0-based, message order); the zero Segment if i is out of range.
func (m *Message) Segment(i int) Segment {
	if i < 0 || i >= len(m.segs) {
		return Segment{}
	}
	return Segment{m: m, i: int32(i)}
}

// First returns the first segment called name.
func (m *Message) First(name string) (Segment, bool) {
	for i := range m.segs {
		if m.nameIs(i, name) {
			return Segment{m: m, i: int32(i)}, true
		}
	}
	return Segment{}, false
}

// Segments returns every segment called name, in message order.
func (m *Message) Segments(name string) []Segment {
	var out []Segment
	for i := range m.segs {
		if m.nameIs(i, name) {
			out = append(out, Segment{m: m, i: int32(i)})
		}
	}
	return out
}

func (m *Message) nameIs(i int, name string) bool {
	s := m.segs[i].start
	return len(name) == 3 && string(m.raw[s:s+3]) == name
}

// Encode returns the message as bytes. For a parsed message these are the original segments, each terminated
// by CR; a byte-order mark and blank lines are dropped.
func (m *Message) Encode() []byte {
	n := 0
	for _, s := range m.segs {
		n += int(s.end-s.start) + 1
	}
	return m.AppendEncode(make([]byte, 0, n))
}

// AppendEncode appends the encoded message to dst.
func (m *Message) AppendEncode(dst []byte) []byte {
	for _, s := range m.segs {
		dst = append(dst, m.raw[s.start:s.end]...)
		dst = append(dst, '\r')
	}
	return dst
}

package hl7

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// Builder writes a message: a new one (NewBuilder) or an edited copy of a parsed one (Edit). Values are
// addressed by the paths the reader uses (PID-3[2].4.1, OBX[3]-5): the segment occurrence and the repetition
// default to 1, a missing field, repetition, component or subcomponent is created with the separators it needs,
// and text is escaped with the message's delimiters and written in its character set (MSH-18). MSH-1 and MSH-2
// belong to the Builder and cannot be set.
//
// Segments of an edited message keep their bytes exactly, and so do the segment terminators and blank lines
// between them; only what is addressed changes. New segments end with CR, or with the terminator of the
// source's first segment when editing.
//
// A Builder is not safe for concurrent use.
type Builder struct {
	d     Delimiters
	cs    charset
	term  []byte // terminator of new segments
	head  int32  // arena[:head] is written before the first segment (a byte-order mark, blank lines)
	arena []byte // every segment's bytes; a changed segment is moved to the end
	segs  []bseg
	small [8]bseg
}

// bseg is one segment of a Builder: its bytes arena[off:off+n] and, for a segment read from a source, what
// followed it there (terminator and blank lines), arena[toff:toff+tn]; tn < 0 means the default terminator.
type bseg struct {
	off, n   int32
	toff, tn int32
}

// NewBuilder starts a new message whose first segment is MSH with MSH-1 and MSH-2 written for d. The zero
// Delimiters, and delimiters that cannot be written unambiguously in MSH-2, give DefaultDelimiters. Text is
// written as UTF-8 until MSH-18 is set.
func NewBuilder(d Delimiters) *Builder {
	if d == (Delimiters{}) || !writable(d) {
		d = DefaultDelimiters
	}
	b := &Builder{d: d, cs: charset{kind: csUTF8, supported: true}, term: crTerm}
	b.segs = b.small[:0]
	b.arena = make([]byte, 0, 256)
	b.arena = append(b.arena, "MSH"...)
	b.arena = append(b.arena, d.Field)
	for _, c := range [...]byte{d.Component, d.Repetition, d.Escape, d.Subcomponent, d.Truncation} {
		if c != 0 {
			b.arena = append(b.arena, c)
		}
	}
	b.segs = append(b.segs, bseg{off: 0, n: int32(len(b.arena)), tn: -1})
	return b
}

var (
	crTerm   = []byte{'\r'}
	lfTerm   = []byte{'\n'}
	crlfTerm = []byte{'\r', '\n'}
)

// writable reports whether MSH-2 written for d reads back as d.
func writable(d Delimiters) bool {
	got, detail := readDelimiters(d.Field, []byte(d.EncodingChars()))
	return detail == "" && got == d
}

// Edit returns a Builder holding a copy of m. Encoding it unchanged gives back the bytes m was parsed from.
func Edit(m *Message) *Builder {
	b := &Builder{d: m.d, cs: m.cs, term: crTerm}
	if len(m.segs) == 0 {
		return NewBuilder(m.d)
	}
	b.arena = make([]byte, len(m.raw), len(m.raw)+len(m.raw)/4+64)
	copy(b.arena, m.raw)
	if len(m.segs) <= len(b.small) {
		b.segs = b.small[:0]
	} else {
		b.segs = make([]bseg, 0, len(m.segs)+4)
	}
	b.head = m.segs[0].start
	for i, s := range m.segs {
		next := int32(len(m.raw))
		if i+1 < len(m.segs) {
			next = m.segs[i+1].start
		}
		b.segs = append(b.segs, bseg{off: s.start, n: s.end - s.start, toff: s.end, tn: next - s.end})
	}
	if t := m.raw[m.segs[0].end:]; len(t) > 0 {
		switch {
		case len(t) > 1 && t[0] == '\r' && t[1] == '\n':
			b.term = crlfTerm
		case t[0] == '\n':
			b.term = lfTerm
		}
	}
	return b
}

// Delimiters returns the delimiters the Builder writes with.
func (b *Builder) Delimiters() Delimiters { return b.d }

// Count returns the number of segments called name.
func (b *Builder) Count(name string) int {
	n := 0
	for _, s := range b.segs {
		if b.nameIs(s, name) {
			n++
		}
	}
	return n
}

func (b *Builder) nameIs(s bseg, name string) bool {
	return len(name) == 3 && s.n >= 3 && string(b.arena[s.off:s.off+3]) == name
}

// RepCount returns the number of repetitions of the field path names ("PID-3", "PID[2]-3"; a repetition or
// component in the path is ignored): 0 when the field is empty or absent, so "PID-3[RepCount+1]" appends one.
func (b *Builder) RepCount(path string) int {
	pp, detail := parsePath(path)
	if detail != "" || pp.occ == all || (pp.seg == "MSH" && pp.field <= 2) {
		return 0
	}
	i := b.segmentIndex(pp.seg, pp.occ)
	if i < 0 {
		return 0
	}
	f := b.rawAt(i, pp.field, 0)
	if len(f) == 0 {
		return 0
	}
	if b.d.Repetition == 0 {
		return 1
	}
	return bytes.Count(f, []byte{b.d.Repetition}) + 1
}

// Add appends a segment called name (three upper-case letters or digits) and returns its occurrence number,
// for paths such as OBX[3]-5.
func (b *Builder) Add(name string) (int, error) {
	if err := checkSegmentName(name); err != nil {
		return 0, err
	}
	b.segs = append(b.segs, b.newSegment(name))
	return b.Count(name), nil
}

// Insert adds a segment called name before the segment at (a path such as "OBX[2]" or "PV1") and returns its
// occurrence number.
func (b *Builder) Insert(at, name string) (int, error) {
	if err := checkSegmentName(name); err != nil {
		return 0, err
	}
	i, err := b.findSegment("insert", at)
	if err != nil {
		return 0, err
	}
	if i == 0 {
		return 0, fmt.Errorf("hl7 builder: insert before %s: %w: MSH stays the first segment", at, ErrBadPath)
	}
	b.segs = append(b.segs, bseg{})
	copy(b.segs[i+1:], b.segs[i:])
	b.segs[i] = b.newSegment(name)
	n := 0
	for _, s := range b.segs[:i+1] {
		if b.nameIs(s, name) {
			n++
		}
	}
	return n, nil
}

func (b *Builder) newSegment(name string) bseg {
	off := int32(len(b.arena))
	b.arena = append(b.arena, name...)
	return bseg{off: off, n: 3, tn: -1}
}

func checkSegmentName(name string) error {
	if len(name) != 3 || !validSegmentName([]byte(name)) {
		return fmt.Errorf("hl7 builder: %w: a segment name is three upper-case letters or digits", ErrBadSegmentName)
	}
	if name == "MSH" {
		return fmt.Errorf("hl7 builder: %w: a message has one MSH", ErrMultipleMessages)
	}
	return nil
}

// findSegment resolves a segment path ("PID", "OBX[2]") to an index.
func (b *Builder) findSegment(op, p string) (int, error) {
	name, occ, err := segmentPath(op, p)
	if err != nil {
		return 0, err
	}
	if occ == all {
		return 0, fmt.Errorf("hl7 builder: %s %s: %w: [*] selects more than one segment", op, p, ErrBadPath)
	}
	if i := b.segmentIndex(name, occ); i >= 0 {
		return i, nil
	}
	return 0, fmt.Errorf("hl7 builder: %s %s: %w: no such segment", op, p, ErrBadPath)
}

func segmentPath(op, p string) (string, int, error) {
	if len(p) < 3 || !validSegmentName([]byte(p[:3])) {
		return "", 0, fmt.Errorf("hl7 builder: %s: %w: a segment path is a segment name, e.g. OBX or OBX[2]", op, ErrBadPath)
	}
	occ, i, detail := bracket(p, 3)
	if detail != "" || i != len(p) {
		return "", 0, fmt.Errorf("hl7 builder: %s: %w: a segment path is a segment name, e.g. OBX or OBX[2]", op, ErrBadPath)
	}
	return p[:3], occ, nil
}

// segmentIndex returns the index of occurrence occ (1-based) of segment name, or -1.
func (b *Builder) segmentIndex(name string, occ int) int {
	n := 0
	for i, s := range b.segs {
		if b.nameIs(s, name) {
			n++
			if n == occ {
				return i
			}
		}
	}
	return -1
}

// Set writes text at path (e.g. "PID-5.1", "PID-3[2].4.1", "OBX[3]-5"), escaped and in the message's
// character set, creating whatever separators are needed. A path without a component replaces the whole
// repetition; without [n], the first repetition is meant. Setting MSH-18 changes the character set of the text
// written after it. Set fails for an invalid path, a segment occurrence that does not exist, MSH-1 and MSH-2,
// and text the character set cannot hold; errors never quote the text.
func (b *Builder) Set(path, text string) error { return b.set(path, text, false) }

// SetEncoded writes value at path as it is, for values already encoded with the Builder's delimiters (a
// composite such as "123^^^HOSP^MR" copied from another message). It fails if value holds a separator of its
// own level or above (for a component: the field, repetition and component separators) or a line break.
func (b *Builder) SetEncoded(path, value string) error { return b.set(path, value, true) }

func (b *Builder) set(path, value string, encoded bool) error {
	loc, err := b.locate("set", path)
	if err != nil {
		return err
	}
	if err := b.splice(loc, value, encoded); err != nil {
		return fmt.Errorf("hl7 builder: set %s: %w", path, err)
	}
	if loc.seg == 0 && loc.field == 18 {
		b.cs = charsetOf(bytes.TrimSpace(b.rawAt(0, 18, 1)))
	}
	return nil
}

// Remove deletes what path addresses. A segment path ("NTE[2]", "ZPD[*]" for all of them) removes segments;
// MSH cannot be removed. A repetition ("PID-3[2]", or "PID-3" for the first) is removed with its separator, so
// the following repetitions move up; "PID-3[*]" empties the field. Fields, components and subcomponents are
// positional: removing one empties it. Removing something absent does nothing.
func (b *Builder) Remove(path string) error {
	if len(path) <= 3 || path[3] == '[' && !strings.Contains(path, "-") {
		name, occ, err := segmentPath("remove", path)
		if err != nil {
			return err
		}
		if name == "MSH" {
			return fmt.Errorf("hl7 builder: remove %s: %w: MSH cannot be removed", path, ErrBadPath)
		}
		out, n := b.segs[:0], 0
		for _, s := range b.segs {
			if b.nameIs(s, name) {
				n++
				if occ == all || occ == n {
					continue
				}
			}
			out = append(out, s)
		}
		b.segs = out
		return nil
	}
	loc, err := b.locateRemove(path)
	if err != nil || loc.seg < 0 {
		return err
	}
	if loc.comp == 0 && loc.rep != all {
		return b.removeRep(loc)
	}
	if loc.rep == all {
		loc.rep = 0
	}
	if _, _, pad, err := b.span(b.bytesOf(loc.seg), loc, nil); err != nil || len(pad) > 0 {
		return nil // absent
	}
	return b.splice(loc, "", true)
}

// loc is a resolved value path: segment index, the field in HL7 numbering, repetition (0: the whole field),
// component and subcomponent (0: whole).
type loc struct {
	seg, field, rep, comp, sub int
}

func (b *Builder) locate(op, p string) (loc, error) {
	pp, detail := parsePath(p)
	if detail != "" {
		return loc{}, fmt.Errorf("hl7 builder: %s %s: %w: %s", op, p, ErrBadPath, detail)
	}
	if pp.occ == all || pp.rep == all {
		return loc{}, fmt.Errorf("hl7 builder: %s %s: %w: [*] selects more than one value", op, p, ErrBadPath)
	}
	if pp.seg == "MSH" && pp.field <= 2 {
		return loc{}, fmt.Errorf("hl7 builder: %s %s: %w: MSH-1 and MSH-2 are the delimiters", op, p, ErrBadPath)
	}
	i := b.segmentIndex(pp.seg, pp.occ)
	if i < 0 {
		return loc{}, fmt.Errorf("hl7 builder: %s %s: %w: no such segment (add it first)", op, p, ErrBadPath)
	}
	return loc{seg: i, field: pp.field, rep: pp.rep, comp: pp.comp, sub: pp.sub}, nil
}

// locateRemove is locate for Remove: [*] is allowed for the repetition, and an absent segment gives seg -1.
func (b *Builder) locateRemove(p string) (loc, error) {
	pp, detail := parsePath(p)
	if detail != "" {
		return loc{}, fmt.Errorf("hl7 builder: remove %s: %w: %s", p, ErrBadPath, detail)
	}
	if pp.occ == all || (pp.rep == all && pp.comp != 0) {
		return loc{}, fmt.Errorf("hl7 builder: remove %s: %w: [*] is allowed for segments and whole fields only", p, ErrBadPath)
	}
	if pp.seg == "MSH" && pp.field <= 2 {
		return loc{}, fmt.Errorf("hl7 builder: remove %s: %w: MSH-1 and MSH-2 are the delimiters", p, ErrBadPath)
	}
	return loc{seg: b.segmentIndex(pp.seg, pp.occ), field: pp.field, rep: pp.rep, comp: pp.comp, sub: pp.sub}, nil
}

// bytesOf returns the bytes of segment i.
func (b *Builder) bytesOf(i int) []byte {
	s := b.segs[i]
	return b.arena[s.off : s.off+s.n]
}

// part is the position of the field in the split segment: the name is part 0; for MSH, MSH-2 is part 1.
func (b *Builder) part(l loc) int {
	if l.seg == 0 {
		return l.field - 1
	}
	return l.field
}

// find locates piece idx (0-based) of line[s:e] split at sep: its bounds, or, when there are fewer pieces,
// how many separators are missing (the piece would start at e after them).
func find(line []byte, s, e int, sep byte, idx int) (ps, pe, missing int) {
	for i := 0; i < idx; i++ {
		j := bytes.IndexByte(line[s:e], sep)
		if j < 0 {
			return e, e, idx - i
		}
		s += j + 1
	}
	if j := bytes.IndexByte(line[s:e], sep); j >= 0 {
		return s, s + j, 0
	}
	return s, e, 0
}

// span returns the bounds of what l addresses in segment line (relative to it) and the separators to insert
// before the value when it does not exist yet, written into pad.
func (b *Builder) span(line []byte, l loc, pad []byte) (s, e int, _ []byte, _ error) {
	levels := [...]struct {
		sep byte
		idx int
		nm  string
	}{
		{b.d.Field, b.part(l), "field"},
		{b.d.Repetition, l.rep - 1, "repetition"},
		{b.d.Component, l.comp - 1, "component"},
		{b.d.Subcomponent, l.sub - 1, "subcomponent"},
	}
	s, e = 0, len(line)
	for _, lv := range levels {
		if lv.idx < 0 {
			break
		}
		if lv.sep == 0 {
			if lv.idx > 0 {
				return 0, 0, pad, fmt.Errorf("%w: the message declares no %s separator", ErrBadPath, lv.nm)
			}
			continue
		}
		if len(pad) > 0 {
			for range lv.idx {
				pad = append(pad, lv.sep)
			}
			continue
		}
		ps, pe, missing := find(line, s, e, lv.sep, lv.idx)
		for range missing {
			pad = append(pad, lv.sep)
		}
		s, e = ps, pe
	}
	return s, e, pad, nil
}

// rawAt returns the bytes of a part of segment i (field numbering as in loc, rep 1-based).
func (b *Builder) rawAt(i, field, rep int) []byte {
	line := b.bytesOf(i)
	s, e, pad, err := b.span(line, loc{seg: i, field: field, rep: rep}, nil)
	if err != nil || len(pad) > 0 {
		return nil
	}
	return line[s:e]
}

// levelSeps lists the separators a value at l must not contain.
func (b *Builder) levelSeps(l loc) []byte {
	seps := []byte{b.d.Field}
	if l.rep > 0 {
		seps = append(seps, b.d.Repetition)
	}
	if l.comp > 0 {
		seps = append(seps, b.d.Component)
	}
	if l.sub > 0 {
		seps = append(seps, b.d.Subcomponent)
	}
	return seps
}

// splice replaces what l addresses with value (escaped and encoded unless encoded is set).
func (b *Builder) splice(l loc, value string, encoded bool) error {
	if encoded {
		for _, c := range b.levelSeps(l) {
			if c != 0 && strings.IndexByte(value, c) >= 0 {
				return fmt.Errorf("%w: encoded value holds a separator of its own level or above", ErrBadPath)
			}
		}
		if strings.ContainsAny(value, "\r\n") {
			return fmt.Errorf("%w: encoded value holds a line break", ErrControlChar)
		}
	}
	var padBuf [16]byte
	line := b.bytesOf(l.seg)
	s, e, pad, err := b.span(line, l, padBuf[:0])
	if err != nil {
		return err
	}
	if !encoded && len(pad) == 0 && e-s == len(value) && b.plainText(value) && string(line[s:e]) == value {
		return nil // unchanged
	}
	b.toEnd(l.seg)
	seg := &b.segs[l.seg]
	off := int(seg.off)
	n := int(seg.n)
	end := len(b.arena) // the segment ends the arena now
	b.arena = append(b.arena, pad...)
	if encoded {
		b.arena = append(b.arena, value...)
	} else {
		start := len(b.arena)
		b.arena = AppendEscaped(b.arena, value, b.d)
		var err error
		if b.arena, err = b.encodeCharset(b.arena, start); err != nil {
			b.arena = b.arena[:end]
			return err
		}
	}
	// arena[off:end] is the segment, arena[end:] the new value. Move the new value in front of the segment's
	// tail (after e) and drop the old value [s, e).
	a, t := off+s, off+e
	rotate(b.arena[t:], end-t)
	m := len(b.arena) - end
	copy(b.arena[a:], b.arena[t:])
	b.arena = b.arena[:len(b.arena)-(t-a)]
	seg.n = int32(n - (e - s) + m)
	return nil
}

// plainText reports whether text is written unchanged: no delimiter, control character or byte that the
// character set converts.
func (b *Builder) plainText(text string) bool {
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c < ' ' || c >= 0x7f || c == b.d.Field || c == b.d.Component || c == b.d.Repetition ||
			(c == b.d.Escape && c != 0) || (c == b.d.Subcomponent && c != 0) || (c == b.d.Truncation && c != 0) {
			return false
		}
	}
	return true
}

// rotate turns p = x y, with len(x) = k, into y x in place.
func rotate(p []byte, k int) {
	if k <= 0 || k >= len(p) {
		return
	}
	reverse(p[:k])
	reverse(p[k:])
	reverse(p)
}

func reverse(p []byte) {
	for i, j := 0, len(p)-1; i < j; i, j = i+1, j-1 {
		p[i], p[j] = p[j], p[i]
	}
}

// toEnd moves segment i to the end of the arena unless it is there already. The old copy stays as garbage
// until the arena is compacted.
func (b *Builder) toEnd(i int) {
	s := &b.segs[i]
	if int(s.off+s.n) == len(b.arena) {
		return
	}
	if garbage := len(b.arena) - b.live(); garbage > 4096 && garbage > len(b.arena)/2 {
		b.compact()
		s = &b.segs[i]
		if int(s.off+s.n) == len(b.arena) {
			return
		}
	}
	off := int32(len(b.arena))
	b.arena = append(b.arena, b.arena[s.off:s.off+s.n]...)
	s.off = off
}

// live returns the number of arena bytes still referenced.
func (b *Builder) live() int {
	n := int(b.head)
	for _, s := range b.segs {
		n += int(s.n) + int(max(s.tn, 0))
	}
	return n
}

// compact copies the live bytes into a new arena.
func (b *Builder) compact() {
	out := make([]byte, 0, b.live()*2+64)
	out = append(out, b.arena[:b.head]...)
	for i := range b.segs {
		s := &b.segs[i]
		off := int32(len(out))
		out = append(out, b.arena[s.off:s.off+s.n]...)
		s.off = off
		if s.tn > 0 {
			toff := int32(len(out))
			out = append(out, b.arena[s.toff:s.toff+s.tn]...)
			s.toff = toff
		}
	}
	b.arena = out
}

// encodeCharset converts dst[start:], UTF-8 text, to the Builder's character set in place (the result is never
// longer).
func (b *Builder) encodeCharset(dst []byte, start int) ([]byte, error) {
	t := dst[start:]
	if isASCII(t) {
		return dst, nil
	}
	switch b.cs.kind {
	case csASCII:
		return dst, fmt.Errorf("%w: text outside ASCII in a message declared ASCII", ErrCharset)
	case csCharmap:
		w := start
		for r := start; r < len(dst); {
			c, size := utf8.DecodeRune(dst[r:])
			if c == utf8.RuneError && size <= 1 {
				return dst, fmt.Errorf("%w: text is not valid UTF-8", ErrCharset)
			}
			enc, ok := b.cs.cm.EncodeRune(c)
			if !ok {
				return dst, fmt.Errorf("%w: a character the declared character set cannot hold", ErrCharset)
			}
			dst[w] = enc
			w++
			r += size
		}
		return dst[:w], nil
	}
	return dst, nil
}

// removeRep removes repetition l.rep of a field with its separator.
func (b *Builder) removeRep(l loc) error {
	if b.d.Repetition == 0 && l.rep > 1 {
		return nil
	}
	line := b.bytesOf(l.seg)
	fs, fe, missing := find(line, 0, len(line), b.d.Field, b.part(l))
	if missing > 0 || fs == fe {
		return nil
	}
	s, e := fs, fe
	if b.d.Repetition != 0 {
		var miss int
		s, e, miss = find(line, fs, fe, b.d.Repetition, l.rep-1)
		if miss > 0 {
			return nil
		}
		switch {
		case e < fe:
			e++ // the separator after it
		case s > fs:
			s-- // the last one: the separator before it
		}
	}
	b.cut(l.seg, s, e)
	return nil
}

// cut removes bytes [s, e) of segment i.
func (b *Builder) cut(i, s, e int) {
	seg := &b.segs[i]
	p := b.arena[seg.off : seg.off+seg.n]
	copy(p[s:], p[e:])
	seg.n -= int32(e - s)
	// The bytes freed at the end of the segment are garbage; if the segment ends the arena, reclaim them.
	if int(seg.off)+len(p) == len(b.arena) {
		b.arena = b.arena[:len(b.arena)-(e-s)]
	}
}

// Len returns the number of bytes Bytes will return.
func (b *Builder) Len() int {
	n := int(b.head)
	for i, s := range b.segs {
		n += int(s.n) + len(b.terminator(i))
	}
	return n
}

// terminator returns what follows segment i: the source's bytes for a segment read from one (a last segment
// without terminator keeps none while it stays last), the default terminator otherwise.
func (b *Builder) terminator(i int) []byte {
	s := b.segs[i]
	if s.tn > 0 || (s.tn == 0 && i == len(b.segs)-1) {
		return b.arena[s.toff : s.toff+s.tn]
	}
	return b.term
}

// AppendTo appends the message to dst: what preceded the first segment in an edited source, then every
// segment followed by its terminator.
func (b *Builder) AppendTo(dst []byte) []byte {
	dst = append(dst, b.arena[:b.head]...)
	for i, s := range b.segs {
		dst = append(dst, b.arena[s.off:s.off+s.n]...)
		dst = append(dst, b.terminator(i)...)
	}
	return dst
}

// Bytes returns the message.
func (b *Builder) Bytes() []byte {
	return b.AppendTo(make([]byte, 0, b.Len()))
}

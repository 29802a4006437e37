package hl7

import (
	"bytes"
	"iter"
)

// Segment is one segment of a Message: a small value that refers to the message's index.
type Segment struct {
	m *Message
	i int32
}

// Field is one field of a segment, with all its repetitions.
type Field struct{ span }

// Rep is one repetition of a field.
type Rep struct{ span }

// Component is one component of a repetition.
type Component struct{ span }

// span is a byte range of the message. lit marks MSH-1 and MSH-2, which are never split nor unescaped.
type span struct {
	m    *Message
	s, e int32
	lit  bool
}

func (p span) raw() []byte {
	if p.m == nil {
		return nil
	}
	return p.m.raw[p.s:p.e]
}

func (p span) text() string {
	if p.m == nil || p.s == p.e {
		return ""
	}
	if p.lit {
		return p.m.text()[p.s:p.e]
	}
	return p.m.decode(p.s, p.e)
}

// part returns the i-th (1-based) piece of p split at sep; ok is false when there is no such piece.
func (p span) part(sep byte, i int) (span, bool) {
	if p.m == nil || i < 1 {
		return span{}, false
	}
	if p.lit || sep == 0 {
		if i == 1 {
			return p, true
		}
		return span{}, false
	}
	s := p.s
	b := p.m.raw
	for ; i > 1; i-- {
		j := bytes.IndexByte(b[s:p.e], sep)
		if j < 0 {
			return span{}, false
		}
		s += int32(j) + 1
	}
	e := p.e
	if j := bytes.IndexByte(b[s:p.e], sep); j >= 0 {
		e = s + int32(j)
	}
	return span{m: p.m, s: s, e: e}, true
}

// count returns the number of pieces p splits into at sep; 0 for an empty span.
func (p span) count(sep byte) int {
	if p.m == nil || p.s == p.e {
		return 0
	}
	if p.lit || sep == 0 {
		return 1
	}
	return bytes.Count(p.m.raw[p.s:p.e], []byte{sep}) + 1
}

func (p span) isNull() bool {
	return p.m != nil && p.e-p.s == 2 && p.m.raw[p.s] == '"' && p.m.raw[p.s+1] == '"'
}

// Name returns the segment name, e.g. "PID" or "ZPD"; "" for the zero Segment.
func (s Segment) Name() string {
	if s.m == nil {
		return ""
	}
	st := s.m.segs[s.i].start
	return segmentName(s.m, st)
}

// Index returns the segment's 0-based position in the message.
func (s Segment) Index() int { return int(s.i) }

// Line returns the 1-based line number of the segment in the input.
func (s Segment) Line() int {
	if s.m == nil {
		return 0
	}
	return int(s.m.segs[s.i].line)
}

// Raw returns the segment's bytes without terminator.
func (s Segment) Raw() []byte {
	if s.m == nil {
		return nil
	}
	g := s.m.segs[s.i]
	return s.m.raw[g.start:g.end]
}

func (s Segment) isMSH() bool {
	g := s.m.segs[s.i]
	return string(s.m.raw[g.start:g.start+3]) == "MSH"
}

// FieldCount returns the highest field number present (trailing empty fields count).
func (s Segment) FieldCount() int {
	if s.m == nil {
		return 0
	}
	nf := int(s.m.segs[s.i].nf)
	if s.isMSH() {
		return nf + 1
	}
	return nf
}

// Field returns field n in HL7 numbering: PID-3 is Field(3). For MSH, Field(1) is the field separator and
// Field(2) the encoding characters; both are returned as they are, never split nor unescaped. A field that is
// not present is the zero Field, whose methods return empty results.
func (s Segment) Field(n int) Field {
	if s.m == nil || n < 1 {
		return Field{}
	}
	g := s.m.segs[s.i]
	if s.isMSH() {
		if n == 1 {
			return Field{span{m: s.m, s: g.start + 3, e: g.start + 4, lit: true}}
		}
		n--
		if n == 1 && g.nf >= 1 {
			b := s.m.bounds[g.b0:]
			return Field{span{m: s.m, s: b[0] + 1, e: b[1], lit: true}}
		}
	}
	if n > int(g.nf) {
		return Field{}
	}
	b := s.m.bounds[g.b0+int32(n)-1:]
	return Field{span{m: s.m, s: b[0] + 1, e: b[1]}}
}

// Value returns a decoded value; field, rep, comp and sub are 1-based. comp 0 means the whole repetition and sub
// 0 the whole component (delimiters inside kept, escapes decoded). rep 0 is read as 1. Absent values are "".
func (s Segment) Value(field, rep, comp, sub int) string {
	return s.Field(field).value(rep, comp, sub)
}

func (f Field) value(rep, comp, sub int) string {
	r := f.Rep(max(rep, 1))
	if comp == 0 {
		return r.text()
	}
	c := r.Component(comp)
	if sub == 0 {
		return c.text()
	}
	return c.Sub(sub)
}

// RepCount returns the number of repetitions; 0 for an empty or absent field.
func (f Field) RepCount() int { return f.count(f.delims().Repetition) }

// Rep returns repetition i (1-based).
func (f Field) Rep(i int) Rep {
	p, _ := f.part(f.delims().Repetition, i)
	return Rep{p}
}

// String returns the decoded first component of the first repetition: what most callers want from fields such
// as PID-7 or an OBX-5 of type NM. Use Rep(1).Text() for the whole repetition.
func (f Field) String() string { return f.Rep(1).String() }

// Text returns the whole field decoded, repetition and component separators kept.
func (f Field) Text() string { return f.text() }

// Raw returns the field's bytes as sent.
func (f Field) Raw() []byte { return f.raw() }

// IsNull reports whether the field is the HL7 null `""` (an instruction to delete the value), which String
// returns literally.
func (f Field) IsNull() bool { return f.isNull() }

// IsEmpty reports whether the field is absent or empty.
func (f Field) IsEmpty() bool { return f.s == f.e }

func (p span) delims() Delimiters {
	if p.m == nil {
		return Delimiters{}
	}
	return p.m.d
}

// ComponentCount returns the number of components; 0 for an empty repetition.
func (r Rep) ComponentCount() int { return r.count(r.delims().Component) }

// Component returns component j (1-based).
func (r Rep) Component(j int) Component {
	p, _ := r.part(r.delims().Component, j)
	return Component{p}
}

// String returns the decoded first component of the repetition. Use Text for the whole repetition.
func (r Rep) String() string { return r.Component(1).String() }

// Text returns the whole repetition decoded, component separators kept.
func (r Rep) Text() string { return r.text() }

// Raw returns the repetition's bytes as sent.
func (r Rep) Raw() []byte { return r.raw() }

// IsNull reports whether the repetition is the HL7 null `""`.
func (r Rep) IsNull() bool { return r.isNull() }

// SubCount returns the number of subcomponents; 0 for an empty component.
func (c Component) SubCount() int { return c.count(c.delims().Subcomponent) }

// Sub returns subcomponent k (1-based), decoded.
func (c Component) Sub(k int) string {
	p, _ := c.part(c.delims().Subcomponent, k)
	return p.text()
}

// String returns the whole component decoded; subcomponents stay joined by the subcomponent character.
func (c Component) String() string { return c.text() }

// Raw returns the component's bytes as sent.
func (c Component) Raw() []byte { return c.raw() }

// IsNull reports whether the component is the HL7 null `""`.
func (c Component) IsNull() bool { return c.isNull() }

// AppendText appends the decoded component to dst, which lets hot loops avoid allocating strings.
func (c Component) AppendText(dst []byte) []byte {
	if c.m == nil {
		return dst
	}
	if c.lit {
		return append(dst, c.raw()...)
	}
	return c.m.appendDecoded(dst, c.s, c.e)
}

// pieces yields the pieces of p split at sep, in order, in one pass.
func (p span) pieces(sep byte, yield func(int, span) bool) {
	if p.m == nil || p.s == p.e {
		return
	}
	if p.lit || sep == 0 {
		yield(1, p)
		return
	}
	b := p.m.raw
	s, i := p.s, 1
	for {
		j := bytes.IndexByte(b[s:p.e], sep)
		if j < 0 {
			yield(i, span{m: p.m, s: s, e: p.e})
			return
		}
		if !yield(i, span{m: p.m, s: s, e: s + int32(j)}) {
			return
		}
		s += int32(j) + 1
		i++
	}
}

// Reps iterates over the repetitions in one pass (Rep(i) in a loop rescans from the start): for i, r := range
// f.Reps().
func (f Field) Reps() iter.Seq2[int, Rep] {
	return func(yield func(int, Rep) bool) {
		f.pieces(f.delims().Repetition, func(i int, p span) bool { return yield(i, Rep{p}) })
	}
}

// Components iterates over the components in one pass.
func (r Rep) Components() iter.Seq2[int, Component] {
	return func(yield func(int, Component) bool) {
		r.pieces(r.delims().Component, func(i int, p span) bool { return yield(i, Component{p}) })
	}
}

// Subs iterates over the decoded subcomponents in one pass.
func (c Component) Subs() iter.Seq2[int, string] {
	return func(yield func(int, string) bool) {
		c.pieces(c.delims().Subcomponent, func(i int, p span) bool { return yield(i, p.text()) })
	}
}

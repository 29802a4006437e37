package hl7

import (
	"bytes"
	"errors"
	"unicode/utf8"
)

// maxValidateErrors bounds how many problems Validate reports.
const maxValidateErrors = 50

// Validate checks what Parse leaves for later: the required MSH fields (MSH-9.1, MSH-10, MSH-11, MSH-12), that
// MSH-18 names a supported character set, and that every value decodes: escape sequences are well formed and
// text is valid in the declared character set (invalid UTF-8, or bytes above 0x7F in an ASCII message). It
// returns nil or the problems found (at most 50) as *ParseErrors joined with errors.Join. Plain getters never
// fail: they keep malformed escapes literally and replace invalid bytes with U+FFFD.
//
// A message declared in a single-byte character set (8859/1, Windows-1252, ...) whose non-ASCII bytes are valid
// multi-byte UTF-8 is almost always a UTF-8 sender with a wrong MSH-18. Its text still decodes (as declared, so
// "Zoë" reads "ZoÃ«"), so Validate reports the first such field as a *Warning wrapping ErrCharset, located, not
// quoting the text. OnlyWarnings tells a result holding nothing else; Options.Strict refuses it like an error.
// Bytes above 0x7F in a message declared ASCII remain errors; their detail says when the bytes are valid UTF-8.
func (m *Message) Validate() error {
	if len(m.segs) == 0 {
		return &ParseError{Err: ErrEmpty}
	}
	msh := m.Segment(0)
	errs := checkHeader(msh)
	if v := msh.Field(12).Rep(1).Component(1).String(); v != "" && !knownVersion([]byte(v)) {
		errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: 12, Component: 1,
			Line: msh.Line(), Err: ErrVersion, Detail: "not an HL7 version 2 id (2.1 to 2.8.2)"})
	}
	if !m.cs.supported {
		errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: 18, Rep: 1,
			Line: msh.Line(), Err: ErrCharset, Detail: "character set not supported; text is read as UTF-8"})
	}
	occ := map[string]int{}
	warned := false
	for i := range m.segs {
		seg := m.Segment(i)
		name := seg.Name()
		occ[name]++
		first := 1
		if i == 0 {
			first = 3
		}
		for f := first; f <= seg.FieldCount(); f++ {
			fld := seg.Field(f)
			if m.plain(fld.Raw()) && (m.cs.kind != csASCII || isASCII(fld.Raw())) && !hasControl(fld.Raw()) {
				continue
			}
			pe := m.checkField(fld)
			if pe == nil && !warned && m.cs.kind == csCharmap && looksUTF8(fld.Raw()) {
				warned = true
				w := &Warning{ParseError{Rep: 1, Err: ErrCharset, Detail: "declared " + string(m.msh18()) +
					" but the bytes are valid multi-byte UTF-8 (first such field): MSH-18 is probably wrong; text is read as declared"}}
				w.Segment, w.SegmentIndex, w.Occurrence, w.Field, w.Line = name, i+1, occ[name], f, seg.Line()
				errs = append(errs, w)
			}
			if pe != nil {
				pe.Segment, pe.SegmentIndex, pe.Occurrence, pe.Field, pe.Line = name, i+1, occ[name], f, seg.Line()
				errs = append(errs, pe)
			}
			if len(errs) >= maxValidateErrors {
				return errors.Join(errs...)
			}
		}
	}
	return errors.Join(errs...)
}

// checkField walks a field down to its subcomponents, in one pass, and reports the first one that does not
// decode.
func (m *Message) checkField(f Field) *ParseError {
	var pe *ParseError
	f.pieces(m.d.Repetition, func(r int, rep span) bool {
		rep.pieces(m.d.Component, func(c int, comp span) bool {
			multi := m.d.Subcomponent != 0 && bytes.IndexByte(comp.raw(), m.d.Subcomponent) >= 0
			comp.pieces(m.d.Subcomponent, func(k int, sub span) bool {
				if err, detail := m.checkValue(sub.raw()); err != nil {
					pe = &ParseError{Rep: r, Component: c, Err: err, Detail: detail}
					if multi {
						pe.Sub = k
					}
				}
				return pe == nil
			})
			return pe == nil
		})
		return pe == nil
	})
	return pe
}

func (m *Message) checkValue(b []byte) (error, string) {
	if hasControl(b) {
		return ErrControlChar, "raw control character (escape it, e.g. \\.br\\ or \\X0D\\)"
	}
	dec, prob := unescape(nil, b, m.d, true)
	if prob != "" {
		return ErrBadEscape, prob
	}
	switch m.cs.kind {
	case csASCII:
		if !isASCII(dec) {
			if looksUTF8(dec) {
				return ErrCharset, "byte above 0x7F in a message declared ASCII (the bytes are valid UTF-8: MSH-18 is probably wrong)"
			}
			return ErrCharset, "byte above 0x7F in a message declared ASCII"
		}
	case csCharmap:
		for _, c := range dec {
			if m.cs.cm.DecodeByte(c) == utf8.RuneError {
				if looksUTF8(dec) {
					return ErrCharset, "byte not defined in the declared character set (the bytes are valid UTF-8: MSH-18 is probably wrong)"
				}
				return ErrCharset, "byte not defined in the declared character set"
			}
		}
	default:
		if !utf8.Valid(dec) {
			return ErrCharset, "invalid UTF-8"
		}
	}
	return nil, ""
}

// looksUTF8 reports whether b holds at least one multi-byte UTF-8 sequence and is valid UTF-8 throughout.
func looksUTF8(b []byte) bool {
	return !isASCII(b) && utf8.Valid(b)
}

// OnlyWarnings reports whether err, as returned by Validate, holds warnings only (*Warning): nothing stops the
// message from being read as declared, but something about it is probably wrong.
func OnlyWarnings(err error) bool {
	if err == nil {
		return false
	}
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		if _, ok := e.(*Warning); !ok {
			return false
		}
	}
	return true
}

// hasControl reports whether b holds a control character other than tab.
func hasControl(b []byte) bool {
	for _, c := range b {
		if (c < ' ' && c != '\t') || c == 0x7f {
			return true
		}
	}
	return false
}

// knownVersion reports whether v is an HL7 v2 version id: 2.1 to 2.8 with an optional third part.
func knownVersion(v []byte) bool {
	v = bytes.TrimSpace(v)
	if len(v) < 3 || v[0] != '2' || v[1] != '.' || v[2] < '1' || v[2] > '8' {
		return false
	}
	rest := v[3:]
	if len(rest) == 0 {
		return true
	}
	if rest[0] != '.' || len(rest) < 2 {
		return false
	}
	for _, c := range rest[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

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
func (m *Message) Validate() error {
	if len(m.segs) == 0 {
		return &ParseError{Err: ErrEmpty}
	}
	msh := m.Segment(0)
	errs := checkHeader(msh)
	if v := msh.Field(12).Rep(1).Component(1).Raw(); len(v) > 0 && !knownVersion(v) {
		errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: 12, Component: 1,
			Line: msh.Line(), Err: ErrVersion, Detail: "not an HL7 version 2 id (2.1 to 2.8.2)"})
	}
	if !m.cs.supported {
		errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: 18, Rep: 1,
			Line: msh.Line(), Err: ErrCharset, Detail: "character set not supported; text is read as UTF-8"})
	}
	occ := map[string]int{}
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
			if pe := m.checkField(fld); pe != nil {
				pe.Segment, pe.SegmentIndex, pe.Occurrence, pe.Field, pe.Line = name, i+1, occ[name], f, seg.Line()
				errs = append(errs, pe)
				if len(errs) >= maxValidateErrors {
					return errors.Join(errs...)
				}
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
			return ErrCharset, "byte above 0x7F in a message declared ASCII"
		}
	case csCharmap:
		for _, c := range dec {
			if m.cs.cm.DecodeByte(c) == utf8.RuneError {
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

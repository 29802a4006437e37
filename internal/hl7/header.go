package hl7

import (
	"bytes"
	"errors"
)

// Header holds the decoded fields of MSH.
type Header struct {
	FieldSep      byte   // MSH-1
	EncodingChars string // MSH-2 as sent

	SendingApplication, SendingFacility, ReceivingApplication, ReceivingFacility HD // MSH-3 to MSH-6

	DateTime string // MSH-7.1
	Security string // MSH-8

	MessageCode, TriggerEvent, MessageStructure string // MSH-9.1, MSH-9.2, MSH-9.3

	ControlID    string // MSH-10
	ProcessingID string // MSH-11.1
	Version      string // MSH-12.1

	AcceptAckType, ApplicationAckType string // MSH-15, MSH-16

	CharacterSet string // MSH-18, first repetition
}

// HD is a hierarchic designator (MSH-3 to MSH-6).
type HD struct {
	NamespaceID, UniversalID, UniversalIDType string
	Raw                                       string // the field as sent, still encoded
}

// Header returns the decoded MSH fields.
func (m *Message) Header() Header {
	if len(m.segs) == 0 {
		return Header{}
	}
	return headerOf(m.Segment(0))
}

func headerOf(s Segment) Header {
	hd := func(n int) HD {
		f := s.Field(n)
		r := f.Rep(1)
		return HD{NamespaceID: r.Component(1).String(), UniversalID: r.Component(2).String(),
			UniversalIDType: r.Component(3).String(), Raw: string(f.Raw())}
	}
	msh9 := s.Field(9).Rep(1)
	return Header{
		FieldSep:             s.m.d.Field,
		EncodingChars:        s.Field(2).Text(),
		SendingApplication:   hd(3),
		SendingFacility:      hd(4),
		ReceivingApplication: hd(5),
		ReceivingFacility:    hd(6),
		DateTime:             s.Field(7).String(),
		Security:             s.Field(8).Text(),
		MessageCode:          msh9.Component(1).String(),
		TriggerEvent:         msh9.Component(2).String(),
		MessageStructure:     msh9.Component(3).String(),
		ControlID:            s.Field(10).Text(),
		ProcessingID:         s.Field(11).String(),
		Version:              s.Field(12).String(),
		AcceptAckType:        s.Field(15).Text(),
		ApplicationAckType:   s.Field(16).Text(),
		CharacterSet:         s.Field(18).Rep(1).Text(),
	}
}

// requiredHeader lists the MSH values without which a message cannot be processed or answered properly.
var requiredHeader = [...]struct {
	field, comp int
	what        string
}{
	{9, 1, "message type (MSH-9.1) is empty"},
	{10, 0, "message control id (MSH-10) is empty"},
	{11, 1, "processing id (MSH-11) is empty"},
	{12, 1, "version id (MSH-12) is empty"},
}

func checkHeader(s Segment) []error {
	var errs []error
	for _, r := range requiredHeader {
		f := s.Field(r.field)
		var empty bool
		if r.comp == 0 {
			empty = len(bytes.TrimSpace(f.Raw())) == 0
		} else {
			empty = len(bytes.TrimSpace(f.Rep(1).Component(r.comp).Raw())) == 0
		}
		if empty {
			errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: r.field,
				Component: r.comp, Line: s.Line(), Err: ErrRequired, Detail: r.what})
		}
	}
	return errs
}

// ParseHeader reads only the MSH of raw, as leniently as possible, so that even a message whose body is broken
// can be answered. It skips anything before the first "MSH", falls back to the default delimiters where the
// declared ones are unusable, and returns what it could read together with an error (possibly several joined
// *ParseErrors) for what it could not: bad delimiters and missing MSH-9, MSH-10, MSH-11 or MSH-12.
func ParseHeader(raw []byte) (Header, Delimiters, error) {
	i := bytes.Index(raw, []byte("MSH"))
	if i < 0 {
		if len(bytes.TrimSpace(bytes.TrimPrefix(raw, bom))) == 0 {
			return Header{}, Delimiters{}, &ParseError{Err: ErrEmpty}
		}
		return Header{}, Delimiters{}, &ParseError{Err: ErrNoMSH}
	}
	line := raw[i:]
	if j := bytes.IndexAny(line, "\r\n"); j >= 0 {
		line = line[:j]
	}
	var errs []error
	if len(line) < 4 {
		return Header{}, Delimiters{}, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: 1, Line: 1,
			Err: ErrBadDelimiters, Detail: "field separator is missing"}
	}
	fs := line[3]
	enc := line[4:]
	if j := bytes.IndexByte(enc, fs); j >= 0 {
		enc = enc[:j]
	}
	d, detail := readDelimiters(fs, enc)
	if detail != "" {
		f := 2
		if !validDelimiter(fs) {
			f = 1
		}
		errs = append(errs, &ParseError{Segment: "MSH", SegmentIndex: 1, Occurrence: 1, Field: f, Line: 1,
			Err: ErrBadDelimiters, Detail: detail})
		d = lenientDelimiters(fs, enc)
	}
	m := &Message{raw: line, d: d}
	m.addSegment(0, len(line), 1)
	m.cs = charsetOf(m.msh18())
	seg := m.Segment(0)
	h := headerOf(seg)
	errs = append(errs, checkHeader(seg)...)
	return h, d, errors.Join(errs...)
}

// lenientDelimiters keeps whatever declared delimiters are usable and fills the rest with defaults; a role
// whose default collides with a declared character is left out.
func lenientDelimiters(fs byte, enc []byte) Delimiters {
	d := DefaultDelimiters
	if validDelimiter(fs) {
		d.Field = fs
	}
	var used [256]bool
	used[d.Field] = true
	for i, p := range [...]*byte{&d.Component, &d.Repetition, &d.Escape, &d.Subcomponent} {
		if i < len(enc) && validDelimiter(enc[i]) && !used[enc[i]] {
			*p = enc[i]
		}
		if used[*p] {
			*p = 0
			continue
		}
		used[*p] = true
	}
	return d
}

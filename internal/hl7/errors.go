package hl7

import (
	"errors"
	"strconv"
	"strings"
)

// Sentinel errors. A *ParseError wraps exactly one of them; test with errors.Is.
var (
	ErrEmpty            = errors.New("hl7: empty message")
	ErrNoMSH            = errors.New("hl7: message does not start with MSH")
	ErrBadDelimiters    = errors.New("hl7: invalid delimiters")
	ErrBadSegmentName   = errors.New("hl7: invalid segment name")
	ErrBadEscape        = errors.New("hl7: invalid escape sequence")
	ErrCharset          = errors.New("hl7: character set error")
	ErrRequired         = errors.New("hl7: required value missing")
	ErrTooLarge         = errors.New("hl7: message too large")
	ErrMultipleMessages = errors.New("hl7: more than one MSH segment")
	ErrBatch            = errors.New("hl7: malformed batch")
	ErrBatchCount       = errors.New("hl7: batch count mismatch")
	ErrStructure        = errors.New("hl7: unexpected segment")
	ErrBadPath          = errors.New("hl7: invalid path")
	ErrVersion          = errors.New("hl7: unsupported version id")
	ErrControlChar      = errors.New("hl7: control character in value")
)

// ParseError locates a problem in a message. Its text names the place (line, segment, field, repetition,
// component) and what is wrong, never the value found there, so it may be logged without leaking PHI.
type ParseError struct {
	Segment      string // segment name, e.g. "PID" ("" if none)
	SegmentIndex int    // 1-based position of the segment in the message (0 if none)
	Occurrence   int    // 1-based occurrence among segments of the same name (0 if unknown)
	Field        int    // HL7 field number; 0 when not applicable
	Rep          int    // 1-based repetition; 0 when not applicable
	Component    int    // 1-based component; 0 when not applicable
	Sub          int    // 1-based subcomponent; 0 when not applicable
	Line         int    // 1-based line (segment) number in the input; 0 if unknown
	Err          error  // one of the sentinel errors
	Detail       string // what is wrong, in words; never contains message content
}

// Error implements error, e.g.
// "hl7: line 3, segment 3 (PID), field 5, repetition 1, component 2: invalid escape sequence: unterminated".
func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("hl7: ")
	n := b.Len()
	sep := func() {
		if b.Len() > n {
			b.WriteString(", ")
		}
	}
	if e.Line > 0 {
		b.WriteString("line ")
		b.WriteString(strconv.Itoa(e.Line))
	}
	if e.SegmentIndex > 0 || e.Segment != "" {
		sep()
		b.WriteString("segment ")
		if e.SegmentIndex > 0 {
			b.WriteString(strconv.Itoa(e.SegmentIndex))
			if e.Segment != "" {
				b.WriteString(" (" + e.Segment + ")")
			}
		} else {
			b.WriteString(e.Segment)
		}
	}
	for _, p := range [...]struct {
		name string
		v    int
	}{{"field", e.Field}, {"repetition", e.Rep}, {"component", e.Component}, {"subcomponent", e.Sub}} {
		if p.v > 0 {
			sep()
			b.WriteString(p.name + " " + strconv.Itoa(p.v))
		}
	}
	if b.Len() > n {
		b.WriteString(": ")
	}
	msg := "parse error"
	if e.Err != nil {
		msg = strings.TrimPrefix(e.Err.Error(), "hl7: ")
	}
	b.WriteString(msg)
	if e.Detail != "" {
		b.WriteString(": ")
		b.WriteString(e.Detail)
	}
	return b.String()
}

// Unwrap returns the sentinel error.
func (e *ParseError) Unwrap() error { return e.Err }

// Location returns the ERR-2 (ERL) style location: segment id, segment sequence, field, repetition, component,
// subcomponent joined by '^', with trailing parts left out when unknown, e.g. "PID^1^5^1^1".
func (e *ParseError) Location() string {
	if e.Segment == "" {
		return ""
	}
	parts := []string{e.Segment, strconv.Itoa(max(e.Occurrence, 1))}
	if e.Field > 0 {
		parts = append(parts, strconv.Itoa(e.Field))
		if e.Rep > 0 || e.Component > 0 {
			parts = append(parts, strconv.Itoa(max(e.Rep, 1)))
			if e.Component > 0 {
				parts = append(parts, strconv.Itoa(e.Component))
				if e.Sub > 0 {
					parts = append(parts, strconv.Itoa(e.Sub))
				}
			}
		}
	}
	return strings.Join(parts, "^")
}

// AckCode returns the HL7 table 0357 error code that fits e: "101" for a missing required value, "102" for bad
// data (escapes, character set), "100" for segment-level problems, "207" otherwise.
func (e *ParseError) AckCode() string {
	switch {
	case errors.Is(e.Err, ErrRequired):
		return "101"
	case errors.Is(e.Err, ErrVersion):
		return "203"
	case errors.Is(e.Err, ErrBadEscape), errors.Is(e.Err, ErrCharset), errors.Is(e.Err, ErrControlChar):
		return "102"
	case errors.Is(e.Err, ErrBadSegmentName), errors.Is(e.Err, ErrStructure), errors.Is(e.Err, ErrMultipleMessages),
		errors.Is(e.Err, ErrNoMSH):
		return "100"
	}
	return "207"
}

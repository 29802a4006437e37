// Package ccda reads HL7 C-CDA (and other CDA R2) documents safely and turns
// them into canonical FHIR R4 resources.
//
// Parse refuses anything that is not a bounded, DTD-free CDA ClinicalDocument;
// ToFHIR maps the header and the common C-CDA sections and reports what it did
// not map. The package does no I/O and keeps no state between calls.
package ccda

import (
	"errors"
	"fmt"
)

// Sentinel errors wrapped by *Error, for errors.Is.
var (
	ErrEmpty       = errors.New("empty input")
	ErrTooLarge    = errors.New("input larger than the limit")
	ErrTooDeep     = errors.New("elements nested deeper than the limit")
	ErrTooMany     = errors.New("more elements than the limit")
	ErrDTD         = errors.New("document type declarations (DTD, entities) are not accepted")
	ErrMalformed   = errors.New("not well-formed XML")
	ErrEncoding    = errors.New("unsupported character encoding")
	ErrNotCDA      = errors.New("not a CDA ClinicalDocument")
	ErrMissing     = errors.New("required element missing")
	ErrUnboundName = errors.New("undeclared namespace prefix")
)

// Error is a located problem with a document. It names where (an XML path,
// and a line when known) and what is wrong, never the content of the
// document, so it can be logged without leaking patient data.
type Error struct {
	Path string // XML path such as /ClinicalDocument/recordTarget[1]/patientRole[1]; "" when unknown
	Line int    // 1-based line of the input; 0 when unknown
	Msg  string // what is wrong, in words
	Err  error  // one of the sentinel errors above
}

func (e *Error) Error() string {
	s := "ccda: "
	if e.Path != "" {
		s += e.Path + ": "
	}
	if e.Line > 0 {
		s += fmt.Sprintf("line %d: ", e.Line)
	}
	if e.Msg != "" {
		return s + e.Msg
	}
	return s + e.Err.Error()
}

func (e *Error) Unwrap() error { return e.Err }

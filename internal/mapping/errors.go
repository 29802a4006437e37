package mapping

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/hiegw/hiegw/internal/defect"
)

// Error is one problem found while loading a mapping set, located in the file
// an analyst edits. Its text is "file:line:col: msg", then the offending line
// and a caret under the spot.
type Error struct {
	File   string
	Line   int // 1-based; 0 when the problem concerns the whole file
	Column int // 1-based; 0 when unknown
	Msg    string
	Source string // the line of the file, without its terminator
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
		if e.Column > 0 {
			fmt.Fprintf(&b, ":%d", e.Column)
		}
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	if e.Source != "" {
		src := strings.ReplaceAll(e.Source, "\t", " ")
		b.WriteString("\n    ")
		b.WriteString(src)
		if e.Column > 0 {
			b.WriteString("\n    ")
			col := e.Column - 1
			if col > len(src) {
				col = len(src)
			}
			b.WriteString(strings.Repeat(" ", col))
			b.WriteByte('^')
		}
	}
	return b.String()
}

// errorList collects located errors while a set is compiled.
type errorList struct {
	errs []*Error
}

func (l *errorList) add(e *Error) { l.errs = append(l.errs, e) }

// err sorts the problems by file and position and joins them; nil if none.
func (l *errorList) err() error {
	if len(l.errs) == 0 {
		return nil
	}
	sort.SliceStable(l.errs, func(i, j int) bool {
		a, b := l.errs[i], l.errs[j]
		if a.File != b.File {
			return a.File < b.File
		}
		if a.Line != b.Line {
			return a.Line < b.Line
		}
		return a.Column < b.Column
	})
	seen := make(map[string]bool, len(l.errs))
	errs := make([]error, 0, len(l.errs))
	for _, e := range l.errs {
		k := e.Error()
		if seen[k] {
			continue
		}
		seen[k] = true
		errs = append(errs, e)
	}
	return errors.Join(errs...)
}

// Errors returns every located *Error inside err (as returned by Load).
func Errors(err error) []*Error {
	var out []*Error
	var walk func(error)
	walk = func(err error) {
		if err == nil {
			return
		}
		var e *Error
		if errors.As(err, &e) && err == error(e) {
			out = append(out, e)
			return
		}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			for _, x := range j.Unwrap() {
				walk(x)
			}
			return
		}
		if errors.As(err, &e) {
			out = append(out, e)
		}
	}
	walk(err)
	return out
}

// DefectError is a panic while compiling a mapping set: a defect of hiegw,
// not a problem in the files. The set is refused as if it had errors.
type DefectError = defect.Error

// Codes of HL7 table 0357 (message error condition codes) used by MapError.
const (
	CodeSegmentSequence = "100" // segment sequence error
	CodeRequiredMissing = "101" // required field missing
	CodeDataType        = "102" // data type error
	CodeTableValue      = "103" // table value not found
	CodeUnsupportedType = "200" // unsupported message type
	CodeApplication     = "207" // application internal error
)

// MapError is returned when a message cannot be mapped. It names the HL7
// location (ERR-2 style: segment^sequence^field[^repetition^component]), the
// FHIR element and the mapping rule (file:line), never the value, which may be
// protected health information.
type MapError struct {
	Location string // e.g. "PID^1^7"; empty when the problem is not tied to one field
	Field    string // FHIR element, e.g. "Patient.birthDate"
	Rule     string // mapping rule, "file:line"
	Msg      string
	Code     string // HL7 table 0357 code
	// Stack is the goroutine's stack when the mapping panicked (a defect
	// of hiegw), for its log; nil otherwise. It holds no message content.
	Stack []byte
}

func (e *MapError) Error() string {
	var b strings.Builder
	b.WriteString("map")
	if e.Location != "" {
		b.WriteString(" ")
		b.WriteString(e.Location)
	}
	if e.Field != "" {
		b.WriteString(" to ")
		b.WriteString(e.Field)
	}
	if e.Rule != "" {
		b.WriteString(" (rule ")
		b.WriteString(e.Rule)
		b.WriteString(")")
	}
	b.WriteString(": ")
	b.WriteString(e.Msg)
	return b.String()
}

// valueError is raised by an expression function when a source value cannot
// be converted; the engine turns it into a MapError with the rule attached.
type valueError struct {
	loc  string
	msg  string
	code string
}

func (e *valueError) Error() string { return e.loc + ": " + e.msg }

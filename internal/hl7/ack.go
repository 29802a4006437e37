package hl7

import (
	"strconv"
	"strings"
	"time"

	"golang.org/x/text/encoding/charmap"
)

// AckCode is an acknowledgment code (MSA-1, HL7 table 0008).
type AckCode string

// Acknowledgment codes: original mode (application) and enhanced mode (commit).
const (
	AppAccept    AckCode = "AA"
	AppError     AckCode = "AE"
	AppReject    AckCode = "AR"
	CommitAccept AckCode = "CA"
	CommitError  AckCode = "CE"
	CommitReject AckCode = "CR"
)

// ErrorDetail is one ERR segment of an ACK.
type ErrorDetail struct {
	Location string // ERR-2 (ERL) with '^' between parts, e.g. "PID^1^5"; see ParseError.Location
	Code     string // HL7 table 0357, e.g. "101" required field missing, "207" application internal error
	Severity string // "E", "W" or "I" (table 0516); "" means "E"
	Message  string // human-readable text (ERR-8); escaped on encode. Never put PHI here.
}

// errorCodeText is HL7 table 0357.
var errorCodeText = map[string]string{
	"0":   "Message accepted",
	"100": "Segment sequence error",
	"101": "Required field missing",
	"102": "Data type error",
	"103": "Table value not found",
	"104": "Value too long",
	"200": "Unsupported message type",
	"201": "Unsupported event code",
	"202": "Unsupported processing id",
	"203": "Unsupported version id",
	"204": "Unknown key identifier",
	"205": "Duplicate key identifier",
	"206": "Application record locked",
	"207": "Application internal error",
}

// NewACK builds a complete acknowledgment for a message whose header is h and delimiters d: MSH with sending and
// receiving application and facility swapped, the sender's version, encoding characters and character set,
// MSH-9 "ACK^<trigger>^ACK" (v2.3.1 and later; "ACK^<trigger>" before), MSH-10 controlID, MSA-1 code,
// MSA-2 h.ControlID, and one ERR segment per detail. For v2.5 and later ERR carries ERR-2 location, ERR-3
// "code^text^HL70357", ERR-4 severity and ERR-8 message; for earlier versions ERR-1 carries the location and
// code (ELD) and MSA-3 the first detail's message. Every segment ends with CR; values are escaped. Unusable
// delimiters (no field or component separator) are replaced by the defaults.
func NewACK(h Header, d Delimiters, code AckCode, controlID string, now time.Time, details ...ErrorDetail) []byte {
	keepRaw := true
	if d.Field == 0 || d.Component == 0 {
		d = DefaultDelimiters
		keepRaw = false
	}
	var cm *charmap.Charmap
	if cs := charsetOf([]byte(strings.TrimSpace(h.CharacterSet))); cs.kind == csCharmap {
		cm = cs.cm
	}
	w := ackWriter{d: d, cm: cm}
	version := h.Version
	if version == "" {
		version = "2.5.1"
	}
	v25 := versionAtLeast(version, 2, 5, 0)

	// MSH
	w.b = append(w.b, "MSH"...)
	w.b = append(w.b, d.Field)
	w.b = append(w.b, d.EncodingChars()...)
	for _, hd := range []HD{h.ReceivingApplication, h.ReceivingFacility, h.SendingApplication, h.SendingFacility} {
		w.field()
		if keepRaw && hd.Raw != "" {
			w.b = append(w.b, hd.Raw...)
		} else {
			w.components(hd.NamespaceID, hd.UniversalID, hd.UniversalIDType)
		}
	}
	w.field()
	w.b = now.AppendFormat(w.b, "20060102150405-0700")
	w.field() // MSH-8
	w.field()
	switch {
	case versionAtLeast(version, 2, 3, 1):
		w.components("ACK", h.TriggerEvent, "ACK")
	default:
		w.components("ACK", h.TriggerEvent)
	}
	w.field()
	w.text(controlID)
	w.field()
	if h.ProcessingID != "" {
		w.text(h.ProcessingID)
	} else {
		w.text("P")
	}
	w.field()
	w.text(version)
	if cs := strings.TrimSpace(h.CharacterSet); cs != "" {
		for range 6 { // MSH-13 .. MSH-18
			w.field()
		}
		w.text(cs)
	}
	w.b = append(w.b, '\r')

	// MSA
	w.b = append(w.b, "MSA"...)
	w.field()
	w.text(string(code))
	w.field()
	w.text(h.ControlID)
	if !v25 && len(details) > 0 && details[0].Message != "" {
		w.field()
		w.text(details[0].Message)
	}
	w.b = append(w.b, '\r')

	// ERR
	for _, e := range details {
		w.b = append(w.b, "ERR"...)
		w.field()
		codeText := errorCodeText[e.Code]
		loc := strings.Split(e.Location, "^")
		if e.Location == "" {
			loc = nil
		}
		if v25 {
			w.field()
			w.components(loc...)
			w.field()
			w.components(e.Code, codeText, "HL70357")
			w.field()
			sev := e.Severity
			if sev == "" {
				sev = "E"
			}
			w.text(sev)
			w.field()
			w.field()
			w.field()
			w.field()
			w.text(e.Message)
		} else {
			// ELD: segment ^ sequence ^ field position ^ code&text&table
			var parts [3]string
			copy(parts[:], loc)
			w.components(parts[0], parts[1], parts[2])
			w.b = append(w.b, d.Component)
			w.text(e.Code)
			if d.Subcomponent != 0 {
				w.b = append(w.b, d.Subcomponent)
				w.text(codeText)
				w.b = append(w.b, d.Subcomponent)
				w.text("HL70357")
			}
		}
		w.trim()
		w.b = append(w.b, '\r')
	}
	return w.b
}

// ackWriter appends encoded values.
type ackWriter struct {
	b  []byte
	d  Delimiters
	cm *charmap.Charmap
}

func (w *ackWriter) field() { w.b = append(w.b, w.d.Field) }

func (w *ackWriter) text(s string) {
	if w.cm != nil {
		var b strings.Builder
		for _, r := range s {
			c, ok := w.cm.EncodeRune(r)
			if !ok {
				c = '?'
			}
			b.WriteByte(c)
		}
		s = b.String()
	}
	w.b = AppendEscaped(w.b, s, w.d)
}

// components writes parts joined by the component separator, leaving out trailing empty ones.
func (w *ackWriter) components(parts ...string) {
	for len(parts) > 0 && parts[len(parts)-1] == "" {
		parts = parts[:len(parts)-1]
	}
	for i, p := range parts {
		if i > 0 {
			w.b = append(w.b, w.d.Component)
		}
		w.text(p)
	}
}

// trim removes trailing field separators of the segment being written.
func (w *ackWriter) trim() {
	for len(w.b) > 0 && w.b[len(w.b)-1] == w.d.Field {
		w.b = w.b[:len(w.b)-1]
	}
}

// versionAtLeast compares an HL7 version id such as "2.3.1" or "2.5" with major.minor.patch.
func versionAtLeast(v string, major, minor, patch int) bool {
	var got [3]int
	for i, p := range strings.SplitN(v, ".", 3) {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil {
			break
		}
		got[i] = n
	}
	want := [3]int{major, minor, patch}
	for i := range got {
		if got[i] != want[i] {
			return got[i] > want[i]
		}
	}
	return true
}

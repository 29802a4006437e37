package route

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hiegw/hiegw/internal/hl7"
)

// ErrNotHL7 says a source is not an HL7 v2 message.
var ErrNotHL7 = errors.New("source is not an HL7 v2 message")

// ErrNoPID says an HL7 v2 message has no PID segment to carry the
// enterprise id.
var ErrNoPID = errors.New("message has no PID segment")

// AddEnterpriseID returns a copy of an HL7 v2 message with the enterprise
// patient id added to PID-3 of every PID segment, as a repetition
// "id^^^authority^PI". A repetition already carrying the same assigning
// authority is replaced, so re-encoding twice gives the same bytes. The
// message's own delimiters and segment terminators are kept; the id and
// authority are escaped.
func AddEnterpriseID(raw []byte, id, authority string) ([]byte, error) {
	start := bytes.Index(raw, []byte("MSH"))
	if start < 0 || len(bytes.Trim(raw[:start], "\ufeff\r\n\t ")) > 0 {
		return nil, fmt.Errorf("add enterprise id: %w", ErrNotHL7)
	}
	_, d, _ := hl7.ParseHeader(raw)
	if d.Field == 0 || d.Component == 0 || d.Repetition == 0 {
		return nil, fmt.Errorf("add enterprise id: MSH-1/MSH-2: %w", ErrNotHL7)
	}
	comp := string([]byte{d.Component})
	escAuth := hl7.Escape(authority, d)
	rep := hl7.Escape(id, d) + comp + comp + comp + escAuth + comp + "PI"
	out := make([]byte, 0, len(raw)+len(rep)+8)
	found := false
	rest := raw
	for len(rest) > 0 {
		// One segment and its terminator (CR, LF or CRLF).
		end := bytes.IndexAny(rest, "\r\n")
		line, term := rest, []byte(nil)
		if end >= 0 {
			line = rest[:end]
			t := end + 1
			if rest[end] == '\r' && t < len(rest) && rest[t] == '\n' {
				t++
			}
			term = rest[end:t]
			rest = rest[t:]
		} else {
			rest = nil
		}
		if len(line) > 3 && string(line[:3]) == "PID" && line[3] == d.Field {
			found = true
			line = withPID3(line, d, rep, escAuth)
		}
		out = append(out, line...)
		out = append(out, term...)
	}
	if !found {
		return nil, fmt.Errorf("add enterprise id: %w", ErrNoPID)
	}
	return out, nil
}

// withPID3 rebuilds a PID segment with rep appended to field 3.
func withPID3(line []byte, d hl7.Delimiters, rep, escAuth string) []byte {
	fields := bytes.Split(line, []byte{d.Field})
	for len(fields) < 4 {
		fields = append(fields, nil)
	}
	var reps [][]byte
	if len(fields[3]) > 0 {
		for _, r := range bytes.Split(fields[3], []byte{d.Repetition}) {
			comps := bytes.Split(r, []byte{d.Component})
			if len(comps) >= 4 && string(comps[3]) == escAuth {
				continue // an earlier enterprise id from this authority
			}
			reps = append(reps, r)
		}
	}
	reps = append(reps, []byte(rep))
	fields[3] = bytes.Join(reps, []byte{d.Repetition})
	return bytes.Join(fields, []byte{d.Field})
}

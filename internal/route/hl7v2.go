package route

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"

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
// authority are escaped. Everything but PID-3 keeps its bytes (hl7.Edit).
func AddEnterpriseID(raw []byte, id, authority string) ([]byte, error) {
	start := bytes.Index(raw, []byte("MSH"))
	if start < 0 || len(bytes.Trim(raw[:start], "\ufeff\r\n\t ")) > 0 {
		return nil, fmt.Errorf("add enterprise id: %w", ErrNotHL7)
	}
	m, err := hl7.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("add enterprise id: %w: %w", ErrNotHL7, err)
	}
	d := m.Delimiters()
	if d.Component == 0 || d.Repetition == 0 {
		return nil, fmt.Errorf("add enterprise id: MSH-1/MSH-2: %w", ErrNotHL7)
	}
	pids := m.Segments("PID")
	if len(pids) == 0 {
		return nil, fmt.Errorf("add enterprise id: %w", ErrNoPID)
	}
	comp := string([]byte{d.Component})
	escAuth := hl7.Escape(authority, d)
	rep := hl7.Escape(id, d) + comp + comp + comp + escAuth + comp + "PI"
	b := hl7.Edit(m)
	for k, pid := range pids {
		prefix := "PID[" + strconv.Itoa(k+1) + "]-3"
		f := pid.Field(3)
		n := f.RepCount()
		// An earlier enterprise id from this authority goes; from the last
		// repetition to the first, so the numbers of the others hold. A
		// repetition holding a raw line break (a wrapped segment) stays.
		for r := n; r >= 1; r-- {
			rr := f.Rep(r)
			if string(rr.Component(4).Raw()) == escAuth && !bytes.ContainsAny(rr.Raw(), "\r\n") {
				if err := b.Remove(prefix + "[" + strconv.Itoa(r) + "]"); err != nil {
					return nil, fmt.Errorf("add enterprise id: %w", err)
				}
				n--
			}
		}
		if err := b.SetEncoded(prefix+"["+strconv.Itoa(n+1)+"]", rep); err != nil {
			return nil, fmt.Errorf("add enterprise id: %w", err)
		}
	}
	return b.Bytes(), nil
}

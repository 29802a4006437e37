package hl7

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"
)

// addCorpusSeeds adds every shared-corpus HL7 file (when present) and the package's own fixtures as seeds.
func addCorpusSeeds(f *testing.F) {
	var paths []string
	for _, pattern := range []string{corpusDir + "/*/*", "testdata/roundtrip/*.hl7", "testdata/error/*.hl7", "testdata/bench/*.hl7"} {
		m, _ := filepath.Glob(pattern)
		paths = append(paths, m...)
	}
	for _, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) <= 64<<10 {
			f.Add(b)
		}
	}
	f.Add([]byte(sampleADT))
}

// FuzzParse parses, walks every value, validates, builds the structure and encodes; the encoding must parse
// again to the same segments, and decoded text must be valid UTF-8.
func FuzzParse(f *testing.F) {
	addCorpusSeeds(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := Parse(raw)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error is not a *ParseError: %T %v", err, err)
			}
			_, _, _ = ParseHeader(raw)
			return
		}
		for i := range m.SegmentCount() {
			s := m.Segment(i)
			for fi := 1; fi <= s.FieldCount(); fi++ {
				fld := s.Field(fi)
				_ = fld.Rep(1).Component(2).Sub(1)
				for r, rep := range fld.Reps() {
					if v := rep.Text(); !utf8.ValidString(v) {
						t.Fatalf("invalid UTF-8 from %s-%d[%d]", s.Name(), fi, r)
					}
					for c, comp := range rep.Components() {
						_ = comp.String()
						for k, v := range comp.Subs() {
							if !utf8.ValidString(v) {
								t.Fatalf("invalid UTF-8 from %s-%d[%d].%d.%d", s.Name(), fi, r, c, k)
							}
						}
					}
				}
			}
		}
		_ = m.Header()
		_ = m.Validate()
		_, _, _ = m.Structure()
		_ = m.Get("PID-3[2].1.1")
		_, _ = m.Query("OBX[*]-5[*].1")
		enc := m.Encode()
		m2, err := Parse(enc)
		if err != nil {
			t.Fatalf("encoding does not parse: %v", err)
		}
		if m2.SegmentCount() != m.SegmentCount() || !bytes.Equal(m2.Encode(), enc) {
			t.Fatalf("encoding not stable")
		}
		var reuse Message
		if err := reuse.Reset(raw); err != nil || reuse.SegmentCount() != m.SegmentCount() {
			t.Fatalf("Reset differs from Parse: %v", err)
		}
	})
}

// FuzzUnescape checks that decoding never panics and that Escape then Unescape gives the text back.
func FuzzUnescape(f *testing.F) {
	for _, s := range []string{`a\F\b`, `\X0D0A\`, `\.br\`, `\H\x\N\`, `\Zab\`, `\`, `\\`, `x\E\y`, "a|b^c~d&e", "\x00\n\r"} {
		f.Add([]byte(s), byte('|'), byte('^'), byte('~'), byte('\\'), byte('&'))
	}
	f.Fuzz(func(t *testing.T, b []byte, fs, cs, rs, es, ss byte) {
		d := Delimiters{Field: fs, Component: cs, Repetition: rs, Escape: es, Subcomponent: ss}
		_ = Unescape(b, d)
		if _, detail := readDelimiters(fs, []byte{cs, rs, es, ss}); detail != "" {
			return
		}
		text := string(b)
		enc := Escape(text, d)
		if got := string(Unescape([]byte(enc), d)); got != text {
			t.Fatalf("round trip: %q -> %q -> %q", text, enc, got)
		}
	})
}

// FuzzSplitBatch splits arbitrary input: messages must be in-order, non-overlapping sub-slices of the input,
// each starting with MSH.
func FuzzSplitBatch(f *testing.F) {
	addCorpusSeeds(f)
	f.Fuzz(func(t *testing.T, data []byte) {
		b, _ := SplitBatch(data)
		prevEnd := 0
		for _, msg := range b.Messages {
			if !bytes.HasPrefix(msg, []byte("MSH")) {
				t.Fatalf("message does not start with MSH")
			}
			off := subsliceOffset(data, msg)
			if off < prevEnd {
				t.Fatalf("message at %d is not a sub-slice after the previous one (end %d)", off, prevEnd)
			}
			prevEnd = off + len(msg)
			_, _ = Parse(msg)
		}
	})
}

// subsliceOffset returns where sub starts in data, or -1 when it is not inside data.
func subsliceOffset(data, sub []byte) int {
	if len(sub) == 0 || len(data) == 0 {
		return -1
	}
	for i := range data {
		if &data[i] == &sub[0] {
			if i+len(sub) > len(data) {
				return -1
			}
			return i
		}
	}
	return -1
}

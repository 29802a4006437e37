package hl7

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata")

// TestRoundTrip: every testdata/roundtrip/*.hl7 (CR-terminated) encodes back byte for byte, and its decoded
// values match NAME.values.
func TestRoundTrip(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "roundtrip", "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no round-trip inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(raw)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if got := m.Encode(); !bytes.Equal(got, raw) {
				t.Errorf("Encode differs from input:\n got %q\nwant %q", got, raw)
			}
			golden(t, strings.TrimSuffix(f, ".hl7")+".values", dumpValues(m))
		})
	}
}

// TestErrorGoldens: every testdata/error/NAME.hl7 is refused by Parse or Validate with the exact text in
// NAME.error.
func TestErrorGoldens(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "error", "*.hl7"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no error inputs: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			raw, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(raw)
			if err == nil {
				err = m.Validate()
			}
			if err == nil {
				t.Fatal("accepted; want an error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("%v is not a *ParseError", err)
			}
			golden(t, strings.TrimSuffix(f, ".hl7")+".error", err.Error()+"\n")
		})
	}
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("missing golden file (run go test -update): %v", err)
	}
	if got != string(want) {
		t.Errorf("%s differs:\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

// dumpValues lists every non-empty subcomponent with its full path and decoded value, one per line.
func dumpValues(m *Message) string {
	var b strings.Builder
	occ := map[string]int{}
	for i := range m.SegmentCount() {
		s := m.Segment(i)
		occ[s.Name()]++
		for f := 1; f <= s.FieldCount(); f++ {
			fld := s.Field(f)
			for r := 1; r <= fld.RepCount(); r++ {
				rep := fld.Rep(r)
				for c := 1; c <= rep.ComponentCount(); c++ {
					comp := rep.Component(c)
					for k := 1; k <= comp.SubCount(); k++ {
						v := comp.Sub(k)
						if v == "" {
							continue
						}
						p := fmt.Sprintf("%s[%d]-%d[%d].%d.%d", s.Name(), occ[s.Name()], f, r, c, k)
						if got, _ := m.Query(p); len(got) != 1 || got[0] != v {
							fmt.Fprintf(&b, "QUERY MISMATCH %s: %q\n", p, got)
						}
						fmt.Fprintf(&b, "%s = %q\n", p, v)
					}
				}
			}
		}
	}
	return b.String()
}

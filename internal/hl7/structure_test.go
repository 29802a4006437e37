package hl7

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// outline renders a group as an indented outline of group and segment names.
func outline(g *Group, depth int, b *strings.Builder) {
	b.WriteString(strings.Repeat("  ", depth) + g.Name + "\n")
	for _, c := range g.Children {
		if c.Group != nil {
			outline(c.Group, depth+1, b)
		} else {
			b.WriteString(strings.Repeat("  ", depth+1) + c.Segment.Name() + "\n")
		}
	}
}

func TestStructureORU(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join("testdata", "bench", "mixed.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	m := mustParse(t, string(raw))
	g, warnings, err := m.Structure()
	if err != nil || len(warnings) != 0 {
		t.Fatalf("Structure: %v %v", err, warnings)
	}
	var b strings.Builder
	outline(g, 0, &b)
	want := `ORU_R01
  MSH
  SFT
  PATIENT_RESULT
    PATIENT
      PID
    ORDER_OBSERVATION
      ORC
      OBR
      OBSERVATION
        OBX
      OBSERVATION
        OBX
      OBSERVATION
        OBX
      OBSERVATION
        OBX
      OBSERVATION
        OBX
      OBSERVATION
        OBX
        NTE
      SPECIMEN
        SPM
`
	if b.String() != want {
		t.Errorf("outline:\n%s\nwant\n%s", b.String(), want)
	}
	if got := len(g.Find("OBSERVATION")); got != 6 {
		t.Errorf("Find(OBSERVATION) = %d", got)
	}
	if got := len(g.Segments()); got != m.SegmentCount() {
		t.Errorf("Segments() = %d, want every segment (%d)", got, m.SegmentCount())
	}
	if s, ok := g.Find("SPECIMEN")[0].Segment("SPM"); !ok || s.Index() != 12 {
		t.Errorf("SPECIMEN SPM: %v %v", s.Index(), ok)
	}
}

func TestStructureADT(t *testing.T) {
	// A40 with two PID/MRG pairs, a Z-segment, an unknown segment and a misplaced one.
	in := "MSH|^~\\&|A||||||ADT^A40|1|P|2.5\rEVN|A40\rPID|1\rMRG|1\rZPD|z\rPID|2\rFOO|x\rMRG|2\rPV1|1\rEVN|again\r"
	m := mustParse(t, in)
	if m.StructureName() != "ADT_A39" {
		t.Fatalf("StructureName = %q", m.StructureName())
	}
	g, warnings, err := m.Structure()
	if err != nil {
		t.Fatal(err)
	}
	if got := len(g.Groups("PATIENT")); got != 2 {
		t.Errorf("PATIENT groups = %d, want 2", got)
	}
	var locs []string
	for _, w := range warnings {
		if !errors.Is(&w, ErrStructure) {
			t.Errorf("warning does not wrap ErrStructure: %v", w.Error())
		}
		locs = append(locs, w.Location()+" "+w.Detail)
	}
	want := "FOO^1 segment is not part of PATIENT\nEVN^2 segment is out of place for ADT_A39"
	if strings.Join(locs, "\n") != want {
		t.Errorf("warnings:\n%s\nwant\n%s", strings.Join(locs, "\n"), want)
	}
	if len(g.Segments()) != m.SegmentCount() {
		t.Errorf("segments lost: %d of %d", len(g.Segments()), m.SegmentCount())
	}
	// Strict: the first warning is the error.
	m, _ = ParseWith([]byte(in), Options{})
	m.SetOptions(Options{Strict: true})
	if _, _, err := m.Structure(); !errors.Is(err, ErrStructure) {
		t.Errorf("strict Structure: %v", err)
	}
	// Missing required segment, structure chosen from the trigger (no MSH-9.3).
	m = mustParse(t, "MSH|^~\\&|A||||||ADT^A08|1|P|2.5\rEVN|A08\rPV1|1\r")
	_, warnings, _ = m.Structure()
	if len(warnings) != 1 || warnings[0].Detail != "required segment PID missing in ADT_A01" || warnings[0].Location() != "PV1^1" {
		t.Errorf("missing PID warnings: %+v", warnings)
	}
	// Unknown structure: flat group and an error.
	m = mustParse(t, "MSH|^~\\&|A||||||ABC^XYZ|1|P|2.5\rPID|1\r")
	g, _, err = m.Structure()
	if !errors.Is(err, ErrStructure) || len(g.Children) != 2 {
		t.Errorf("unknown type: %v, %d children", err, len(g.Children))
	}
	// MSH-9.3 wins over code and trigger.
	m = mustParse(t, "MSH|^~\\&|A||||||ADT^A31^ADT_A05|1|P|2.5\rEVN|A31\rPID|1\rPV1|1\r")
	if m.StructureName() != "ADT_A05" {
		t.Errorf("StructureName = %q", m.StructureName())
	}
}

// TestStructureCorpus: every known-structure message of adt, oru and other gets a structure holding all its
// segments.
func TestStructureCorpus(t *testing.T) {
	for folder, files := range corpusFiles(t) {
		if folder != "adt" && folder != "oru" && folder != "other" {
			continue
		}
		for _, p := range files {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m, err := Parse(raw)
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			g, _, err := m.Structure()
			if err != nil && m.StructureName() != "" {
				t.Errorf("%s: %v", p, err)
			}
			if len(g.Segments()) != m.SegmentCount() {
				t.Errorf("%s: structure holds %d of %d segments", p, len(g.Segments()), m.SegmentCount())
			}
		}
	}
}

package mapping

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/fhir"
)

const ccdaCorpusDir = "../../../shared/corpus/ccda"

// ccdaGoldenInputs are the corpus documents the default C-CDA mappings are
// held to: R1.1 and R2.1 documents from a dozen vendors, with nullFlavors,
// narrative references, IVL_TS variants and empty sections.
var ccdaGoldenInputs = []string{
	"allscripts_professional_ccd_jones.xml",
	"allscripts_sunrise_ccd_everyman.xml",
	"bluebutton_ccda_nullflavor_sample.xml",
	"bluebutton_ccda_referenced_values.xml",
	"cerner_problems_and_medications.xml",
	"cerner_toc_referral_summary.xml",
	"emerge_patient_0.xml",
	"epic_ccd_ivl_real_example.xml",
	"greenway_clinical_visit_summary.xml",
	"hl7_ccd_empty_sections_nullflavor.xml",
	"hl7_ccd_r21_ccd1.xml",
	"kareo_summary_of_care.xml",
	"kinsights_ccd_pediatric.xml",
	"nextgen_ccd_jones.xml",
	"nist_ccd_ambulatory_b1.xml",
	"onc_170315_b1_toc_amb_ccd_r21.xml",
	"partners_ccda.xml",
	"practicefusion_referral_summary.xml",
}

func ccdaCorpusOrSkip(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(ccdaCorpusDir); err != nil {
		t.Skipf("shared C-CDA corpus not found at %s: %v", ccdaCorpusDir, err)
	}
}

func parseCorpusDoc(t testing.TB, name string) *ccda.Document {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ccdaCorpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	doc, err := ccda.Parse(data, ccda.DefaultLimits)
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	return doc
}

// TestGoldenCCDA maps corpus documents with the shipped default set,
// re-validates every resource and compares the dry-run Bundle with
// testdata/golden/ccda_<file>.json. -update rewrites.
func TestGoldenCCDA(t *testing.T) {
	ccdaCorpusOrSkip(t)
	s := loadDefault(t)
	total := 0
	for _, name := range ccdaGoldenInputs {
		t.Run(strings.TrimSuffix(name, ".xml"), func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join(ccdaCorpusDir, name))
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			if err := DryRun(&out, s, goldenSend, data); err != nil {
				t.Fatalf("dry run: %v", err)
			}
			r, err := s.MapCCDA(goldenSend, parseCorpusDoc(t, name))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Resources) == 0 || r.Resources[0].Type() != "Patient" {
				t.Fatalf("no Patient first")
			}
			for _, res := range r.Resources {
				total++
				if probs := Validate(res); len(probs) > 0 {
					t.Errorf("%s invalid: %v", res.Type(), probs)
				}
			}
			checkGolden(t, filepath.Join("testdata", "golden", "ccda_"+strings.TrimSuffix(name, ".xml")+".json"), out.Bytes())
		})
	}
	t.Logf("%d documents mapped to %d resources", len(ccdaGoldenInputs), total)
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// normalJSON turns a resource into plain decoded JSON (numbers as
// json.Number), so that int and json.Number values compare equal.
func normalJSON(t testing.TB, r fhir.Resource) any {
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// TestCCDAAgainstConverter holds the file-driven mappings to internal/ccda's
// Go converter (doc.ToFHIR): for every corpus document, each resource the
// converter makes is matched by id and compared element by element;
// every difference, missing or extra resource is listed in
// testdata/golden/ccda_converter_differences.txt (-update rewrites it), so a
// change on either side shows up here. The README explains the differences
// that remain.
func TestCCDAAgainstConverter(t *testing.T) {
	ccdaCorpusOrSkip(t)
	s := loadDefault(t)
	var report bytes.Buffer
	same, compared := 0, 0
	sameOf, comparedOf := map[string]int{}, map[string]int{}
	files, _ := filepath.Glob(filepath.Join(ccdaCorpusDir, "*.xml"))
	if len(files) < 10 {
		t.Fatalf("only %d corpus documents", len(files))
	}
	// and the test case beside the default mappings
	files = append(files, filepath.Join(mappingsDir, "default", "tests", "ccda_ccd.xml"))
	for _, f := range files {
		name := filepath.Base(f)
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		doc, err := ccda.Parse(data, ccda.DefaultLimits)
		if err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		got, err := s.MapCCDA(goldenSend, doc)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		want, _ := doc.ToFHIR(goldenSend)
		mine := map[string]fhir.Resource{}
		for _, r := range got.Resources {
			mine[r.Ref()] = r
		}
		seen := map[string]bool{}
		var lines []string
		for _, w := range want {
			compared++
			comparedOf[w.Type()]++
			ref := w.Ref()
			seen[ref] = true
			g := mine[ref]
			if g == nil {
				lines = append(lines, fmt.Sprintf("missing %s %s", w.Type(), shortCode(w)))
				continue
			}
			var diffs []string
			diffValue(&diffs, w.Type(), normalJSON(t, w), normalJSON(t, g))
			if len(diffs) == 0 {
				same++
				sameOf[w.Type()]++
			}
			for _, d := range diffs {
				lines = append(lines, d)
			}
		}
		for _, g := range got.Resources {
			if !seen[g.Ref()] {
				lines = append(lines, fmt.Sprintf("extra %s %s", g.Type(), shortCode(g)))
			}
		}
		sort.Strings(lines)
		fmt.Fprintf(&report, "== %s: %d difference(s)\n", name, len(lines))
		for _, l := range lines {
			fmt.Fprintf(&report, "  %s\n", l)
		}
	}
	types := make([]string, 0, len(comparedOf))
	for typ := range comparedOf {
		types = append(types, typ)
	}
	sort.Strings(types)
	for _, typ := range types {
		fmt.Fprintf(&report, "== %s: %d of %d equal\n", typ, sameOf[typ], comparedOf[typ])
	}
	fmt.Fprintf(&report, "== %d of %d converter resources equal\n", same, compared)
	t.Logf("%d of %d converter resources equal", same, compared)
	checkGolden(t, filepath.Join("testdata", "golden", "ccda_converter_differences.txt"), report.Bytes())
}

// shortCode names a resource by its first code, for the difference list.
func shortCode(r fhir.Resource) string {
	for _, k := range []string{"code", "vaccineCode", "medicationCodeableConcept"} {
		if c, ok := r[k].(map[string]any); ok {
			if l, ok := c["coding"].([]any); ok && len(l) > 0 {
				if m, ok := l[0].(map[string]any); ok {
					return fmt.Sprintf("(%v)", m["code"])
				}
			}
			return fmt.Sprintf("(%v)", c["text"])
		}
	}
	return ""
}

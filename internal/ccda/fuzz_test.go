package ccda

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse: Parse never panics, fails only with *Error, and whatever it
// accepts maps to JSON-encodable resources with a Patient and a
// DocumentReference.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"hl7_ccd_header_direct_address.xml", "hl7_unstructured_embedded_text.xml",
		"hl7_r11_unstructured_sample.xml", "kareo_ccd_c32_style.xml"} {
		if b, err := os.ReadFile(filepath.Join(corpusDir, name)); err == nil {
			f.Add(b)
		}
	}
	if b, err := os.ReadFile("testdata/sections.xml"); err == nil {
		f.Add(b)
	}
	f.Add([]byte(minimalDoc))
	f.Add([]byte(`<!DOCTYPE x [<!ENTITY a "b">]><ClinicalDocument xmlns="urn:hl7-org:v3"/>`))
	f.Add([]byte("\xEF\xBB\xBF<ClinicalDocument xmlns=\"urn:hl7-org:v3\"><recordTarget><patientRole/></recordTarget></ClinicalDocument>"))
	lim := Limits{MaxBytes: 1 << 20, MaxDepth: 64, MaxElements: 20000}
	f.Fuzz(func(t *testing.T, data []byte) {
		Detect(data)
		d, err := Parse(data, lim)
		if err != nil {
			var pe *Error
			if !errors.As(err, &pe) {
				t.Fatalf("error is not *Error: %v", err)
			}
			return
		}
		res, rep := d.ToFHIR("fuzz")
		types := map[string]int{}
		for _, r := range res {
			types[r.Type()]++
			if r.ID() == "" {
				t.Fatalf("resource without id: %s", r.Type())
			}
		}
		if types["Patient"] != 1 || types["DocumentReference"] != 1 {
			t.Fatalf("types = %v", types)
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("marshal: %v", err)
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Fatalf("marshal report: %v", err)
		}
	})
}

package ccda

import (
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/fhir"
)

func loadSections(t *testing.T) (*Document, []fhir.Resource, Report) {
	t.Helper()
	data, err := os.ReadFile("testdata/sections.xml")
	if err != nil {
		t.Fatal(err)
	}
	d, err := Parse(data, DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	res, rep := d.ToFHIR("clinic-a")
	return d, res, rep
}

// get walks a JSON-like value along keys (string) and list indexes (int).
func get(v any, path ...any) any {
	for _, p := range path {
		switch k := p.(type) {
		case string:
			m, ok := v.(map[string]any)
			if !ok {
				if r, ok2 := v.(fhir.Resource); ok2 {
					m = r
				} else {
					return nil
				}
			}
			v = m[k]
		case int:
			l, ok := v.([]any)
			if !ok || k >= len(l) {
				return nil
			}
			v = l[k]
		}
	}
	return v
}

func byType(res []fhir.Resource, typ string) []fhir.Resource {
	var out []fhir.Resource
	for _, r := range res {
		if r.Type() == typ {
			out = append(out, r)
		}
	}
	return out
}

func expect(t *testing.T, what string, got, want any) {
	t.Helper()
	if g, ok := got.(json.Number); ok {
		got = string(g)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestHeader(t *testing.T) {
	d, _, _ := loadSections(t)
	expect(t, "profile", d.Profile, ProfileCCDA21)
	expect(t, "id", d.ID, II{Root: "2.16.840.1.113883.19.5.99999.1", Extension: "DOC-42"})
	expect(t, "version", d.Version, 2)
	expect(t, "title", d.Title, "Test Summary")
	expect(t, "patient ids", len(d.Patient.IDs), 3)
	// Race: the v3 raceCode, then the sdtc one; the element whose prefix is
	// "sdtc" but bound to another namespace is not sdtc.
	var race []string
	for _, r := range d.Patient.Race {
		race = append(race, r.Code)
	}
	expect(t, "race", race, []string{"2106-3", "2108-9"})
	if d.Patient.Deceased == nil || *d.Patient.Deceased {
		t.Errorf("deceased = %v, want false", d.Patient.Deceased)
	}
	expect(t, "names", len(d.Patient.Names), 2)
	expect(t, "authors", len(d.Authors), 1)
	expect(t, "custodian", d.Custodian.Name, "Good Health Clinic")
	expect(t, "encounter", d.Encounter.IDs[0].Extension, "ENC-1")
	expect(t, "sections", len(d.Sections), 10)
	expect(t, "last kind", d.Sections[9].Kind, KindNone)
	expect(t, "warnings", len(d.Warnings), 0)
}

func TestMapping(t *testing.T) {
	_, res, rep := loadSections(t)
	pat := byType(res, "Patient")[0]
	patRef := pat.Ref()
	expect(t, "patient id", pat.ID(), fhir.StableID("clinic-a", "Patient", "2.16.840.1.113883.19.5.99999.2", "MRN-7"))
	expect(t, "gender", pat["gender"], "female")
	expect(t, "birthDate", pat["birthDate"], "1975-05-01")
	expect(t, "deceased", pat["deceasedBoolean"], false)
	expect(t, "name family", get(pat, "name", 0, "family"), "Everywoman")
	expect(t, "name given", get(pat, "name", 0, "given"), []any{"Eve", "Marie"})
	expect(t, "name use", get(pat, "name", 1, "use"), "nickname")
	expect(t, "ssn system", get(pat, "identifier", 1, "system"), "http://hl7.org/fhir/sid/us-ssn")
	expect(t, "mobile", get(pat, "telecom", 0), map[string]any{"system": "phone", "value": "+1(555)555-2003", "use": "mobile"})
	expect(t, "email", get(pat, "telecom", 1, "system"), "email")
	expect(t, "address period", get(pat, "address", 0, "period", "start"), "2010")
	expect(t, "race omb", get(pat, "extension", 0, "extension", 0, "valueCoding", "code"), "2106-3")
	expect(t, "race detailed", get(pat, "extension", 0, "extension", 1, "url"), "detailed")
	expect(t, "race text", get(pat, "extension", 0, "extension", 2, "valueString"), "White, European")
	expect(t, "ethnicity", get(pat, "extension", 1, "extension", 0, "valueCoding", "code"), "2186-5")
	expect(t, "birth sex", get(pat, "extension", 2), map[string]any{
		"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": "F"})
	expect(t, "language", get(pat, "communication", 0, "language", "coding", 0, "code"), "en")

	doc := byType(res, "DocumentReference")[0]
	expect(t, "doc id", doc.ID(), fhir.StableID("clinic-a", "DocumentReference", "2.16.840.1.113883.19.5.99999.1", "DOC-42"))
	expect(t, "doc date", doc["date"], "2024-03-15T14:30:00-05:00")
	expect(t, "doc type", get(doc, "type", "coding", 0, "code"), "34133-9")
	expect(t, "doc subject", get(doc, "subject", "reference"), patRef)
	expect(t, "doc author", get(doc, "author", 0, "display"), "Dr Henry Seven")
	expect(t, "doc custodian", get(doc, "custodian", "display"), "Good Health Clinic")
	expect(t, "doc replaces", get(doc, "relatesTo", 0, "code"), "replaces")
	expect(t, "doc set id", get(doc, "identifier", 0, "value"), "SET-1")
	expect(t, "doc format", get(doc, "content", 0, "format", "code"), "urn:hl7-org:sdwg:ccda-structuredBody:2.1")

	// The header encounter and the Encounters entry carry the same id: one
	// Encounter, with the entry's details merged in and the diagnosis linked.
	encs := byType(res, "Encounter")
	if len(encs) != 1 {
		t.Fatalf("%d encounters, want 1", len(encs))
	}
	enc := encs[0]
	expect(t, "doc context encounter", get(doc, "context", "encounter", 0, "reference"), enc.Ref())
	expect(t, "enc class", get(enc, "class", "code"), "AMB")
	expect(t, "enc period", get(enc, "period"), map[string]any{"start": "2024-03-15T14:00:00-05:00", "end": "2024-03-15T14:30:00-05:00"})
	expect(t, "enc type", get(enc, "type", 0, "coding", 0, "code"), "99213")

	conds := byType(res, "Condition")
	if len(conds) != 1 {
		t.Fatalf("%d conditions, want 1 (the nullFlavor problem is skipped, the encounter diagnosis merged)", len(conds))
	}
	c := conds[0]
	expect(t, "cond code", get(c, "code", "coding", 0, "code"), "44054006")
	expect(t, "cond translation", get(c, "code", "coding", 1, "system"), "http://hl7.org/fhir/sid/icd-10-cm")
	expect(t, "cond text from narrative", get(c, "code", "text"), "Type 2 diabetes, well controlled")
	expect(t, "cond onset", c["onsetDateTime"], "2020-01-10")
	expect(t, "cond status", get(c, "clinicalStatus", "coding", 0, "code"), "active")
	expect(t, "cond categories", len(c["category"].([]any)), 2)
	expect(t, "enc diagnosis", get(enc, "diagnosis", 0, "condition", "reference"), c.Ref())

	algs := byType(res, "AllergyIntolerance")
	if len(algs) != 2 {
		t.Fatalf("%d allergies, want 2", len(algs))
	}
	expect(t, "allergy substance", get(algs[0], "code", "coding", 0, "system"), "http://www.nlm.nih.gov/research/umls/rxnorm")
	expect(t, "allergy category", algs[0]["category"], []any{"medication"})
	expect(t, "allergy type", algs[0]["type"], "allergy")
	expect(t, "allergy reaction", get(algs[0], "reaction", 0, "manifestation", 0, "coding", 0, "display"), "Hives")
	expect(t, "allergy severity", get(algs[0], "reaction", 0, "severity"), "moderate")
	expect(t, "allergy onset", algs[0]["onsetDateTime"], "2015")
	expect(t, "no known food allergy", get(algs[1], "code", "coding", 0, "code"), "429625007")

	ms := byType(res, "MedicationStatement")
	mr := byType(res, "MedicationRequest")
	if len(ms) != 1 || len(mr) != 1 {
		t.Fatalf("%d statements and %d requests, want 1 and 1", len(ms), len(mr))
	}
	expect(t, "med status", ms[0]["status"], "active")
	expect(t, "med period", ms[0]["effectivePeriod"], map[string]any{"start": "2023-01-01"})
	expect(t, "med sig", get(ms[0], "dosage", 0, "text"), "Take one tablet twice daily")
	expect(t, "med timing", get(ms[0], "dosage", 0, "timing", "repeat"), map[string]any{"frequency": 2, "period": 1, "periodUnit": "d"})
	expect(t, "med dose", get(ms[0], "dosage", 0, "doseAndRate", 0, "doseQuantity", "code"), "1")
	expect(t, "med route", get(ms[0], "dosage", 0, "route", "coding", 0, "system"), "http://ncimeta.nci.nih.gov")
	expect(t, "request intent", mr[0]["intent"], "order")
	expect(t, "request bounds", get(mr[0], "dosageInstruction", 0, "timing", "repeat", "boundsPeriod", "start"), "2024-03-15")

	obs := byType(res, "Observation")
	if len(obs) != 4 {
		t.Fatalf("%d observations, want 4", len(obs))
	}
	glu := obs[0]
	expect(t, "glucose value", get(glu, "valueQuantity", "value"), "105.50")
	expect(t, "glucose unit", get(glu, "valueQuantity", "code"), "mg/dL")
	expect(t, "glucose time from organizer", glu["effectiveDateTime"], "2024-03-10T08:30:00+01:00")
	expect(t, "glucose interpretation", get(glu, "interpretation", 0, "coding", 0, "system"), "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation")
	expect(t, "glucose range", get(glu, "referenceRange", 0, "high", "value"), "99")
	expect(t, "urine color", obs[1]["valueString"], "Yellow")
	expect(t, "bp unit", get(obs[2], "valueQuantity", "code"), "mm[Hg]")
	expect(t, "bp category", get(obs[2], "category", 0, "coding", 0, "code"), "vital-signs")
	expect(t, "smoking code", get(obs[3], "code", "coding", 0, "code"), "72166-2")
	expect(t, "smoking value", get(obs[3], "valueCodeableConcept", "coding", 0, "code"), "8517006")

	drs := byType(res, "DiagnosticReport")
	if len(drs) != 1 {
		t.Fatalf("%d reports, want 1", len(drs))
	}
	expect(t, "report results", drs[0]["result"], []any{map[string]any{"reference": obs[0].Ref()}, map[string]any{"reference": obs[1].Ref()}})
	expect(t, "report status", drs[0]["status"], "final")

	imms := byType(res, "Immunization")
	if len(imms) != 1 {
		t.Fatalf("%d immunizations, want 1 (the planned one is skipped)", len(imms))
	}
	expect(t, "imm code", get(imms[0], "vaccineCode", "coding", 0, "system"), "http://hl7.org/fhir/sid/cvx")
	expect(t, "imm lot", imms[0]["lotNumber"], "LOT-9")
	expect(t, "imm date", imms[0]["occurrenceDateTime"], "2023-10-01")

	procs := byType(res, "Procedure")
	if len(procs) != 1 {
		t.Fatalf("%d procedures, want 1", len(procs))
	}
	expect(t, "proc performed", procs[0]["performedDateTime"], "2022-06-01")
	expect(t, "proc status", procs[0]["status"], "completed")

	// Report: the narrative-only section is unmapped; the skipped entries name
	// their reasons.
	un := rep.Unmapped()
	if len(un) != 1 || un[0].Title != "History of Present Illness" {
		t.Errorf("unmapped = %+v", un)
	}
	reasons := map[string]bool{}
	for _, s := range rep.Skipped {
		reasons[s.Reason[:strings.IndexAny(s.Reason+" (", " (:")]] = true
		if !strings.HasPrefix(s.Path, "/ClinicalDocument/component[1]/structuredBody[1]/component[") {
			t.Errorf("skip path %q", s.Path)
		}
	}
	for _, want := range []string{"problem observation names no problem", "immunization in mood INT", "same id as an earlier entry"} {
		found := false
		for _, s := range rep.Skipped {
			if strings.HasPrefix(s.Reason, want) {
				found = true
			}
		}
		if !found {
			t.Errorf("no skip with reason %q in %+v", want, rep.Skipped)
		}
	}
	if rep.Resources["Observation"] != 4 || rep.Resources["Patient"] != 1 {
		t.Errorf("report resources = %v", rep.Resources)
	}
}

// TestStableIDs: the same document from the same sender maps to the same
// ids; another sender gets other ids.
func TestStableIDs(t *testing.T) {
	data, err := os.ReadFile("testdata/sections.xml")
	if err != nil {
		t.Fatal(err)
	}
	ids := func(sender string) []string {
		d, err := Parse(data, DefaultLimits)
		if err != nil {
			t.Fatal(err)
		}
		res, _ := d.ToFHIR(sender)
		var out []string
		for _, r := range res {
			out = append(out, r.Ref())
		}
		return out
	}
	a, b, c := ids("clinic-a"), ids("clinic-a"), ids("clinic-b")
	if !reflect.DeepEqual(a, b) {
		t.Error("ids differ between two runs of the same document")
	}
	if a[0] == c[0] {
		t.Error("two senders share a Patient id")
	}
}

func TestNamespacePrefixesAndSDTC(t *testing.T) {
	// Elements matched by namespace, not by prefix: a default-namespace
	// document and a prefixed one read the same, and an sdtc element never
	// passes for a v3 one.
	plain := strings.NewReplacer("cda:", "", "xmlns:cda=", "xmlns=").Replace(mustRead(t, "testdata/sections.xml"))
	d1, err := Parse([]byte(plain), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	d2, _, _ := loadSections(t)
	r1, _ := d1.ToFHIR("x")
	r2, _ := d2.ToFHIR("x")
	for _, rs := range [][]fhir.Resource{r1, r2} {
		delete(byType(rs, "DocumentReference")[0], "content") // size and hash of the bytes differ
	}
	j1, _ := json.Marshal(r1)
	j2, _ := json.Marshal(r2)
	if string(j1) != string(j2) {
		t.Error("prefixed and unprefixed documents map differently")
	}
	doc := strings.Replace(minimalDoc, `<patient>`, `<patient xmlns:s="urn:hl7-org:sdtc"><s:id root="1.2.3" extension="SDTC"/>`, 1)
	doc = strings.Replace(doc, `<id root="2.16.840.1.113883.19.5" extension="mrn-1"/>`, ``, 1)
	d, err := Parse([]byte(doc), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Patient.IDs) != 0 {
		t.Errorf("sdtc:id read as a patient id: %+v", d.Patient.IDs)
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestNonXMLBody(t *testing.T) {
	doc := strings.Replace(minimalDoc, "</ClinicalDocument>",
		`<component><nonXMLBody><text mediaType="text/plain" representation="TXT">Note text.</text></nonXMLBody></component></ClinicalDocument>`, 1)
	d, err := Parse([]byte(doc), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	res, _ := d.ToFHIR("x")
	dr := byType(res, "DocumentReference")[0]
	expect(t, "second content type", get(dr, "content", 1, "attachment", "contentType"), "text/plain")
	expect(t, "second content data", get(dr, "content", 1, "attachment", "data"), "Tm90ZSB0ZXh0Lg==")
}

func TestLatin1(t *testing.T) {
	doc := `<?xml version="1.0" encoding="ISO-8859-1"?>` + strings.Replace(minimalDoc, "<given>Test</given>", "<given>Jos\xe9</given>", 1)
	d, err := Parse([]byte(doc), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	expect(t, "given", d.Patient.Names[0].Given[0], "José")
}

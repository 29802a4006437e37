package mapping

import (
	"crypto/sha1"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/fhir"
)

const xpathDoc = `<?xml version="1.0"?>
<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:x="http://www.w3.org/2001/XMLSchema-instance" xmlns:ext="urn:hl7-org:sdtc">
  <id root="1.2.3" extension="D1"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/>
  <recordTarget><patientRole><id root="1.2.3.4" extension="P1"/>
    <patient><raceCode code="2106-3"/><ext:raceCode code="2108-9"/><ext:raceCode nullFlavor="UNK"/></patient>
  </patientRole></recordTarget>
  <component><structuredBody>
    <component><section>
      <templateId root="A"/><code code="11450-4"/>
      <entry><act><templateId root="C"/><text>comment</text></act></entry>
      <entry><act><templateId root="P"/><entryRelationship><observation><value x:type="v3:PQ" value="1"/></observation></entryRelationship></act></entry>
      <component><section><templateId root="B"/><entry><observation><value x:type="CD" code="x"/></observation></entry></section></component>
    </section></component>
    <component><section><code code="8716-3"/><title>  Vital   signs </title></section></component>
  </structuredBody></component>
</ClinicalDocument>`

func mustDoc(t testing.TB, src string) *ccda.Document {
	t.Helper()
	d, err := ccda.Parse([]byte(src), ccda.DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestXPathSelects(t *testing.T) {
	d := mustDoc(t, xpathDoc)
	root := d.Root()
	cases := []struct {
		path string
		want []string // values (attribute or text) of the selected nodes
	}{
		{"/ClinicalDocument/id/@extension", []string{"D1"}},
		{"/ClinicalDocument/recordTarget/patientRole/patient/sdtc:raceCode/@code", []string{"2108-9"}},
		{"/ClinicalDocument/recordTarget/patientRole/patient/raceCode/@code | //sdtc:raceCode/@nullFlavor", []string{"2106-3", "UNK"}},
		{"//section/templateId/@root", []string{"A", "B"}},
		{"//section[templateId/@root='B']/entry/observation/value/@code", []string{"x"}},
		{"//section[not(templateId) and code/@code='8716-3']/title", []string{"Vital signs"}},
		{"//section[templateId/@root='A']/entry/act[not(templateId/@root='C')]/entryRelationship/observation/value/@x:type", nil}, // only xsi:
		{"//section[templateId/@root='A']/entry/act[not(templateId/@root='C')]/entryRelationship/observation/value/@xsi:type", []string{"PQ"}},
		{"//value[@xsi:type='PQ']/@value", []string{"1"}},
		{"//value[@xsi:type!='PQ']/@code", []string{"x"}},
		{"//section[1]/templateId/@root", []string{"A"}},
		{"//entry[2]/act/templateId/@root", []string{"P"}},
		{"//observation/../../templateId/@root", []string{"P", "B"}},
		{"//observation[value/@code='x' or value/@value='1']/value/@xsi:type", []string{"PQ", "CD"}},
		{"/ClinicalDocument/nothing/@x", nil},
	}
	for _, c := range cases {
		xp, off, err := parseXPath(c.path)
		if strings.Contains(c.path, "@x:") {
			if err == nil {
				t.Errorf("%s: a prefix other than xsi: on an attribute was accepted", c.path)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v at %d", c.path, err, off)
			continue
		}
		var got []string
		for _, n := range xp.nodes(root, nil) {
			got = append(got, n.value())
		}
		if strings.Join(got, ",") != strings.Join(c.want, ",") {
			t.Errorf("%s: got %q, want %q", c.path, got, c.want)
		}
	}
}

func TestXPathErrors(t *testing.T) {
	cases := []struct {
		path string
		off  int
		msg  string
	}{
		{"", 0, "expected an element name"},
		{"code/@", 6, "attribute name"},
		{"code/@code/x", 10, "attribute ends the path"},
		{"foo:bar", 0, "unknown prefix"},
		{"section[templateId/@root=A]", 25, "single quotes"},
		{"section[templateId/@root='A'", 28, "expected ']'"},
		{"section[0]", 8, "position of 1 or more"},
		{"section[not(a]", 13, "expected ')'"},
		{"a b", 2, "unexpected"},
	}
	for _, c := range cases {
		_, off, err := parseXPath(c.path)
		if err == nil || off != c.off || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%q: got %v at %d, want %q at %d", c.path, err, off, c.msg, c.off)
		}
	}
}

func FuzzParseXPath(f *testing.F) {
	for _, s := range []string{"//section[templateId/@root='A' or not(code)]/entry[1]/act", "a | /b/..", "@xsi:type", "sdtc:x[.='1']"} {
		f.Add(s)
	}
	d := mustDoc(f, xpathDoc)
	f.Fuzz(func(t *testing.T, s string) {
		xp, off, err := parseXPath(s)
		if err != nil {
			if off < 0 || off > len(s) {
				t.Fatalf("offset %d outside %q", off, s)
			}
			return
		}
		xp.nodes(d.Root(), nil)
		xp.nodes(d.Root(), d.Root())
	})
}

func TestCCDALoadErrorsAreLocated(t *testing.T) {
	t.Run("bad C-CDA path inside a string argument", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  ccda-patient:
    elements:
      birthDate: tsdate("patient/birthTime[@value=1]")
`)
		// tsdate( at column 18, the quote at 25, the value at 25+1+25
		findErr(t, errs, "senders/acme.yaml", 4, 51, "tsdate: expected a value in single quotes")
	})
	t.Run("bad each path of a resource rule", func(t *testing.T) {
		errs := loadErrors(t, "default/extra.yaml", `resources:
  extra:
    type: Observation
    each: /ClinicalDocument//section[
    id: entrykey("id")
`)
		findErr(t, errs, "default/extra.yaml", 4, 38, "expected an element name")
	})
	t.Run("HL7 function in a C-CDA rule", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  ccda-patient:
    elements:
      birthDate: date("PID-7")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 18, "date reads HL7 v2 messages")
	})
	t.Run("C-CDA function in an HL7 rule", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      birthDate: tsdate("patient/birthTime")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 18, "tsdate reads C-CDA documents")
	})
	t.Run("C-CDA entry naming an HL7 rule", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `messages:
  - match: [CCDA^11506-3]
    event: other
    resources: [ccda-patient, patient]
`)
		findErr(t, errs, "senders/acme.yaml", 4, 31, "reads HL7 v2")
	})
	t.Run("HL7 and C-CDA patterns in one entry", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `messages:
  - match: [ADT^A01, CCDA]
    event: other
    resources: [patient]
`)
		findErr(t, errs, "senders/acme.yaml", 2, 22, "not both")
	})
	t.Run("code system argument that is not an OID", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  ccda-patient:
    elements:
      maritalStatus: cd("patient/maritalStatusCode", "v3-MaritalStatus")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 55, "code system OID")
	})
	t.Run("unknown document fact", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  ccda-document:
    elements:
      description: docinfo("title")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 29, "no document fact \"title\"")
	})
	t.Run("document fact in an HL7 rule", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  patient:
    elements:
      gender: docinfo("size")
`)
		findErr(t, errs, "senders/acme.yaml", 4, 15, "docinfo reads C-CDA documents")
	})
	t.Run("element each in a C-CDA rule is a C-CDA path", func(t *testing.T) {
		errs := loadErrors(t, "senders/acme.yaml", `resources:
  ccda-patient:
    elements:
      name:
        each: PID-3.4
        value: pn(".")
`)
		findErr(t, errs, "senders/acme.yaml", 5, 20, "unexpected")
	})
}

// ccdaSet loads the shipped set with extra files.
func ccdaSet(t *testing.T, files map[string]string) *Set {
	t.Helper()
	dir := setDir(t)
	for name, content := range files {
		writeFile(t, dir, name, content)
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func testCCD(t *testing.T) *ccda.Document {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(mappingsDir, "default", "tests", "ccda_ccd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	return mustDoc(t, string(data))
}

func TestMapCCDAMatchAndSenders(t *testing.T) {
	s := ccdaSet(t, map[string]string{
		"senders/acme.yaml": `messages:
  - match: [CCDA^34133-9]
    event: update
    resources: [ccda-patient]
resources:
  ccda-patient:
    id: xv("id[@root='2.16.840.1.113883.4.1']/@extension")
    elements:
      gender: null
`})
	doc := testCCD(t)
	def, err := s.MapCCDA("OTHER", doc)
	if err != nil {
		t.Fatal(err)
	}
	if def.Event != "document" || len(def.Resources) < 10 || def.Resources[0]["gender"] != "female" {
		t.Fatalf("default mapping: event %s, %d resources, gender %v", def.Event, len(def.Resources), def.Resources[0]["gender"])
	}
	acme, err := s.MapCCDA("acme", doc)
	if err != nil {
		t.Fatal(err)
	}
	if acme.Event != "update" || len(acme.Resources) != 1 {
		t.Fatalf("sender entry for the document type not used: event %s, %d resources", acme.Event, len(acme.Resources))
	}
	p := acme.Resources[0]
	if _, has := p["gender"]; has {
		t.Errorf("sender removed gender, still there")
	}
	if want := fhir.StableID("acme", "Patient", "000-00-0000"); p.ID() != want {
		t.Errorf("sender id keys not used: %s, want %s", p.ID(), want)
	}
	if def.Resources[0].ID() != fhir.StableID("OTHER", "Patient", "2.16.840.1.113883.19.5.99999.2", "MRN-0001") {
		t.Errorf("default Patient id not keyed on the first patientRole id")
	}

	// a document type no entry matches (the HL7 "*" entry never takes a document)
	s2 := ccdaSet(t, map[string]string{"default/ccda.yaml": `messages:
  - match: [CCDA^11506-3]
    event: other
    resources: [ccda-patient]
resources:
  ccda-patient:
    type: Patient
    each: /ClinicalDocument/recordTarget/patientRole
    id: entrykey("id")
`})
	_, err = s2.MapCCDA("x", doc)
	var me *MapError
	if !errors.As(err, &me) || me.Code != CodeUnsupportedType || me.Location != "/ClinicalDocument/code" {
		t.Fatalf("unmatched document type: %v", err)
	}
}

func TestMapCCDARefsAndErrors(t *testing.T) {
	s := loadDefault(t)
	doc := testCCD(t)
	r, err := s.MapCCDA("T", doc)
	if err != nil {
		t.Fatal(err)
	}
	var report fhir.Resource
	obs := map[string]bool{}
	for _, res := range r.Resources {
		switch {
		case res.Type() == "DiagnosticReport":
			report = res
		case res.Type() == "Observation" && strings.Contains(jsonString(res["category"]), "laboratory"):
			obs[res.Ref()] = true
		}
	}
	results, _ := report["result"].([]any)
	if len(results) != 2 || len(obs) != 2 {
		t.Fatalf("report results %v, lab observations %v", results, obs)
	}
	for _, x := range results {
		if !obs[x.(map[string]any)["reference"].(string)] {
			t.Errorf("report result %v is not one of the lab observations", x)
		}
	}

	// a required element with no value refuses the document, located by XML path
	s2 := ccdaSet(t, map[string]string{"senders/strict.yaml": `resources:
  ccda-immunization:
    elements:
      expirationDate:
        value: tsdate("consumable/manufacturedProduct/manufacturedMaterial/expirationTime")
        required: true
`})
	_, err = s2.MapCCDA("strict", doc)
	var me *MapError
	if !errors.As(err, &me) || me.Code != CodeRequiredMissing ||
		!strings.HasPrefix(me.Location, "/ClinicalDocument/component[1]/structuredBody[1]/component[5]/section[1]/entry[1]/substanceAdministration[1]") ||
		me.Rule != "senders/strict.yaml:4" {
		t.Fatalf("required value missing: %#v", me)
	}
	if strings.Contains(err.Error(), "LOT-TEST") || strings.Contains(err.Error(), "Example") {
		t.Errorf("error text carries document content: %v", err)
	}

	// the patient rule is required: a sender's rule that finds no patient
	// refuses the document (error 100) rather than mapping it about nobody
	s3 := ccdaSet(t, map[string]string{"senders/second.yaml": `resources:
  ccda-patient:
    each: /ClinicalDocument/recordTarget[2]/patientRole
`})
	_, err = s3.MapCCDA("second", doc)
	if !errors.As(err, &me) || me.Code != CodeSegmentSequence || me.Field != "Patient" || !strings.Contains(me.Msg, "required Patient") {
		t.Fatalf("no patient: %v", err)
	}
}

// TestCDACodeSystemTables keeps the shipped OID tables in step with the
// systems internal/ccda knows, so both C-CDA paths name systems alike.
func TestCDACodeSystemTables(t *testing.T) {
	s := loadDefault(t)
	for table, want := range map[string]map[string]string{
		tableCDACodeSystem: ccda.CodeSystemOIDs(),
		tableCDAIDSystem:   ccda.IdentifierSystemOIDs(),
	} {
		tb := s.tables[table]
		if tb == nil {
			t.Fatalf("no code table %s", table)
		}
		for oid, uri := range want {
			if e, ok := tb.rows[[2]string{"", oid}]; !ok || e.Code != uri {
				t.Errorf("%s: %s maps to %q, internal/ccda to %q", table, oid, e.Code, uri)
			}
		}
		if len(tb.rows) < len(want) {
			t.Errorf("%s: %d rows, internal/ccda knows %d systems", table, len(tb.rows), len(want))
		}
	}
}

// TestCCDAMergeOrder: two entries with the same id are one resource (or two,
// when they disagree) the same way whichever rule runs first: the entry the
// document lists first keeps the id and its values, as internal/ccda does.
// A second rule over the same node adds to the first rule's resource, and
// references to a merged node lead to the resource it was merged into.
func TestCCDAMergeOrder(t *testing.T) {
	doc := mustDoc(t, `<ClinicalDocument xmlns="urn:hl7-org:v3" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
  <id root="1.2.3" extension="doc"/><code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/>
  <recordTarget><patientRole><id root="1.2.3.4" extension="p"/></patientRole></recordTarget>
  <component><structuredBody>
    <component><section><code code="A"/>
      <entry><observation><id root="1.2.3.5" extension="same"/><code code="x"/><value xsi:type="CD" code="1"/><effectiveTime value="20200101"/></observation></entry>
      <entry><observation><id root="1.2.3.5" extension="clash"/><code code="x"/><value xsi:type="CD" code="2"/></observation></entry>
    </section></component>
    <component><section><code code="B"/>
      <entry><observation><id root="1.2.3.5" extension="same"/><code code="x"/><value xsi:type="CD" code="1"/><effectiveTime value="20200101"/><statusCode code="held"/></observation></entry>
      <entry><observation><id root="1.2.3.5" extension="clash"/><code code="x"/><value xsi:type="CD" code="3"/></observation></entry>
    </section></component>
  </structuredBody></component>
</ClinicalDocument>`)
	rule := func(name, section, cat string) string {
		return `  ` + name + `:
    type: Condition
    each: //section[code/@code='` + section + `']/entry/observation
    id: entrykey("id")
    elements:
      category:
        value: concept("http://example.org/cat", "` + cat + `")
      code: cd("value")
      subject: ref("p")
      onset[x]:
        type: dateTime
        value: ts("effectiveTime")
      note:
        when: xv("statusCode/@code") != ""
        elements:
          text: xv("statusCode/@code")
`
	}
	set := func(order string) *Set {
		return ccdaSet(t, map[string]string{"default/ccda.yaml": `messages:
  - match: [CCDA]
    event: other
    resources: [p, ` + order + `, link]
resources:
  p:
    type: Patient
    each: /ClinicalDocument/recordTarget/patientRole
    id: entrykey("id")
` + rule("a", "A", "first") + rule("b", "B", "second") + `
  # a second rule over section B's nodes: adds a note to what b made, or to
  # what b's node was merged into
  link:
    type: Condition
    each: //section[code/@code='B']/entry/observation
    id: entrykey("id")
    elements:
      recordedDate:
        const: "2021-02-03"
`})
	}
	var outs []string
	for _, order := range []string{"a, b", "b, a"} {
		r, err := set(order).MapCCDA("T", doc)
		if err != nil {
			t.Fatal(err)
		}
		byID := map[string]fhir.Resource{}
		var conds []string
		for _, res := range r.Resources {
			if res.Type() == "Condition" {
				byID[res.ID()] = res
				conds = append(conds, jsonString(res))
			}
		}
		sort.Strings(conds)
		outs = append(outs, strings.Join(conds, "\n"))
		same := byID[fhir.StableID("T", "Condition", "1.2.3.5", "same")]
		if same == nil {
			t.Fatalf("order %s: no Condition keyed on the shared id", order)
		}
		// section A's entry is first: its category first, B's joined, B's note filled in
		if got := jsonString(same["category"]); !strings.Contains(got, `"first"`) || strings.Index(got, `"first"`) > strings.Index(got, `"second"`) {
			t.Errorf("order %s: categories %s, want first then second", order, got)
		}
		if same["note"] == nil || same["recordedDate"] != "2021-02-03" {
			t.Errorf("order %s: merged Condition lacks the later entry's note or the link rule's date: %v", order, same)
		}
		clash := byID[fhir.StableID("T", "Condition", "1.2.3.5", "clash")]
		if clash == nil || !strings.Contains(jsonString(clash["code"]), `"2"`) {
			t.Errorf("order %s: the shared id does not stay with the entry listed first: %v", order, clash)
		}
		if len(byID) != 3 {
			t.Errorf("order %s: %d Conditions, want 3 (one merged, two that disagree)", order, len(byID))
		}
		for _, res := range byID {
			if strings.Contains(jsonString(res["code"]), `"3"`) && res["recordedDate"] != "2021-02-03" {
				t.Errorf("order %s: the link rule did not reach the re-keyed Condition", order)
			}
		}
	}
	if outs[0] != outs[1] {
		t.Errorf("the rule order changes the output:\n%s\n----\n%s", outs[0], outs[1])
	}
}

func TestDocInfo(t *testing.T) {
	s := loadDefault(t)
	data, err := os.ReadFile(filepath.Join(mappingsDir, "default", "tests", "ccda_ccd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	doc := mustDoc(t, string(data))
	r, err := s.MapCCDA("T", doc)
	if err != nil {
		t.Fatal(err)
	}
	var ref fhir.Resource
	for _, res := range r.Resources {
		if res.Type() == "DocumentReference" {
			ref = res
		}
	}
	if ref == nil || ref.ID() != fhir.StableID("T", "DocumentReference", "2.16.840.1.113883.19.5.99999.1", "TEST-CCD-1") {
		t.Fatalf("DocumentReference missing or not keyed on the document id: %v", ref)
	}
	att := ref["content"].([]any)[0].(map[string]any)["attachment"].(map[string]any)
	sum := sha1.Sum(data)
	if att["size"] != len(data) || att["hash"] != base64.StdEncoding.EncodeToString(sum[:]) {
		t.Errorf("attachment size %v hash %v, want %d and the SHA-1 of the input", att["size"], att["hash"], len(data))
	}

	// an unstructured document: its inline body as base64, R1.1 format code, no id: keyed on its digest
	text := `<ClinicalDocument xmlns="urn:hl7-org:v3">
  <templateId root="2.16.840.1.113883.10.20.22.1.10"/>
  <code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/>
  <recordTarget><patientRole><id root="1.2.3.4" extension="p"/></patientRole></recordTarget>
  <component><nonXMLBody><text mediaType="text/plain">plain words</text></nonXMLBody></component>
</ClinicalDocument>`
	nx := mustDoc(t, text)
	r, err = s.MapCCDA("T", nx)
	if err != nil {
		t.Fatal(err)
	}
	for _, res := range r.Resources {
		if res.Type() != "DocumentReference" {
			continue
		}
		digest := sha1.Sum([]byte(text))
		if res.ID() != fhir.StableID("T", "DocumentReference", "sha1", hex.EncodeToString(digest[:])) {
			t.Errorf("DocumentReference of a document without id not keyed on its digest")
		}
		content := res["content"].([]any)
		if len(content) != 2 {
			t.Fatalf("content %v, want the document and its body", content)
		}
		if f := content[0].(map[string]any)["format"].(map[string]any)["code"]; f != "urn:hl7-org:sdwg:ccda-nonXMLBody:1.1" {
			t.Errorf("format %v", f)
		}
		body := content[1].(map[string]any)["attachment"].(map[string]any)
		if body["contentType"] != "text/plain" || body["data"] != base64.StdEncoding.EncodeToString([]byte("plain words")) {
			t.Errorf("body attachment %v", body)
		}
		return
	}
	t.Fatal("no DocumentReference for the unstructured document")
}

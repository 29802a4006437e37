package ccda

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

// A valid minimal document body, used to wrap hostile prologs.
const minimalDoc = `<ClinicalDocument xmlns="urn:hl7-org:v3">
 <id root="2.16.840.1.113883.19.5" extension="doc-1"/>
 <code code="34133-9" codeSystem="2.16.840.1.113883.6.1"/>
 <effectiveTime value="20240102"/>
 <recordTarget><patientRole><id root="2.16.840.1.113883.19.5" extension="mrn-1"/>
  <patient><name><given>Test</given><family>Patient</family></name></patient></patientRole></recordTarget>
 <author><time value="20240102"/><assignedAuthor><id root="2.16.840.1.113883.4.6" extension="1"/></assignedAuthor></author>
 <custodian><assignedCustodian><representedCustodianOrganization><name>Org</name></representedCustodianOrganization></assignedCustodian></custodian>
</ClinicalDocument>`

// allocated runs f and returns the bytes it allocated on the heap.
func allocated(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

func TestMinimalParses(t *testing.T) {
	d, err := Parse([]byte(minimalDoc), DefaultLimits)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Patient.IDs) != 1 || d.Patient.IDs[0].Extension != "mrn-1" {
		t.Fatalf("patient ids = %+v", d.Patient.IDs)
	}
}

func TestHostileInput(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret.txt")
	if err := os.WriteFile(secret, []byte("TOPSECRET-PHI"), 0o600); err != nil {
		t.Fatal(err)
	}
	laughs := `<?xml version="1.0"?>
<!DOCTYPE lolz [
 <!ENTITY lol "lol">
 <!ENTITY lol1 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;">
 <!ENTITY lol2 "&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;&lol1;">
 <!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">
 <!ENTITY lol4 "&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;&lol3;">
 <!ENTITY lol5 "&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;&lol4;">
 <!ENTITY lol6 "&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;&lol5;">
 <!ENTITY lol7 "&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;&lol6;">
 <!ENTITY lol8 "&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;&lol7;">
 <!ENTITY lol9 "&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;&lol8;">
]>
` + strings.Replace(minimalDoc, "<given>Test</given>", "<given>&lol9;</given>", 1)

	deep := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString(`<ClinicalDocument xmlns="urn:hl7-org:v3">`)
		b.WriteString(strings.Repeat("<a>", n))
		b.WriteString(strings.Repeat("</a>", n))
		b.WriteString(`</ClinicalDocument>`)
		return b.Bytes()
	}
	wide := func(n int) []byte {
		var b bytes.Buffer
		b.WriteString(`<ClinicalDocument xmlns="urn:hl7-org:v3">`)
		b.WriteString(strings.Repeat("<a/>", n))
		b.WriteString(`</ClinicalDocument>`)
		return b.Bytes()
	}
	oversize := append([]byte(minimalDoc[:len(minimalDoc)-len("</ClinicalDocument>")]),
		bytes.Repeat([]byte("<!-- padding padding padding padding -->"), (21<<20)/40)...)
	oversize = append(oversize, "</ClinicalDocument>"...)

	cases := []struct {
		name  string
		input []byte
		want  error
		// most bytes Parse may allocate: hostile input must be refused
		// before a tree is built.
		maxAlloc uint64
	}{
		{"xxe local file", []byte(`<?xml version="1.0"?>
<!DOCTYPE ClinicalDocument [<!ENTITY xxe SYSTEM "file://` + secret + `">]>
` + strings.Replace(minimalDoc, "<given>Test</given>", "<given>&xxe;</given>", 1)), ErrDTD, 1 << 20},
		{"xxe parameter entity", []byte(`<!DOCTYPE d [<!ENTITY % p SYSTEM "file://` + secret + `"> %p;]>` + minimalDoc), ErrDTD, 1 << 20},
		{"billion laughs", []byte(laughs), ErrDTD, 1 << 20},
		{"doctype only", []byte(`<!DOCTYPE ClinicalDocument>` + minimalDoc), ErrDTD, 1 << 20},
		{"doctype after BOM and comment", append([]byte("\xEF\xBB\xBF<!-- x -->"), []byte(`<!DOCTYPE x SYSTEM "http://127.0.0.1:1/x.dtd">`+minimalDoc)...), ErrDTD, 1 << 20},
		{"entity declared inside an element", []byte(strings.Replace(minimalDoc, "<effectiveTime", `<!ENTITY e "x"><effectiveTime`, 1)), ErrDTD, 1 << 20},
		{"undeclared entity", []byte(strings.Replace(minimalDoc, "<given>Test</given>", "<given>&xxe;</given>", 1)), ErrMalformed, 4 << 20},
		{"deep nesting 100k", deep(100_000), ErrTooDeep, 4 << 20},
		{"deep nesting 2M", deep(2_000_000), ErrTooDeep, 4 << 20},
		{"too many elements", wide(1_200_000), ErrTooMany, 4 << 20},
		{"oversize", oversize, ErrTooLarge, 1 << 20},
		{"empty", nil, ErrEmpty, 1 << 10},
		{"white space", []byte("  \n\t "), ErrEmpty, 1 << 10},
		{"not xml", []byte("MSH|^~\\&|LAB|HOSP|||20240101||ORU^R01|1|P|2.5.1\r"), ErrMalformed, 1 << 20},
		{"wrong root", []byte(`<html><body/></html>`), ErrNotCDA, 1 << 20},
		{"wrong namespace", []byte(`<ClinicalDocument xmlns="urn:example"><recordTarget/></ClinicalDocument>`), ErrNotCDA, 1 << 20},
		{"no namespace", []byte(`<ClinicalDocument><recordTarget/></ClinicalDocument>`), ErrNotCDA, 1 << 20},
		{"truncated", []byte(minimalDoc[:len(minimalDoc)/2]), ErrMalformed, 1 << 20},
		{"unsupported encoding", []byte(`<?xml version="1.0" encoding="EBCDIC-XYZ"?>` + minimalDoc), ErrEncoding, 1 << 20},
		{"missing recordTarget", []byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><id root="1.2"/></ClinicalDocument>`), ErrMissing, 1 << 20},
		{"missing patientRole", []byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget/></ClinicalDocument>`), ErrMissing, 1 << 20},
		{"undeclared prefix", []byte(strings.Replace(minimalDoc, "<effectiveTime", "<foo:bar/><effectiveTime", 1)), ErrUnboundName, 1 << 20},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var err error
			n := allocated(func() { _, err = Parse(c.input, DefaultLimits) })
			var pe *Error
			if !errors.As(err, &pe) || !errors.Is(err, c.want) {
				t.Fatalf("got %v, want *Error wrapping %q", err, c.want)
			}
			if msg := err.Error(); strings.Contains(msg, "TOPSECRET") || strings.Contains(msg, "Test") || strings.Contains(msg, "xxe") || strings.Contains(msg, "lol") {
				t.Errorf("error leaks content: %v", err)
			}
			if n > c.maxAlloc {
				t.Errorf("allocated %d bytes refusing a %d-byte input, want at most %d", n, len(c.input), c.maxAlloc)
			}
			t.Logf("%v (allocated %d bytes)", err, n)
		})
	}
}

func TestErrorLocations(t *testing.T) {
	_, err := Parse([]byte("<?xml version=\"1.0\"?>\n<!-- a -->\n<!DOCTYPE x>\n"+minimalDoc), DefaultLimits)
	var pe *Error
	if !errors.As(err, &pe) || pe.Line != 3 {
		t.Errorf("DOCTYPE error %v: want line 3", err)
	}
	_, err = Parse([]byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><recordTarget/><recordTarget/></ClinicalDocument>`), DefaultLimits)
	if !errors.As(err, &pe) || pe.Path != "/ClinicalDocument/recordTarget[1]" {
		t.Errorf("missing patientRole error %v: want path /ClinicalDocument/recordTarget[1]", err)
	}
	// An end tag that does not match, and an element never closed: etree
	// only says the tree is unbalanced; the error names the line and the
	// element.
	_, err = Parse([]byte(strings.Replace(minimalDoc, "<effectiveTime", "<a>\n<b></a>\n<effectiveTime", 1)), DefaultLimits)
	if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) || pe.Line != strings.Count(minimalDoc[:strings.Index(minimalDoc, "<effectiveTime")], "\n")+2 ||
		!strings.Contains(err.Error(), "element <b> closed by </a>") {
		t.Errorf("mismatched end tag: %v", err)
	}
	truncated := minimalDoc[:strings.Index(minimalDoc, "<given>")+len("<given>")]
	_, err = Parse([]byte(truncated), DefaultLimits)
	if !errors.As(err, &pe) || !errors.Is(err, ErrMalformed) || pe.Line != strings.Count(truncated, "\n")+1 ||
		!strings.Contains(err.Error(), "element <given> is never closed") {
		t.Errorf("truncated document: %v", err)
	}
	lim := Limits{MaxDepth: 4}
	_, err = Parse([]byte(`<ClinicalDocument xmlns="urn:hl7-org:v3"><a><b><c><d/><e></e></c></b></a></ClinicalDocument>`), lim)
	if !errors.As(err, &pe) || pe.Path != "/ClinicalDocument/a/b/c/e" {
		t.Errorf("depth error %v: want path /ClinicalDocument/a/b/c/e", err)
	}
	_, err = Parse([]byte(strings.Replace(minimalDoc, "<effectiveTime", "<x:y xmlns:x=\"urn:x\"/><foo:bar/><effectiveTime", 1)), DefaultLimits)
	if !errors.As(err, &pe) || pe.Path != "/ClinicalDocument/bar[1]" {
		t.Errorf("prefix error %v: want path /ClinicalDocument/bar[1]", err)
	}
}

// TestLimitsAreBoundaries: a document exactly at a limit passes, one over
// fails.
func TestLimitsAreBoundaries(t *testing.T) {
	doc := []byte(minimalDoc)
	if _, err := Parse(doc, Limits{MaxBytes: int64(len(doc))}); err != nil {
		t.Errorf("at MaxBytes: %v", err)
	}
	if _, err := Parse(doc, Limits{MaxBytes: int64(len(doc)) - 1}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("over MaxBytes: %v", err)
	}
	// minimalDoc nests 5 deep (ClinicalDocument/recordTarget/patientRole/patient/name/given is 6).
	if _, err := Parse(doc, Limits{MaxDepth: 6}); err != nil {
		t.Errorf("at MaxDepth: %v", err)
	}
	if _, err := Parse(doc, Limits{MaxDepth: 5}); !errors.Is(err, ErrTooDeep) {
		t.Errorf("over MaxDepth: %v", err)
	}
	n := bytes.Count(doc, []byte("<")) - bytes.Count(doc, []byte("</"))
	if _, err := Parse(doc, Limits{MaxElements: n}); err != nil {
		t.Errorf("at MaxElements (%d): %v", n, err)
	}
	if _, err := Parse(doc, Limits{MaxElements: n - 1}); !errors.Is(err, ErrTooMany) {
		t.Errorf("over MaxElements: %v", err)
	}
	if _, err := ParseReader(bytes.NewReader(doc), Limits{MaxBytes: 100}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("ParseReader over MaxBytes: %v", err)
	}
}

package mapping

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/fhir"
)

func TestParsePath(t *testing.T) {
	good := map[string]hpath{
		"PID":          {seg: "PID"},
		"PID-3":        {seg: "PID", field: 3},
		"PID-3.4.1":    {seg: "PID", field: 3, comp: 4, sub: 1},
		"OBX[2]-5":     {seg: "OBX", occ: 2, field: 5},
		"PID-3[2].1":   {seg: "PID", field: 3, rep: 2, comp: 1},
		"PID-3[*]":     {seg: "PID", field: 3, repAll: true},
		"PID-3[5=MR]":  {seg: "PID", field: 3, selC: 5, selV: "MR"},
		"ZPI-12.3":     {seg: "ZPI", field: 12, comp: 3},
		"MSH-9.2":      {seg: "MSH", field: 9, comp: 2},
		"PV1-19[1].4":  {seg: "PV1", field: 19, rep: 1, comp: 4},
		"OBX[10]-5[3]": {seg: "OBX", occ: 10, field: 5, rep: 3},
	}
	for s, want := range good {
		p, _, err := parsePath(s)
		if err != nil {
			t.Errorf("%s: %v", s, err)
			continue
		}
		want.text = s
		if *p != want {
			t.Errorf("%s: got %+v want %+v", s, *p, want)
		}
	}
	bad := map[string]int{"pid-3": 0, "PID3": 3, "PID-": 4, "PID-0": 4, "PID-3.": 6, "PID-3[0]": 6, "PID-3[x]": 6,
		"PID-3.1.2.3": 9, "PID-3[5=]": 8, "PID[0]-3": 3, "PI": 0, "PID-3[2": 5}
	for s, off := range bad {
		_, got, err := parsePath(s)
		if err == nil {
			t.Errorf("%s: accepted", s)
		} else if got != off {
			t.Errorf("%s: error at %d, want %d (%v)", s, got, off, err)
		}
	}
}

func FuzzParsePath(f *testing.F) {
	for _, s := range []string{"PID-3[5=MR].4.1", "OBX[2]-5", "PID-3[*]", "MSH-9.2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, off, err := parsePath(s)
		if err != nil && (off < 0 || off > len(s)) {
			t.Fatalf("offset %d outside %q", off, s)
		}
		if err == nil && (p.seg == "" || len(p.seg) != 3) {
			t.Fatalf("bad segment for %q", s)
		}
	})
}

func TestDateTimes(t *testing.T) {
	ny, _ := time.LoadLocation("America/New_York")
	cases := []struct{ in, dt, date string }{
		{"2024", "2024", "2024"},
		{"202402", "2024-02", "2024-02"},
		{"20240229", "2024-02-29", "2024-02-29"},
		{"2024022913", "2024-02-29T13:00:00-05:00", "2024-02-29"},
		{"202407011305", "2024-07-01T13:05:00-04:00", "2024-07-01"},
		{"20240701130559.1234", "2024-07-01T13:05:59.1234-04:00", "2024-07-01"},
		{"20240701130559.123456", "2024-07-01T13:05:59.1234-04:00", "2024-07-01"},
		{"20240701130559+0530", "2024-07-01T13:05:59+05:30", "2024-07-01"},
		{"199808181126-0000", "1998-08-18T11:26:00+00:00", "1998-08-18"},
	}
	for _, c := range cases {
		dt, err := fhirDateTime(c.in, ny)
		if err != nil || dt != c.dt {
			t.Errorf("dateTime(%s) = %q, %v; want %q", c.in, dt, err, c.dt)
		}
		if !reDateTime.MatchString(dt) {
			t.Errorf("dateTime(%s) = %q is not a FHIR dateTime", c.in, dt)
		}
		d, err := fhirDate(c.in)
		if err != nil || d != c.date {
			t.Errorf("date(%s) = %q, %v; want %q", c.in, d, err, c.date)
		}
	}
	if dt, _ := fhirDateTime("202401011200", time.UTC); dt != "2024-01-01T12:00:00Z" {
		t.Errorf("UTC zone: %s", dt)
	}
	for _, bad := range []string{"", "2024-01-01", "20240230", "2024131", "20241301", "2024010125", "20240101+05", "2024010112.5", "12345", "20240101120000+2400", "2024010112000a"} {
		if _, err := fhirDateTime(bad, time.UTC); err == nil {
			t.Errorf("dateTime(%q) accepted", bad)
		}
	}
	if _, err := fhirDateTime("202401011200", nil); err == nil {
		t.Error("time without offset and no zone accepted")
	}
}

func FuzzDateTime(f *testing.F) {
	for _, s := range []string{"20240701130559.1234-0400", "2024", "199808181126"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		dt, err := fhirDateTime(s, time.UTC)
		if err == nil && !reDateTime.MatchString(dt) {
			t.Fatalf("%q gave %q, not a FHIR dateTime", s, dt)
		}
	})
}

func TestDecimal(t *testing.T) {
	good := map[string]string{"4.41": "4.41", "+5": "5", ".5": "0.5", "5.": "5", "007": "7", "-0.10": "-0.10", "-0": "0", "105600": "105600"}
	for in, want := range good {
		d, err := fhirDecimal(in)
		if err != nil || string(d) != want {
			t.Errorf("%q: %q %v want %q", in, d, err, want)
		}
		if !reDecimal.MatchString(string(d)) {
			t.Errorf("%q: %q not a FHIR decimal", in, d)
		}
	}
	for _, bad := range []string{"", "1e5", "1,5", "<5", "5-6", ".", "--1", "abc"} {
		if _, err := fhirDecimal(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := fhir.Resource{"resourceType": "Observation", "id": "a1", "status": "final",
		"code":              map[string]any{"coding": []any{map[string]any{"system": "http://loinc.org", "code": "2345-7"}}},
		"valueQuantity":     map[string]any{"value": json.Number("5.1"), "unit": "mg/dL"},
		"effectiveDateTime": "2024-01-01T10:00:00Z"}
	if p := Validate(ok); len(p) != 0 {
		t.Fatalf("valid resource refused: %v", p)
	}
	bad := []struct {
		mut  func(r fhir.Resource)
		want string
	}{
		{func(r fhir.Resource) { delete(r, "status") }, "Observation.status: required element missing"},
		{func(r fhir.Resource) { r["status"] = "done" }, "Observation.status: code not in the required value set"},
		{func(r fhir.Resource) { r["valueString"] = "x" }, "Observation.value[x]: only one type may be present, found valueQuantity, valueString"},
		{func(r fhir.Resource) { r["effectiveDateTime"] = "2024-01-01T10:00" }, "Observation.effectiveDateTime: not a valid FHIR dateTime"},
		{func(r fhir.Resource) { r["code"] = []any{} }, "Observation.code: must be a single value"},
		{func(r fhir.Resource) { r["category"] = map[string]any{"text": "x"} }, "Observation.category: must be an array"},
		{func(r fhir.Resource) { r["colour"] = "red" }, "Observation.colour: no such element"},
		{func(r fhir.Resource) { r["valueQuantity"] = map[string]any{"value": "5"} }, "Observation.valueQuantity.value: must be a number"},
		{func(r fhir.Resource) { r["subject"] = map[string]any{} }, "Observation.subject: empty object"},
		{func(r fhir.Resource) { r["id"] = "has space" }, "Observation.id: missing or not a FHIR id"},
		{func(r fhir.Resource) { r["note"] = []any{map[string]any{"time": "2024"}} }, "Observation.note[0].text: required element missing"},
	}
	for _, b := range bad {
		r := fhir.Resource{}
		for k, v := range ok {
			r[k] = v
		}
		b.mut(r)
		p := strings.Join(Validate(r), "; ")
		if !strings.Contains(p, b.want) {
			t.Errorf("want %q, got %q", b.want, p)
		}
	}
	// A choice in three types is one problem naming all three, the same
	// each time whatever order the resource's map is visited in.
	three := fhir.Resource{}
	for k, v := range ok {
		three[k] = v
	}
	three["valueString"], three["valueBoolean"] = "x", true
	want := []string{"Observation.value[x]: only one type may be present, found valueBoolean, valueQuantity, valueString"}
	for i := 0; i < 20; i++ {
		if p := Validate(three); !reflect.DeepEqual(p, want) {
			t.Fatalf("choice in three types: %q, want %q", p, want)
		}
	}
	if p := Validate(fhir.Resource{"resourceType": "Basic", "id": "x"}); len(p) == 0 {
		t.Error("unknown resource type accepted")
	}
}

func TestResolveElementPath(t *testing.T) {
	for _, p := range []string{"identifier", "valueQuantity.unit", "value[x]", "effective[x]", "code.coding", "referenceRange", "extension"} {
		if _, _, err := resolveElementPath("Observation", p); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
	for p, off := range map[string]int{"valu": 0, "valueQuantity.units": 14, "value[x].unit": 0, "status.code": 7, "valueFoo": 0} {
		_, got, err := resolveElementPath("Observation", p)
		if err == nil || got != off {
			t.Errorf("%s: error %v at %d, want at %d", p, err, got, off)
		}
	}
}

func TestCodeTableLookup(t *testing.T) {
	errs := &errorList{}
	shared := parseCodeTable("lab", "codes/lab.csv", []byte("source_system,source_code,target_system,target_code,display\n,GLU,http://loinc.org,2345-7,Glucose\n"), errs)
	own := parseCodeTable("x-lab", "codes/x-lab.csv", []byte("\ufeffsource_system,source_code,target_system,target_code,display\r\n# comment\r\nL,GLU,http://loinc.org,2339-0,Glucose (blood)\r\n"), errs)
	if err := errs.err(); err != nil {
		t.Fatal(err)
	}
	chain := tableChain{own, shared}
	if e, ok := chain.lookup("L", "GLU"); !ok || e.Code != "2339-0" {
		t.Errorf("own row not first: %+v", e)
	}
	if e, ok := chain.lookup("99X", "GLU"); !ok || e.Code != "2345-7" {
		t.Errorf("any-system row not used: %+v", e)
	}
	if _, ok := chain.lookup("L", "NA"); ok {
		t.Error("found a code not in the table")
	}
	if _, ok := tableChain(nil).lookup("L", "GLU"); ok {
		t.Error("nil chain found a code")
	}
}

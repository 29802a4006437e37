package pipeline

import (
	"bytes"
	"encoding/json"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/hiegw/hiegw/internal/fhir"
)

func TestKeepFrom(t *testing.T) {
	stored := []byte(`{"resourceType":"Patient","id":"p","address":[{"city":"Springfield","line":["742 Evergreen"]}],` +
		`"deceasedBoolean":false,"maritalStatus":{"text":"M"},"telecom":[{"value":"555"}]}`)
	r := fhir.Resource{"resourceType": "Patient", "id": "p", "telecom": []any{map[string]any{"value": "777"}}}
	if err := keepFrom(r, stored, []string{"address", "deceased[x]", "telecom", "photo"}); err != nil {
		t.Fatal(err)
	}
	var want map[string]any
	json.Unmarshal([]byte(`{"resourceType":"Patient","id":"p","address":[{"city":"Springfield","line":["742 Evergreen"]}],`+
		`"deceasedBoolean":false,"telecom":[{"value":"777"}]}`), &want)
	got := map[string]any{}
	b, _ := json.Marshal(r)
	json.Unmarshal(b, &got)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("kept %s", b)
	}
	// A choice element the message sent in another type is not overwritten.
	r = fhir.Resource{"resourceType": "Patient", "id": "p", "deceasedDateTime": "2026-01-01"}
	if err := keepFrom(r, stored, []string{"deceased[x]"}); err != nil {
		t.Fatal(err)
	}
	if _, ok := r["deceasedBoolean"]; ok || r["deceasedDateTime"] != "2026-01-01" {
		t.Fatalf("choice: %v", r)
	}
	if err := keepFrom(fhir.Resource{"id": "p"}, []byte(`{"address":[`), []string{"address"}); err == nil {
		t.Fatal("a broken stored body was read")
	}
}

// TestMembersMatchesEncodingJSON: members splits stored bodies as
// json.Unmarshal into a map[string]json.RawMessage does, in any layout, and
// leaves to encoding/json what it does not split.
func TestMembersMatchesEncodingJSON(t *testing.T) {
	bodies := []string{
		`{}`, ` { } `, `{"a":1}`, `{"a":1,"a":{"b":2}}`,
		`{"resourceType":"Patient","id":"p","name":[{"family":"M\u00fcller \"Jr\"","given":["A","B\\"]}],"x":null,` +
			`"n":-1.5e+3,"t":true,"f":false,"o":{"k":[[],{},"}]{["]},"e":""}`,
		"{\r\n\t\"a\" :\t[ 1 , 2 ] ,\n \"b\" : { \"c\" : \"d\" } \n}",
		`{"name with spaces":"v","ü":"ö","<":">"}`,
	}
	var indented bytes.Buffer
	json.Indent(&indented, []byte(bodies[4]), "", "    ")
	bodies = append(bodies, indented.String())
	for _, body := range bodies {
		got, ok := members([]byte(body))
		if !ok {
			t.Fatalf("%s: not split", body)
		}
		var want map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &want); err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%s: %d members, want %d", body, len(got), len(want))
		}
		for k, v := range want {
			if !bytes.Equal(got[k], v) {
				t.Fatalf("%s: member %q is %s, want %s", body, k, got[k], v)
			}
		}
	}
	// Left to encoding/json: names with escapes, other values, broken JSON.
	for _, body := range []string{`{"a\"b":1}`, `{"\u0061":1}`, `null`, `[1]`, `"x"`, `{"a":1`, `{"a":tru}`, ``, `{"a":1}x`,
		`{"a":01}`, `{"a":1.}`, `{"a":"\x"}`, "{\"a\":\"\x01\"}", `{"a":[1,]}`, `{"a":1,}`, `{"a" 1}`, `{"a":-}`,
		`{"a":"\u12"}`, `{"a":{"b"}}`, `{"a":1e}`, `{,}`} {
		if _, ok := members([]byte(body)); ok {
			t.Fatalf("%s: split", body)
		}
	}
	// Every body one edit away from a valid one is split exactly when
	// encoding/json reads it, and then the same way.
	for _, body := range bodies {
		for i := 0; i <= len(body); i++ {
			for _, edit := range []string{"", " ", "\"", "\\", "{", "}", "[", "]", ",", ":", "0", "-", ".", "e", "u",
				"x", "\x00", "\x7f", "\xff"} {
				for _, cut := range []int{0, 1} {
					if i+cut > len(body) {
						continue
					}
					checkMembers(t, []byte(body[:i]+edit+body[i+cut:]))
				}
			}
		}
	}
}

// checkMembers fails when members splits body and encoding/json does not
// read it, or reads other members; or when encoding/json reads it as an
// object whose names have no escape nor invalid UTF-8 and members leaves
// it.
func checkMembers(t *testing.T, body []byte) {
	t.Helper()
	got, ok := members(body)
	var want map[string]json.RawMessage
	err := json.Unmarshal(body, &want)
	if !ok {
		if err == nil && want != nil && !bytes.Contains(body, []byte{'\\'}) && utf8.Valid(body) {
			t.Fatalf("%q: not split, but encoding/json reads it", body)
		}
		return
	}
	if err != nil {
		t.Fatalf("%q split, but encoding/json fails: %v", body, err)
	}
	if len(got) != len(want) {
		t.Fatalf("%q: %d members, want %d", body, len(got), len(want))
	}
	for k, v := range want {
		if !bytes.Equal(got[k], v) {
			t.Fatalf("%q: member %q is %s, want %s", body, k, got[k], v)
		}
	}
}

func FuzzMembers(f *testing.F) {
	f.Add([]byte(`{"a":[1,{"b":"c"}],"d":"\"}"}`))
	f.Add([]byte(` {"a" : 1 , "b":null}`))
	f.Fuzz(func(t *testing.T, body []byte) { checkMembers(t, body) })
}

func BenchmarkKeepFrom(b *testing.B) {
	stored := []byte(`{"address":[{"city":"SPRINGFIELD","country":"USA","line":["742 EVERGREEN TERRACE"],"postalCode":"62704",` +
		`"state":"IL"}],"birthDate":"1967-03-15","gender":"male","id":"52b72931-e711-5a45-9a03-08390964f9d4","identifier":` +
		`[{"system":"urn:hiegw:aa:GOODHEALTH","type":{"coding":[{"code":"MR","system":"http://terminology.hl7.org/CodeSystem/v2-0203"}]},` +
		`"value":"4455667"},{"system":"http://hl7.org/fhir/sid/us-ssn","type":{"coding":[{"code":"SS","system":` +
		`"http://terminology.hl7.org/CodeSystem/v2-0203"}]},"value":"999-88-7777"}],"name":[{"family":"MUÑOZ","given":["JOSÉ","Q"]}],` +
		`"resourceType":"Patient","telecom":[{"system":"phone","use":"home","value":"(217)5550123"}]}`)
	keep := []string{"deceased[x]", "maritalStatus", "multipleBirth[x]", "communication", "contact", "generalPractitioner", "link"}
	b.ReportAllocs()
	for b.Loop() {
		r := fhir.Resource{"resourceType": "Patient", "id": "52b72931-e711-5a45-9a03-08390964f9d4"}
		if err := keepFrom(r, stored, keep); err != nil {
			b.Fatal(err)
		}
	}
}

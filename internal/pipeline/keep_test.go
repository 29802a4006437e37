package pipeline

import (
	"encoding/json"
	"reflect"
	"testing"

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

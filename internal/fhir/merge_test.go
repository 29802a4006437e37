package fhir

import (
	"reflect"
	"testing"
)

func TestConflictAndMerge(t *testing.T) {
	code := func(sys, c string) map[string]any {
		return map[string]any{"coding": []any{map[string]any{"system": sys, "code": c}}}
	}
	a := Resource{"id": "x", "status": "unknown", "code": code("L", "1"), "category": []any{"lab"}}
	b := Resource{"id": "x", "status": "final", "code": map[string]any{"coding": []any{
		map[string]any{"system": "L", "code": "1"}, map[string]any{"system": "LN", "code": "2"}}}, "category": []any{"lab", "vital"},
		"valueString": "v"}
	if Conflict(a, b) {
		t.Fatal("a shared coding and an unknown status conflict")
	}
	if !Conflict(a, Resource{"code": code("L", "9")}) || !Conflict(b, Resource{"status": "amended"}) {
		t.Fatal("a different code or a known different status does not conflict")
	}
	if Conflict(Resource{"code": map[string]any{"text": "t"}}, Resource{"code": map[string]any{"text": "t"}}) == true {
		t.Fatal("same text without codings conflicts")
	}
	Merge(a, b)
	want := Resource{"id": "x", "status": "final", "code": code("L", "1"), "category": []any{"lab", "vital"}, "valueString": "v"}
	if !reflect.DeepEqual(a, want) {
		t.Fatalf("merged %v", a)
	}
}

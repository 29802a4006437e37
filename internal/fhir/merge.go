package fhir

import "reflect"

// identifying are the elements that tell two facts with the same id apart.
var identifying = []string{"code", "vaccineCode", "medicationCodeableConcept", "status",
	"effectiveDateTime", "effectivePeriod", "performedDateTime", "performedPeriod", "occurrenceDateTime",
	"onsetDateTime", "abatementDateTime", "period", "valueQuantity", "valueCodeableConcept", "valueString",
	"valueRange", "valueInteger", "valueBoolean", "valueDateTime", "dosage", "dosageInstruction"}

// Conflict reports whether two resources with the same id disagree on an
// identifying element, so that they are not one fact (an unknown status,
// and concepts sharing a coding or, without codings, the same text, agree).
// A document that mentions one fact in several sections makes such pairs.
func Conflict(a, b Resource) bool {
	for _, k := range identifying {
		x, okx := a[k]
		y, oky := b[k]
		if !okx || !oky || reflect.DeepEqual(x, y) {
			continue
		}
		switch k {
		case "status":
			if x == "unknown" || y == "unknown" {
				continue
			}
		case "code", "vaccineCode", "medicationCodeableConcept", "valueCodeableConcept":
			if shareCoding(x, y) {
				continue
			}
		}
		return true
	}
	return false
}

// shareCoding reports whether two CodeableConcepts share a coding (system
// and code), or, having none, the same text.
func shareCoding(x, y any) bool {
	cx, _ := x.(map[string]any)
	cy, _ := y.(map[string]any)
	lx, _ := cx["coding"].([]any)
	ly, _ := cy["coding"].([]any)
	if len(lx) == 0 && len(ly) == 0 {
		return cx["text"] == cy["text"]
	}
	for _, a := range lx {
		for _, b := range ly {
			ma, _ := a.(map[string]any)
			mb, _ := b.(map[string]any)
			if ma["system"] == mb["system"] && ma["code"] == mb["code"] {
				return true
			}
		}
	}
	return false
}

// Merge completes dst, the same fact as src, from src: the elements dst
// lacks, a status dst has as unknown, and the categories it lacks.
func Merge(dst, src Resource) {
	for k, v := range src {
		old, ok := dst[k]
		switch {
		case !ok:
			dst[k] = v
		case k == "status" && old == "unknown":
			dst[k] = v
		case k == "category":
			list, _ := old.([]any)
			add, _ := v.([]any)
			for _, c := range add {
				dup := false
				for _, o := range list {
					if reflect.DeepEqual(o, c) {
						dup = true
					}
				}
				if !dup {
					list = append(list, c)
				}
			}
			dst[k] = list
		}
	}
}

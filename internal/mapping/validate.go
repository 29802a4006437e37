package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"sort"
	"strings"

	"github.com/hiegw/hiegw/internal/fhir"
)

// Validation problems name the element path and what is wrong, never the value.

var (
	reDate     = regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?$`)
	reDateTime = regexp.MustCompile(`^[0-9]{4}(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])(T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?$`)
	reInstant  = regexp.MustCompile(`^[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])T([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00))$`)
	reTime     = regexp.MustCompile(`^([01][0-9]|2[0-3]):[0-5][0-9]:([0-5][0-9]|60)(\.[0-9]+)?$`)
	reCode     = regexp.MustCompile(`^[^\s]+( [^\s]+)*$`)
	reID       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	reDecimal  = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`)
	reBase64   = regexp.MustCompile(`^(\s*([0-9a-zA-Z+/=]){4}\s*)+$`)
	reURI      = regexp.MustCompile(`^\S+$`)
)

// Validate checks a resource of one of the types hiegw produces against the
// FHIR R4 rules it knows: element names, cardinality, required elements,
// primitive formats and required bindings. It returns every problem found.
func Validate(r fhir.Resource) []string {
	var v validator
	t := r.Type()
	td := fhirTypes[t]
	if td == nil || !isResourceType(t) {
		return []string{fmt.Sprintf("resourceType: %q is not a type hiegw produces", t)}
	}
	if !reID.MatchString(r.ID()) {
		v.add(t+".id", "missing or not a FHIR id")
	}
	v.object(t, td, map[string]any(r), true)
	return v.problems
}

type validator struct{ problems []string }

func (v *validator) add(path, msg string) { v.problems = append(v.problems, path+": "+msg) }

func (v *validator) object(path string, td *typeDef, obj map[string]any, top bool) {
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	seenChoice := map[*elemDef]string{}
	for _, k := range keys {
		if top && (k == "resourceType" || k == "id") {
			continue
		}
		ed := td.elems[k]
		p := path + "." + k
		if ed == nil {
			v.add(p, "no such element in "+td.name)
			continue
		}
		if ed.choice {
			if prev, ok := seenChoice[ed]; ok {
				v.add(p, "only one of "+prev+" and "+k+" may be present")
			}
			seenChoice[ed] = k
		}
		t := ed.types[0]
		if ed.choice {
			for _, c := range ed.types {
				if ed.concrete(c) == k {
					t = c
				}
			}
		}
		val := obj[k]
		if ed.many {
			arr, ok := val.([]any)
			if !ok {
				v.add(p, "must be an array")
				continue
			}
			if len(arr) == 0 {
				v.add(p, "empty array")
			}
			for i, x := range arr {
				v.value(fmt.Sprintf("%s[%d]", p, i), t, ed, x)
			}
			continue
		}
		if _, isArr := val.([]any); isArr {
			v.add(p, "must be a single value, not an array")
			continue
		}
		v.value(p, t, ed, val)
	}
	for _, ed := range uniqueElems(td) {
		if !ed.required {
			continue
		}
		present := false
		if ed.choice {
			for _, c := range ed.types {
				if _, ok := obj[ed.concrete(c)]; ok {
					present = true
				}
			}
		} else {
			_, present = obj[ed.name]
		}
		if !present {
			v.add(path+"."+ed.name, "required element missing")
		}
	}
}

func uniqueElems(td *typeDef) []*elemDef {
	seen := map[*elemDef]bool{}
	var out []*elemDef
	for _, e := range td.elems {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	return out
}

func (v *validator) value(path, typ string, ed *elemDef, val any) {
	if val == nil {
		v.add(path, "null value")
		return
	}
	if td := fhirTypes[typ]; td != nil {
		obj, ok := val.(map[string]any)
		if !ok {
			if r, ok2 := val.(fhir.Resource); ok2 {
				obj, ok = map[string]any(r), true
			}
		}
		if !ok {
			v.add(path, "must be an object of type "+typ)
			return
		}
		if len(obj) == 0 {
			v.add(path, "empty object (FHIR elements need a value or children)")
			return
		}
		v.object(path, td, obj, false)
		return
	}
	switch typ {
	case "boolean":
		if _, ok := val.(bool); !ok {
			v.add(path, "must be a boolean")
		}
	case "integer", "positiveInt", "unsignedInt":
		n, ok := integerOf(val)
		switch {
		case !ok:
			v.add(path, "must be an integer")
		case typ == "positiveInt" && n < 1:
			v.add(path, "must be a positive integer")
		case typ == "unsignedInt" && n < 0:
			v.add(path, "must not be negative")
		}
	case "decimal":
		switch x := val.(type) {
		case json.Number:
			if !reDecimal.MatchString(string(x)) {
				v.add(path, "not a decimal")
			}
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v.add(path, "not a finite decimal")
			}
		case int, int64:
		default:
			v.add(path, "must be a number")
		}
	default:
		s, ok := val.(string)
		if !ok {
			v.add(path, "must be a string ("+typ+")")
			return
		}
		if s == "" {
			v.add(path, "empty string")
			return
		}
		var re *regexp.Regexp
		switch typ {
		case "date":
			re = reDate
		case "dateTime":
			re = reDateTime
		case "instant":
			re = reInstant
		case "time":
			re = reTime
		case "code":
			re = reCode
		case "id":
			re = reID
		case "uri", "url", "canonical":
			re = reURI
		case "base64Binary":
			re = reBase64
		}
		if re != nil && !re.MatchString(s) {
			v.add(path, "not a valid FHIR "+typ)
			return
		}
		if ed != nil && ed.binding != nil && (typ == "code") && !ed.binding[s] {
			v.add(path, "code not in the required value set ("+strings.Join(sortedKeys(ed.binding), ", ")+")")
		}
	}
}

func integerOf(val any) (int64, bool) {
	switch x := val.(type) {
	case int:
		return int64(x), true
	case int64:
		return x, true
	case float64:
		if x == math.Trunc(x) {
			return int64(x), true
		}
	case json.Number:
		n, err := x.Int64()
		return n, err == nil
	}
	return 0, false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

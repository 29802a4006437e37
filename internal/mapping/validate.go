package mapping

import (
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"slices"
	"sort"
	"strconv"
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
	reDecimal  = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?$`) // validDecimal's pattern
	reID       = regexp.MustCompile(`^[A-Za-z0-9\-.]{1,64}$`)
	reBase64   = regexp.MustCompile(`^(\s*([0-9a-zA-Z+/=]){4}\s*)+$`)
	reURI      = regexp.MustCompile(`^\S+$`)
)

// Validate checks a resource of one of the types hiegw produces against the
// FHIR R4 rules it knows: element names, cardinality, required elements,
// primitive formats and required bindings. It returns every problem found.
func Validate(r fhir.Resource) []string {
	var v validator
	return v.check(r)
}

// check is Validate with a validator whose stack is reused from one
// resource to the next.
func (v *validator) check(r fhir.Resource) []string { return v.checkKnown(r, 0, false) }

// checkKnown is check for a resource whose top-level elements in known
// (elemDef.bit) hold values already known to be valid: their values are
// not walked again; everything else (names, arrays, required elements,
// choices) is checked as for any element. whole says that every top-level
// element is known valid, with a known name and shape (store wrote it) and
// no choice twice: then only the id and the required elements are checked.
func (v *validator) checkKnown(r fhir.Resource, known uint64, whole bool) []string {
	v.problems, v.stack = nil, v.stack[:0]
	t := r.Type()
	td := fhirTypes[t]
	if td == nil || !isResourceType(t) {
		return []string{fmt.Sprintf("resourceType: %q is not a type hiegw produces", t)}
	}
	v.typ = t
	if !validID(r.ID()) {
		v.add("id", "missing or not a FHIR id")
	}
	if whole {
		v.required(td, map[string]any(r))
	} else {
		v.known = known
		v.object(td, map[string]any(r), true)
		v.known = 0
	}
	sort.Strings(v.problems)
	return v.problems
}

// validator walks a resource; stack holds the path to the current element
// (element names and array indexes), turned into text only when a problem is
// reported, so that a valid resource costs no strings.
type validator struct {
	problems []string
	typ      string
	stack    []step
	known    uint64 // checkKnown's known, for the top level
}

// step is one element of the path being validated; index is -1 outside
// arrays.
type step struct {
	name  string
	index int
}

func (v *validator) add(last, msg string) {
	var b strings.Builder
	b.WriteString(v.typ)
	for _, s := range v.stack {
		b.WriteByte('.')
		b.WriteString(s.name)
		if s.index >= 0 {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	if last != "" {
		b.WriteByte('.')
		b.WriteString(last)
	}
	b.WriteString(": ")
	b.WriteString(msg)
	v.problems = append(v.problems, b.String())
}

func (v *validator) push(name string, index int) { v.stack = append(v.stack, step{name, index}) }
func (v *validator) pop()                        { v.stack = v.stack[:len(v.stack)-1] }

func (v *validator) object(td *typeDef, obj map[string]any, top bool) {
	var seenChoice, twice [4]*elemDef
	nChoice, nTwice := 0, 0
	for k, val := range obj {
		if top && (k == "resourceType" || k == "id") {
			continue
		}
		ed := td.elem(k)
		if ed == nil {
			v.add(k, "no such element in "+td.name)
			continue
		}
		t, tdef := ed.types[0], ed.def
		walk := !top || v.known&ed.bit == 0
		if ed.choice {
			if slices.Contains(seenChoice[:nChoice], ed) {
				if !slices.Contains(twice[:nTwice], ed) && nTwice < len(twice) {
					twice[nTwice] = ed
					nTwice++
				}
			} else if nChoice < len(seenChoice) {
				seenChoice[nChoice] = ed
				nChoice++
			}
			t, tdef = ed.typeOf[k], ed.defOf[k]
		}
		if ed.many {
			arr, ok := val.([]any)
			if !ok {
				v.add(k, "must be an array")
				continue
			}
			if len(arr) == 0 {
				v.add(k, "empty array")
			}
			if !walk {
				continue
			}
			for i, x := range arr {
				v.push(k, i)
				v.value(t, tdef, ed, x)
				v.pop()
			}
			continue
		}
		if _, isArr := val.([]any); isArr {
			v.add(k, "must be a single value, not an array")
			continue
		}
		if !walk {
			continue
		}
		v.push(k, -1)
		v.value(t, tdef, ed, val)
		v.pop()
	}
	for _, ed := range twice[:nTwice] {
		v.choiceTwice(ed, obj)
	}
	v.required(td, obj)
}

// choiceTwice reports a choice element present in more than one type, at
// the choice's name and with every typed name found, in order, so that the
// text does not depend on the order obj is visited in.
func (v *validator) choiceTwice(ed *elemDef, obj map[string]any) {
	var names []string
	for k := range obj {
		if _, ok := ed.typeOf[k]; ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	v.add(ed.name, "only one type may be present, found "+strings.Join(names, ", "))
}

// required reports the required elements of td that obj lacks.
func (v *validator) required(td *typeDef, obj map[string]any) {
	for _, ed := range td.required {
		if !ed.presentIn(obj) {
			v.add(ed.name, "required element missing")
		}
	}
}

// value checks val as a typ; td is typ's definition for a complex type
// (fhirTypes[typ]), nil for a primitive.
func (v *validator) value(typ string, td *typeDef, ed *elemDef, val any) {
	if val == nil {
		v.add("", "null value")
		return
	}
	if td != nil {
		obj, ok := val.(map[string]any)
		if !ok {
			if r, ok2 := val.(fhir.Resource); ok2 {
				obj, ok = map[string]any(r), true
			}
		}
		if !ok {
			v.add("", "must be an object of type "+typ)
			return
		}
		if len(obj) == 0 {
			v.add("", "empty object (FHIR elements need a value or children)")
			return
		}
		v.object(td, obj, false)
		return
	}
	switch typ {
	case "boolean":
		if _, ok := val.(bool); !ok {
			v.add("", "must be a boolean")
		}
	case "integer", "positiveInt", "unsignedInt":
		n, ok := integerOf(val)
		switch {
		case !ok:
			v.add("", "must be an integer")
		case typ == "positiveInt" && n < 1:
			v.add("", "must be a positive integer")
		case typ == "unsignedInt" && n < 0:
			v.add("", "must not be negative")
		}
	case "decimal":
		switch x := val.(type) {
		case json.Number:
			if !validDecimal(string(x)) {
				v.add("", "not a decimal")
			}
		case float64:
			if math.IsNaN(x) || math.IsInf(x, 0) {
				v.add("", "not a finite decimal")
			}
		case int, int64:
		default:
			v.add("", "must be a number")
		}
	default:
		s, ok := val.(string)
		if !ok {
			v.add("", "must be a string ("+typ+")")
			return
		}
		if s == "" {
			v.add("", "empty string")
			return
		}
		good := true
		switch typ {
		case "date":
			good = validDate(s)
		case "dateTime":
			good = validDateTime(s)
		case "instant":
			good = validInstant(s)
		case "time":
			good = reTime.MatchString(s)
		case "code":
			good = validCode(s)
		case "id":
			good = validID(s)
		case "uri", "url", "canonical":
			good = !hasSpaceTabOrNewline(s)
		case "base64Binary":
			good = reBase64.MatchString(s)
		}
		if !good {
			v.add("", "not a valid FHIR "+typ)
			return
		}
		if ed != nil && ed.binding != nil && typ == "code" && !ed.binding[s] {
			v.add("", "code not in the required value set ("+strings.Join(sortedKeys(ed.binding), ", ")+")")
		}
	}
}

// valid tells whether val, stored in element ed as a typ (for a repeating
// element, val or the items of the list val), is valid: the validator finds
// no problem in it. The validator's state is left as it was.
func (v *validator) valid(typ string, ed *elemDef, val any) bool {
	n, depth := len(v.problems), len(v.stack)
	td := fhirTypes[typ]
	if list, ok := val.([]any); ok && ed.many {
		for _, x := range list {
			v.value(typ, td, ed, x)
		}
	} else {
		v.value(typ, td, ed, val)
	}
	ok := len(v.problems) == n
	v.problems, v.stack = v.problems[:n], v.stack[:depth]
	return ok
}

// validAsStored is the FHIR type a fixed value (const: or default:) is
// valid as once store puts it in the element of last (typ: the alternative's
// type of a choice): the type, or "" when the validator would find a
// problem in what is stored (each item of a repeating element, else the
// value or the first item of a list).
func validAsStored(last pathStep, typ string, v any) string {
	t := last.typ
	if t == "" {
		t = typ
	}
	if t == "" || isEmpty(v) {
		return ""
	}
	items := []any{v}
	if list, ok := v.([]any); ok {
		items = list
		if !last.def.many {
			items = list[:1]
		}
	}
	var val validator
	val.typ = "const"
	for _, x := range items {
		val.value(t, fhirTypes[t], last.def, x)
	}
	if len(val.problems) > 0 {
		return ""
	}
	return t
}

// validInstant tells whether s is a FHIR instant: a dateTime with a time.
func validInstant(s string) bool { return strings.Contains(s, "T") && validDateTime(s) }

// validDateTime checks the FHIR dateTime forms hiegw writes, falling back to
// the full pattern for anything else.
func validDateTime(s string) bool {
	if len(s) == 25 && s[10] == 'T' && s[4] == '-' && s[7] == '-' && s[13] == ':' && s[16] == ':' && (s[19] == '+' || s[19] == '-') && s[22] == ':' {
		for _, i := range []int{0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18, 20, 21, 23, 24} {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		mo, d, h, mi, se := atoi2(s[5:7]), atoi2(s[8:10]), atoi2(s[11:13]), atoi2(s[14:16]), atoi2(s[17:19])
		zh, zm := atoi2(s[20:22]), atoi2(s[23:25])
		return mo >= 1 && mo <= 12 && d >= 1 && d <= 31 && h <= 23 && mi <= 59 && se <= 60 && (zh < 14 && zm <= 59 || zh == 14 && zm == 0)
	}
	return reDateTime.MatchString(s)
}

// validDate checks the FHIR date form hiegw writes (YYYY-MM-DD) with a
// loop, falling back to the full pattern for anything else.
func validDate(s string) bool {
	if len(s) == 10 && s[4] == '-' && s[7] == '-' {
		for _, i := range [8]int{0, 1, 2, 3, 5, 6, 8, 9} {
			if s[i] < '0' || s[i] > '9' {
				return false
			}
		}
		mo, d := atoi2(s[5:7]), atoi2(s[8:10])
		return mo >= 1 && mo <= 12 && d >= 1 && d <= 31
	}
	return reDate.MatchString(s)
}

// validDecimal matches the FHIR decimal pattern
// -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)? without a regexp.
func validDecimal(s string) bool {
	i := 0
	if i < len(s) && s[i] == '-' {
		i++
	}
	digits := func() int {
		n := 0
		for i < len(s) && s[i] >= '0' && s[i] <= '9' {
			i++
			n++
		}
		return n
	}
	start := i
	n := digits()
	if n == 0 || n > 1 && s[start] == '0' {
		return false
	}
	if i < len(s) && s[i] == '.' {
		i++
		if digits() == 0 {
			return false
		}
	}
	if i < len(s) && (s[i] == 'e' || s[i] == 'E') {
		i++
		if i < len(s) && (s[i] == '+' || s[i] == '-') {
			i++
		}
		if digits() == 0 {
			return false
		}
	}
	return i == len(s)
}

func atoi2(s string) int { return int(s[0]-'0')*10 + int(s[1]-'0') }

func validCode(s string) bool {
	if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' {
		return false
	}
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '\t', '\r', '\n':
			return false
		case ' ':
			if s[i+1] == ' ' { // s does not end with a space: i+1 < len(s)
				return false
			}
		}
	}
	return true
}

// hasSpaceTabOrNewline is strings.ContainsAny(s, " \t\r\n") without the
// set it builds on every call.
func hasSpaceTabOrNewline(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case ' ', '\t', '\r', '\n':
			return true
		}
	}
	return false
}

func validID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.') {
			return false
		}
	}
	return true
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

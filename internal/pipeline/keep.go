package pipeline

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"unicode/utf8"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/store"
)

// keepUnsent completes the resources of u that have a keep list with the
// elements the source did not send: for each name in the list that the
// resource lacks, the stored version's value, if it has one. This is HL7
// v2's rule for updates: a field left empty means "no change", while the
// null "" means "delete" (the mapping leaves such an element out of the
// list, so it stays removed). One query reads every stored version needed.
func keepUnsent(ctx context.Context, tx *store.Tx, u unit) error {
	var ids []string
	for _, r := range u.Resources {
		if len(u.Keep[r.ID()]) > 0 {
			ids = append(ids, r.ID())
		}
	}
	if len(ids) == 0 {
		return nil
	}
	bodies, err := tx.ResourceBodies(ctx, ids)
	if err != nil {
		return err
	}
	for _, r := range u.Resources {
		if body := bodies[r.ID()]; body != nil {
			if err := keepFrom(r, body, u.Keep[r.ID()]); err != nil {
				return err
			}
		}
	}
	return nil
}

// keepFrom copies into r the elements named in keep that r lacks and the
// stored JSON body has.
func keepFrom(r fhir.Resource, body []byte, keep []string) error {
	// The stored body is split into its top-level elements undecoded; only
	// those taken are decoded (most of a Patient is sent again each time).
	old, ok := members(body)
	if !ok {
		if err := json.Unmarshal(body, &old); err != nil {
			return fmt.Errorf("read stored %s %s: %w", r.Type(), r.ID(), err)
		}
	}
	take := func(name string) error {
		var v any
		if err := json.Unmarshal(old[name], &v); err != nil {
			return fmt.Errorf("read stored %s %s: %s: %w", r.Type(), r.ID(), name, err)
		}
		r[name] = v
		return nil
	}
	for _, k := range keep {
		base, choice := strings.CutSuffix(k, "[x]")
		if !choice {
			if _, sent := r[k]; !sent {
				if _, ok := old[k]; ok {
					if err := take(k); err != nil {
						return err
					}
				}
			}
			continue
		}
		if typedIn(r, base) != "" {
			continue
		}
		if name := typedIn(old, base); name != "" {
			if err := take(name); err != nil {
				return err
			}
		}
	}
	return nil
}

// typedIn returns the typed form of choice element base[x] that obj holds
// (deceasedBoolean for deceased), or "".
func typedIn[V any](obj map[string]V, base string) string {
	for k := range obj {
		if len(k) > len(base) && strings.HasPrefix(k, base) && k[len(base)] >= 'A' && k[len(base)] <= 'Z' {
			return k
		}
	}
	return ""
}

// members splits a JSON object into its members, each name with its value's
// JSON (sharing body's memory): what json.Unmarshal into a
// map[string]json.RawMessage makes of it (a repeated name keeps its last
// value), without copying every value. It reads body once, checking it is
// valid JSON as encoding/json does. ok is false, and the caller decodes body
// with encoding/json, when body is not valid JSON, not an object, nested
// deeper than maxDepth, or has a name written with an escape or in invalid
// UTF-8.
func members(body []byte) (map[string]json.RawMessage, bool) {
	v := validator{b: body, out: make(map[string]json.RawMessage, 16)}
	i := v.space(0)
	if i == len(body) || body[i] != '{' {
		return nil, false
	}
	end := v.value(i, 0)
	if end < 0 || v.bad || v.space(end) != len(body) {
		return nil, false
	}
	return v.out, true
}

// maxDepth is the deepest nesting members reads itself (encoding/json
// refuses more than 10,000 levels; deeper bodies go to it).
const maxDepth = 1000

// validator checks JSON text as encoding/json does; each method returns the
// index after what it read, or -1 where the text is not valid. With out set,
// it also collects the members of the object at depth 0 (members); bad then
// says a member's name is written with an escape or in invalid UTF-8, which
// only encoding/json decodes.
type validator struct {
	b   []byte
	out map[string]json.RawMessage
	bad bool
}

func (v *validator) space(i int) int {
	for i < len(v.b) && (v.b[i] == ' ' || v.b[i] == '\t' || v.b[i] == '\n' || v.b[i] == '\r') {
		i++
	}
	return i
}

// value reads the value at b[i], at nesting depth.
func (v *validator) value(i, depth int) int {
	b := v.b
	if i >= len(b) {
		return -1
	}
	switch c := b[i]; {
	case c == '"':
		return v.str(i)
	case c == '{' || c == '[':
		if depth >= maxDepth {
			return -1
		}
		closing := byte('}')
		if c == '[' {
			closing = ']'
		}
		i = v.space(i + 1)
		if i < len(b) && b[i] == closing {
			return i + 1
		}
		for {
			var name []byte
			if c == '{' {
				if i >= len(b) || b[i] != '"' {
					return -1
				}
				start := i
				if i = v.str(i); i < 0 {
					return -1
				}
				name = b[start+1 : i-1]
				if i = v.space(i); i >= len(b) || b[i] != ':' {
					return -1
				}
				i = v.space(i + 1)
			}
			start := i
			if i = v.value(i, depth+1); i < 0 {
				return -1
			}
			if c == '{' && depth == 0 && v.out != nil {
				if bytes.IndexByte(name, '\\') >= 0 || !utf8.Valid(name) {
					v.bad = true
				} else {
					v.out[string(name)] = b[start:i:i]
				}
			}
			if i = v.space(i); i >= len(b) {
				return -1
			}
			switch b[i] {
			case ',':
				i = v.space(i + 1)
			case closing:
				return i + 1
			default:
				return -1
			}
		}
	case c == 't':
		return v.literal(i, "true")
	case c == 'f':
		return v.literal(i, "false")
	case c == 'n':
		return v.literal(i, "null")
	case c == '-' || c >= '0' && c <= '9':
		return v.number(i)
	}
	return -1
}

func (v *validator) literal(i int, word string) int {
	if len(v.b)-i < len(word) || string(v.b[i:i+len(word)]) != word {
		return -1
	}
	return i + len(word)
}

// number reads -?(0|[1-9][0-9]*)(.[0-9]+)?([eE][+-]?[0-9]+)?
func (v *validator) number(i int) int {
	b := v.b
	if b[i] == '-' {
		i++
	}
	digits := func(i int) int {
		start := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		if i == start {
			return -1
		}
		return i
	}
	if i < len(b) && b[i] == '0' {
		i++
	} else if i = digits(i); i < 0 {
		return -1
	}
	if i < len(b) && b[i] == '.' {
		if i = digits(i + 1); i < 0 {
			return -1
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i = digits(i); i < 0 {
			return -1
		}
	}
	return i
}

// str reads the string whose opening quote is b[i]: no control characters,
// escapes \" \\ \/ \b \f \n \r \t and \u with four hex digits.
func (v *validator) str(i int) int {
	b := v.b
	for i++; i < len(b); i++ {
		switch c := b[i]; {
		case c == '"':
			return i + 1
		case c < 0x20:
			return -1
		case c == '\\':
			i++
			if i >= len(b) {
				return -1
			}
			switch b[i] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
			case 'u':
				if len(b)-i <= 4 {
					return -1
				}
				for _, h := range b[i+1 : i+5] {
					if !('0' <= h && h <= '9' || 'a' <= h && h <= 'f' || 'A' <= h && h <= 'F') {
						return -1
					}
				}
				i += 4
			default:
				return -1
			}
		}
	}
	return -1
}

package pipeline

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

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
// value), without copying every value. ok is false, and the caller decodes
// body with encoding/json, when body is not valid JSON, not an object, or
// has a name written with an escape.
func members(body []byte) (map[string]json.RawMessage, bool) {
	if !json.Valid(body) {
		return nil, false
	}
	i := skipSpace(body, 0)
	if i == len(body) || body[i] != '{' {
		return nil, false
	}
	out := make(map[string]json.RawMessage, 16)
	i = skipSpace(body, i+1)
	if body[i] == '}' {
		return out, true
	}
	for {
		// body is valid JSON: a name, a colon and a value follow.
		end := i + 1
		for body[end] != '"' {
			if body[end] == '\\' {
				return nil, false
			}
			end++
		}
		name := string(body[i+1 : end])
		i = skipSpace(body, end+1) // at the colon
		start := skipSpace(body, i+1)
		i = skipValue(body, start)
		out[name] = body[start:i:i]
		i = skipSpace(body, i)
		if body[i] == '}' {
			return out, true
		}
		i = skipSpace(body, i+1) // past the comma, at the next name
	}
}

func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the end of the valid JSON value that starts at b[i].
func skipValue(b []byte, i int) int {
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch b[i] {
			case '"':
				i = skipString(b, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(b) && b[i] != ',' && b[i] != '}' && b[i] != ']' && b[i] != ' ' && b[i] != '\t' && b[i] != '\n' && b[i] != '\r' {
		i++
	}
	return i
}

// skipString returns the end of the JSON string that starts at b[i].
func skipString(b []byte, i int) int {
	for i++; b[i] != '"'; i++ {
		if b[i] == '\\' {
			i++
		}
	}
	return i + 1
}

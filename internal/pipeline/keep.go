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
	var old map[string]json.RawMessage
	if err := json.Unmarshal(body, &old); err != nil {
		return fmt.Errorf("read stored %s %s: %w", r.Type(), r.ID(), err)
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

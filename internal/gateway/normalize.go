package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"slices"
	"sync"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
)

// normalizer adapts the mapping set (HL7 v2) and the C-CDA reader to the
// pipeline.
type normalizer struct {
	maps  *mapping.Holder
	cache *mapCache
	state *mappingState // counts unmapped codes
}

var _ pipeline.Normalizer = normalizer{}

func (n normalizer) Version() string { return n.maps.Current().Version() }

func (n normalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	set := n.maps.Current()
	res, ok := n.cache.take(sender, set.Version(), m.Raw())
	var err error
	if !ok {
		res, err = set.MapHL7(sender, m)
	}
	if err == nil {
		n.state.countUnmapped(res)
	}
	if err != nil {
		return pipeline.Normalized{}, fmt.Errorf("map: %w", err)
	}
	ev := res.Event
	if ev == "" {
		ev = route.EventOther
	}
	return pipeline.Normalized{Event: ev, Resources: res.Resources}, nil
}

func (n normalizer) NormalizeCCDA(sender string, data []byte) (pipeline.Normalized, error) {
	doc, err := ccda.Parse(data, ccda.DefaultLimits)
	if err != nil {
		return pipeline.Normalized{}, fmt.Errorf("read C-CDA: %w", err)
	}
	rs, _ := doc.ToFHIR(sender)
	// Put the Patient first, as the pipeline expects.
	for i, r := range rs {
		if r.Type() == "Patient" && i > 0 {
			rs[0], rs[i] = rs[i], rs[0]
			break
		}
	}
	out := pipeline.Normalized{Event: route.EventDocument, Resources: rs}
	// A document's medication list is also a medication update, and its
	// immunisations an immunisation update, for the subscribers of those.
	also := map[string]string{"MedicationStatement": route.EventMedication, "MedicationRequest": route.EventMedication,
		"Immunization": route.EventImmunisation}
	for _, r := range rs {
		if typ, ok := also[r.Type()]; ok && !slices.Contains(out.Also, typ) {
			out.Also = append(out.Also, typ)
		}
	}
	return out, nil
}

// mappingCheck runs the mapping at intake so that a message it cannot
// handle is answered AE naming the field and the rule.
type mappingCheck struct {
	maps  *mapping.Holder
	cache *mapCache
}

func (c mappingCheck) Check(sender string, m *hl7.Message) []hl7.ErrorDetail {
	set := c.maps.Current()
	res, err := set.MapHL7(sender, m)
	if err == nil {
		c.cache.put(sender, set.Version(), m.Raw(), res)
		return nil
	}
	var details []hl7.ErrorDetail
	var me *mapping.MapError
	for _, e := range unwrapAll(err) {
		if errors.As(e, &me) {
			code := me.Code
			if code == "" {
				code = "207"
			}
			details = append(details, hl7.ErrorDetail{Location: me.Location, Code: code, Severity: "E", Message: me.Error()})
		}
	}
	if len(details) == 0 {
		details = append(details, hl7.ErrorDetail{Code: "207", Severity: "E", Message: err.Error()})
	}
	return details
}

// unwrapAll flattens errors joined with errors.Join.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// checkFile validates an uploaded file before it is committed, so that the
// sender finds a refused file in failed/ with the reason.
func checkFile(kind string, data []byte) string {
	switch kind {
	case "ccda":
		if _, err := ccda.Parse(data, ccda.DefaultLimits); err != nil {
			return err.Error()
		}
	case "hl7v2", "hl7v2-batch":
		b, err := hl7.SplitBatch(data)
		if err != nil {
			return err.Error()
		}
		for i, raw := range b.Messages {
			if _, err := hl7.Parse(raw); err != nil {
				return fmt.Sprintf("message %d: %v", i+1, err)
			}
		}
	}
	return ""
}

// mapCache hands the mapping result that intake computed (to decide whether
// to answer AE) to processing, which would otherwise map the same message a
// second time moments later. Entries are keyed by sender, mapping version and
// the message bytes, used once, and evicted oldest first; a miss (a restart,
// a reload, a busy queue) just maps again.
type mapCache struct {
	mu    sync.Mutex
	items map[[32]byte]*mapping.Result
	ring  [][32]byte
	next  int
}

func newMapCache(size int) *mapCache {
	return &mapCache{items: make(map[[32]byte]*mapping.Result, size), ring: make([][32]byte, size)}
}

func cacheKey(sender, version string, raw []byte) [32]byte {
	h := sha256.New()
	h.Write([]byte(sender))
	h.Write([]byte{0})
	h.Write([]byte(version))
	h.Write([]byte{0})
	h.Write(raw)
	var k [32]byte
	h.Sum(k[:0])
	return k
}

func (c *mapCache) put(sender, version string, raw []byte, res *mapping.Result) {
	if c == nil {
		return
	}
	k := cacheKey(sender, version, raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.items, c.ring[c.next])
	c.ring[c.next] = k
	c.next = (c.next + 1) % len(c.ring)
	c.items[k] = res
}

func (c *mapCache) take(sender, version string, raw []byte) (*mapping.Result, bool) {
	if c == nil {
		return nil, false
	}
	k := cacheKey(sender, version, raw)
	c.mu.Lock()
	defer c.mu.Unlock()
	res, ok := c.items[k]
	delete(c.items, k)
	return res, ok
}

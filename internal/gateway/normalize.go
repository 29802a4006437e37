package gateway

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// normalizer adapts the mapping set (HL7 v2) and the C-CDA reader to the
// pipeline.
type normalizer struct {
	maps  *mapping.Holder
	cache *mapCache
	docs  *docCache
	state *mappingState // counts unmapped codes
	log   *slog.Logger
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
	if err != nil {
		logDefect(n.log, err)
		return pipeline.Normalized{}, fmt.Errorf("map: %w", err)
	}
	n.state.countUnmapped(res)
	ev := res.Event
	if ev == "" {
		ev = route.EventOther
	}
	notes := notesOf(res)
	// Intake refused what could not be decoded; what is left are warnings,
	// such as a single-byte MSH-18 whose bytes look like UTF-8. They are
	// located and never quote the text.
	if verr := m.Validate(); hl7.OnlyWarnings(verr) {
		for _, w := range unwrapAll(verr) {
			notes = append(notes, store.Note{Kind: store.NoteWarning, Detail: w.Error()})
		}
	}
	// Where the message departs from its type's structure in its version
	// (a segment out of place, one the structure does not have, a required
	// one missing), located, for the analyst who looks after the feed; it
	// does not stop the message. Segment names only, never values.
	if _, sw, serr := m.Structure(); serr == nil {
		for _, w := range sw {
			notes = append(notes, store.Note{Kind: store.NoteWarning, Detail: "structure: " + w.Location() + ": " + w.Detail})
		}
	}
	return pipeline.Normalized{Event: ev, Resources: res.Resources, Notes: notes, Keep: res.Keep}, nil
}

// notesOf turns what a mapping noticed into the envelope's notes: codes no
// table mapped and values left out, by location and rule.
func notesOf(res *mapping.Result) []store.Note {
	var out []store.Note
	for _, u := range res.Unmapped {
		out = append(out, store.Note{Kind: store.NoteUnmappedCode, Detail: fmt.Sprintf(
			"%s: code %q of system %q is in no row of table %s; kept as sent", u.Where, u.Code, u.System, u.Table)})
	}
	for _, w := range res.Warnings {
		out = append(out, store.Note{Kind: store.NoteWarning, Detail: w})
	}
	return out
}

func (n normalizer) NormalizeCCDA(sender string, data []byte) (pipeline.Normalized, error) {
	set := n.maps.Current()
	doc, res, err := n.docs.parse(sender, set.Version(), data)
	if err != nil {
		return pipeline.Normalized{}, fmt.Errorf("read C-CDA: %w", err)
	}
	if res == nil {
		if res, err = set.MapCCDA(sender, doc); err != nil {
			logDefect(n.log, err)
			return pipeline.Normalized{}, fmt.Errorf("map: %w", err)
		}
	}
	n.state.countUnmapped(res)
	rs := res.Resources // the Patient first, as the pipeline expects
	ev := res.Event
	if ev == "" {
		ev = route.EventDocument
	}
	out := pipeline.Normalized{Event: ev, Resources: rs, Notes: notesOf(res)}
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
	log   *slog.Logger
}

func (c mappingCheck) Check(sender string, m *hl7.Message) []hl7.ErrorDetail {
	set := c.maps.Current()
	res, err := set.MapHL7(sender, m)
	if err == nil {
		c.cache.put(sender, set.Version(), m.Raw(), res)
		return nil
	}
	logDefect(c.log, err)
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

// fileCheck validates an uploaded file before it is committed, so that the
// sender finds a file that could never be processed in failed/, with the
// reason in NAME.error.txt, instead of a file accepted into processed/ that
// then fails. HL7 v2 files must parse; a C-CDA document must parse and be
// mapped by the current mapping set for its sender. What it parsed and
// mapped is handed to processing through docs.
type fileCheck struct {
	maps *mapping.Holder
	docs *docCache
	log  *slog.Logger
}

func newFileCheck(maps *mapping.Holder, docs *docCache, log *slog.Logger) *fileCheck {
	return &fileCheck{maps: maps, docs: docs, log: log}
}

// checkFile is intake's FileChecker: the reason a file is refused, or "".
func (c *fileCheck) checkFile(sender, kind string, data []byte) string {
	return c.check(sender, true, kind, data)
}

func (c *fileCheck) check(sender string, known bool, kind string, data []byte) string {
	switch kind {
	case intake.KindCCDA:
		doc, err := ccda.Parse(data, ccda.DefaultLimits)
		if err != nil {
			return err.Error()
		}
		if !known || c.maps == nil {
			c.docs.put(data, doc, "", "", nil)
			return ""
		}
		set := c.maps.Current()
		res, err := set.MapCCDA(sender, doc)
		if err != nil {
			logDefect(c.log, err)
			return "the C-CDA document cannot be mapped: " + mapProblems(err)
		}
		c.docs.put(data, doc, sender, set.Version(), res)
	case intake.KindHL7, intake.KindHL7Batch:
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

// logDefect logs, at error level, where a mapping that panicked was and
// its stack: a defect of hiegw, which the message's status and its ACK
// (application error 207) report without the stack a fix needs. A stack
// holds no message content.
func logDefect(log *slog.Logger, err error) {
	var me *mapping.MapError
	if log != nil && errors.As(err, &me) && me.Stack != nil {
		log.Error("mapping panicked, a defect of hiegw: the message failed with an application error", "field", me.Field,
			"rule", me.Rule, "stack", string(me.Stack))
	}
}

// mapProblems lists a mapping failure's problems, each with its location
// (the XML path of a C-CDA node) and its rule (file:line).
func mapProblems(err error) string {
	var out []string
	for _, e := range unwrapAll(err) {
		var me *mapping.MapError
		if errors.As(e, &me) {
			out = append(out, me.Error())
		} else {
			out = append(out, e.Error())
		}
	}
	return strings.Join(out, "; ")
}

// handoff passes a result computed at intake (to decide the answer) to
// processing, which would otherwise compute it again moments later. Entries
// are used once and evicted oldest first; a miss (a restart, a reload, a
// long queue) just computes again.
type handoff[T any] struct {
	mu    sync.Mutex
	items map[[32]byte]T
	ring  [][32]byte
	next  int
}

func newHandoff[T any](size int) *handoff[T] {
	return &handoff[T]{items: make(map[[32]byte]T, size), ring: make([][32]byte, size)}
}

func (h *handoff[T]) put(k [32]byte, v T) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.items, h.ring[h.next])
	h.ring[h.next] = k
	h.next = (h.next + 1) % len(h.ring)
	h.items[k] = v
}

func (h *handoff[T]) take(k [32]byte) (T, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	v, ok := h.items[k]
	delete(h.items, k)
	return v, ok
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

// mapCache hands intake's mapping results to processing, keyed by sender,
// mapping version and the message bytes.
type mapCache struct{ h *handoff[*mapping.Result] }

func newMapCache(size int) *mapCache { return &mapCache{h: newHandoff[*mapping.Result](size)} }

func (c *mapCache) put(sender, version string, raw []byte, res *mapping.Result) {
	if c != nil {
		c.h.put(cacheKey(sender, version, raw), res)
	}
}

func (c *mapCache) take(sender, version string, raw []byte) (*mapping.Result, bool) {
	if c == nil {
		return nil, false
	}
	return c.h.take(cacheKey(sender, version, raw))
}

// docCache hands the C-CDA document intake parsed (to refuse a broken
// upload), and the mapping it made of it, to processing. Only documents up to
// maxHandedDoc bytes are kept, which bounds its memory; larger ones are
// parsed and mapped again.
type docCache struct{ h *handoff[handedDoc] }

// handedDoc is a parsed document and, when intake mapped it, the result
// with the sender and mapping version it was made for.
type handedDoc struct {
	doc             *ccda.Document
	sender, version string
	res             *mapping.Result
}

const maxHandedDoc = 1 << 20

func newDocCache(size int) *docCache { return &docCache{h: newHandoff[handedDoc](size)} }

// parse returns the document, from the hand-off when intake parsed it, with
// intake's mapping of it when that was made for this sender and mapping
// version (else res is nil).
func (c *docCache) parse(sender, version string, data []byte) (doc *ccda.Document, res *mapping.Result, err error) {
	if c != nil && len(data) <= maxHandedDoc {
		if d, ok := c.h.take(cacheKey("", "ccda", data)); ok {
			if d.res != nil && d.sender == sender && d.version == version {
				res = d.res
			}
			return d.doc, res, nil
		}
	}
	doc, err = ccda.Parse(data, ccda.DefaultLimits)
	return doc, nil, err
}

func (c *docCache) put(data []byte, doc *ccda.Document, sender, version string, res *mapping.Result) {
	if c != nil && len(data) <= maxHandedDoc {
		c.h.put(cacheKey("", "ccda", data), handedDoc{doc: doc, sender: sender, version: version, res: res})
	}
}

package mapping

import (
	"fmt"
	"maps"
	"slices"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/fhir"
)

// C-CDA documents run through the same rules as HL7 v2 messages: a message
// entry matches CCDA (any document), CCDA^<LOINC document type> or CCDA^*;
// its resource rules visit nodes (each: /ClinicalDocument/...) instead of
// segments, and their expressions read the document with the C-CDA
// functions (ccdafuncs.go) relative to the node being visited.

// MapCCDA maps a parsed C-CDA document from sender with the sender's mappings
// (or the default ones). Every resource is validated before it is returned;
// a document that cannot be mapped gives a *MapError whose Location is an
// XML path.
func (s *Set) MapCCDA(sender string, doc *ccda.Document) (_ *Result, err error) {
	if doc == nil || doc.Root() == nil {
		return nil, &MapError{Msg: "empty document", Code: CodeSegmentSequence}
	}
	p := s.profileFor(sender)
	st := statePool.Get().(*state)
	defer st.done(&err)
	st.resetDoc(s, p, sender, doc)
	entry := p.matchDoc(doc.Type.Code)
	if entry == nil {
		return nil, &MapError{Location: "/ClinicalDocument/code", Msg: "no mapping for this document type", Code: CodeUnsupportedType}
	}
	return st.mapEntry(entry)
}

func (st *state) resetDoc(s *Set, p *profile, sender string, doc *ccda.Document) {
	*st = state{set: s, p: p, sender: sender, names: st.names[:0], firsts: st.firsts[:0], occs: st.occs[:0],
		tags: st.tags[:0], ends: st.ends[:0],
		seg: -1, machine: st.machine, produced: st.produced[:0], args: st.args[:0],
		keys: st.keys[:0], check: validator{stack: st.check.stack[:0]},
		doc: doc, root: doc.Root(), node: doc.Root(), elems: st.elems[:0], seen: st.seen}
	clear(st.produced[:cap(st.produced)])
	clear(st.elems[:cap(st.elems)]) // let the last document's elements go
	st.vmEnv = exprEnv{Ctx: st}
}

// docElements lists the document's elements in document order, once per
// document (docElements in xpath.go), for the // steps from the document
// node of each: paths.
func (st *state) docElements() []*etree.Element {
	if len(st.elems) == 0 {
		st.elems = docElements(st.elems, st.root)
	}
	return st.elems
}

// matchDoc finds the entry for a document of LOINC type code: CCDA^code,
// then CCDA^*, then CCDA, sender entries before the default's.
func (p *profile) matchDoc(code string) *msgEntry {
	wants := []string{"CCDA^" + code, "CCDA^*", "CCDA"}
	if code == "" {
		wants = wants[1:]
	}
	return p.find(wants, func(e *msgEntry) bool { return e.ccda })
}

// produceDoc runs one resource rule over a document: once per node its
// each: selects (once, at the root, without each:).
func (st *state) produceDoc(rr *resRule) error {
	if rr.xeach == nil && rr.each != nil {
		return nil // an HL7 v2 rule has nothing to read in a document
	}
	nodes := []*etree.Element{st.root}
	if rr.xeach != nil {
		nodes = nodes[:0]
		for _, n := range rr.xeach.nodesIn(st.root, nil, st.docElements()) {
			nodes = append(nodes, n.e)
		}
	}
	for _, node := range nodes {
		st.node, st.seg = node, -1
		st.where = nil
		if rr.when != nil {
			ok, err := st.evalBool(rr.when)
			if err != nil {
				return st.mapErr(err, rr.typ, rr.when.pos, nil)
			}
			if !ok {
				continue
			}
		}
		keys := st.keys[:0]
		haveKey := false
		for _, p := range rr.id {
			v, err := st.run(p)
			if err != nil {
				return st.mapErr(err, rr.typ+".id", p.pos, nil)
			}
			vs, isList := v.([]any)
			if !isList {
				vs = []any{v}
			}
			for _, x := range vs {
				k := stringOf(x)
				keys = append(keys, k)
				haveKey = haveKey || k != ""
			}
		}
		st.keys = keys
		if !haveKey {
			return &MapError{Location: st.doc.Path(node), Field: rr.typ + ".id", Rule: rr.pos, Code: CodeRequiredMissing,
				Msg: "no source key to identify the resource (required field missing)"}
		}
		res := rr.newResource(fhir.StableID(st.sender, rr.typ, keys...))
		for _, er := range rr.elems {
			if err := st.fill(map[string]any(res), er, rr.typ); err != nil {
				return err
			}
		}
		if prev := st.madeFrom(node, rr); prev != nil {
			// a second rule over the same node adds to what the first made
			fhir.Merge(prev.res, res)
			st.alias(prev, rr, node)
			continue
		}
		if prev := st.sameID(res); prev != nil {
			// Two entries with the same source keys: the one the document lists
			// first keeps the id and its values, whichever rule runs first (as
			// internal/ccda, which reads the sections in document order).
			first := docBefore(node, prev.node)
			if !fhir.Conflict(prev.res, res) {
				// the same fact listed twice (a problem in two sections)
				if first {
					fhir.Merge(res, prev.res)
					clear(prev.res)
					maps.Copy(prev.res, res)
				} else {
					fhir.Merge(prev.res, res)
				}
				st.alias(prev, rr, node)
				continue
			}
			// an identifier reused for different facts: the later one is
			// identified by its position
			later, laterNode, laterRule := res, node, rr
			if first {
				later, laterNode, laterRule = prev.res, prev.node, prev.rr
			}
			later["id"] = fhir.StableID(st.sender, later.Type(), docPathKey(st.doc, laterNode)...)
			if first {
				st.rekey(prev)
			}
			st.warnings = append(st.warnings, fmt.Sprintf("%s from %s has the same source keys as an earlier, different one (rule %s); identified by its position instead",
				later.Type(), st.doc.Path(laterNode), laterRule.pos))
		}
		rr.made(res)
		st.produced = append(st.produced, produced{rule: rr.name, seg: -1, res: res, rr: rr, ref: res.Ref(), node: node})
	}
	st.node = st.root
	return nil
}

// rekey updates the reference of a resource whose id changed, and of the
// nodes merged into it.
func (st *state) rekey(pr *produced) {
	st.reindexID(pr)
	old := pr.ref
	pr.ref = pr.res.Ref()
	for i := range st.aliases {
		if st.aliases[i].ref == old {
			st.aliases[i].ref = pr.ref
		}
	}
}

// docBefore reports whether a comes before b in document order (false when
// either is missing or they are the same node).
func docBefore(a, b *etree.Element) bool {
	if a == nil || b == nil || a == b {
		return false
	}
	pa, pb := ancestry(a), ancestry(b)
	for i := 0; i < len(pa) && i < len(pb); i++ {
		if pa[i] != pb[i] {
			return pa[i].Index() < pb[i].Index()
		}
	}
	return len(pa) < len(pb) // an ancestor comes before what it holds
}

// ancestry lists e's ancestors from the root down to e.
func ancestry(e *etree.Element) []*etree.Element {
	var out []*etree.Element
	for ; e != nil; e = e.Parent() {
		out = append(out, e)
	}
	slices.Reverse(out)
	return out
}

// alias records that rule rr's resource for node is prev's (merged into it),
// so that ref and refs from or to that node find prev.
func (st *state) alias(prev *produced, rr *resRule, node *etree.Element) {
	st.aliases = append(st.aliases, produced{rule: rr.name, seg: -1, res: prev.res, rr: rr, ref: prev.ref, node: node})
}

// docProduced lists what a document's rules made: the resources, then the
// aliases of merged nodes.
func (st *state) docProduced() [2][]produced { return [2][]produced{st.produced, st.aliases} }

// madeFrom returns the resource of rr's type another rule made from node,
// if any.
func (st *state) madeFrom(node *etree.Element, rr *resRule) *produced {
	if x := st.madeIndex(); x != nil {
		return st.firstAt(x.byNode[node], func(pr *produced) bool { return pr.rule != rr.name && pr.res.Type() == rr.typ })
	}
	for _, list := range st.docProduced() {
		for i := range list {
			pr := &list[i]
			if pr.node == node && pr.rule != rr.name && pr.res.Type() == rr.typ {
				return pr
			}
		}
	}
	return nil
}

// sameID returns the resource already made with res's type and id, if any.
func (st *state) sameID(res fhir.Resource) *produced {
	typ, id := res.Type(), res.ID()
	if x := st.madeIndex(); x != nil {
		return st.sameIDIndexed(x, typ, id)
	}
	for i := range st.produced {
		pr := &st.produced[i]
		if pr.res.ID() == id && pr.res.Type() == typ {
			return pr
		}
	}
	return nil
}

// docPathKey is the id key of a node without a usable identifier: the
// document's identity and the node's XML path.
func docPathKey(doc *ccda.Document, node *etree.Element) []string {
	var keys []string
	if doc.ID.Valid() {
		keys = []string{doc.ID.Root, doc.ID.Extension}
	} else {
		keys = []string{"sha1", hexString(doc.SHA1)}
	}
	return append(keys, doc.Path(node))
}

// iterateDoc evaluates an alternative once per node its each: selects from
// the current node.
func (st *state) iterateDoc(a *alt, er *elemRule, field string) (any, error) {
	saved := st.node
	defer func() { st.node = saved }()
	if st.root == nil {
		return nil, nil
	}
	var out []any
	for _, n := range a.xeach.nodesIn(st.root, saved, st.docElements()) {
		st.node = n.e
		v, err := st.evalOne(a, er, field)
		if err != nil {
			return nil, err
		}
		switch x := v.(type) {
		case nil:
		case []any:
			out = append(out, x...)
		default:
			out = append(out, x)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// within reports whether e is anc or inside it.
func within(e, anc *etree.Element) bool {
	for ; e != nil; e = e.Parent() {
		if e == anc {
			return true
		}
	}
	return false
}

// refDoc: ref(rule) in a document: the resource the rule made from the
// nearest node enclosing the current one, else the first it made.
func (st *state) refDoc(rule string) any {
	var best *produced
	if x := st.madeIndex(); x != nil {
		ofRule := func(pr *produced) bool { return pr.rule == rule }
		for e := st.node; e != nil && best == nil; e = e.Parent() {
			best = st.firstAt(x.byNode[e], ofRule)
		}
		if best == nil {
			best = st.firstAt(x.byRule[rule], ofRule)
		}
		if best == nil {
			return nil
		}
		return map[string]any{"reference": best.ref}
	}
	depth := -1
	for _, list := range st.docProduced() {
		for i := range list {
			pr := &list[i]
			if pr.rule != rule {
				continue
			}
			if best == nil {
				best = pr
			}
			if d := enclosingDepth(st.node, pr.node); d >= 0 && (depth < 0 || d < depth) {
				best, depth = pr, d
			}
		}
	}
	if best == nil {
		return nil
	}
	return map[string]any{"reference": best.ref}
}

// enclosingDepth is how many levels up from e the node anc is, or -1.
func enclosingDepth(e, anc *etree.Element) int {
	for d := 0; e != nil; d, e = d+1, e.Parent() {
		if e == anc {
			return d
		}
	}
	return -1
}

// refsDoc: refs(rule) in a document: references to every resource the rule
// made from nodes inside the current one.
func (st *state) refsDoc(rule string) any {
	var out []any
	if x := st.madeIndex(); x != nil {
		for _, r := range x.within(st, rule, st.node) {
			out = append(out, map[string]any{"reference": st.made(r).ref})
		}
		if len(out) == 0 {
			return nil
		}
		return out
	}
	for _, list := range st.docProduced() {
		for _, pr := range list {
			if pr.rule == rule && within(pr.node, st.node) {
				out = append(out, map[string]any{"reference": pr.ref})
			}
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

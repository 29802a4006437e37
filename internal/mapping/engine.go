package mapping

import (
	"encoding/json"
	"errors"
	"fmt"
	"runtime/debug"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/beevik/etree"
	"github.com/expr-lang/expr/vm"
	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/hl7"
)

// Result is what one message maps to.
type Result struct {
	Event     string          // admit, discharge, transfer, register, update, merge, result, medication, immunisation, document, other
	Resources []fhir.Resource // Patient first
	Unmapped  []Unmapped      // codes not found in a code table, kept as sent
	Warnings  []string        // values left out (named by location and rule, never by value)
	// Keep lists, by resource id, the top-level elements the message did
	// not send, for a message entry with "absent: keep": the stored
	// version's values of these stay. An element whose source fields hold
	// the HL7 null "" is not listed, so it is removed. A choice element is
	// named with its [x] suffix (deceased[x]).
	Keep map[string][]string
}

// Unmapped is a code that no code table mapped. The code is kept in the output
// as it was sent, with its original system.
type Unmapped struct {
	Table  string
	System string // the source coding system as sent (e.g. "L", "99LAB"), may be empty
	Code   string
	Where  string // HL7 location (ERR-2 style) or FHIR element and rule
}

// choiceValue is a value for a choice element (value[x]) that carries its type.
type choiceValue struct {
	typ string
	val any
}

type produced struct {
	keep []string // Result.Keep for this resource
	// known: the top-level elements (elemDef.bit) whose values are known
	// to be valid (see state.note), which validation need not walk; whole:
	// every top-level element is (and no choice was set twice), so that
	// validation only checks the id and the required elements.
	known uint64
	whole bool
	rule  string
	seg   int
	res   fhir.Resource
	rr    *resRule
	ref   any            // res.Ref(), made once for every reference to it
	node  *etree.Element // the C-CDA node it was made from (nil for HL7 v2)
}

// state is the evaluation state of one message. Expression functions receive
// it as their context.
type state struct {
	set    *Set
	p      *profile
	sender string
	m      *hl7.Message
	names  []string
	tags   []uint32 // tags[i]: segTag(names[i])
	firsts []int    // firsts[i]: index of the first segment named like segment i
	occs   []int    // occs[i]: 1-based occurrence of segment i among those of its name
	ends   []int32  // ends[i]: scopeEnd(i)+1 once worked out, else 0

	seg              int       // current segment, -1 for none
	fseg, field, rep int       // current repetition being iterated, rep 0 for none
	where            *elemRule // the element being filled, for reports
	// keepAbsent: the message entry keeps unsent elements (absent: keep);
	// trackNull makes segIndex note in sawNull a field holding "".
	keepAbsent, trackNull, sawNull bool
	produced                       []produced
	aliases                        []produced // C-CDA: nodes whose resource was merged into an earlier one (ref finds it)
	unmapped                       []Unmapped
	warnings                       []string
	vmEnv                          exprEnv
	tableTargetsCache              map[string]map[string]bool
	machine                        vm.VM
	args                           []any    // argument stack of the evaluation trees
	keys                           []string // the id keys of the resource being made
	check                          validator
	seen                           map[string]int // mapEntry's ids made, kept for the next message

	// Indexes of a large message or document, made on first use: the scans
	// that serve a few segments cost the square of their number on
	// thousands (an ORU of 4,000 OBX took 1.6 times as long per OBX as one
	// of 100, and repeating references made it worse). segsByTag lists
	// the segments of each tag in order (more than smallMessage segments;
	// kept, emptied, for the next message); mx indexes the resources made
	// (madeindex.go).
	segsByTag map[uint32][]int32
	segsMade  bool // segsByTag lists this message's segments
	mx        *madeIndex

	// comps: the first components of compsRep (ncomps of them), kept by
	// state.component; compsOK is false for none (reset clears it, as a
	// reused message may hold other bytes at the same offsets).
	compsRep hl7.Rep
	comps    [12]hl7.Component
	ncomps   int
	compsOK  bool

	// Values worked out once for the message (memoEntry).
	timeMemos  [8]memoEntry
	ntimeMemos int
	csMemo     [4]memoEntry
	ncsMemo    int
	lastUnit   unitParts // the unit last read by state.unit

	// Known-valid values (HL7 v2 resources): vmakes is the FHIR type the
	// value evalOne just gave is known to be valid as ("" when it is not
	// known); unsure is set by a builder (fnSpec.makes) whose value it
	// cannot vouch for; known and unknown collect the elements of the
	// object being filled (the resource, or an object of elements: inside
	// it) stored with a valid value and with any other (elemDef.bit);
	// twice notes a choice element set twice or an element without a bit.
	vmakes         string
	unsure         bool
	known, unknown uint64
	twice          bool

	// C-CDA documents (ccda.go): the document, its root and the current node.
	doc  *ccda.Document
	root *etree.Element
	node *etree.Element
	// elems: every element of the document in document order, listed on
	// first use (state.docElements); kept (emptied) for the next document.
	elems []*etree.Element
}

// context.Context, so that expr passes the state to our functions.
func (st *state) Deadline() (time.Time, bool) { return time.Time{}, false }
func (st *state) Done() <-chan struct{}       { return nil }
func (st *state) Err() error                  { return nil }
func (st *state) Value(any) any               { return nil }

var statePool = sync.Pool{New: func() any { return &state{} }}

func (st *state) reset(s *Set, p *profile, sender string, m *hl7.Message) {
	*st = state{set: s, p: p, sender: sender, m: m, names: st.names[:0], firsts: st.firsts[:0], occs: st.occs[:0],
		tags: st.tags[:0], ends: st.ends[:0],
		seg: -1, machine: st.machine, produced: st.produced[:0], args: st.args[:0],
		keys: st.keys[:0], check: validator{stack: st.check.stack[:0]}, seen: st.seen,
		segsByTag: st.segsByTag}
	clear(st.produced[:cap(st.produced)]) // let the last message's resources go
	st.clearIndexes()
	n := m.SegmentCount()
	var last map[string]int // a large message's last segment of each name
	if n > smallMessage {
		last = make(map[string]int)
	}
	for i := 0; i < n; i++ {
		name := m.Segment(i).Name()
		st.names = append(st.names, name)
		st.tags = append(st.tags, segTag(name))
		st.ends = append(st.ends, 0)
		f, occ := i, 1
		j := -1
		if last != nil {
			if k, ok := last[name]; ok {
				j = k
			}
			last[name] = i
		} else {
			for j = i - 1; j >= 0 && st.names[j] != name; j-- {
			}
		}
		if j >= 0 {
			f, occ = st.firsts[j], st.occs[j]+1
		}
		st.firsts = append(st.firsts, f)
		st.occs = append(st.occs, occ)
	}
	st.vmEnv = exprEnv{Ctx: st}
}

// smallMessage is the number of segments (and of resources made) up to
// which a message is searched by scanning rather than through the state's
// indexes. A variable so that a test can send every message through the
// indexes.
var smallMessage = 64

// clearIndexes empties the segment index of the last message, keeping its
// lists' room, unless it grew large (a message of many kinds of segment).
func (st *state) clearIndexes() {
	if len(st.segsByTag) > 256 {
		st.segsByTag = nil
	}
	for k, v := range st.segsByTag {
		st.segsByTag[k] = v[:0]
	}
}

// tagged returns the indexes of the segments tagged tag, in order (a large
// message's index, made on first use).
func (st *state) tagged(tag uint32) []int32 {
	if !st.segsMade {
		if st.segsByTag == nil {
			st.segsByTag = make(map[uint32][]int32)
		}
		for i, t := range st.tags {
			st.segsByTag[t] = append(st.segsByTag[t], int32(i))
		}
		st.segsMade = true
	}
	return st.segsByTag[tag]
}

// profileFor returns the sender's profile, or the default.
func (s *Set) profileFor(sender string) *profile {
	if p := s.senders[strings.ToLower(sender)]; p != nil {
		return p
	}
	return s.def
}

func (p *profile) match(code, trigger string) *msgEntry {
	return p.find([]string{code + "^" + trigger, code + "^*", "*"}, func(e *msgEntry) bool { return true })
}

// find returns the entry for the first of wants (most specific first) that
// an entry accepted by use lists: entries are ordered sender first, and
// inside each layer the most specific pattern wins.
func (p *profile) find(wants []string, use func(*msgEntry) bool) *msgEntry {
	var layers [][]*msgEntry
	cut := 0
	for i, e := range p.messages {
		if i > 0 && e.layer() != p.messages[i-1].layer() {
			layers = append(layers, p.messages[cut:i])
			cut = i
		}
	}
	layers = append(layers, p.messages[cut:])
	for _, l := range layers {
		for _, want := range wants {
			for _, e := range l {
				if !use(e) {
					continue
				}
				for _, pat := range e.patterns {
					if pat == want {
						return e
					}
				}
			}
		}
	}
	return nil
}

func (e *msgEntry) layer() string {
	f, _, _ := strings.Cut(e.rule, "/")
	if f == "default" {
		return f
	}
	r := e.rule
	if i := strings.LastIndexByte(r, ':'); i >= 0 {
		r = r[:i]
	}
	return r
}

// MapHL7 maps a parsed HL7 v2 message from sender with the sender's mappings
// (or the default ones). Every resource is validated before it is returned;
// a message that cannot be mapped gives a *MapError.
func (s *Set) MapHL7(sender string, m *hl7.Message) (_ *Result, err error) {
	if m == nil || m.SegmentCount() == 0 {
		return nil, &MapError{Msg: "empty message", Code: CodeSegmentSequence}
	}
	p := s.profileFor(sender)
	st := statePool.Get().(*state)
	defer st.done(&err)
	st.reset(s, p, sender, m)
	// MSH-9 read as m.Header() does, without making the whole header
	msh9 := m.Segment(0).Field(9).Rep(1)
	entry := p.match(msh9.Component(1).String(), msh9.Component(2).String())
	if entry == nil {
		return nil, &MapError{Location: "MSH^1^9", Msg: "no mapping for this message type", Code: CodeUnsupportedType}
	}
	return st.mapEntry(entry)
}

// done ends a mapping with st: it goes back to the pool, unless the mapping
// panicked. A panic is a defect of hiegw (or of a library it uses), not of
// the message or the mapping files; it fails this one message with an
// application error (HL7 code 207: answered AE, stored as failed, and
// reprocessable once hiegw is fixed) instead of stopping the gateway, which
// would then meet the same message again at every start.
func (st *state) done(err *error) {
	r := recover()
	if r == nil {
		statePool.Put(st)
		return
	}
	me := &MapError{Code: CodeApplication, Stack: debug.Stack(),
		Msg: "internal error in hiegw, not in the message or the mapping files (" + defect.Describe(r) + "); reprocess the message once hiegw is fixed"}
	if st.where != nil {
		me.Field, me.Rule = st.where.field, st.where.pos
	}
	*err = me
}

// Covers tells whether a message entry of sender's mappings matches a
// message type (what MapHL7 would refuse with code 200 otherwise).
func (s *Set) Covers(sender, code, trigger string) bool {
	return s.profileFor(sender).match(code, trigger) != nil
}

// mapEntry runs the resource rules of a message entry and checks, orders
// and returns what they made.
func (st *state) mapEntry(entry *msgEntry) (*Result, error) {
	p, sender := st.p, st.sender
	res := &Result{Event: entry.event}
	st.keepAbsent = entry.keepAbsent
	for _, name := range entry.resources {
		rr := p.resources[name]
		if rr == nil {
			continue
		}
		made := len(st.produced) + len(st.aliases)
		if err := st.produce(rr); err != nil {
			return nil, err
		}
		if rr.required && len(st.produced)+len(st.aliases) == made {
			return nil, st.requiredMissing(rr)
		}
	}
	// ids must be unique inside one result
	seen := st.seenIDs()
	for i := range st.produced {
		pr := &st.produced[i]
		k := pr.ref.(string) // Type/id as made
		if n, dup := seen[k]; dup {
			seen[k] = n + 1
			pr.res["id"] = fhir.StableID(sender, pr.res.Type(), pr.res.ID(), strconv.Itoa(n+1))
			st.warnings = append(st.warnings, fmt.Sprintf("%s from %s has the same source keys as an earlier one (rule %s); its id was made unique by position",
				pr.res.Type(), st.prodLoc(pr), pr.rr.pos))
			continue
		}
		seen[k] = 1
	}
	for _, pr := range st.produced {
		if probs := st.check.checkKnown(pr.res, pr.known, pr.whole); len(probs) > 0 {
			return nil, st.invalid(pr, probs)
		}
	}
	res.Resources = make([]fhir.Resource, 0, len(st.produced))
	for _, pr := range st.produced {
		if pr.res.Type() == "Patient" {
			res.Resources = append(res.Resources, pr.res)
		}
	}
	for _, pr := range st.produced {
		if pr.res.Type() != "Patient" {
			res.Resources = append(res.Resources, pr.res)
		}
	}
	for _, pr := range st.produced {
		if len(pr.keep) > 0 {
			if res.Keep == nil {
				res.Keep = map[string][]string{}
			}
			res.Keep[pr.res.ID()] = pr.keep
		}
	}
	res.Unmapped = st.unmapped
	res.Warnings = st.warnings
	return res, nil
}

// seenIDs returns the state's empty map of ids made (reused from one
// message to the next; one grown past 256 ids is let go).
func (st *state) seenIDs() map[string]int {
	if st.seen == nil || len(st.seen) > 256 {
		st.seen = make(map[string]int, max(len(st.produced), 8))
	} else {
		clear(st.seen)
	}
	return st.seen
}

// invalid turns validation problems into a MapError naming the rule.
func (st *state) invalid(pr produced, probs []string) error {
	first := probs[0]
	path, msg, _ := strings.Cut(first, ": ")
	rule := pr.rr.pos
	elem := strings.TrimPrefix(path, pr.res.Type()+".")
	for _, er := range pr.rr.elems {
		top := strings.SplitN(er.path, ".", 2)[0]
		if strings.HasPrefix(elem, strings.TrimSuffix(top, "[x]")) {
			rule = er.pos
			break
		}
	}
	if len(probs) > 1 {
		msg += fmt.Sprintf(" (and %d more problems)", len(probs)-1)
	}
	return &MapError{Location: st.prodLoc(&pr), Field: path, Rule: rule, Msg: "invalid FHIR output: " + msg, Code: CodeApplication}
}

// requiredMissing is the error for a required resource rule that made
// nothing: the segment (or C-CDA path) it reads is missing, or its
// condition held for none. HL7 error 100: a required segment is missing.
func (st *state) requiredMissing(rr *resRule) *MapError {
	e := &MapError{Field: rr.typ, Rule: rr.pos, Code: CodeSegmentSequence}
	switch {
	case rr.each != nil && st.doc == nil && !slices.Contains(st.names, rr.each.seg):
		e.Location = rr.each.seg
		e.Msg = "required segment " + rr.each.seg + " missing: the message has none, and the rule makes its " + rr.typ + " from it"
	case rr.xeach != nil && st.doc != nil:
		e.Msg = "the document has no element the rule makes its required " + rr.typ + " from"
	default:
		e.Msg = "no " + rr.typ + " made, which the rule requires (its condition held for nothing in the message)"
	}
	return e
}

// prodLoc is where a produced resource came from: its segment (OBX^3) or
// its C-CDA node's XML path.
func (st *state) prodLoc(pr *produced) string {
	if pr.node != nil {
		return st.doc.Path(pr.node)
	}
	return st.segLoc(pr.seg)
}

// segLoc is the ERR-2 style location of a segment: "OBX^3".
func (st *state) segLoc(seg int) string {
	if seg < 0 || seg >= len(st.names) {
		return ""
	}
	return st.names[seg] + "^" + strconv.Itoa(st.occurrence(seg))
}

func (st *state) occurrence(seg int) int { return st.occs[seg] }

// produce runs one resource rule.
func (st *state) produce(rr *resRule) error {
	if st.doc != nil {
		return st.produceDoc(rr)
	}
	if rr.xeach != nil {
		return nil // a C-CDA rule has nothing to read in an HL7 message
	}
	segs := []int{-1}
	if rr.each != nil {
		segs = segs[:0]
		for i, n := range st.names {
			if n == rr.each.seg {
				segs = append(segs, i)
			}
		}
	}
	for _, seg := range segs {
		st.seg, st.fseg, st.field, st.rep = seg, -1, 0, 0
		st.where = nil
		if rr.when != nil {
			ok, err := st.evalBool(rr.when)
			if err != nil {
				return st.mapErr(err, rr.typ, rr.when.pos, rr.when.path)
			}
			if !ok {
				continue
			}
		}
		keys := st.keys[:0]
		haveKey := false
		for _, p := range rr.id {
			k, err := st.runString(p)
			if err != nil {
				return st.mapErr(err, rr.typ+".id", p.pos, p.path)
			}
			keys = append(keys, k)
			if k != "" {
				haveKey = true
			}
		}
		st.keys = keys
		if !haveKey {
			loc := st.segLoc(seg)
			if len(rr.id) > 0 && rr.id[0].path != nil {
				loc = st.pathLoc(rr.id[0].path)
			}
			return &MapError{Location: loc, Field: rr.typ + ".id", Rule: rr.pos, Code: CodeRequiredMissing,
				Msg: "no source key to identify the resource (required field missing)"}
		}
		res := rr.newResource(fhir.StableID(st.sender, rr.typ, keys...))
		var nulled []string // top-level elements whose source held ""
		st.trackNull = st.keepAbsent
		st.known, st.unknown, st.twice = 0, 0, false
		for _, er := range rr.elems {
			st.sawNull = false
			if err := st.fill(map[string]any(res), er, rr.typ); err != nil {
				st.trackNull = false
				return err
			}
			if st.sawNull {
				nulled = append(nulled, topName(er))
			}
		}
		st.trackNull = false
		var keep []string
		if st.keepAbsent {
			keep = unsent(res, rr, nulled, st.known|st.unknown)
		}
		rr.made(res)
		st.produced = append(st.produced, produced{rule: rr.name, seg: seg, res: res, rr: rr, ref: res.Ref(), keep: keep,
			known: st.known &^ st.unknown, whole: st.unknown == 0 && !st.twice})
	}
	return nil
}

// unsent lists the top-level elements of rr that res lacks and whose
// source did not hold the HL7 null "" (nulled), once each, in rule order.
// written holds the bits (elemDef.bit) of the top-level elements store
// wrote into res: an element with a bit is present exactly when its bit is
// set there, without looking through res.
func unsent(res fhir.Resource, rr *resRule, nulled []string, written uint64) []string {
	var out []string
	for i, er := range rr.elems {
		name := topName(er)
		if slices.Contains(out, name) || slices.Contains(nulled, name) {
			continue
		}
		if bit := er.steps[0].def.bit; bit != 0 && written&bit != 0 || bit == 0 && hasElement(res, name) {
			continue
		}
		if out == nil {
			out = make([]string, 0, len(rr.elems)-i) // room for the rest: one allocation
		}
		out = append(out, name)
	}
	return out
}

// topName is the top-level element an element rule writes: its JSON name,
// or for a choice element (typed or not) the element's name with [x].
func topName(er *elemRule) string {
	if top := er.steps[0]; top.def.choice {
		return top.def.name
	}
	return er.steps[0].name
}

// hasElement tells whether r holds the top-level element name; for a
// choice element (name[x]) any of its typed forms.
func hasElement(r fhir.Resource, name string) bool {
	base, choice := strings.CutSuffix(name, "[x]")
	if !choice {
		_, ok := r[name]
		return ok
	}
	for k := range r {
		if len(k) > len(base) && strings.HasPrefix(k, base) && k[len(base)] >= 'A' && k[len(base)] <= 'Z' {
			return true
		}
	}
	return false
}

// newResource is fhir.New sized like the last resource the rule made (at
// first for all its elements), so that a resource with more elements than a
// small map holds is not rehashed as it fills, nor given room it never uses.
func (rr *resRule) newResource(id string) fhir.Resource {
	n := int(atomic.LoadInt32(&rr.size))
	if n == 0 {
		n = len(rr.elems) + 2
	}
	r := make(fhir.Resource, n)
	t := rr.typv
	if t == nil {
		t = rr.typ
	}
	r["resourceType"], r["id"] = t, id
	return r
}

// made records the size of a resource the rule made, for newResource.
func (rr *resRule) made(r fhir.Resource) {
	if n := int32(len(r)); atomic.LoadInt32(&rr.size) != n {
		atomic.StoreInt32(&rr.size, n)
	}
}

// run evaluates a program.
func (st *state) run(p *program) (any, error) {
	return runProgram(p, st)
}

// runString evaluates a program for its text (stringOf its value).
func (st *state) runString(p *program) (string, error) {
	switch {
	case p.direct != nil && p.direct.str != nil:
		return p.direct.str(st, p.args)
	case p.tree != nil && p.tree.isStr:
		return st.runTreeString(p)
	}
	v, err := st.run(p)
	if err != nil {
		return "", err
	}
	return stringOf(v), nil
}

func (st *state) evalBool(p *program) (bool, error) {
	v, err := st.run(p)
	if err != nil {
		return false, err
	}
	b, _ := v.(bool)
	return b, nil
}

// mapErr turns an evaluation error into a MapError.
func (st *state) mapErr(err error, field, rule string, path *hpath) error {
	var me *MapError
	if errors.As(err, &me) {
		return me
	}
	var ve *valueError
	if errors.As(err, &ve) {
		return &MapError{Location: ve.loc, Field: field, Rule: rule, Msg: ve.msg, Code: ve.code}
	}
	loc := ""
	if path != nil {
		loc = st.pathLoc(path)
	} else if st.node != nil {
		loc = st.doc.Path(st.node)
	}
	return &MapError{Location: loc, Field: field, Rule: rule, Msg: "expression failed: " + scrub(err.Error()), Code: CodeApplication}
}

// scrub keeps the first line of an expr run-time error: its message names
// types and operations, not values of the message.
func scrub(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// fill evaluates an element rule into obj. Under a repeating element every
// alternative whose condition holds adds its values; under a single element
// the alternatives are fallbacks and the first that yields a value wins.
func (st *state) fill(obj map[string]any, er *elemRule, typ string) error {
	field := er.field
	saved := st.where
	st.where = er
	defer func() { st.where = saved }()
	many := er.steps[len(er.steps)-1].def.many
	var lastErr *MapError
	required, got := false, false
	for i, a := range er.alts {
		required = required || a.required
		v, err := st.evalAlt(a, er, field)
		if err != nil {
			me, ok := err.(*MapError)
			if !ok {
				return err
			}
			if me.Code == CodeDataType && !a.strict && !(a.required && i == len(er.alts)-1) {
				st.warnings = append(st.warnings, fmt.Sprintf("%s: a value was left out: %s at %s (rule %s)", field, me.Msg, me.Location, a.pos))
				lastErr = me
				continue
			}
			return me
		}
		if isEmpty(v) {
			continue
		}
		if err := st.store(obj, er, a, v, field); err != nil {
			return err
		}
		got = true
		if !many {
			return nil
		}
	}
	if required && !got {
		if lastErr != nil {
			return lastErr
		}
		loc := ""
		for _, a := range er.alts {
			if a.value != nil && a.value.path != nil {
				loc = st.pathLoc(a.value.path)
				break
			}
		}
		if loc == "" && st.node != nil {
			loc = st.doc.Path(st.node)
		}
		return &MapError{Location: loc, Field: field, Rule: er.pos, Msg: "required value missing", Code: CodeRequiredMissing}
	}
	return nil
}

// evalAlt evaluates one alternative; nil when its condition fails or it
// yields nothing.
func (st *state) evalAlt(a *alt, er *elemRule, field string) (v any, err error) {
	if a.each != nil {
		return st.iterate(a, er, field) // sets st.vmakes for all it gives
	}
	if a.xeach != nil {
		v, err = st.iterateDoc(a, er, field)
		st.vmakes = ""
		return v, err
	}
	return st.evalOne(a, er, field)
}

// evalOne evaluates one alternative in the current context and sets
// st.vmakes for its value.
func (st *state) evalOne(a *alt, er *elemRule, field string) (any, error) {
	st.vmakes = ""
	if a.when != nil {
		ok, err := st.evalBool(a.when)
		if err != nil {
			return nil, st.mapErr(err, field, a.when.pos, a.when.path)
		}
		if !ok {
			return nil, nil
		}
	}
	var v any
	switch {
	case a.value != nil:
		makes := a.value.makes()
		st.unsure = false
		x, err := st.run(a.value)
		if err != nil {
			return nil, st.mapErr(err, field, a.value.pos, a.value.path)
		}
		if a.value.pruned {
			v = x
		} else {
			v = prune(x)
		}
		if !st.unsure {
			st.vmakes = makes
		}
	case a.hasConst:
		v = a.constT.copyOr(a.constant)
		st.vmakes = a.constMakes
	case a.elems != nil:
		obj := map[string]any{}
		t := er.steps[len(er.steps)-1].typ
		if a.typ != "" {
			t = a.typ
		}
		// the object's own elements are noted as a resource's are: when
		// each is valid, none set twice and the required ones are there,
		// the object is valid as a t
		known, unknown, twice := st.known, st.unknown, st.twice
		st.known, st.unknown, st.twice = 0, 0, false
		var err error
		for _, sub := range a.elems {
			if err = st.fill(obj, sub, t); err != nil {
				break
			}
		}
		whole := st.unknown == 0 && !st.twice
		st.known, st.unknown, st.twice = known, unknown, twice
		if err != nil {
			return nil, err
		}
		st.vmakes = ""
		if len(obj) > 0 {
			v = obj
			if whole && st.doc == nil && hasRequired(fhirTypes[t], obj) {
				st.vmakes = t
			}
		}
	}
	if isEmpty(v) && a.deflt != nil {
		v = a.defltT.copyOr(a.deflt)
		st.vmakes = a.defltMakes
	}
	return v, nil
}

// iterate evaluates an alternative once per segment or repetition of each:.
func (st *state) iterate(a *alt, er *elemRule, field string) (any, error) {
	seg, fseg, fld, rep := st.seg, st.fseg, st.field, st.rep
	defer func() { st.seg, st.fseg, st.field, st.rep = seg, fseg, fld, rep }()
	var out []any
	makes, seen := "", false // st.vmakes of every value given, or "" when they differ
	add := func() error {
		v, err := st.evalOne(a, er, field)
		if err != nil {
			return err
		}
		if !isEmpty(v) {
			if !seen {
				makes, seen = st.vmakes, true
			} else if st.vmakes != makes {
				makes = ""
			}
		}
		switch x := v.(type) {
		case nil:
		case []any:
			out = append(out, x...)
		default:
			out = append(out, x)
		}
		return nil
	}
	defer func() { st.vmakes = makes }()
	if a.each.field == 0 {
		from, to := 0, len(st.names)
		if seg >= 0 {
			from, to = seg+1, st.scopeEnd(seg)
		}
		for i := from; i < to; i++ {
			if st.names[i] != a.each.seg {
				continue
			}
			st.seg, st.fseg, st.field, st.rep = i, -1, 0, 0
			if err := add(); err != nil {
				return nil, err
			}
		}
	} else {
		s := st.segIndex(a.each)
		if s < 0 {
			return nil, nil
		}
		n := st.m.Segment(s).Field(a.each.field).RepCount()
		for r := 1; r <= n; r++ {
			st.seg, st.fseg, st.field, st.rep = s, s, a.each.field, r
			if err := add(); err != nil {
				return nil, err
			}
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// store stores v at the element path of er inside obj.
func (st *state) store(obj map[string]any, er *elemRule, a *alt, v any, field string) error {
	if len(er.steps) > 1 {
		// noted here too: a value left out below still leaves the objects
		// on its path
		st.unknown |= er.steps[0].def.bit
		if er.steps[0].def.bit == 0 {
			st.twice = true
		}
	}
	for _, s := range er.steps[:len(er.steps)-1] {
		next, ok := obj[s.name].(map[string]any)
		if !ok {
			next = map[string]any{}
			obj[s.name] = next
		}
		obj = next
	}
	last := er.steps[len(er.steps)-1]
	name := last.name
	var t string // the type stored
	if last.def.choice && last.typ == "" {
		t = a.typ
		if cv, ok := v.(*choiceValue); ok {
			t, v = cv.typ, cv.val
		}
		if t == "" {
			return &MapError{Field: field, Rule: a.pos, Code: CodeApplication,
				Msg: "a choice element needs type: or a value made with choice(type, value)"}
		}
		if !contains(last.def.types, t) {
			return &MapError{Field: field, Rule: a.pos, Code: CodeApplication,
				Msg: fmt.Sprintf("type %s is not allowed for %s (expected one of: %s)", t, name, strings.Join(last.def.types, ", "))}
		}
		name = last.def.concrete(t)
		if isEmpty(v) {
			return nil
		}
	} else {
		if cv, ok := v.(*choiceValue); ok {
			v = cv.val
		}
		t = last.typ
	}
	if last.def.many {
		st.note(er, t, v)
		cur, _ := obj[name].([]any)
		if _, ok := v.([]any); ok && cur == nil {
			// a fresh list from this evaluation: stored as it is
			if _, present := obj[name]; !present {
				obj[name] = v
				return nil
			}
		}
		if list, ok := v.([]any); ok {
			cur = append(cur, list...)
		} else {
			cur = append(cur, v)
		}
		obj[name] = cur
		return nil
	}
	if list, ok := v.([]any); ok {
		if len(list) > 1 {
			st.warnings = append(st.warnings, fmt.Sprintf("%s holds one value: kept the first of %d (rule %s)", field, len(list), a.pos))
		}
		v = list[0]
	}
	st.note(er, t, v)
	obj[name] = v
	return nil
}

// note records, for a value v stored in an element of the object being
// filled (the resource or an object of elements:) as a typ (the value, or
// for a repeating element the items it adds), whether it is valid: known to
// be (st.vmakes is typ), or found to be by validating it now, as the
// validator would in the resource.
func (st *state) note(er *elemRule, typ string, v any) {
	if st.doc != nil { // a C-CDA resource is walked whole (it may be merged)
		return
	}
	ed := er.steps[0].def
	switch {
	case ed.bit == 0: // beyond the bits: not noted, so never whole
		st.twice = true
		return
	case len(er.steps) != 1:
		st.unknown |= ed.bit
		return
	case ed.choice && (st.known|st.unknown)&ed.bit != 0:
		st.twice = true
	}
	if st.vmakes != "" && st.vmakes == typ || st.check.valid(typ, ed, v) {
		st.known |= ed.bit
	} else {
		st.unknown |= ed.bit
	}
}

// hasRequired tells whether obj holds every required element of td (the
// validator's required check, without its reports).
func hasRequired(td *typeDef, obj map[string]any) bool {
	if td == nil {
		return false
	}
	for _, ed := range td.required {
		if !ed.presentIn(obj) {
			return false
		}
	}
	return true
}

// scopeEnd returns the end (exclusive) of the group that segment i opens: up
// to the next segment of the same name, or of a name that first appears
// before segment i's name does (a parent or an earlier sibling group).
func (st *state) scopeEnd(i int) int {
	if e := st.ends[i]; e > 0 {
		return int(e) - 1
	}
	end := len(st.names)
	fi, tag := st.firsts[i], st.tags[i]
	for j := i + 1; j < len(st.names); j++ {
		if st.tags[j] == tag && st.names[j] == st.names[i] || st.firsts[j] < fi && !isFloating(st.tags[j]) {
			end = j
			break
		}
	}
	st.ends[i] = int32(end) + 1
	return end
}

// floating segments (notes, participations) may follow any segment: they
// never end a group.
var tagNTE, tagPRT, tagROL, tagCTI = segTag("NTE"), segTag("PRT"), segTag("ROL"), segTag("CTI")

// isFloating tells whether the segment tagged tag is a floating one.
func isFloating(tag uint32) bool {
	return tag == tagNTE || tag == tagPRT || tag == tagROL || tag == tagCTI
}

// segIndex resolves the segment a path refers to, from the current one: the
// current segment itself, else the first one of that name inside its group,
// else the nearest one before it; with no current segment, the first in the
// message. SEG[n] is the n-th in the message.
func (st *state) segIndex(p *hpath) int {
	i := st.findSeg(p)
	if st.trackNull && i >= 0 && p.field > 0 && st.m.Segment(i).Field(p.field).IsNull() {
		st.sawNull = true
	}
	return i
}

// findSeg is segIndex without the note of HL7 nulls.
func (st *state) findSeg(p *hpath) int {
	// a path names a segment of three bytes (parsePath), so equal tags
	// are equal names
	tag := segTag(p.seg)
	if len(st.tags) > smallMessage {
		return st.findSegIndexed(p, tag)
	}
	if p.occ > 0 {
		n := 0
		for i, t := range st.tags {
			if t == tag {
				n++
				if n == p.occ {
					return i
				}
			}
		}
		return -1
	}
	if st.seg >= 0 {
		if st.tags[st.seg] == tag {
			return st.seg
		}
		end := st.scopeEnd(st.seg)
		for i := st.seg + 1; i < end; i++ {
			if st.tags[i] == tag {
				return i
			}
		}
		for i := st.seg - 1; i >= 0; i-- {
			if st.tags[i] == tag {
				return i
			}
		}
		return -1
	}
	for i, t := range st.tags {
		if t == tag {
			return i
		}
	}
	return -1
}

// findSegIndexed is findSeg on a large message, through its index of
// segments by tag.
func (st *state) findSegIndexed(p *hpath, tag uint32) int {
	at := st.tagged(tag)
	switch {
	case p.occ > 0:
		if p.occ <= len(at) {
			return int(at[p.occ-1])
		}
		return -1
	case st.seg >= 0:
		if st.tags[st.seg] == tag {
			return st.seg
		}
		// the first after the current segment within its scope, else the
		// last before it
		k, _ := slices.BinarySearch(at, int32(st.seg))
		if k < len(at) && int(at[k]) < st.scopeEnd(st.seg) {
			return int(at[k])
		}
		if k > 0 {
			return int(at[k-1])
		}
		return -1
	case len(at) > 0:
		return int(at[0])
	}
	return -1
}

// repIndex resolves the repetition of a field path; 0 when none matches.
func (st *state) repIndex(seg int, p *hpath) int {
	switch {
	case p.rep > 0:
		return p.rep
	case p.selC > 0:
		for r, rep := range st.m.Segment(seg).Field(p.field).Reps() {
			if rep.Component(p.selC).String() == p.selV {
				return r
			}
		}
		return 0
	case st.rep > 0 && st.fseg == seg && st.field == p.field:
		return st.rep
	}
	return 1
}

// pathLoc is the ERR-2 style location of a path in the current context.
func (st *state) pathLoc(p *hpath) string {
	seg := st.segIndex(p)
	if seg < 0 {
		return p.seg
	}
	loc := st.segLoc(seg)
	if p.field > 0 {
		loc += "^" + strconv.Itoa(p.field)
		if p.comp > 0 {
			r := st.repIndex(seg, p)
			loc += "^" + strconv.Itoa(max(r, 1)) + "^" + strconv.Itoa(p.comp)
			if p.sub > 0 {
				loc += "^" + strconv.Itoa(p.sub)
			}
		}
	}
	return loc
}

// isEmpty reports values that produce no output.
func isEmpty(v any) bool {
	switch x := v.(type) {
	case nil:
		return true
	case string:
		return x == ""
	case []any:
		return len(x) == 0
	case map[string]any:
		return len(x) == 0
	case *choiceValue:
		return x == nil || isEmpty(x.val)
	}
	return false
}

// prune turns expression results into JSON-shaped values and removes empty
// strings, empty objects and empty lists at every depth.
func prune(v any) any {
	switch x := v.(type) {
	case nil:
		return nil
	case string:
		t := strings.TrimSpace(x)
		if t == "" {
			return nil
		}
		if len(t) == len(x) {
			return v // no new box for an unchanged string
		}
		return t
	case map[string]any:
		for k, e := range x {
			p := prune(e)
			switch {
			case isEmpty(p):
				delete(x, k)
			case !samePruned(e, p):
				x[k] = p
			}
		}
		if len(x) == 0 {
			return nil
		}
		return x
	case fhir.Resource:
		return prune(map[string]any(x))
	case []any:
		out := x[:0]
		for _, e := range x {
			if p := prune(e); !isEmpty(p) {
				out = append(out, p)
			}
		}
		if len(out) == 0 {
			return nil
		}
		if len(out) == len(x) {
			return v // same backing array and length: no new box
		}
		return out
	case []string:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if e = strings.TrimSpace(e); e != "" {
				out = append(out, e)
			}
		}
		if len(out) == 0 {
			return nil
		}
		return out
	case []map[string]any:
		out := make([]any, 0, len(x))
		for _, e := range x {
			if p := prune(e); !isEmpty(p) {
				out = append(out, p)
			}
		}
		return prune(out)
	case *choiceValue:
		if x == nil {
			return nil
		}
		x.val = prune(x.val)
		if isEmpty(x.val) {
			return nil
		}
		return x
	case int:
		return x
	case float64, bool, json.Number, int64:
		return x
	}
	return v
}

// samePruned reports whether prune(e) gave back e itself, so that the
// element needs no new assignment. Only the kinds prune returns unchanged
// are recognised; anything else counts as changed.
func samePruned(e, p any) bool {
	switch x := e.(type) {
	case string:
		y, ok := p.(string)
		return ok && len(x) == len(y)
	case map[string]any:
		_, ok := p.(map[string]any)
		return ok // prune changes a map in place
	case *choiceValue:
		y, ok := p.(*choiceValue)
		return ok && x == y
	case json.Number, bool, float64, int, int64:
		return true
	}
	return false
}

// constant is a const: or default: value of a mapping file made ready to
// copy: the keys and values of its objects are kept as lists, so that a
// copy (deepCopy's result) is made without iterating a map.
type constant struct {
	leaf  any         // anything but an object or a list: shared, as deepCopy does
	keys  []string    // an object's keys
	elems []*constant // an object's values, or a list's items
	kind  uint8       // constLeaf, constMap or constList
}

const (
	constLeaf uint8 = iota
	constMap
	constList
)

func newConstant(v any) *constant {
	switch x := v.(type) {
	case map[string]any:
		c := &constant{kind: constMap, keys: make([]string, 0, len(x)), elems: make([]*constant, 0, len(x))}
		for k, e := range x {
			c.keys = append(c.keys, k)
			c.elems = append(c.elems, newConstant(e))
		}
		return c
	case []any:
		c := &constant{kind: constList, elems: make([]*constant, len(x))}
		for i, e := range x {
			c.elems[i] = newConstant(e)
		}
		return c
	}
	return &constant{leaf: v}
}

// copyOr returns a copy of the constant, or deepCopy(v) for a nil one.
func (c *constant) copyOr(v any) any {
	if c == nil {
		return deepCopy(v)
	}
	return c.copy()
}

func (c *constant) copy() any {
	switch c.kind {
	case constMap:
		m := make(map[string]any, len(c.keys))
		for i, k := range c.keys {
			m[k] = c.elems[i].copy()
		}
		return m
	case constList:
		l := make([]any, len(c.elems))
		for i, e := range c.elems {
			l[i] = e.copy()
		}
		return l
	}
	return c.leaf
}

func deepCopy(v any) any {
	switch x := v.(type) {
	case map[string]any:
		m := make(map[string]any, len(x))
		for k, e := range x {
			m[k] = deepCopy(e)
		}
		return m
	case []any:
		l := make([]any, len(x))
		for i, e := range x {
			l[i] = deepCopy(e)
		}
		return l
	}
	return v
}

func stringOf(v any) string {
	switch x := v.(type) {
	case nil:
		return ""
	case string:
		return x
	case json.Number:
		return string(x)
	case map[string]any:
		if r, ok := x["reference"].(string); ok {
			return r
		}
		b, _ := json.Marshal(x)
		return string(b)
	}
	return fmt.Sprint(v)
}

func sortStrings(s []string) { sort.Strings(s) }

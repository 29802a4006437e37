package mapping

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"github.com/hiegw/hiegw/internal/hl7"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The functions mapping expressions may call. Each receives the evaluation
// state (hidden; expr passes it as a context.Context) and is pure: it reads
// the message and the code tables, and never does I/O.

type argKind int

const (
	argOther argKind = iota
	argPath
	argTable
	argRule
	argType
	argXPath // a C-CDA path (xpath.go)
	argOID   // a code system OID
	argDoc   // the name of a document fact (docinfo)
)

// sourceKind is what a function reads: HL7 v2 (path arguments), C-CDA
// (C-CDA path arguments) or neither.
type sourceKind uint8

const (
	srcAny sourceKind = iota
	srcHL7
	srcCCDA
)

func (f *fnSpec) source() sourceKind {
	for _, a := range f.args {
		switch a {
		case argPath:
			return srcHL7
		case argXPath, argDoc:
			return srcCCDA
		}
	}
	return srcAny
}

type fnSpec struct {
	name     string
	args     []argKind
	types    []any
	lists    bool // paths may use [*]: the function then returns a list
	segments bool // paths may name a bare segment
	impl     func(st *state, a []any) (any, error)
	result   resultKind // what every signature returns, for the evaluation trees (direct.go)
	// str, when set, is impl for callers that want the string itself (no
	// interface value to allocate).
	str func(st *state, a []any) (string, error)
	// eachPath: impl returns st.each of its first (path) argument, so that
	// for a [*] path its value is buildEach's list, already pruned.
	eachPath bool
	// clean: impl's value is always one that prune gives back unchanged
	// (nil, or strings already trimmed and not empty, in objects and lists
	// that are not empty), so that a direct call of it skips prune.
	clean bool
	// pure: with a path parsed at load time the function can neither fail
	// nor report anything, and reads nothing but the message, so that a
	// call of it whose value is not used need not be made (unless HL7
	// nulls are being noted, state.trackNull); see tree.pureFrom.
	pure bool
	// makes: a clean function whose value (each item of a list) is a valid
	// FHIR value of this type unless it sets state.unsure, so that the
	// validator need not walk it again when it is stored as this type.
	makes string
}

func (f *fnSpec) argKind(i int) argKind {
	if i < len(f.args) {
		return f.args[i]
	}
	return argOther
}

type (
	fnPath      = func(context.Context, string) any
	fnPathStr   = func(context.Context, string, string) any
	fnPathStr2  = func(context.Context, string, string, string) any
	fnStrPath   = func(context.Context, string) string
	fnTable     = func(context.Context, string, string) string
	fnTableSys  = func(context.Context, string, string, string) string
	fnVariadicS = func(context.Context, ...string) string
)

var funcs = append([]*fnSpec{
	{name: "v", pure: true, args: []argKind{argPath}, types: []any{new(fnStrPath)}, impl: boxed(fnVString), str: fnVString},
	{name: "exists", args: []argKind{argPath}, segments: true, types: []any{new(func(context.Context, string) bool)}, impl: fnExists},
	{name: "count", args: []argKind{argPath}, segments: true, types: []any{new(func(context.Context, string) int)}, impl: fnCount},
	{name: "all", args: []argKind{argPath}, lists: true, types: []any{new(func(context.Context, string) []any)}, impl: fnAll},
	{name: "text", args: []argKind{argPath}, lists: true, types: []any{new(fnStrPath)}, impl: fnText},
	{name: "first", types: []any{new(fnVariadicS)}, impl: fnFirst},
	{name: "list", types: []any{new(func(context.Context, ...any) []any)}, impl: fnList},
	{name: "sender", types: []any{new(func(context.Context) string)}, impl: func(st *state, _ []any) (any, error) { return st.sender, nil }},

	{name: "datetime", eachPath: true, clean: true, makes: "dateTime", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: timeFn(kindDateTime)},
	{name: "date", eachPath: true, clean: true, makes: "date", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: timeFn(kindDate)},
	{name: "instant", eachPath: true, clean: true, makes: "instant", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: timeFn(kindInstant)},
	{name: "integer", clean: true, args: []argKind{argPath}, types: []any{new(fnPath)}, impl: fnInteger},
	{name: "decimal", clean: true, args: []argKind{argPath}, types: []any{new(fnPath)}, impl: fnDecimal},

	{name: "cx", eachPath: true, clean: true, makes: "Identifier", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(cx)},
	{name: "key", pure: true, args: []argKind{argPath}, lists: true, types: []any{new(fnStrPath)}, impl: boxed(fnKeyString), str: fnKeyString},
	{name: "ei", eachPath: true, clean: true, makes: "Identifier", args: []argKind{argPath}, lists: true, types: []any{new(fnPath), new(fnPathStr)}, impl: fnEI},
	{name: "hd", pure: true, args: []argKind{argPath}, types: []any{new(fnStrPath)}, impl: boxed(fnHDString), str: fnHDString},
	{name: "xpn", eachPath: true, clean: true, makes: "HumanName", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(xpn)},
	{name: "xad", eachPath: true, clean: true, makes: "Address", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(xad)},
	{name: "xtn", eachPath: true, clean: true, makes: "ContactPoint", args: []argKind{argPath}, lists: true, types: []any{new(fnPath), new(fnPathStr)}, impl: fnXTN},
	{name: "xcn", eachPath: true, clean: true, makes: "Reference", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(xcn)},
	{name: "xon", eachPath: true, clean: true, makes: "Reference", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(xon)},
	{name: "pl", eachPath: true, clean: true, makes: "Reference", args: []argKind{argPath}, lists: true, types: []any{new(fnPath)}, impl: cellFn(pl)},
	{name: "cwe", eachPath: true, clean: true, makes: "CodeableConcept", args: []argKind{argPath, argTable}, lists: true, types: []any{new(fnPath), new(fnPathStr)}, impl: fnCWE},
	{name: "coding", eachPath: true, clean: true, makes: "Coding", args: []argKind{argPath, argTable}, lists: true, types: []any{new(fnPath), new(fnPathStr), new(fnPathStr2)}, impl: fnCoding},
	{name: "quantity", clean: true, makes: "Quantity", args: []argKind{argPath, argPath}, types: []any{new(fnPath), new(fnPathStr)}, impl: fnQuantity},
	{name: "sn", clean: true, args: []argKind{argPath, argPath}, types: []any{new(fnPath), new(fnPathStr)}, impl: fnSN},
	{name: "ed", args: []argKind{argPath}, types: []any{new(fnPath)}, impl: cellFn(ed)},
	{name: "refrange", clean: true, makes: "Observation.referenceRange", args: []argKind{argPath, argPath}, types: []any{new(fnPath), new(fnPathStr)}, impl: fnRefRange},

	{name: "lookup", args: []argKind{argTable}, types: []any{new(fnTable), new(fnTableSys)}, impl: lookupFn(lookupEmpty)},
	{name: "code", args: []argKind{argTable}, types: []any{new(fnTable), new(fnTableSys)}, impl: lookupFn(lookupKeep)},
	{name: "has", args: []argKind{argTable}, types: []any{new(func(context.Context, string, string) bool), new(func(context.Context, string, string, string) bool)}, impl: fnHas},
	{name: "refid", args: []argKind{argRule}, types: []any{new(func(context.Context, string) string)}, impl: fnRefID},
	{name: "display", args: []argKind{argTable}, types: []any{new(fnTable), new(fnTableSys)}, impl: lookupFn(lookupDisplay)},

	{name: "ref", clean: true, makes: "Reference", args: []argKind{argRule}, types: []any{new(func(context.Context, string) any)}, impl: refOrRefs(false)},
	{name: "refs", clean: true, makes: "Reference", args: []argKind{argRule}, types: []any{new(func(context.Context, string) any)}, impl: refOrRefs(true)},
	{name: "choice", args: []argKind{argType}, types: []any{new(func(context.Context, string, any) any)}, impl: fnChoice},
}, ccdaFuncs...)

var funcByName = func() map[string]*fnSpec {
	m := map[string]*fnSpec{}
	for _, f := range funcs {
		f.result = resultOf(f.types)
		m[f.name] = f
	}
	return m
}()

// runProgram runs p with the state's VM and a memory budget.
func runProgram(p *program, st *state) (any, error) {
	if p.direct != nil {
		return p.direct.impl(st, p.args)
	}
	if p.tree != nil {
		return st.runTree(p)
	}
	return st.runVM(p)
}

// runVM runs p with expr's VM.
func (st *state) runVM(p *program) (any, error) {
	st.machine.MemoryBudget = memoryBudget
	return st.machine.Run(p.prog, st.vmEnv)
}

// --- paths and cells -------------------------------------------------------

// path returns the parsed path of a string argument (parsed at load time
// for constants, here for computed ones).
func (st *state) path(a any) (*hpath, error) {
	if hp, ok := a.(*hpath); ok { // resolved at load time (resolvePaths)
		return hp, nil
	}
	s, _ := a.(string)
	if p := st.set.paths[s]; p != nil {
		return p, nil
	}
	p, _, err := parsePath(s)
	if err != nil {
		return nil, &valueError{msg: "computed path: " + err.Error(), code: CodeApplication}
	}
	return p, nil
}

// cell is one repetition of a field (or one component of it) to read a
// datatype from. With comp set, the datatype's parts are subcomponents.
type cell struct {
	st                   *state
	seg, field, rep      int
	comp, sub            int
	segName              string
	occ                  int
	fieldPath, fieldComp int
	r                    hl7.Rep // the repetition, found once for all its parts (see withRep)
}

// withRep sets c.r from the message.
func (c cell) withRep() cell {
	c.r = c.st.m.Segment(c.seg).Field(c.field).Rep(max(c.rep, 1))
	return c
}

// repValue is hl7.Segment.Value for a repetition already found, with the
// repetition's components found once for all the parts read from it
// (state.component).
func (st *state) repValue(r hl7.Rep, comp, sub int) string {
	if comp == 0 {
		return r.Text()
	}
	c := st.component(r, comp)
	if sub == 0 {
		return c.String()
	}
	return c.Sub(sub)
}

// component is r.Component(i): the components of the last repetition read
// are kept (the first len(state.comps) of them), so that reading the parts
// of a datatype one after the other splits the repetition once instead of
// scanning it from its start for each part.
func (st *state) component(r hl7.Rep, i int) hl7.Component {
	if !st.compsOK || r != st.compsRep {
		st.compsRep, st.compsOK, st.ncomps = r, true, 0
		for _, c := range r.Components() {
			if st.ncomps == len(st.comps) {
				break
			}
			st.comps[st.ncomps] = c
			st.ncomps++
		}
	}
	switch {
	case i >= 1 && i <= st.ncomps:
		return st.comps[i-1]
	case st.ncomps == len(st.comps) || st.ncomps == 0:
		return r.Component(i) // beyond the ones kept, or an empty repetition
	}
	return hl7.Component{}
}

// part returns component i (subcomponent j) of the datatype in the cell.
func (c cell) part(i, j int) string {
	var v string
	switch {
	case c.comp == 0:
		v = c.st.repValue(c.r, i, j)
	case c.sub == 0:
		if j > 1 {
			return ""
		}
		v = c.st.repValue(c.r, c.comp, i)
	default:
		if i > 1 || j > 1 {
			return ""
		}
		v = c.st.repValue(c.r, c.comp, c.sub)
	}
	if v == `""` {
		return ""
	}
	return strings.TrimSpace(v)
}

func (c cell) p(i int) string { return c.part(i, 0) }

// loc is the ERR-2 style location of the cell: SEG^seq^field^rep[^comp].
func (c cell) loc() string {
	l := c.segName + "^" + strconv.Itoa(c.occ) + "^" + strconv.Itoa(c.field) + "^" + strconv.Itoa(c.rep)
	if c.comp > 0 {
		l += "^" + strconv.Itoa(c.comp)
	}
	return l
}

// locAt is loc for part 0, else locPart(part).
func (c cell) locAt(part int) string {
	if part == 0 {
		return c.loc()
	}
	return c.locPart(part)
}

func (c cell) locPart(i int) string {
	if c.comp > 0 {
		return c.loc() + "^" + strconv.Itoa(i)
	}
	return c.loc() + "^" + strconv.Itoa(i)
}

// cells resolves a path to the cells it designates: one, or with [*] every
// repetition. ok is false when the segment or repetition is absent.
func (st *state) cells(p *hpath) []cell { return st.appendCells(nil, p) }

// appendCells is cells appending to out, so that callers can keep the
// cells on their stack.
func (st *state) appendCells(out []cell, p *hpath) []cell {
	seg := st.segIndex(p)
	if seg < 0 || p.field == 0 {
		return out
	}
	base := cell{st: st, seg: seg, field: p.field, comp: p.comp, sub: p.sub, segName: p.seg, occ: st.occurrence(seg)}
	if p.repAll {
		// in one pass: Rep(r) for each r would rescan the field from its
		// start, and a field of many repetitions would cost their square
		for r, rep := range st.m.Segment(seg).Field(p.field).Reps() {
			c := base
			c.rep, c.r = r, rep
			out = append(out, c)
		}
		return out
	}
	r := st.repIndex(seg, p)
	if r == 0 {
		return out
	}
	base.rep = r
	return append(out, base.withRep())
}

// filledCell resolves a path argument and returns its cell when the cell
// holds a value (ok is false for an absent or empty one).
func (st *state) filledCell(arg any) (c cell, ok bool, err error) {
	p, err := st.path(arg)
	if err != nil {
		return cell{}, false, err
	}
	c, ok = st.cell(p)
	return c, ok && c.p(1) != "", nil
}

func (st *state) cell(p *hpath) (cell, bool) {
	seg := st.segIndex(p)
	if seg < 0 || p.field == 0 {
		return cell{}, false
	}
	if p.repAll {
		if st.m.Segment(seg).Field(p.field).RepCount() == 0 {
			return cell{}, false
		}
		return cell{st: st, seg: seg, field: p.field, rep: 1, comp: p.comp, sub: p.sub, segName: p.seg, occ: st.occurrence(seg)}.withRep(), true
	}
	r := st.repIndex(seg, p)
	if r == 0 {
		return cell{}, false
	}
	// filled in place: cell is large enough for its copies to show
	c := cell{st: st, seg: seg, field: p.field, rep: r, comp: p.comp, sub: p.sub, segName: p.seg, occ: st.occs[seg]}
	c.r = st.m.Segment(seg).Field(p.field).Rep(r)
	return c, true
}

// value reads a path as a string: the first component unless one is named.
func (st *state) value(p *hpath) string {
	c, ok := st.cell(p)
	if !ok {
		return ""
	}
	if c.comp == 0 {
		return c.part(1, 0)
	}
	return c.part(1, 0)
}

// cellFn adapts a datatype builder to a function of one path argument,
// returning a list for [*] paths.
func cellFn(build func(c cell) (any, error)) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		p, err := st.path(a[0])
		if err != nil {
			return nil, err
		}
		return st.each(p, build)
	}
}

func (st *state) each(p *hpath, build func(c cell) (any, error)) (any, error) {
	if !p.repAll {
		c, ok := st.cell(p)
		if !ok {
			return nil, nil
		}
		v, err := build(c)
		if m, isMap := v.(map[string]any); isMap && m == nil {
			v = nil // obj's nil map: nil, as prune gives it
		}
		return v, err
	}
	var buf [8]cell
	return buildEach(st.appendCells(buf[:0], p), build)
}

// buildEach builds one value per item, in order, leaving out empty ones; nil
// when none is left.
func buildEach[T any](items []T, build func(T) (any, error)) (any, error) {
	out := make([]any, 0, len(items))
	for _, it := range items {
		v, err := build(it)
		if err != nil {
			return nil, err
		}
		if v = prune(v); !isEmpty(v) {
			out = append(out, v)
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// --- basic access ----------------------------------------------------------

// boxed is a function for the expression engine made from its string form.
func boxed(f func(*state, []any) (string, error)) func(*state, []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		s, err := f(st, a)
		if err != nil {
			return nil, err
		}
		return s, nil
	}
}

func fnVString(st *state, a []any) (string, error) {
	p, err := st.path(a[0])
	if err != nil {
		return "", err
	}
	return st.value(p), nil
}

func fnExists(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	if p.field == 0 {
		return st.segIndex(p) >= 0, nil
	}
	c, ok := st.cell(p)
	if !ok {
		return false, nil
	}
	if c.comp == 0 {
		v := st.m.Segment(c.seg).Value(c.field, c.rep, 0, 0)
		return v != "" && v != `""` && strings.Trim(v, "^&~ ") != "", nil
	}
	return c.part(1, 0) != "", nil
}

func fnCount(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	if p.field == 0 {
		n := 0
		for _, nm := range st.names {
			if nm == p.seg {
				n++
			}
		}
		return n, nil
	}
	seg := st.segIndex(p)
	if seg < 0 {
		return 0, nil
	}
	return st.m.Segment(seg).Field(p.field).RepCount(), nil
}

func fnAll(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	q := *p
	q.repAll = true
	out := []any{}
	for _, c := range st.cells(&q) {
		if v := c.part(1, 0); v != "" {
			out = append(out, v)
		}
	}
	return out, nil
}

func fnText(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	q := *p
	q.repAll = true
	var parts []string
	for _, c := range st.cells(&q) {
		var v string
		if c.comp == 0 {
			v = st.m.Segment(c.seg).Value(c.field, c.rep, 0, 0)
		} else {
			v = c.part(1, 0)
		}
		if v != "" && v != `""` {
			parts = append(parts, v)
		}
	}
	return strings.TrimSpace(strings.Join(parts, "\n")), nil
}

func fnFirst(_ *state, a []any) (any, error) {
	for _, x := range a {
		if s, _ := x.(string); strings.TrimSpace(s) != "" {
			return s, nil
		}
	}
	return "", nil
}

func fnList(_ *state, a []any) (any, error) {
	out := []any{}
	for _, x := range a {
		switch v := prune(x).(type) {
		case nil:
		case []any:
			out = append(out, v...)
		default:
			out = append(out, v)
		}
	}
	return out, nil
}

// --- dates and numbers -----------------------------------------------------

type timeKind int

const (
	kindDateTime timeKind = iota
	kindDate
	kindInstant
)

// convertTime turns an HL7 v2 date or time into FHIR's form for k (local
// times in loc); an instant must be precise to the second.
func convertTime(k timeKind, v string, loc *time.Location) (string, error) {
	if k == kindDate {
		return fhirDate(v)
	}
	out, err := fhirDateTime(v, loc)
	if err == nil && k == kindInstant && !strings.Contains(out, "T") {
		err = fmt.Errorf("not precise to the second, as an instant must be")
	}
	return out, err
}

func timeFn(k timeKind) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		p, err := st.path(a[0])
		if err != nil {
			return nil, err
		}
		return st.each(p, func(c cell) (any, error) {
			v := c.p(1)
			if v == "" {
				return nil, nil
			}
			if m := st.timeMemo(k, v); m != nil {
				if !m.ok {
					st.unsure = true
				}
				return m.v, nil
			}
			out, err := convertTime(k, v, st.p.loc)
			if err != nil {
				return nil, &valueError{loc: c.loc(), msg: err.Error(), code: CodeDataType}
			}
			x, ok := st.rememberTime(k, v, out)
			if !ok {
				st.unsure = true
			}
			return x, nil
		})
	}
}

// timeValid tells whether out, a conversion as kind, is a valid FHIR value
// of the type the function makes (fnSpec.makes), as the validator checks it.
func timeValid(kind timeKind, out string) bool {
	switch kind {
	case kindDate:
		return validDate(out)
	case kindInstant:
		return validInstant(out)
	}
	return validDateTime(out)
}

// memoEntry is a value worked out once for the message: a date or time
// converted from its HL7 form, a coding system's URI; v is the value as
// an interface value, shared by every resource that holds it (strings
// cannot change).
type memoEntry struct {
	kind      timeKind
	name, sys string
	v         any
	ok        bool // a conversion: valid as its type (timeValid); a system: a URI without spaces
}

// timeMemo returns the conversion of v as kind made earlier for the message,
// nil if there is none.
func (st *state) timeMemo(kind timeKind, v string) *memoEntry {
	for i := range st.timeMemos[:st.ntimeMemos] {
		if m := &st.timeMemos[i]; m.kind == kind && m.name == v {
			return m
		}
	}
	return nil
}

// rememberTime keeps out, the conversion of v as kind, for the message
// (the first ones only) and returns it as an interface value, with whether
// it is valid as its type.
func (st *state) rememberTime(kind timeKind, v, out string) (any, bool) {
	var x any = out
	ok := timeValid(kind, out)
	if st.ntimeMemos < len(st.timeMemos) {
		st.timeMemos[st.ntimeMemos] = memoEntry{kind: kind, name: v, v: x, ok: ok}
		st.ntimeMemos++
	}
	return x, ok
}

func fnInteger(st *state, a []any) (any, error) {
	c, ok, err := st.filledCell(a[0])
	if err != nil || !ok {
		return nil, err
	}
	n, err := strconv.ParseInt(strings.TrimPrefix(c.p(1), "+"), 10, 64)
	if err != nil {
		return nil, &valueError{loc: c.loc(), msg: "not an integer", code: CodeDataType}
	}
	return json.Number(strconv.FormatInt(n, 10)), nil
}

func fnDecimal(st *state, a []any) (any, error) {
	c, ok, err := st.filledCell(a[0])
	if err != nil || !ok {
		return nil, err
	}
	d, err := fhirDecimal(c.p(1))
	if err != nil {
		return nil, &valueError{loc: c.loc(), msg: err.Error(), code: CodeDataType}
	}
	return d, nil
}

// --- identifiers -----------------------------------------------------------

const (
	sysV20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"
	sysUCUM   = "http://unitsofmeasure.org"
)

// hdSystem turns an HD (namespace id, universal id, universal id type) into
// a system URI: urn:oid: for ISO OIDs, urn:uuid: for UUIDs, the id itself for
// URIs, a mapping from the assigning-authority table, else
// urn:hiegw:aa:<namespace> (or <universal id>), percent-encoded.
func (st *state) hdSystem(ns, uid, typ string) string {
	switch strings.ToUpper(typ) {
	case "ISO":
		if uid != "" {
			return "urn:oid:" + uid
		}
	case "UUID", "GUID":
		if uid != "" {
			return "urn:uuid:" + strings.ToLower(uid)
		}
	case "URI", "URL":
		if uid != "" {
			return uid
		}
	}
	if t := st.p.tables["assigning-authority"]; t != nil {
		for _, k := range []string{ns, uid} {
			if k == "" {
				continue
			}
			if e, ok := t.lookup("", k); ok {
				return e.Code
			}
		}
	}
	switch {
	case ns != "":
		return "urn:hiegw:aa:" + url.PathEscape(ns)
	case uid != "":
		return "urn:hiegw:aa:" + url.PathEscape(uid)
	}
	return ""
}

func v2Concept(system, code string) map[string]any {
	if code == "" {
		return nil
	}
	return map[string]any{"coding": []any{map[string]any{"system": system, "code": code}}}
}

func obj(kv ...any) map[string]any {
	m := make(map[string]any, len(kv)/2)
	for i := 0; i+1 < len(kv); i += 2 {
		if !isEmpty(kv[i+1]) {
			m[kv[i].(string)] = kv[i+1]
		}
	}
	if len(m) == 0 {
		return nil
	}
	return m
}

// strs lists the strings of ss that are not empty (nil for none), in a
// list made once.
func strs(ss ...string) []any {
	n := 0
	for _, s := range ss {
		if s != "" {
			n++
		}
	}
	if n == 0 {
		return nil
	}
	out := make([]any, 0, n)
	for _, s := range ss {
		if s != "" {
			out = append(out, s)
		}
	}
	return out
}

// cx: CX → Identifier.
func cx(c cell) (any, error) {
	value := c.p(1)
	if value == "" {
		return nil, nil
	}
	system, typ := c.st.hdSystem(c.part(4, 1), c.part(4, 2), c.part(4, 3)), c.p(5)
	if !codingOK(system, typ) {
		c.st.unsure = true
	}
	return obj("value", value, "system", system, "type", v2Concept(sysV20203, typ)), nil
}

// key(path): "system|value" of a CX, for resource ids; with [*], of the
// first repetition that has a value.
func fnKeyString(st *state, a []any) (string, error) {
	p, err := st.path(a[0])
	if err != nil {
		return "", err
	}
	var buf [8]cell
	for _, c := range st.appendCells(buf[:0], p) {
		if c.p(1) != "" {
			return st.hdSystem(c.part(4, 1), c.part(4, 2), c.part(4, 3)) + "|" + c.p(1), nil
		}
	}
	return "", nil
}

// EI → Identifier, with an optional v2-0203 type code (PLAC, FILL, ...).
func fnEI(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	typ := ""
	if len(a) > 1 {
		typ, _ = a[1].(string)
		typ = strings.TrimSpace(typ) // as prune would
	}
	return st.each(p, func(c cell) (any, error) {
		if c.p(1) == "" {
			return nil, nil
		}
		system := st.hdSystem(c.p(2), c.p(3), c.p(4))
		if !codingOK(system, typ) {
			st.unsure = true
		}
		return obj("value", c.p(1), "system", system, "type", v2Concept(sysV20203, typ)), nil
	})
}

func fnHDString(st *state, a []any) (string, error) {
	p, err := st.path(a[0])
	if err != nil {
		return "", err
	}
	c, ok := st.cell(p)
	if !ok {
		return "", nil
	}
	return st.hdSystem(c.p(1), c.p(2), c.p(3)), nil
}

// --- names, addresses, telecoms ----------------------------------------------

func xpn(c cell) (any, error) {
	family := c.part(1, 1)
	if family == "" && c.comp == 0 {
		family = c.p(1)
	}
	use := c.st.mapped("name-use", "", c.p(7), c, 7)
	if !boundOK(nameUse, use) {
		c.st.unsure = true
	}
	return obj("family", family, "given", strs(c.p(2), c.p(3)), "suffix", strs(c.p(4), c.p(6)),
		"prefix", strs(c.p(5)), "use", use), nil
}

func xad(c cell) (any, error) {
	street := strings.TrimSpace(joinNonEmpty(" ", c.part(1, 1), c.part(1, 2), c.part(1, 3)))
	use := c.st.mapped("address-use", "", c.p(7), c, 7)
	if !boundOK(addressUse, use) {
		c.st.unsure = true
	}
	return obj("line", strs(street, c.p(2)), "city", c.p(3), "state", c.p(4), "postalCode", c.p(5),
		"country", c.p(6), "district", c.p(9), "use", use), nil
}

// joinNonEmpty joins the strings of ss that are not empty with sep: one of
// them is given back as it is, several are joined in one allocation.
func joinNonEmpty(sep string, ss ...string) string {
	n, size, one := 0, 0, ""
	for _, s := range ss {
		if s != "" {
			n++
			size += len(s)
			one = s
		}
	}
	switch n {
	case 0:
		return ""
	case 1:
		return one
	}
	var b strings.Builder
	b.Grow(size + len(sep)*(n-1))
	for _, s := range ss {
		if s == "" {
			continue
		}
		if b.Len() > 0 {
			b.WriteString(sep)
		}
		b.WriteString(s)
	}
	return b.String()
}

func fnXTN(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	defUse := ""
	if len(a) > 1 {
		defUse, _ = a[1].(string)
		defUse = strings.TrimSpace(defUse) // as prune would
	}
	return st.each(p, func(c cell) (any, error) { return xtn(c, defUse), nil })
}

func xtn(c cell, defUse string) any {
	equip := strings.ToUpper(c.p(3))
	email := c.p(4)
	var value, system string
	switch {
	case email != "" || equip == "INTERNET" || equip == "X.400" || strings.ToUpper(c.p(2)) == "NET":
		value, system = email, "email"
		if value == "" {
			value = c.p(1)
		}
	default:
		local := c.p(7)
		if local != "" {
			value = local
			if area := c.p(6); area != "" {
				value = "(" + area + ")" + local
			}
			if cc := c.p(5); cc != "" {
				value = "+" + strings.TrimPrefix(cc, "+") + " " + value
			}
			if ext := c.p(8); ext != "" {
				value += " ext. " + ext
			}
		} else {
			value = c.p(1)
		}
		switch equip {
		case "FX":
			system = "fax"
		case "BP":
			system = "pager"
		default:
			system = "phone"
		}
	}
	if value == "" {
		return nil
	}
	use := ""
	if system != "email" {
		use = c.st.mapped("telecom-use", "", c.p(2), c, 2)
	}
	if equip == "CP" {
		use = "mobile"
	}
	if use == "" {
		use = defUse
	}
	if !boundOK(telecomUse, use) {
		c.st.unsure = true
	}
	return obj("system", system, "value", value, "use", use)
}

// xcn: XCN → Reference to a Practitioner (display and identifier).
func xcn(c cell) (any, error) {
	display := joinNonEmpty(" ", c.p(6), c.p(3), c.p(4), c.part(2, 1), c.p(5), c.p(7))
	system, typ := c.st.hdSystem(c.part(9, 1), c.part(9, 2), c.part(9, 3)), c.p(13)
	id := obj("value", c.p(1), "system", system, "type", v2Concept(sysV20203, typ))
	if c.p(1) == "" {
		id = nil
	} else if !codingOK(system, typ) {
		c.st.unsure = true
	}
	if display == "" && id == nil {
		return nil, nil
	}
	return obj("type", "Practitioner", "display", display, "identifier", id), nil
}

// xon: XON → Reference to an Organization.
func xon(c cell) (any, error) {
	idv := c.p(10)
	if idv == "" {
		idv = c.p(3)
	}
	var id map[string]any
	if idv != "" {
		system := c.st.hdSystem(c.part(6, 1), c.part(6, 2), c.part(6, 3))
		if hasSpaceTabOrNewline(system) {
			c.st.unsure = true
		}
		id = obj("value", idv, "system", system)
	}
	if c.p(1) == "" && id == nil {
		return nil, nil
	}
	return obj("type", "Organization", "display", c.p(1), "identifier", id), nil
}

// pl: PL → Reference to a Location, by display.
func pl(c cell) (any, error) {
	unit := joinNonEmpty(" ", c.part(1, 1), c.part(2, 1), c.part(3, 1))
	fac := c.part(4, 1)
	display := unit
	if fac != "" {
		if display != "" {
			display += ", "
		}
		display += fac
	}
	if display == "" {
		display = c.p(9)
	}
	if display == "" {
		return nil, nil
	}
	return obj("type", "Location", "display", display), nil
}

// --- coded values ----------------------------------------------------------

// codingSystem turns an HL7 coding system name (LN, SCT, HL70001, 99LAB)
// into a URI: the coding-system table, else the v2 table URI for HL7nnnn,
// else urn:hiegw:cs:<name>.
func (st *state) codingSystem(name string) string {
	if name == "" {
		return ""
	}
	if t := st.p.tables["coding-system"]; t != nil {
		if e, ok := t.lookup("", name); ok {
			return e.Code
		}
		if e, ok := t.lookup("", strings.ToUpper(name)); ok {
			return e.Code
		}
	}
	up := strings.ToUpper(name)
	if strings.HasPrefix(up, "HL7") && len(up) == 7 {
		if _, err := strconv.Atoi(up[3:]); err == nil {
			return "http://terminology.hl7.org/CodeSystem/v2-" + up[3:]
		}
	}
	if reURIish.MatchString(name) {
		return name
	}
	return "urn:hiegw:cs:" + url.PathEscape(name)
}

// codingSystemV is codingSystem with its value also as an interface value,
// remembered for the message (the same few systems recur in every OBX).
func (st *state) codingSystemV(name string) (string, any, bool) {
	if name == "" {
		return "", nil, true
	}
	for i := range st.csMemo[:st.ncsMemo] {
		if m := &st.csMemo[i]; m.name == name {
			return m.sys, m.v, m.ok
		}
	}
	sys := st.codingSystem(name)
	var v any = sys
	ok := !hasSpaceTabOrNewline(sys)
	if st.ncsMemo < len(st.csMemo) {
		st.csMemo[st.ncsMemo] = memoEntry{name: name, sys: sys, v: v, ok: ok}
		st.ncsMemo++
	}
	return sys, v, ok
}

var reURIish = regexp.MustCompile(`^[a-zA-Z][a-zA-Z0-9+.-]*:[^\s]+$`)

// targets returns the target systems of a table chain.
func (st *state) targets(table string) map[string]bool {
	if st.tableTargetsCache == nil {
		st.tableTargetsCache = map[string]map[string]bool{}
	}
	if m, ok := st.tableTargetsCache[table]; ok {
		return m
	}
	m := map[string]bool{}
	for _, t := range st.p.tables[table] {
		for _, e := range t.rows {
			m[e.System] = true
		}
	}
	st.tableTargetsCache[table] = m
	return m
}

func (st *state) report(table, system, code, where string) {
	u := Unmapped{Table: table, System: system, Code: code, Where: where}
	for _, x := range st.unmapped {
		if x == u {
			return
		}
	}
	st.unmapped = append(st.unmapped, u)
}

// mapped looks a code up and returns the target code, "" (reported, at
// component part of c) if the table has no row for it.
func (st *state) mapped(table, system, code string, c cell, part int) string {
	if code == "" {
		return ""
	}
	t := st.p.tables[table]
	if t == nil {
		return ""
	}
	if e, ok := t.lookup(system, code); ok {
		return e.Code
	}
	st.report(table, system, code, c.locAt(part))
	return ""
}

func fnCWE(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	table := ""
	if len(a) > 1 {
		table, _ = a[1].(string)
	}
	return st.each(p, func(c cell) (any, error) { return st.cwe(c, table), nil })
}

func (st *state) cwe(c cell, table string) any {
	// the codings as sent (identifier and alternate), at most two
	type sent struct {
		sys, code, disp, system string
		systemV                 any  // system as an interface value
		systemOK                bool // system has no spaces (a URI)
	}
	var sentBuf [2]sent
	tried := sentBuf[:0]
	for _, base := range [2]int{1, 4} {
		code, disp, sys := c.p(base), c.p(base+1), c.p(base+2)
		if code == "" {
			continue
		}
		system, systemV, systemOK := st.codingSystemV(sys)
		tried = append(tried, sent{sys: sys, code: code, disp: disp, system: system, systemV: systemV, systemOK: systemOK})
	}
	text := c.p(9)
	if text == "" {
		text = c.p(2)
	}
	var hit codeEntry
	found := false
	if table != "" {
		for _, k := range tried {
			if hit, found = st.p.tables[table].lookup(k.sys, k.code); found {
				break
			}
		}
	}
	var codings []any
	// the codings' systems must be URIs and their codes FHIR codes for the
	// value to be valid as it is (fnSpec.makes)
	if found && !hit.ok {
		st.unsure = true
	}
	for _, k := range tried {
		if !k.systemOK || !validCode(k.code) { // code is not empty
			st.unsure = true
		}
	}
	switch {
	case found:
		// the mapped coding first; the codings as sent stay, except one in
		// the mapped system, or a system-less one, with the mapped code
		// (which the mapped coding merely qualifies)
		codings = make([]any, 1, 1+len(tried))
		codings[0] = obj("system", hit.vSystem, "code", hit.vCode, "display", hit.vDisplay)
		for _, k := range tried {
			if (k.system == hit.System || k.system == "") && k.code == hit.Code {
				continue
			}
			codings = append(codings, obj("system", k.systemV, "code", k.code, "display", k.disp))
		}
	case len(tried) > 0:
		codings = make([]any, 0, 2)
		for _, k := range tried {
			codings = append(codings, obj("system", k.systemV, "code", k.code, "display", k.disp))
		}
		if table != "" {
			targets := st.targets(table)
			covered := false
			// a code already in the table's target system, or in any known
			// (non-local) system, needs no mapping
			for _, k := range tried {
				if targets[k.system] || k.system != "" && !strings.HasPrefix(k.system, "urn:hiegw:cs:") {
					covered = true
				}
			}
			if !covered {
				st.report(table, tried[0].sys, tried[0].code, c.loc())
			}
		}
	}
	if len(codings) == 0 && text == "" {
		return nil
	}
	return obj("coding", codings, "text", text)
}

// The elements whose required bindings the builders check (boundOK).
var (
	nameUse    = fhirTypes["HumanName"].elems["use"]
	addressUse = fhirTypes["Address"].elems["use"]
	telecomUse = fhirTypes["ContactPoint"].elems["use"]
)

// boundOK tells whether code (absent when "") is a valid value of the code
// element ed, whose value set is bound.
func boundOK(ed *elemDef, code string) bool {
	return code == "" || validCode(code) && ed.binding[code]
}

// codingOK tells whether a Coding of this system and code is valid FHIR
// (an absent system or code is left out of it).
func codingOK(system, code string) bool {
	return !hasSpaceTabOrNewline(system) && (code == "" || validCode(code))
}

// coding(path[, table[, system]]) → Coding: the mapped code when the table
// has one, else the code as sent with its own system (or the given default
// system), reported as unmapped.
func fnCoding(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	table, defSys := "", ""
	if len(a) > 1 {
		table, _ = a[1].(string)
	}
	if len(a) > 2 {
		defSys, _ = a[2].(string)
		defSys = strings.TrimSpace(defSys) // as prune would
	}
	return st.each(p, func(c cell) (any, error) {
		code, disp, sys := c.p(1), c.p(2), c.p(3)
		if code == "" {
			return nil, nil
		}
		if table != "" {
			if e, ok := st.p.tables[table].lookup(sys, code); ok {
				if !e.ok {
					st.unsure = true
				}
				return obj("system", e.vSystem, "code", e.vCode, "display", e.vDisplay), nil
			}
			st.report(table, sys, code, c.loc())
		}
		system := st.codingSystem(sys)
		if system == "" {
			system = defSys
		}
		if !codingOK(system, code) {
			st.unsure = true
		}
		return obj("system", system, "code", code, "display", disp), nil
	})
}

type lookupMode int

const (
	lookupEmpty lookupMode = iota
	lookupKeep
	lookupDisplay
)

// lookup(table, code[, system]): the target code or "" (reported);
// code(...): the target code or the code as sent (reported);
// display(...): the target display or "".
func lookupFn(mode lookupMode) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		table, _ := a[0].(string)
		code, _ := a[1].(string)
		code = strings.TrimSpace(code)
		sys := ""
		if len(a) > 2 {
			sys, _ = a[2].(string)
		}
		if code == "" || code == `""` {
			return "", nil
		}
		t := st.p.tables[table]
		if e, ok := t.lookup(sys, code); ok {
			if mode == lookupDisplay {
				return e.vDisplay, nil
			}
			return e.vCode, nil
		}
		if mode != lookupDisplay {
			where := ""
			if st.where != nil {
				where = st.where.field + " (" + st.where.pos + ")"
			}
			st.report(table, sys, code, where)
		}
		if mode == lookupKeep {
			return code, nil
		}
		return "", nil
	}
}

// --- quantities --------------------------------------------------------------

// unit reads a CWE unit (OBX-6, RXA-7) into the Quantity parts of u.
func (st *state) unit(unitPath any, u map[string]any) {
	if unitPath == nil {
		return
	}
	p, err := st.path(unitPath)
	if err != nil {
		return
	}
	c, ok := st.cell(p)
	if !ok {
		return
	}
	m := &st.lastUnit
	if !m.ok || m.seg != c.seg || m.field != c.field || m.rep != c.rep || m.comp != c.comp || m.sub != c.sub {
		*m = st.readUnit(c)
	}
	if m.unit != nil {
		u["unit"] = m.unit
	}
	if m.system != nil {
		u["system"] = m.system
	}
	if m.code != nil {
		u["code"] = m.code
	}
	if m.unsure {
		st.unsure = true
	}
}

// unitParts is what a CWE unit gives a Quantity (nil for what it leaves
// out), remembered for the last cell read: a result's value and its
// reference range read the same OBX-6 three times.
type unitParts struct {
	ok                         bool
	seg, field, rep, comp, sub int
	unit, system, code         any
	unsure                     bool // the parts are not known valid (see state.unsure)
}

// readUnit reads the unit in c; a code no table maps is reported (once:
// the same cell gives the same report, which report keeps once anyway).
func (st *state) readUnit(c cell) unitParts {
	u := unitParts{ok: true, seg: c.seg, field: c.field, rep: c.rep, comp: c.comp, sub: c.sub}
	id, text, sys := c.p(1), c.p(2), c.p(3)
	if id == "" && text == "" {
		return u
	}
	idv := any(id) // boxed once for both places it may go
	if text != "" {
		u.unit = text
	} else {
		u.unit = idv
	}
	up := strings.ToUpper(sys)
	switch {
	case id != "" && (up == "UCUM" || up == "ANS+" || up == "UCUM_1"):
		u.system, u.code = sysUCUM, idv
		u.unsure = !validCode(id)
	case id != "":
		if e, ok := st.p.tables["units"].lookup(sys, id); ok {
			if e.System != "" { // an empty one is left out, as prune would
				u.system = e.vSystem
			}
			u.code = e.vCode
			if text == "" && e.Display != "" {
				u.unit = e.vDisplay
			}
			u.unsure = !e.ok
		} else {
			st.report("units", sys, id, c.loc())
		}
	}
	return u
}

// quantity reads a decimal and its unit; an error names component part of c
// (the whole cell for 0).
func (st *state) quantity(value string, c cell, part int, unitPath any) (map[string]any, error) {
	d, err := fhirDecimal(value)
	if err != nil {
		return nil, &valueError{loc: c.locAt(part), msg: err.Error(), code: CodeDataType}
	}
	q := make(map[string]any, 4)
	q["value"] = d
	if !validDecimal(string(d)) {
		st.unsure = true
	}
	st.unit(unitPath, q)
	return q, nil
}

func fnQuantity(st *state, a []any) (any, error) {
	c, ok, err := st.filledCell(a[0])
	if err != nil || !ok {
		return nil, err
	}
	var up any
	if len(a) > 1 {
		up = a[1]
	}
	q, err := st.quantity(c.p(1), c, 0, up)
	if err != nil {
		return nil, err
	}
	return q, nil
}

// sn: SN (comparator^num1^separator^num2) → a Quantity (with comparator),
// Range (num1-num2) or Ratio (num1:num2 or num1/num2), as a choice value.
func fnSN(st *state, a []any) (any, error) {
	p, err := st.path(a[0])
	if err != nil {
		return nil, err
	}
	c, ok := st.cell(p)
	if !ok {
		return nil, nil
	}
	var up any
	if len(a) > 1 {
		up = a[1]
	}
	cmp, n1, sep, n2 := c.p(1), c.p(2), c.p(3), c.p(4)
	if n1 == "" && n2 == "" {
		return nil, nil
	}
	switch {
	case sep == "" && n2 == "":
		q, err := st.quantity(n1, c, 0, up)
		if err != nil {
			return nil, err
		}
		switch cmp {
		case "", "=":
		case "<", "<=", ">", ">=":
			q["comparator"] = cmp
		default:
			return nil, &valueError{loc: c.locPart(1), msg: "SN comparator not one of <, <=, >, >=, =", code: CodeDataType}
		}
		return &choiceValue{typ: "Quantity", val: q}, nil
	case sep == "-" || sep == "":
		lo, err := st.quantity(n1, c, 2, up)
		if err != nil {
			return nil, err
		}
		hi, err := st.quantity(n2, c, 4, up)
		if err != nil {
			return nil, err
		}
		return &choiceValue{typ: "Range", val: map[string]any{"low": lo, "high": hi}}, nil
	case sep == ":" || sep == "/":
		num, err := st.quantity(n1, c, 2, nil)
		if err != nil {
			return nil, err
		}
		den, err := st.quantity(n2, c, 4, nil)
		if err != nil {
			return nil, err
		}
		return &choiceValue{typ: "Ratio", val: map[string]any{"numerator": num, "denominator": den}}, nil
	case sep == "+" && n2 == "":
		return &choiceValue{typ: "string", val: cmp + n1 + "+"}, nil
	}
	return nil, &valueError{loc: c.locPart(3), msg: "SN separator not one of -, :, /, +", code: CodeDataType}
}

// refrange: OBX-7 ("3.5-5.0", "3.5 to 5.0", "<5", ">=10", or text) →
// Observation.referenceRange, with OBX-6 units on low/high.
func fnRefRange(st *state, a []any) (any, error) {
	c, ok, err := st.filledCell(a[0])
	if err != nil || !ok {
		return nil, err
	}
	var up any
	if len(a) > 1 {
		up = a[1]
	}
	text := c.p(1)
	r := map[string]any{"text": text}
	q := func(s string) map[string]any {
		qq, err := st.quantity(strings.TrimSpace(s), c, 0, up)
		if err != nil {
			return nil
		}
		return qq
	}
	s := strings.TrimSpace(text)
	switch {
	case strings.HasPrefix(s, "<="), strings.HasPrefix(s, "<"):
		if h := q(strings.TrimLeft(s, "<=")); h != nil {
			r["high"] = h
		}
	case strings.HasPrefix(s, ">="), strings.HasPrefix(s, ">"):
		if l := q(strings.TrimLeft(s, ">=")); l != nil {
			r["low"] = l
		}
	default:
		lo, hi, found := strings.Cut(s, " to ")
		if !found {
			lo, hi, found = cutRange(s)
		}
		if found {
			l, h := q(lo), q(hi)
			if l != nil && h != nil {
				r["low"], r["high"] = l, h
			}
		}
	}
	return r, nil
}

// cutRange splits "a-b" where a may itself be negative.
func cutRange(s string) (string, string, bool) {
	i := strings.Index(s[min(1, len(s)):], "-")
	if i < 0 {
		return "", "", false
	}
	i++
	return s[:i], s[i+1:], true
}

// --- attachments -------------------------------------------------------------

var edTypes = map[string]string{"PDF": "application/pdf", "RTF": "application/rtf", "HTML": "text/html",
	"XML": "text/xml", "JPEG": "image/jpeg", "JPG": "image/jpeg", "PNG": "image/png", "TIFF": "image/tiff",
	"GIF": "image/gif", "PLAIN": "text/plain", "TEXT": "text/plain", "OCTET-STREAM": "application/octet-stream"}

// ed: ED (source^type^subtype^encoding^data) → Attachment.
func ed(c cell) (any, error) {
	typ, sub, enc, data := c.p(2), c.p(3), strings.ToUpper(c.p(4)), c.p(5)
	if data == "" {
		return nil, nil
	}
	ct := ""
	switch {
	case strings.Contains(sub, "/"):
		ct = sub
	case edTypes[strings.ToUpper(sub)] != "":
		ct = edTypes[strings.ToUpper(sub)]
	case strings.EqualFold(typ, "TEXT") || strings.EqualFold(typ, "TX"):
		ct = "text/plain"
	default:
		ct = "application/octet-stream"
	}
	switch enc {
	case "BASE64":
		data = strings.Map(func(r rune) rune {
			if r == ' ' || r == '\n' || r == '\r' || r == '\t' {
				return -1
			}
			return r
		}, data)
		if _, err := base64.StdEncoding.DecodeString(data); err != nil {
			return nil, &valueError{loc: c.locPart(5), msg: "ED data is not valid Base64", code: CodeDataType}
		}
	case "A", "":
		data = base64.StdEncoding.EncodeToString([]byte(data))
	case "HEX":
		return nil, &valueError{loc: c.locPart(4), msg: "ED encoding Hex is not supported", code: CodeDataType}
	default:
		return nil, &valueError{loc: c.locPart(4), msg: "ED encoding not one of Base64, A, Hex", code: CodeDataType}
	}
	return map[string]any{"contentType": ct, "data": data}, nil
}

// --- references and choices --------------------------------------------------

// ref(rule): a Reference to the resource that rule made for the current
// context: the nearest one at or before the current segment, else the first.
func fnRef(st *state, a []any) (any, error) {
	rule, _ := a[0].(string)
	if best := st.refTo(rule); best != nil {
		return map[string]any{"reference": best.ref}, nil
	}
	return nil, nil
}

// refTo is the resource of rule that a reference from the current segment
// means: the last one made from a segment at or before it, else the first.
func (st *state) refTo(rule string) *produced {
	var best *produced
	better := func(pr *produced) bool {
		return best == nil || st.seg >= 0 && pr.seg <= st.seg && pr.seg > best.seg
	}
	if x := st.madeIndex(); x != nil {
		for _, r := range x.byRule[rule] {
			if pr := st.made(r); better(pr) {
				best = pr
			}
		}
		return best
	}
	for i := range st.produced {
		if pr := &st.produced[i]; pr.rule == rule && better(pr) {
			best = pr
		}
	}
	return best
}

// refOrRefs is ref (refs with many) for HL7 v2 messages and C-CDA documents
// alike.
func refOrRefs(many bool) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		if st.doc != nil {
			rule, _ := a[0].(string)
			if many {
				return st.refsDoc(rule), nil
			}
			return st.refDoc(rule), nil
		}
		if many {
			return fnRefs(st, a)
		}
		return fnRef(st, a)
	}
}

// refs(rule): References to every resource the rule made inside the current
// segment's group (all of them with no current segment).
func fnRefs(st *state, a []any) (any, error) {
	rule, _ := a[0].(string)
	from, to := -1, len(st.names)
	if st.seg >= 0 {
		from, to = st.seg, st.scopeEnd(st.seg)
	}
	var out []any
	for _, pr := range st.produced {
		if pr.rule == rule && (from < 0 || pr.seg >= from && pr.seg < to) {
			out = append(out, map[string]any{"reference": pr.ref})
		}
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// choice(type, value): a value for a choice element such as value[x].
func fnChoice(_ *state, a []any) (any, error) {
	t, _ := a[0].(string)
	v := prune(a[1])
	if isEmpty(v) {
		return nil, nil
	}
	return &choiceValue{typ: t, val: v}, nil
}

// has(table, code[, system]) reports whether the table maps the code; it
// reports nothing as unmapped.
func fnHas(st *state, a []any) (any, error) {
	table, _ := a[0].(string)
	code, _ := a[1].(string)
	sys := ""
	if len(a) > 2 {
		sys, _ = a[2].(string)
	}
	if strings.TrimSpace(code) == "" {
		return false, nil
	}
	_, ok := st.p.tables[table].lookup(sys, strings.TrimSpace(code))
	return ok, nil
}

// refid(rule) is ref(rule) as the string "Type/id" ("" when none), for ids
// and conditions.
func fnRefID(st *state, a []any) (any, error) {
	if st.doc != nil {
		rule, _ := a[0].(string)
		if r, ok := st.refDoc(rule).(map[string]any); ok {
			return r["reference"], nil
		}
		return "", nil
	}
	rule, _ := a[0].(string)
	if best := st.refTo(rule); best != nil {
		return best.ref, nil
	}
	return "", nil
}

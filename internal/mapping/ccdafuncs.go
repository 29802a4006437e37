package mapping

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"sort"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/ccda"
)

// Functions over C-CDA documents. Their path argument is a C-CDA path
// (xpath.go) read from the current node: the node the resource rule's each:
// (or an element rule's each:) is visiting. A node with a nullFlavor is
// absent: it yields nothing. Datatype functions return one value for one
// matching node and a list when several match.

type (
	fnX     = func(context.Context, string) any
	fnXStr  = func(context.Context, string) string
	fnXOID  = func(context.Context, string, string) any
	fnXBool = func(context.Context, string) bool
)

var ccdaFuncs = []*fnSpec{
	{name: "xv", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: fnXV},
	{name: "xexists", args: []argKind{argXPath}, types: []any{new(fnXBool)}, impl: fnXExists},
	{name: "xcount", args: []argKind{argXPath}, types: []any{new(func(context.Context, string) int)}, impl: fnXCount},
	{name: "xall", args: []argKind{argXPath}, types: []any{new(func(context.Context, string) []any)}, impl: fnXAll},
	{name: "xtype", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: fnXType},
	{name: "narrative", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: fnNarrative},
	{name: "cd", args: []argKind{argXPath, argOID}, types: []any{new(fnX), new(fnXOID)}, impl: fnCD},
	{name: "cdcoding", args: []argKind{argXPath, argOID}, types: []any{new(fnX), new(fnXOID)}, impl: fnCDCoding},
	{name: "ii", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnII},
	{name: "entrykey", args: []argKind{argXPath}, types: []any{new(func(context.Context, string) []any)}, impl: fnEntryKey},
	{name: "ts", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: tsFn(false)},
	{name: "tsdate", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: tsFn(true)},
	{name: "ivl", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnIVL},
	{name: "effective", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnEffective},
	{name: "pq", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnPQ},
	{name: "ivlpq", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnIVLPQ},
	{name: "obsvalue", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnObsValue},
	{name: "absent", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnAbsent},
	{name: "pn", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: nodeFn(pnOf)},
	{name: "pndisplay", args: []argKind{argXPath}, types: []any{new(fnXStr)}, impl: fnPNDisplay},
	{name: "ad", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: nodeFn(adOf)},
	{name: "tel", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: nodeFn(telOf)},
	{name: "repeat", args: []argKind{argXPath}, types: []any{new(fnX)}, impl: fnRepeat},
	{name: "docinfo", args: []argKind{argDoc}, types: []any{new(func(context.Context, string) any)}, impl: fnDocInfo},
	{name: "concept", types: []any{new(func(context.Context, string, string) any), new(func(context.Context, string, string, string) any)}, impl: fnConcept},
}

// Code tables the C-CDA functions read (shipped under mappings/codes/).
const (
	tableCDACodeSystem = "cda-code-system"       // code system OID → FHIR URI
	tableCDAIDSystem   = "cda-identifier-system" // identifier root OID → FHIR URI
)

// xpath returns the parsed C-CDA path of an argument.
func (st *state) xpath(a any) (*xpath, error) {
	if xp, ok := a.(*xpath); ok {
		return xp, nil
	}
	s, _ := a.(string)
	if xp := st.set.xpaths[s]; xp != nil {
		return xp, nil
	}
	xp, _, err := parseXPath(s)
	if err != nil {
		return nil, &valueError{msg: "computed C-CDA path: " + err.Error(), code: CodeApplication}
	}
	return xp, nil
}

// xnodes returns the nodes a path argument selects from the current node
// that have no nullFlavor (and, for an attribute path, carry the attribute).
func (st *state) xnodes(a any) ([]xnode, error) {
	ns, err := st.allNodes(a)
	if err != nil {
		return nil, err
	}
	out := ns[:0]
	for _, n := range ns {
		if n.r.attr == "" && ccda.Attr(n.e, "nullFlavor") != "" {
			continue
		}
		out = append(out, n)
	}
	return out, nil
}

// eachNode builds a value from every node: one value, or a list for several.
func (st *state) eachNode(a any, build func(n xnode) (any, error)) (any, error) {
	ns, err := st.xnodes(a)
	if err != nil {
		return nil, err
	}
	return st.build(ns, build)
}

// allNodes is xnodes keeping nodes with a nullFlavor: a coded value with a
// nullFlavor still carries its original text and translations.
func (st *state) allNodes(a any) ([]xnode, error) {
	if st.root == nil {
		return nil, nil
	}
	xp, err := st.xpath(a)
	if err != nil {
		return nil, err
	}
	return xp.nodesIn(st.root, st.node, st.docElements()), nil
}

func (st *state) build(ns []xnode, build func(n xnode) (any, error)) (any, error) {
	if len(ns) == 0 {
		return nil, nil
	}
	if len(ns) == 1 {
		return build(ns[0])
	}
	return buildEach(ns, build)
}

func nodeFn(build func(st *state, e *etree.Element) any) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		return st.eachNode(a[0], func(n xnode) (any, error) { return build(st, n.e), nil })
	}
}

// --- text ----------------------------------------------------------------------

func fnXV(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil {
		return "", err
	}
	for _, n := range ns {
		if v := n.value(); v != "" {
			return v, nil
		}
	}
	return "", nil
}

func fnXExists(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	return len(ns) > 0, err
}

func fnXCount(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	return len(ns), err
}

func fnXAll(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	out := []any{}
	for _, n := range ns {
		if v := n.value(); v != "" {
			out = append(out, v)
		}
	}
	return out, err
}

func fnXType(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil || len(ns) == 0 {
		return "", err
	}
	return ccda.XSIType(ns[0].e), nil
}

func fnNarrative(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil {
		return "", err
	}
	for _, n := range ns {
		if v := st.doc.Narrative(n.e); v != "" {
			return v, nil
		}
	}
	return "", nil
}

// --- codes and identifiers ------------------------------------------------------

// codeSystemURI turns a code system OID into its FHIR URI: the
// cda-code-system table, else urn:uuid: or urn:oid:, else the value itself.
func (st *state) codeSystemURI(oid string) string {
	if oid == "" {
		return ""
	}
	if e, ok := st.p.tables[tableCDACodeSystem].lookup("", oid); ok {
		return e.Code
	}
	return st.rootURI(oid)
}

// rootURI turns an identifier root into a system URI: the
// cda-identifier-system table, else urn:uuid: or urn:oid:, else the root.
func (st *state) rootURI(root string) string {
	if e, ok := st.p.tables[tableCDAIDSystem].lookup("", root); ok {
		return e.Code
	}
	switch {
	case ccda.IsUUID(root):
		return "urn:uuid:" + strings.ToLower(root)
	case ccda.IsOID(root):
		return "urn:oid:" + root
	}
	return root
}

func (st *state) cdCoding(c ccda.CD, defOID string) map[string]any {
	if c.Code == "" {
		return nil
	}
	sys := c.CodeSystem
	if sys == "" {
		sys = defOID
	}
	return obj("system", st.codeSystemURI(sys), "code", c.Code, "display", c.DisplayName)
}

// concept: CD → CodeableConcept: the code and its translations as codings,
// the original text (narrative references resolved) as text, else the
// display name when there is no code.
func (st *state) concept(c ccda.CD, defOID string) map[string]any {
	var codings []any
	if m := st.cdCoding(c, defOID); m != nil {
		codings = append(codings, m)
	}
	for _, t := range c.Translations {
		if m := st.cdCoding(t, ""); m != nil {
			codings = append(codings, m)
		}
	}
	text := c.OriginalText
	if text == "" && c.Code == "" {
		text = c.DisplayName
	}
	return obj("coding", codings, "text", text)
}

func oidArg(a []any) string {
	if len(a) > 1 {
		s, _ := a[1].(string)
		return s
	}
	return ""
}

func fnCD(st *state, a []any) (any, error) {
	def := oidArg(a)
	ns, err := st.allNodes(a[0])
	if err != nil {
		return nil, err
	}
	return st.build(ns, func(n xnode) (any, error) {
		if m := st.concept(st.doc.CDOf(n.e), def); m != nil {
			return m, nil
		}
		return nil, nil
	})
}

func fnCDCoding(st *state, a []any) (any, error) {
	def := oidArg(a)
	ns, err := st.allNodes(a[0])
	if err != nil {
		return nil, err
	}
	return st.build(ns, func(n xnode) (any, error) {
		if m := st.cdCoding(st.doc.CDOf(n.e), def); m != nil {
			return m, nil
		}
		return nil, nil
	})
}

// identifier: II → Identifier: the root is the system and the extension the
// value; a root alone is a URI value (urn:ietf:rfc:3986).
func (st *state) identifier(i ccda.II) map[string]any {
	if !i.Valid() {
		return nil
	}
	if i.Extension == "" {
		v := st.rootURI(i.Root)
		if !strings.Contains(v, ":") {
			v = "urn:oid:" + v
		}
		return map[string]any{"system": "urn:ietf:rfc:3986", "value": v}
	}
	m := map[string]any{"system": st.rootURI(i.Root), "value": i.Extension}
	if i.AssigningAuthorityName != "" {
		m["assigner"] = map[string]any{"display": i.AssigningAuthorityName}
	}
	return m
}

func fnII(st *state, a []any) (any, error) {
	return st.eachNode(a[0], func(n xnode) (any, error) {
		if m := st.identifier(st.doc.IIOf(n.e)); m != nil {
			return m, nil
		}
		return nil, nil
	})
}

// entrykey(path): the id keys of an entry: root and extension of the first
// usable identifier the path selects, else the document's identity and the
// current node's XML path (so an entry without ids keeps its id as long as
// the document does not change).
func fnEntryKey(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil {
		return nil, err
	}
	for _, n := range ns {
		if i := st.doc.IIOf(n.e); i.Valid() {
			return []any{i.Root, i.Extension}, nil
		}
	}
	if st.doc == nil || st.node == nil {
		return []any{}, nil
	}
	var keys []any
	if st.doc.ID.Valid() {
		keys = []any{st.doc.ID.Root, st.doc.ID.Extension}
	} else {
		keys = []any{"sha1", hexString(st.doc.SHA1)}
	}
	return append(keys, st.doc.Path(st.node)), nil
}

func hexString(b []byte) string {
	const digits = "0123456789abcdef"
	out := make([]byte, 0, 2*len(b))
	for _, c := range b {
		out = append(out, digits[c>>4], digits[c&15])
	}
	return string(out)
}

// --- times -----------------------------------------------------------------------

// tsOf reads the time of a node: the attribute the path ends in, else the
// element's value attribute.
func tsOf(n xnode) string {
	if n.r.attr != "" {
		return n.value()
	}
	return ccda.Attr(n.e, "value")
}

// ts(path) → FHIR dateTime (a time without a zone is cut to its date, as FHIR
// needs a zone with a time); tsdate(path) → FHIR date. A value that is not
// an HL7 time is left out with a warning.
func tsFn(dateOnly bool) func(st *state, a []any) (any, error) {
	return func(st *state, a []any) (any, error) {
		ns, err := st.xnodes(a[0])
		if err != nil {
			return "", err
		}
		for _, n := range ns {
			v := tsOf(n)
			if v == "" {
				continue
			}
			out := ccda.FHIRDateTime(v)
			if dateOnly {
				out = ccda.FHIRDate(v)
			}
			if out == "" {
				return "", &valueError{loc: st.doc.Path(n.e), msg: "not an HL7 time (TS)", code: CodeDataType}
			}
			return out, nil
		}
		return "", nil
	}
}

// ivlOf reads a TS or IVL_TS node.
func ivlOf(n xnode) ccda.Interval {
	if n.r.attr != "" {
		return ccda.Interval{Value: n.value()}
	}
	return ccda.IntervalOf(n.e)
}

func period(t ccda.Interval) map[string]any {
	start, end := ccda.FHIRDateTime(t.Low), ccda.FHIRDateTime(t.High)
	if t.Low == "" && t.High == "" {
		start = ccda.FHIRDateTime(t.Value)
		end = start
	}
	return obj("start", start, "end", end)
}

// ivl(path): IVL_TS → Period (a single time is both start and end).
func fnIVL(st *state, a []any) (any, error) {
	return st.eachNode(a[0], func(n xnode) (any, error) {
		if p := period(ivlOf(n)); p != nil {
			return p, nil
		}
		return nil, nil
	})
}

// effective(path): a time → dateTime; an interval → Period, or dateTime when
// its low and high are the same; a low alone → Period with a start.
func fnEffective(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil || len(ns) == 0 {
		return nil, err
	}
	t := ivlOf(ns[0])
	switch {
	case t.Low == "" && t.High == "":
		if dt := ccda.FHIRDateTime(t.Value); dt != "" {
			return &choiceValue{typ: "dateTime", val: dt}, nil
		}
	case t.High == "":
		if dt := ccda.FHIRDateTime(t.Low); dt != "" {
			return &choiceValue{typ: "Period", val: map[string]any{"start": dt}}, nil
		}
	case t.Low == t.High:
		if dt := ccda.FHIRDateTime(t.Low); dt != "" {
			return &choiceValue{typ: "dateTime", val: dt}, nil
		}
	default:
		if p := period(t); p != nil {
			return &choiceValue{typ: "Period", val: p}, nil
		}
	}
	return nil, nil
}

// --- quantities -------------------------------------------------------------------

// cdaQuantity: PQ value and unit → Quantity, with UCUM when the unit can be
// one (common spellings such as mmHg and lbs fixed).
func cdaQuantity(value, unit string) map[string]any {
	d, ok := ccda.FHIRDecimal(value)
	if !ok {
		return nil
	}
	q := map[string]any{"value": json.Number(d)}
	if unit != "" && unit != "1" {
		q["unit"] = unit
	}
	if code, ok := ccda.UCUM(unit); ok {
		q["system"], q["code"] = sysUCUM, code
	}
	return q
}

func pqOf(e *etree.Element) map[string]any {
	return cdaQuantity(ccda.Attr(e, "value"), ccda.Attr(e, "unit"))
}

func fnPQ(st *state, a []any) (any, error) {
	return st.eachNode(a[0], func(n xnode) (any, error) {
		if q := pqOf(n.e); q != nil {
			return q, nil
		}
		return nil, nil
	})
}

func rangeOf(e *etree.Element) map[string]any {
	return obj("low", pqOf(childV3(e, "low")), "high", pqOf(childV3(e, "high")))
}

// ivlpq(path): IVL_PQ → Range.
func fnIVLPQ(st *state, a []any) (any, error) {
	return st.eachNode(a[0], func(n xnode) (any, error) {
		if r := rangeOf(n.e); r != nil {
			return r, nil
		}
		return nil, nil
	})
}

func childV3(e *etree.Element, name string) *etree.Element {
	if e == nil {
		return nil
	}
	for _, t := range e.Child {
		if c, ok := t.(*etree.Element); ok && c.Tag == name && c.Space == ccda.SpaceV3 {
			return c
		}
	}
	return nil
}

// obsvalue(path): an observation value (ANY) by its xsi:type → a choice
// value: PQ/REAL → Quantity, IVL_PQ → Range, CD/CE/CV/CO/CS →
// CodeableConcept, INT → integer, BL → boolean, TS → dateTime, RTO → Ratio,
// ST/ED and others → string. A nullFlavor value gives its original text, if
// any (see absent for dataAbsentReason).
func fnObsValue(st *state, a []any) (any, error) {
	ns, err := st.allNodes(a[0])
	if err != nil || len(ns) == 0 {
		return nil, err
	}
	v := ns[0].e
	if ccda.Attr(v, "nullFlavor") != "" && ccda.Attr(v, "value") == "" && ccda.Attr(v, "code") == "" {
		if c := st.doc.CDOf(v); c.OriginalText != "" {
			return &choiceValue{typ: "string", val: c.OriginalText}, nil
		}
		return nil, nil
	}
	typ := ccda.XSIType(v)
	if typ == "" {
		switch {
		case ccda.Attr(v, "code") != "":
			typ = "CD"
		case ccda.Attr(v, "value") != "":
			typ = "PQ"
		default:
			typ = "ST"
		}
	}
	switch typ {
	case "PQ", "REAL", "MO":
		unit := ccda.Attr(v, "unit")
		if typ == "MO" {
			unit = ""
		}
		if q := cdaQuantity(ccda.Attr(v, "value"), unit); q != nil {
			if typ == "REAL" {
				delete(q, "unit")
				delete(q, "system")
				delete(q, "code")
			}
			return &choiceValue{typ: "Quantity", val: q}, nil
		}
		if s := strings.TrimSpace(ccda.Attr(v, "value") + " " + unit); s != "" {
			st.warnings = append(st.warnings, st.doc.Path(v)+": quantity value is not a number; kept as text")
			return &choiceValue{typ: "string", val: s}, nil
		}
	case "IVL_PQ":
		if r := rangeOf(v); r != nil {
			return &choiceValue{typ: "Range", val: r}, nil
		}
		if q := pqOf(v); q != nil {
			return &choiceValue{typ: "Quantity", val: q}, nil
		}
	case "CD", "CE", "CV", "CO", "CS":
		if c := st.concept(st.doc.CDOf(v), ""); c != nil {
			return &choiceValue{typ: "CodeableConcept", val: c}, nil
		}
	case "INT":
		if n, err := strconv.Atoi(ccda.Attr(v, "value")); err == nil {
			return &choiceValue{typ: "integer", val: json.Number(strconv.Itoa(n))}, nil
		}
	case "BL":
		switch ccda.Attr(v, "value") {
		case "true":
			return &choiceValue{typ: "boolean", val: true}, nil
		case "false":
			return &choiceValue{typ: "boolean", val: false}, nil
		}
	case "TS":
		if dt := ccda.FHIRDateTime(ccda.Attr(v, "value")); dt != "" {
			return &choiceValue{typ: "dateTime", val: dt}, nil
		}
	case "RTO", "RTO_PQ_PQ", "RTO_INT_INT", "RTO_QTY_QTY":
		if r := obj("numerator", pqOf(childV3(v, "numerator")), "denominator", pqOf(childV3(v, "denominator"))); r != nil {
			return &choiceValue{typ: "Ratio", val: r}, nil
		}
	default:
		if s := st.doc.Narrative(v); s != "" {
			return &choiceValue{typ: "string", val: s}, nil
		}
	}
	return nil, nil
}

var dataAbsent = map[string]string{"UNK": "unknown", "ASKU": "asked-unknown", "NAV": "temp-unknown",
	"NASK": "not-asked", "MSK": "masked", "NA": "not-applicable", "NI": "unknown", "OTH": "unsupported"}

// absent(path): for a value with a nullFlavor (and no original text), the
// Observation.dataAbsentReason it stands for.
func fnAbsent(st *state, a []any) (any, error) {
	ns, err := st.allNodes(a[0])
	if err != nil || len(ns) == 0 {
		return nil, err
	}
	v := ns[0].e
	nf := ccda.Attr(v, "nullFlavor")
	if nf == "" || ccda.Attr(v, "value") != "" || ccda.Attr(v, "code") != "" || st.doc.CDOf(v).OriginalText != "" {
		return nil, nil
	}
	reason := dataAbsent[nf]
	if reason == "" {
		reason = "unknown"
	}
	return map[string]any{"coding": []any{map[string]any{
		"system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": reason}}}, nil
}

// --- names, addresses, telecoms -----------------------------------------------------

func pnOf(_ *state, e *etree.Element) any {
	if n, ok := ccda.NameOf(e); ok {
		return ccda.FHIRHumanName(n)
	}
	return nil
}

func adOf(_ *state, e *etree.Element) any {
	if ad, ok := ccda.AddressOf(e); ok {
		return ccda.FHIRAddress(ad)
	}
	return nil
}

func telOf(_ *state, e *etree.Element) any {
	if t, ok := ccda.TelecomOf(e); ok {
		if cp := ccda.FHIRContactPoint(t); cp != nil {
			return cp
		}
	}
	return nil
}

// pndisplay(path): the first name as one line (prefix, given, family,
// suffix), for a reference's display.
func fnPNDisplay(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil {
		return "", err
	}
	for _, n := range ns {
		nm, ok := ccda.NameOf(n.e)
		if !ok {
			continue
		}
		if nm.Text != "" {
			return nm.Text, nil
		}
		var parts []string
		parts = append(parts, nm.Prefix...)
		parts = append(parts, nm.Given...)
		parts = append(parts, nm.Family...)
		parts = append(parts, nm.Suffix...)
		return strings.Join(parts, " "), nil
	}
	return "", nil
}

// concept(system, code[, display]) → a CodeableConcept of one coding; nothing
// when code is empty.
func fnConcept(_ *state, a []any) (any, error) {
	sys, _ := a[0].(string)
	code, _ := a[1].(string)
	disp := ""
	if len(a) > 2 {
		disp, _ = a[2].(string)
	}
	if strings.TrimSpace(code) == "" {
		return nil, nil
	}
	return map[string]any{"coding": []any{obj("system", sys, "code", code, "display", disp)}}, nil
}

var timingUnits = map[string]string{"s": "s", "min": "min", "h": "h", "hr": "h", "d": "d", "wk": "wk", "mo": "mo", "a": "a"}

// repeat(path): the PIVL_TS (period) or EIVL_TS (event) among the selected
// effectiveTimes → Timing.repeat; the last one that says something wins.
// A period of n hours with institutionSpecified="true" is 24/n times a day.
func fnRepeat(st *state, a []any) (any, error) {
	ns, err := st.xnodes(a[0])
	if err != nil {
		return nil, err
	}
	var out map[string]any
	for _, n := range ns {
		switch ccda.XSIType(n.e) {
		case "PIVL_TS":
			p := childV3(n.e, "period")
			u := timingUnits[ccda.Attr(p, "unit")]
			v, ok := ccda.FHIRDecimal(ccda.Attr(p, "value"))
			if u == "" || !ok {
				continue
			}
			out = map[string]any{"period": json.Number(v), "periodUnit": u, "frequency": json.Number("1")}
			if ccda.Attr(n.e, "institutionSpecified") == "true" && u == "h" {
				if h, err := strconv.Atoi(v); err == nil && h > 0 && 24%h == 0 {
					out = map[string]any{"frequency": json.Number(strconv.Itoa(24 / h)), "period": json.Number("1"), "periodUnit": "d"}
				}
			}
		case "EIVL_TS":
			if ev := ccda.Attr(childV3(n.e, "event"), "code"); ev != "" {
				out = map[string]any{"when": []any{ev}}
			}
		}
	}
	if out == nil {
		return nil, nil
	}
	return out, nil
}

// --- the document itself -----------------------------------------------------------

// docFacts are what docinfo(name) tells about the document being mapped:
// what the parser knows beyond its XML (size and digest of the input, the
// template family) that a C-CDA path cannot read.
var docFacts = map[string]func(d *ccda.Document) any{
	// the document's identity: id root and extension, else its SHA-1
	"key": func(d *ccda.Document) any {
		if d.ID.Valid() {
			return []any{d.ID.Root, d.ID.Extension}
		}
		return []any{"sha1", hexString(d.SHA1)}
	},
	"size":     func(d *ccda.Document) any { return d.Size },                                    // bytes received
	"sha1":     func(d *ccda.Document) any { return base64.StdEncoding.EncodeToString(d.SHA1) }, // base64, as Attachment.hash
	"format":   func(d *ccda.Document) any { return d.FormatCode() },                            // IHE format code
	"bodydata": func(d *ccda.Document) any { return d.NonXMLBody.InlineData() },                 // inline nonXMLBody content, base64
}

func docFactNames() string {
	names := make([]string, 0, len(docFacts))
	for n := range docFacts {
		names = append(names, n)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func fnDocInfo(st *state, a []any) (any, error) {
	name, _ := a[0].(string)
	f := docFacts[name]
	if st.doc == nil || f == nil {
		return nil, nil
	}
	v := f(st.doc)
	if s, ok := v.(string); ok && s == "" {
		return nil, nil
	}
	return v, nil
}

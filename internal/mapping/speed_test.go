package mapping

import (
	"fmt"
	"math/rand"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/hl7"
	"go.yaml.in/yaml/v3"
)

// Tests that hold faster forms to the straightforward ones they replaced.

// TestCWEMatchesReference holds cwe, which decides which codings to keep
// before it builds them, to the form that built every coding sent and then
// dropped the ones the mapped coding covers: every repetition of every
// field of every corpus message (and of a message with mapped, unmapped,
// system-less and alternate codes), with no table and with each table of
// the default set, gives the same value and the same unmapped reports.
func TestCWEMatchesReference(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	odd, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\r" +
		"OBX|1|CWE|N^^^H^Normal^HL70078|| N ~A^Abnormal^HL70078^N^^L~^^^N~H^High^L^N^Normal^HL70078~^^^^^^^^only text|||N^^HL70078~L~LL^x^99LOCAL~H^^http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation\r"))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, odd)
	p := s.def
	tables := []string{""}
	for name := range p.tables {
		tables = append(tables, name)
	}
	st := &state{}
	checked, mapped := 0, 0
	for mi, m := range msgs {
		st.reset(s, p, "CWE", m)
		for seg := 0; seg < m.SegmentCount(); seg++ {
			sg := m.Segment(seg)
			for f := 1; f <= sg.FieldCount(); f++ {
				for r := 1; r <= sg.Field(f).RepCount(); r++ {
					c := cell{st: st, seg: seg, field: f, rep: r, segName: st.names[seg], occ: st.occurrence(seg)}.withRep()
					ts := tables
					if c.p(1) == "" && c.p(4) == "" {
						ts = tables[:1] // nothing to look up
					}
					for _, table := range ts {
						st.unmapped = nil
						got := st.cwe(c, table)
						gotU := st.unmapped
						st.unmapped = nil
						want := cweReference(st, c, table)
						if !reflect.DeepEqual(got, want) || !reflect.DeepEqual(gotU, st.unmapped) {
							t.Fatalf("message %d %s-%d(%d) table %q: got %#v %v, want %#v %v", mi, st.names[seg], f, r, table, got, gotU, want, st.unmapped)
						}
						checked++
						if cc, _ := got.(map[string]any); cc != nil && len(gotU) == 0 && table != "" && strings.Contains(stringOfCodings(cc), "terminology") {
							mapped++
						}
					}
				}
			}
		}
	}
	if checked == 0 || mapped == 0 {
		t.Fatalf("checked %d cells, %d mapped by a table", checked, mapped)
	}
	t.Logf("%d cells checked, %d mapped by a table", checked, mapped)
}

func stringOfCodings(cc map[string]any) string {
	var b strings.Builder
	list, _ := cc["coding"].([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			s, _ := m["system"].(string)
			b.WriteString(s)
		}
	}
	return b.String()
}

// cweReference is cwe as it was written first: it builds every coding as
// sent, then drops the ones the mapped coding covers.
func cweReference(st *state, c cell, table string) any {
	var codings []any
	var triedBuf [2][2]string // (system, code) as sent, at most two
	tried := triedBuf[:0]
	for _, base := range [2]int{1, 4} {
		code, disp, sys := c.p(base), c.p(base+1), c.p(base+2)
		if code == "" {
			continue
		}
		if codings == nil {
			codings = make([]any, 0, 2)
		}
		codings = append(codings, obj("system", st.codingSystem(sys), "code", code, "display", disp))
		tried = append(tried, [2]string{sys, code})
	}
	text := c.p(9)
	if text == "" {
		text = c.p(2)
	}
	if table != "" && len(tried) > 0 {
		var hit codeEntry
		found := false
		for _, k := range tried {
			if hit, found = st.p.tables[table].lookup(k[0], k[1]); found {
				break
			}
		}
		switch {
		case found:
			// the mapped coding first; the codings as sent stay, except a
			// system-less one that the mapped coding merely qualifies
			m := obj("system", hit.System, "code", hit.Code, "display", hit.Display)
			kept := make([]any, 1, 1+len(codings))
			kept[0] = m
			for _, x := range codings {
				xm := x.(map[string]any)
				if xm["system"] == m["system"] && xm["code"] == m["code"] || xm["system"] == nil && xm["code"] == m["code"] {
					continue
				}
				kept = append(kept, x)
			}
			codings = kept
		default:
			targets := st.targets(table)
			covered := false
			// a code already in the table's target system, or in any known
			// (non-local) system, needs no mapping
			for _, x := range codings {
				s, _ := x.(map[string]any)["system"].(string)
				if targets[s] || s != "" && !strings.HasPrefix(s, "urn:hiegw:cs:") {
					covered = true
				}
			}
			if !covered {
				st.report(table, tried[0][0], tried[0][1], c.loc())
			}
		}
	}
	if len(codings) == 0 && text == "" {
		return nil
	}
	return obj("coding", codings, "text", text)
}

// TestXPathDocElementsMatchWalk holds the // steps that filter the
// document's element list (nodesIn with docElements) to the tree walk:
// every C-CDA path of the default set and a few hand-written ones, from the
// document node and from every element that a path of the set selects, in
// every corpus document, select the same nodes in the same order.
func TestXPathDocElementsMatchWalk(t *testing.T) {
	ccdaCorpusOrSkip(t)
	s := loadDefault(t)
	var paths []*xpath
	for _, xp := range s.xpaths {
		paths = append(paths, xp)
	}
	for _, src := range []string{"//*", "//section | //entry", "//observation/..", "/ClinicalDocument//id", ".//code", "//entry[2]/*[1]", "//value[@xsi:type='PQ']/@value"} {
		xp, _, err := parseXPath(src)
		if err != nil {
			t.Fatalf("%s: %v", src, err)
		}
		paths = append(paths, xp)
	}
	files, _ := filepath.Glob(filepath.Join(ccdaCorpusDir, "*.xml"))
	if len(files) == 0 {
		t.Skip("no C-CDA corpus documents")
	}
	checked, selected := 0, 0
	for _, f := range files {
		doc := parseCorpusDoc(t, filepath.Base(f))
		root := doc.Root()
		all := docElements(nil, root)
		ctxs := []*etree.Element{nil, root}
		for _, xp := range paths[:min(len(paths), 40)] {
			for _, n := range xp.nodes(root, nil) {
				ctxs = append(ctxs, n.e)
			}
		}
		for _, xp := range paths {
			for _, ctx := range ctxs[:min(len(ctxs), 60)] {
				want, got := xp.nodes(root, ctx), xp.nodesIn(root, ctx, all)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("%s: %s from %v: %d nodes with the element list, %d by walking", f, xp, ctx, len(got), len(want))
				}
				checked++
				selected += len(got)
			}
		}
	}
	if selected == 0 {
		t.Fatal("no path selected anything")
	}
	t.Logf("%d evaluations, %d nodes selected", checked, selected)
}

// TestValidCodeAndURI holds the validator's loops to the string functions
// they replace.
func TestValidCodeAndURI(t *testing.T) {
	codeRef := func(s string) bool {
		if s == "" || s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") {
			return false
		}
		return !strings.ContainsAny(s, "\t\r\n")
	}
	cases := []string{"", " ", "a", "a b", "a  b", " a", "a ", "a\tb", "a\nb", "a\rb", "final", "x y z", "é ü"}
	r := rand.New(rand.NewSource(1))
	alphabet := []byte{'a', ' ', '\t', '\r', '\n', 'z', 0xc3, 0xa9}
	for range 20000 {
		b := make([]byte, r.Intn(7))
		for i := range b {
			b[i] = alphabet[r.Intn(len(alphabet))]
		}
		cases = append(cases, string(b))
	}
	for _, c := range cases {
		if got, want := validCode(c), codeRef(c); got != want {
			t.Fatalf("validCode(%q) = %v, want %v", c, got, want)
		}
		if got, want := hasSpaceTabOrNewline(c), strings.ContainsAny(c, " \t\r\n"); got != want {
			t.Fatalf("hasSpaceTabOrNewline(%q) = %v, want %v", c, got, want)
		}
	}
}

// TestTypeDefElem holds typeDef.elem (a list for small types) to the map
// it stands for.
func TestTypeDefElem(t *testing.T) {
	few := 0
	for name, td := range fhirTypes {
		if td.few != nil {
			few++
			if len(td.few) != len(td.elems) {
				t.Fatalf("%s: %d listed of %d elements", name, len(td.few), len(td.elems))
			}
		}
		for k, ed := range td.elems {
			if td.elem(k) != ed {
				t.Fatalf("%s.%s: elem gives another definition", name, k)
			}
			if td.elem(k+"x") != td.elems[k+"x"] || td.elem(k[:len(k)-1]) != td.elems[k[:len(k)-1]] {
				t.Fatalf("%s: elem finds a name near %s that the map does not", name, k)
			}
		}
	}
	if few == 0 {
		t.Fatal("no type uses the list")
	}
}

// TestConstantCopy holds constant.copy to deepCopy: the same value, and a
// copy that shares no object or list with the constant, for every const:
// and default: of the shipped set and a few hand-made values.
func TestConstantCopy(t *testing.T) {
	s := loadDefault(t)
	values := []any{nil, "x", 3, true, map[string]any{}, []any{},
		map[string]any{"a": []any{map[string]any{"b": "c", "d": []any{"e", 1.5}}}, "f": map[string]any{"g": nil}}}
	for _, p := range s.profiles {
		var walk func([]*elemRule)
		walk = func(ers []*elemRule) {
			for _, er := range ers {
				for _, a := range er.alts {
					if a.hasConst {
						if a.constT == nil {
							t.Fatalf("%s: const without its copy form", a.pos)
						}
						values = append(values, a.constant)
					}
					if a.deflt != nil {
						values = append(values, a.deflt)
					}
					walk(a.elems)
				}
			}
		}
		for _, rr := range p.resources {
			walk(rr.elems)
		}
	}
	if len(values) < 10 {
		t.Fatalf("only %d values", len(values))
	}
	for _, v := range values {
		c := newConstant(v)
		got := c.copy()
		if !reflect.DeepEqual(got, deepCopy(v)) {
			t.Fatalf("copy %#v, deepCopy %#v", got, deepCopy(v))
		}
		scribble(got)
		if again := c.copy(); !reflect.DeepEqual(again, deepCopy(v)) {
			t.Fatalf("changing a copy changed the constant: %#v", again)
		}
	}
}

// scribble changes every object and list inside v.
func scribble(v any) {
	switch x := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		for _, k := range keys {
			scribble(x[k])
			x[k+"!"] = "changed"
		}
	case []any:
		for i, e := range x {
			scribble(e)
			x[i] = "changed"
		}
	}
}

// TestComponentCache holds state.component, which splits a repetition once
// and keeps its first components, to hl7.Rep.Component: every component
// (and a few past the last, and past the ones kept) of every repetition of
// every field of every corpus message, read in an order that moves from
// one repetition to another and back, and again after reset with a
// message parsed into the same hl7.Message (the same offsets, other bytes).
func TestComponentCache(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	long, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\r" +
		"OBX|1|CWE|1^2^3^4^5^6^7^8^9^10^11^12^13^14^15^16~a^^c|| x ^y\\T\\z^^&sub^\"\"\r"))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, long)
	st := &state{}
	checked := 0
	for mi, m := range msgs {
		st.reset(s, s.def, "COMP", m)
		var prev hl7.Rep
		for seg := 0; seg < m.SegmentCount(); seg++ {
			sg := m.Segment(seg)
			for f := 1; f <= sg.FieldCount(); f++ {
				for r := 1; r <= sg.Field(f).RepCount()+1; r++ {
					rep := sg.Field(f).Rep(r)
					n := rep.ComponentCount() + 2
					n = max(n, len(st.comps)+3)
					for i := n; i >= 0; i-- {
						for _, x := range []hl7.Rep{rep, prev} {
							got, want := st.component(x, i), x.Component(i)
							if got != want || got.String() != want.String() {
								t.Fatalf("message %d %s-%d(%d) component %d: got %q, want %q", mi, st.names[seg], f, r, i, got.String(), want.String())
							}
							checked++
						}
					}
					prev = rep
				}
			}
		}
	}
	// the same Message reset to other bytes: nothing kept is read again
	m, _ := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rOBX|1|CWE|a^b^c\r"))
	st.reset(s, s.def, "COMP", m)
	if got := st.component(m.Segment(1).Field(3).Rep(1), 2).String(); got != "b" {
		t.Fatalf("got %q", got)
	}
	if err := m.Reset([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rOBX|1|CWE|xy^z^\r")); err != nil {
		t.Fatal(err)
	}
	st.reset(s, s.def, "COMP", m)
	if got := st.component(m.Segment(1).Field(3).Rep(1), 2).String(); got != "z" {
		t.Fatalf("after Reset: got %q, want z", got)
	}
	t.Logf("%d components checked", checked)
}

// TestMessageMemos holds the values worked out once per message (dates and
// times, coding systems) to working them out each time: every field of
// every corpus message read as each kind of date and time, twice, and every
// coding system name of the corpus and of the coding-system table, give the
// same values and errors as fhirDate, fhirDateTime and codingSystem, and
// the same verdict on their validity as the validator.
func TestMessageMemos(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	st := &state{}
	kinds := map[timeKind]func(*state, []any) (any, error){kindDateTime: timeFn(kindDateTime), kindDate: timeFn(kindDate), kindInstant: timeFn(kindInstant)}
	times, systems := 0, 0
	for mi, m := range msgs {
		st.reset(s, s.def, "MEMO", m)
		var names []string
		for name := range s.tables["coding-system"].rows {
			names = append(names, name[1], strings.ToLower(name[1]))
		}
		for seg := 0; seg < m.SegmentCount(); seg++ {
			sg := m.Segment(seg)
			for f := 1; f <= sg.FieldCount(); f++ {
				path, _, err := parsePath(st.names[seg] + "[" + fmt.Sprint(st.occurrence(seg)) + "]-" + fmt.Sprint(f))
				if err != nil {
					t.Fatal(err)
				}
				for round := 0; round < 2; round++ {
					for k, fn := range kinds {
						st.unsure = false
						got, gerr := fn(st, []any{path})
						want, werr := timeReference(st, path, k)
						if !reflect.DeepEqual(got, want) || fmt.Sprint(gerr) != fmt.Sprint(werr) {
							t.Fatalf("message %d %s: kind %d: got %#v %v, want %#v %v", mi, path.String(), k, got, gerr, want, werr)
						}
						// the doubt raised is the validator's verdict
						if got != nil {
							typ := map[timeKind]string{kindDateTime: "dateTime", kindDate: "date", kindInstant: "instant"}[k]
							var v validator
							if bad := !v.valid(typ, &elemDef{}, got); bad != st.unsure {
								t.Fatalf("message %d %s: kind %d: %#v unsure %v, the validator says invalid %v", mi, path.String(), k, got, st.unsure, bad)
							}
						}
						times++
					}
				}
				for c := 1; c <= 9; c++ {
					names = append(names, sg.Field(f).Rep(1).Component(c).String())
				}
			}
		}
		for round := 0; round < 2; round++ {
			for _, name := range names {
				got, gotV, gotOK := st.codingSystemV(name)
				want := st.codingSystem(name)
				if got != want || !reflect.DeepEqual(gotV, any(want)) && !(want == "" && gotV == nil) || gotOK != !hasSpaceTabOrNewline(want) {
					t.Fatalf("message %d: coding system %q: got %q %#v %v, want %q", mi, name, got, gotV, gotOK, want)
				}
				systems++
			}
		}
	}
	t.Logf("%d dates and times, %d coding systems checked", times, systems)
}

// timeReference is timeFn as it was: each value converted when it is read.
func timeReference(st *state, p *hpath, k timeKind) (any, error) {
	return st.each(p, func(c cell) (any, error) {
		v := c.p(1)
		if v == "" {
			return nil, nil
		}
		out, err := convertTime(k, v, st.p.loc)
		if err != nil {
			return nil, &valueError{loc: c.loc(), msg: err.Error(), code: CodeDataType}
		}
		return out, nil
	})
}

// TestMessageType holds MapHL7's reading of MSH-9 to hl7.Message.Header.
func TestMessageType(t *testing.T) {
	for _, m := range corpusMessages(t) {
		h := m.Header()
		msh9 := m.Segment(0).Field(9).Rep(1)
		if code, trig := msh9.Component(1).String(), msh9.Component(2).String(); code != h.MessageCode || trig != h.TriggerEvent {
			t.Fatalf("got %q %q, Header gives %q %q", code, trig, h.MessageCode, h.TriggerEvent)
		}
	}
}

// TestFindSegMatchesNames holds findSeg and scopeEnd, which compare packed
// segment names and remember each group's end for the message, to the
// forms that compared the names themselves each time: every path of the
// set (and one for each segment name present), from every segment context
// of every corpus message and of messages with floating and Z segments.
func TestFindSegMatchesNames(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	for _, raw := range []string{
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rPID|1\rNTE|1\rPV1|1\rORC|1\rOBR|1\rNTE|1\rOBX|1\rNTE|1\rPRT|1\rOBX|2\rZZ1|1\rOBR|2\rOBX|1\rCTI|1\rROL|1\rORC|2\rOBR|3\rPID|2\rOBX|9\r",
		"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\rEVN|1\rPID|1\rPD1|1\rNK1|1\rNK1|2\rPV1|1\rPV2|1\rZPV|1\rOBX|1\rAL1|1\rDG1|1\rDG1|2\rNK1|3\r",
	} {
		m, err := hl7.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	st := &state{}
	checked := 0
	for mi, m := range msgs {
		st.reset(s, s.def, "SEG", m)
		paths := make([]*hpath, 0, len(s.paths))
		for _, p := range s.paths {
			paths = append(paths, p)
		}
		for _, name := range st.names {
			for _, form := range []string{name + "-1", name + "[2]-1", name + "[1]-1"} {
				if p, _, err := parsePath(form); err == nil {
					paths = append(paths, p)
				}
			}
		}
		for round := 0; round < 2; round++ { // the second with every group's end remembered
			for seg := -1; seg < m.SegmentCount(); seg++ {
				st.seg = seg
				if seg >= 0 {
					if got, want := st.scopeEnd(seg), scopeEndReference(st, seg); got != want {
						t.Fatalf("message %d segment %d: scopeEnd %d, want %d", mi, seg, got, want)
					}
				}
				for _, p := range paths {
					if got, want := st.findSeg(p), findSegReference(st, p); got != want {
						t.Fatalf("message %d segment %d: %s: findSeg %d, want %d", mi, seg, p.text, got, want)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d lookups checked", checked)
}

// scopeEndReference is scopeEnd as it was, comparing names.
func scopeEndReference(st *state, i int) int {
	floating := map[string]bool{"NTE": true, "PRT": true, "ROL": true, "CTI": true}
	fi := st.firsts[i]
	for j := i + 1; j < len(st.names); j++ {
		if st.names[j] == st.names[i] || st.firsts[j] < fi && !floating[st.names[j]] {
			return j
		}
	}
	return len(st.names)
}

// findSegReference is findSeg as it was, comparing names.
func findSegReference(st *state, p *hpath) int {
	if p.occ > 0 {
		n := 0
		for i, nm := range st.names {
			if nm == p.seg {
				n++
				if n == p.occ {
					return i
				}
			}
		}
		return -1
	}
	if st.seg >= 0 {
		if st.names[st.seg] == p.seg {
			return st.seg
		}
		end := scopeEndReference(st, st.seg)
		for i := st.seg + 1; i < end; i++ {
			if st.names[i] == p.seg {
				return i
			}
		}
		for i := st.seg - 1; i >= 0; i-- {
			if st.names[i] == p.seg {
				return i
			}
		}
		return -1
	}
	for i, nm := range st.names {
		if nm == p.seg {
			return i
		}
	}
	return -1
}

// TestWrittenBitsMatchElements holds unsent's use of the bits store
// notes (state.known|state.unknown) to looking the element up in the
// resource: for every resource rule of every profile of the odd set, made
// from every corpus and odd message, each top-level element with a bit is
// present in the resource exactly when its bit is set.
func TestWrittenBitsMatchElements(t *testing.T) {
	s := oddSet(t)
	msgs := append(corpusMessages(t), oddMessages(t)...)
	st := &state{}
	checked, present := 0, 0
	for _, p := range s.profiles {
		for mi, m := range msgs {
			h := m.Header()
			e := p.match(h.MessageCode, h.TriggerEvent)
			if e == nil {
				continue
			}
			st.reset(s, p, "BITS", m)
			st.keepAbsent = true
			for _, name := range e.resources {
				rr := p.resources[name]
				if rr == nil {
					continue
				}
				before := len(st.produced)
				if err := st.produce(rr); err != nil || len(st.produced) != before+1 {
					continue // one resource per rule, so that the bits are its own
				}
				res, written := st.produced[before].res, st.known|st.unknown
				for _, er := range rr.elems {
					bit := er.steps[0].def.bit
					if bit == 0 {
						continue
					}
					name := topName(er)
					if got, want := written&bit != 0, hasElement(res, name); got != want {
						t.Fatalf("message %d (%s) %s: %s written %v, present %v", mi, p.name, rr.name, name, got, want)
					}
					checked++
					if written&bit != 0 {
						present++
					}
				}
			}
		}
	}
	if checked == 0 || present == 0 || present == checked {
		t.Fatalf("%d elements checked, %d present", checked, present)
	}
	t.Logf("%d elements checked, %d present", checked, present)
}

// TestUnitMemo holds state.unit, which remembers the unit of the last cell
// it read, to reading the unit each time: every field of the segments with
// units (and a few others) of every corpus and odd message, read as a unit twice in a row and again after another one,
// with the default tables and with the odd set's units table, gives the
// same Quantity parts, the same doubt about their validity and the same
// unmapped codes.
func TestUnitMemo(t *testing.T) {
	s := oddSet(t)
	msgs := append(corpusMessages(t), oddMessages(t)...)
	st, ref := &state{}, &state{}
	checked := 0
	odd, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rOBX|1|NM|K||4|mg/dl^^L~BAD^^L~mg/dl^^UCUM~NOSYS~mg/dl^^L|1-2\r"))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, odd)
	for _, p := range []*profile{s.def, s.senders["odd"]} {
		for mi, m := range msgs {
			st.reset(s, p, "UNIT", m)
			ref.reset(s, p, "UNIT", m)
			var paths []*hpath
			for seg := 0; seg < m.SegmentCount(); seg++ {
				if !strings.Contains("OBX OBR RXA RXE RXD RXG RXC PID NK1 PV1", st.names[seg]) {
					continue // the segments with units, and a few with other values
				}
				for f := 1; f <= m.Segment(seg).FieldCount(); f++ {
					for r := 1; r <= max(1, m.Segment(seg).Field(f).RepCount()); r++ {
						path, _, err := parsePath(st.names[seg] + "[" + fmt.Sprint(st.occurrence(seg)) + "]-" + fmt.Sprint(f) + "[" + fmt.Sprint(r) + "]")
						if err != nil {
							t.Fatal(err)
						}
						paths = append(paths, path)
					}
				}
			}
			for i, path := range paths {
				for _, q := range []*hpath{path, path, paths[(i+7)%len(paths)], path} {
					st.unsure, ref.unsure = false, false
					got, want := map[string]any{}, map[string]any{}
					st.unit(q, got)
					unitReference(ref, q, want)
					if !reflect.DeepEqual(got, want) || st.unsure != ref.unsure || !reflect.DeepEqual(st.unmapped, ref.unmapped) {
						t.Fatalf("message %d (%s) %s: got %v %v %v, want %v %v %v", mi, p.name, q.text, got, st.unsure, st.unmapped, want, ref.unsure, ref.unmapped)
					}
					checked++
				}
			}
		}
	}
	t.Logf("%d units checked", checked)
}

// unitReference is state.unit as it was: the unit read at each call.
func unitReference(st *state, p *hpath, u map[string]any) {
	c, ok := st.cell(p)
	if !ok {
		return
	}
	id, text, sys := c.p(1), c.p(2), c.p(3)
	if id == "" && text == "" {
		return
	}
	if text != "" {
		u["unit"] = text
	} else {
		u["unit"] = id
	}
	up := strings.ToUpper(sys)
	switch {
	case id != "" && (up == "UCUM" || up == "ANS+" || up == "UCUM_1"):
		u["system"], u["code"] = sysUCUM, id
		if !validCode(id) {
			st.unsure = true
		}
	case id != "":
		if e, ok := st.p.tables["units"].lookup(sys, id); ok {
			if e.System != "" {
				u["system"] = e.System
			}
			u["code"] = e.Code
			if text == "" && e.Display != "" {
				u["unit"] = e.Display
			}
			if !codingOK(e.System, e.Code) {
				st.unsure = true
			}
		} else {
			st.report("units", sys, id, c.loc())
		}
	}
}

// TestFirstSkipsPureCalls holds first(...), which stops at the first value
// once every argument left is a call of a pure function (tree.pureFrom), to
// evaluating every argument: every first of the shipped set and a few
// hand-written ones, in every segment context of every corpus and odd
// message (and of one whose skipped fields hold the HL7 null ""), give the
// same value, error, unmapped codes and HL7-null note,
// whether nulls are being noted or not.
func TestFirstSkipsPureCalls(t *testing.T) {
	s := loadDefault(t)
	msgs := append(corpusMessages(t), oddMessages(t)...)
	nulls, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\rPID|1|\"\"|123^^^GHH^MR~\"\"|\"\"\r" +
		"ORC|RE|\"\"|\"\"\rOBR|1|\"\"|F1^LAB|GLU^Glucose^L\rOBX|1|NM|GLU^x^L||5\r"))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, nulls)
	var firsts []*tree
	var walk func(*tree)
	walk = func(x *tree) {
		if x == nil {
			return
		}
		if x.first {
			firsts = append(firsts, x)
		}
		for _, a := range x.args {
			walk(a)
		}
		walk(x.left)
		walk(x.right)
	}
	for _, q := range programsOf(s.def) {
		walk(q.tree)
	}
	names := map[string]bool{}
	for n := range s.def.resources {
		names[n] = true
	}
	for _, src := range []string{
		`first(key("PID-3[5=MR]"), key("PID-3[*]"), hd("PID-3.4"), v("PID-2.1"))`,
		`first(v("PID-8"), lookup("administrative-sex", v("PID-8")), v("PID-7"))`,
		`first(v("ZZZ-1"), v("PID-5.1"), v("PID-5.2"))`,
	} {
		var errs errorList
		q := newCompiler(s, &errs).compile(newSrcFile("case.yaml", []byte(src)), &yaml.Node{Kind: yaml.ScalarNode, Value: src, Line: 1, Column: 1}, kindAny, names)
		if q == nil || q.tree == nil {
			t.Fatalf("%s: no tree (%v)", src, errs.errs)
		}
		walk(q.tree)
	}
	skipping := 0
	for _, f := range firsts {
		if f.pureFrom < len(f.args) {
			skipping++
		}
	}
	if skipping == 0 {
		t.Fatal("no first(...) skips anything")
	}
	st := &state{}
	checked := 0
	for mi, m := range msgs {
		st.reset(s, s.def, "FIRST", m)
		for seg := -1; seg < m.SegmentCount(); seg++ {
			for _, track := range []bool{false, true} {
				for _, f := range firsts {
					st.seg, st.fseg, st.field, st.rep = seg, -1, 0, 0
					st.trackNull, st.sawNull, st.unmapped = track, false, nil
					got, gerr := st.evalString(f)
					gotNull, gotU := st.sawNull, st.unmapped
					keep := f.pureFrom
					f.pureFrom = len(f.args)
					st.sawNull, st.unmapped = false, nil
					want, werr := st.evalString(f)
					f.pureFrom = keep
					if got != want || fmt.Sprint(gerr) != fmt.Sprint(werr) || gotNull != st.sawNull || !reflect.DeepEqual(gotU, st.unmapped) {
						t.Fatalf("message %d segment %d (nulls noted %v): got %q %v %v %v, want %q %v %v %v", mi, seg, track, got, gerr, gotNull, gotU, want, werr, st.sawNull, st.unmapped)
					}
					checked++
				}
			}
		}
	}
	st.trackNull = false
	t.Logf("%d first(...) of which %d skip; %d evaluations checked", len(firsts), skipping, checked)
}

// TestSmallHelpers holds joinNonEmpty, strs and validDate to the forms they
// replace (strings.Join of the non-empty strings, appending them one by
// one, the FHIR date pattern), on every combination of a few strings and on
// every string of up to ten characters of the date alphabet tried at random.
func TestSmallHelpers(t *testing.T) {
	words := []string{"", "a", "bc", " d ", ""}
	for _, a := range words {
		for _, b := range words {
			for _, c := range words {
				for _, sep := range []string{" ", ", "} {
					var parts []string
					var list []any
					for _, s := range []string{a, b, c} {
						if s != "" {
							parts = append(parts, s)
							list = append(list, s)
						}
					}
					if got, want := joinNonEmpty(sep, a, b, c), strings.Join(parts, sep); got != want {
						t.Fatalf("joinNonEmpty(%q, %q, %q, %q) = %q, want %q", sep, a, b, c, got, want)
					}
					if got := strs(a, b, c); !reflect.DeepEqual(got, list) {
						t.Fatalf("strs(%q, %q, %q) = %#v, want %#v", a, b, c, got, list)
					}
				}
			}
		}
	}
	rng := rand.New(rand.NewSource(3))
	const alphabet = "0123456789-"
	for i := 0; i < 200000; i++ {
		b := make([]byte, rng.Intn(12))
		for j := range b {
			b[j] = alphabet[rng.Intn(len(alphabet))]
		}
		if rng.Intn(2) == 0 && len(b) >= 10 { // mostly well-formed dates
			b = []byte(fmt.Sprintf("%04d-%02d-%02d", rng.Intn(10000), rng.Intn(14), rng.Intn(34)))
		}
		if got, want := validDate(string(b)), reDate.MatchString(string(b)); got != want {
			t.Fatalf("validDate(%q) = %v, want %v", b, got, want)
		}
	}
}

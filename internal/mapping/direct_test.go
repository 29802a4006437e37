package mapping

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/hl7"
	"go.yaml.in/yaml/v3"
)

// programsOf lists every compiled program of a profile.
func programsOf(p *profile) []*program {
	var out []*program
	var elems func([]*elemRule)
	elems = func(ers []*elemRule) {
		for _, er := range ers {
			for _, a := range er.alts {
				for _, q := range []*program{a.when, a.value} {
					if q != nil {
						out = append(out, q)
					}
				}
				elems(a.elems)
			}
		}
	}
	for _, rr := range p.resources {
		if rr.when != nil {
			out = append(out, rr.when)
		}
		out = append(out, rr.id...)
		elems(rr.elems)
	}
	return out
}

// corpusMessages parses the golden inputs (single messages only).
func corpusMessages(t *testing.T) []*hl7.Message {
	corpusOrSkip(t)
	var out []*hl7.Message
	for _, f := range goldenInputs(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := hl7.Parse(data)
		if err != nil {
			continue
		}
		out = append(out, m)
	}
	if len(out) < 20 {
		t.Fatalf("only %d corpus messages parsed", len(out))
	}
	return out
}

// sameAsVM runs every tree program in every segment context of every
// message both ways and compares values, errors, unmapped codes, and the
// string form used for ids.
func sameAsVM(t *testing.T, s *Set, p *profile, progs []*program, msgs []*hl7.Message) (checked int) {
	t.Helper()
	st := &state{}
	for mi, m := range msgs {
		st.reset(s, p, "TREE", m)
		for seg := -1; seg < m.SegmentCount(); seg++ {
			for _, q := range progs {
				if q.tree == nil {
					continue
				}
				st.seg, st.fseg, st.field, st.rep = seg, -1, 0, 0
				st.unmapped = nil
				got, gerr := st.runTree(q)
				gotUnmapped := st.unmapped
				st.unmapped = nil
				want, werr := st.runVM(q)
				if !reflect.DeepEqual(got, want) {
					t.Fatalf("message %d segment %d: %s (%s): tree gives %#v, VM %#v", mi, seg, q.src, q.pos, got, want)
				}
				if ge, we := errText(st, gerr, q), errText(st, werr, q); ge != we {
					t.Fatalf("message %d segment %d: %s: tree error %q, VM error %q", mi, seg, q.src, ge, we)
				}
				if !reflect.DeepEqual(gotUnmapped, st.unmapped) {
					t.Fatalf("message %d segment %d: %s: tree reports %v, VM %v", mi, seg, q.src, gotUnmapped, st.unmapped)
				}
				if q.tree.isStr {
					gs, gerr := st.runString(q)
					if gerr == nil && werr == nil && gs != stringOf(want) {
						t.Fatalf("message %d segment %d: %s: string %q, VM %q", mi, seg, q.src, gs, stringOf(want))
					}
				}
				checked++
			}
		}
	}
	return checked
}

func errText(st *state, err error, q *program) string {
	if err == nil {
		return ""
	}
	return st.mapErr(err, "F", q.pos, q.path).Error()
}

// TestTreesMatchVM holds the shipped mappings' evaluation trees to expr's VM.
func TestTreesMatchVM(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	trees, vm := 0, 0
	for _, p := range s.profiles {
		progs := programsOf(p)
		for _, q := range progs {
			switch {
			case q.tree != nil:
				trees++
			case q.direct == nil:
				vm++
			}
		}
		sameAsVM(t, s, p, progs, msgs)
	}
	// the shipped conditions and id keys are what the trees are for
	if trees < 20 {
		t.Errorf("only %d programs run as trees (%d on the VM)", trees, vm)
	}
	t.Logf("%d programs as trees, %d on the VM", trees, vm)
}

// TestTreeForms compiles expressions of every form the trees cover (and
// some they must leave to the VM) and compares both ways on the corpus.
func TestTreeForms(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	cases := []struct {
		src  string
		kind exprKind
		tree bool
	}{
		{`v("PID-8") == "F"`, kindBool, true},
		{`v("PID-8") != "F"`, kindBool, true},
		{`v("OBX-2") in ["NM", "ST"]`, kindBool, true},
		{`v("OBX-2") not in ["NM", "ST"]`, kindBool, true},
		{`exists("PV1-2") || exists("PV1-19")`, kindBool, true},
		{`exists("PV1-2") && !exists("PV1-19")`, kindBool, true},
		{`not (v("PID-8") == "M" or v("PID-8") == "F")`, kindBool, true},
		{`has("administrative-sex", v("PID-8"))`, kindBool, true},
		{`first(v("OBR-3.1"), v("ORC-3.1"), v("OBR-2.1"), "none")`, kindAny, true},
		{`first(lookup("administrative-sex", v("PID-8")), v("PID-8"))`, kindAny, true},
		{`lookup("observation-status", v("OBX-11"))`, kindAny, true},
		{`code("administrative-sex", v("PID-8"), "HL70001")`, kindAny, true},
		{`refid("patient")`, kindAny, false}, // one call with constants: the direct path
		{`v("PID-8") == "F" ? "female" : "other"`, kindAny, false},
		{`v("PID-5.1") + "x"`, kindAny, false},
		{`len(v("PID-5.1")) > 3`, kindBool, false},
	}
	names := map[string]bool{}
	for n := range s.def.resources {
		names[n] = true
	}
	var progs []*program
	for _, c := range cases {
		var errs errorList
		comp := newCompiler(s, &errs)
		f := newSrcFile("case.yaml", []byte(c.src))
		q := comp.compile(f, &yaml.Node{Kind: yaml.ScalarNode, Value: c.src, Line: 1, Column: 1}, c.kind, names)
		if q == nil || len(errs.errs) > 0 {
			t.Fatalf("%s: does not compile: %v", c.src, errs.errs)
		}
		if (q.tree != nil) != c.tree {
			t.Errorf("%s: tree %v, want %v", c.src, q.tree != nil, c.tree)
		}
		progs = append(progs, q)
	}
	if n := sameAsVM(t, s, s.def, progs, msgs); n == 0 {
		t.Fatal("nothing compared")
	}
}

func TestResultOf(t *testing.T) {
	for name, want := range map[string]resultKind{"v": resString, "first": resString, "exists": resBool,
		"has": resBool, "cwe": resOther, "lookup": resString, "ref": resOther} {
		if got := funcByName[name].result; got != want {
			t.Errorf("%s: result kind %d, want %d", name, got, want)
		}
	}
}

// TestResolvedTypeDefs holds the validator's resolved definitions to the
// fhirTypes lookups they replace.
func TestResolvedTypeDefs(t *testing.T) {
	n := 0
	for name, td := range fhirTypes {
		for k, ed := range td.elems {
			if ed.def != fhirTypes[ed.types[0]] {
				t.Errorf("%s.%s: def is not fhirTypes[%s]", name, k, ed.types[0])
			}
			if ed.choice {
				if got, want := ed.defOf[k], fhirTypes[ed.typeOf[k]]; got != want {
					t.Errorf("%s.%s: defOf differs from fhirTypes[%s]", name, k, ed.typeOf[k])
				}
				n++
			}
		}
	}
	if n == 0 {
		t.Fatal("no choice elements seen")
	}
}

var decimalSamples = []string{"0", "-0", "1", "10", "01", "1.", ".5", "0.5", "-1.25", "1e5", "1E+5", "1e-05", "1.5e",
	"1.5e+", "--1", "-", "", "00", "12a", "1.2.3", " 1", "1 ", "9007199254740993", "-0.000", "1e5e5", "+1"}

func TestValidDecimal(t *testing.T) {
	for _, s := range decimalSamples {
		if got, want := validDecimal(s), reDecimal.MatchString(s); got != want {
			t.Errorf("validDecimal(%q) = %v, the pattern says %v", s, got, want)
		}
	}
}

func FuzzValidDecimal(f *testing.F) {
	for _, s := range decimalSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validDecimal(s), reDecimal.MatchString(s); got != want {
			t.Errorf("validDecimal(%q) = %v, the pattern says %v", s, got, want)
		}
	})
}

func TestFHIRDecimalSlices(t *testing.T) {
	// fhirDecimal returns slices of its input where it can; the values must
	// be those of the canonical form
	for in, want := range map[string]string{"007": "7", "000": "0", "000.50": "0.50", "12.": "12", ".5": "0.5",
		"-0": "0", "-0.0": "0.0", "-01.5": "-1.5", " 3.25 ": "3.25", "+4": "4", "0": "0", "10": "10",
		"-.5": "-0.5", "-00": "0", "+.0": "0.0"} {
		got, err := fhirDecimal(in)
		if err != nil || string(got) != want {
			t.Errorf("fhirDecimal(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", ".", "1a", "1.2.3", "-", "١"} {
		if _, err := fhirDecimal(in); err == nil {
			t.Errorf("fhirDecimal(%q) accepted", in)
		}
	}
}

// refDecimal is the straightforward form of fhirDecimal (its first
// version), kept to hold the slicing one to the same results.
func refDecimal(v string) (string, bool) {
	s := strings.TrimSpace(v)
	if s == "" {
		return "", false
	}
	neg := false
	switch s[0] {
	case '+':
		s = s[1:]
	case '-':
		neg = true
		s = s[1:]
	}
	intPart, frac, hasDot := strings.Cut(s, ".")
	if intPart == "" && frac == "" {
		return "", false
	}
	for _, c := range intPart + frac {
		if c < '0' || c > '9' {
			return "", false
		}
	}
	intPart = strings.TrimLeft(intPart, "0")
	if intPart == "" {
		intPart = "0"
	}
	out := intPart
	if hasDot && frac != "" {
		out += "." + frac
	}
	if neg && strings.Trim(out, "0.") != "" {
		out = "-" + out
	}
	return out, true
}

func FuzzFHIRDecimal(f *testing.F) {
	for _, s := range decimalSamples {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, ok := refDecimal(s)
		got, err := fhirDecimal(s)
		if (err == nil) != ok || string(got) != want {
			t.Errorf("fhirDecimal(%q) = %q, %v; want %q, %v", s, got, err, want, ok)
		}
	})
}

// TestPrunedCallsNeedNoPrune holds the programs whose prune is skipped
// (program.pruned: a call on a [*] path whose value buildEach made) to
// their promise: in every segment context of every corpus message, and of
// a message with blank, quoted-null and space-padded repetitions, pruning
// their value changes nothing.
func TestPrunedCallsNeedNoPrune(t *testing.T) {
	s := loadDefault(t)
	msgs := corpusMessages(t)
	odd, err := hl7.Parse([]byte("MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r" +
		"PID|1||  ~\"\"~ 123 ^^^ GHH ^ MR ~^^^X||  ~Doe^ ^~\"\"^\"\"||19700101|F|||~ ^ ^ ~1 Main St^^ Town ||~^PRN^PH^^^^ ~\"\"\r" +
		"OBX|1|CWE|X^^LN||A^ ^L~ ~\"\"||| ~N~\"\"|||F|||||~ ^ ~12^Doe\r"))
	if err != nil {
		t.Fatal(err)
	}
	msgs = append(msgs, odd)
	checked, nonEmpty := 0, 0
	st := &state{}
	for _, p := range s.profiles {
		var progs []*program
		for _, q := range programsOf(p) {
			if q.pruned {
				progs = append(progs, q)
			}
		}
		if len(progs) == 0 {
			continue
		}
		for mi, m := range msgs {
			st.reset(s, p, "PRUNE", m)
			// the message's resources, for ref and refs
			if e := p.match(m.Header().MessageCode, m.Header().TriggerEvent); e != nil {
				for _, name := range e.resources {
					if rr := p.resources[name]; rr != nil {
						_ = st.produce(rr)
					}
				}
			}
			for seg := -1; seg < m.SegmentCount(); seg++ {
				for _, q := range progs {
					st.seg, st.fseg, st.field, st.rep = seg, -1, 0, 0
					v, err := st.run(q)
					if err != nil {
						continue
					}
					if pv := prune(deepCopy(v)); !reflect.DeepEqual(pv, v) {
						t.Fatalf("message %d segment %d: %s (%s): value %#v, pruned %#v", mi, seg, q.src, q.pos, v, pv)
					}
					checked++
					if v != nil {
						nonEmpty++
					}
				}
			}
		}
	}
	if checked == 0 || nonEmpty == 0 {
		t.Fatalf("checked %d values (%d not empty): no program skips prune", checked, nonEmpty)
	}
	t.Logf("%d values checked, %d not empty", checked, nonEmpty)
}

package mapping

import (
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/hl7"
)

// Tests that hold the known-valid values (fnSpec.makes, the const: and
// default: values checked at load, produced.known) to the full validation
// walk they let the validator skip: whatever a message holds, walking only
// what is not known valid finds exactly the problems the full walk finds.

// oddSet is the default set with senders whose code tables, constants and
// rules give values the validator refuses: a unit system with a space, a
// unit code with two spaces, a system-less unit, a name, address and
// telecom use outside FHIR's value sets, a lab code and coding system and
// an assigning authority that are not valid codes or URIs, constants that
// are valid (they are skipped) or not (they are walked and refused), a
// removed required element, an object of elements: without its required
// element, and a choice set by two rules.
func oddSet(t testing.TB) *Set {
	t.Helper()
	dir := setDir(t)
	writeFile(t, dir, "senders/odd.yaml", `senders: [ODD]
codes:
  units: odd-units
  name-use: odd-name-use
  address-use: odd-address-use
  telecom-use: odd-telecom-use
  lab: odd-lab
  assigning-authority: odd-aa
  coding-system: odd-cs
  interpretation: odd-interp
  patient-class: odd-class
`)
	writeFile(t, dir, "codes/odd-units.csv", "source_system,source_code,target_system,target_code,display\n"+
		",BAD,my units,mg,\n,BADCODE,http://unitsofmeasure.org,m  g,\n,NOSYS,,kg,Kilogram\n,TAB,http://unitsofmeasure.org,\"a\tb\",\n")
	writeFile(t, dir, "codes/odd-name-use.csv", "source_system,source_code,target_system,target_code,display\n,L,,bogus,\n,B,,usual,\n")
	writeFile(t, dir, "codes/odd-address-use.csv", "source_system,source_code,target_system,target_code,display\n,H,,house,\n")
	writeFile(t, dir, "codes/odd-telecom-use.csv", "source_system,source_code,target_system,target_code,display\n,PRN,,cell,\n,WPN,,work,\n")
	writeFile(t, dir, "codes/odd-lab.csv", "source_system,source_code,target_system,target_code,display\n"+
		"LN,2001-1,http://loinc.org,bad  code,\n,GLU,http://lo inc.org,2345-7,Glucose\n,K,,2823-3,\n")
	writeFile(t, dir, "codes/odd-aa.csv", "source_system,source_code,target_system,target_code,display\n,GHH,,urn:a b,\n,NPI,,urn:npi,\n")
	writeFile(t, dir, "codes/odd-cs.csv", "source_system,source_code,target_system,target_code,display\n,LN,,http://lo inc.org,\n,L,,urn:local,\n")
	writeFile(t, dir, "codes/odd-interp.csv", "source_system,source_code,target_system,target_code,display\n,N,http://x y,N,\n,H,urn:i,H  H,\n")
	writeFile(t, dir, "codes/odd-class.csv", "source_system,source_code,target_system,target_code,display\n,O,urn:c d,AMB,\n,I,urn:c,I I,\n")
	writeFile(t, dir, "senders/oddconst.yaml", `senders: [ODDCONST]
resources:
  observation:
    elements:
      category:
        const: [{coding: [{system: "http://terminology.hl7.org/CodeSystem/observation-category", code: "lab  oratory"}]}]
      status:
        const: finalish
      valueString: text("OBX-3")
      effectivePeriod.start: datetime("OBR-7")
  report:
    elements:
      category:
        const: [{coding: [{system: "urn:ok", code: LAB}]}, {text: ""}]
      status:
        - value: lookup("report-status", v("OBR-25"))
        - const: final
  encounter:
    elements:
      status: ~
      class:
        value: coding("PV1-2", "patient-class", " http://terminology.hl7.org/CodeSystem/v2-0004 ")
        default:
          system: "urn:null flavor"
          code: UNK
  patient:
    elements:
      telecom:
        - xtn("PID-13[*]", " home ")
        - xtn("PID-14[*]", "office")
      gender:
        when: exists("PID-8")
        value: lookup("administrative-sex", v("PID-8"))
        default: unknown
`)
	writeFile(t, dir, "senders/oddchoice.yaml", `senders: [ODDCHOICE]
resources:
  observation:
    elements:
      valueString: text("OBX-3")
  encounter:
    elements:
      location:
        elements:
          status:
            const: active
`)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// oddMessages give the odd set's tables their codes, and the builders
// blank, quoted-null, space-padded and tab-holding components.
func oddMessages(t testing.TB) []*hl7.Message {
	t.Helper()
	var out []*hl7.Message
	for _, raw := range []string{
		"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r" +
			"PID|1||123^^^GHH^MR~456^^^NPI^X Y~789^^^^^^^^^~^^^^\t||Doe^Jo^^^^^L~Roe^^^^^^B~\"\"||19700101|F|||1 Main^^Town^^^^H~^^^^^^^||^PRN^PH^^^^555~^NET^Internet^a@b~^WPN^CP||^^^|||||||||||||N|1\r" +
			"NK1|1|Doe^Ann^^^^^L|SPO^Spouse^HL70063~ ^^ |2 Elm^^City^^^^H|^PRN^PH^^^^556\r" +
			"NK1|2|Roe^Bo^^^^^B|SPO^Spouse^HL70063\r" +
			"PV1|1|O|W1^R1^B1^GHH||||1234^Doc^Ann^^^Dr^^^NPI&2.16&ISO^^^^NP I|5678^Ref^Bo||||||||9^Adm^Cy^^^^^^GHH|||V1^^^GHH^VN|||||||||||||||||||||||||20240101|20240102\r",
		"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\r" +
			"PID|1||555^^^GHH^MR\r" +
			"PV1|1|I\r" +
			"ORC|RE|P1|F1\r" +
			"OBR|1|P1^GHH|F1^LAB^2.16.840^ISO|GLU^Glucose^L~x|||20240101120000|||||||||||||||20240101130000|||F\r" +
			"OBX|1|NM|2001-1^Thing^LN||5.5|BAD^^L|1-2|N~H|||F|||20240101\r" +
			"OBX|2|NM|GLU^Glucose^L||7|BADCODE|<3|H||||F\r" +
			"OBX|3|NM|K^Potassium||4.1|NOSYS|3.5 to 5.1|X||||F\r" +
			"OBX|4|NM|K||4.1|TAB^^L|>=2|\t||||F\r" +
			"OBX|5|NM|K||4.1|mg/dl^^UCUM~x|1-|||||F|||||a b^c\td^e\r" +
			"OBX|6|NM|K||4.1|m  g^^UCUM|||||F\r" +
			"OBX|7|CWE|K||A  B^x^L~C^^ my cs |||||F\r" +
			"OBX|8|SN|K||>^5|mg/dl||||C\r",
	} {
		m, err := hl7.Parse([]byte(raw))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, m)
	}
	return out
}

// checkBothWays makes m's resources with profile p and compares, for each,
// the problems of the full walk with those of the walk that skips the
// known-valid elements (or, for a resource whose elements are all known
// valid, checks only its id and required elements). It returns the
// resources compared, how many elements were skipped and how many
// resources the full walk refused.
func checkBothWays(t testing.TB, s *Set, p *profile, m *hl7.Message, what string) (resources, skipped, invalid, whole int) {
	t.Helper()
	h := m.Header()
	e := p.match(h.MessageCode, h.TriggerEvent)
	if e == nil {
		return 0, 0, 0, 0
	}
	st := &state{}
	st.reset(s, p, "KNOWN", m)
	st.keepAbsent = e.keepAbsent
	for _, name := range e.resources {
		if rr := p.resources[name]; rr != nil {
			if err := st.produce(rr); err != nil {
				return 0, 0, 0, 0 // refused before validation: nothing skipped
			}
		}
	}
	for _, pr := range st.produced {
		full := st.check.check(pr.res)
		part := st.check.checkKnown(pr.res, pr.known, pr.whole)
		if !reflect.DeepEqual(full, part) {
			t.Fatalf("%s (%s): %s %s: the full walk finds %q, the walk skipping known values %q", what, p.name, pr.res.Type(), pr.rule, full, part)
		}
		resources++
		if pr.whole {
			whole++
		}
		if len(full) > 0 {
			invalid++
		}
		for k := range pr.res {
			if ed := fhirTypes[pr.res.Type()].elem(k); ed != nil && pr.known&ed.bit != 0 {
				skipped++
			}
		}
	}
	return resources, skipped, invalid, whole
}

func TestKnownValuesAreValid(t *testing.T) {
	s := oddSet(t)
	msgs := append(corpusMessages(t), oddMessages(t)...)
	resources, skipped, invalid, whole := 0, 0, 0, 0
	for _, p := range s.profiles {
		for i, m := range msgs {
			r, k, bad, w := checkBothWays(t, s, p, m, fmt.Sprintf("message %d", i))
			resources += r
			skipped += k
			invalid += bad
			whole += w
		}
	}
	if resources == 0 || skipped == 0 || invalid == 0 || whole == 0 || whole == resources {
		t.Fatalf("%d resources compared (%d invalid, %d checked whole), %d elements skipped", resources, invalid, whole, skipped)
	}
	t.Logf("%d resources compared (%d invalid, %d checked whole), %d elements skipped", resources, invalid, whole, skipped)
}

// TestKnownValuesUnsure checks that the odd tables and constants are seen:
// each gives a value that is not known valid, and a message that the full
// walk refuses.
func TestKnownValuesUnsure(t *testing.T) {
	s := oddSet(t)
	msgs := oddMessages(t)
	for _, sender := range []string{"ODD", "ODDCONST"} {
		for i, m := range msgs {
			if sender == "ODDCONST" && i == 0 {
				continue // its ADT constants are valid
			}
			_, err := s.MapHL7(sender, m)
			if err == nil || !strings.Contains(err.Error(), "invalid FHIR output") {
				t.Errorf("%s message %d: want a refusal for invalid output, got %v", sender, i, err)
			}
		}
	}
	// a constant the validator refuses is not known valid
	for _, name := range []string{"observation", "report"} {
		rr := s.senders["oddconst"].resources[name]
		for _, er := range rr.elems {
			if er.path != "category" {
				continue
			}
			for _, a := range er.alts {
				if a.hasConst && a.constMakes != "" {
					t.Errorf("%s.category: an invalid constant is known valid as %s", name, a.constMakes)
				}
			}
		}
	}
}

// FuzzKnownValues puts one value into many fields of an ADT and an ORU and
// compares the two walks for every profile of the odd set.
func FuzzKnownValues(f *testing.F) {
	for _, seed := range []string{"a b", "a  b^c^LN", " x \t", "GLU^Glucose^L", "BAD^^L", "\"\"", "1-2", "~^^^GHH&1.2&ISO",
		"x^y^z^GHH^MR", "^PRN^PH^^^^555", "L", "H~N", "m  g^^UCUM", "5.5", "<3", "a^b^c^d^e^f^g^h^i^j^k^l^m"} {
		f.Add(seed)
	}
	s := oddSet(f)
	f.Fuzz(func(t *testing.T, v string) {
		v = strings.NewReplacer("\r", " ", "\n", " ", "|", " ", "\\", " ").Replace(v)
		raws := []string{
			"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5.1\r" +
				"PID|1|" + v + "|123^^^" + v + "^MR~" + v + "||" + v + "||19700101|" + v + "|||" + v + "||" + v + "|" + v + "||" + v + "|||||||||||||" + v + "\r" +
				"NK1|1|" + v + "|" + v + "|" + v + "|" + v + "\r" +
				"PV1|1|" + v + "|" + v + "||||" + v + "|" + v + "|" + v + "||||||||" + v + "||123^^^" + v + "\r",
			"MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1\r" +
				"PID|1||555^^^GHH^MR\r" +
				"OBR|1|" + v + "|F1^" + v + "|" + v + "|||20240101|||||||||||||||20240101|||F\r" +
				"OBX|1|NM|" + v + "||5|" + v + "|" + v + "|" + v + "|||F||||||" + v + "\r" +
				"OBX|2|CWE|K^x^LN||" + v + "|||||F||||||" + v + "\r" +
				"OBX|3|NM|K^x^LN||" + v + "|mg/dl^^L|" + v + "||||F\r",
		}
		for _, raw := range raws {
			m, err := hl7.Parse([]byte(raw))
			if err != nil {
				continue
			}
			for _, p := range s.profiles {
				checkBothWays(t, s, p, m, "fuzz")
			}
		}
	})
}

package main

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
)

func TestAcceptedFast(t *testing.T) {
	cases := map[string]bool{
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AA|C1":                     true,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|CA|C1\r":                   true,
		"MSH#^~\\&#C#D#A#B#20260101##ACK#X#P#2.5.1\rMSA#AA#C1":                     true,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AE|C1\rERR||PID^1^7|102|E": false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AR|C1":                     false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AAX|C1":                    false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rZZZ|MSA|AA":                    false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1":                                false,
		"MSA|AA|C1": false,
		"":          false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\nMSA|AA|C1": false, // left to describeACK
	}
	for reply, want := range cases {
		if got := acceptedFast([]byte(reply)); got != want {
			t.Errorf("acceptedFast(%q) = %v, want %v", reply, got, want)
		}
	}
}

func TestRunPrefix(t *testing.T) {
	now := time.Now()
	a, b := runPrefix(now), runPrefix(now.Add(time.Microsecond))
	if a == b {
		t.Fatalf("runs a microsecond apart share the prefix %q", a)
	}
	if n := len(a) + len("999999999"); n > 20 {
		t.Fatalf("control id of %d characters, MSH-10 allows 20: %q", n, a)
	}
}

func TestAsPatient(t *testing.T) {
	raw, err := os.ReadFile("../../testdata/hl7/adt_a01.hl7")
	if err != nil {
		t.Fatal(err)
	}
	m := toCR(raw)
	seen := map[string]bool{}
	for _, p := range []int{0, 1, 25, 26, 27, 700} {
		v, err := asPatient(m, p)
		if err != nil {
			t.Fatalf("patient %d: %v", p, err)
		}
		msg, err := hl7.Parse(v)
		if err != nil {
			t.Fatalf("patient %d: %v", p, err)
		}
		n := strconv.Itoa(p)
		if got := msg.Get("PID-3[1].1"); got != "4455667-"+n {
			t.Errorf("patient %d: MRN %q", p, got)
		}
		if got := msg.Get("PID-3[2].1"); got != "999-88-7777-"+n {
			t.Errorf("patient %d: second identifier %q", p, got)
		}
		if got := msg.Get("PID-3[1].4"); got != "GOODHEALTH" {
			t.Errorf("patient %d: assigning authority %q changed", p, got)
		}
		family, dob := msg.Get("PID-5.1"), msg.Get("PID-7")
		if !slices.Contains(familyNames, family) {
			t.Errorf("patient %d: family name %q", p, family)
		}
		if _, err := time.Parse("20060102", dob); err != nil {
			t.Errorf("patient %d: birth date %q: %v", p, dob, err)
		}
		if key := family + "|" + dob; seen[key] {
			t.Errorf("patient %d: name and birth date %s given to another patient too", p, key)
		} else {
			seen[key] = true
		}
		if given := msg.Get("PID-5.2"); !slices.Contains(givenNames, given) {
			t.Errorf("patient %d: given name %q", p, given)
		}
		if line := msg.Get("PID-11.1"); !strings.HasSuffix(line, " STREET") || seen[line] {
			t.Errorf("patient %d: address line %q (not made up, or another patient's)", p, line)
		} else {
			seen[line] = true
		}
		if msg.Get("PID-11.3") != "SPRINGFIELD" || len(msg.Get("PID-11.5")) != 5 {
			t.Errorf("patient %d: city or postcode %q %q", p, msg.Get("PID-11.3"), msg.Get("PID-11.5"))
		}
		if phone := msg.Get("PID-13.7"); len(phone) != 7 || seen[phone] {
			t.Errorf("patient %d: telephone %q (empty, malformed or another patient's)", p, phone)
		} else {
			seen[phone] = true
		}
		if len(msg.Get("PID-5.3")) != 1 || msg.Get("MSH-10") != "ADT0001" || msg.Get("PV1-2") != "I" {
			t.Errorf("patient %d: other fields changed: %s", p, v)
		}
	}
	if _, err := asPatient([]byte("MSH|^~\\&|A|B|C|D|20260101||ADT^A01|X|P|2.5.1"), 3); err == nil {
		t.Error("a message without PID was accepted")
	}
}

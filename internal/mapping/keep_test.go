package mapping

import (
	"slices"
	"testing"
)

// a08 is an update whose PID-11 (address) is empty and whose PID-16
// (marital status) and PID-13 (home phone) hold the HL7 null "".
const a08 = "MSH|^~\\&|ADT|CITY|HIE|HIE|20261125093000||ADT^A08|K1|P|2.5.1\r" +
	"EVN|A08|20261125093000\r" +
	"PID|1||4711^^^CITY^MR||DOE^JANE||19800101|F|||||\"\"||E|\"\"\r" +
	"PV1|1|I|W1^101^1||||||||||||||||V55^^^CITY^VN\r"

// TestAbsentKeep: with "absent: keep" (the shipped ADT entries) the
// elements a message does not send are listed to keep their stored values,
// and an element whose field holds "" is not, so it is removed; with
// "absent: replace" nothing is kept.
func TestAbsentKeep(t *testing.T) {
	dir := setDir(t)
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err := s.MapHL7("CITY", parse(t, a08))
	if err != nil {
		t.Fatal(err)
	}
	pat := res.Resources[0]
	keep := res.Keep[pat.ID()]
	for _, want := range []string{"address", "deceased[x]", "contact"} {
		if !slices.Contains(keep, want) {
			t.Errorf("Patient keep %v lacks %s", keep, want)
		}
	}
	for _, not := range []string{"maritalStatus", "telecom", "name", "identifier", "birthDate", "gender"} {
		if slices.Contains(keep, not) {
			t.Errorf("Patient keep %v holds %s (sent, or nulled with \"\")", keep, not)
		}
	}
	for _, gone := range []string{"maritalStatus", "telecom"} {
		if _, ok := pat[gone]; ok {
			t.Errorf("Patient has %s although its field held \"\"", gone)
		}
	}
	var enc string
	for _, r := range res.Resources {
		if r.Type() == "Encounter" {
			enc = r.ID()
		}
	}
	if enc == "" || len(res.Keep[enc]) == 0 {
		t.Fatalf("Encounter keep: %v", res.Keep)
	}

	// A sender whose updates replace whole resources.
	writeFile(t, dir, "senders/city.yaml", "senders: [CITY]\nmessages:\n  - match: [ADT^A08]\n    event: update\n    absent: replace\n    resources: [patient, encounter]\n")
	s2, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	res, err = s2.MapHL7("CITY", parse(t, a08))
	if err != nil {
		t.Fatal(err)
	}
	if res.Keep != nil {
		t.Fatalf("absent: replace kept %v", res.Keep)
	}
}

func TestAbsentIsChecked(t *testing.T) {
	errs := loadErrors(t, "senders/acme.yaml", "senders: [ACME]\nmessages:\n  - match: [ADT^A08]\n    event: update\n    absent: merge\n")
	findErr(t, errs, "senders/acme.yaml", 5, 13, "expected keep")
	errs = loadErrors(t, "senders/acme.yaml", "senders: [ACME]\nmessages:\n  - match: [CCDA]\n    event: document\n    absent: keep\n")
	findErr(t, errs, "senders/acme.yaml", 5, 13, "applies to HL7 v2 messages")
}

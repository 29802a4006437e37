package ccda

import "testing"

func TestDateTime(t *testing.T) {
	cases := map[string]string{
		"2012":                    "2012",
		"201208":                  "2012-08",
		"20120806":                "2012-08-06",
		"20120806-0500":           "2012-08-06",
		"201208061230":            "2012-08-06", // time without zone: date only
		"201208061230-0500":       "2012-08-06T12:30:00-05:00",
		"20120806123045+0100":     "2012-08-06T12:30:45+01:00",
		"20140531151542.706-0700": "2014-05-31T15:15:42.706-07:00",
		"2012080612+05":           "2012-08-06T12:00:00+05:00",
		"20120230":                "", // no 30 February
		"20000229":                "2000-02-29",
		"19000229":                "",
		"20121306":                "",
		"0000":                    "",
		"2012080625-0500":         "",
		"abc":                     "",
		"":                        "",
		" 20120806 ":              "2012-08-06",
		"201208061230-9900":       "2012-08-06",
	}
	for in, want := range cases {
		if got := dateTime(in); got != want {
			t.Errorf("dateTime(%q) = %q, want %q", in, got, want)
		}
	}
	if got := instant("20120806"); got != "" {
		t.Errorf("instant of a date = %q, want empty", got)
	}
	if got := date("20120806123045+0100"); got != "2012-08-06" {
		t.Errorf("date = %q", got)
	}
}

func TestDecimal(t *testing.T) {
	cases := map[string]string{"7.20": "7.20", "+0105.50": "105.50", ".5": "0.5", "-0.25": "-0.25", "1e3": "1e3",
		"1.5E-2": "1.5e-2", "007": "7", "1,5": "", "": "", "abc": "", "1.": "1", "-": ""}
	for in, want := range cases {
		got, ok := decimal(in)
		if string(got) != want || ok != (want != "") {
			t.Errorf("decimal(%q) = %q, %v; want %q", in, got, ok, want)
		}
	}
}

func TestCodes(t *testing.T) {
	cases := map[string]string{
		"2.16.840.1.113883.6.1":                "http://loinc.org",
		"2.16.840.1.113883.6.96":               "http://snomed.info/sct",
		"2.16.840.1.113883.6.88":               "http://www.nlm.nih.gov/research/umls/rxnorm",
		"2.16.840.1.113883.6.90":               "http://hl7.org/fhir/sid/icd-10-cm",
		"2.16.840.1.113883.12.292":             "http://hl7.org/fhir/sid/cvx",
		"2.16.840.1.113883.6.69":               "http://hl7.org/fhir/sid/ndc",
		"2.16.840.1.113883.6.8":                "http://unitsofmeasure.org",
		"1.2.3.4":                              "urn:oid:1.2.3.4",
		"E401F340-7BE2-11DB-9FE1-0800200C9A66": "urn:uuid:e401f340-7be2-11db-9fe1-0800200c9a66",
	}
	for oid, want := range cases {
		if got := systemURI(oid); got != want {
			t.Errorf("systemURI(%q) = %q, want %q", oid, got, want)
		}
	}
	if id := identifier(II{Root: "1.2.3"}); id["value"] != "urn:oid:1.2.3" || id["system"] != "urn:ietf:rfc:3986" {
		t.Errorf("root-only identifier = %v", id)
	}
	if id := identifier(II{Root: "1.2.3", NullFlavor: "NI"}); id != nil {
		t.Errorf("nullFlavor identifier = %v", id)
	}
	if q := quantity("98.6", "degF"); q["code"] != "[degF]" {
		t.Errorf("quantity = %v", q)
	}
	if q := quantity("5", "tablets (oral)"); q["system"] != nil || q["unit"] != "tablets (oral)" {
		t.Errorf("non-UCUM unit = %v", q)
	}
}

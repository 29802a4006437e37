package route

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mapping"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func resource(t testing.TB, js string) fhir.Resource {
	t.Helper()
	var r fhir.Resource
	if err := json.Unmarshal([]byte(js), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

const (
	patientPCP = `{"resourceType":"Patient","id":"p1","generalPractitioner":[{"type":"Practitioner","display":"Dr W",
		"identifier":{"system":"urn:hiegw:aa:GHH","value":"1234"}}]}`
	encounterAttending = `{"resourceType":"Encounter","id":"e1","participant":[
		{"type":[{"coding":[{"code":"REF"}]}],"individual":{"identifier":{"value":"777"}}},
		{"type":[{"coding":[{"code":"ATND"}]}],"individual":{"identifier":{"system":"urn:x","value":"555"}}}]}`
	glucose = `{"resourceType":"Observation","id":"o1","code":{"coding":[{"system":"http://loinc.org","code":"2345-7"}]}}`
	medReq  = `{"resourceType":"MedicationRequest","id":"m1","medicationCodeableConcept":{"coding":[{"system":"http://www.nlm.nih.gov/research/umls/rxnorm","code":"197361"}]}}`
)

func TestRouterFilters(t *testing.T) {
	pat, enc, obs, med := resource(t, patientPCP), resource(t, encounterAttending), resource(t, glucose), resource(t, medReq)
	adt := Event{Type: EventAdmit, Sender: "GOODHEALTH", PatientID: "E1", LocalIDs: []string{"urn:aa:GH|100"},
		Resources: []fhir.Resource{pat, enc}}
	oru := Event{Type: EventResult, Sender: "NORTHLAB", PatientID: "E2", Resources: []fhir.Resource{obs}}
	rde := Event{Type: EventMedication, Sender: "GOODHEALTH", PatientID: "E3", Resources: []fhir.Resource{med}}
	cases := []struct {
		name string
		sub  Subscription
		want []*Event
	}{
		{"all", Subscription{}, []*Event{&adt, &oru, &rde}},
		{"events", Subscription{Events: []string{EventResult, EventMedication}}, []*Event{&oru, &rde}},
		{"senders", Subscription{Senders: []string{"GOODHEALTH"}}, []*Event{&adt, &rde}},
		{"facility falls back to sender", Subscription{Facilities: []string{"NORTHLAB"}}, []*Event{&oru}},
		{"resource type", Subscription{ResourceTypes: []string{"MedicationRequest"}}, []*Event{&rde}},
		{"bare code", Subscription{Codes: []string{"2345-7"}}, []*Event{&oru}},
		{"system|code", Subscription{Codes: []string{"http://www.nlm.nih.gov/research/umls/rxnorm|197361"}}, []*Event{&rde}},
		{"wrong system", Subscription{Codes: []string{"urn:other|2345-7"}}, nil},
		{"type and code on one resource", Subscription{ResourceTypes: []string{"Patient"}, Codes: []string{"2345-7"}}, nil},
		{"panel by enterprise id", Subscription{Patients: []string{"E2", "E3"}}, []*Event{&oru, &rde}},
		{"panel by local id", Subscription{Patients: []string{"urn:aa:GH|100"}}, []*Event{&adt}},
		{"pcp by value", Subscription{Attribution: &Attribution{Practitioners: []string{"1234"}}}, []*Event{&adt}},
		{"pcp by system|value", Subscription{Attribution: &Attribution{Practitioners: []string{"urn:hiegw:aa:GHH|1234"}, Roles: []string{RolePCP}}}, []*Event{&adt}},
		{"attending", Subscription{Attribution: &Attribution{Practitioners: []string{"urn:x|555"}, Roles: []string{RoleAttending}}}, []*Event{&adt}},
		{"referrer is not attending", Subscription{Attribution: &Attribution{Practitioners: []string{"777"}}}, nil},
		{"referrer with any", Subscription{Attribution: &Attribution{Practitioners: []string{"777"}, Roles: []string{RoleAny}}}, []*Event{&adt}},
		{"pcp role only", Subscription{Attribution: &Attribution{Practitioners: []string{"555"}, Roles: []string{RolePCP}}}, nil},
		{"panel or attribution", Subscription{Patients: []string{"E3"}, Attribution: &Attribution{Practitioners: []string{"1234"}}}, []*Event{&adt, &rde}},
		{"all filters together", Subscription{Events: []string{EventAdmit}, Senders: []string{"GOODHEALTH"}, ResourceTypes: []string{"Encounter"}, Patients: []string{"E1"}}, []*Event{&adt}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			c.sub.Name, c.sub.Topic = "s", "t"
			r := NewRouter([]Subscription{c.sub}, nil)
			var got []*Event
			for _, ev := range []*Event{&adt, &oru, &rde} {
				out, err := r.Route(*ev)
				if err != nil {
					t.Fatal(err)
				}
				if len(out) > 1 {
					t.Fatalf("one subscription gave %d entries", len(out))
				}
				if len(out) == 1 {
					got = append(got, ev)
				}
			}
			if !slices.Equal(got, c.want) {
				t.Errorf("matched %d events, want %d", len(got), len(c.want))
			}
		})
	}
}

func TestRouteEntriesAndCounters(t *testing.T) {
	reg := prometheus.NewRegistry()
	r := NewRouter([]Subscription{
		{Name: "fhir", Topic: "a"},
		{Name: "v2", Topic: "b", Format: FormatHL7v2, EnterpriseAuthority: "REGION"},
		{Name: "none", Topic: "c", Events: []string{EventMerge}},
	}, reg)
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hl7", "oru_r01.hl7"))
	if err != nil {
		t.Fatal(err)
	}
	ev := Event{Type: EventResult, Sender: "LAB", EnvelopeID: "env1", ControlID: "C1", MessageType: "ORU^R01",
		PatientID: "ENT-9", Raw: raw, Resources: []fhir.Resource{resource(t, glucose)}}
	out, err := r.Route(ev)
	if err != nil {
		t.Fatal(err)
	}
	if len(out) != 2 {
		t.Fatalf("got %d entries, want 2", len(out))
	}
	f, v := out[0], out[1]
	if f.Key != "ENT-9" || f.Topic != "a" || f.Headers["content-type"] != "application/fhir+json" || f.Headers["hiegw-message-id"] != "C1" {
		t.Errorf("fhir entry: %+v", f)
	}
	var b map[string]any
	if err := json.Unmarshal(f.Payload, &b); err != nil || b["resourceType"] != "Bundle" {
		t.Errorf("fhir payload is not a Bundle: %v", err)
	}
	want, err := AddEnterpriseID(raw, "ENT-9", "REGION")
	if err != nil {
		t.Fatal(err)
	}
	if string(v.Payload) != string(want) || v.Headers["hiegw-format"] != FormatHL7v2 || v.Key != "ENT-9" {
		t.Errorf("hl7v2 entry: headers %v", v.Headers)
	}
	if got := testutil.ToFloat64(r.matched.WithLabelValues("v2")); got != 1 {
		t.Errorf("matched{v2} = %v", got)
	}
	// A document source cannot be re-encoded as HL7 v2: the subscriber gets
	// FHIR JSON, and that is counted.
	doc := ev
	doc.Raw = []byte("<ClinicalDocument/>")
	out, _ = r.Route(doc)
	if len(out) != 2 || out[1].Headers["hiegw-format"] != FormatFHIR {
		t.Fatalf("fallback entry: %+v", out)
	}
	if got := testutil.ToFloat64(r.fallback.WithLabelValues("v2")); got != 1 {
		t.Errorf("fallback{v2} = %v", got)
	}
	// No match is counted, not dropped silently.
	r.Swap([]Subscription{{Name: "none", Topic: "c", Events: []string{EventMerge}}})
	if out, _ := r.Route(ev); len(out) != 0 {
		t.Fatalf("unexpected entries %+v", out)
	}
	if got := testutil.ToFloat64(r.unmatched); got != 1 {
		t.Errorf("unmatched = %v", got)
	}
	if subs := r.Subscriptions(); len(subs) != 1 || subs[0].Name != "none" {
		t.Errorf("after swap: %+v", subs)
	}
}

func TestFacilityFromMSH4(t *testing.T) {
	raw := []byte("MSH|^~\\&|APP|NORTHLAB^2.16.840.1.113883.1^ISO|HIE|HIE|20260101||ORU^R01|1|P|2.5.1\rPID|1||9^^^NL^MR\r")
	r := NewRouter([]Subscription{{Name: "lab", Topic: "t", Facilities: []string{"NORTHLAB"}}}, nil)
	// The sender name differs from the facility; MSH-4 decides.
	if out, _ := r.Route(Event{Sender: "lab-feed-7", PatientID: "E", Raw: raw}); len(out) != 1 {
		t.Fatal("MSH-4 facility not matched")
	}
	r.Swap([]Subscription{{Name: "lab", Topic: "t", Facilities: []string{"SOUTHLAB"}}})
	if out, _ := r.Route(Event{Sender: "lab-feed-7", PatientID: "E", Raw: raw}); len(out) != 0 {
		t.Fatal("other facility matched")
	}
	// An explicit facility wins.
	if out, _ := r.Route(Event{Sender: "x", Facility: "SOUTHLAB", PatientID: "E", Raw: raw}); len(out) != 1 {
		t.Fatal("Event.Facility ignored")
	}
}

// TestEventBundleSplicesEncodedResources: a Bundle built from the resources'
// JSON as the pipeline stored it is byte for byte the one built by encoding
// the resources, including text that JSON escapes.
func TestEventBundleSplicesEncodedResources(t *testing.T) {
	for _, name := range []string{"adt_a01.hl7", "oru_r01.hl7"} {
		rs := append(mappedSample(t, name), fhir.Resource{"resourceType": "Basic", "id": "x-1",
			"text": map[string]any{"div": `<div xmlns="http://www.w3.org/1999/xhtml">a & b < c — "é"</div>`}})
		ev := Event{Type: "admit", Sender: "LAB", EnvelopeID: "env-1", Resources: rs, At: time.Unix(1700000000, 0)}
		plain, err := EventBundle(ev)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range rs {
			b, err := json.Marshal(r)
			if err != nil {
				t.Fatal(err)
			}
			ev.Encoded = append(ev.Encoded, b)
		}
		spliced, err := EventBundle(ev)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(plain, spliced) {
			t.Fatalf("%s: spliced Bundle differs:\n%s\n%s", name, plain, spliced)
		}
		if !bytes.Contains(spliced, []byte(`\u003cdiv`)) {
			t.Fatalf("%s: expected JSON's HTML escaping in %s", name, spliced)
		}
	}
}

// BenchmarkEventBundle builds the event Bundle of a mapped ORU^R01 (the
// resources encoded again, or their stored JSON spliced in).
func BenchmarkEventBundle(b *testing.B) {
	rs := mappedSample(b, "oru_r01.hl7")
	ev := Event{Type: "result", Sender: "LAB", EnvelopeID: "env-1", Resources: rs, At: time.Unix(1700000000, 0)}
	b.Run("encode", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := EventBundle(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
	for _, r := range rs {
		j, _ := json.Marshal(r)
		ev.Encoded = append(ev.Encoded, j)
	}
	b.Run("splice", func(b *testing.B) {
		for i := 0; i < b.N; i++ {
			if _, err := EventBundle(ev); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// mappedSample maps testdata/hl7/name with the shipped mappings.
func mappedSample(t testing.TB, name string) []fhir.Resource {
	t.Helper()
	set, err := mapping.Load(filepath.Join("..", "..", "mappings"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hl7", name))
	if err != nil {
		t.Fatal(err)
	}
	m, err := hl7.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := set.MapHL7("LAB", m)
	if err != nil {
		t.Fatal(err)
	}
	return res.Resources
}

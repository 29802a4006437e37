package route

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/fhir"
)

// FuzzParseSubscriptions reads whatever an operator might save as the
// subscriptions file, which the gateway reloads while it runs: no content
// may make it panic, a refusal names the file, and subscriptions accepted
// route events without a panic and only to their own topics.
func FuzzParseSubscriptions(f *testing.F) {
	for _, name := range []string{"subscriptions.yaml", "bad.yaml"} {
		b, err := os.ReadFile(filepath.Join("testdata", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte("subscriptions:\n  - name: a\n    topic: t\n    attribution:\n      practitioners: [\"x|1\"]\n"))
	pat, enc, obs := resource(f, patientPCP), resource(f, encounterAttending), resource(f, glucose)
	events := []Event{
		{Type: EventAdmit, Sender: "GOODHEALTH", PatientID: "E1", LocalIDs: []string{"urn:aa:GH|100"},
			Resources: []fhir.Resource{pat, enc}, Raw: []byte("MSH|^~\\&|APP|GHH|||20250101||ADT^A01|1|P|2.5.1\r")},
		{Type: EventResult, Sender: "NORTHLAB", PatientID: "E2", Resources: []fhir.Resource{obs}},
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		subs, err := ParseSubscriptions("subs.yaml", data)
		if err != nil {
			if !strings.Contains(err.Error(), "subs.yaml") {
				t.Fatalf("refusal does not name the file: %v", err)
			}
			return
		}
		topics := map[string]bool{}
		for _, s := range subs {
			topics[s.Topic] = true
		}
		r := NewRouter(subs, nil)
		for _, ev := range events {
			out, err := r.Route(ev)
			if err != nil {
				continue
			}
			for _, o := range out {
				if !topics[o.Topic] && o.Topic != DefaultSubscription.Topic {
					t.Fatalf("routed to topic %q, which no subscription names", o.Topic)
				}
			}
		}
	})
}

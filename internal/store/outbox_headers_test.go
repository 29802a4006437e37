package store

import (
	"encoding/json"
	"maps"
	"testing"

	"github.com/hiegw/hiegw/internal/fhir"
)

// headerSamples are headers as AddOutbox writes them (fhir.Marshal) and a
// few it never writes.
func headerSamples(t testing.TB) []string {
	out := []string{`{}`, `null`, `{"a":"1",}`, `{"a":1}`, `{"a":"1"} `, `{"a":"1","a":"2"}`, `{"a" :"1"}`, "{\"a\":\"\xff\"}",
		`{"a":"x\"y"}`, "{\"a\":\"\x01\"}", `{"a":"1"`, `["a"]`}
	for _, h := range []map[string]string{
		{},
		{"hiegw-event-type": "patient.update", "hiegw-sender": "GOOD_HEALTH", "hiegw-envelope-id": "0193a1b2-7c3d"},
		{"hiegw-sender": `quote " and \ backslash`, "hiegw-control-id": "tab\there"},
		{"hiegw-sender": "Zürich <Nord> & Süd", "hiegw-message-type": "ADT^A01^ADT_A01"},
		{"": ""},
	} {
		b, err := fhir.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, string(b))
	}
	return out
}

// TestHeadersAsEncodingJSON: headers decode as encoding/json decodes them,
// through the plain path when it applies and through encoding/json when it
// does not; the plain path takes what AddOutbox writes without escapes.
func TestHeadersAsEncodingJSON(t *testing.T) {
	plain := 0
	for _, s := range headerSamples(t) {
		want := map[string]string{}
		_ = json.Unmarshal([]byte(s), &want)
		if got := (OutboxRow{HeadersRaw: s}).Headers(); !maps.Equal(got, want) {
			t.Errorf("%q: headers %v, want %v", s, got, want)
		}
		if _, ok := plainHeaders(s); ok {
			plain++
		}
	}
	if _, ok := plainHeaders(`{"hiegw-event-type":"patient.update","hiegw-sender":"GOOD_HEALTH"}`); !ok || plain < 4 {
		t.Fatalf("the plain path took %d samples and not the usual headers", plain)
	}
}

// FuzzPlainHeaders: whatever the plain path accepts, encoding/json accepts
// too and decodes to the same headers.
func FuzzPlainHeaders(f *testing.F) {
	for _, s := range headerSamples(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, ok := plainHeaders(s)
		if !ok {
			return
		}
		var want map[string]string
		if err := json.Unmarshal([]byte(s), &want); err != nil {
			t.Fatalf("%q: plain path accepted what encoding/json refuses: %v", s, err)
		}
		if !maps.Equal(got, want) {
			t.Fatalf("%q: %v, encoding/json %v", s, got, want)
		}
	})
}

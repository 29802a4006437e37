package fhir

import (
	"math/rand"
	"strings"
	"testing"

	"github.com/google/uuid"
)

// stableIDReference is StableID written the straightforward way, with the
// uuid package hashing the joined name.
func stableIDReference(sender, resourceType string, keys ...string) string {
	name := strings.Join(append([]string{sender, resourceType}, keys...), "\x00")
	return uuid.NewSHA1(namespace, []byte(name)).String()
}

func TestStableIDMatchesUUIDv5(t *testing.T) {
	cases := [][]string{
		{"", ""},
		{"GHH", "Patient", "urn:hiegw:aa:GHH|555001"},
		{"GHH", "Observation", "FO200", "2001-1", ""},
		{"GHH", "Observation", "", "", ""},
		{"NORTHLAB", "Encounter", strings.Repeat("x", 300)}, // longer than the stack buffer
		{"é", "Patient", "ü\x00ß"},
	}
	r := rand.New(rand.NewSource(1))
	for range 200 {
		c := []string{randString(r, 12), randString(r, 20)}
		for range r.Intn(5) {
			c = append(c, randString(r, 120))
		}
		cases = append(cases, c)
	}
	for _, c := range cases {
		got, want := StableID(c[0], c[1], c[2:]...), stableIDReference(c[0], c[1], c[2:]...)
		if got != want {
			t.Fatalf("StableID(%q) = %s, want %s", c, got, want)
		}
	}
	// a known value, so that a change of namespace or layout is seen
	if got := StableID("GHH", "Patient", "a"); got != stableIDReference("GHH", "Patient", "a") || len(got) != 36 || got[14] != '5' {
		t.Errorf("StableID = %s, want a version 5 UUID", got)
	}
}

func randString(r *rand.Rand, max int) string {
	b := make([]byte, r.Intn(max+1))
	for i := range b {
		b[i] = byte(r.Intn(256))
	}
	return string(b)
}

func BenchmarkStableID(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		StableID("GHH", "Observation", "FO200", "2001-1", "1")
	}
}

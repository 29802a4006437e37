package fhir

import (
	"bytes"
	"encoding/json"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// pieces are the parts random strings are made of: plain text and every
// kind of character encoding/json escapes or replaces.
var jsonPieces = []string{"a", "Zz", " ", "0", "é", "中", "😀", "\"", "\\", "/", "<", ">", "&", "\x00", "\x01", "\b",
	"\f", "\n", "\r", "\t", "\x1f", "\x7f", "\u2028", "\u2029", "\ufffd", "\x80", "\xff", "\xe2\x80", "\xed\xa0\x80",
	"\xc0\xaf", "\xf4\x90\x80\x80", "\u00a0", "\u0600"}

func randJSONString(rng *rand.Rand) string {
	var sb strings.Builder
	for range rng.IntN(6) {
		sb.WriteString(jsonPieces[rng.IntN(len(jsonPieces))])
	}
	return sb.String()
}

// randValue builds a value of the kinds resources hold, and now and then one
// Marshal leaves to encoding/json (numbers, a struct, a raw message).
func randValue(rng *rand.Rand, depth int) any {
	n := 12
	if depth > 3 {
		n = 4
	}
	switch rng.IntN(n) {
	case 0:
		return nil
	case 1, 2:
		return randJSONString(rng)
	case 3:
		return rng.IntN(2) == 0
	case 4:
		return rng.Float64() * math.Pow(10, float64(rng.IntN(50)-25))
	case 5:
		return rng.IntN(1000) - 500
	case 6:
		return json.Number("12.50")
	case 7, 8:
		m := map[string]any{}
		if rng.IntN(8) == 0 {
			m = nil
		}
		for range rng.IntN(5) {
			if m == nil {
				break
			}
			m[randJSONString(rng)] = randValue(rng, depth+1)
		}
		if rng.IntN(4) == 0 {
			return Resource(m)
		}
		return m
	case 9:
		var s []any
		if rng.IntN(6) != 0 {
			s = []any{}
		}
		for range rng.IntN(4) {
			s = append(s, randValue(rng, depth+1))
		}
		return s
	case 10:
		switch rng.IntN(4) {
		case 0:
			var s []string
			for range rng.IntN(3) {
				s = append(s, randJSONString(rng))
			}
			return s
		case 1:
			m := map[string]string{}
			for range rng.IntN(3) {
				m[randJSONString(rng)] = randJSONString(rng)
			}
			return m
		case 2:
			return json.RawMessage(` {"b": [1, 2], "a":"<x>"} `)
		}
		return struct {
			A string `json:"a"`
			B []int  `json:"b,omitempty"`
		}{A: randJSONString(rng)}
	}
	return map[string]any{"resourceType": "Patient", "id": randJSONString(rng)}
}

// TestMarshalMatchesEncodingJSON: Marshal writes exactly what
// encoding/json.Marshal writes, and fails where it fails.
func TestMarshalMatchesEncodingJSON(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 50000 {
		v := randValue(rng, 0)
		if i%500 == 0 {
			v = map[string]any{"bad": []any{"x", math.NaN()}}
		}
		want, werr := json.Marshal(v)
		got, gerr := Marshal(v)
		if (werr == nil) != (gerr == nil) || (werr != nil && werr.Error() != gerr.Error()) {
			t.Fatalf("%#v: error %v, want %v", v, gerr, werr)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%#v:\n got %s\nwant %s", v, got, want)
		}
	}
}

// TestAppendJSONKeepsPrefix: AppendJSON appends, and leaves dst as it was on
// error.
func TestAppendJSONKeepsPrefix(t *testing.T) {
	got, err := AppendJSON([]byte("x="), map[string]any{"b": 1, "a": "<"})
	if err != nil || string(got) != `x={"a":"\u003c","b":1}` {
		t.Fatalf("got %s, %v", got, err)
	}
	got, err = AppendJSON([]byte("x="), []any{"a", math.Inf(1)})
	if err == nil || string(got) != "x=" {
		t.Fatalf("got %s, %v; want x= and an error", got, err)
	}
}

func FuzzAppendJSONString(f *testing.F) {
	for _, p := range jsonPieces {
		f.Add(p + "text" + p)
	}
	f.Fuzz(func(t *testing.T, s string) {
		want, _ := json.Marshal(s)
		if got := AppendJSONString(nil, s); !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s, want %s", s, got, want)
		}
		m := map[string]any{s: []any{s, map[string]any{"k": s}}}
		want, _ = json.Marshal(m)
		if got, err := Marshal(m); err != nil || !bytes.Equal(got, want) {
			t.Fatalf("%q: got %s (%v), want %s", s, got, err, want)
		}
	})
}

func BenchmarkMarshal(b *testing.B) {
	p := New("Patient", "52b72931-e711-5a45-9a03-08390964f9d4")
	p["identifier"] = []any{map[string]any{"system": "urn:hiegw:aa:GOODHEALTH", "value": "4455667",
		"type": map[string]any{"coding": []any{map[string]any{"code": "MR", "system": "http://terminology.hl7.org/CodeSystem/v2-0203"}}}}}
	p["name"] = []any{map[string]any{"family": "MUÑOZ", "given": []any{"JOSÉ", "Q"}}}
	p["birthDate"] = "1967-03-15"
	p["gender"] = "male"
	p["address"] = []any{map[string]any{"city": "SPRINGFIELD", "country": "USA", "line": []any{"742 EVERGREEN TERRACE"},
		"postalCode": "62704", "state": "IL"}}
	p["telecom"] = []any{map[string]any{"system": "phone", "use": "home", "value": "(217)5550123"}}
	b.Run("fhir", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("encoding-json", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, err := json.Marshal(p); err != nil {
				b.Fatal(err)
			}
		}
	})
}

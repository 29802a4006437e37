package sqlstore

import (
	"errors"
	"reflect"
	"testing"
	"unicode/utf8"

	"github.com/hiegw/hiegw/internal/mpi"
)

func TestCandRoundTrip(t *testing.T) {
	for _, e := range []mpi.Entry{
		{},
		{Record: mpi.Record{Family: "Muñoz", Given: "José", Middle: "M", BirthDate: "19700101", Sex: "M",
			NationalID: "123", AddressLines: []string{"1 Main St", "", "Unit 2"}, City: "Town", State: "ST",
			Postcode: "1000", Phone: "0200000000"},
			NotSame: []mpi.Key{{Authority: "A", MRN: "1"}, {Authority: "", MRN: "x\x00y"}}},
		{Record: mpi.Record{Family: string(make([]byte, 300))}},
	} {
		var got mpi.Entry
		if err := decodeCand(string(encodeCand(&e)), &got); err != nil {
			t.Fatalf("decode: %v", err)
		}
		if !reflect.DeepEqual(got, e) {
			t.Errorf("round trip:\n got  %#v\n want %#v", got, e)
		}
	}
}

// TestCandInvalidUTF8 checks that invalid UTF-8 reads back as the JSON body
// would: replaced, not kept.
func TestCandInvalidUTF8(t *testing.T) {
	e := mpi.Entry{Record: mpi.Record{Family: "a\xffb"}}
	var got mpi.Entry
	if err := decodeCand(string(encodeCand(&e)), &got); err != nil {
		t.Fatal(err)
	}
	if got.Record.Family != "a\uFFFDb" {
		t.Errorf("family %q, want the replacement character", got.Record.Family)
	}
}

func TestCandMalformed(t *testing.T) {
	good := string(encodeCand(&mpi.Entry{Record: mpi.Record{Family: "Smith", AddressLines: []string{"x"}}}))
	for name, s := range map[string]string{
		"empty":          "",
		"unknown format": "\x09" + good[1:],
		"truncated":      good[:len(good)-1],
		"trailing bytes": good + "z",
		"length too big": "\x01\x7f",
		"varint overrun": "\x01\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\x01",
	} {
		var e mpi.Entry
		if err := decodeCand(s, &e); !errors.Is(err, errBadCand) {
			t.Errorf("%s: err %v, want errBadCand", name, err)
		}
	}
}

func FuzzDecodeCand(f *testing.F) {
	f.Add(string(encodeCand(&mpi.Entry{Record: mpi.Record{Family: "Smith", AddressLines: []string{"x"}},
		NotSame: []mpi.Key{{Authority: "A", MRN: "1"}}})))
	f.Fuzz(func(t *testing.T, s string) {
		var e mpi.Entry
		if err := decodeCand(s, &e); err != nil {
			return
		}
		// Whatever decodes encodes back to the same bytes when it was
		// valid UTF-8 to begin with.
		var again mpi.Entry
		if err := decodeCand(string(encodeCand(&e)), &again); err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if validAll(e) && !reflect.DeepEqual(again, e) {
			t.Fatalf("unstable: %#v vs %#v", e, again)
		}
	})
}

func validAll(e mpi.Entry) bool {
	for _, f := range candFields(&e.Record) {
		if !utf8.ValidString(*f) {
			return false
		}
	}
	for _, l := range e.Record.AddressLines {
		if !utf8.ValidString(l) {
			return false
		}
	}
	for _, k := range e.NotSame {
		if !utf8.ValidString(k.Authority) || !utf8.ValidString(k.MRN) {
			return false
		}
	}
	return true
}

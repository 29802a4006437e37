package mpi

import "testing"

// FuzzCompare checks that normalisation and comparison accept any input and
// that a record always agrees with itself on every field it has.
func FuzzCompare(f *testing.F) {
	f.Add("Muñoz", "José", "1956-04-09", "12 Rose St", "+61 2 9876 5432", "123-45-6789", "Knight", "Ann")
	f.Add("", "", "", "", "", "", "\xff\xfe", "ß")
	f.Add("mac", "sch", "00000000", "1", "1234567", "x", "ph", "ev")
	f.Fuzz(func(t *testing.T, family, given, dob, addr, phone, nid, family2, given2 string) {
		a := newFeatures(&Record{Family: family, Given: given, BirthDate: dob, AddressLines: []string{addr}, Phone: phone, NationalID: nid})
		b := newFeatures(&Record{Family: family2, Given: given2, BirthDate: dob, AddressLines: []string{addr}, Phone: phone, NationalID: nid})
		w := DefaultParams().weights()
		compare(a, b, w)
		_, fs := compare(a, a, w)
		for _, s := range fs {
			if s.Level != LevelExact && s.Level != LevelMissing {
				t.Fatalf("self comparison of %s gave %s", s.Field, s.Level)
			}
		}
		blockKeys(a)
	})
}

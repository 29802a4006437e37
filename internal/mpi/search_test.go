package mpi

import (
	"context"
	"testing"
)

func TestSearch(t *testing.T) {
	ctx := context.Background()
	ix, err := New(NewMemory(), DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	ada := Record{Authority: "A", MRN: "1", Family: "Lovelace", Given: "Ada", BirthDate: "18151210", Sex: "F", Postcode: "1000"}
	other := Record{Authority: "A", MRN: "2", Family: "Lovelace", Given: "Byron", BirthDate: "17880122", Sex: "M", Postcode: "1000"}
	var eids []string
	for _, r := range []Record{ada, other} {
		d, err := ix.Resolve(ctx, r)
		if err != nil {
			t.Fatal(err)
		}
		eids = append(eids, d.EnterpriseID)
	}
	before := ix.store.(*Memory).Len()
	got, compared, err := ix.Search(ctx, Record{Family: "Lovelace", Given: "Ada", BirthDate: "1815-12-10", Postcode: "1000"}, -100, 0)
	if err != nil {
		t.Fatal(err)
	}
	if compared != 2 || len(got) != 2 {
		t.Fatalf("compared %d, ranked %d; want 2 and 2", compared, len(got))
	}
	if got[0].EnterpriseID != eids[0] || got[0].Candidate != ada.Key() || got[0].Score <= got[1].Score {
		t.Fatalf("ranking: %v", got)
	}
	sum := 0.0
	for _, f := range got[0].Fields {
		sum += f.Weight
	}
	if d := sum - got[0].Score; d > 1e-9 || d < -1e-9 {
		t.Errorf("field weights sum to %v, score is %v", sum, got[0].Score)
	}
	top, _, _ := ix.Search(ctx, Record{Family: "Lovelace", Given: "Ada", BirthDate: "1815-12-10", Postcode: "1000"}, got[0].Score, 0)
	if len(top) != 1 {
		t.Errorf("min score kept %d candidates, want 1", len(top))
	}
	if n := ix.store.(*Memory).Len(); n != before {
		t.Errorf("search changed the index: %d entries, was %d", n, before)
	}
}

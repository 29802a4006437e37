// Package storetest is the contract every mpi.Store must meet. A backend's
// tests call Run with a function that opens an empty store.
package storetest

import (
	"context"
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mpi"
)

// Run checks the store returned by open against the mpi.Store contract.
// open is called once per subtest and must return an empty store.
func Run(t *testing.T, open func(t *testing.T) mpi.Store) {
	t.Run("PutGet", func(t *testing.T) { testPutGet(t, open(t)) })
	t.Run("Blocks", func(t *testing.T) { testBlocks(t, open(t)) })
	t.Run("Members", func(t *testing.T) { testMembers(t, open(t)) })
	t.Run("Lookup", func(t *testing.T) { testLookup(t, open(t)) })
	t.Run("Tasks", func(t *testing.T) { testTasks(t, open(t)) })
	t.Run("Audit", func(t *testing.T) { testAudit(t, open(t)) })
}

var at = time.Date(2026, 11, 25, 9, 30, 0, 123000, time.UTC)

func entry(auth, mrn, eid string) mpi.Entry {
	return mpi.Entry{
		Record: mpi.Record{
			Sender: "s-" + auth, Authority: auth, MRN: mrn,
			Identifiers: []mpi.Identifier{{Type: "NI", Authority: "GOV", Value: "ni-" + mrn}},
			Family:      "Family", Given: "Given", BirthDate: "19700101", Sex: "F",
			AddressLines: []string{"1 Main St", "Unit 2"}, City: "Town", State: "ST", Postcode: "1000",
			Phone: "0200000000", NationalID: "123456789",
		},
		EnterpriseID: eid,
		OwnID:        eid,
		Link: mpi.Link{Method: mpi.MethodScore, Rule: "score>=upper", Actor: "mpi", At: at,
			Comparison: &mpi.Comparison{Candidate: mpi.Key{Authority: "X", MRN: "1"}, EnterpriseID: eid, Score: 31.5,
				Fields: []mpi.FieldScore{{Field: mpi.FieldGiven, Level: mpi.LevelExact, Weight: 7.75}}}},
		NotSame: []mpi.Key{{Authority: "Y", MRN: "2"}},
		Version: 3,
	}
}

func same(t *testing.T, what string, got, want any) {
	t.Helper()
	g, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	w, err := json.Marshal(want)
	if err != nil {
		t.Fatal(err)
	}
	if string(g) != string(w) {
		t.Errorf("%s:\n got  %s\n want %s", what, g, w)
	}
}

func keys(es []mpi.Entry) []string {
	var out []string
	for _, e := range es {
		out = append(out, e.Key().String())
	}
	slices.Sort(out)
	return out
}

// scoringView is the part of an entry that Candidates must return.
func scoringView(e mpi.Entry) any {
	r := e.Record
	return struct {
		Authority, MRN, Family, Given, Middle, BirthDate, Sex, NationalID string
		AddressLines                                                      []string
		City, State, Postcode, Phone, EnterpriseID                        string
		NotSame                                                           []mpi.Key
	}{r.Authority, r.MRN, r.Family, r.Given, r.Middle, r.BirthDate, r.Sex, r.NationalID, r.AddressLines,
		r.City, r.State, r.Postcode, r.Phone, e.EnterpriseID, e.NotSame}
}

func testPutGet(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	if _, ok, err := st.Get(ctx, mpi.Key{Authority: "A", MRN: "1"}); err != nil || ok {
		t.Fatalf("get from empty store: ok=%v err=%v", ok, err)
	}
	e := entry("A", "1", "E1")
	if err := st.Put(ctx, e, []string{"b1"}); err != nil {
		t.Fatal(err)
	}
	got, ok, err := st.Get(ctx, e.Key())
	if err != nil || !ok {
		t.Fatalf("get: ok=%v err=%v", ok, err)
	}
	same(t, "entry round trip", got, e)
	// Replace.
	e.EnterpriseID, e.Version = "E2", 4
	merged := mpi.Key{Authority: "A", MRN: "9"}
	e.MergedInto = &merged
	if err := st.Put(ctx, e, nil); err != nil {
		t.Fatal(err)
	}
	got, _, _ = st.Get(ctx, e.Key())
	same(t, "replaced entry", got, e)
}

func testBlocks(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	for i, mrn := range []string{"1", "2", "3"} {
		blocks := []string{"shared", "own-" + mrn}
		if i == 2 {
			blocks = append(blocks, "third")
		}
		if err := st.Put(ctx, entry("A", mrn, "E"+mrn), blocks); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Candidates(ctx, []string{"shared", "own-1", "third", "none"}, 10)
	if err != nil {
		t.Fatal(err)
	}
	same(t, "candidates, each once", keys(got), []string{"A|1", "A|2", "A|3"})
	// A candidate carries what scoring reads: the compared fields of its
	// record, its enterprise patient and its "not the same" list.
	for _, c := range got {
		want := entry("A", c.Record.MRN, "E"+c.Record.MRN)
		same(t, "candidate "+c.Key().String(), scoringView(c), scoringView(want))
	}
	got, _ = st.Candidates(ctx, []string{"shared", "own-1"}, 2)
	same(t, "candidates skipping a block larger than maxBlock", keys(got), []string{"A|1"})
	// Replacing an entry replaces its blocks.
	if err := st.Put(ctx, entry("A", "1", "E1"), []string{"moved"}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Candidates(ctx, []string{"own-1"}, 10)
	same(t, "old block after replace", keys(got), []string(nil))
	got, _ = st.Candidates(ctx, []string{"moved"}, 10)
	same(t, "new block after replace", keys(got), []string{"A|1"})
	// A new entry (version 1) is indexed; its next version replaces the
	// blocks and identifiers it was filed under.
	fresh := entry("A", "9", "E9")
	fresh.Version = 1
	if err := st.Put(ctx, fresh, []string{"first-9"}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Candidates(ctx, []string{"first-9"}, 10)
	same(t, "new entry's block", keys(got), []string{"A|9"})
	if ks, _ := st.Lookup(ctx, fresh.Record.Identifiers[0]); len(ks) != 1 {
		t.Errorf("new entry's identifier: lookup found %v", ks)
	}
	fresh.Version, fresh.Record.Identifiers = 2, nil
	if err := st.Put(ctx, fresh, []string{"then-9"}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Candidates(ctx, []string{"first-9"}, 10)
	same(t, "new entry's old block after its second version", keys(got), []string(nil))
	if ks, _ := st.Lookup(ctx, entry("A", "9", "E9").Record.Identifiers[0]); len(ks) != 0 {
		t.Errorf("identifier removed by the second version still found: %v", ks)
	}
	// Inactive (merged) entries are no candidates.
	e := entry("A", "2", "E2")
	e.MergedInto = &mpi.Key{Authority: "A", MRN: "3"}
	if err := st.Put(ctx, e, []string{"shared"}); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Candidates(ctx, []string{"shared"}, 10)
	same(t, "candidates without merged entries", keys(got), []string{"A|3"})
}

func testMembers(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	for _, e := range []mpi.Entry{entry("A", "1", "E"), entry("B", "1", "E"), entry("C", "1", "F")} {
		if err := st.Put(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
	}
	got, err := st.Members(ctx, "E")
	if err != nil {
		t.Fatal(err)
	}
	same(t, "members", keys(got), []string{"A|1", "B|1"})
	moved := entry("B", "1", "F")
	if err := st.Put(ctx, moved, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Members(ctx, "E")
	same(t, "members after a move", keys(got), []string{"A|1"})
	inactive := entry("A", "1", "E")
	inactive.MergedInto = &mpi.Key{Authority: "A", MRN: "2"}
	if err := st.Put(ctx, inactive, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Members(ctx, "E")
	same(t, "members without merged entries", keys(got), []string(nil))
	got, _ = st.Members(ctx, "F")
	same(t, "members of the target", keys(got), []string{"B|1", "C|1"})
}

func testLookup(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	a, b := entry("A", "1", "E"), entry("B", "1", "F")
	b.Record.Identifiers = a.Record.Identifiers
	for _, e := range []mpi.Entry{a, b} {
		if err := st.Put(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
	}
	id := a.Record.Identifiers[0]
	got, err := st.Lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var ks []string
	for _, k := range got {
		ks = append(ks, k.String())
	}
	slices.Sort(ks)
	same(t, "lookup", ks, []string{"A|1", "B|1"})
	b.Record.Identifiers = nil
	if err := st.Put(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	got, _ = st.Lookup(ctx, id)
	same(t, "lookup after the identifier was removed", got, []mpi.Key{a.Key()})
	other := id
	other.Type = "PI"
	if got, _ := st.Lookup(ctx, other); len(got) != 0 {
		t.Errorf("lookup matched another identifier type: %v", got)
	}
}

func testTasks(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	task := mpi.Task{ID: "t1", Key: mpi.Key{Authority: "A", MRN: "1"}, Candidate: mpi.Key{Authority: "B", MRN: "2"},
		Comparison: mpi.Comparison{Score: 12.5}, Reason: "band", Status: mpi.TaskOpen, Created: at}
	if err := st.PutTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	got, ok, err := st.Task(ctx, "t1")
	if err != nil || !ok {
		t.Fatalf("task: ok=%v err=%v", ok, err)
	}
	same(t, "task", got, task)
	task.Status, task.DecidedBy, task.DecidedAt = mpi.TaskMatch, "reviewer", at.Add(time.Hour)
	if err := st.PutTask(ctx, task); err != nil {
		t.Fatal(err)
	}
	got, _, _ = st.Task(ctx, "t1")
	same(t, "decided task", got, task)
	if _, ok, err := st.Task(ctx, "none"); ok || err != nil {
		t.Errorf("missing task: ok=%v err=%v", ok, err)
	}
}

func testAudit(t *testing.T, st mpi.Store) {
	ctx := context.Background()
	before, after := entry("A", "1", "E1"), entry("A", "1", "E2")
	a := mpi.AuditEntry{ID: "a1", At: at, Actor: "op", Action: "link", Reason: "why", Keys: []mpi.Key{before.Key()},
		Before: []mpi.Entry{before}, After: []mpi.Entry{after},
		Events: []mpi.Event{{Type: mpi.EventMerged, EnterpriseID: "E2", From: "E1", Keys: []mpi.Key{before.Key()}}}}
	if err := st.AppendAudit(ctx, a); err != nil {
		t.Fatal(err)
	}
	got, ok, err := st.AuditEntry(ctx, "a1")
	if err != nil || !ok {
		t.Fatalf("audit entry: ok=%v err=%v", ok, err)
	}
	same(t, "audit entry", got, a)
	if _, ok, err := st.AuditEntry(ctx, "none"); ok || err != nil {
		t.Errorf("missing audit entry: ok=%v err=%v", ok, err)
	}
}

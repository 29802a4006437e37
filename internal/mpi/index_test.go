package mpi

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func testIndex(t *testing.T, trusted ...string) (*Index, *Memory) {
	t.Helper()
	cfg := DefaultConfig()
	cfg.TrustedTypes = trusted
	n := 0
	cfg.NewID = func() string { n++; return fmt.Sprintf("id-%04d", n) }
	clock := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)
	cfg.Now = func() time.Time { clock = clock.Add(time.Second); return clock }
	st := NewMemory()
	ix, err := New(st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return ix, st
}

func alice() Record {
	return Record{
		Sender: "hosp-a", Authority: "A", MRN: "100",
		Given: "Alice", Family: "Walker", BirthDate: "19700315", Sex: "F",
		AddressLines: []string{"12 Rose Street"}, City: "Springfield", State: "NSW", Postcode: "2000",
		Phone: "02 9876 5432", NationalID: "123456789",
	}
}

// aliceAtB is Alice as hospital B registered her, with clerical errors.
func aliceAtB() Record {
	r := alice()
	r.Sender, r.Authority, r.MRN = "hosp-b", "B", "7"
	r.Given = "Alcie"
	r.AddressLines = []string{"12 Rose St", "Flat 1"}
	r.NationalID = "123456798"
	return r
}

func bob() Record {
	return Record{
		Sender: "hosp-b", Authority: "B", MRN: "8",
		Given: "Robert", Family: "Nguyen", BirthDate: "19881102", Sex: "M",
		AddressLines: []string{"4 Hill Road"}, City: "Lakeside", State: "VIC", Postcode: "3100",
		Phone: "03 5555 0101", NationalID: "987654321",
	}
}

// reviewBand is a record sharing Alice's name, sex and birth date but
// nothing else: too much to ignore, too little to link.
func reviewBand() Record {
	return Record{
		Sender: "hosp-c", Authority: "C", MRN: "9",
		Given: "Alice", Family: "Walker", BirthDate: "19700315", Sex: "F",
		AddressLines: []string{"88 Ocean Parade"}, City: "Bayview", State: "NSW", Postcode: "2100",
		Phone: "02 4444 1212", NationalID: "555000111",
	}
}

func resolve(t *testing.T, ix *Index, r Record) Decision {
	t.Helper()
	d, err := ix.Resolve(context.Background(), r)
	if err != nil {
		t.Fatalf("resolve %s: %v", r.Key(), err)
	}
	return d
}

func entry(t *testing.T, ix *Index, k Key) Entry {
	t.Helper()
	e, err := ix.Entry(context.Background(), k)
	if err != nil {
		t.Fatalf("entry %s: %v", k, err)
	}
	return e
}

func hasEvent(evs []Event, typ EventType, eid, from string) bool {
	for _, e := range evs {
		if e.Type == typ && e.EnterpriseID == eid && e.From == from {
			return true
		}
	}
	return false
}

func lastAudit(t *testing.T, st *Memory, k Key) AuditEntry {
	t.Helper()
	as := st.Audit(k)
	if len(as) == 0 {
		t.Fatalf("no audit entry for %s", k)
	}
	return as[len(as)-1]
}

func TestResolveKnownMRN(t *testing.T) {
	ix, st := testIndex(t)
	d1 := resolve(t, ix, alice())
	if d1.Outcome != NewPatient || d1.EnterpriseID == "" || !hasEvent(d1.Events, EventCreated, d1.EnterpriseID, "") {
		t.Fatalf("first record: %+v", d1)
	}
	d2 := resolve(t, ix, alice())
	if d2.Outcome != LinkedByIdentifier || d2.Rule != "known-mrn" || d2.EnterpriseID != d1.EnterpriseID || len(d2.Events) != 0 {
		t.Fatalf("same MRN again: %+v", d2)
	}
	if n := len(st.Audit(alice().Key())); n != 1 {
		t.Errorf("an unchanged record wrote %d audit entries, want 1", n)
	}
	// The same MRN under another authority is another record.
	other := alice()
	other.Authority = "Z"
	other.Given, other.Family, other.BirthDate, other.NationalID = "Zed", "Quill", "20010101", ""
	if d := resolve(t, ix, other); d.EnterpriseID == d1.EnterpriseID {
		t.Errorf("MRN of another authority linked by identifier: %+v", d)
	}
}

func TestTrustedIdentifier(t *testing.T) {
	hie := Identifier{Type: "HIE", Authority: "REGION", Value: "H-42"}
	a := alice()
	a.Identifiers = []Identifier{hie}
	// Same HIE id, demographics changed beyond recognition (new name, moved).
	b := bob()
	b.Identifiers = []Identifier{hie}

	ix, st := testIndex(t, "HIE")
	da := resolve(t, ix, a)
	db := resolve(t, ix, b)
	if db.Outcome != LinkedByIdentifier || db.Rule != "trusted-identifier:HIE" || db.EnterpriseID != da.EnterpriseID {
		t.Fatalf("trusted identifier did not link: %+v", db)
	}
	if au := lastAudit(t, st, b.Key()); au.Action != "link" || au.Reason != "trusted-identifier:HIE" || au.After[0].Link.Method != MethodIdentifier {
		t.Errorf("audit: %+v", au)
	}
	// A third record whose HIE id points at a different patient than its
	// other trusted id goes to review.
	other := Identifier{Type: "HIE", Authority: "REGION", Value: "H-99"}
	c := Record{Authority: "C", MRN: "3", Identifiers: []Identifier{other}, Given: "Priya", Family: "Raman", BirthDate: "20020707", Sex: "F"}
	dc := resolve(t, ix, c)
	if dc.EnterpriseID == da.EnterpriseID {
		t.Fatalf("setup: unrelated record linked: %+v", dc)
	}
	d := alice()
	d.Authority, d.MRN, d.Identifiers = "D", "4", []Identifier{hie, other}
	if dd := resolve(t, ix, d); dd.Outcome != Review || dd.Rule != "conflicting-trusted-identifiers" || dd.EnterpriseID == da.EnterpriseID || dd.EnterpriseID == dc.EnterpriseID {
		t.Errorf("conflicting trusted identifiers: %+v", dd)
	}
	if !hasEvent(db.Events, EventLinked, da.EnterpriseID, "") {
		t.Errorf("no linked event: %+v", db.Events)
	}

	ix, _ = testIndex(t) // HIE not trusted
	da = resolve(t, ix, a)
	if db = resolve(t, ix, b); db.EnterpriseID == da.EnterpriseID {
		t.Fatalf("untrusted identifier type linked: %+v", db)
	}
}

func TestLinkByScoreExplained(t *testing.T) {
	ix, st := testIndex(t)
	da := resolve(t, ix, alice())
	resolve(t, ix, bob())
	d := resolve(t, ix, aliceAtB())
	if d.Outcome != LinkedByScore || d.EnterpriseID != da.EnterpriseID {
		t.Fatalf("Alice at B: %+v", d)
	}
	if d.Best == nil || d.Best.Candidate != alice().Key() || d.Best.Score < ix.Config().Upper || d.Rule != "score>=upper" {
		t.Fatalf("explanation: %+v", d.Best)
	}
	levels := map[Field]Level{}
	sum := 0.0
	for _, f := range d.Best.Fields {
		levels[f.Field] = f.Level
		sum += f.Weight
	}
	if levels[FieldGiven] != LevelSimilar || levels[FieldNationalID] != LevelTypo || levels[FieldBirthDate] != LevelExact {
		t.Errorf("levels: %v", levels)
	}
	if diff := sum - d.Best.Score; diff > 1e-9 || diff < -1e-9 {
		t.Errorf("field weights sum to %.3f, score is %.3f", sum, d.Best.Score)
	}
	e := entry(t, ix, aliceAtB().Key())
	if e.Link.Method != MethodScore || e.Link.Comparison == nil || e.Link.Comparison.Score != d.Best.Score {
		t.Errorf("link kept with the entry: %+v", e.Link)
	}
	if !hasEvent(d.Events, EventLinked, da.EnterpriseID, "") {
		t.Errorf("events: %+v", d.Events)
	}
	a := lastAudit(t, st, aliceAtB().Key())
	if a.Action != "resolve" || a.Actor != "mpi" || a.Reason != "score>=upper" || len(a.Before) != 0 || a.After[0].EnterpriseID != da.EnterpriseID {
		t.Errorf("audit: %+v", a)
	}
	if s := d.Best.String(); strings.Contains(s, "Alice") || strings.Contains(s, "Walker") {
		t.Errorf("explanation text carries names: %s", s)
	}
}

func TestReviewDecisions(t *testing.T) {
	ctx := context.Background()
	ix, st := testIndex(t)
	da := resolve(t, ix, alice())
	d := resolve(t, ix, reviewBand())
	if d.Outcome != Review || d.TaskID == "" || d.EnterpriseID == da.EnterpriseID {
		t.Fatalf("review band record: %+v (best %v)", d, d.Best)
	}
	if d.Best.Score < ix.Config().Lower || d.Best.Score >= ix.Config().Upper {
		t.Fatalf("score %.2f outside the review band", d.Best.Score)
	}
	open := st.Tasks(TaskOpen)
	if len(open) != 1 || open[0].ID != d.TaskID || open[0].Candidate != alice().Key() {
		t.Fatalf("open tasks: %+v", open)
	}

	evs, err := ix.Decide(ctx, d.TaskID, true, "reviewer-1", "same phone in chart notes")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventMerged, da.EnterpriseID, d.EnterpriseID) {
		t.Fatalf("match events: %+v", evs)
	}
	e := entry(t, ix, reviewBand().Key())
	if e.EnterpriseID != da.EnterpriseID || e.Link.Method != MethodReview || e.OpenTask != "" {
		t.Fatalf("after match: %+v", e)
	}
	if _, err := ix.Decide(ctx, d.TaskID, false, "reviewer-2", ""); !errors.Is(err, ErrTaskClosed) {
		t.Errorf("second decision: %v", err)
	}
	a := lastAudit(t, st, reviewBand().Key())
	if a.Action != "review-match" || a.Actor != "reviewer-1" || a.TaskID != d.TaskID || a.Before[0].EnterpriseID != d.EnterpriseID {
		t.Fatalf("audit: %+v", a)
	}

	// Undo the match: the record returns to its own patient, the task reopens.
	evs, err = ix.Undo(ctx, a.ID, "supervisor", "decided on the wrong task")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventSplit, d.EnterpriseID, da.EnterpriseID) {
		t.Errorf("undo events: %+v", evs)
	}
	if e := entry(t, ix, reviewBand().Key()); e.EnterpriseID != d.EnterpriseID {
		t.Fatalf("after undo the record is in %s, want %s", e.EnterpriseID, d.EnterpriseID)
	}
	if ts := st.Tasks(TaskOpen); len(ts) != 1 {
		t.Fatalf("task not reopened: %+v", ts)
	}
	if _, err := ix.Undo(ctx, a.ID, "supervisor", "twice"); !errors.Is(err, ErrConflict) {
		t.Errorf("undoing twice: %v", err)
	}

	// Non-match: kept apart, also when the record is re-evaluated.
	if _, err := ix.Decide(ctx, d.TaskID, false, "reviewer-2", "different mother's name"); err != nil {
		t.Fatal(err)
	}
	e = entry(t, ix, reviewBand().Key())
	if e.EnterpriseID == da.EnterpriseID || len(e.NotSame) != 1 || e.NotSame[0] != alice().Key() {
		t.Fatalf("after non-match: %+v", e)
	}
	if ea := entry(t, ix, alice().Key()); len(ea.NotSame) != 1 || ea.NotSame[0] != reviewBand().Key() {
		t.Fatalf("non-match not recorded on the candidate: %+v", ea.NotSame)
	}
	// A record just like the reviewed one, from a fourth sender, links to it
	// and so is kept apart from Alice as well.
	twin := reviewBand()
	twin.Authority, twin.MRN = "D", "1"
	dt := resolve(t, ix, twin)
	if dt.EnterpriseID != e.EnterpriseID || dt.Outcome != LinkedByScore {
		t.Fatalf("twin of reviewed record: %+v", dt)
	}
	if len(st.Tasks(TaskNonMatch)) != 1 {
		t.Errorf("non-match task: %+v", st.Tasks(""))
	}
}

func TestMergeA40(t *testing.T) {
	ctx := context.Background()
	ix, st := testIndex(t)
	d100 := resolve(t, ix, alice())
	// A duplicate registration at A under MRN 200 with a wrong birth date
	// and maiden name, which scoring did not link, and B's record of the same.
	dup := alice()
	dup.MRN, dup.Family, dup.BirthDate, dup.NationalID, dup.Phone = "200", "Hughes", "19710513", "", ""
	dup.AddressLines, dup.City, dup.Postcode = []string{"3 Elm Court"}, "Riverton", "2600"
	d200 := resolve(t, ix, dup)
	if d200.EnterpriseID == d100.EnterpriseID {
		t.Fatalf("setup: duplicate registration already linked: %+v", d200)
	}
	atB := dup
	atB.Authority, atB.MRN, atB.Sender = "B", "7", "hosp-b"
	if d := resolve(t, ix, atB); d.EnterpriseID != d200.EnterpriseID {
		t.Fatalf("setup: B's record not linked to MRN 200: %+v", d)
	}

	evs, err := ix.Merge(ctx, "A", "200", "100", "adt-a40", "MSH-10 123")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventMerged, d100.EnterpriseID, d200.EnterpriseID) {
		t.Fatalf("merge events: %+v", evs)
	}
	// Later messages under the old MRN resolve to the survivor.
	d := resolve(t, ix, dup)
	if d.Key != alice().Key() || d.EnterpriseID != d100.EnterpriseID || d.Rule != "merged-mrn" {
		t.Fatalf("old MRN after merge: %+v", d)
	}
	if e := entry(t, ix, atB.Key()); e.EnterpriseID != d100.EnterpriseID || e.Link.Method != MethodMerge {
		t.Fatalf("B's record after merge: %+v", e)
	}
	a := lastAudit(t, st, dup.Key())
	if a.Action != "merge" || a.Actor != "adt-a40" || a.Reason != "MSH-10 123" || len(a.Before) != 2 {
		t.Fatalf("merge audit: %+v", a)
	}
	if again, err := ix.Merge(ctx, "A", "200", "100", "adt-a40", "resent"); err != nil || len(again) != 0 {
		t.Errorf("repeated merge: %v %v", again, err)
	}

	// Reverse the merge: both histories come back.
	evs, err = ix.Undo(ctx, a.ID, "him-analyst", "A40 sent in error")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventSplit, d200.EnterpriseID, d100.EnterpriseID) {
		t.Errorf("unmerge events: %+v", evs)
	}
	if d := resolve(t, ix, dup); d.Key != dup.Key() || d.EnterpriseID != d200.EnterpriseID {
		t.Fatalf("old MRN after unmerge: %+v", d)
	}
	if e := entry(t, ix, atB.Key()); e.EnterpriseID != d200.EnterpriseID {
		t.Fatalf("B's record after unmerge: %s", e.EnterpriseID)
	}

	// A survivor MRN never seen before is created from the prior record.
	if _, err := ix.Merge(ctx, "A", "200", "300", "adt-a40", "new MRN"); err != nil {
		t.Fatal(err)
	}
	if d := resolve(t, ix, dup); d.Key != (Key{"A", "300"}) || d.EnterpriseID != d200.EnterpriseID {
		t.Fatalf("merge into a new MRN: %+v", d)
	}
	if _, err := ix.Merge(ctx, "A", "404", "100", "adt-a40", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("merge of unknown MRN: %v", err)
	}
}

func TestUnlinkRestoresBothHistories(t *testing.T) {
	ctx := context.Background()
	ix, st := testIndex(t)
	da := resolve(t, ix, alice())
	db := resolve(t, ix, bob())
	if _, err := ix.Unlink(ctx, bob().Key(), "op", "nothing to unlink"); !errors.Is(err, ErrNotLinked) {
		t.Fatalf("unlink of a lone record: %v", err)
	}
	evs, err := ix.Link(ctx, bob().Key(), alice().Key(), "op-1", "wrongly thought same")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventMerged, da.EnterpriseID, db.EnterpriseID) {
		t.Fatalf("link events: %+v", evs)
	}
	if d := resolve(t, ix, bob()); d.EnterpriseID != da.EnterpriseID {
		t.Fatalf("after link: %+v", d)
	}
	evs, err = ix.Unlink(ctx, bob().Key(), "op-2", "different people")
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(evs, EventSplit, db.EnterpriseID, da.EnterpriseID) {
		t.Fatalf("unlink events: %+v", evs)
	}
	if e := entry(t, ix, bob().Key()); e.EnterpriseID != db.EnterpriseID || e.Link.Method != MethodOperator {
		t.Fatalf("Bob after unlink: %+v", e)
	}
	if e := entry(t, ix, alice().Key()); e.EnterpriseID != da.EnterpriseID {
		t.Fatalf("Alice after unlink: %+v", e)
	}
	as := st.Audit(bob().Key())
	if len(as) != 3 || as[1].Action != "link" || as[2].Action != "unlink" || as[2].Actor != "op-2" ||
		as[2].Before[len(as[2].Before)-1].EnterpriseID != da.EnterpriseID {
		t.Fatalf("audit trail: %v", as)
	}
}

func TestUnlinkScoreLinked(t *testing.T) {
	ctx := context.Background()
	ix, _ := testIndex(t)
	da := resolve(t, ix, alice())
	resolve(t, ix, aliceAtB())
	if _, err := ix.Unlink(ctx, aliceAtB().Key(), "op", "twin sister"); err != nil {
		t.Fatal(err)
	}
	e := entry(t, ix, aliceAtB().Key())
	if e.EnterpriseID == da.EnterpriseID || e.EnterpriseID != e.OwnID {
		t.Fatalf("after unlink: %+v", e)
	}
	// A later message with a small demographic change does not relink.
	r := aliceAtB()
	r.Phone = "02 9876 5433"
	if d := resolve(t, ix, r); d.EnterpriseID != e.EnterpriseID {
		t.Fatalf("relinked after unlink: %+v", d)
	}
}

func TestUpdateChangesMatch(t *testing.T) {
	ix, st := testIndex(t)
	da := resolve(t, ix, alice())
	wrong := aliceAtB()
	wrong.Given, wrong.Family, wrong.BirthDate, wrong.NationalID = "Alex", "Wanker", "19071315", ""
	wrong.AddressLines, wrong.Postcode, wrong.Phone = nil, "", ""
	d := resolve(t, ix, wrong)
	if d.EnterpriseID == da.EnterpriseID {
		t.Fatalf("setup: mistyped registration linked: %+v", d)
	}
	// ADT^A08 corrects the demographics: now Alice.
	d2 := resolve(t, ix, aliceAtB())
	if d2.Outcome != LinkedByScore || d2.EnterpriseID != da.EnterpriseID {
		t.Fatalf("after correction: %+v", d2)
	}
	if !hasEvent(d2.Events, EventMerged, da.EnterpriseID, d.EnterpriseID) || !hasEvent(d2.Events, EventUpdated, da.EnterpriseID, "") {
		t.Fatalf("correction events: %+v", d2.Events)
	}
	// Another A08 turns the record into someone else: it splits off again,
	// back to its own enterprise id.
	b := bob()
	b.Authority, b.MRN = aliceAtB().Authority, aliceAtB().MRN
	d3 := resolve(t, ix, b)
	if d3.Outcome != NewPatient || d3.EnterpriseID != d.EnterpriseID {
		t.Fatalf("after second update: %+v (first id %s)", d3, d.EnterpriseID)
	}
	if !hasEvent(d3.Events, EventSplit, d.EnterpriseID, da.EnterpriseID) {
		t.Fatalf("split events: %+v", d3.Events)
	}
	as := st.Audit(aliceAtB().Key())
	if len(as) != 3 || as[1].Action != "update" || as[2].Before[0].EnterpriseID != da.EnterpriseID {
		t.Fatalf("audit trail: %v", as)
	}
	if e := entry(t, ix, alice().Key()); e.EnterpriseID != da.EnterpriseID {
		t.Fatalf("Alice moved: %+v", e)
	}
}

func TestUpdateKeepsStickyLink(t *testing.T) {
	ctx := context.Background()
	ix, _ := testIndex(t)
	da := resolve(t, ix, alice())
	resolve(t, ix, bob())
	if _, err := ix.Link(ctx, bob().Key(), alice().Key(), "op", "confirmed by phone"); err != nil {
		t.Fatal(err)
	}
	b := bob()
	b.Phone = "03 5555 0102"
	if d := resolve(t, ix, b); d.EnterpriseID != da.EnterpriseID || d.Rule != "known-mrn:updated" {
		t.Fatalf("operator link moved by an update: %+v", d)
	}
}

func TestErrorsCarryNoPHI(t *testing.T) {
	ctx := context.Background()
	ix, _ := testIndex(t)
	r := alice()
	r.MRN = ""
	_, err := ix.Resolve(ctx, r)
	if !errors.Is(err, ErrNoKey) {
		t.Fatalf("missing MRN: %v", err)
	}
	if _, err := ix.Merge(ctx, "A", "SECRET-MRN-1", "SECRET-MRN-2", "op", ""); err == nil || strings.Contains(err.Error(), "SECRET") {
		t.Errorf("merge error: %v", err)
	}
	for _, e := range []error{err} {
		if strings.Contains(e.Error(), "Alice") || strings.Contains(e.Error(), "Walker") {
			t.Errorf("error carries a name: %v", e)
		}
	}
	if _, err := ix.Decide(ctx, "nope", true, "op", ""); !errors.Is(err, ErrTaskNotFound) {
		t.Errorf("unknown task: %v", err)
	}
	if _, err := ix.Undo(ctx, "nope", "op", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown audit entry: %v", err)
	}
}

func TestUndoCreationRefused(t *testing.T) {
	ix, st := testIndex(t)
	resolve(t, ix, alice())
	a := lastAudit(t, st, alice().Key())
	if _, err := ix.Undo(context.Background(), a.ID, "op", ""); !errors.Is(err, ErrNotReversible) {
		t.Fatalf("undo of a creation: %v", err)
	}
}

func TestConcurrentResolve(t *testing.T) {
	ix, st := testIndex(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				r := alice()
				r.Authority, r.MRN = fmt.Sprintf("H%d", g), fmt.Sprint(i)
				if _, err := ix.Resolve(context.Background(), r); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	e := entry(t, ix, Key{"H0", "0"})
	ms, _ := st.Members(context.Background(), e.EnterpriseID)
	if len(ms) != 400 {
		t.Errorf("identical records spread over several patients: %d of 400 in one", len(ms))
	}
}

func TestConfigValidate(t *testing.T) {
	cfg := DefaultConfig()
	cfg.Lower = cfg.Upper
	if _, err := New(NewMemory(), cfg); err == nil {
		t.Error("lower = upper accepted")
	}
	cfg = DefaultConfig()
	cfg.MaxBlock = 0
	if _, err := New(NewMemory(), cfg); err == nil {
		t.Error("max block 0 accepted")
	}
}

// TestHouseholdNeverLinked covers people who share an address, a phone and
// a family name with Alice: none may be linked to her automatically.
func TestHouseholdNeverLinked(t *testing.T) {
	twin := alice()
	twin.Authority, twin.MRN, twin.Given, twin.NationalID = "B", "twin", "Alison", "123456780" // consecutive id
	junior := alice()
	junior.Authority, junior.MRN, junior.BirthDate, junior.NationalID = "B", "junior", "19951121", "640021337"
	spouse := alice()
	spouse.Authority, spouse.MRN, spouse.Given, spouse.Sex, spouse.BirthDate, spouse.NationalID = "B", "spouse", "Mark", "M", "19681002", "222333444"
	stranger := bob()
	stranger.AddressLines, stranger.City, stranger.State, stranger.Postcode, stranger.Phone = alice().AddressLines, alice().City, alice().State, alice().Postcode, alice().Phone
	for _, c := range []struct {
		name string
		r    Record
		want Outcome
		rule string
	}{
		{"twin", twin, Review, "score>=upper:conflict:given"},
		{"junior", junior, Review, "score>=upper:conflict:birth_date"},
		{"spouse", spouse, NewPatient, "score<lower"},
		{"lodger", stranger, NewPatient, "score<lower"},
	} {
		ix, _ := testIndex(t)
		da := resolve(t, ix, alice())
		d := resolve(t, ix, c.r)
		if d.EnterpriseID == da.EnterpriseID || d.Outcome != c.want || d.Rule != c.rule {
			t.Errorf("%s: %s %s (%v)", c.name, d.Outcome, d.Rule, d.Best)
		}
	}
}

// membersCounting counts the store's membership reads.
type membersCounting struct {
	Store
	n int
}

func (m *membersCounting) Members(ctx context.Context, eid string) ([]Entry, error) {
	m.n++
	return m.Store.Members(ctx, eid)
}

// TestNewPatientReadsNoMembers: an enterprise patient minted for a new
// record has no members to count, so creating it reads none; a record that
// joins an existing patient still counts that patient's members (linked,
// not created).
func TestNewPatientReadsNoMembers(t *testing.T) {
	ix, st := testIndex(t)
	c := &membersCounting{Store: st}
	ix = ix.WithStore(c)
	d := resolve(t, ix, alice())
	if len(d.Events) != 1 || d.Events[0].Type != EventCreated || c.n != 0 {
		t.Fatalf("new patient: events %+v after %d membership reads, want created after none", d.Events, c.n)
	}
	d2 := resolve(t, ix, aliceAtB())
	if d2.EnterpriseID != d.EnterpriseID || len(d2.Events) != 1 || d2.Events[0].Type != EventLinked || c.n == 0 {
		t.Fatalf("second record: %s events %+v after %d membership reads, want linked to %s", d2.EnterpriseID, d2.Events,
			c.n, d.EnterpriseID)
	}
}

package store

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestPutResourceVersions: a new resource is version 1, an identical body
// (in another layout) changes nothing, a new owner alone relinks without a
// version, and a changed body keeps the previous version in the history;
// on both backends.
func TestPutResourceVersions(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		type step struct {
			body, patient, mrn string
			version            int
			changed            bool
		}
		steps := []step{
			{`{"a":1,"b":[1,2]}`, "p1", "m1", 1, true},
			{`{"b":[1, 2], "a":1}`, "p1", "m1", 1, false},
			{`{"a":1,"b":[1,2]}`, "p2", "m2", 1, false},
			{`{"a":2}`, "p2", "m2", 2, true},
			{`{"a":3}`, "p3", "m2", 3, true},
		}
		for i, s := range steps {
			err := db.InTx(ctx, func(tx *Tx) error {
				v, changed, err := tx.PutResource(ctx, "e", "A", Resource{ID: "r1", Type: "Patient", PatientID: s.patient,
					Body: []byte(s.body), SourceAuthority: "GH", SourceMRN: s.mrn})
				if err != nil {
					return err
				}
				if v != s.version || changed != s.changed {
					t.Errorf("step %d: version %d changed %v, want %d %v", i, v, changed, s.version, s.changed)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
		}
		r, err := db.GetResource(ctx, "r1")
		if err != nil {
			t.Fatal(err)
		}
		if r.Version != 3 || r.PatientID != "p3" {
			t.Fatalf("stored %+v", r)
		}
		var src struct {
			A string `db:"source_authority"`
			M string `db:"source_mrn"`
		}
		if err := db.x.GetContext(ctx, &src, db.rebind(`SELECT source_authority, source_mrn FROM resources WHERE id = ?`), "r1"); err != nil {
			t.Fatal(err)
		}
		if src.A != "GH" || src.M != "m2" {
			t.Fatalf("source %+v", src)
		}
		var hist []int
		if err := db.x.SelectContext(ctx, &hist, `SELECT version FROM resource_history WHERE id = 'r1' ORDER BY version`); err != nil {
			t.Fatal(err)
		}
		if len(hist) != 2 || hist[0] != 1 || hist[1] != 2 {
			t.Fatalf("history versions %v, want [1 2]", hist)
		}
	})
}

// TestPutResourcesMatchesOneByOne: storing a message's resources together
// leaves what storing them one by one leaves: new ones inserted, an equal
// one untouched, a changed one versioned with its history, a moved one
// relinked; on both backends.
func TestPutResourcesMatchesOneByOne(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		res := func(id, body, patient string) Resource {
			return Resource{ID: id, Type: "Observation", PatientID: patient, Body: []byte(body), SourceAuthority: "GH", SourceMRN: "1"}
		}
		first := []Resource{res("same", `{"v":1}`, "p1"), res("changed", `{"v":1}`, "p1"), res("moved", `{"v":1}`, "p1")}
		second := []Resource{res("same", `{"v": 1}`, "p1"), res("changed", `{"v":2}`, "p1"), res("moved", `{"v":1}`, "p2"),
			res("new", `{"v":"a \"quoted\" \\ value"}`, "p1")}
		for i, rs := range [][]Resource{first, second} {
			if err := db.InTx(ctx, func(tx *Tx) error { return tx.PutResources(ctx, "e"+fmt.Sprint(i), "A", rs) }); err != nil {
				t.Fatalf("put %d: %v", i, err)
			}
		}
		want := map[string]struct {
			version int
			patient string
			body    string
		}{
			"same": {1, "p1", `{"v":1}`}, "changed": {2, "p1", `{"v":2}`}, "moved": {1, "p2", `{"v":1}`},
			"new": {1, "p1", `{"v":"a \"quoted\" \\ value"}`},
		}
		for id, w := range want {
			r, err := db.GetResource(ctx, id)
			if err != nil {
				t.Fatalf("%s: %v", id, err)
			}
			if r.Version != w.version || r.PatientID != w.patient || !jsonEqual([]byte(r.Body), []byte(w.body)) {
				t.Errorf("%s: version %d patient %s body %s, want %d %s %s", id, r.Version, r.PatientID, r.Body, w.version, w.patient, w.body)
			}
		}
		var hist []string
		if err := db.x.SelectContext(ctx, &hist, `SELECT id FROM resource_history ORDER BY id`); err != nil {
			t.Fatal(err)
		}
		if len(hist) != 1 || hist[0] != "changed" {
			t.Fatalf("history %v, want [changed]", hist)
		}
		// The rest of a row inserted together with updates: who, when, from
		// which record.
		r, err := db.GetResource(ctx, "new")
		if err != nil {
			t.Fatal(err)
		}
		if r.Type != "Observation" || r.EnvelopeID != "e1" || r.Sender != "A" || time.Since(r.UpdatedAt) > time.Hour || r.UpdatedAt.After(time.Now()) {
			t.Errorf("new: type %s envelope %s sender %s updated %v", r.Type, r.EnvelopeID, r.Sender, r.UpdatedAt)
		}
		var src struct{ A, M string }
		if err := db.x.GetContext(ctx, &src, `SELECT source_authority AS a, source_mrn AS m FROM resources WHERE id = 'new'`); err != nil {
			t.Fatal(err)
		}
		if src.A != "GH" || src.M != "1" {
			t.Errorf("new: source %+v, want GH 1", src)
		}
	})
}

// TestResourceWritesMatchPlain: on the embedded store a transaction keeps
// what it read of resources (ResourceBodies) and wrote, and inserts a
// resource it has not read before reading it. Random sequences of reads,
// writes, moves and merges, some rolled back, give the same results and
// leave the same rows as transactions that read each resource before
// writing it, one statement at a time.
func TestResourceWritesMatchPlain(t *testing.T) {
	ctx := context.Background()
	open := func() *DB {
		db, err := Open(ctx, Options{DataDir: t.TempDir(), Sync: "normal"})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		return db
	}
	ids := []string{"a", "b", "c", "d", "e"}
	bodies := []string{`{"v":1}`, `{"v": 1}`, `{"v":2}`, `{"v":[1,2],"w":"x"}`, `{"w":"x","v":[1, 2]}`}
	owners := []string{"p1", "p2", "p3"}
	mrns := []string{"m1", "m2"}
	for seed := int64(1); seed <= 40; seed++ {
		plainDB, db := open(), open()
		rng := rand.New(rand.NewPCG(uint64(seed), 7))
		for txn := 0; txn < 30; txn++ {
			// One transaction's operations, the same for both databases.
			type op struct {
				kind       int
				rs         []Resource
				ids        []string
				a, b, c, d string
			}
			var ops []op
			for range 1 + rng.IntN(8) {
				o := op{kind: rng.IntN(6)}
				for range 1 + rng.IntN(3) {
					o.ids = append(o.ids, ids[rng.IntN(len(ids))])
					o.rs = append(o.rs, Resource{ID: o.ids[len(o.ids)-1], Type: "Observation",
						PatientID: owners[rng.IntN(len(owners))], Body: []byte(bodies[rng.IntN(len(bodies))]),
						SourceAuthority: "GH", SourceMRN: mrns[rng.IntN(len(mrns))]})
				}
				o.a, o.b = owners[rng.IntN(len(owners))], owners[rng.IntN(len(owners))]
				o.c = mrns[rng.IntN(len(mrns))]
				ops = append(ops, o)
			}
			rollback := rng.IntN(5) == 0
			run := func(db *DB, plain bool) []string {
				var got []string
				err := db.inTx(ctx, plain, func(tx *Tx) error {
					for _, o := range ops {
						switch o.kind {
						case 0, 1:
							v, changed, err := tx.PutResource(ctx, "env", "S", o.rs[0])
							if err != nil {
								return err
							}
							got = append(got, fmt.Sprintf("put %s %d %v", o.rs[0].ID, v, changed))
						case 2:
							if err := tx.PutResources(ctx, "env", "S", o.rs); err != nil {
								return err
							}
						case 3:
							bodies, err := tx.ResourceBodies(ctx, o.ids)
							if err != nil {
								return err
							}
							for _, id := range ids {
								if b, ok := bodies[id]; ok {
									got = append(got, "body "+id+" "+string(b))
								}
							}
						case 4:
							n, err := tx.MoveSource(ctx, "GH", o.c, o.a)
							if err != nil {
								return err
							}
							got = append(got, fmt.Sprintf("moved %d", n))
						case 5:
							if err := tx.MergePatient(ctx, o.a, o.b); err != nil {
								return err
							}
						}
					}
					if rollback {
						return errors.New("roll back")
					}
					return nil
				})
				if err != nil && !rollback {
					t.Fatalf("seed %d: %v", seed, err)
				}
				return got
			}
			want, got := run(plainDB, true), run(db, false)
			if !slices.Equal(got, want) {
				t.Fatalf("seed %d, transaction %d: results\n%q\nwant\n%q", seed, txn, got, want)
			}
		}
		dump := func(db *DB) []string {
			var rows []string
			q := `SELECT id || ' ' || resource_type || ' ' || patient_id || ' ' || version || ' ' || body || ' ' ||
				envelope_id || ' ' || sender || ' ' || source_authority || ' ' || source_mrn FROM resources ORDER BY id`
			if err := db.x.SelectContext(ctx, &rows, q); err != nil {
				t.Fatal(err)
			}
			var hist []string
			if err := db.x.SelectContext(ctx, &hist, `SELECT id || ' ' || version || ' ' || body FROM resource_history
				ORDER BY id, version`); err != nil {
				t.Fatal(err)
			}
			return append(rows, hist...)
		}
		if got, want := dump(db), dump(plainDB); !slices.Equal(got, want) {
			t.Fatalf("seed %d: rows\n%q\nwant\n%q", seed, got, want)
		}
	}
}

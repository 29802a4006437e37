package store

import (
	"context"
	"fmt"
	"testing"
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
	})
}

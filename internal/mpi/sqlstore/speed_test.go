package sqlstore_test

import (
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/store"
)

// TestCandidatesWithoutCandColumn reads entries written before migration
// 00003 (no cand column): Candidates falls back to their JSON body.
func TestCandidatesWithoutCandColumn(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ctx := context.Background()
		st := sqlstore.New(db.SQL())
		e := mpi.Entry{Record: mpi.Record{Sender: "s", Authority: "A", MRN: "1", Family: "Lovelace", Given: "Ada",
			BirthDate: "18151210", AddressLines: []string{"12 St James's Square"}}, EnterpriseID: "E1", OwnID: "E1",
			NotSame: []mpi.Key{{Authority: "B", MRN: "2"}}, Version: 2}
		if err := st.Put(ctx, e, []string{"k"}); err != nil {
			t.Fatal(err)
		}
		if _, err := db.SQL().ExecContext(ctx, `UPDATE mpi_entry SET cand = NULL`); err != nil {
			t.Fatal(err)
		}
		got, err := st.Candidates(ctx, []string{"k"}, 10)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != 1 || got[0].Record.Family != "Lovelace" || got[0].Version != 2 || got[0].Record.Sender != "s" ||
			len(got[0].NotSame) != 1 || got[0].EnterpriseID != "E1" {
			t.Fatalf("candidates from the body: %+v", got)
		}
	})
}

// deterministic returns the default settings with ids and times that repeat
// from run to run, so two indexes can be compared decision by decision.
func deterministic() mpi.Config {
	cfg := mpi.DefaultConfig()
	n := 0
	cfg.NewID = func() string { n++; return fmt.Sprintf("id-%06d", n) }
	cfg.Now = func() time.Time { return time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC) }
	return cfg
}

// TestSameDecisionsAsMemory resolves a FEBRL file through the SQL store and
// through the in-memory store: every decision (outcome, rule, enterprise
// patient, best score, number of candidates scored) must be the same, so
// the SQL path keeps the measured accuracy.
func TestSameDecisionsAsMemory(t *testing.T) {
	const path = "../../../../shared/mpi-bench/febrl_dataset1.csv"
	if _, err := os.Stat(path); err != nil {
		t.Skipf("FEBRL data set not found at %s (the shared benchmark directory): %v", path, err)
	}
	recs, _, err := mpi.LoadFEBRL(path)
	if err != nil {
		t.Fatal(err)
	}
	if testing.Short() {
		recs = recs[:300]
	}
	ctx := context.Background()
	mem, err := mpi.New(mpi.NewMemory(), deterministic())
	if err != nil {
		t.Fatal(err)
	}
	want := make([]mpi.Decision, len(recs))
	for i, r := range recs {
		if want[i], err = mem.Resolve(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ix, err := mpi.New(mpi.NewMemory(), deterministic())
		if err != nil {
			t.Fatal(err)
		}
		for i := 0; i < len(recs); i += 50 {
			err := db.InTx(ctx, func(tx *store.Tx) error {
				st := sqlstore.New(tx.SQL())
				if err := st.Lock(ctx); err != nil {
					return err
				}
				for j := i; j < min(i+50, len(recs)); j++ {
					d, err := ix.WithStore(st).Resolve(ctx, recs[j])
					if err != nil {
						return err
					}
					w := want[j]
					if d.Outcome != w.Outcome || d.Rule != w.Rule || d.EnterpriseID != w.EnterpriseID ||
						d.Compared != w.Compared || (d.Best == nil) != (w.Best == nil) ||
						(d.Best != nil && d.Best.Score != w.Best.Score) {
						t.Errorf("record %d: SQL store decided %s %s %s (%d compared), memory %s %s %s (%d compared)",
							j, d.Outcome, d.Rule, d.EnterpriseID, d.Compared, w.Outcome, w.Rule, w.EnterpriseID, w.Compared)
					}
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	})
}

package sqlstore_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/mpi/storetest"
	"github.com/hiegw/hiegw/internal/store"
)

func openSQLite(t *testing.T) *store.DB { return store.TestEmbedded(t) }

func openPostgres(t *testing.T) *store.DB {
	t.Helper()
	db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(t), MaxOpenConns: 4})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func backends(t *testing.T, fn func(t *testing.T, open func(t *testing.T) *store.DB)) {
	t.Run("sqlite", func(t *testing.T) { fn(t, openSQLite) })
	t.Run("postgres", func(t *testing.T) { fn(t, openPostgres) })
}

func TestContract(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		storetest.Run(t, func(t *testing.T) mpi.Store { return sqlstore.New(open(t).SQL()) })
	})
}

// TestIndexInTransaction runs the index on a transaction-bound store: what
// a rolled-back transaction resolved leaves no trace, a committed one does.
func TestIndexInTransaction(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ctx := context.Background()
		ix, err := mpi.New(mpi.NewMemory(), mpi.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		r := mpi.Record{Authority: "A", MRN: "1", Family: "Lovelace", Given: "Ada", BirthDate: "18151210", Sex: "F"}
		boom := errors.New("boom")
		err = db.InTx(ctx, func(tx *store.Tx) error {
			st := sqlstore.New(tx.SQL())
			if err := st.Lock(ctx); err != nil {
				return err
			}
			if _, err := ix.WithStore(st).Resolve(ctx, r); err != nil {
				return err
			}
			return boom
		})
		if !errors.Is(err, boom) {
			t.Fatalf("transaction: %v", err)
		}
		st := sqlstore.New(db.SQL())
		if _, ok, err := st.Get(ctx, r.Key()); ok || err != nil {
			t.Fatalf("rolled-back entry visible: ok=%v err=%v", ok, err)
		}
		var d mpi.Decision
		err = db.InTx(ctx, func(tx *store.Tx) error {
			st := sqlstore.New(tx.SQL())
			if err := st.Lock(ctx); err != nil {
				return err
			}
			d, err = ix.WithStore(st).Resolve(ctx, r)
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		eid, ok, err := st.Resolve(ctx, r.Key())
		if err != nil || !ok || eid != d.EnterpriseID {
			t.Fatalf("committed entry: eid=%q ok=%v err=%v, want %q", eid, ok, err, d.EnterpriseID)
		}
		audit, err := st.Audit(ctx, r.Key())
		if err != nil || len(audit) != 1 || audit[0].Action != "resolve" {
			t.Fatalf("audit of the key: %v %v", audit, err)
		}
	})
}

// TestConcurrentFirstMessages resolves one person's records from several
// senders in concurrent transactions: the lock keeps them in one enterprise
// patient.
func TestConcurrentFirstMessages(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ctx := context.Background()
		ix, err := mpi.New(mpi.NewMemory(), mpi.DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		const n = 6
		eids := make([]string, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := mpi.Record{Authority: "HOSP" + string(rune('A'+i)), MRN: "7", Family: "Hopper", Given: "Grace",
					BirthDate: "19061209", Sex: "F", Postcode: "10001", Phone: "2125550100", NationalID: "123456789"}
				errs[i] = db.InTx(ctx, func(tx *store.Tx) error {
					st := sqlstore.New(tx.SQL())
					if err := st.Lock(ctx); err != nil {
						return err
					}
					d, err := ix.WithStore(st).Resolve(ctx, r)
					eids[i] = d.EnterpriseID
					// Keep the transaction open a moment, as a pipeline
					// lane writing the record would, to widen the window
					// a missing lock would leave.
					time.Sleep(20 * time.Millisecond)
					return err
				})
			}()
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("sender %d: %v", i, errs[i])
			}
			if eids[i] != eids[0] {
				t.Fatalf("sender %d got enterprise %s, sender 0 got %s: one person became two patients", i, eids[i], eids[0])
			}
		}
	})
}

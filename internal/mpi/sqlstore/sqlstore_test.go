package sqlstore_test

import (
	"context"
	"database/sql"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/mpi/storetest"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/jmoiron/sqlx"
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

// TestContractInTx: a store bound to one transaction, which reads back the
// entries it wrote from memory, keeps the same contract.
func TestContractInTx(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		storetest.Run(t, func(t *testing.T) mpi.Store {
			tx, err := open(t).SQL().BeginTxx(context.Background(), nil)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { tx.Rollback() })
			return sqlstore.NewTx(tx)
		})
	})
}

// counting counts the queries that read rows.
type counting struct {
	sqlx.ExtContext
	reads int
}

func (c *counting) QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error) {
	c.reads++
	return c.ExtContext.QueryContext(ctx, q, args...)
}

func (c *counting) QueryxContext(ctx context.Context, q string, args ...any) (*sqlx.Rows, error) {
	c.reads++
	return c.ExtContext.QueryxContext(ctx, q, args...)
}

func (c *counting) QueryRowxContext(ctx context.Context, q string, args ...any) *sqlx.Row {
	c.reads++
	return c.ExtContext.QueryRowxContext(ctx, q, args...)
}

// TestTxStoreReadsBackWhatItWrote: an entry put through a transaction's
// store is read back without a query, as written; an entry it did not
// write, and any entry of a store not bound to a transaction, is read from
// the database.
func TestTxStoreReadsBackWhatItWrote(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ctx := context.Background()
		e := mpi.Entry{Record: mpi.Record{Authority: "A", MRN: "1", Family: "Lovelace", Given: "Ada"}, EnterpriseID: "E1",
			OwnID: "E1", Version: 1}
		other := e
		other.Record.MRN, other.EnterpriseID, other.OwnID = "2", "E2", "E2"
		if err := sqlstore.New(db.SQL()).Put(ctx, other, nil); err != nil {
			t.Fatal(err)
		}
		tx, err := db.SQL().BeginTxx(ctx, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer tx.Rollback()
		c := &counting{ExtContext: tx}
		st := sqlstore.NewTx(c)
		if err := st.Put(ctx, e, []string{"b1"}); err != nil {
			t.Fatal(err)
		}
		c.reads = 0
		got, ok, err := st.Get(ctx, e.Key())
		if err != nil || !ok || got.EnterpriseID != "E1" || got.Record.Family != "Lovelace" || got.Version != 1 {
			t.Fatalf("get written: %+v %v %v", got, ok, err)
		}
		if eid, ok, err := st.Resolve(ctx, e.Key()); err != nil || !ok || eid != "E1" {
			t.Fatalf("resolve written: %q %v %v", eid, ok, err)
		}
		if c.reads != 0 {
			t.Fatalf("%d queries to read back an entry the store wrote", c.reads)
		}
		if got, ok, err := st.Get(ctx, other.Key()); err != nil || !ok || got.EnterpriseID != "E2" {
			t.Fatalf("get other: %+v %v %v", got, ok, err)
		}
		if c.reads != 1 {
			t.Fatalf("%d queries to read an entry written elsewhere, want 1", c.reads)
		}
		// A merged entry it wrote resolves through the chain: to a survivor
		// it wrote without a query, to one written elsewhere with one.
		merged := e
		merged.Record.MRN, merged.MergedInto, merged.Version = "3", &mpi.Key{Authority: "A", MRN: "1"}, 2
		intoOther := merged
		intoOther.Record.MRN, intoOther.MergedInto = "4", &mpi.Key{Authority: "A", MRN: "2"}
		for _, m := range []mpi.Entry{merged, intoOther} {
			if err := st.Put(ctx, m, nil); err != nil {
				t.Fatal(err)
			}
		}
		c.reads = 0
		if eid, ok, err := st.Resolve(ctx, merged.Key()); err != nil || !ok || eid != "E1" || c.reads != 0 {
			t.Fatalf("resolve merged: %q %v %v after %d queries, want E1 after none", eid, ok, err, c.reads)
		}
		if eid, ok, err := st.Resolve(ctx, intoOther.Key()); err != nil || !ok || eid != "E2" || c.reads != 1 {
			t.Fatalf("resolve merged into another: %q %v %v after %d queries, want E2 after one", eid, ok, err, c.reads)
		}
		// The entries merged into one it created are those it wrote; into
		// one stored before, the database says.
		c.reads = 0
		if keys, err := st.MergedInto(ctx, e.Key()); err != nil || len(keys) != 1 || keys[0] != merged.Key() || c.reads != 0 {
			t.Fatalf("merged into a new entry: %v %v after %d queries, want [%v] after none", keys, err, c.reads, merged.Key())
		}
		if keys, err := st.MergedInto(ctx, other.Key()); err != nil || len(keys) != 1 || keys[0] != intoOther.Key() || c.reads != 1 {
			t.Fatalf("merged into a stored entry: %v %v after %d queries, want [%v] after one", keys, err, c.reads, intoOther.Key())
		}
		plain := &counting{ExtContext: tx}
		if err := sqlstore.New(plain).Put(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
		if _, _, err := sqlstore.New(plain).Get(ctx, e.Key()); err != nil || plain.reads != 1 {
			t.Fatalf("a store not bound to a transaction: %d queries, err %v; want 1", plain.reads, err)
		}
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

// TestDecodedFollowsTheStoredBody: stores sharing a Decoded give what is
// stored: an entry changed since it was remembered is decoded afresh, and
// the memory keeps no more entries than it was given room for.
func TestDecodedFollowsTheStoredBody(t *testing.T) {
	backends(t, func(t *testing.T, open func(t *testing.T) *store.DB) {
		db := open(t)
		ctx := context.Background()
		d := sqlstore.NewDecoded(2)
		reader := func() *sqlstore.Store { return sqlstore.New(db.SQL()).WithDecoded(d) }
		writer := sqlstore.New(db.SQL())
		e := mpi.Entry{Record: mpi.Record{Authority: "A", MRN: "1", Family: "Lovelace", Given: "Ada",
			AddressLines: []string{"1 Analytical Row"}}, EnterpriseID: "E1", OwnID: "E1", Version: 1}
		if err := writer.Put(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
		for i := range 2 {
			got, ok, err := reader().Get(ctx, e.Key())
			if err != nil || !ok || got.Record.Family != "Lovelace" || got.EnterpriseID != "E1" || len(got.Record.AddressLines) != 1 {
				t.Fatalf("read %d: %+v %v %v", i, got, ok, err)
			}
		}
		e.Record.Family, e.EnterpriseID, e.Version = "King", "E9", 2
		if err := writer.Put(ctx, e, nil); err != nil {
			t.Fatal(err)
		}
		got, ok, err := reader().Get(ctx, e.Key())
		if err != nil || !ok || got.Record.Family != "King" || got.EnterpriseID != "E9" || got.Version != 2 {
			t.Fatalf("read after a change: %+v %v %v, want the changed entry", got, ok, err)
		}
		for _, mrn := range []string{"2", "3", "4"} {
			o := e
			o.Record.MRN = mrn
			if err := writer.Put(ctx, o, nil); err != nil {
				t.Fatal(err)
			}
			if got, ok, err := reader().Get(ctx, o.Key()); err != nil || !ok || got.Record.MRN != mrn {
				t.Fatalf("read %s: %+v %v %v", mrn, got, ok, err)
			}
		}
		if n := sqlstore.DecodedLen(d); n != 2 {
			t.Fatalf("%d entries remembered, want 2 (its room)", n)
		}
	})
}

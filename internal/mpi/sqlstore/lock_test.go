package sqlstore_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/store"
)

// TestConcurrentResolutionsUnderRecordLocks resolves, in many concurrent
// transactions that each take only LockRecords (as pipeline lanes do) and
// each use an index of their own, the records of a few people sent by
// several senders: the same (authority, MRN) again and again, the same
// person under other senders' MRNs, linked by a trusted identifier or by
// demographics, with changing phone numbers, while each person's duplicate
// MRN is merged into its survivor under the whole-index lock. In any serial
// order every person becomes one enterprise patient; so must they here,
// every decision must name it, each merged MRN must resolve to its
// survivor, each entry's versions must follow one another (no lost update),
// and no blocking or identifier row may be left without its entry.
func TestConcurrentResolutionsUnderRecordLocks(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(t), MaxOpenConns: 12})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	ctx := context.Background()
	cfg := mpi.DefaultConfig()
	cfg.TrustedTypes = []string{"HIE"}

	people := []mpi.Record{
		{Family: "Hopper", Given: "Grace", BirthDate: "19061209", Sex: "F", Postcode: "10001", NationalID: "123456789"},
		{Family: "Lovelace", Given: "Ada", BirthDate: "18151210", Sex: "F", Postcode: "20002", NationalID: "223456781"},
		{Family: "Turing", Given: "Alan", BirthDate: "19120623", Sex: "M", Postcode: "30003", NationalID: "323456782"},
		{Family: "Hamilton", Given: "Margaret", BirthDate: "19360817", Sex: "F", Postcode: "40004", NationalID: "423456783"},
	}
	authorities := []string{"GHH", "NLAB", "CLINIC"}
	record := func(person, auth, try int) mpi.Record {
		r := people[person]
		r.Sender = authorities[auth]
		r.Authority = authorities[auth]
		r.MRN = fmt.Sprintf("%s-%d", authorities[auth], person)
		r.Phone = fmt.Sprintf("55501%02d", (person*7+try)%3)
		if auth != 1 {
			r.Identifiers = []mpi.Identifier{{Type: "HIE", Authority: "HIE", Value: fmt.Sprint("hie-", person)}}
		}
		return r
	}

	// Each person also has a duplicate MRN at the first sender, filed
	// before the workers start and merged into the main one (ADT^A40, under
	// the whole-index lock) while they resolve it and its survivor.
	dup := func(person, try int) mpi.Record {
		r := record(person, 0, try)
		r.MRN += "-dup"
		return r
	}
	for p := range people {
		err := db.InTx(ctx, func(tx *store.Tx) error {
			st := sqlstore.New(tx.SQL())
			if err := st.LockRecords(ctx, []mpi.Record{dup(p, 0)}); err != nil {
				return err
			}
			ix, err := mpi.New(st, cfg)
			if err != nil {
				return err
			}
			_, err = ix.Resolve(ctx, dup(p, 0))
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
	}

	type resolved struct {
		key mpi.Key
		eid string
		at  int
	}
	const workers, rounds = 8, 12
	var (
		mu   sync.Mutex
		seen []resolved
		wg   sync.WaitGroup
	)
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range rounds {
				// Workers walk the same people and senders in different
				// orders, so the same keys meet in concurrent transactions.
				person := (i + w) % len(people)
				auth := (i*5 + w) % len(authorities)
				r := record(person, auth, i)
				if i%4 == 3 {
					r = dup(person, i)
				}
				err := db.InTx(ctx, func(tx *store.Tx) error {
					st := sqlstore.New(tx.SQL())
					if err := st.LockRecords(ctx, []mpi.Record{r}); err != nil {
						return err
					}
					ix, err := mpi.New(st, cfg)
					if err != nil {
						return err
					}
					d, err := ix.Resolve(ctx, r)
					if err != nil {
						return err
					}
					// Stay in the transaction a moment, as a lane writing
					// the record does, to widen any window a lock leaves.
					time.Sleep(3 * time.Millisecond)
					mu.Lock()
					seen = append(seen, resolved{key: r.Key(), eid: d.EnterpriseID, at: len(seen)})
					mu.Unlock()
					return nil
				})
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d: %w", w, i, err)
					return
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for p := range people {
			time.Sleep(5 * time.Millisecond)
			err := db.InTx(ctx, func(tx *store.Tx) error {
				st := sqlstore.New(tx.SQL())
				if err := st.Lock(ctx); err != nil {
					return err
				}
				ix, err := mpi.New(st, cfg)
				if err != nil {
					return err
				}
				_, err = ix.Merge(ctx, authorities[0], dup(p, 0).MRN, record(p, 0, 0).MRN, "test", "ADT^A40")
				return err
			})
			if err != nil {
				errs <- fmt.Errorf("merge person %d: %w", p, err)
				return
			}
		}
	}()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	st := sqlstore.New(db.SQL())
	final := map[mpi.Key]string{}
	for p := range people {
		for a := range authorities {
			k := record(p, a, 0).Key()
			eid, ok, err := st.Resolve(ctx, k)
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				final[k] = eid
			}
		}
	}
	for p := range people {
		k := dup(p, 0).Key()
		e, ok, err := st.Get(ctx, k)
		if err != nil || !ok || e.Active() || *e.MergedInto != record(p, 0, 0).Key() {
			t.Fatalf("%s after its merge: %+v ok=%v err=%v", k, e, ok, err)
		}
		if final[k], _, err = st.Resolve(ctx, k); err != nil {
			t.Fatal(err)
		}
		if final[k] != final[record(p, 0, 0).Key()] {
			t.Errorf("merged %s resolves to %s, its survivor is in %s", k, final[k], final[record(p, 0, 0).Key()])
		}
	}
	// Every change of an entry wrote the next version: two transactions
	// that both changed the version they read would repeat one.
	for k := range final {
		audit, err := st.Audit(ctx, k)
		if err != nil {
			t.Fatal(err)
		}
		var versions []int64
		for _, a := range audit {
			for _, e := range a.After {
				if e.Key() == k {
					versions = append(versions, e.Version)
				}
			}
		}
		for i, v := range versions {
			if v != int64(i+1) {
				t.Errorf("%s: versions written %v, want 1, 2, 3...: a concurrent change was lost", k, versions)
				break
			}
		}
	}
	// Each decision named the enterprise of the person's other records at
	// the time, so every one of them names the person's enterprise.
	for _, s := range seen {
		if final[s.key] != s.eid {
			t.Errorf("%s was resolved to %s but is filed under %s", s.key, s.eid, final[s.key])
		}
	}
	eidOf := map[int]string{}
	owner := map[string]int{}
	for p := range people {
		for a := range authorities {
			k := record(p, a, 0).Key()
			eid, ok := final[k]
			if !ok {
				continue
			}
			if prev, ok := eidOf[p]; ok && prev != eid {
				t.Errorf("person %d has two enterprise patients: %s and %s (%s)", p, prev, eid, k)
			}
			eidOf[p] = eid
			if o, ok := owner[eid]; ok && o != p {
				t.Errorf("enterprise %s holds persons %d and %d", eid, o, p)
			}
			owner[eid] = p
		}
	}
	var orphans int
	if err := db.SQL().GetContext(ctx, &orphans, `SELECT
		(SELECT COUNT(*) FROM mpi_block b WHERE NOT EXISTS (SELECT 1 FROM mpi_entry e WHERE e.authority = b.authority AND e.mrn = b.mrn)) +
		(SELECT COUNT(*) FROM mpi_identifier i WHERE NOT EXISTS (SELECT 1 FROM mpi_entry e WHERE e.authority = i.authority AND e.mrn = i.mrn)) +
		(SELECT COUNT(*) FROM mpi_entry WHERE enterprise_id = '')`); err != nil {
		t.Fatal(err)
	}
	if orphans != 0 {
		t.Errorf("%d index rows without their entry or enterprise", orphans)
	}
	var entries int
	if err := db.SQL().GetContext(ctx, &entries, `SELECT COUNT(*) FROM mpi_entry`); err != nil {
		t.Fatal(err)
	}
	if entries != len(final) {
		t.Errorf("%d entries for %d keys", entries, len(final))
	}
}

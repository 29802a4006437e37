package mpi_test

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"sync"
	"testing"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/store"
)

// recorder is a Memory store that remembers the blocking keys of the last
// Put of every entry, so that an index built in memory can be copied into
// a SQL store without resolving every record through SQL.
type recorder struct {
	*mpi.Memory
	order  []mpi.Key
	blocks map[mpi.Key][]string
}

func (r *recorder) Put(ctx context.Context, e mpi.Entry, blocks []string) error {
	k := e.Key()
	if _, ok := r.blocks[k]; !ok {
		r.order = append(r.order, k)
	}
	r.blocks[k] = append([]string(nil), blocks...)
	return r.Memory.Put(ctx, e, blocks)
}

// sqlBenchSize is the number of patients indexed before the SQL benchmark
// (MPI_SQL_BENCH_N, default 100,000).
func sqlBenchSize() int {
	if n, err := strconv.Atoi(os.Getenv("MPI_SQL_BENCH_N")); err == nil && n > 0 {
		return n
	}
	return 100000
}

// population is the synthetic index of the SQL benchmark: built once in
// memory, then copied into each database.
type population struct {
	people []mpi.Record
	rec    *recorder
	gen    *mpi.Generator
}

var (
	popOnce sync.Once
	pop     population
	popErr  error
)

func benchPopulation(n int) (population, error) {
	popOnce.Do(func() {
		ctx := context.Background()
		rec := &recorder{Memory: mpi.NewMemory(), blocks: map[mpi.Key][]string{}}
		ix, err := mpi.New(rec, mpi.DefaultConfig())
		if err != nil {
			popErr = err
			return
		}
		g := mpi.NewGenerator(42)
		people := make([]mpi.Record, n)
		for i := range people {
			people[i] = g.Person("base", i)
			if _, err := ix.Resolve(ctx, people[i]); err != nil {
				popErr = err
				return
			}
		}
		pop = population{people: people, rec: rec, gen: g}
	})
	return pop, popErr
}

// load copies the population's entries into db, 2,000 per transaction.
func (p population) load(ctx context.Context, db *store.DB) error {
	for i := 0; i < len(p.rec.order); i += 2000 {
		keys := p.rec.order[i:min(i+2000, len(p.rec.order))]
		err := db.InTx(ctx, func(tx *store.Tx) error {
			st := sqlstore.New(tx.SQL())
			for _, k := range keys {
				e, _, err := p.rec.Get(ctx, k)
				if err != nil {
					return err
				}
				if err := st.Put(ctx, e, p.rec.blocks[k]); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("load population: %w", err)
		}
	}
	return nil
}

var (
	sqliteOnce sync.Once
	sqliteDB   *store.DB
	sqliteErr  error
)

// BenchmarkSQLResolve100k resolves records (half altered copies of indexed
// patients, half new people) against an index of 100,000 synthetic patients
// in the SQL store, one transaction per record as the pipeline does. Run it
// with -cpu 1 for the one-core figure; the index grows by one record per
// iteration.
func BenchmarkSQLResolve100k(b *testing.B) {
	n := sqlBenchSize()
	b.Run("sqlite", func(b *testing.B) {
		sqliteOnce.Do(func() {
			dir, err := os.MkdirTemp("", "mpi-sqlbench-")
			if err != nil {
				sqliteErr = err
				return
			}
			benchDirs = append(benchDirs, dir)
			sqliteDB, sqliteErr = store.Open(context.Background(), store.Options{DataDir: dir, Sync: "normal"})
			if sqliteErr != nil {
				return
			}
			p, err := benchPopulation(n)
			if err != nil {
				sqliteErr = err
				return
			}
			sqliteErr = p.load(context.Background(), sqliteDB)
		})
		if sqliteErr != nil {
			b.Fatal(sqliteErr)
		}
		benchSQLResolve(b, sqliteDB, "sqlite")
	})
	b.Run("postgres", func(b *testing.B) {
		db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(b), MaxOpenConns: 4})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { db.Close() })
		p, err := benchPopulation(n)
		if err != nil {
			b.Fatal(err)
		}
		if err := p.load(context.Background(), db); err != nil {
			b.Fatal(err)
		}
		benchSQLResolve(b, db, "postgres")
	})
}

var (
	benchDirs []string
	sqlSeq    int
)

func benchSQLResolve(b *testing.B, db *store.DB, name string) {
	ctx := context.Background()
	p, err := benchPopulation(sqlBenchSize())
	if err != nil {
		b.Fatal(err)
	}
	ix, err := mpi.New(mpi.NewMemory(), mpi.DefaultConfig())
	if err != nil {
		b.Fatal(err)
	}
	qs := make([]mpi.Record, 4096)
	for i := range qs {
		if i%2 == 0 {
			qs[i] = p.gen.Variant(p.people[p.gen.IntN(len(p.people))], "bench", 0)
		} else {
			qs[i] = p.gen.Person("bench", 0)
		}
	}
	compared := 0
	i := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		q := qs[i%len(qs)]
		i++
		sqlSeq++
		q.MRN = name + "-" + strconv.Itoa(sqlSeq)
		err := db.InTx(ctx, func(tx *store.Tx) error {
			st := sqlstore.New(tx.SQL())
			if err := st.Lock(ctx); err != nil {
				return err
			}
			d, err := ix.WithStore(st).Resolve(ctx, q)
			compared += d.Compared
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(compared)/float64(max(i, 1)), "candidates/op")
}

func TestMain(m *testing.M) {
	code := m.Run()
	if sqliteDB != nil {
		sqliteDB.Close()
	}
	for _, d := range benchDirs {
		os.RemoveAll(d)
	}
	os.Exit(code)
}

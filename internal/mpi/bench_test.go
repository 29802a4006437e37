package mpi

import (
	"context"
	"sync"
	"testing"
)

var (
	benchOnce   sync.Once
	benchIndex  *Index
	benchGen    *generator
	benchPeople []Record
)

// BenchmarkResolve100k resolves records (half altered copies of indexed
// patients, half new people) against an index of 100,000 synthetic patients.
// The index grows by one entry per iteration.
func BenchmarkResolve100k(b *testing.B) {
	ctx := context.Background()
	benchOnce.Do(func() {
		benchGen = newGenerator(42)
		ix, err := New(NewMemory(), DefaultConfig())
		if err != nil {
			b.Fatal(err)
		}
		for i := range 100000 {
			p := benchGen.person("base", i)
			benchPeople = append(benchPeople, p)
			if _, err := ix.Resolve(ctx, p); err != nil {
				b.Fatal(err)
			}
		}
		benchIndex = ix
	})
	qs := make([]Record, 4096)
	for i := range qs {
		if i%2 == 0 {
			qs[i] = benchGen.variant(benchPeople[benchGen.r.IntN(len(benchPeople))], "bench", 0)
		} else {
			qs[i] = benchGen.person("bench", 0)
		}
	}
	n := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		q := qs[n%len(qs)]
		q.MRN = "bench-" + itoa(benchSeq)
		benchSeq++
		n++
		if _, err := benchIndex.Resolve(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
}

var benchSeq int

func itoa(i int) string {
	var buf [20]byte
	p := len(buf)
	for {
		p--
		buf[p] = byte('0' + i%10)
		i /= 10
		if i == 0 {
			return string(buf[p:])
		}
	}
}

// BenchmarkCompare measures one full field-by-field comparison.
func BenchmarkCompare(b *testing.B) {
	g := newGenerator(1)
	p := g.person("a", 1)
	q := g.variant(p, "b", 1)
	fa, fb := newFeatures(&p), newFeatures(&q)
	sc := scorer{w: DefaultParams().weights(), locationCap: 12}
	b.ReportAllocs()
	for b.Loop() {
		sc.compare(fa, fb)
	}
}

package store

import (
	"context"
	"hash/maphash"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
)

// dedupFilter is a Bloom filter over the (sender, dedup key) pairs of the
// envelope log, so that a new message, which is almost every message, is
// known to be new without a query. A "maybe" is answered by the log. It is
// built in the background at start-up from the log; until it is complete
// every envelope is looked up. Keys received meanwhile are added as they
// come, so the finished filter covers them too.
type dedupFilter struct {
	seed  maphash.Seed
	words []atomic.Uint64
	mask  uint64 // number of bits - 1 (a power of two)
	ready atomic.Bool
}

const (
	filterHashes  = 7
	filterMinBits = 1 << 23 // 1 MB: about 800,000 keys at 1 % false positives
	filterMaxBits = 1 << 32 // 512 MB
)

func newDedupFilter(keys int64) *dedupFilter {
	bits := uint64(filterMinBits)
	for bits < uint64(keys)*20 && bits < filterMaxBits { // room to double at 10 bits a key
		bits <<= 1
	}
	return &dedupFilter{seed: maphash.MakeSeed(), words: make([]atomic.Uint64, bits/64), mask: bits - 1}
}

func (f *dedupFilter) hashes(k dedupKey) (uint64, uint64) {
	var h maphash.Hash
	h.SetSeed(f.seed)
	h.WriteString(k.sender)
	h.WriteByte(0)
	h.WriteString(k.key)
	a := h.Sum64()
	b := a>>33 | a<<31 | 1 // an odd stride
	return a, b
}

func (f *dedupFilter) add(k dedupKey) {
	a, b := f.hashes(k)
	for i := uint64(0); i < filterHashes; i++ {
		bit := (a + i*b) & f.mask
		f.words[bit/64].Or(1 << (bit % 64))
	}
}

// mayContain is false only for a key never added.
func (f *dedupFilter) mayContain(k dedupKey) bool {
	a, b := f.hashes(k)
	for i := uint64(0); i < filterHashes; i++ {
		bit := (a + i*b) & f.mask
		if f.words[bit/64].Load()&(1<<(bit%64)) == 0 {
			return false
		}
	}
	return true
}

// fill adds every key of the log to f and marks it ready; on failure f
// stays unready and every envelope keeps being looked up.
func (f *dedupFilter) fill(ctx context.Context, reader *sqlx.DB, log *slog.Logger) {
	start := time.Now()
	rows, err := reader.QueryContext(ctx, `SELECT sender, dedup_key FROM envelopes`)
	if err != nil {
		log.Warn("duplicate filter not built; every message is looked up in the log", "err", err)
		return
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var k dedupKey
		if err := rows.Scan(&k.sender, &k.key); err != nil {
			log.Warn("duplicate filter not built; every message is looked up in the log", "err", err)
			return
		}
		f.add(k)
		n++
	}
	if err := rows.Err(); err != nil {
		log.Warn("duplicate filter not built; every message is looked up in the log", "err", err)
		return
	}
	f.ready.Store(true)
	log.Debug("duplicate filter built", "keys", n, "bits", f.mask+1, "took", time.Since(start))
}

package sqlstore

import (
	"sync"

	"github.com/hiegw/hiegw/internal/mpi"
)

// Decoded remembers entries decoded from their stored bodies, so that an
// entry read again unchanged (a returning patient's record) is not decoded
// again: a body equal to the one remembered for its key gives the entry
// decoded from it. It holds at most a fixed number of entries, forgetting
// one at random to make room. Safe for concurrent use; share one between
// the stores of many transactions (WithDecoded).
//
// The entries it gives share their slices with each other, as those of
// mpi.Memory do: the index copies a slice before changing it.
type Decoded struct {
	mu  sync.Mutex
	max int
	m   map[mpi.Key]decoded
}

type decoded struct {
	body string
	e    mpi.Entry
}

// NewDecoded returns a Decoded holding at most max entries.
func NewDecoded(max int) *Decoded {
	return &Decoded{max: max, m: make(map[mpi.Key]decoded, max)}
}

// get returns the entry decoded from body for k, if it is remembered.
func (d *Decoded) get(k mpi.Key, body string) (mpi.Entry, bool) {
	if d == nil {
		return mpi.Entry{}, false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	r, ok := d.m[k]
	if !ok || r.body != body {
		return mpi.Entry{}, false
	}
	return r.e, true
}

// put remembers e as decoded from body for k.
func (d *Decoded) put(k mpi.Key, body string, e mpi.Entry) {
	if d == nil || d.max <= 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if _, ok := d.m[k]; !ok && len(d.m) >= d.max {
		for old := range d.m {
			delete(d.m, old)
			break
		}
	}
	d.m[k] = decoded{body: body, e: e}
}

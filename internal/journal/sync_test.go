package journal

import (
	"errors"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// gatedSyncs replaces a journal's fdatasync with one that blocks until the
// test releases it, so that the test decides in which order syncs end.
type gatedSyncs struct {
	started chan int     // the number of each sync as it starts
	release []chan error // one per sync, filled by the test
	mu      sync.Mutex
	n       int
}

func gate(t *testing.T, j *Journal, n int) *gatedSyncs {
	g := &gatedSyncs{started: make(chan int, n)}
	for range n {
		g.release = append(g.release, make(chan error, 1))
	}
	// A test that fails half-way still lets every sync end, before the
	// journal closes (cleanups run last registered first).
	t.Cleanup(func() {
		for _, ch := range g.release {
			select {
			case ch <- errors.New("test over"):
			default:
			}
		}
	})
	j.syncFile = func(*os.File) error {
		g.mu.Lock()
		i := g.n
		g.n++
		g.mu.Unlock()
		if i >= len(g.release) {
			return errors.New("more syncs than the test expected")
		}
		g.started <- i
		return <-g.release[i]
	}
	return g
}

func (g *gatedSyncs) waitStarted(t *testing.T, want int) {
	t.Helper()
	select {
	case i := <-g.started:
		if i != want {
			t.Fatalf("sync %d started, want %d", i, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("sync %d never started", want)
	}
}

// syncInBackground calls Sync(p) and delivers its result.
func syncInBackground(j *Journal, p Pos) chan error {
	ch := make(chan error, 1)
	go func() { ch <- j.Sync(p) }()
	return ch
}

func notYet(t *testing.T, ch chan error, what string) {
	t.Helper()
	select {
	case err := <-ch:
		t.Fatalf("%s returned (%v) before the earlier sync ended", what, err)
	case <-time.After(50 * time.Millisecond):
	}
}

func result(t *testing.T, ch chan error) error {
	t.Helper()
	select {
	case err := <-ch:
		return err
	case <-time.After(5 * time.Second):
		t.Fatal("Sync did not return")
		return nil
	}
}

// TestSyncsEndInOrder: two syncs under way, the later one succeeds first.
// Its records are not durable until the earlier one has ended: if that one
// succeeds, both callers are answered and the durable position moves past
// both; if it fails, the later success does not count: both callers get the
// error, the durable position stays, and the journal stops.
func TestSyncsEndInOrder(t *testing.T) {
	for _, earlier := range []error{nil, errors.New("disk on fire")} {
		t.Run(fmt.Sprint("earlier sync: ", earlier), func(t *testing.T) {
			j, err := Open(t.TempDir(), Options{})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { j.Close() })
			g := gate(t, j, 2)
			start := j.Synced()
			a, _ := j.Write([]byte("first batch"))
			resA := syncInBackground(j, a)
			g.waitStarted(t, 0)
			b, _ := j.Write([]byte("second batch"))
			resB := syncInBackground(j, b)
			g.waitStarted(t, 1)
			g.release[1] <- nil
			notYet(t, resB, "the later Sync")
			if j.Synced() != start {
				t.Fatalf("durable position moved to %v while the first sync was under way", j.Synced())
			}
			g.release[0] <- earlier
			errA, errB := result(t, resA), result(t, resB)
			if earlier == nil {
				if errA != nil || errB != nil || j.Synced() != b {
					t.Fatalf("both synced: errors %v / %v, durable position %v, want %v", errA, errB, j.Synced(), b)
				}
				return
			}
			if errA == nil || errB == nil {
				t.Fatalf("after a failed earlier sync: first %v, second %v", errA, errB)
			}
			if j.Synced() != start {
				t.Fatalf("durable position moved to %v over a failed sync", j.Synced())
			}
			if _, err := j.Write([]byte("more")); err == nil {
				t.Fatal("a write after a failed sync was accepted")
			}
		})
	}
}

// TestSyncLimitAndCover: at most MaxSyncs run at once; a Sync whose
// records a sync under way covers waits for it instead of starting another.
func TestSyncLimitAndCover(t *testing.T) {
	j, err := Open(t.TempDir(), Options{MaxSyncs: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	g := gate(t, j, 3)
	a, _ := j.Write([]byte("a"))
	resA := syncInBackground(j, a)
	resA2 := syncInBackground(j, a) // covered by the first: no second sync for it
	g.waitStarted(t, 0)
	b, _ := j.Write([]byte("b"))
	resB := syncInBackground(j, b)
	g.waitStarted(t, 1)
	c, _ := j.Write([]byte("c"))
	resC := syncInBackground(j, c)
	select {
	case i := <-g.started:
		t.Fatalf("sync %d started while two were under way", i)
	case <-time.After(50 * time.Millisecond):
	}
	g.release[0] <- nil
	g.release[1] <- nil
	g.waitStarted(t, 2) // c's, once a place was free
	g.release[2] <- nil
	for _, ch := range []chan error{resA, resA2, resB, resC} {
		if err := result(t, ch); err != nil {
			t.Fatal(err)
		}
	}
	if j.Synced() != c {
		t.Fatalf("durable position %v, want %v", j.Synced(), c)
	}
	if err := j.Sync(Pos{c.Seg, c.Off + 1}); err == nil {
		t.Fatal("a sync beyond the last record was accepted")
	}
}

// TestConcurrentAppends: many goroutines append at once through small
// segments, so that segments roll while syncs are under way; after a
// reopen every record is there once, each goroutine's in its order.
func TestConcurrentAppends(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 4096, MaxSyncs: 3})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 150
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := j.Append([]byte(fmt.Sprintf("w%d %04d %s", w, i, string(make([]byte, i%50))))); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if j.Synced() != j.End() {
		t.Fatalf("durable %v, end %v after every Append returned", j.Synced(), j.End())
	}
	end := j.End()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err = Open(dir, Options{SegmentSize: 4096})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.End() != end {
		t.Fatalf("reopened at %v, want %v", j.End(), end)
	}
	recs, _ := replayAll(t, j, Pos{})
	if len(recs) != writers*each {
		t.Fatalf("%d records, want %d", len(recs), writers*each)
	}
	next := make([]int, writers)
	for _, r := range recs {
		var w, i int
		if _, err := fmt.Sscanf(string(r), "w%d %04d", &w, &i); err != nil {
			t.Fatalf("record %q: %v", r, err)
		}
		if i != next[w] {
			t.Fatalf("writer %d: record %d where %d was next", w, i, next[w])
		}
		next[w]++
	}
}

// TestCloseWhileWriting: closing while writers append (the zeroing goroutine
// stopping meanwhile) ends every writer with an error, never a panic, and
// what was synced before is there after a reopen.
func TestCloseWhileWriting(t *testing.T) {
	for range 5 {
		dir := t.TempDir()
		j, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var last Pos
		for w := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := 0; ; i++ {
					end, err := j.Append([]byte(fmt.Sprintf("w%d %06d %0512d", w, i, i)))
					if err != nil {
						return
					}
					mu.Lock()
					if last.Less(end) {
						last = end
					}
					mu.Unlock()
				}
			}()
		}
		time.Sleep(20 * time.Millisecond)
		if err := j.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		j, err = Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		if j.End().Less(last) {
			t.Fatalf("reopened at %v, before the last synced record %v", j.End(), last)
		}
		j.Close()
	}
}

// TestWriteWhileZeroingStops: a Write that takes the lock while Close waits
// for the zeroing goroutine to end (and that would wake it) neither panics
// nor is lost.
func TestWriteWhileZeroingStops(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var end Pos
	var werr error
	j.stopping = func() {
		// Far past what was zeroed: this Write would wake the zeroing.
		if end, werr = j.Write(make([]byte, 4*zeroChunk)); werr == nil {
			werr = j.Sync(end)
		}
	}
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	if werr != nil {
		t.Fatal(werr)
	}
	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.End() != end {
		t.Fatalf("reopened at %v, want %v", j.End(), end)
	}
}

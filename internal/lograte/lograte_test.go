package lograte

import (
	"sync"
	"testing"
	"time"
)

// One line at once, then one per interval carrying what was held back in
// between; the count starts again after each line.
func TestAllow(t *testing.T) {
	at := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	l := New(10 * time.Second)
	l.now = func() time.Time { return at }
	step := func(d time.Duration, wantOK bool, wantHeld int) {
		t.Helper()
		at = at.Add(d)
		if ok, held := l.Allow(); ok != wantOK || held != wantHeld {
			t.Fatalf("at +%v: Allow() = %v, %d; want %v, %d", d, ok, held, wantOK, wantHeld)
		}
	}
	step(0, true, 0)
	step(time.Second, false, 0)
	step(time.Second, false, 0)
	step(7*time.Second, false, 0)
	step(time.Second, true, 3) // 10 s after the first line
	step(9*time.Second, false, 0)
	step(time.Hour, true, 1)
	step(10*time.Second, true, 0)
}

// Under concurrent calls within one interval exactly one is allowed and
// the next line accounts for all the others.
func TestAllowConcurrent(t *testing.T) {
	at := time.Date(2026, 12, 8, 3, 0, 0, 0, time.UTC)
	l := New(time.Minute)
	var mu sync.Mutex
	l.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return at }
	var wg sync.WaitGroup
	var allowed sync.Map
	for i := range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if ok, _ := l.Allow(); ok {
				allowed.Store(i, true)
			}
		}()
	}
	wg.Wait()
	n := 0
	allowed.Range(func(any, any) bool { n++; return true })
	mu.Lock()
	at = at.Add(time.Minute)
	mu.Unlock()
	if ok, held := l.Allow(); n != 1 || !ok || held != 99 {
		t.Fatalf("%d of 100 allowed; the next: %v, %d held", n, ok, held)
	}
}

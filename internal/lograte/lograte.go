// Package lograte keeps a failure that repeats for every message, such as
// a store that is down, from filling the log: the first is logged at once,
// then at most one line per interval, which says how many were held back
// since the line before. Metrics count every one.
package lograte

import (
	"sync"
	"time"
)

// Limiter decides when a repeating failure is logged. The zero value is
// not usable; make one with New. It is safe for concurrent use.
type Limiter struct {
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	last time.Time // of the last line logged; zero before the first
	held int       // calls held back since then
}

// New returns a Limiter that allows one line per every.
func New(every time.Duration) *Limiter { return &Limiter{every: every, now: time.Now} }

// Allow reports whether to log this occurrence and, if so, how many were
// held back since the previous line logged.
func (l *Limiter) Allow() (ok bool, held int) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.last.IsZero() && now.Sub(l.last) < l.every {
		l.held++
		return false, 0
	}
	l.last, held, l.held = now, l.held, 0
	return true, held
}

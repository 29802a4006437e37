package sftpd

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"time"
)

// maxTrackedAddrs bounds the addresses the throttle remembers. At the cap,
// recording a new address first forgets the unlocked address whose last
// failure is oldest; locked addresses are forgotten only when every tracked
// address is locked, the one released soonest first.
const maxTrackedAddrs = 10000

// throttle counts failed logins per client address (the port is ignored).
// An address with max failures within window is locked for lockout: the
// listener closes its new connections as soon as they are accepted, and its
// connections still authenticating fail every further attempt. A successful
// login forgets the address's failures, unless it is locked. Failures of a
// locked address are not counted and do not prolong the lockout.
//
// Expired entries are pruned on every call, oldest first, so the cost of a
// call does not grow with the table. A nil *throttle throttles nothing.
type throttle struct {
	max     int
	window  time.Duration
	lockout time.Duration
	cap     int
	now     func() time.Time
	base    time.Time // times are kept as offsets from base: 8 bytes each, monotonic with time.Now

	mu      sync.Mutex
	peers   map[netip.Addr]*peer
	failing list.List // of *peer not locked, least recent failure first
	locked  list.List // of *peer locked, earliest release first (every lockout lasts as long)
}

// peer is the state of one client address.
type peer struct {
	addr     netip.Addr
	fails    []time.Duration // failures within the window, oldest first; fewer than max
	isLocked bool
	until    time.Duration // release time while locked
	elem     *list.Element // in failing or in locked
}

// lockEvent tells of an address that has just been locked.
type lockEvent struct {
	addr     netip.Addr
	failures int
	until    time.Time
}

// release tells of an address whose lockout ended (noticed on the next call
// after it ended).
type release struct {
	addr  netip.Addr
	until time.Time
}

func newThrottle(max int, window, lockout time.Duration, now func() time.Time) *throttle {
	t := &throttle{max: max, window: window, lockout: lockout, cap: maxTrackedAddrs, peers: map[netip.Addr]*peer{}}
	t.setClock(now)
	return t
}

// setClock replaces the clock; only before the throttle is used.
func (t *throttle) setClock(now func() time.Time) {
	t.now = now
	t.base = now()
}

func (t *throttle) clock() time.Duration { return t.now().Sub(t.base) }

func (t *throttle) at(d time.Duration) time.Time { return t.base.Add(d) }

// isLocked reports whether addr is locked out now.
func (t *throttle) isLocked(addr netip.Addr) (bool, []release) {
	if t == nil {
		return false, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rel := t.prune(t.clock())
	p := t.peers[addr]
	return p != nil && p.isLocked, rel
}

// fail records a failed login from addr; ev is set when that failure locks
// the address.
func (t *throttle) fail(addr netip.Addr) (ev *lockEvent, rel []release) {
	if t == nil {
		return nil, nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.clock()
	rel = t.prune(now)
	p := t.peers[addr]
	switch {
	case p == nil:
		if len(t.peers) >= t.cap {
			t.evict()
		}
		p = &peer{addr: addr}
		p.elem = t.failing.PushBack(p)
		t.peers[addr] = p
	case p.isLocked:
		return nil, rel
	default:
		p.trim(now - t.window)
		t.failing.MoveToBack(p.elem)
	}
	p.fails = append(p.fails, now)
	if len(p.fails) < t.max {
		return nil, rel
	}
	ev = &lockEvent{addr: addr, failures: len(p.fails), until: t.at(now + t.lockout)}
	t.failing.Remove(p.elem)
	p.fails, p.isLocked, p.until = nil, true, now+t.lockout
	p.elem = t.locked.PushBack(p)
	return ev, rel
}

// success forgets addr's failures after a successful login; a lockout
// stays.
func (t *throttle) success(addr netip.Addr) []release {
	if t == nil {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	rel := t.prune(t.clock())
	if p := t.peers[addr]; p != nil && !p.isLocked {
		t.forget(p)
	}
	return rel
}

// size returns the number of tracked addresses.
func (t *throttle) size() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.peers)
}

// trim drops failures at or before cutoff.
func (p *peer) trim(cutoff time.Duration) {
	i := 0
	for i < len(p.fails) && p.fails[i] <= cutoff {
		i++
	}
	if i > 0 {
		p.fails = append(p.fails[:0], p.fails[i:]...)
	}
}

// prune forgets addresses whose lockout has ended and those whose last
// failure has left the window. It returns the addresses released.
func (t *throttle) prune(now time.Duration) []release {
	var rel []release
	for e := t.locked.Front(); e != nil; e = t.locked.Front() {
		p := e.Value.(*peer)
		if p.until > now {
			break
		}
		rel = append(rel, release{addr: p.addr, until: t.at(p.until)})
		t.forget(p)
	}
	cutoff := now - t.window
	for e := t.failing.Front(); e != nil; e = t.failing.Front() {
		p := e.Value.(*peer)
		if p.fails[len(p.fails)-1] > cutoff {
			break
		}
		t.forget(p)
	}
	return rel
}

// evict makes room for one address (see maxTrackedAddrs).
func (t *throttle) evict() {
	e := t.failing.Front()
	if e == nil {
		e = t.locked.Front()
	}
	if e != nil {
		t.forget(e.Value.(*peer))
	}
}

func (t *throttle) forget(p *peer) {
	if p.isLocked {
		t.locked.Remove(p.elem)
	} else {
		t.failing.Remove(p.elem)
	}
	delete(t.peers, p.addr)
}

// peerAddr returns the IP address of a connection's remote end, IPv4 in
// IPv6 unwrapped, without the port.
func peerAddr(a net.Addr) (netip.Addr, bool) {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip := ta.AddrPort().Addr().Unmap()
		return ip, ip.IsValid()
	}
	if a == nil {
		return netip.Addr{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, false
	}
	return ap.Addr().Unmap(), true
}

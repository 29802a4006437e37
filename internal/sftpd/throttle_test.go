package sftpd

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// testClock is a clock the test moves by hand.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC)}
}

func (c *testClock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *testClock) advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

var (
	addrA = netip.MustParseAddr("192.0.2.1")
	addrB = netip.MustParseAddr("192.0.2.2")
	addrC = netip.MustParseAddr("2001:db8::3")
	addrD = netip.MustParseAddr("192.0.2.4")
	addrE = netip.MustParseAddr("192.0.2.5")
)

func newTestThrottle(max int) (*throttle, *testClock) {
	clk := newTestClock()
	return newThrottle(max, 10*time.Minute, 15*time.Minute, clk.now), clk
}

func locked(t *testing.T, th *throttle, a netip.Addr) bool {
	t.Helper()
	l, _ := th.isLocked(a)
	return l
}

// failN records n failures of a and returns the lock event of the last.
func failN(th *throttle, a netip.Addr, n int) *lockEvent {
	var ev *lockEvent
	for range n {
		ev, _ = th.fail(a)
	}
	return ev
}

func TestThrottleLocksAfterMaxFailuresInWindow(t *testing.T) {
	th, clk := newTestThrottle(3)
	for i := range 2 {
		if ev, _ := th.fail(addrA); ev != nil {
			t.Fatalf("locked after %d failures", i+1)
		}
		clk.advance(time.Minute)
	}
	if locked(t, th, addrA) {
		t.Fatal("locked before the third failure")
	}
	ev, _ := th.fail(addrA)
	if ev == nil || ev.addr != addrA || ev.failures != 3 {
		t.Fatalf("third failure within the window: event %+v, want a lock of %v after 3", ev, addrA)
	}
	if want := clk.now().Add(15 * time.Minute); !ev.until.Equal(want) {
		t.Fatalf("locked until %v, want %v", ev.until, want)
	}
	if !locked(t, th, addrA) {
		t.Fatal("not locked")
	}
	if locked(t, th, addrB) || locked(t, th, netip.MustParseAddr("::ffff:192.0.2.9")) {
		t.Fatal("another address is locked too")
	}
}

func TestThrottleSpreadOverMoreThanTheWindow(t *testing.T) {
	th, clk := newTestThrottle(3)
	// 0, 6m, 10m: the first failure is exactly one window old at the third,
	// so only two fall within the window.
	th.fail(addrA)
	clk.advance(6 * time.Minute)
	th.fail(addrA)
	clk.advance(4 * time.Minute)
	if ev, _ := th.fail(addrA); ev != nil || locked(t, th, addrA) {
		t.Fatal("locked by failures spread over the whole window")
	}
	// Failures at 6m, 10m and 15m fall within 10 minutes.
	clk.advance(5 * time.Minute)
	if ev, _ := th.fail(addrA); ev == nil || ev.failures != 3 {
		t.Fatalf("three failures within the window: event %+v", ev)
	}
	// One failure every 5 minutes for hours never locks, and keeps at most
	// two failure times.
	th2, clk2 := newTestThrottle(3)
	for i := range 50 {
		if ev, _ := th2.fail(addrB); ev != nil {
			t.Fatalf("failure %d, 5m after the previous one, locked", i+1)
		}
		clk2.advance(5 * time.Minute)
	}
	if th2.size() != 1 || len(th2.peers[addrB].fails) > 2 {
		t.Fatalf("kept %d addresses, %d failure times", th2.size(), len(th2.peers[addrB].fails))
	}
}

func TestThrottleReleaseAfterLockout(t *testing.T) {
	th, clk := newTestThrottle(3)
	ev := failN(th, addrA, 3)
	if ev == nil {
		t.Fatal("not locked")
	}
	// Failures while locked neither count nor prolong the lockout.
	clk.advance(10 * time.Minute)
	if again := failN(th, addrA, 5); again != nil {
		t.Fatalf("locked again while locked: %+v", again)
	}
	clk.advance(5*time.Minute - time.Nanosecond)
	if !locked(t, th, addrA) {
		t.Fatal("released before the lockout ended")
	}
	clk.advance(time.Nanosecond)
	l, rel := th.isLocked(addrA)
	if l {
		t.Fatal("still locked after the lockout")
	}
	if len(rel) != 1 || rel[0].addr != addrA || !rel[0].until.Equal(ev.until) {
		t.Fatalf("released %+v, want %v until %v", rel, addrA, ev.until)
	}
	if th.size() != 0 {
		t.Fatalf("%d addresses kept after the release", th.size())
	}
	// Counting starts afresh.
	if failN(th, addrA, 2) != nil {
		t.Fatal("locked again by two failures after the release")
	}
	if failN(th, addrA, 1) == nil {
		t.Fatal("not locked again by a third")
	}
}

func TestThrottleSuccessClearsFailures(t *testing.T) {
	th, _ := newTestThrottle(3)
	failN(th, addrA, 2)
	failN(th, addrB, 2)
	th.success(addrA)
	if failN(th, addrA, 2) != nil {
		t.Fatal("failures before a successful login still counted")
	}
	if failN(th, addrB, 1) == nil {
		t.Fatal("a success of another address cleared this one's failures")
	}
	// A success does not lift a lockout.
	th.success(addrB)
	if !locked(t, th, addrB) {
		t.Fatal("a successful login lifted the lockout")
	}
}

func TestThrottleTableCap(t *testing.T) {
	th, clk := newTestThrottle(2)
	th.cap = 3
	failN(th, addrA, 2) // locked
	clk.advance(time.Second)
	failN(th, addrB, 1)
	clk.advance(time.Second)
	failN(th, addrC, 1)
	clk.advance(time.Second)
	// Full: the unlocked address with the oldest failure (B) goes.
	failN(th, addrD, 1)
	if th.size() != 3 || th.peers[addrB] != nil || !locked(t, th, addrA) {
		t.Fatalf("after D: %d addresses, B kept %v, A locked %v", th.size(), th.peers[addrB] != nil, locked(t, th, addrA))
	}
	// C's failure was kept: a second one locks it.
	if failN(th, addrC, 1) == nil {
		t.Fatal("C's first failure was lost")
	}
	failN(th, addrD, 1)
	// Every address locked: the one released soonest (A) goes.
	failN(th, addrE, 1)
	if th.size() != 3 || th.peers[addrA] != nil || !locked(t, th, addrC) || !locked(t, th, addrD) {
		t.Fatalf("after E: %d addresses, A kept %v", th.size(), th.peers[addrA] != nil)
	}

	// An attack from many addresses keeps the table at its cap, and
	// failures that leave the window are pruned.
	th2, clk2 := newTestThrottle(5)
	th2.cap = 1000
	for i := range 20000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		failN(th2, a, 1+i%5)
		if th2.size() > th2.cap {
			t.Fatalf("%d addresses tracked, cap %d", th2.size(), th2.cap)
		}
	}
	if th2.failing.Len()+th2.locked.Len() != th2.size() {
		t.Fatalf("lists hold %d+%d, map %d", th2.failing.Len(), th2.locked.Len(), th2.size())
	}
	clk2.advance(10 * time.Minute)
	th2.isLocked(addrA)
	if th2.failing.Len() != 0 || th2.size() != th2.locked.Len() {
		t.Fatalf("after the window: %d failing kept, %d locked, %d in all", th2.failing.Len(), th2.locked.Len(), th2.size())
	}
	clk2.advance(5 * time.Minute)
	if _, rel := th2.isLocked(addrA); th2.size() != 0 || len(rel) == 0 {
		t.Fatalf("after the lockout: %d addresses kept, %d released", th2.size(), len(rel))
	}
}

func TestPeerAddrIgnoresPort(t *testing.T) {
	for _, tc := range []struct {
		a    net.Addr
		want string
	}{
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 1}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 65000}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("::ffff:192.0.2.1"), Port: 2}, "192.0.2.1"},
		{&net.TCPAddr{IP: net.ParseIP("2001:db8::1"), Port: 3}, "2001:db8::1"},
		{&net.UnixAddr{Name: "[2001:db8::2]:22", Net: "x"}, "2001:db8::2"},
	} {
		got, ok := peerAddr(tc.a)
		if !ok || got.String() != tc.want {
			t.Errorf("peerAddr(%v) = %v, %v; want %s", tc.a, got, ok, tc.want)
		}
	}
	if _, ok := peerAddr(&net.UnixAddr{Name: "/run/x.sock", Net: "unix"}); ok {
		t.Error("a socket path taken for an address")
	}
	if _, ok := peerAddr(nil); ok {
		t.Error("nil taken for an address")
	}
}

// newThrottledHarness serves with throttling after max failures, a 10
// minute window, a 15 minute lockout and a clock the test moves.
func newThrottledHarness(t *testing.T, max int) (*harness, *testClock) {
	t.Helper()
	h := newStoppedHarness(t, func(c *Config) {
		c.MaxAuthFailures, c.AuthFailureWindow, c.AuthLockout = max, 10*time.Minute, 15*time.Minute
	})
	clk := newTestClock()
	h.srv.throttle.setClock(clk.now)
	h.start()
	return h, clk
}

// wrongPassword makes one connection that fails to log in as carol.
func (h *harness) wrongPassword(i int) {
	h.t.Helper()
	sc, err := h.dial("carol", ssh.Password(fmt.Sprintf("wrong-%d", i)))
	if err == nil {
		sc.Close()
		h.t.Fatal("a wrong password was accepted")
	}
	if !strings.Contains(err.Error(), "unable to authenticate") {
		h.t.Fatalf("connection %d: %v, want an authentication failure", i, err)
	}
}

// closedBeforeVersion connects over TCP and checks that the server closes
// the connection without sending its SSH version line.
func (h *harness) closedBeforeVersion() {
	h.t.Helper()
	nc, err := net.DialTimeout("tcp", h.addr, 10*time.Second)
	if err != nil {
		h.t.Fatal(err)
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(nc)
	if len(b) != 0 || (err != nil && !errors.Is(err, syscall.ECONNRESET)) {
		h.t.Fatalf("locked address: read %q, %v; want the connection closed at once", b, err)
	}
}

// TestLockoutOverSSH: with golang.org/x/crypto/ssh as the client, N
// connections that fail to authenticate lock the address out; the next
// connection is closed before the SSH handshake even with the right
// password, and accepted again once the lockout is over.
func TestLockoutOverSSH(t *testing.T) {
	const n = 4
	h, clk := newThrottledHarness(t, n)
	for i := range n {
		h.wrongPassword(i)
		clk.advance(time.Minute)
	}
	sc, err := h.dial("carol", ssh.Password(carolPassword))
	if err == nil {
		sc.Close()
		t.Fatal("the right password was accepted from a locked address")
	}
	if strings.Contains(err.Error(), "unable to authenticate") {
		t.Fatalf("the locked connection reached authentication: %v", err)
	}
	if _, err := h.dial("alice"); err == nil {
		t.Fatal("another account's key was accepted from the locked address")
	}
	h.closedBeforeVersion()
	st := h.srv.Stats()
	if st.LockedOut != 3 || st.AuthFailures != n || st.Logins != 0 {
		t.Fatalf("stats %+v: want 3 connections locked out, %d failures, no login", st, n)
	}

	logs := h.logs.String()
	var warn string
	for _, l := range strings.Split(logs, "\n") {
		if strings.Contains(l, "level=WARN") {
			if warn != "" {
				t.Fatalf("more than one warning:\n%s", logs)
			}
			warn = l
		}
	}
	until := clk.now().Add(15*time.Minute - time.Minute).UTC().Format(time.RFC3339)
	for _, want := range []string{"locked out", "addr=127.0.0.1 ", fmt.Sprintf("failures=%d", n), "until=" + until} {
		if !strings.Contains(warn, want) {
			t.Fatalf("warning %q lacks %q", warn, want)
		}
	}
	if strings.Contains(warn, "carol") || strings.Contains(logs, "wrong-") || strings.Contains(logs, carolPassword) {
		t.Fatalf("user name in the warning or a password in the log:\n%s", logs)
	}

	// One second before the end the address is still locked; then it is
	// released and logs in with the right password.
	clk.advance(15*time.Minute - time.Minute - time.Second)
	h.closedBeforeVersion()
	clk.advance(time.Second)
	c := h.sftp("carol", ssh.Password(carolPassword))
	if _, err := c.ReadDir("/inbox"); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(h.logs.String(), `level=INFO msg="sftp address released from lockout" addr=127.0.0.1 `) {
		t.Fatalf("release not logged:\n%s", h.logs.String())
	}
	if st := h.srv.Stats(); st.LockedOut != 4 || st.Logins != 1 {
		t.Fatalf("stats after the release %+v", st)
	}
}

// TestLockoutOnlyWithinWindow: failures spread over more than the window
// do not lock; a successful login clears the count.
func TestLockoutOnlyWithinWindow(t *testing.T) {
	const n = 3
	h, clk := newThrottledHarness(t, n)
	for i := range 3 * n {
		h.wrongPassword(i)
		clk.advance(5*time.Minute + time.Second) // n-1 failures per window at most
	}
	h.senderWorks("alice")

	// n-1 failures, a success, n-1 failures: still not locked.
	for i := range n - 1 {
		h.wrongPassword(i)
	}
	h.senderWorks("bob")
	for i := range n - 1 {
		h.wrongPassword(i)
	}
	h.senderWorks("alice")
	if st := h.srv.Stats(); st.LockedOut != 0 || st.AuthFailures != 3*n+2*(n-1) {
		t.Fatalf("stats %+v", st)
	}
	// Without the success in between, the nth failure locks.
	for i := range n {
		h.wrongPassword(i)
	}
	h.closedBeforeVersion()
}

// TestLockoutSparesAuthenticatedAndOtherConnections: a session
// authenticated before the lockout keeps working, a connection still
// authenticating fails every attempt once its address is locked, and
// another address is not affected.
func TestLockoutSparesAuthenticatedAndOtherConnections(t *testing.T) {
	const n = 3
	h, _ := newThrottledHarness(t, n)
	before := h.sftp("alice")

	// One connection: n wrong passwords, then the right one. The nth failure
	// locks the address while the connection is still authenticating.
	tries := 0
	cfg := h.clientConfig("carol", ssh.RetryableAuthMethod(ssh.PasswordCallback(func() (string, error) {
		tries++
		if tries <= n {
			return fmt.Sprintf("wrong-%d", tries), nil
		}
		return carolPassword, nil
	}), n+1))
	if sc, err := ssh.Dial("tcp", h.addr, cfg); err == nil {
		sc.Close()
		t.Fatal("the right password was accepted on a connection whose address got locked")
	}
	if tries != n+1 {
		t.Fatalf("%d passwords tried, want %d", tries, n+1)
	}
	h.closedBeforeVersion()

	if err := put(before, "after-lock.hl7", []byte("MSH|^~\\&|X\r")); err != nil {
		t.Fatalf("the session authenticated before the lockout: %v", err)
	}
	if got := h.files("alice", folderProcessed); !contains(got, "after-lock.hl7") {
		t.Fatalf("processed/ holds %v", got)
	}

	// Another loopback address connects as usual (Linux routes 127/8).
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: 10 * time.Second}
	nc, err := d.Dial("tcp", h.addr)
	if err != nil {
		t.Skipf("cannot connect from 127.0.0.2: %v", err)
	}
	conn, chans, reqs, err := ssh.NewClientConn(nc, h.addr, h.clientConfig("bob", ssh.PublicKeys(h.keys["bob"])))
	if err != nil {
		nc.Close()
		t.Fatalf("another address was refused: %v", err)
	}
	ssh.NewClient(conn, chans, reqs).Close()
}

// TestThrottleOff: a negative MaxAuthFailures never locks anyone out.
func TestThrottleOff(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxAuthFailures = -1 })
	if h.srv.throttle != nil {
		t.Fatal("throttle set up although turned off")
	}
	for i := range DefaultMaxAuthFailures + 2 {
		h.wrongPassword(i)
	}
	h.senderWorks("alice")
	if st := h.srv.Stats(); st.LockedOut != 0 {
		t.Fatalf("stats %+v", st)
	}
}

// TestThrottleDefaults: the zero Config throttles after
// DefaultMaxAuthFailures failures.
func TestThrottleDefaults(t *testing.T) {
	h := newHarness(t, nil)
	th := h.srv.throttle
	if th == nil || th.max != DefaultMaxAuthFailures || th.window != DefaultAuthFailureWindow || th.lockout != DefaultAuthLockout || th.cap != maxTrackedAddrs {
		t.Fatalf("throttle %+v", th)
	}
	for i := range DefaultMaxAuthFailures {
		h.wrongPassword(i)
	}
	h.closedBeforeVersion()
}

// BenchmarkThrottle measures the table itself: a lookup on the accept path,
// and a failure of a new address with the table at its cap.
func BenchmarkThrottle(b *testing.B) {
	th, _ := newTestThrottle(DefaultMaxAuthFailures)
	addr := func(i int) netip.Addr { return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}) }
	for i := range maxTrackedAddrs {
		th.fail(addr(i))
	}
	b.Run("is-locked", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			th.isLocked(addr(i % maxTrackedAddrs))
		}
	})
	b.Run("fail-new-address-at-cap", func(b *testing.B) {
		for i := 0; b.Loop(); i++ {
			th.fail(addr(maxTrackedAddrs + i))
		}
	})
}

// BenchmarkConnection compares what one connection costs the server: a
// login with a key (throttling on and off), a failed password login (what
// every guess costs without throttling; bcrypt at its minimum cost here) and
// a connection from a locked-out address.
func BenchmarkConnection(b *testing.B) {
	for _, tc := range []struct {
		name string
		max  int
		lock bool
		user string
		auth ssh.AuthMethod
	}{
		{"login/throttle-on", 0, false, "alice", nil},
		{"login/throttle-off", -1, false, "alice", nil},
		{"failed-password", -1, false, "carol", ssh.Password("wrong")},
		{"locked-out", 0, true, "", nil},
	} {
		b.Run(tc.name, func(b *testing.B) {
			srv, addr, keys := benchServer(b, tc.max)
			if tc.lock {
				ip := netip.MustParseAddr("127.0.0.1")
				for range DefaultMaxAuthFailures {
					srv.throttle.fail(ip)
				}
			}
			auth := tc.auth
			if auth == nil && tc.user != "" {
				auth = ssh.PublicKeys(keys[tc.user])
			}
			cfg := &ssh.ClientConfig{User: tc.user, Auth: []ssh.AuthMethod{auth},
				HostKeyCallback: ssh.FixedHostKey(srv.hostKey.PublicKey()), Timeout: 10 * time.Second}
			for b.Loop() {
				if tc.lock {
					nc, err := net.Dial("tcp", addr)
					if err != nil {
						b.Fatal(err)
					}
					io.Copy(io.Discard, nc)
					nc.Close()
					continue
				}
				sc, err := ssh.Dial("tcp", addr, cfg)
				if (err == nil) != (tc.user == "alice") {
					b.Fatalf("dial: %v", err)
				}
				if sc != nil {
					sc.Close()
				}
			}
			b.StopTimer()
			if st := srv.Stats(); tc.lock && st.LockedOut == 0 {
				b.Fatal("nothing locked out")
			}
		})
	}
}

// benchServer serves alice (a key) and carol (a bcrypt password) on a
// loopback port until the benchmark ends.
func benchServer(b *testing.B, maxAuthFailures int) (*Server, string, map[string]ssh.Signer) {
	b.Helper()
	dir := b.TempDir()
	keys := map[string]ssh.Signer{"alice": newSigner(b)}
	bc, err := bcrypt.GenerateFromPassword([]byte(carolPassword), bcrypt.MinCost)
	if err != nil {
		b.Fatal(err)
	}
	srv, err := New(Config{
		HostKeyPath: filepath.Join(dir, "hk"),
		Root:        filepath.Join(dir, "data"),
		Accounts: []Account{{Name: "alice", AuthorizedKeys: []ssh.PublicKey{keys["alice"].PublicKey()}},
			{Name: "carol", PasswordHash: string(bc)}},
		MaxAuthFailures: maxAuthFailures,
		RescanInterval:  time.Hour,
		Logger:          slog.New(slog.DiscardHandler),
	}, &fakeIntake{})
	if err != nil {
		b.Fatal(err)
	}
	return srv, serveUntilEnd(b, srv), keys
}

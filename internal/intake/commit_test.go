package intake

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
)

// gateStore records the control ids of each transaction. Its first
// transaction waits until release is closed, so that the test can queue
// envelopes behind it; a transaction holding an id in failIDs fails whole.
type gateStore struct {
	mu      sync.Mutex
	batches [][]string
	started chan struct{} // closed when the first transaction begins
	release chan struct{}
	failIDs map[string]bool
}

func newGateStore() *gateStore {
	return &gateStore{started: make(chan struct{}), release: make(chan struct{}), failIDs: map[string]bool{}}
}

func (g *gateStore) InsertEnvelopes(_ context.Context, envs []*store.Envelope) ([]store.Inserted, error) {
	ids := make([]string, len(envs))
	fail := false
	for i, e := range envs {
		ids[i] = e.ControlID
		fail = fail || g.failIDs[e.ControlID]
	}
	g.mu.Lock()
	g.batches = append(g.batches, ids)
	first := len(g.batches) == 1
	g.mu.Unlock()
	if first {
		close(g.started)
		<-g.release
	}
	if fail {
		return nil, errors.New("disk full")
	}
	out := make([]store.Inserted, len(envs))
	for i, e := range envs {
		out[i] = store.Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
	}
	return out, nil
}

func (in *Intake) pendingCount() int {
	in.mu.Lock()
	defer in.mu.Unlock()
	return in.pending
}

// acceptAll sends the messages with the given control ids concurrently,
// each from its own goroutine, and returns each one's receipt and error.
func acceptAll(in *Intake, ids []string) (map[string]Receipt, map[string]error) {
	var mu sync.Mutex
	recs, errs := map[string]Receipt{}, map[string]error{}
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rec, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg(id, "")})
			mu.Lock()
			recs[id], errs[id] = rec, err
			mu.Unlock()
		}()
	}
	wg.Wait()
	return recs, errs
}

func waitPending(t *testing.T, in *Intake, n int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for in.pendingCount() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d requests pending, want %d", in.pendingCount(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

// TestGroupCommit: envelopes that arrive while a commit is under way share
// the next transaction (at most MaxBatch each), in arrival order, and every
// caller gets the reply for its own message.
func TestGroupCommit(t *testing.T) {
	for _, maxBatch := range []int{512, 4} {
		t.Run(fmt.Sprint("max batch ", maxBatch), func(t *testing.T) {
			st := newGateStore()
			var commits atomic.Int64
			in := New(st, Options{MaxBatch: maxBatch, OnCommit: func() { commits.Add(1) }})
			defer in.Close()
			firstDone := make(chan Receipt)
			go func() {
				rec, _ := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("FIRST", "")})
				firstDone <- rec
			}()
			<-st.started
			var ids []string
			for i := range 10 {
				ids = append(ids, fmt.Sprintf("Q%02d", i))
			}
			type outcome struct {
				recs map[string]Receipt
				errs map[string]error
			}
			done := make(chan outcome)
			go func() {
				r, e := acceptAll(in, ids)
				done <- outcome{r, e}
			}()
			waitPending(t, in, 11)
			close(st.release)
			if rec := <-firstDone; ackControlID(t, rec.ACK) != "FIRST" {
				t.Fatalf("the first caller got another's reply: %q", rec.ACK)
			}
			got := <-done
			for _, id := range ids {
				if got.errs[id] != nil {
					t.Fatalf("%s: %v", id, got.errs[id])
				}
				if a := ackControlID(t, got.recs[id].ACK); a != id {
					t.Errorf("the caller of %s got the reply for %s", id, a)
				}
			}
			st.mu.Lock()
			defer st.mu.Unlock()
			wantTx := 1 + (10+maxBatch-1)/maxBatch
			if len(st.batches) != wantTx {
				t.Fatalf("%d transactions %v, want %d", len(st.batches), st.batches, wantTx)
			}
			n := 0
			for _, b := range st.batches[1:] {
				if len(b) > maxBatch {
					t.Errorf("a transaction of %d envelopes, more than %d", len(b), maxBatch)
				}
				n += len(b)
			}
			if n != 10 {
				t.Errorf("%d envelopes committed after the first, want 10: %v", n, st.batches)
			}
			in.Close() // returns after the last OnCommit
			if n := commits.Load(); n != int64(wantTx) {
				t.Errorf("OnCommit called %d times, want once per transaction (%d)", n, wantTx)
			}
		})
	}
}

// TestGroupCommitFailure: a failed transaction fails exactly the envelopes
// in it, each answered AR; the transactions after it still commit.
func TestGroupCommitFailure(t *testing.T) {
	st := newGateStore()
	st.failIDs["BAD"] = true
	in := New(st, Options{MaxBatch: 2})
	defer in.Close()
	go func() {
		_, _ = in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("FIRST", "")})
	}()
	<-st.started
	type outcome struct {
		recs map[string]Receipt
		errs map[string]error
	}
	done := make(chan outcome)
	// Queue BAD first, then the others, so BAD leads the second transaction.
	go func() {
		r, e := acceptAll(in, []string{"BAD"})
		done <- outcome{r, e}
	}()
	waitPending(t, in, 2)
	go func() {
		r, e := acceptAll(in, []string{"A1", "A2", "A3"})
		done <- outcome{r, e}
	}()
	waitPending(t, in, 5)
	close(st.release)
	recs, errs := map[string]Receipt{}, map[string]error{}
	for range 2 {
		o := <-done
		for k, v := range o.recs {
			recs[k], errs[k] = v, o.errs[k]
		}
	}
	st.mu.Lock()
	var failed []string
	for _, b := range st.batches {
		for _, id := range b {
			if id == "BAD" {
				failed = b
			}
		}
	}
	st.mu.Unlock()
	inFailed := map[string]bool{}
	for _, id := range failed {
		inFailed[id] = true
	}
	for _, id := range []string{"BAD", "A1", "A2", "A3"} {
		ack, err := hl7.Parse(recs[id].ACK)
		if err != nil {
			t.Fatalf("%s: unreadable ACK %q", id, recs[id].ACK)
		}
		switch {
		case inFailed[id] && (errs[id] == nil || ack.Get("MSA-1") != "AR"):
			t.Errorf("%s was in the failed transaction but got %s, err %v", id, ack.Get("MSA-1"), errs[id])
		case !inFailed[id] && (errs[id] != nil || ack.Get("MSA-1") != "AA"):
			t.Errorf("%s was committed but got %s, err %v", id, ack.Get("MSA-1"), errs[id])
		}
	}
	if len(failed) != 2 {
		t.Errorf("the failed transaction held %v, want BAD and one other (MaxBatch 2)", failed)
	}
}

// TestCloseWaitsForQueued: Close returns only after the envelopes already
// queued are committed, and refuses new ones.
func TestCloseWaitsForQueued(t *testing.T) {
	st := newGateStore()
	in := New(st, Options{})
	go func() {
		_, _ = in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("C1", "")})
	}()
	<-st.started
	go func() { _, _ = acceptAll(in, []string{"C2"}) }()
	waitPending(t, in, 2)
	closed := make(chan struct{})
	go func() { in.Close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("Close returned while a commit was under way")
	case <-time.After(50 * time.Millisecond):
	}
	close(st.release)
	<-closed
	st.mu.Lock()
	n := len(st.batches)
	st.mu.Unlock()
	if n != 2 {
		t.Fatalf("%d transactions before Close returned, want 2", n)
	}
	if _, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("C3", "")}); err == nil {
		t.Fatal("Accept after Close must fail")
	}
}

func ackControlID(t *testing.T, ack []byte) string {
	t.Helper()
	m, err := hl7.Parse(ack)
	if err != nil {
		t.Fatalf("unreadable ACK %q: %v", ack, err)
	}
	return m.Get("MSA-2")
}

// heldStore holds every transaction until the test releases it by number.
type heldStore struct {
	mu       sync.Mutex
	batches  [][]string
	running  int
	most     int // the most transactions under way at once
	started  chan int
	releases []chan struct{}
}

func newHeldStore(n int) *heldStore {
	h := &heldStore{started: make(chan int, n)}
	for range n {
		h.releases = append(h.releases, make(chan struct{}))
	}
	return h
}

func (h *heldStore) InsertEnvelopes(_ context.Context, envs []*store.Envelope) ([]store.Inserted, error) {
	ids := make([]string, len(envs))
	for i, e := range envs {
		ids[i] = e.ControlID
	}
	h.mu.Lock()
	i := len(h.batches)
	h.batches = append(h.batches, ids)
	h.running++
	h.most = max(h.most, h.running)
	h.mu.Unlock()
	if i >= len(h.releases) {
		return nil, errors.New("more transactions than the test expected")
	}
	h.started <- i
	<-h.releases[i]
	h.mu.Lock()
	h.running--
	h.mu.Unlock()
	out := make([]store.Inserted, len(envs))
	for i, e := range envs {
		out[i] = store.Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
	}
	return out, nil
}

func (h *heldStore) waitStarted(t *testing.T, want int) {
	t.Helper()
	select {
	case i := <-h.started:
		if i != want {
			t.Fatalf("transaction %d started, want %d", i, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("transaction %d never started", want)
	}
}

// TestOverlappingCommits: with MaxInFlight 2 a second commit starts while
// the first is under way, a third group waits for a free place and then
// commits as one transaction, and every caller gets its own reply.
func TestOverlappingCommits(t *testing.T) {
	st := newHeldStore(3)
	in := New(st, Options{MaxInFlight: 2})
	t.Cleanup(func() {
		for _, ch := range st.releases {
			select {
			case <-ch:
			default:
				close(ch)
			}
		}
		in.Close()
	})
	type outcome struct {
		recs map[string]Receipt
		errs map[string]error
	}
	done := make(chan outcome, 3)
	send := func(ids ...string) {
		go func() {
			r, e := acceptAll(in, ids)
			done <- outcome{r, e}
		}()
	}
	send("A")
	st.waitStarted(t, 0)
	send("B")
	st.waitStarted(t, 1)
	send("C1", "C2", "C3")
	waitPending(t, in, 5)
	select {
	case i := <-st.started:
		t.Fatalf("transaction %d started while two were under way", i)
	case <-time.After(50 * time.Millisecond):
	}
	close(st.releases[1])
	st.waitStarted(t, 2)
	close(st.releases[0])
	close(st.releases[2])
	for range 3 {
		o := <-done
		for id, rec := range o.recs {
			if o.errs[id] != nil {
				t.Fatalf("%s: %v", id, o.errs[id])
			}
			if a := ackControlID(t, rec.ACK); a != id {
				t.Errorf("the caller of %s got the reply for %s", id, a)
			}
		}
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 3 || len(st.batches[2]) != 3 {
		t.Fatalf("transactions %v, want [A] [B] and the three C in one", st.batches)
	}
	if st.most != 2 {
		t.Fatalf("at most %d transactions under way at once, want 2", st.most)
	}
}

// acceptOne accepts one message with the given control id and delivers
// the control id its ACK answers.
func acceptOne(in *Intake, id string) chan string {
	ch := make(chan string, 1)
	go func() {
		rec, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg(id, "")})
		if err != nil {
			ch <- "error: " + err.Error()
			return
		}
		m, err := hl7.Parse(rec.ACK)
		if err != nil {
			ch <- "unreadable ACK"
			return
		}
		ch <- m.Get("MSA-2")
	}()
	return ch
}

func within(t *testing.T, ch chan string, want string) {
	t.Helper()
	select {
	case got := <-ch:
		if got != want {
			t.Fatalf("reply for %s, want %s", got, want)
		}
	case <-time.After(5 * time.Second):
		t.Fatalf("no reply for %s within 5 s", want)
	}
}

// closeAfter lets the held transaction of st go and closes in when the test
// ends, also when it failed half-way.
func closeAfter(t *testing.T, st *gateStore, in *Intake) {
	t.Cleanup(func() {
		select {
		case <-st.release:
		default:
			close(st.release)
		}
		in.Close()
	})
}

// TestGatherWaitsForExpected: once four envelopes were under way at once,
// three that queue while no commit holds the fourth sender's wait for it
// (up to GatherDelay, here longer than the test) and go in one group with
// it.
func TestGatherWaitsForExpected(t *testing.T) {
	st := newGateStore()
	in := New(st, Options{GatherDelay: time.Minute})
	closeAfter(t, st, in)
	p0 := acceptOne(in, "P0")
	<-st.started // P0 commits at once: nothing else was under way
	rest := []chan string{acceptOne(in, "P1"), acceptOne(in, "P2"), acceptOne(in, "P3")}
	waitPending(t, in, 4)
	close(st.release)
	within(t, p0, "P0")
	time.Sleep(50 * time.Millisecond)
	st.mu.Lock()
	n := len(st.batches)
	st.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d transactions while the fourth sender was away, want the first only: %v", n, st.batches)
	}
	q0 := acceptOne(in, "Q0")
	for i, ch := range rest {
		within(t, ch, fmt.Sprint("P", i+1))
	}
	within(t, q0, "Q0")
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 2 || len(st.batches[1]) != 4 {
		t.Fatalf("transactions %v, want [P0] and the other four together", st.batches)
	}
}

// TestGatherLoneSender: one sender at a time never waits for others, even
// with a gathering delay longer than the test.
func TestGatherLoneSender(t *testing.T) {
	st := newGateStore()
	close(st.release)
	in := New(st, Options{GatherDelay: time.Minute})
	defer in.Close()
	for i := range 20 {
		within(t, acceptOne(in, fmt.Sprint("L", i)), fmt.Sprint("L", i))
	}
}

// TestGatherGivesUp: a group whose expected companions do not come commits
// once GatherDelay is over.
func TestGatherGivesUp(t *testing.T) {
	st := newGateStore()
	in := New(st, Options{GatherDelay: 20 * time.Millisecond})
	closeAfter(t, st, in)
	a := acceptOne(in, "A")
	<-st.started
	b := acceptOne(in, "B")
	waitPending(t, in, 2) // two under way at once: the next group expects two
	close(st.release)
	within(t, a, "A")
	within(t, b, "B")
	within(t, acceptOne(in, "C"), "C") // alone, after the delay
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.batches) != 3 {
		t.Fatalf("transactions %v, want [A] [B] [C]", st.batches)
	}
}

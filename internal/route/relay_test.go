package route

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// backends runs fn against the embedded store and, when configured,
// PostgreSQL.
func backends(t *testing.T, fn func(t *testing.T, db *store.DB)) {
	backendsOpen(t, func(t *testing.T, open func() *store.DB) { fn(t, open()) })
}

// backendsOpen gives fn a way to open several handles on one database, as
// several processes would. The embedded store belongs to one process (its
// journal is locked), so there every call returns the one handle, shared as
// the relays of one process share it.
func backendsOpen(t *testing.T, fn func(t *testing.T, open func() *store.DB)) {
	run := func(t *testing.T, o store.Options) {
		var shared *store.DB
		fn(t, func() *store.DB {
			if shared != nil {
				return shared
			}
			db, err := store.Open(context.Background(), o)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { db.Close() })
			if o.PostgresDSN == "" {
				shared = db
			}
			return db
		})
	}
	t.Run("embedded", func(t *testing.T) { run(t, store.Options{DataDir: t.TempDir(), Sync: "normal"}) })
	t.Run("postgres", func(t *testing.T) { run(t, store.Options{PostgresDSN: store.TestPostgresDSN(t)}) })
}

func queue(t testing.TB, db *store.DB, entries ...store.OutboxEntry) {
	t.Helper()
	if err := db.InTx(context.Background(), func(tx *store.Tx) error { return tx.AddOutbox(context.Background(), entries...) }); err != nil {
		t.Fatal(err)
	}
}

func entry(sub, topic, key, payload string) store.OutboxEntry {
	return store.OutboxEntry{Subscriber: sub, Topic: topic, Key: key, EventType: EventResult, EnvelopeID: payload,
		Payload: []byte(payload), Headers: map[string]string{"hiegw-subscriber": sub}}
}

// publisher is a fake broker: fn decides each call's outcome; what the
// broker took is kept in log.
type publisher struct {
	mu  sync.Mutex
	fn  func(call int, msgs []Message) error
	n   int
	log []Message
}

func (p *publisher) Publish(_ context.Context, msgs []Message) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n++
	var err error
	if p.fn != nil {
		err = p.fn(p.n, msgs)
	}
	var pe *PartialError
	switch {
	case err == nil:
		p.log = append(p.log, msgs...)
	case errors.As(err, &pe):
		for i, m := range msgs {
			if !slices.Contains(pe.Failed, i) {
				p.log = append(p.log, m)
			}
		}
	}
	return err
}

func (p *publisher) published(topic, key string) []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, m := range p.log {
		if m.Topic == topic && (key == "" || string(m.Key) == key) {
			out = append(out, string(m.Value))
		}
	}
	return out
}

func pending(t testing.TB, db *store.DB) (pending, sent, dead int64) {
	t.Helper()
	st, err := db.OutboxCounts(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		pending, sent, dead = pending+s.Pending, sent+s.Sent, dead+s.Dead
	}
	return
}

// drain calls Once until nothing is pending or the deadline passes.
func drain(t *testing.T, db *store.DB, r *Relay, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		r.Once(context.Background())
		if p, _, _ := pending(t, db); p == 0 {
			return
		}
		if time.Now().After(deadline) {
			p, s, d := pending(t, db)
			t.Fatalf("outbox not drained: pending %d, sent %d, dead %d", p, s, d)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestRelayKeepsPerKeyOrderOnPartialFailure(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		queue(t, db, entry("s", "t", "K1", "a1"), entry("s", "t", "K2", "b1"), entry("s", "t", "K1", "a2"))
		pub := &publisher{fn: func(call int, msgs []Message) error {
			if call == 1 { // the broker refuses the first message of the first batch only
				return &PartialError{Failed: []int{0}, First: errors.New("not leader"), Err: errors.New("kafka")}
			}
			return nil
		}}
		r := NewRelay(db, pub, RelayOptions{Owner: "r1", BackoffBase: 300 * time.Millisecond, BackoffMax: time.Second})
		n, err := r.Once(context.Background())
		if n != 3 || err == nil {
			t.Fatalf("first batch: %d rows, err %v", n, err)
		}
		// a2 reached the broker but must not count as sent ahead of a1.
		if p, s, _ := pending(t, db); p != 2 || s != 1 {
			t.Fatalf("after partial failure: pending %d sent %d, want 2 and 1", p, s)
		}
		// A later event for K1, committed while a1 waits for its retry, is
		// held back rather than published ahead of a1.
		queue(t, db, entry("s", "t", "K1", "a3"))
		if _, err := r.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := pub.published("t", "K1"); !slices.Equal(got, []string{"a2"}) {
			t.Fatalf("K1 published %v before a1's retry", got)
		}
		drain(t, db, r, 30*time.Second)
		// The broker's log for K1 ends with the events in commit order.
		if got := pub.published("t", "K1"); !slices.Equal(got, []string{"a2", "a1", "a2", "a3"}) {
			t.Fatalf("K1 on the broker: %v", got)
		}
		if got := pub.published("t", "K2"); !slices.Equal(got, []string{"b1"}) {
			t.Fatalf("K2 on the broker: %v", got)
		}
	})
}

func TestRelayDeadLetters(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		queue(t, db, entry("lab", "lab.results", "K", "x"), entry("lab", "lab.results", "L", "y"))
		pub := &publisher{fn: func(_ int, msgs []Message) error {
			if msgs[0].Topic == "lab.results" {
				return errors.New("message too large")
			}
			return nil
		}}
		reg := prometheus.NewRegistry()
		r := NewRelay(db, pub, RelayOptions{Owner: "r", MaxAttempts: 3, BackoffBase: time.Millisecond, BackoffMax: 5 * time.Millisecond, Registerer: reg})
		drain(t, db, r, 30*time.Second)
		if p, s, d := pending(t, db); p != 0 || s != 0 || d != 2 {
			t.Fatalf("pending %d sent %d dead %d, want 0 0 2", p, s, d)
		}
		dl := pub.published("lab.results.dlq", "")
		if !slices.Equal(dl, []string{"x", "y"}) {
			t.Fatalf("dead-letter topic holds %v", dl)
		}
		h := pub.log[0].Headers
		if h["hiegw-dead-letter-reason"] != "message too large" || h["hiegw-attempts"] != "3" || h["hiegw-original-topic"] != "lab.results" {
			t.Errorf("dead-letter headers %v", h)
		}
		if got := vecValue(t, r.dead, "lab"); got != 2 {
			t.Errorf("dead-lettered{lab} = %v", got)
		}
		if got := vecValue(t, r.failed, "lab"); got != 6 {
			t.Errorf("failed{lab} = %v, want 6 (3 attempts of 2 rows)", got)
		}
		if r.LastError() == nil {
			t.Error("LastError is nil after failures")
		}
	})
}

// TestRelayDeadLettersTooLargeAtOnce: an event the broker refuses for its
// size goes to the dead-letter topic at the first refusal, without its
// payload and with the reason, and does not hold back the later events of
// its key.
func TestRelayDeadLettersTooLargeAtOnce(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		queue(t, db, entry("s", "t", "K", "big"), entry("s", "t", "K", "after"))
		pub := &publisher{fn: func(_ int, msgs []Message) error {
			for i, m := range msgs {
				if string(m.Value) == "big" {
					cause := fmt.Errorf("%w (3 bytes): [10] Message Size Too Large", ErrTooLarge)
					return &PartialError{Failed: []int{i}, Errs: []error{cause}, First: cause, Err: errors.New("kafka")}
				}
			}
			return nil
		}}
		r := NewRelay(db, pub, RelayOptions{Owner: "r", MaxAttempts: 10, BackoffBase: time.Hour, BackoffMax: time.Hour})
		if _, err := r.Once(context.Background()); err != nil {
			t.Fatal(err)
		}
		if p, s, d := pending(t, db); p != 0 || s != 1 || d != 1 {
			t.Fatalf("pending %d sent %d dead %d, want 0 1 1: one refusal for size is final", p, s, d)
		}
		if got := pub.published("t", "K"); !slices.Equal(got, []string{"after"}) {
			t.Fatalf("published on t: %v", got)
		}
		if err := r.LastError(); err != nil {
			t.Errorf("LastError %v: a refusal for size says nothing about the brokers' health (readiness)", err)
		}
		if got := pub.published("t.dlq", "K"); !slices.Equal(got, []string{""}) {
			t.Fatalf("dead-letter topic holds %q, want the event without its payload", got)
		}
		for _, m := range pub.log {
			if m.Topic == "t.dlq" && (!strings.Contains(m.Headers["hiegw-dead-letter-reason"], "larger than the brokers accept") ||
				m.Headers["hiegw-original-topic"] != "t") {
				t.Errorf("dead-letter headers %v", m.Headers)
			}
		}
	})
}

// TestRelayRunSurvivesPanic: a panic while publishing (a defect of hiegw)
// does not end Run; the batch is published once its claim expires.
func TestRelayRunSurvivesPanic(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		queue(t, db, entry("s", "t", "K", "a"))
		pub := &publisher{fn: func(call int, _ []Message) error {
			if call == 1 {
				var m map[string]int
				m["x"]++ // a defect
			}
			return nil
		}}
		r := NewRelay(db, pub, RelayOptions{Owner: "r", Lease: 200 * time.Millisecond, PollInterval: 20 * time.Millisecond,
			Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { r.Run(ctx); close(done) }()
		defer func() { cancel(); <-done }()
		deadline := time.Now().Add(30 * time.Second)
		for !slices.Equal(pub.published("t", "K"), []string{"a"}) {
			if time.Now().After(deadline) {
				t.Fatalf("not published after the panic: %v", pub.published("t", "K"))
			}
			time.Sleep(20 * time.Millisecond)
		}
		if err := r.LastError(); err != nil {
			t.Errorf("LastError %v after a later success", err)
		}
	})
}

// Two relays (two gateway processes) on one outbox publish every row once.
func TestTwoRelaysPublishEachRowOnce(t *testing.T) {
	backendsOpen(t, func(t *testing.T, open func() *store.DB) {
		db := open()
		const rows = 3000
		var batch []store.OutboxEntry
		for i := range rows {
			batch = append(batch, entry("s", "t", fmt.Sprint("K", i%37), fmt.Sprint(i)))
			if len(batch) == 500 {
				queue(t, db, batch...)
				batch = nil
			}
		}
		pubs := []*publisher{{}, {}}
		// Each relay has its own connection pool, as separate processes do.
		dbs := []*store.DB{db, open()}
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i, p := range pubs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r := NewRelay(dbs[i], p, RelayOptions{Owner: fmt.Sprint("relay-", i), BatchSize: 50})
				<-start
				for {
					n, err := r.Once(context.Background())
					if err != nil {
						t.Error(err)
						return
					}
					if n == 0 {
						return
					}
				}
			}()
		}
		close(start)
		wg.Wait()
		seen := map[string]int{}
		for i, p := range pubs {
			got := p.published("t", "")
			t.Logf("relay %d published %d rows", i, len(got))
			for _, v := range got {
				seen[v]++
			}
		}
		if len(seen) != rows {
			t.Fatalf("%d distinct rows published, want %d", len(seen), rows)
		}
		for v, n := range seen {
			if n != 1 {
				t.Fatalf("row %s published %d times", v, n)
			}
		}
		if p, s, _ := pending(t, db); p != 0 || s != rows {
			t.Fatalf("pending %d sent %d", p, s)
		}
	})
}

func TestLagGauges(t *testing.T) {
	backends(t, func(t *testing.T, db *store.DB) {
		queue(t, db, entry("a", "t", "K", "1"), entry("a", "t", "K", "2"), entry("b", "u", "K", "3"))
		reg := prometheus.NewRegistry()
		l := NewLag(db, reg, nil)
		if err := l.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if got := testutil.ToFloat64(l.pending.WithLabelValues("a")); got != 2 {
			t.Errorf("pending{a} = %v", got)
		}
		if got := testutil.ToFloat64(l.age.WithLabelValues("a")); got <= 0 {
			t.Errorf("lag{a} = %v, want > 0", got)
		}
		pub := &publisher{fn: func(_ int, msgs []Message) error {
			if msgs[0].Topic == "u" {
				return errors.New("down")
			}
			return nil
		}}
		r := NewRelay(db, pub, RelayOptions{Owner: "r", BatchSize: 2, BackoffBase: time.Hour})
		r.Once(context.Background())
		r.Once(context.Background())
		if err := l.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
		if testutil.ToFloat64(l.pending.WithLabelValues("a")) != 0 || testutil.ToFloat64(l.age.WithLabelValues("a")) != 0 {
			t.Errorf("after publishing a: pending %v lag %v", testutil.ToFloat64(l.pending.WithLabelValues("a")), testutil.ToFloat64(l.age.WithLabelValues("a")))
		}
		if testutil.ToFloat64(l.pending.WithLabelValues("b")) != 1 || testutil.ToFloat64(l.age.WithLabelValues("b")) <= 0 {
			t.Errorf("b: pending %v lag %v", testutil.ToFloat64(l.pending.WithLabelValues("b")), testutil.ToFloat64(l.age.WithLabelValues("b")))
		}
	})
}

func vecValue(t *testing.T, v *prometheus.CounterVec, label string) float64 {
	t.Helper()
	return testutil.ToFloat64(v.WithLabelValues(label))
}

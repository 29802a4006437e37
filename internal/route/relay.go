package route

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Publisher sends messages to the broker.
type Publisher interface {
	Publish(ctx context.Context, msgs []Message) error
}

var _ Publisher = (*Kafka)(nil)

// Outbox is what the relay needs of the store.
type Outbox interface {
	ClaimOutbox(ctx context.Context, owner string, limit int, lease time.Duration) ([]store.OutboxRow, error)
	MarkSent(ctx context.Context, seqs []int64) error
	MarkRetry(ctx context.Context, seqs []int64, reason string, next time.Time) error
	MarkDead(ctx context.Context, seqs []int64, reason string) error
	// ReleaseOutbox gives rows back, due at next, without counting an
	// attempt.
	ReleaseOutbox(ctx context.Context, seqs []int64, next time.Time) error
}

var _ Outbox = (*store.DB)(nil)

// RelayOptions configure a Relay.
type RelayOptions struct {
	Owner        string        // this relay's name in claims
	BatchSize    int           // rows per claim (default 500)
	Lease        time.Duration // claim lease (default 30s)
	PollInterval time.Duration // how often to look without a notification (default 1s)
	MaxAttempts  int           // then dead-letter (default 10)
	BackoffBase  time.Duration // first retry delay (default 500ms)
	BackoffMax   time.Duration // largest retry delay (default 1m)
	// DeadLetterSuffix is appended to a topic to name its dead-letter topic.
	DeadLetterSuffix string
	Registerer       prometheus.Registerer
	Logger           *slog.Logger
}

// Relay moves committed outbox rows to the broker: at least once, in order
// of commit, keyed by enterprise patient id.
type Relay struct {
	ob   Outbox
	pub  Publisher
	o    RelayOptions
	wake chan struct{}

	published, failed, dead *prometheus.CounterVec
	mu                      sync.Mutex
	lastErr                 error
	// held maps topic+key to the time its earliest failed row is due again:
	// later rows of that key wait until then (per-key order). Only the Run
	// goroutine touches it.
	held map[string]time.Time
}

// NewRelay makes a relay.
func NewRelay(ob Outbox, pub Publisher, o RelayOptions) *Relay {
	if o.BatchSize <= 0 {
		o.BatchSize = 500
	}
	if o.Lease <= 0 {
		o.Lease = 30 * time.Second
	}
	if o.PollInterval <= 0 {
		o.PollInterval = time.Second
	}
	if o.MaxAttempts <= 0 {
		o.MaxAttempts = 10
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = time.Minute
	}
	if o.DeadLetterSuffix == "" {
		o.DeadLetterSuffix = ".dlq"
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	r := &Relay{ob: ob, pub: pub, o: o, wake: make(chan struct{}, 1), held: map[string]time.Time{},
		published: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_published_total",
			Help: "Events published, by subscriber."}, []string{"subscriber"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_publish_failures_total",
			Help: "Event publish attempts that failed, by subscriber."}, []string{"subscriber"}),
		dead: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_dead_lettered_total",
			Help: "Events moved to a dead-letter topic, by subscriber."}, []string{"subscriber"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(r.published, r.failed, r.dead)
	}
	return r
}

// Notify wakes the relay: new rows were committed.
func (r *Relay) Notify() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// LastError is the most recent publish error, nil after a success.
func (r *Relay) LastError() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.lastErr
}

// Run publishes until ctx ends.
func (r *Relay) Run(ctx context.Context) {
	t := time.NewTicker(r.o.PollInterval)
	defer t.Stop()
	for {
		n, err := r.safeOnce(ctx)
		if err != nil && ctx.Err() == nil {
			r.o.Logger.Warn("outbox relay", "err", err)
		}
		if n == r.o.BatchSize && err == nil {
			continue // more may be waiting
		}
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-t.C:
		}
	}
}

// safeOnce is Once with a panic, a defect of hiegw, turned into an error
// and its stack logged: the gateway goes on receiving and processing, and
// the rows of the batch are claimed again once their claim expires.
func (r *Relay) safeOnce(ctx context.Context) (n int, err error) {
	defer defect.Recover(r.o.Logger, "outbox relay panicked, a defect of hiegw", &err)
	return r.Once(ctx)
}

// Drain publishes until nothing is due or ctx ends (used at shutdown).
func (r *Relay) Drain(ctx context.Context) error {
	for {
		n, err := r.Once(ctx)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
	}
}

// Once claims one batch and publishes it. It returns how many rows it
// claimed. Once is not safe for concurrent use; run several relays instead.
//
// Per-key order: when a row fails, every later row of the same topic and key
// in the batch is retried with it even if the broker took it (the consumer
// may then see that later event twice, but its last copy comes after the
// earlier event), and rows of that key claimed later are held back until the
// failed row is due again. The hold lives in this relay's memory: after a
// restart, or with another relay claiming, order is kept only as far as
// retries are due in commit order.
func (r *Relay) Once(ctx context.Context) (int, error) {
	rows, err := r.ob.ClaimOutbox(ctx, r.o.Owner, r.o.BatchSize, r.o.Lease)
	if err != nil || len(rows) == 0 {
		return 0, err
	}
	claimed := len(rows)
	// Use a context that survives shutdown so that what was published is
	// recorded as such.
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	rows, err = r.holdBack(mctx, rows)
	if err != nil || len(rows) == 0 {
		return claimed, err
	}
	msgs := make([]Message, len(rows))
	for i, row := range rows {
		msgs[i] = Message{Topic: row.Topic, Key: []byte(row.Key), Value: row.Payload, Headers: row.Headers()}
	}
	perr := r.pub.Publish(ctx, msgs)
	failed := map[int]bool{}
	tooLarge := map[int]error{} // refused for their size: never deliverable
	if perr != nil {
		var pe *PartialError
		if errors.As(perr, &pe) {
			for j, i := range pe.Failed {
				if j < len(pe.Errs) && errors.Is(pe.Errs[j], ErrTooLarge) {
					tooLarge[i] = pe.Errs[j]
					continue
				}
				failed[i] = true
			}
		} else {
			for i := range rows {
				failed[i] = true
			}
		}
	}
	r.mu.Lock()
	if len(failed) == 0 {
		// only refusals for size, if any: the brokers answer, and readiness
		// should say so
		r.lastErr = nil
	} else {
		r.lastErr = perr
	}
	r.mu.Unlock()
	var sent []int64
	var retry []store.OutboxRow
	broken := map[string]bool{} // topic+key with a failed row earlier in the batch
	for i, row := range rows {
		if cause, ok := tooLarge[i]; ok {
			// No retry can deliver it, so it holds back no later event of
			// its key: it goes to the dead-letter topic at once, without
			// its payload, which would be refused there too.
			r.failed.WithLabelValues(row.Subscriber).Inc()
			if err := r.deadLetter(mctx, []store.OutboxRow{row}, cause.Error()+
				"; the payload is left out: read the message's record from the gateway's API (hiegw-envelope names it)", false); err != nil {
				return claimed, err
			}
			continue
		}
		k := row.Topic + "\x00" + row.Key
		if failed[i] || broken[k] {
			broken[k] = true
			r.failed.WithLabelValues(row.Subscriber).Inc()
			retry = append(retry, row)
			continue
		}
		r.published.WithLabelValues(row.Subscriber).Inc()
		sent = append(sent, row.Seq)
	}
	if err := r.ob.MarkSent(mctx, sent); err != nil {
		return claimed, err
	}
	if len(retry) > 0 {
		if err := r.retryOrDeadLetter(mctx, retry, perr); err != nil {
			return claimed, err
		}
		return claimed, fmt.Errorf("publish: %w", perr)
	}
	return claimed, nil
}

// holdBack releases rows whose key waits for an earlier failed row and
// returns the others.
func (r *Relay) holdBack(ctx context.Context, rows []store.OutboxRow) ([]store.OutboxRow, error) {
	if len(r.held) == 0 {
		return rows, nil
	}
	now := time.Now()
	if len(r.held) > 4096 {
		for k, until := range r.held {
			if !until.After(now) {
				delete(r.held, k)
			}
		}
	}
	byTime := map[time.Time][]int64{}
	keep := rows[:0:0]
	for _, row := range rows {
		k := row.Topic + "\x00" + row.Key
		until, ok := r.held[k]
		if ok && !until.After(now) {
			delete(r.held, k)
			ok = false
		}
		if !ok {
			keep = append(keep, row)
			continue
		}
		byTime[until] = append(byTime[until], row.Seq)
	}
	for until, seqs := range byTime {
		if err := r.ob.ReleaseOutbox(ctx, seqs, until); err != nil {
			return nil, err
		}
	}
	return keep, nil
}

func (r *Relay) retryOrDeadLetter(ctx context.Context, rows []store.OutboxRow, cause error) error {
	reason := cause.Error()
	byAttempts := map[int][]int64{}
	var dead []store.OutboxRow
	for _, row := range rows {
		if row.Attempts+1 >= r.o.MaxAttempts {
			dead = append(dead, row)
			continue
		}
		byAttempts[row.Attempts] = append(byAttempts[row.Attempts], row.Seq)
	}
	due := map[int]time.Time{}
	for attempts, seqs := range byAttempts {
		d := time.Duration(float64(r.o.BackoffBase) * math.Pow(2, float64(attempts)))
		if d > r.o.BackoffMax || d <= 0 {
			d = r.o.BackoffMax
		}
		due[attempts] = time.Now().Add(d)
		if err := r.ob.MarkRetry(ctx, seqs, reason, due[attempts]); err != nil {
			return err
		}
	}
	// Hold each key until its earliest failed row is due again (rows are in
	// seq order, so the first seen per key is the earliest).
	for _, row := range rows {
		k := row.Topic + "\x00" + row.Key
		if t0, ok := r.held[k]; ok && t0.After(time.Now()) {
			continue
		}
		if t, ok := due[row.Attempts]; ok && row.Attempts+1 < r.o.MaxAttempts {
			r.held[k] = t
		}
	}
	if len(dead) == 0 {
		return nil
	}
	return r.deadLetter(ctx, dead, reason, true)
}

// deadLetter sends rows to their subscribers' dead-letter topics with the
// reason in the headers (the payload too, when withPayload) and marks them
// dead. If even that fails, they stay for a retry: nothing is dropped.
func (r *Relay) deadLetter(ctx context.Context, dead []store.OutboxRow, reason string, withPayload bool) error {
	msgs := make([]Message, len(dead))
	seqs := make([]int64, len(dead))
	for i, row := range dead {
		h := row.Headers()
		h["hiegw-dead-letter-reason"] = reason
		h["hiegw-attempts"] = fmt.Sprint(row.Attempts + 1)
		h["hiegw-original-topic"] = row.Topic
		msgs[i] = Message{Topic: row.Topic + r.o.DeadLetterSuffix, Key: []byte(row.Key), Headers: h}
		if withPayload {
			msgs[i].Value = row.Payload
		}
		seqs[i] = row.Seq
	}
	if err := r.pub.Publish(ctx, msgs); err != nil {
		return r.ob.MarkRetry(ctx, seqs, "dead-letter publish failed: "+err.Error(), time.Now().Add(r.o.BackoffMax))
	}
	for _, row := range dead {
		r.dead.WithLabelValues(row.Subscriber).Inc()
	}
	return r.ob.MarkDead(ctx, seqs, reason)
}

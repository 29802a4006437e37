// Package intake receives envelopes durably: it reads just enough of each to
// decide the reply (the MSH of an HL7 v2 message, the kind of an uploaded
// file), commits it to the store together with that reply, and only then
// returns the reply. Concurrent envelopes share one transaction (group
// commit), so many senders cost one sync; a lone sender commits in its own
// goroutine, without a hand-off to another and back. A store whose commits
// may overlap (the embedded store's journal) takes several groups at once.
package intake

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/lograte"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what intake needs of the database.
type Store interface {
	InsertEnvelopes(ctx context.Context, envs []*store.Envelope) ([]store.Inserted, error)
}

var _ Store = (*store.DB)(nil)

// Kinds of envelope content.
const (
	KindHL7      = "hl7v2"
	KindHL7Batch = "hl7v2-batch"
	KindCCDA     = "ccda"
	KindUnknown  = "unknown"
)

// Checker looks deeper into a message whose header is readable and returns
// the problems that make it unacceptable (for example a mapping that cannot
// handle it). Intake answers AE with one ERR segment per problem.
type Checker interface {
	Check(sender string, m *hl7.Message) []hl7.ErrorDetail
}

// FileChecker validates a file of the given kind uploaded by sender and
// returns why it is refused, or "" when it is acceptable.
type FileChecker func(sender, kind string, data []byte) string

// Options configure an Intake.
type Options struct {
	// Supported says whether a message code and trigger are accepted; nil
	// accepts every type.
	Supported func(code, trigger string) bool
	// Check, when set, runs on every readable message in original mode
	// before it is committed.
	Check Checker
	// Covers, when set, tells whether any mapping handles a message type for
	// a sender; a message in enhanced mode (MSH-15 valued) is checked with it
	// alone, since its commit ACK answers for storage, not content.
	Covers func(sender, code, trigger string) bool
	// CheckFile, when set, validates uploaded files.
	CheckFile FileChecker
	// DetectCCDA says whether a file is a C-CDA document.
	DetectCCDA func([]byte) bool
	// OnCommit is called (without blocking) after envelopes to process commit.
	OnCommit func()
	// MaxBatch bounds how many envelopes share one transaction (default 512).
	MaxBatch int
	// MaxInFlight bounds the group commits under way at once (default 1).
	// More than one suits a store whose commits overlap without losing
	// their order (the embedded store's journal, where a sync takes about
	// 0.2 ms whatever it carries); on PostgreSQL envelopes take their
	// sequence numbers as they insert, and overlapping commits could make
	// them visible out of that order.
	MaxInFlight int
	// GatherDelay bounds how long a group commit may wait for senders
	// expected to arrive (default 300µs; negative: never wait). Over the
	// last 50-100 ms intake has seen how many envelopes were under way at
	// once; when fewer than that wait and no commit holds the others, the
	// group waits for them, so that one sync carries every connection's
	// message rather than every other one. A lone sender never waits.
	GatherDelay time.Duration
	// StoreRetry bounds how long a group commit that failed on a transient
	// store error (store.Transient: PostgreSQL restarting, failing over, a
	// dropped connection) is tried again before its senders are answered
	// AR (default 2s; negative: not at all). The senders wait for their
	// ACK meanwhile, and a blip of the database is not a refusal. A retry
	// of a commit that had in fact succeeded finds its envelopes stored and
	// answers as the first time.
	StoreRetry time.Duration
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// ApplicationName/FacilityName fill MSH-3/MSH-4 of ACKs when the
	// received message did not name a receiving application/facility.
	ApplicationName string
}

// Intake is the durable receipt stage.
//
// Commits are grouped. Requests queue; a group starts when a place is free
// (fewer than MaxInFlight commits under way) and either every sender
// expected is there or GatherDelay is over (Options.GatherDelay). The
// caller whose request completes a group commits it in its own goroutine:
// a sender alone on its connection never waits and pays no hand-off to
// another goroutine and back. A group that starts when a commit ends, or
// when the gathering delay is over, runs in a goroutine of its own. Each
// caller is woken with its own result.
type Intake struct {
	st  Store
	opt Options
	log *slog.Logger

	mu       sync.Mutex
	idle     sync.Cond  // signalled when pending drops to zero (Close waits on it)
	queue    []*request // waiting for a place, oldest first
	inFlight int        // group commits under way
	pending  int        // requests queued or being committed
	stopped  bool       // Close was called: no new requests

	// The most requests pending at once in the current and the previous
	// window of peakWindow, and when the current one began.
	peakCur, peakPrev int
	peakAt            time.Time
	gathering         *time.Timer // armed while a short group waits for more

	received, duplicates, rejected *prometheus.CounterVec
	storeFailures                  *prometheus.CounterVec
	storeRetries                   prometheus.Counter
	failLog                        *lograte.Limiter // storeFailed's lines
	batchSize                      prometheus.Histogram
	commitSeconds                  prometheus.Histogram
	ackSeq                         atomic.Uint64
}

// request is one envelope waiting for its transaction; wake receives once
// res is set.
type request struct {
	env  *store.Envelope
	wake chan struct{}
	res  result
}

type result struct {
	ins store.Inserted
	err error
}

// New starts an Intake writing to st. Close stops it.
func New(st Store, opt Options) *Intake {
	if opt.MaxBatch <= 0 {
		opt.MaxBatch = 512
	}
	if opt.MaxInFlight <= 0 {
		opt.MaxInFlight = 1
	}
	if opt.GatherDelay == 0 {
		opt.GatherDelay = defaultGatherDelay
	}
	if opt.StoreRetry == 0 {
		opt.StoreRetry = defaultStoreRetry
	}
	if opt.Logger == nil {
		opt.Logger = slog.Default()
	}
	in := &Intake{
		st: st, opt: opt, log: opt.Logger,
		received: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_intake_received_total",
			Help: "Envelopes committed, by channel and kind."}, []string{"channel", "kind"}),
		duplicates: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_intake_duplicates_total",
			Help: "Envelopes recognised as duplicates, by channel."}, []string{"channel"}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_intake_rejected_total",
			Help: "Envelopes stored as rejected, by channel."}, []string{"channel"}),
		storeFailures: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_intake_store_failures_total",
			Help: "Envelopes the store could not take, so not acknowledged as received (MLLP: answered AR, send again), by channel."},
			[]string{"channel"}),
		storeRetries: prometheus.NewCounter(prometheus.CounterOpts{Name: "hiegw_intake_store_retries_total",
			Help: "Group commits tried again after a transient store error (a database restart or failover)."}),
		failLog: lograte.New(10 * time.Second),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hiegw_intake_commit_batch_size",
			Help: "Envelopes per intake transaction.", Buckets: prometheus.ExponentialBuckets(1, 2, 10)}),
		commitSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hiegw_intake_commit_seconds",
			Help: "Time to commit one intake transaction.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14)}),
	}
	in.idle.L = &in.mu
	if opt.Registerer != nil {
		opt.Registerer.MustRegister(in.received, in.duplicates, in.rejected, in.storeFailures, in.storeRetries, in.batchSize,
			in.commitSeconds)
	}
	var seed [4]byte
	_, _ = rand.Read(seed[:])
	in.ackSeq.Store(uint64(seed[0])<<16 | uint64(seed[1])<<8 | uint64(seed[2]))
	return in
}

// storeFailed counts an envelope that the store could not take, whose
// sender is answered AR and sends it again, and logs it: while the store
// stays down every message fails, so after the first line at most one in
// 10 s says how many more there were (the metric counts each).
func (in *Intake) storeFailed(env *Envelope, sender string, err error) {
	in.storeFailures.WithLabelValues(env.Channel).Inc()
	if ok, held := in.failLog.Allow(); ok {
		in.log.Error("intake could not store a message; answering AR so the sender retries", "channel", env.Channel,
			"sender", sender, "peer", env.Peer, "err", err, "more_since_last_line", held)
	}
}

// Close refuses new envelopes and returns once those already queued are
// committed (or have failed).
func (in *Intake) Close() {
	in.mu.Lock()
	in.stopped = true
	for in.pending > 0 {
		in.idle.Wait()
	}
	in.mu.Unlock()
}

// Gathering: see Options.GatherDelay.
const (
	defaultGatherDelay = 300 * time.Microsecond
	defaultStoreRetry  = 2 * time.Second
	peakWindow         = 50 * time.Millisecond
)

// commit commits e, grouped with whatever else is waiting, and returns once
// it is durable. Once queued the envelope will be committed or fail, and
// commit waits for that answer even if ctx ends, so a reply never
// contradicts the store.
func (in *Intake) commit(ctx context.Context, e *store.Envelope) (store.Inserted, error) {
	if err := ctx.Err(); err != nil {
		return store.Inserted{}, err
	}
	r := &request{env: e}
	in.mu.Lock()
	if in.stopped {
		in.mu.Unlock()
		return store.Inserted{}, errors.New("intake closed")
	}
	in.pending++
	in.notePeak()
	in.queue = append(in.queue, r)
	batch := in.startable(false)
	own := batch != nil && batch[len(batch)-1] == r // r joins a group only as its last
	if !own {
		r.wake = make(chan struct{}, 1) // before anyone else can take r
	}
	in.mu.Unlock()
	if own {
		// The group this request completes: commit it here, without a
		// hand-off to another goroutine and back.
		in.run(batch, r)
		return r.res.ins, r.res.err
	}
	if batch != nil {
		go in.run(batch, nil)
	}
	<-r.wake
	return r.res.ins, r.res.err
}

// notePeak records how many requests are pending now; in.mu is held.
func (in *Intake) notePeak() {
	if now := time.Now(); now.Sub(in.peakAt) > peakWindow {
		in.peakPrev, in.peakCur, in.peakAt = in.peakCur, 0, now
	}
	in.peakCur = max(in.peakCur, in.pending)
}

// startable returns the next group to commit, taken from the queue, when a
// place is free and the group should not wait for more; otherwise nil, with
// the gathering timer armed if the queue waits for others. timeUp says the
// timer has fired. in.mu is held.
func (in *Intake) startable(timeUp bool) []*request {
	if len(in.queue) == 0 || in.inFlight >= in.opt.MaxInFlight {
		return nil
	}
	// Those of the recent peak not in a commit now may be about to arrive.
	expected := max(in.peakCur, in.peakPrev) - (in.pending - len(in.queue))
	if !timeUp && in.opt.GatherDelay > 0 && len(in.queue) < expected && len(in.queue) < in.opt.MaxBatch {
		if in.gathering == nil {
			in.gathering = time.AfterFunc(in.opt.GatherDelay, in.gathered)
		}
		return nil
	}
	if in.gathering != nil {
		in.gathering.Stop()
		in.gathering = nil
	}
	in.inFlight++
	return in.take(in.opt.MaxBatch)
}

// gathered commits what gathered once the gathering delay is over.
func (in *Intake) gathered() {
	in.mu.Lock()
	in.gathering = nil
	batch := in.startable(true)
	in.mu.Unlock()
	if batch != nil {
		in.run(batch, nil)
	}
}

// run commits batch (own is the caller's request, not woken), then accounts
// for it and starts the next group if one is ready.
func (in *Intake) run(batch []*request, own *request) {
	in.commitBatch(batch, own)
	in.mu.Lock()
	in.inFlight--
	in.pending -= len(batch)
	if in.pending == 0 {
		in.idle.Broadcast()
	}
	var next [][]*request
	for {
		b := in.startable(false)
		if b == nil {
			break
		}
		next = append(next, b)
	}
	in.mu.Unlock()
	for _, b := range next {
		go in.run(b, nil)
	}
}

// take removes up to n requests from the head of the queue; in.mu is held.
func (in *Intake) take(n int) []*request {
	n = min(n, len(in.queue))
	batch := make([]*request, n)
	copy(batch, in.queue)
	clear(in.queue[:n])
	in.queue = in.queue[n:]
	return batch
}

// commitBatch commits batch in one transaction, sets each request's result
// and wakes every request but own (whose caller is the one committing).
func (in *Intake) commitBatch(batch []*request, own *request) {
	envs := make([]*store.Envelope, len(batch))
	for i, r := range batch {
		envs[i] = r.env
	}
	start := time.Now()
	res, err := in.st.InsertEnvelopes(context.Background(), envs)
	// A transient failure is tried again, with backoff, within StoreRetry.
	for wait, until := 50*time.Millisecond, start.Add(in.opt.StoreRetry); err != nil && store.Transient(err) &&
		time.Now().Add(wait).Before(until); wait = min(2*wait, time.Second) {
		in.storeRetries.Inc()
		time.Sleep(wait)
		res, err = in.st.InsertEnvelopes(context.Background(), envs)
	}
	in.commitSeconds.Observe(time.Since(start).Seconds())
	in.batchSize.Observe(float64(len(batch)))
	if err == nil && len(res) != len(batch) {
		err = fmt.Errorf("store answered %d results for %d envelopes", len(res), len(batch))
	}
	toProcess := false
	for i, r := range batch {
		if err != nil {
			r.res = result{err: err}
		} else {
			r.res = result{ins: res[i]}
			toProcess = toProcess || !res[i].Duplicate && res[i].Status == StatusReceived
		}
		if r != own {
			r.wake <- struct{}{}
		}
	}
	if toProcess && in.opt.OnCommit != nil {
		in.opt.OnCommit()
	}
}

func newID() string {
	u, err := uuid.NewV7()
	if err != nil {
		return uuid.NewString()
	}
	return u.String()
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// nextAckID returns a control id for an ACK's MSH-10: unique per process
// run and at most 20 characters (the ST length in v2.5).
func (in *Intake) nextAckID() string {
	return fmt.Sprintf("HIEGW%015d", in.ackSeq.Add(1)%1e15)
}

// Accept stores env and returns the receipt (and, for MLLP, the ACK). It
// returns an error only when the envelope could not be committed; the
// caller must then not acknowledge it positively.
func (in *Intake) Accept(ctx context.Context, env *Envelope) (Receipt, error) {
	if env.Channel == ChannelMLLP {
		return in.acceptMessage(ctx, env)
	}
	return in.acceptFile(ctx, env)
}

func (in *Intake) acceptFile(ctx context.Context, env *Envelope) (Receipt, error) {
	kind := in.detect(env.Raw)
	sum := digest(env.Raw)
	e := &store.Envelope{
		ID: newID(), Channel: env.Channel, Sender: env.Sender, Peer: env.Peer, ReceivedAt: env.ReceivedAt,
		Filename: env.Filename, Kind: kind, DedupKey: "sha256:" + sum, SHA256: sum, Status: StatusReceived, Raw: env.Raw,
	}
	if e.Sender == "" {
		e.Sender = "unknown"
	}
	switch {
	case kind == KindUnknown:
		e.Status, e.Error = StatusRejected, "not a C-CDA document or an HL7 v2 message or batch: the file starts with neither <ClinicalDocument nor MSH/FHS/BHS"
	case in.opt.CheckFile != nil:
		if reason := in.opt.CheckFile(e.Sender, kind, env.Raw); reason != "" {
			e.Status, e.Error = StatusRejected, reason
		}
	}
	if kind == KindHL7 {
		if h, _, err := hl7.ParseHeader(env.Raw); err == nil {
			e.MessageType = messageType(h)
			e.ControlID = h.ControlID
		}
	}
	ins, err := in.commit(ctx, e)
	if err != nil {
		in.storeFailures.WithLabelValues(env.Channel).Inc() // the caller logs it, and keeps the file
		return Receipt{}, fmt.Errorf("store envelope: %w", err)
	}
	in.count(env.Channel, kind, ins)
	return Receipt{EnvelopeID: ins.ID, Duplicate: ins.Duplicate, Status: ins.Status, Reason: ins.Error}, nil
}

func (in *Intake) detect(data []byte) string {
	trim := bytes.TrimLeft(bytes.TrimPrefix(data, []byte("\xef\xbb\xbf")), " \r\n\t")
	switch {
	case bytes.HasPrefix(trim, []byte("FHS")) || bytes.HasPrefix(trim, []byte("BHS")):
		return KindHL7Batch
	case bytes.HasPrefix(trim, []byte("MSH")):
		// Several messages one after another are a batch without headers;
		// a split error is the processing's to report, not detection's.
		if b, _ := hl7.SplitBatch(trim); len(b.Messages) > 1 {
			return KindHL7Batch
		}
		return KindHL7
	case in.opt.DetectCCDA != nil && in.opt.DetectCCDA(data):
		return KindCCDA
	}
	return KindUnknown
}

func (in *Intake) count(channel, kind string, ins store.Inserted) {
	switch {
	case ins.Duplicate:
		in.duplicates.WithLabelValues(channel).Inc()
	case ins.Status == StatusRejected:
		in.rejected.WithLabelValues(channel).Inc()
	default:
		in.received.WithLabelValues(channel, kind).Inc()
	}
}

func messageType(h hl7.Header) string {
	t := h.MessageCode
	if h.TriggerEvent != "" {
		t += "^" + h.TriggerEvent
	}
	return t
}

// senderOf names the sender of a message read from MLLP: the authenticated
// name when the listener knows it, else the sending facility (MSH-4), else
// the sending application (MSH-3).
func senderOf(env *Envelope, h hl7.Header) string {
	for _, s := range []string{env.Sender, h.SendingFacility.NamespaceID, h.SendingFacility.UniversalID,
		h.SendingApplication.NamespaceID, h.SendingApplication.UniversalID} {
		if s = strings.TrimSpace(s); s != "" {
			return s
		}
	}
	return "unknown"
}

// Package pipeline processes stored envelopes: parse, normalise to FHIR,
// identify the patient, then write the record changes, their provenance and
// the routed events in one transaction. Envelopes of one sender are processed
// in the order they were received; different senders run in parallel.
package pipeline

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Normalized is one source message turned into canonical resources.
type Normalized struct {
	Event     string          // route event type
	Resources []fhir.Resource // the Patient first, when there is one
	// Also names further event types the same content is routed as (a
	// document that carries medications is also a medication update).
	Also []string
	// Notes are what mapping noticed without failing: unmapped codes kept
	// as sent, values left out. They are kept with the envelope's status.
	Notes []store.Note
	// Keep lists, by resource id, top-level elements the source did not
	// send: where a stored version of the resource has them, they stay
	// (HL7 v2 update semantics; see mapping.Result.Keep).
	Keep map[string][]string
}

// Normalizer turns source content into canonical resources. Errors that are
// the content's fault (a required field missing, a bad date) make the
// envelope "failed"; it can be reprocessed after the mapping is fixed.
type Normalizer interface {
	NormalizeHL7(sender string, m *hl7.Message) (Normalized, error)
	NormalizeCCDA(sender string, data []byte) (Normalized, error)
	Version() string
}

// Store is what the pipeline needs of the database.
type Store interface {
	PendingEnvelopes(ctx context.Context, afterSeq int64, limit int) ([]store.Envelope, error)
	PendingBetween(ctx context.Context, after, upTo int64, limit int) ([]store.PendingKey, error)
	InTx(ctx context.Context, fn func(*store.Tx) error) error
	MarkFailed(ctx context.Context, id, reason string) error
}

var _ Store = (*store.DB)(nil)

// Router queues events for subscribers.
type Router interface {
	Route(ev route.Event) ([]store.OutboxEntry, error)
}

// AppAcks queues the application acknowledgements that senders in enhanced
// mode ask for (MSH-16), each with the outcome it reports.
type AppAcks interface {
	// Queue adds e's acknowledgement to tx (failure nil: processed) and
	// returns what to call once tx has committed, or nil.
	Queue(ctx context.Context, tx *store.Tx, e store.Envelope, failure error) (func(), error)
	// QueueFailure queues the acknowledgement of a failure in a transaction
	// of its own, before the envelope is marked failed.
	QueueFailure(ctx context.Context, e store.Envelope, failure error) error
}

// Options configure the pipeline.
type Options struct {
	Lanes int // parallel lanes (senders hash to a lane); default 4
	// Batch is the most envelopes of a lane committed in one transaction
	// when several wait; default 64, 1 commits each on its own. A larger
	// transaction shares its commit's page writes among more envelopes:
	// draining a backlog of ADT^A01 on the embedded store, 64 took 229–292 µs
	// of CPU per message where 16 took 280–374.
	Batch    int
	Poll     time.Duration // look for work without a notification this often; default 1s
	OnCommit func()        // called after each committed envelope (wakes the relay)
	// Identity, when set, identifies patients through the master patient
	// index in the processing transaction; without it patients are linked
	// by identifier only (store.Tx.ResolvePatient).
	Identity *Identity
	// AppAcks, when set, queues application acknowledgements.
	AppAcks AppAcks
	// Lease, when set, lets this pipeline process only the senders whose
	// partitions it holds (replicas sharing one database; see lease.go).
	Lease      *Lease
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Pipeline is the processing stage.
type Pipeline struct {
	st   Store
	norm Normalizer
	rt   Router
	o    Options
	wake chan struct{}

	processed, failed *prometheus.CounterVec
	seconds           prometheus.Histogram
	idle              sync.WaitGroup

	// The dispatcher reads pending envelopes after a cursor; rescan makes it
	// start again from the beginning (envelopes requeued for reprocessing
	// are older than the cursor), and inflight keeps it from handing an
	// envelope to a lane twice. A read may answer from before a lane's
	// commit, so an envelope finished while a read was under way is kept
	// in finished until the next read begins: that read's answer saw it
	// pending, and it is not handed out again.
	rescan   atomic.Bool
	mu       sync.Mutex
	inflight map[string]bool
	finished map[string]bool

	pmu          sync.Mutex // guards pause
	pause        pauseState
	pausedGauge  prometheus.Gauge
	standbyGauge prometheus.Gauge

	leases leases // the partitions held, with Options.Lease
}

// New makes a pipeline.
func New(st Store, norm Normalizer, rt Router, o Options) *Pipeline {
	if o.Lanes <= 0 {
		o.Lanes = 4
	}
	if o.Batch <= 0 {
		o.Batch = 64
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Lease != nil {
		l := *o.Lease
		if l.Name == "" {
			l.Name = "processing"
		}
		if l.TTL <= 0 {
			l.TTL = 15 * time.Second
		}
		for i := range l.names {
			l.names[i] = partitionName(l.Name, i)
		}
		o.Lease = &l
	}
	p := &Pipeline{st: st, norm: norm, rt: rt, o: o, wake: make(chan struct{}, 1), inflight: map[string]bool{},
		finished: map[string]bool{},
		leases:   leases{wake: make(chan struct{}, 1)},
		processed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_pipeline_processed_total",
			Help: "Envelopes processed into the record, by kind."}, []string{"kind"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_pipeline_failed_total",
			Help: "Envelopes whose processing failed, by kind."}, []string{"kind"}),
		seconds: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "hiegw_pipeline_envelope_seconds",
			Help: "Time to process one envelope.", Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16)}),
		pausedGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hiegw_pipeline_paused",
			Help: "1 while an operator has paused processing (messages are still received and acknowledged)."}),
		standbyGauge: prometheus.NewGauge(prometheus.GaugeOpts{Name: "hiegw_pipeline_standby",
			Help: "1 while other replicas hold every processing partition and this one only receives."}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(p.processed, p.failed, p.seconds, p.pausedGauge, p.standbyGauge)
	}
	return p
}

// Notify wakes the pipeline: envelopes were committed.
func (p *Pipeline) Notify() {
	select {
	case p.wake <- struct{}{}:
	default:
	}
}

// Rescan makes the pipeline look at every pending envelope again, older ones
// included: call it after envelopes are requeued for reprocessing.
func (p *Pipeline) Rescan() {
	p.rescan.Store(true)
	p.Notify()
}

// Run processes envelopes until ctx ends; envelopes already handed to a lane
// are finished before it returns.
func (p *Pipeline) Run(ctx context.Context) {
	if p.o.Lease != nil {
		p.standBy(true)
		defer p.releaseLease() // after the lanes have finished
		go p.keepLease(ctx)
	}
	lanes := make([]chan store.Envelope, p.o.Lanes)
	var wg sync.WaitGroup
	for i := range lanes {
		lanes[i] = make(chan store.Envelope, 256)
		wg.Add(1)
		go func(ch chan store.Envelope) {
			defer wg.Done()
			for e := range ch {
				run := p.take(ch, e)
				if p.gate(ctx) {
					p.processRun(ctx, run)
				} // else shutting down while paused: the run stays pending for the next start
				p.mu.Lock()
				for _, e := range run {
					delete(p.inflight, e.ID)
					p.finished[e.ID] = true
				}
				p.mu.Unlock()
				p.idle.Add(-len(run))
			}
		}(lanes[i])
	}
	defer func() {
		for _, ch := range lanes {
			close(ch)
		}
		wg.Wait()
	}()
	var cursor int64
	t := time.NewTicker(p.o.Poll)
	defer t.Stop()
	ticks := 0
	for {
		if !p.gate(ctx) {
			return
		}
		if p.rescan.Swap(false) {
			cursor = 0
		}
		// What finished before this read begins, the read sees as it is now.
		// (A map that grew large is replaced: clearing costs its capacity.)
		p.mu.Lock()
		if len(p.finished) > 256 {
			p.finished = map[string]bool{}
		} else {
			clear(p.finished)
		}
		p.mu.Unlock()
		envs, err := p.st.PendingEnvelopes(ctx, cursor, 512)
		if err != nil && ctx.Err() == nil {
			p.o.Logger.Warn("pipeline: read pending envelopes", "err", err)
		}
		for _, e := range envs {
			cursor = e.Seq
			if !p.owns(e.Sender) {
				continue // another replica's partition
			}
			p.mu.Lock()
			busy := p.handedOut(e.ID)
			if !busy {
				p.inflight[e.ID] = true
			}
			p.mu.Unlock()
			if busy {
				continue
			}
			p.idle.Add(1)
			select {
			case lanes[laneOf(e.Sender, len(lanes))] <- e:
			case <-ctx.Done():
				p.idle.Done()
				return
			}
		}
		if len(envs) == 512 {
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-p.wake:
		case <-t.C:
			// Now and then look again from the start, so that nothing a
			// missed notification or a failed read skipped waits for a
			// restart; at once when envelopes behind the cursor are pending
			// again.
			if ticks++; ticks%60 == 0 || p.requeuedBehind(ctx, cursor) {
				p.rescan.Store(true)
			}
		}
	}
}

// handedOut tells whether envelope id is in a lane, or finished while the
// dispatcher's current read was under way; p.mu is held.
func (p *Pipeline) handedOut(id string) bool { return p.inflight[id] || p.finished[id] }

// requeuedBehind tells whether an envelope of this pipeline's partitions at
// or before the cursor waits for processing while no lane has it: one
// requeued by another process (hiegw replay --failed, another replica's
// API), which only a read from the start finds. It reads ids and senders
// only, not bodies, a page at a time past the envelopes the lanes hold (at
// most requeuePages pages; the rescan every sixty polls finds the rest).
func (p *Pipeline) requeuedBehind(ctx context.Context, cursor int64) bool {
	after := int64(0)
	for range requeuePages {
		if after >= cursor {
			return false
		}
		keys, err := p.st.PendingBetween(ctx, after, cursor, requeuePage)
		if err != nil {
			return false // the rescan every sixty polls still comes
		}
		p.mu.Lock()
		for _, k := range keys {
			if !p.handedOut(k.ID) && p.owns(k.Sender) {
				p.mu.Unlock()
				return true
			}
		}
		p.mu.Unlock()
		if len(keys) < requeuePage {
			return false
		}
		after = keys[len(keys)-1].Seq
	}
	return false
}

// A poll looks behind the cursor through at most requeuePages pages of
// requeuePage pending envelopes: more than the lanes hold with up to 15 of
// them (256 each, and the runs being processed), so that an envelope
// requeued behind a full backlog is found at the next poll rather than at
// the periodic rescan.
const (
	requeuePage  = 512
	requeuePages = 8
)

// Wait blocks until every envelope handed to a lane so far is done.
func (p *Pipeline) Wait() { p.idle.Wait() }

func laneOf(sender string, n int) int {
	h := fnv.New32a()
	h.Write([]byte(sender))
	return int(h.Sum32() % uint32(n))
}

// take returns first and whatever else already waits in its lane, up to
// the batch size, in order.
func (p *Pipeline) take(ch <-chan store.Envelope, first store.Envelope) []store.Envelope {
	run := []store.Envelope{first}
	for len(run) < p.o.Batch {
		select {
		case e, ok := <-ch:
			if !ok {
				return run
			}
			run = append(run, e)
		default:
			return run
		}
	}
	return run
}

// processRun processes a lane's consecutive envelopes, committing as many as
// it can in one transaction: on the embedded store a transaction's fixed
// cost (begin, commit, the envelope log's status) is about as large as one
// envelope's work. An envelope that cannot be normalised is recorded as
// failed between the runs before and after it, so a sender's order holds;
// if the shared transaction fails, each envelope is processed on its own
// and gets its own outcome.
func (p *Pipeline) processRun(ctx context.Context, run []store.Envelope) {
	if len(run) == 1 {
		p.processWithRetry(ctx, run[0])
		return
	}
	for len(run) > 0 {
		var ready []prepared
		var bad *ContentError
		for _, e := range run {
			var units []unit
			err := p.guarded(e, func() (err error) {
				units, err = p.normalize(e)
				return err
			})
			if err != nil {
				if !errors.As(err, &bad) {
					bad = &ContentError{Err: err}
				}
				break
			}
			ready = append(ready, prepared{e: e, units: units})
		}
		switch {
		case len(ready) == 1:
			p.processWithRetry(ctx, ready[0].e)
		case len(ready) > 1:
			err := p.guarded(ready[0].e, func() error { return p.commit(ctx, ready...) })
			if errors.Is(err, store.ErrLeaseLost) {
				return // the rest is for the replica that holds the lease now
			} else if err != nil {
				p.o.Logger.Debug("pipeline: a run's transaction failed; committing its envelopes one by one", "envelopes", len(ready), "err", err)
				for _, r := range ready {
					p.processWithRetry(ctx, r.e)
				}
			}
		}
		if bad == nil {
			return
		}
		p.fail(ctx, run[len(ready)], bad)
		run = run[len(ready)+1:]
	}
}

// processWithRetry retries store failures (the database may be briefly
// away) so that a sender's order is kept; content failures are final.
func (p *Pipeline) processWithRetry(ctx context.Context, e store.Envelope) {
	backoff := 100 * time.Millisecond
	for {
		err := p.guarded(e, func() error { return p.Process(ctx, e) })
		if err == nil {
			return
		}
		var ce *ContentError
		if errors.As(err, &ce) {
			p.fail(ctx, e, ce)
			return
		}
		if errors.Is(err, store.ErrLeaseLost) || errors.Is(err, store.ErrAlreadyProcessed) {
			// Another replica processes it, or did.
			p.o.Logger.Debug("processing envelope given up", "envelope", e.ID, "err", err)
			return
		}
		if ctx.Err() != nil {
			return // picked up again at the next start: it is still "received"
		}
		p.o.Logger.Warn("processing envelope; will retry", "envelope", e.ID, "err", err, "backoff", backoff)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

// fail records that e's content cannot be processed.
func (p *Pipeline) fail(ctx context.Context, e store.Envelope, ce *ContentError) {
	p.failed.WithLabelValues(e.Kind).Inc()
	p.o.Logger.Info("envelope failed processing", "envelope", e.ID, "sender", e.Sender,
		"control_id", e.ControlID, "reason", ce.Error())
	mctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	if p.o.AppAcks != nil {
		if err := p.o.AppAcks.QueueFailure(mctx, e, ce); err != nil {
			// Left "received": processed (and answered) again later.
			p.o.Logger.Error("queue application ack of a failed envelope", "envelope", e.ID, "err", err)
			return
		}
	}
	if merr := p.st.MarkFailed(mctx, e.ID, ce.Error()); merr != nil {
		p.o.Logger.Error("mark envelope failed", "envelope", e.ID, "err", merr)
	}
}

// guarded runs fn, the processing of e (alone or in a run that starts with
// it), and turns a panic, a defect of hiegw, into a ContentError with the
// stack logged: the message fails (reprocessable once hiegw is fixed)
// instead of the gateway stopping and meeting it again at every start. A
// run that panics is committed again one envelope at a time, so that only
// the envelope that panics fails.
func (p *Pipeline) guarded(e store.Envelope, fn func() error) (err error) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		what := defect.Log(p.o.Logger, "processing panicked, a defect of hiegw", r, "envelope", e.ID)
		err = &ContentError{Err: fmt.Errorf("internal error in hiegw while processing (%s); reprocess the message once hiegw is fixed", what)}
	}()
	return fn()
}

// ContentError is a failure caused by the envelope's content.
type ContentError struct{ Err error }

func (e *ContentError) Error() string { return e.Err.Error() }
func (e *ContentError) Unwrap() error { return e.Err }

func contentErr(format string, args ...any) error {
	return &ContentError{Err: fmt.Errorf(format, args...)}
}

// Process turns one envelope into record changes and events, in one
// transaction.
func (p *Pipeline) Process(ctx context.Context, e store.Envelope) error {
	units, err := p.normalize(e)
	if err != nil {
		return err
	}
	return p.commit(ctx, prepared{e: e, units: units})
}

// prepared is an envelope normalised and ready to commit.
type prepared struct {
	e     store.Envelope
	units []unit
}

// saveNotes keeps what mapping noticed with the envelope (a message of a
// batch is named by its position).
func (pe prepared) saveNotes(ctx context.Context, tx *store.Tx) error {
	var notes []store.Note
	for i, u := range pe.units {
		for _, n := range u.Notes {
			if len(pe.units) > 1 {
				n.Detail = fmt.Sprintf("message %d: %s", i+1, n.Detail)
			}
			notes = append(notes, n)
		}
	}
	if len(notes) == 0 && pe.e.Attempts == 0 {
		return nil
	}
	return tx.SetNotes(ctx, pe.e.ID, pe.e.Attempts > 0, notes)
}

// commit writes the record changes and events of envelopes in one
// transaction.
func (p *Pipeline) commit(ctx context.Context, envs ...prepared) error {
	start := time.Now()
	version := p.norm.Version()
	var acked []func() // application acks queued, told once committed
	err := p.st.InTx(ctx, func(tx *store.Tx) error {
		if l := p.o.Lease; l != nil {
			if err := tx.CheckLease(ctx, p.leaseNames(envs), l.Owner); err != nil {
				return err
			}
		}
		if p.o.Identity != nil {
			// Take the index's locks before any row, all at once: a
			// transaction that wrote rows and then waited for a lock could
			// deadlock with the holder moving those rows.
			if err := p.o.Identity.lock(ctx, tx, envs); err != nil {
				return err
			}
		}
		for _, pe := range envs {
			var patient string
			for i, u := range pe.units {
				pid, err := p.commitUnit(ctx, tx, pe.e, i, u)
				if err != nil {
					return err
				}
				if patient == "" {
					patient = pid
				}
			}
			if p.o.AppAcks != nil {
				done, err := p.o.AppAcks.Queue(ctx, tx, pe.e, nil)
				if err != nil {
					return err
				}
				if done != nil {
					acked = append(acked, done)
				}
			}
			if err := pe.saveNotes(ctx, tx); err != nil {
				return err
			}
			if err := tx.FinishEnvelope(ctx, pe.e.ID, patient, version); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, store.ErrLogBehind) {
		// Committed: processing it again would be refused. The log's
		// status is repaired when the dispatcher next reads behind its
		// cursor (requeuedBehind finds the envelopes still "received").
		p.o.Logger.Warn("pipeline: processed, but the message log's status was not updated; it is repaired at the next read",
			"envelopes", len(envs), "err", err)
		err = nil
	}
	if err != nil {
		return err
	}
	for _, done := range acked {
		done()
	}
	each := time.Since(start).Seconds() / float64(len(envs))
	for _, pe := range envs {
		p.processed.WithLabelValues(pe.e.Kind).Inc()
		p.seconds.Observe(each)
	}
	if p.o.OnCommit != nil {
		p.o.OnCommit()
	}
	return nil
}

type unit struct {
	Normalized
	controlID, messageType string
	raw                    []byte // the source message (one message of a batch)
}

func (p *Pipeline) normalize(e store.Envelope) ([]unit, error) {
	switch e.Kind {
	case intake.KindHL7:
		u, err := p.normalizeHL7(e.Sender, e.Raw)
		if err != nil {
			return nil, err
		}
		u.raw = e.Raw
		return []unit{u}, nil
	case intake.KindHL7Batch:
		b, err := hl7.SplitBatch(e.Raw)
		if err != nil {
			return nil, contentErr("split batch: %w", err)
		}
		var out []unit
		for i, raw := range b.Messages {
			u, err := p.normalizeHL7(e.Sender, raw)
			if err != nil {
				return nil, contentErr("batch message %d: %w", i+1, err)
			}
			u.raw = raw
			out = append(out, u)
		}
		return out, nil
	case intake.KindCCDA:
		n, err := p.norm.NormalizeCCDA(e.Sender, e.Raw)
		if err != nil {
			return nil, contentErr("%w", err)
		}
		return []unit{{Normalized: n, messageType: "C-CDA", raw: e.Raw}}, nil
	}
	return nil, contentErr("envelope kind %q cannot be processed", e.Kind)
}

func (p *Pipeline) normalizeHL7(sender string, raw []byte) (unit, error) {
	m, err := hl7.Parse(raw)
	if err != nil {
		return unit{}, contentErr("parse: %w", err)
	}
	n, err := p.norm.NormalizeHL7(sender, m)
	if err != nil {
		return unit{}, contentErr("%w", err)
	}
	h := m.Header()
	mt := h.MessageCode
	if h.TriggerEvent != "" {
		mt += "^" + h.TriggerEvent
	}
	return unit{Normalized: n, controlID: h.ControlID, messageType: mt}, nil
}

const enterpriseSystem = "urn:hiegw:enterprise-patient"

// patientOf returns the first Patient among rs, or nil.
func patientOf(rs []fhir.Resource) fhir.Resource {
	for _, r := range rs {
		if r.Type() == "Patient" {
			return r
		}
	}
	return nil
}

func (p *Pipeline) commitUnit(ctx context.Context, tx *store.Tx, e store.Envelope, idx int, u unit) (string, error) {
	if err := keepUnsent(ctx, tx, u); err != nil {
		return "", err
	}
	patientRes := patientOf(u.Resources)
	var patientID string
	var localIDs []string
	var source mpi.Key
	if patientRes != nil && p.o.Identity != nil {
		src := eventSource{sender: e.Sender, envelopeID: e.ID, controlID: u.controlID, messageType: u.messageType, unit: idx, raw: u.raw}
		var err error
		if source, patientID, err = p.o.Identity.identify(ctx, tx, e, patientRes, src); err != nil {
			return "", err
		}
		for _, id := range identifiersOf(patientRes) {
			localIDs = append(localIDs, id.System+"|"+id.Value)
		}
		addEnterpriseID(patientRes, patientID)
	} else if patientRes != nil {
		ids := identifiersOf(patientRes)
		if len(ids) == 0 {
			return "", contentErr("the Patient has no identifier to link it by (PID-3)")
		}
		var err error
		if patientID, _, err = tx.ResolvePatient(ctx, e.Sender, ids); err != nil {
			return "", err
		}
		// ADT^A40 and the like: the surviving record replaces prior ones.
		for _, prior := range replacedIdentifiers(patientRes) {
			from, err := tx.PatientOf(ctx, prior)
			if err != nil {
				return "", err
			}
			if from != "" && from != patientID {
				if err := tx.MergePatient(ctx, from, patientID); err != nil {
					return "", err
				}
				if err := tx.Audit(ctx, store.AuditEntry{Actor: "sender:" + e.Sender, Action: "patient.merge",
					Target: patientID, Outcome: "ok", Detail: "merged " + from + " (envelope " + e.ID + ")"}); err != nil {
					return "", err
				}
			}
		}
		for _, id := range ids {
			localIDs = append(localIDs, id.System+"|"+id.Value)
		}
		addEnterpriseID(patientRes, patientID)
	}
	resources := append([]fhir.Resource{}, u.Resources...)
	resources = append(resources, provenance(e, idx, u.Resources))
	stored := make([]store.Resource, 0, len(resources))
	encoded := make([][]byte, 0, len(resources)) // reused by the event Bundles
	for _, r := range resources {
		body, err := fhir.Marshal(r)
		if err != nil {
			return "", contentErr("encode %s: %w", r.Type(), err)
		}
		encoded = append(encoded, body)
		stored = append(stored, store.Resource{ID: r.ID(), Type: r.Type(), PatientID: patientID, Body: body,
			SourceAuthority: source.Authority, SourceMRN: source.MRN})
	}
	if err := tx.PutResources(ctx, e.ID, e.Sender, stored); err != nil {
		return "", err
	}
	if patientID == "" {
		// Nothing to key an event by: the record keeps it, routing does not.
		return "", nil
	}
	for i, typ := range append([]string{u.Event}, u.Also...) {
		ev := route.Event{Type: typ, Sender: e.Sender, EnvelopeID: e.ID, ControlID: u.controlID,
			MessageType: u.messageType, PatientID: patientID, LocalIDs: localIDs, Resources: resources, Encoded: encoded,
			At: time.Now(), Raw: u.raw}
		if i > 0 {
			ev.ID = e.ID + "#" + typ // its own Bundle and MessageHeader ids
		}
		entries, err := p.rt.Route(ev)
		if err != nil {
			return "", err
		}
		if err := tx.AddOutbox(ctx, entries...); err != nil {
			return "", err
		}
	}
	return patientID, nil
}

// linkIdentifier is one of a Patient's identifiers that can link it: with
// its v2-0203 type, and never the enterprise id hiegw adds itself.
type linkIdentifier struct{ typ, system, value string }

func linkIdentifiers(p fhir.Resource) []linkIdentifier {
	var out []linkIdentifier
	list, _ := p["identifier"].([]any)
	for _, it := range list {
		m, _ := it.(map[string]any)
		sys, _ := m["system"].(string)
		val, _ := m["value"].(string)
		if sys == "" || val == "" || sys == enterpriseSystem {
			continue
		}
		out = append(out, linkIdentifier{typ: typeCode(m["type"]), system: sys, value: val})
	}
	return out
}

// identifiersOf returns a Patient's identifiers that can link it.
func identifiersOf(p fhir.Resource) []store.Identifier {
	var out []store.Identifier
	for _, i := range linkIdentifiers(p) {
		out = append(out, store.Identifier{System: i.system, Value: i.value})
	}
	return out
}

// replacedIdentifiers returns the identifiers named by Patient.link entries
// of type "replaces" (a merge).
func replacedIdentifiers(p fhir.Resource) []store.Identifier {
	var out []store.Identifier
	links, _ := p["link"].([]any)
	for _, l := range links {
		m, _ := l.(map[string]any)
		if t, _ := m["type"].(string); t != "replaces" {
			continue
		}
		other, _ := m["other"].(map[string]any)
		id, _ := other["identifier"].(map[string]any)
		sys, _ := id["system"].(string)
		val, _ := id["value"].(string)
		if sys != "" && val != "" {
			out = append(out, store.Identifier{System: sys, Value: val})
		}
	}
	return out
}

func addEnterpriseID(p fhir.Resource, id string) {
	list, _ := p["identifier"].([]any)
	for _, it := range list {
		if m, _ := it.(map[string]any); m["system"] == enterpriseSystem {
			m["value"] = id
			return
		}
	}
	p["identifier"] = append(list, map[string]any{"use": "secondary", "system": enterpriseSystem, "value": id})
}

// provenance records where the resources came from: the sender and the
// stored envelope.
func provenance(e store.Envelope, idx int, rs []fhir.Resource) fhir.Resource {
	pr := fhir.New("Provenance", fhir.StableID(e.Sender, "Provenance", e.ID, fmt.Sprint(idx)))
	var targets []any
	for _, r := range rs {
		targets = append(targets, map[string]any{"reference": r.Ref()})
	}
	pr["target"] = targets
	pr["recorded"] = e.ReceivedAt.UTC().Format(time.RFC3339)
	pr["activity"] = map[string]any{"coding": []any{map[string]any{
		"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE"}}}
	pr["agent"] = []any{map[string]any{
		"type": map[string]any{"coding": []any{map[string]any{
			"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author"}}},
		"who": map[string]any{"display": e.Sender, "identifier": map[string]any{"system": "urn:hiegw:sender", "value": e.Sender}},
	}}
	what := map[string]any{"system": "urn:hiegw:envelope", "value": e.ID}
	desc := strings.TrimSpace(e.Channel + " " + e.MessageType + " " + e.ControlID)
	pr["entity"] = []any{map[string]any{"role": "source", "what": map[string]any{"identifier": what, "display": desc}}}
	return pr
}

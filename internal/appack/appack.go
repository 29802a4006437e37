// Package appack sends application acknowledgements: a message in enhanced
// mode (MSH-15 valued) is answered at once with a commit acknowledgement by
// intake, and once processing has decided its fate, with an application
// acknowledgement (AA, AE or AR) when its MSH-16 asks for one (AL always, ER
// on a failure, SU on a success, NE or empty never).
//
// The acknowledgement is built and queued in the store in the transaction
// that records the processing outcome (Queue), so it is neither lost nor
// duplicated when processing is redone. A delivery loop (Run) sends each
// sender's queue in order over MLLP to the sender's return address and waits
// for the sender's commit acknowledgement: CA (or AA) settles it as sent,
// CE/CR/AE/AR as refused with the reason; a connection that fails or a reply
// that does not answer it is retried with backoff, and the acknowledgements
// behind it wait so that the order holds.
package appack

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base32"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Store is what the acknowledgements need of the database.
type Store interface {
	EnqueueAppAck(ctx context.Context, a store.AppAck) (bool, error)
	AppAckSenders(ctx context.Context) ([]string, error)
	ClaimAppAcks(ctx context.Context, sender, owner string, limit int, lease time.Duration) ([]store.AppAck, error)
	MarkAppAckSent(ctx context.Context, seq int64, reply string) error
	MarkAppAckRefused(ctx context.Context, seq int64, reply, reason string) error
	MarkAppAckRetry(ctx context.Context, seq int64, reason string, next time.Time) error
	ReleaseAppAcks(ctx context.Context, owner string, seqs []int64) error
	RouteAppAcks(ctx context.Context, sender string, routed bool) (int64, error)
	AppAckCounts(ctx context.Context) ([]store.AppAckCount, error)
}

var _ Store = (*store.DB)(nil)

// Route is where a sender receives its application acknowledgements.
type Route struct {
	Addr string             // host:port of the sender's MLLP receiver
	TLS  func() *tls.Config // each connection's TLS (read again as files change); nil: plain TCP
}

// Options configure the acknowledgements.
type Options struct {
	// Routes are the senders' return addresses, by sender name (the name an
	// envelope carries). A sender without one keeps its acknowledgements in
	// the store as "no_route".
	Routes map[string]Route
	// Owner names this process in claims (several gateways may share a
	// PostgreSQL store); default host/pid is up to the caller.
	Owner string
	// ReplyTimeout bounds connecting, writing an acknowledgement and reading
	// the sender's answer; default 30s.
	ReplyTimeout time.Duration
	// Poll is how often queues are looked at without a notification; default 1s.
	Poll time.Duration
	// MinBackoff and MaxBackoff bound the wait after a failed delivery; it
	// doubles with each attempt. Defaults 1s and 5m.
	MinBackoff, MaxBackoff time.Duration
	// Batch is how many of a sender's acknowledgements one claim takes; default 16.
	Batch int
	// Details turns a processing failure into ERR segments; the default
	// reads the locations and codes of HL7 parse and mapping errors.
	Details    func(error) []hl7.ErrorDetail
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Acks queues and delivers application acknowledgements.
type Acks struct {
	st    Store
	o     Options
	wake  chan struct{}
	lease time.Duration

	warned sync.Map // senders already warned about a missing route

	routes   atomic.Pointer[map[string]Route] // Options.Routes, then what SetRoutes put in force
	rerouted atomic.Bool                      // SetRoutes ran: Run queues what waited for a route

	mu      sync.Mutex
	running map[string]bool // senders whose queue a goroutine is delivering

	queued, noRoute, sent, refused, failures *prometheus.CounterVec
	pending                                  *prometheus.GaugeVec
}

// New makes the acknowledgements.
func New(st Store, o Options) *Acks {
	if o.ReplyTimeout <= 0 {
		o.ReplyTimeout = 30 * time.Second
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.MinBackoff <= 0 {
		o.MinBackoff = time.Second
	}
	if o.MaxBackoff < o.MinBackoff {
		o.MaxBackoff = max(5*time.Minute, o.MinBackoff)
	}
	if o.Batch <= 0 {
		o.Batch = 16
	}
	if o.Details == nil {
		o.Details = Details
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Owner == "" {
		o.Owner = "hiegw"
	}
	counter := func(name, help string) *prometheus.CounterVec {
		return prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, []string{"sender"})
	}
	a := &Acks{st: st, o: o, wake: make(chan struct{}, 1), running: map[string]bool{},
		// One acknowledgement takes at most two ReplyTimeouts (connect, then
		// send and read); deliver claims again once half the lease is gone,
		// so a claim never runs out under its owner, and the queue of a
		// gateway that died waits at most this long for another one.
		lease: 4 * o.ReplyTimeout,
		queued: counter("hiegw_appack_queued_total",
			"Application acknowledgements queued for a sender (enhanced mode, MSH-16), including those without a route."),
		noRoute: counter("hiegw_appack_no_route_total",
			"Application acknowledgements kept unsent because the sender has no return address (mllp.senders[].ack_addr or mllp.ack_routes)."),
		sent: counter("hiegw_appack_sent_total",
			"Application acknowledgements the sender committed (answered CA or AA)."),
		refused: counter("hiegw_appack_refused_total",
			"Application acknowledgements the sender refused (CE, CR, AE or AR); not sent again."),
		failures: counter("hiegw_appack_delivery_failures_total",
			"Failed attempts to deliver an application acknowledgement (no connection, no or unreadable answer); retried with backoff."),
		pending: prometheus.NewGaugeVec(prometheus.GaugeOpts{Name: "hiegw_appack_pending",
			Help: "Application acknowledgements waiting to be delivered, by sender."}, []string{"sender"}),
	}
	if o.Registerer != nil {
		o.Registerer.MustRegister(a.queued, a.noRoute, a.sent, a.refused, a.failures, a.pending)
	}
	routes := o.Routes
	a.routes.Store(&routes)
	return a
}

// Routes returns the return addresses in force, by sender name.
func (a *Acks) Routes() map[string]Route { return *a.routes.Load() }

// SetRoutes puts new return addresses in force (the configuration was read
// again): a sender's next round of deliveries uses its new route, the
// acknowledgements kept for want of a route of senders that have one now
// are queued, and those of senders whose route was removed wait, kept, for
// one.
func (a *Acks) SetRoutes(routes map[string]Route) {
	a.routes.Store(&routes)
	for s := range routes {
		a.warned.Delete(s)
	}
	a.rerouted.Store(true)
	a.Notify()
}

// Notify wakes the delivery loop: acknowledgements were queued.
func (a *Acks) Notify() {
	select {
	case a.wake <- struct{}{}:
	default:
	}
}

// Wanted applies MSH-16 (application acknowledgement type, HL7 table 0155)
// of a message in enhanced mode: AL always, ER only when processing failed,
// SU only when it succeeded, NE or empty never. A message in original mode
// (MSH-15 empty) had its application acknowledgement on the connection.
func Wanted(h hl7.Header, ok bool) bool {
	if h.AcceptAckType == "" {
		return false
	}
	switch h.ApplicationAckType {
	case "AL":
		return true
	case "ER":
		return !ok
	case "SU":
		return ok
	}
	return false
}

// Queue adds to tx the application acknowledgement of e's processing
// outcome (failure nil: processed) when e's sender asked for one. It
// returns a function to call once tx has committed (it counts the
// acknowledgement and wakes the delivery), or nil when nothing was queued:
// no acknowledgement was asked for, or e already has one (processing was
// redone: the sender hears about a message once).
func (a *Acks) Queue(ctx context.Context, tx *store.Tx, e store.Envelope, failure error) (func(), error) {
	row, ok := a.build(e, failure, time.Now())
	if !ok {
		return nil, nil
	}
	queued, err := tx.EnqueueAppAck(ctx, row)
	if err != nil || !queued {
		return nil, err
	}
	return func() { a.committed(row) }, nil
}

// QueueFailure queues the application acknowledgement of an envelope whose
// processing failed, in a transaction of its own (there is no processing
// transaction to join). Call it before the envelope is marked failed: should
// that not happen, processing is redone and the acknowledgement is not
// queued twice.
func (a *Acks) QueueFailure(ctx context.Context, e store.Envelope, failure error) error {
	row, ok := a.build(e, failure, time.Now())
	if !ok {
		return nil
	}
	queued, err := a.st.EnqueueAppAck(ctx, row)
	if err != nil {
		return err
	}
	if queued {
		a.committed(row)
	}
	return nil
}

func (a *Acks) committed(row store.AppAck) {
	a.queued.WithLabelValues(row.Sender).Inc()
	if row.Status == store.AppAckNoRoute {
		a.noRoute.WithLabelValues(row.Sender).Inc()
		a.warnNoRoute(row.Sender)
		return
	}
	a.Notify()
}

func (a *Acks) warnNoRoute(sender string) {
	if _, seen := a.warned.LoadOrStore(sender, true); !seen {
		a.o.Logger.Warn("sender asks for application acknowledgements but has no return address (mllp.senders[].ack_addr, or mllp.ack_routes "+
			"for a sender named by MSH-4/MSH-3); "+
			"they are kept in the store with status no_route", "sender", sender)
	}
}

// build makes e's application acknowledgement, if its sender asked for one.
func (a *Acks) build(e store.Envelope, failure error, now time.Time) (store.AppAck, bool) {
	if e.Channel != intake.ChannelMLLP || e.Kind != intake.KindHL7 {
		return store.AppAck{}, false // files have no connection to answer on
	}
	h, d, err := hl7.ParseHeader(e.Raw)
	if err != nil || h.ControlID == "" || !Wanted(h, failure == nil) {
		return store.AppAck{}, false
	}
	code, details := hl7.AppAccept, []hl7.ErrorDetail(nil)
	if failure != nil {
		code, details = hl7.AppError, a.o.Details(failure)
		for _, dt := range details {
			if dt.Code == "200" || dt.Code == "201" {
				code = hl7.AppReject // no rule handles this message type or event
			}
		}
	}
	id := newControlID()
	msg := commitOnly(hl7.NewACK(h, d, code, id, now, details...))
	status := store.AppAckPending
	if _, ok := a.Routes()[e.Sender]; !ok {
		status = store.AppAckNoRoute
	}
	return store.AppAck{EnvelopeID: e.ID, Sender: e.Sender, ControlID: h.ControlID, AckControlID: id, Code: string(code),
		Message: msg, Status: status}, true
}

// commitOnly sets the acknowledgement's own MSH-15 to AL and MSH-16 to NE:
// the sender answers it with a commit acknowledgement and never with an
// application acknowledgement of its own.
func commitOnly(ack []byte) []byte {
	if len(ack) < 4 {
		return ack
	}
	fs := ack[3]
	end := bytes.IndexByte(ack, '\r')
	if end < 0 {
		end = len(ack)
	}
	// fields[0] is "MSH", fields[1] MSH-2, fields[n] MSH-(n+1).
	fields := bytes.Split(ack[:end], []byte{fs})
	for len(fields) < 16 {
		fields = append(fields, nil)
	}
	fields[14], fields[15] = []byte("AL"), []byte("NE")
	out := bytes.Join(fields, []byte{fs})
	return append(out, ack[end:]...)
}

var idEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// newControlID returns an MSH-10 for an acknowledgement: 20 characters (the
// ST length in v2.5), "HA" and 90 bits of a time-ordered UUID, unique
// across restarts and gateways.
func newControlID() string {
	u, err := uuid.NewV7()
	if err != nil {
		u = uuid.New()
	}
	return "HA" + idEncoding.EncodeToString(u[:12])[:18]
}

// Details turns a processing failure into ERR segments: the location and
// code of each HL7 parse error and mapping error it holds (joined errors
// give one segment each), else one "application internal error" with the
// failure's text.
func Details(failure error) []hl7.ErrorDetail {
	var out []hl7.ErrorDetail
	for _, e := range leaves(failure) {
		var me *mapping.MapError
		var pe *hl7.ParseError
		switch {
		case errors.As(e, &me):
			code := me.Code
			if code == "" {
				code = "207"
			}
			out = append(out, hl7.ErrorDetail{Location: me.Location, Code: code, Severity: "E", Message: me.Error()})
		case errors.As(e, &pe):
			out = append(out, hl7.ErrorDetail{Location: pe.Location(), Code: pe.AckCode(), Severity: "E", Message: pe.Error()})
		}
	}
	if len(out) == 0 {
		out = append(out, hl7.ErrorDetail{Code: "207", Severity: "E", Message: fmt.Sprint(failure)})
	}
	return out
}

// leaves flattens errors joined with errors.Join, looking through wrappers.
func leaves(err error) []error {
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			var out []error
			for _, x := range j.Unwrap() {
				out = append(out, leaves(x)...)
			}
			return out
		}
	}
	if err == nil {
		return nil
	}
	return []error{err}
}

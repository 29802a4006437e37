package appack

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

// Run delivers queued acknowledgements until ctx ends. Each sender's queue
// is delivered by a goroutine of its own (a sender that is down delays
// nobody else); an acknowledgement on the wire when ctx ends is finished
// (within ReplyTimeout) before Run returns, and claims not reached are
// given back.
func (a *Acks) Run(ctx context.Context) {
	a.reroute(ctx)
	var wg sync.WaitGroup
	defer wg.Wait()
	t := time.NewTicker(a.o.Poll)
	defer t.Stop()
	for {
		if a.rerouted.Swap(false) {
			a.reroute(ctx)
		}
		routes := a.Routes()
		senders, err := a.st.AppAckSenders(ctx)
		if err != nil && ctx.Err() == nil {
			a.o.Logger.Warn("application acks: read queues", "err", err)
		}
		for _, s := range senders {
			r, ok := routes[s]
			if !ok {
				// Its route was removed while acknowledgements waited.
				if _, err := a.st.RouteAppAcks(ctx, s, false); err != nil && ctx.Err() == nil {
					a.o.Logger.Warn("application acks: park acknowledgements without a route", "sender", s, "err", err)
				}
				a.warnNoRoute(s)
				continue
			}
			a.mu.Lock()
			busy := a.running[s]
			a.running[s] = true
			a.mu.Unlock()
			if busy {
				continue
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					// A panic (a defect of hiegw) ends this sender's round
					// only; its acknowledgements are claimed again later.
					if p := recover(); p != nil {
						defect.Log(a.o.Logger, "application acks: delivery panicked, a defect of hiegw", p, "sender", s)
					}
					a.mu.Lock()
					delete(a.running, s)
					a.mu.Unlock()
				}()
				a.deliver(ctx, s, r)
			}()
		}
		a.refreshPending(ctx)
		select {
		case <-ctx.Done():
			return
		case <-a.wake:
		case <-t.C:
		}
	}
}

// reroute queues the acknowledgements that were kept for want of a route
// of the senders that have one now.
func (a *Acks) reroute(ctx context.Context) {
	for s := range a.Routes() {
		n, err := a.st.RouteAppAcks(ctx, s, true)
		switch {
		case err != nil && ctx.Err() == nil:
			a.o.Logger.Warn("application acks: queue acknowledgements kept without a route", "sender", s, "err", err)
		case n > 0:
			a.o.Logger.Info("application acks kept without a route are queued now that the sender has one", "sender", s, "count", n)
		}
	}
}

func (a *Acks) refreshPending(ctx context.Context) {
	counts, err := a.st.AppAckCounts(ctx)
	if err != nil {
		return
	}
	a.pending.Reset()
	for s := range a.Routes() {
		a.pending.WithLabelValues(s).Set(0)
	}
	for _, c := range counts {
		if c.Status == store.AppAckPending {
			a.pending.WithLabelValues(c.Sender).Set(float64(c.N))
		}
	}
}

// deliver sends sender's due acknowledgements in order over one connection
// until none is due, one cannot be delivered (it is retried later), or ctx
// ends.
func (a *Acks) deliver(ctx context.Context, sender string, r Route) {
	var cl *mllp.Client
	defer func() {
		if cl != nil {
			cl.Close()
		}
	}()
	for ctx.Err() == nil {
		rows, err := a.st.ClaimAppAcks(ctx, sender, a.o.Owner, a.o.Batch, a.lease)
		if err != nil {
			if ctx.Err() == nil {
				a.o.Logger.Warn("application acks: claim", "sender", sender, "err", err)
			}
			return
		}
		if len(rows) == 0 {
			return
		}
		claimed := time.Now()
		for i, row := range rows {
			if ctx.Err() != nil {
				a.release(rows[i:])
				return
			}
			if time.Since(claimed) > a.lease/2 {
				a.release(rows[i:]) // and claim them again, with a fresh lease
				break
			}
			var (
				reply []byte
				err   error
			)
			if cl == nil {
				cl, err = a.dial(ctx, r)
			}
			if err == nil {
				reply, err = a.send(ctx, cl, row.Message)
			}
			var code, reason string
			if err == nil {
				code, reason, err = judge(reply, row.AckControlID)
			}
			if err != nil {
				// Not delivered, or not known to be: the connection is
				// dropped and the acknowledgement sent again later, with
				// the same control id so that the sender can tell.
				if cl != nil {
					cl.Close()
					cl = nil
				}
				a.retry(row, err)
				a.release(rows[i+1:])
				return
			}
			a.settle(row, code, reason)
		}
	}
}

func (a *Acks) dial(ctx context.Context, r Route) (*mllp.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, a.o.ReplyTimeout)
	defer cancel()
	var tc *tls.Config
	if r.TLS != nil {
		tc = r.TLS()
	}
	cl, err := mllp.Dial(dctx, r.Addr, tc)
	if err != nil {
		return nil, err
	}
	cl.Timeout = a.o.ReplyTimeout
	return cl, nil
}

// send writes one acknowledgement and reads the answer; once written, the
// exchange is finished even if ctx ends meanwhile.
func (a *Acks) send(ctx context.Context, cl *mllp.Client, msg []byte) ([]byte, error) {
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), a.o.ReplyTimeout)
	defer cancel()
	return cl.Send(sctx, msg)
}

// judge reads the sender's answer to the acknowledgement whose MSH-10 is
// controlID: its MSA-1 and, for a refusal, the reason it gives. An answer
// that cannot be read or acknowledges another message is an error.
func judge(reply []byte, controlID string) (code, reason string, err error) {
	m, err := hl7.Parse(reply)
	if err != nil {
		return "", "", fmt.Errorf("unreadable answer: %w", err)
	}
	code = m.Get("MSA-1")
	if code == "" {
		return "", "", errors.New("answer has no MSA-1")
	}
	if got := m.Get("MSA-2"); got != controlID {
		return "", "", fmt.Errorf("answer acknowledges control id %q, not %q", got, controlID)
	}
	for _, p := range []string{"ERR-8", "MSA-3", "ERR-3.2", "ERR-1.4.2"} {
		if reason = m.Get(p); reason != "" {
			break
		}
	}
	if len(reason) > 200 {
		reason = reason[:200]
	}
	return code, reason, nil
}

// settle records the sender's answer: CA or AA is a delivery, anything else
// a refusal, which is not sent again.
func (a *Acks) settle(row store.AppAck, code, reason string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var err error
	if code == string(hl7.CommitAccept) || code == string(hl7.AppAccept) {
		err = a.st.MarkAppAckSent(ctx, row.Seq, code)
		a.sent.WithLabelValues(row.Sender).Inc()
	} else {
		if reason == "" {
			reason = "answered " + code
		}
		err = a.st.MarkAppAckRefused(ctx, row.Seq, code, reason)
		a.refused.WithLabelValues(row.Sender).Inc()
		a.o.Logger.Warn("sender refused an application acknowledgement; it is not sent again", "sender", row.Sender,
			"control_id", row.ControlID, "ack_control_id", row.AckControlID, "code", code)
	}
	if err != nil {
		// The row stays claimed until its lease ends, then goes out again.
		a.o.Logger.Error("application acks: record the sender's answer", "sender", row.Sender, "err", err)
	}
}

// retry records a failed delivery and when to try again: MinBackoff doubled
// per earlier attempt, at most MaxBackoff.
func (a *Acks) retry(row store.AppAck, cause error) {
	a.failures.WithLabelValues(row.Sender).Inc()
	wait := backoff(a.o.MinBackoff, a.o.MaxBackoff, row.Attempts)
	a.o.Logger.Warn("application ack not delivered; will retry", "sender", row.Sender, "ack_control_id", row.AckControlID,
		"attempt", row.Attempts+1, "backoff", wait, "err", cause)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.st.MarkAppAckRetry(ctx, row.Seq, cause.Error(), time.Now().Add(wait)); err != nil {
		a.o.Logger.Error("application acks: record a failed delivery", "sender", row.Sender, "err", err)
	}
}

func (a *Acks) release(rows []store.AppAck) {
	if len(rows) == 0 {
		return
	}
	seqs := make([]int64, len(rows))
	for i, r := range rows {
		seqs[i] = r.Seq
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := a.st.ReleaseAppAcks(ctx, a.o.Owner, seqs); err != nil {
		a.o.Logger.Warn("application acks: release claims; they are taken again when the lease ends", "err", err)
	}
}

// backoff is the wait after a failed attempt when attempts failed before:
// lo doubled per earlier attempt, at most hi.
func backoff(lo, hi time.Duration, attempts int) time.Duration {
	wait := lo
	for i := 0; i < attempts && wait < hi; i++ {
		wait *= 2
	}
	return min(wait, hi)
}

package pipeline

import (
	"context"
	"time"
)

// Replicas that share one PostgreSQL database all receive, but only one at a
// time processes: the one holding the processing lease. Processing twice,
// or one sender's messages on two replicas at once, would break the order
// a sender's updates must be applied in. The holder renews the lease every
// third of its time to live; the others stand by (their gate stays shut)
// and ask as often, taking the lease once it expires or is released. Each
// processing transaction checks the lease and keeps it locked until it
// commits (store.Tx.CheckLease), so a replica that lost the lease (paused,
// cut off from the database) commits nothing after another took over; and
// an envelope that another replica processed meanwhile is not committed
// again (store.ErrAlreadyProcessed).

// LeaseStore keeps the processing lease.
type LeaseStore interface {
	HoldLease(ctx context.Context, name, owner string, ttl time.Duration) (held bool, holder string, err error)
	ReleaseLease(ctx context.Context, name, owner string) error
}

// Lease configures the processing lease.
type Lease struct {
	Store LeaseStore
	Name  string        // default "processing"
	Owner string        // this process, unique among the replicas
	TTL   time.Duration // default 15s
}

// keepLease holds or waits for the lease until ctx ends, opening the gate
// while it is held and shutting it otherwise.
func (p *Pipeline) keepLease(ctx context.Context) {
	l := p.o.Lease
	every := l.TTL / 3
	var heldUntil time.Time // when a lease renewed before now runs out, at the latest
	holder := ""
	for {
		asked := time.Now()
		held, who, err := l.Store.HoldLease(ctx, l.Name, l.Owner, l.TTL)
		switch {
		case ctx.Err() != nil:
			return
		case err != nil:
			p.o.Logger.Warn("pipeline: renew the processing lease", "err", err)
			if time.Now().After(heldUntil) {
				p.standBy(true)
			}
		case held:
			heldUntil = asked.Add(l.TTL)
			if p.standBy(false) {
				p.o.Logger.Info("pipeline: holding the processing lease", "owner", l.Owner)
			}
		default:
			heldUntil = time.Time{}
			if p.standBy(true) || who != holder {
				p.o.Logger.Info("pipeline: standing by; another replica holds the processing lease", "holder", who)
			}
			holder = who
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(every):
		}
	}
}

// standBy shuts or opens the gate for the lease; it tells whether that
// changed anything. Taking the lease over makes the dispatcher read every
// pending envelope again: what this replica skipped while standing by, or
// gave up when it lost the lease, is older than its cursor.
func (p *Pipeline) standBy(on bool) bool {
	changed := false
	p.setHold(func(s *pauseState) {
		changed = s.standby != on
		s.standby = on
	})
	if changed && !on {
		p.Rescan()
	}
	return changed
}

// releaseLease gives the lease up at shutdown, so another replica takes it
// over at once rather than after its time to live.
func (p *Pipeline) releaseLease() {
	l := p.o.Lease
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := l.Store.ReleaseLease(ctx, l.Name, l.Owner); err != nil {
		p.o.Logger.Warn("pipeline: release the processing lease", "err", err)
	}
}

package pipeline

import (
	"context"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
)

// Replicas that share one PostgreSQL database all receive; processing is
// split between them by sender. Senders hash to one of Partitions
// partitions, and a replica processes a partition's envelopes only while it
// holds the partition's lease, so that no envelope is processed twice and
// one sender's messages are applied in the order received. Each replica
// keeps a member lease alive and, every third of the lease's time to live,
// renews its partitions and evens them out: with n replicas alive each
// holds about Partitions/n, taking free or expired ones and giving back what
// is over its share. A replica that stops renewing (a crash, a network cut)
// loses its partitions once their leases expire; a clean shutdown gives them
// back at once.
//
// Each processing transaction checks the leases of the partitions it
// touches and keeps them locked until it commits (store.Tx.CheckLease), so a
// replica that lost a partition commits nothing of it afterwards, and an
// envelope another replica processed meanwhile is not committed again
// (store.ErrAlreadyProcessed).

// Partitions is how many parts the senders are split into for processing on
// several replicas.
const Partitions = 16

// LeaseStore keeps the processing leases.
type LeaseStore interface {
	HoldLease(ctx context.Context, name, owner string, ttl time.Duration) (held bool, holder string, err error)
	ReleaseLease(ctx context.Context, name, owner string) error
	// LiveLeases counts the unexpired leases whose names start with prefix.
	LiveLeases(ctx context.Context, prefix string) (int, error)
}

// Lease configures the processing leases.
type Lease struct {
	Store LeaseStore
	Name  string        // prefix of the leases' names; default "processing"
	Owner string        // this process, unique among the replicas
	TTL   time.Duration // default 15s

	names [Partitions]string // the partitions' lease names (New)
}

// LeaseName is the name of the lease that covers sender's envelopes.
func LeaseName(name, sender string) string { return partitionName(name, partitionOf(sender)) }

func partitionName(name string, i int) string { return name + "/" + strconv.Itoa(i) }

// partitionOf is sender's partition: senders hash to partitions as they
// hash to lanes.
func partitionOf(sender string) int { return laneOf(sender, Partitions) }

func (l *Lease) partition(i int) string { return l.names[i] }
func (l *Lease) member() string         { return l.Name + "/member/" + l.Owner }

// leases is what a pipeline holds.
type leases struct {
	mu    sync.Mutex
	until [Partitions]time.Time // a held partition's lease runs at least this long
	wake  chan struct{}         // an operator paused or resumed: balance now
}

// owns tells whether this pipeline may process sender's envelopes now.
func (p *Pipeline) owns(sender string) bool {
	if p.o.Lease == nil {
		return true
	}
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	return time.Now().Before(p.leases.until[partitionOf(sender)])
}

// Partitions tells how many sender partitions this pipeline processes
// (all of them without leases).
func (p *Pipeline) Partitions() int {
	if p.o.Lease == nil {
		return Partitions
	}
	p.leases.mu.Lock()
	defer p.leases.mu.Unlock()
	n, now := 0, time.Now()
	for _, u := range p.leases.until {
		if now.Before(u) {
			n++
		}
	}
	return n
}

// keepLease holds, renews, takes and gives back partitions until ctx ends,
// shutting the gate while it holds none.
func (p *Pipeline) keepLease(ctx context.Context) {
	l := p.o.Lease
	// Each replica tries the partitions in an order of its own, so that
	// replicas starting together do not all reach for the same ones.
	order := make([]int, Partitions)
	for i := range order {
		order[i] = (i + partitionOf(l.Owner)) % Partitions
	}
	for {
		p.safeBalance(ctx, order)
		select {
		case <-ctx.Done():
			return
		case <-p.leases.wake:
		case <-time.After(l.TTL / 3):
		}
	}
}

// safeBalance is balance under a recover: a panic (a defect of hiegw) ends
// that round, logged with its stack, like a failed renewal; the next round
// tries again, and leases not renewed meanwhile expire for other replicas
// to take.
func (p *Pipeline) safeBalance(ctx context.Context, order []int) {
	defer defect.Recover(p.o.Logger, "pipeline: a lease round panicked, a defect of hiegw", nil)
	p.balance(ctx, order)
}

// balance is one round of keepLease.
func (p *Pipeline) balance(ctx context.Context, order []int) {
	l := p.o.Lease
	share := Partitions
	if p.Paused() {
		// A paused replica processes nothing: its partitions go to the
		// others, and it does not count among them.
		share = 0
		if err := l.Store.ReleaseLease(ctx, l.member(), l.Owner); err != nil {
			p.o.Logger.Warn("pipeline: give back the processing member lease", "err", err)
		}
	} else if _, _, err := l.Store.HoldLease(ctx, l.member(), l.Owner, l.TTL); err != nil {
		p.o.Logger.Warn("pipeline: renew the processing member lease", "err", err)
	} else if n, err := l.Store.LiveLeases(ctx, l.Name+"/member/"); err != nil {
		p.o.Logger.Warn("pipeline: count the processing replicas", "err", err)
	} else if n > 1 {
		share = (Partitions + n - 1) / n
	}
	p.leases.mu.Lock()
	until := p.leases.until
	p.leases.mu.Unlock()
	before := p.Partitions()
	gained, held := false, 0
	for _, i := range order {
		now := time.Now()
		mine := now.Before(until[i])
		if !mine && held >= share {
			continue
		}
		if mine && held >= share {
			// Over this replica's share: give it back for another to take.
			if err := l.Store.ReleaseLease(ctx, l.partition(i), l.Owner); err != nil {
				p.o.Logger.Warn("pipeline: give back a processing partition", "partition", i, "err", err)
				held++
				continue
			}
			until[i] = time.Time{}
			continue
		}
		ok, _, err := l.Store.HoldLease(ctx, l.partition(i), l.Owner, l.TTL)
		switch {
		case err != nil:
			if ctx.Err() == nil {
				p.o.Logger.Warn("pipeline: renew a processing partition", "partition", i, "err", err)
			}
			// A lease renewed earlier holds until it runs out.
		case ok:
			gained = gained || !mine
			until[i] = now.Add(l.TTL)
		default:
			until[i] = time.Time{}
		}
		if time.Now().Before(until[i]) {
			held++
		}
	}
	if ctx.Err() != nil {
		return
	}
	p.leases.mu.Lock()
	p.leases.until = until
	p.leases.mu.Unlock()
	if after := p.Partitions(); after != before {
		p.o.Logger.Info("pipeline: processing partitions", "held", after, "of", Partitions, "share", share)
	}
	p.standBy(held == 0)
	if gained {
		// Envelopes of a partition just taken are older than the cursor.
		p.Rescan()
	}
}

// standBy shuts or opens the gate for the leases.
func (p *Pipeline) standBy(on bool) {
	p.setHold(func(s *pauseState) { s.standby = on })
}

// leaseNames are the leases covering envs, each once.
func (p *Pipeline) leaseNames(envs []prepared) []string {
	var names []string
	for _, pe := range envs {
		if n := p.o.Lease.partition(partitionOf(pe.e.Sender)); !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	return names
}

// releaseLease gives the partitions and the member lease back at shutdown,
// so that other replicas take them over at once rather than after their
// time to live.
func (p *Pipeline) releaseLease() {
	l := p.o.Lease
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.leases.mu.Lock()
	p.leases.until = [Partitions]time.Time{}
	p.leases.mu.Unlock()
	// Every partition, not only those this pipeline knows it holds: a round
	// of balance cut short by the shutdown may have taken one more.
	names := []string{l.member()}
	for i := range Partitions {
		names = append(names, l.partition(i))
	}
	for _, n := range names {
		if err := l.Store.ReleaseLease(ctx, n, l.Owner); err != nil {
			p.o.Logger.Warn("pipeline: release a processing lease", "lease", n, "err", err)
		}
	}
}

package pipeline

import "context"

// pauseState holds what keeps a pipeline from processing: an operator's
// pause, or standing by while other replicas hold every processing partition
// (lease.go). While held, no envelope starts processing (what a lane holds
// waits with the rest). Intake goes on receiving, storing and
// acknowledging, so an operator can hold processing during a downstream
// outage or a mapping fix without refusing senders.
type pauseState struct {
	paused  bool          // by an operator
	standby bool          // other replicas hold every processing partition
	resumed chan struct{} // closed once neither holds
}

func (s pauseState) held() bool { return s.paused || s.standby }

// setHold changes the pause state with fn, opening or closing the gate as
// the change requires.
func (p *Pipeline) setHold(fn func(*pauseState)) {
	p.pmu.Lock()
	was := p.pause.held()
	fn(&p.pause)
	now := p.pause.held()
	switch {
	case now && !was:
		p.pause.resumed = make(chan struct{})
	case was && !now:
		close(p.pause.resumed)
		p.pause.resumed = nil
	}
	p.pausedGauge.Set(b2f(p.pause.paused))
	p.standbyGauge.Set(b2f(p.pause.standby))
	p.pmu.Unlock()
	if was && !now {
		p.Notify()
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Pause stops processing after the runs under way; it is idempotent. With
// processing leases (several replicas) the replica's partitions go to the
// others: pause every replica to hold processing altogether.
func (p *Pipeline) Pause() {
	p.setHold(func(s *pauseState) { s.paused = true })
	p.wakeLeases()
}

// Resume lets processing go on; it is idempotent.
func (p *Pipeline) Resume() {
	p.setHold(func(s *pauseState) { s.paused = false })
	p.wakeLeases()
}

// wakeLeases makes the lease keeper balance at once.
func (p *Pipeline) wakeLeases() {
	select {
	case p.leases.wake <- struct{}{}:
	default:
	}
}

// Paused tells whether an operator has paused processing.
func (p *Pipeline) Paused() bool {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.pause.paused
}

// gate waits while the pipeline is paused or standing by; false means ctx
// ended first.
func (p *Pipeline) gate(ctx context.Context) bool {
	for {
		p.pmu.Lock()
		st := p.pause
		p.pmu.Unlock()
		if !st.held() {
			return true
		}
		select {
		case <-st.resumed:
		case <-ctx.Done():
			return false
		}
	}
}

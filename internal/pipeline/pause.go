package pipeline

import "context"

// pauseState holds a pipeline's pause: while paused, no envelope starts
// processing (what a lane holds waits with the rest). Intake goes on
// receiving, storing and acknowledging, so an operator can hold processing
// during a downstream outage or a mapping fix without refusing senders.
type pauseState struct {
	paused  bool
	resumed chan struct{} // closed at Resume
}

// Pause stops processing after the runs under way; it is idempotent.
func (p *Pipeline) Pause() {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	if !p.pause.paused {
		p.pause = pauseState{paused: true, resumed: make(chan struct{})}
		p.pausedGauge.Set(1)
	}
}

// Resume lets processing go on; it is idempotent.
func (p *Pipeline) Resume() {
	p.pmu.Lock()
	if p.pause.paused {
		close(p.pause.resumed)
		p.pause = pauseState{}
		p.pausedGauge.Set(0)
	}
	p.pmu.Unlock()
	p.Notify()
}

// Paused tells whether processing is paused.
func (p *Pipeline) Paused() bool {
	p.pmu.Lock()
	defer p.pmu.Unlock()
	return p.pause.paused
}

// gate waits while the pipeline is paused; false means ctx ended first.
func (p *Pipeline) gate(ctx context.Context) bool {
	for {
		p.pmu.Lock()
		st := p.pause
		p.pmu.Unlock()
		if !st.paused {
			return true
		}
		select {
		case <-st.resumed:
		case <-ctx.Done():
			return false
		}
	}
}

package mpi

import (
	"context"
	"fmt"
)

// change collects the entries one operation rewrites, so that they are
// written, audited and turned into events together.
type change struct {
	ix     *Index
	before []*Entry // parallel to after; nil for a new entry
	after  []Entry
	tasks  []Task
	taskID string // review task the operation decided, for the audit entry
	undoes string
}

func newChange(ix *Index) *change { return &change{ix: ix} }

func (c *change) put(before *Entry, after Entry) {
	if before != nil {
		b := *before
		before = &b
	}
	c.before = append(c.before, before)
	c.after = append(c.after, after)
}

type move struct{ from, to string }

// events derives identity events from the entries' enterprise ids before
// and after, reading current memberships from the store (before writing).
func (c *change) events(ctx context.Context) ([]Event, error) {
	st := c.ix.store
	changing := map[Key]bool{}
	for i := range c.after {
		changing[c.after[i].Key()] = true
	}
	groups := map[move][]Key{}
	var order []move
	var evs []Event
	for i := range c.after {
		a, b := &c.after[i], c.before[i]
		from := ""
		if b != nil && b.Active() {
			from = b.EnterpriseID
		}
		if b != nil && !sameRecord(&b.Record, &a.Record) {
			evs = append(evs, Event{Type: EventUpdated, EnterpriseID: a.EnterpriseID, Keys: []Key{a.Key()}})
		}
		leaves := from != "" && !a.Active()
		if from == a.EnterpriseID && !leaves {
			continue
		}
		m := move{from, a.EnterpriseID}
		if _, ok := groups[m]; !ok {
			order = append(order, m)
		}
		groups[m] = append(groups[m], a.Key())
	}
	// remaining counts the members of an enterprise that are not part of
	// this change, plus those of this change that stay or arrive active.
	remaining := func(eid string) (int, error) {
		ms, err := st.Members(ctx, eid)
		if err != nil {
			return 0, fmt.Errorf("members: %w", err)
		}
		n := 0
		for i := range ms {
			if !changing[ms[i].Key()] {
				n++
			}
		}
		return n, nil
	}
	// fresh tells whether eid was minted in this change: the own id of an
	// entry seen for the first time, which no stored entry can hold.
	fresh := func(eid string) bool {
		for i := range c.after {
			if c.before[i] == nil && c.after[i].OwnID == eid {
				return true
			}
		}
		return false
	}
	for _, m := range order {
		keys := groups[m]
		toBefore := 0
		if !fresh(m.to) {
			n, err := remaining(m.to)
			if err != nil {
				return nil, err
			}
			toBefore = n
		}
		// Entries of this change that were already in m.to count as existing.
		for i, b := range c.before {
			if b != nil && b.Active() && b.EnterpriseID == m.to && c.after[i].EnterpriseID == m.to {
				toBefore++
			}
		}
		if m.from == "" {
			t := EventCreated
			if toBefore > 0 {
				t = EventLinked
			}
			evs = append(evs, Event{Type: t, EnterpriseID: m.to, Keys: keys})
			continue
		}
		if m.from == m.to {
			evs = append(evs, Event{Type: EventMerged, EnterpriseID: m.to, From: m.from, Keys: keys})
			continue
		}
		fromAfter, err := remaining(m.from)
		if err != nil {
			return nil, err
		}
		for i := range c.after {
			if a := &c.after[i]; a.Active() && a.EnterpriseID == m.from {
				fromAfter++
			}
		}
		t := EventLinked
		switch {
		case toBefore == 0:
			t = EventSplit
		case fromAfter == 0:
			t = EventMerged
		}
		evs = append(evs, Event{Type: t, EnterpriseID: m.to, From: m.from, Keys: keys})
	}
	return evs, nil
}

// commit writes the change, its tasks and its audit entry, and returns the
// events and the audit entry's id.
func (c *change) commit(ctx context.Context, action, actor, reason string) ([]Event, string, error) {
	evs, err := c.events(ctx)
	if err != nil {
		return nil, "", err
	}
	st := c.ix.store
	a := AuditEntry{
		ID: c.ix.cfg.NewID(), At: c.ix.cfg.Now(), Actor: actor, Action: action, Reason: reason,
		Events: evs, TaskID: c.taskID, Undoes: c.undoes,
	}
	for i := range c.after {
		e := &c.after[i]
		if b := c.before[i]; b != nil {
			e.Version = b.Version + 1
			a.Before = append(a.Before, *b)
		} else {
			e.Version = 1
		}
		var blocks []string
		if e.Active() {
			blocks = blockKeys(e.features())
		}
		if err := st.Put(ctx, *e, blocks); err != nil {
			return nil, "", fmt.Errorf("put entry: %w", err)
		}
		a.Keys = append(a.Keys, e.Key())
		a.After = append(a.After, *e)
	}
	for _, t := range c.tasks {
		if err := st.PutTask(ctx, t); err != nil {
			return nil, "", fmt.Errorf("put task: %w", err)
		}
	}
	if err := st.AppendAudit(ctx, a); err != nil {
		return nil, "", fmt.Errorf("append audit: %w", err)
	}
	return evs, a.ID, nil
}

package mpi

import (
	"context"
	"fmt"
	"slices"
	"time"
)

// Merge applies an ADT^A40 within one assigning authority: the prior MRN is
// merged into the survivor MRN. The prior entry becomes inactive and later
// messages under it resolve to the survivor; when the two were in different
// enterprise patients, every record of the prior's enterprise patient moves
// to the survivor's. A survivor MRN not seen before is created from the
// prior's demographics. Merging an MRN already merged into the survivor
// changes nothing.
func (ix *Index) Merge(ctx context.Context, authority, priorMRN, survivorMRN, actor, reason string) ([]Event, error) {
	if authority == "" || priorMRN == "" || survivorMRN == "" || priorMRN == survivorMRN {
		return nil, fmt.Errorf("merge: %w", ErrSameAuthority)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	now := ix.cfg.Now()
	pk, sk := Key{authority, priorMRN}, Key{authority, survivorMRN}
	p, ok, err := ix.store.Get(ctx, pk)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("merge: prior: %w", ErrNotFound)
	}
	if !p.Active() {
		if *p.MergedInto == sk {
			return nil, nil
		}
		return nil, fmt.Errorf("merge: prior: %w", ErrMerged)
	}
	s, ok, err := ix.store.Get(ctx, sk)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	ch := newChange(ix)
	link := Link{Method: MethodMerge, Rule: "merge:a40", Actor: actor, At: now}
	if !ok {
		r := p.Record
		r.MRN = survivorMRN
		s = Entry{Record: r, EnterpriseID: p.EnterpriseID, OwnID: ix.cfg.NewID(), Link: link}
		ch.put(nil, s)
	} else if !s.Active() {
		return nil, fmt.Errorf("merge: survivor: %w", ErrMerged)
	}
	if p.EnterpriseID != s.EnterpriseID {
		ms, err := ix.store.Members(ctx, p.EnterpriseID)
		if err != nil {
			return nil, fmt.Errorf("merge: %w", err)
		}
		for _, m := range ms {
			if m.Key() == pk {
				continue
			}
			before := m
			m.EnterpriseID = s.EnterpriseID
			m.Link = link
			ch.put(&before, m)
		}
	}
	before := p
	p.MergedInto = &sk
	p.EnterpriseID = s.EnterpriseID
	p.Link = link
	p.OpenTask = ""
	ch.put(&before, p)
	evs, _, err := ch.commit(ctx, "merge", actor, reason)
	if err != nil {
		return nil, fmt.Errorf("merge: %w", err)
	}
	return evs, nil
}

// active returns the active entry for k, following merges.
func (ix *Index) active(ctx context.Context, k Key) (Entry, error) {
	e, ok, err := ix.store.Get(ctx, k)
	if err != nil {
		return Entry{}, err
	}
	if !ok {
		return Entry{}, ErrNotFound
	}
	if !e.Active() {
		return ix.survivor(ctx, e)
	}
	return e, nil
}

// join moves every active member of from's enterprise patient into into's,
// lifting human non-match declarations between the two groups.
func (ix *Index) join(ctx context.Context, ch *change, from, into Entry, link Link) error {
	if from.EnterpriseID == into.EnterpriseID {
		return nil
	}
	moving, err := ix.store.Members(ctx, from.EnterpriseID)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	staying, err := ix.store.Members(ctx, into.EnterpriseID)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	inGroup := func(ms []Entry, k Key) bool {
		return slices.ContainsFunc(ms, func(e Entry) bool { return e.Key() == k })
	}
	for _, m := range moving {
		before := m
		m.EnterpriseID = into.EnterpriseID
		m.NotSame = slices.DeleteFunc(slices.Clone(m.NotSame), func(k Key) bool { return inGroup(staying, k) })
		if m.Key() == from.Key() {
			m.Link = link
			m.OpenTask = ""
		} else {
			m.Link = Link{Method: link.Method, Rule: link.Rule + ":with-enterprise", Actor: link.Actor, At: link.At}
		}
		ch.put(&before, m)
	}
	for _, m := range staying {
		if !slices.ContainsFunc(m.NotSame, func(k Key) bool { return inGroup(moving, k) }) {
			continue
		}
		before := m
		m.NotSame = slices.DeleteFunc(slices.Clone(m.NotSame), func(k Key) bool { return inGroup(moving, k) })
		ch.put(&before, m)
	}
	return nil
}

// Link is an operator's decision that a and b are the same patient: every
// record of a's enterprise patient joins b's.
func (ix *Index) Link(ctx context.Context, a, b Key, actor, reason string) ([]Event, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ea, err := ix.active(ctx, a)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	eb, err := ix.active(ctx, b)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	ch := newChange(ix)
	now := ix.cfg.Now()
	if err := ix.join(ctx, ch, ea, eb, Link{Method: MethodOperator, Rule: "operator-link", Actor: actor, At: now}); err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	if len(ch.after) == 0 {
		return nil, nil
	}
	evs, _, err := ch.commit(ctx, "link", actor, reason)
	if err != nil {
		return nil, fmt.Errorf("link: %w", err)
	}
	return evs, nil
}

// Unlink is an operator's decision that k is not the patient it is linked
// to: k leaves its enterprise patient for its own original id (or a new one
// if that is taken) and is kept apart from its former co-members.
func (ix *Index) Unlink(ctx context.Context, k Key, actor, reason string) ([]Event, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e, err := ix.active(ctx, k)
	if err != nil {
		return nil, fmt.Errorf("unlink: %w", err)
	}
	ch := newChange(ix)
	if err := ix.split(ctx, ch, e, Link{Method: MethodOperator, Rule: "operator-unlink", Actor: actor, At: ix.cfg.Now()}); err != nil {
		return nil, fmt.Errorf("unlink: %w", err)
	}
	evs, _, err := ch.commit(ctx, "unlink", actor, reason)
	if err != nil {
		return nil, fmt.Errorf("unlink: %w", err)
	}
	return evs, nil
}

// split takes e out of its enterprise patient and records the non-match with
// every former co-member, both ways.
func (ix *Index) split(ctx context.Context, ch *change, e Entry, link Link) error {
	ms, err := ix.store.Members(ctx, e.EnterpriseID)
	if err != nil {
		return fmt.Errorf("members: %w", err)
	}
	if len(ms) < 2 {
		return ErrNotLinked
	}
	nid, err := ix.freeID(ctx, e.OwnID, e.EnterpriseID)
	if err != nil {
		return err
	}
	before := e
	e.NotSame = slices.Clone(e.NotSame)
	for _, m := range ms {
		if m.Key() == e.Key() {
			continue
		}
		if !slices.Contains(e.NotSame, m.Key()) {
			e.NotSame = append(e.NotSame, m.Key())
		}
		mb := m
		if !slices.Contains(m.NotSame, e.Key()) {
			m.NotSame = append(slices.Clone(m.NotSame), e.Key())
			ch.put(&mb, m)
		}
	}
	e.EnterpriseID = nid
	e.Link = link
	e.OpenTask = ""
	ch.put(&before, e)
	return nil
}

// Decide closes a review task. A match joins the record's enterprise patient
// into the candidate's; a non-match keeps them apart from now on (splitting
// them if they were linked meanwhile).
func (ix *Index) Decide(ctx context.Context, taskID string, match bool, actor, note string) ([]Event, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	t, ok, err := ix.store.Task(ctx, taskID)
	if err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("decide: %w", ErrTaskNotFound)
	}
	if t.Status != TaskOpen {
		return nil, fmt.Errorf("decide: %w", ErrTaskClosed)
	}
	e, err := ix.active(ctx, t.Key)
	if err != nil {
		return nil, fmt.Errorf("decide: record: %w", err)
	}
	c, err := ix.active(ctx, t.Candidate)
	if err != nil {
		return nil, fmt.Errorf("decide: candidate: %w", err)
	}
	now := ix.cfg.Now()
	ch := newChange(ix)
	ch.taskID = t.ID
	t.DecidedBy, t.DecidedAt, t.Note = actor, now, note
	if match {
		t.Status = TaskMatch
		link := Link{Method: MethodReview, Rule: "review:match", Comparison: &t.Comparison, Actor: actor, At: now}
		if e.EnterpriseID == c.EnterpriseID {
			before := e
			e.Link, e.OpenTask = link, ""
			ch.put(&before, e)
		} else if err := ix.join(ctx, ch, e, c, link); err != nil {
			return nil, fmt.Errorf("decide: %w", err)
		}
	} else {
		t.Status = TaskNonMatch
		link := Link{Method: MethodReview, Rule: "review:non-match", Comparison: &t.Comparison, Actor: actor, At: now}
		if e.EnterpriseID == c.EnterpriseID {
			if err := ix.split(ctx, ch, e, link); err != nil {
				return nil, fmt.Errorf("decide: %w", err)
			}
		} else {
			eb, cb := e, c
			e.NotSame = appendKey(e.NotSame, c.Key())
			c.NotSame = appendKey(c.NotSame, e.Key())
			e.Link, e.OpenTask = link, ""
			ch.put(&eb, e)
			ch.put(&cb, c)
		}
	}
	ch.tasks = append(ch.tasks, t)
	evs, _, err := ch.commit(ctx, "review-"+string(t.Status), actor, note)
	if err != nil {
		return nil, fmt.Errorf("decide: %w", err)
	}
	return evs, nil
}

func appendKey(ks []Key, k Key) []Key {
	if slices.Contains(ks, k) {
		return ks
	}
	return append(slices.Clone(ks), k)
}

// Undo reverses an audited change: every entry it touched returns to its
// state before the change, provided none changed since. A review task the
// change decided is opened again. Changes that created entries cannot be
// undone; unlink the record instead.
func (ix *Index) Undo(ctx context.Context, auditID, actor, reason string) ([]Event, error) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	a, ok, err := ix.store.AuditEntry(ctx, auditID)
	if err != nil {
		return nil, fmt.Errorf("undo: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("undo: %w", ErrNotFound)
	}
	if len(a.Before) != len(a.After) || len(a.After) == 0 {
		return nil, fmt.Errorf("undo: %w", ErrNotReversible)
	}
	ch := newChange(ix)
	ch.undoes = a.ID
	for i, after := range a.After {
		prev := a.Before[i]
		if prev.Key() != after.Key() {
			return nil, fmt.Errorf("undo: %w", ErrNotReversible)
		}
		cur, ok, err := ix.store.Get(ctx, after.Key())
		if err != nil {
			return nil, fmt.Errorf("undo: %w", err)
		}
		if !ok || cur.Version != after.Version {
			return nil, fmt.Errorf("undo: %w", ErrConflict)
		}
		prev.feat = nil
		ch.put(&cur, prev)
	}
	if a.TaskID != "" {
		t, ok, err := ix.store.Task(ctx, a.TaskID)
		if err != nil {
			return nil, fmt.Errorf("undo: %w", err)
		}
		if ok {
			t.Status, t.DecidedBy, t.DecidedAt, t.Note = TaskOpen, "", time.Time{}, ""
			ch.tasks = append(ch.tasks, t)
		}
	}
	evs, _, err := ch.commit(ctx, "undo", actor, reason)
	if err != nil {
		return nil, fmt.Errorf("undo: %w", err)
	}
	return evs, nil
}

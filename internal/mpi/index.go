package mpi

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/google/uuid"
)

// Errors returned by Index.
var (
	ErrNoKey         = errors.New("record has no assigning authority or MRN")
	ErrNotFound      = errors.New("no such entry")
	ErrTaskNotFound  = errors.New("no such review task")
	ErrTaskClosed    = errors.New("review task already decided")
	ErrNotLinked     = errors.New("entry shares its enterprise patient with no other record")
	ErrMerged        = errors.New("entry was merged into another")
	ErrConflict      = errors.New("entries changed since the audited change")
	ErrNotReversible = errors.New("audited change cannot be reversed")
	ErrSameAuthority = errors.New("merge needs two MRNs of one assigning authority")
)

// Config holds the matcher settings. The zero value is not usable; start
// from DefaultConfig.
type Config struct {
	// Params are the m and u probabilities per field and agreement level.
	Params Params
	// Upper and Lower are the score thresholds: at or above Upper a record is
	// linked, at or above Lower (and below Upper) a review task is opened.
	Upper, Lower float64
	// LocationCap caps the summed weight of address and phone fields, which
	// a household shares; 0 disables the cap.
	LocationCap float64
	// TrustedTypes are identifier types (PID-3.5, e.g. an HIE-wide id) that
	// link records across senders by themselves.
	TrustedTypes []string
	// MaxBlock skips blocking keys shared by more entries than this: such a
	// key says too little to be worth the comparisons.
	MaxBlock int
	// Actor names the matcher in the audit log.
	Actor string
	// Now and NewID may be replaced in tests.
	Now   func() time.Time
	NewID func() string
}

// DefaultConfig returns the settings used by the gateway and by Eval.
func DefaultConfig() Config {
	return Config{
		Params:      DefaultParams(),
		Upper:       20,
		Lower:       10,
		LocationCap: 12,
		MaxBlock:    400,
		Actor:       "mpi",
		Now:         time.Now,
		NewID:       func() string { return uuid.Must(uuid.NewV7()).String() },
	}
}

// Validate reports the first unusable setting, naming it.
func (c *Config) Validate() error {
	if err := c.Params.Validate(); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	if !(c.Upper > c.Lower) {
		return errors.New("config: upper threshold must exceed lower threshold")
	}
	if c.MaxBlock < 1 {
		return errors.New("config: max block must be positive")
	}
	if c.Now == nil || c.NewID == nil {
		return errors.New("config: now and new id functions are required")
	}
	if c.Actor == "" {
		return errors.New("config: actor is required")
	}
	return nil
}

// Index is the master patient index. Its methods are safe for concurrent use;
// they are serialised, which keeps two senders' records from racing into two
// enterprise patients within one process.
type Index struct {
	cfg     Config
	sc      scorer
	trusted map[string]bool
	store   Store
	mu      *sync.Mutex
}

// New returns an index over st.
func New(st Store, cfg Config) (*Index, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("new index: %w", err)
	}
	ix := &Index{cfg: cfg, sc: scorer{w: cfg.Params.weights(), locationCap: cfg.LocationCap}, trusted: map[string]bool{}, store: st, mu: &sync.Mutex{}}
	for _, t := range cfg.TrustedTypes {
		ix.trusted[t] = true
	}
	return ix, nil
}

// WithStore returns an index sharing ix's settings and lock that uses st,
// typically a Store bound to one database transaction.
func (ix *Index) WithStore(st Store) *Index {
	cp := *ix
	cp.store = st
	return &cp
}

// Config returns the index settings.
func (ix *Index) Config() Config { return ix.cfg }

// Entry returns the stored entry for k, following nothing.
func (ix *Index) Entry(ctx context.Context, k Key) (Entry, error) {
	e, ok, err := ix.store.Get(ctx, k)
	if err != nil {
		return Entry{}, fmt.Errorf("get entry: %w", err)
	}
	if !ok {
		return Entry{}, fmt.Errorf("get entry: %w", ErrNotFound)
	}
	return e, nil
}

// Resolve finds or creates the enterprise patient of r. A known MRN resolves
// to its entry (re-evaluated when its demographics changed), a merged MRN to
// its survivor; a new one is linked by trusted identifier or by score, sent to
// review, or made a new enterprise patient.
func (ix *Index) Resolve(ctx context.Context, r Record) (Decision, error) {
	if r.Authority == "" || r.MRN == "" {
		return Decision{}, fmt.Errorf("resolve: %w", ErrNoKey)
	}
	ix.mu.Lock()
	defer ix.mu.Unlock()
	e, ok, err := ix.store.Get(ctx, r.Key())
	if err != nil {
		return Decision{}, fmt.Errorf("resolve: %w", err)
	}
	if !ok {
		d, err := ix.create(ctx, r)
		if err != nil {
			return Decision{}, fmt.Errorf("resolve: %w", err)
		}
		return d, nil
	}
	if !e.Active() {
		s, err := ix.survivor(ctx, e)
		if err != nil {
			return Decision{}, fmt.Errorf("resolve: %w", err)
		}
		return Decision{Key: s.Key(), EnterpriseID: s.EnterpriseID, Outcome: LinkedByIdentifier, Rule: "merged-mrn"}, nil
	}
	d, err := ix.update(ctx, e, r)
	if err != nil {
		return Decision{}, fmt.Errorf("resolve: %w", err)
	}
	return d, nil
}

// survivor follows MergedInto links from e to the active entry.
func (ix *Index) survivor(ctx context.Context, e Entry) (Entry, error) {
	for i := 0; i < 16 && !e.Active(); i++ {
		next, ok, err := ix.store.Get(ctx, *e.MergedInto)
		if err != nil {
			return Entry{}, err
		}
		if !ok {
			return Entry{}, fmt.Errorf("merged entry's survivor: %w", ErrNotFound)
		}
		e = next
	}
	if !e.Active() {
		return Entry{}, errors.New("merge chain longer than 16")
	}
	return e, nil
}

// BlockKeys returns the blocking keys under which r is filed and by which
// its candidates are found, so that a store can lock them before a
// resolution reads them.
func BlockKeys(r Record) []string { return blockKeys(newFeatures(&r)) }

// blockKeys returns the blocking keys of a record: each is a cheap,
// error-tolerant summary that true matches usually share.
func blockKeys(f *features) []string {
	keys := make([]string, 0, 8)
	year := ""
	if len(f.dob) == 8 {
		year = f.dob[:4]
		keys = append(keys, "d:"+f.dob)
	}
	if f.familyCode != "" && year != "" {
		keys = append(keys, "fy:"+f.familyCode+":"+year)
	}
	if f.givenCode != "" && year != "" {
		keys = append(keys, "gy:"+f.givenCode+":"+year)
	}
	if f.givenCode != "" && f.familyCode != "" {
		a, b := f.givenCode, f.familyCode
		if b < a {
			a, b = b, a
		}
		keys = append(keys, "gf:"+a+":"+b)
	}
	if f.nid != "" {
		keys = append(keys, "n:"+f.nid)
	}
	if f.familyCode != "" && f.postcode != "" {
		keys = append(keys, "fp:"+f.familyCode+":"+f.postcode)
	}
	if f.givenCode != "" && f.postcode != "" {
		keys = append(keys, "gp:"+f.givenCode+":"+f.postcode)
	}
	if f.phone != "" {
		keys = append(keys, "t:"+f.phone)
	}
	return keys
}

// conflicts names the identity fields whose outright disagreement keeps a
// high score from linking by itself. Twins share a family name, a birth date
// and an address, and often hold consecutive national ids (one edit apart):
// a given-name conflict is lifted only by an exact national id. A father and
// son of one name and address differ in birth date and hold unrelated
// national ids: a birth-date conflict is lifted by a national id that agrees
// exactly or up to one typing error.
func conflicts(c *Comparison) string {
	var given, dob, nid Level
	for _, f := range c.Fields {
		switch f.Field {
		case FieldGiven:
			given = f.Level
		case FieldBirthDate:
			dob = f.Level
		case FieldNationalID:
			nid = f.Level
		}
	}
	givenConflict := given == LevelDisagree && nid != LevelExact
	dobConflict := dob == LevelDisagree && nid != LevelExact && nid != LevelTypo
	switch {
	case givenConflict && dobConflict:
		return "given+birth_date"
	case givenConflict:
		return "given"
	case dobConflict:
		return "birth_date"
	}
	return ""
}

// nearMiss is the score from which the best comparison of a record made a
// new enterprise patient is kept with its link; below it the candidate was
// plainly someone else, and the comparison is only returned in the Decision.
const nearMiss = 0.0

// scored is the best comparison per enterprise patient, best first.
type scored struct {
	best     []Comparison // one per enterprise, sorted
	compared int
}

// score compares e with its blocked candidates and, when own is set, with
// every member of e's current enterprise patient. Entries declared different
// from e exclude their whole enterprise patient.
func (ix *Index) score(ctx context.Context, e *Entry, own bool) (scored, error) {
	self := e.Key()
	f := e.features()
	cands, err := ix.store.Candidates(ctx, blockKeys(f), ix.cfg.MaxBlock)
	if err != nil {
		return scored{}, fmt.Errorf("candidates: %w", err)
	}
	if own && e.EnterpriseID != "" {
		ms, err := ix.store.Members(ctx, e.EnterpriseID)
		if err != nil {
			return scored{}, fmt.Errorf("members: %w", err)
		}
		cands = append(cands, ms...)
	}
	excluded := map[string]bool{}
	for _, k := range e.NotSame {
		n, ok, err := ix.store.Get(ctx, k)
		if err != nil {
			return scored{}, fmt.Errorf("get: %w", err)
		}
		if ok && n.Active() {
			excluded[n.EnterpriseID] = true
		}
	}
	for i := range cands {
		if cands[i].notSame(self) {
			excluded[cands[i].EnterpriseID] = true
		}
	}
	type kept struct {
		key   Key
		total float64
		v     levelVec
	}
	best := map[string]*kept{}
	seen := map[Key]bool{self: true}
	var s scored
	for i := range cands {
		c := &cands[i]
		k := c.Key()
		if seen[k] || excluded[c.EnterpriseID] {
			continue
		}
		seen[k] = true
		v := compareLevels(f, c.features(), ix.sc.w)
		total := ix.sc.total(&v)
		s.compared++
		if b, ok := best[c.EnterpriseID]; ok && b.total >= total {
			continue
		}
		best[c.EnterpriseID] = &kept{key: k, total: total, v: v}
	}
	for eid, b := range best {
		s.best = append(s.best, Comparison{Candidate: b.key, EnterpriseID: eid, Score: b.total, Fields: ix.sc.explain(&b.v)})
	}
	sortComparisons(s.best)
	return s, nil
}

// create handles a record whose key is not yet known.
func (ix *Index) create(ctx context.Context, r Record) (Decision, error) {
	now := ix.cfg.Now()
	e := Entry{Record: r, OwnID: ix.cfg.NewID()}
	e.EnterpriseID = e.OwnID
	d := Decision{Key: r.Key()}
	ch := newChange(ix)

	// Trusted identifiers shared with other senders' records.
	eids, idType, err := ix.trustedMatches(ctx, &r)
	if err != nil {
		return Decision{}, err
	}
	switch {
	case len(eids) == 1:
		e.EnterpriseID = eids[0]
		e.Link = Link{Method: MethodIdentifier, Rule: "trusted-identifier:" + idType, Actor: ix.cfg.Actor, At: now}
		d.Outcome, d.Rule = LinkedByIdentifier, e.Link.Rule
		ch.put(nil, e)
		return ix.finish(ctx, ch, d, "link", nil)
	case len(eids) > 1:
		e.Link = Link{Method: MethodNew, Rule: "conflicting-trusted-identifiers", Actor: ix.cfg.Actor, At: now}
		d.Outcome, d.Rule = Review, e.Link.Rule
		t := ix.newTask(e.Key(), Comparison{EnterpriseID: eids[0]}, "trusted identifier "+idType+" is shared by several enterprise patients", now)
		ms, err := ix.store.Members(ctx, eids[0])
		if err != nil {
			return Decision{}, err
		}
		if len(ms) > 0 {
			t.Candidate = ms[0].Key()
		}
		e.Link.Rule = d.Rule
		ch.put(nil, e)
		return ix.finish(ctx, ch, d, "create", &t)
	}

	s, err := ix.score(ctx, &e, false)
	if err != nil {
		return Decision{}, err
	}
	d.Compared = s.compared
	var task *Task
	conflict := ""
	if len(s.best) > 0 {
		conflict = conflicts(&s.best[0])
	}
	switch {
	case len(s.best) > 0 && s.best[0].Score >= ix.cfg.Upper && conflict != "":
		b := s.best[0]
		e.Link = Link{Method: MethodNew, Rule: "score>=upper:conflict:" + conflict, Comparison: &b, Actor: ix.cfg.Actor, At: now}
		t := ix.newTask(e.Key(), b, "high score but "+conflict+" disagree", now)
		task = &t
		d.Outcome = Review
	case len(s.best) > 0 && s.best[0].Score >= ix.cfg.Upper:
		b := s.best[0]
		e.EnterpriseID = b.EnterpriseID
		e.Link = Link{Method: MethodScore, Rule: "score>=upper", Comparison: &b, Actor: ix.cfg.Actor, At: now}
		d.Outcome = LinkedByScore
	case len(s.best) > 0 && s.best[0].Score >= ix.cfg.Lower:
		b := s.best[0]
		e.Link = Link{Method: MethodNew, Rule: "lower<=score<upper", Comparison: &b, Actor: ix.cfg.Actor, At: now}
		t := ix.newTask(e.Key(), b, "score between thresholds", now)
		task = &t
		d.Outcome = Review
	default:
		e.Link = Link{Method: MethodNew, Rule: "score<lower", Actor: ix.cfg.Actor, At: now}
		if len(s.best) > 0 {
			b := s.best[0]
			d.Best = &b
			if b.Score >= nearMiss {
				e.Link.Comparison = &b
			}
		}
		d.Outcome = NewPatient
	}
	d.Rule = e.Link.Rule
	if e.Link.Comparison != nil {
		d.Best = e.Link.Comparison
	}
	ch.put(nil, e)
	return ix.finish(ctx, ch, d, "resolve", task)
}

// finish commits ch (with an optional new task) and completes d.
func (ix *Index) finish(ctx context.Context, ch *change, d Decision, action string, task *Task) (Decision, error) {
	if task != nil {
		ch.tasks = append(ch.tasks, *task)
		d.TaskID = task.ID
		ch.after[len(ch.after)-1].OpenTask = task.ID
	}
	evs, _, err := ch.commit(ctx, action, ix.cfg.Actor, d.Rule)
	if err != nil {
		return Decision{}, err
	}
	d.EnterpriseID = ch.after[len(ch.after)-1].EnterpriseID
	d.Events = evs
	return d, nil
}

func (ix *Index) newTask(k Key, c Comparison, reason string, now time.Time) Task {
	return Task{ID: ix.cfg.NewID(), Key: k, Candidate: c.Candidate, Comparison: c, Reason: reason, Status: TaskOpen, Created: now}
}

// trustedMatches returns the distinct enterprise ids of active entries that
// share a trusted identifier with r.
func (ix *Index) trustedMatches(ctx context.Context, r *Record) ([]string, string, error) {
	if len(ix.trusted) == 0 {
		return nil, "", nil
	}
	var eids []string
	typ := ""
	for _, id := range r.Identifiers {
		if !ix.trusted[id.Type] || id.Value == "" {
			continue
		}
		keys, err := ix.store.Lookup(ctx, id)
		if err != nil {
			return nil, "", fmt.Errorf("lookup identifier: %w", err)
		}
		for _, k := range keys {
			if k == r.Key() {
				continue
			}
			o, ok, err := ix.store.Get(ctx, k)
			if err != nil {
				return nil, "", fmt.Errorf("get: %w", err)
			}
			if !ok {
				continue
			}
			if !o.Active() {
				if o, err = ix.survivor(ctx, o); err != nil {
					return nil, "", err
				}
			}
			if !slices.Contains(eids, o.EnterpriseID) {
				eids = append(eids, o.EnterpriseID)
				typ = id.Type
			}
		}
	}
	return eids, typ, nil
}

// update handles a known, active MRN whose message may carry changed
// demographics (ADT^A08, A31 and every other message).
func (ix *Index) update(ctx context.Context, e Entry, r Record) (Decision, error) {
	d := Decision{Key: e.Key(), EnterpriseID: e.EnterpriseID, Outcome: LinkedByIdentifier, Rule: "known-mrn"}
	if sameRecord(&e.Record, &r) {
		return d, nil
	}
	now := ix.cfg.Now()
	before := e
	e.Record = r
	e.feat = nil
	ch := newChange(ix)
	if e.Link.Method.sticky() {
		d.Rule = "known-mrn:updated"
		ch.put(&before, e)
		return ix.finish(ctx, ch, d, "update", nil)
	}
	s, err := ix.score(ctx, &e, true)
	if err != nil {
		return Decision{}, err
	}
	d.Compared = s.compared
	var own, other *Comparison
	for i := range s.best {
		c := &s.best[i]
		if c.EnterpriseID == e.EnterpriseID {
			if own == nil {
				own = c
			}
		} else if other == nil {
			other = c
		}
	}
	var task *Task
	newTaskFor := func(c Comparison) {
		if e.OpenTask != "" {
			return
		}
		t := ix.newTask(e.Key(), c, "score between thresholds after update", now)
		task = &t
	}
	switch {
	case own != nil && own.Score >= ix.cfg.Lower:
		d.Rule = "known-mrn:updated:still-matches"
		d.Best = own
	case other != nil && other.Score >= ix.cfg.Upper && conflicts(other) == "":
		c := *other
		e.EnterpriseID = c.EnterpriseID
		e.Link = Link{Method: MethodScore, Rule: "updated:score>=upper", Comparison: &c, Actor: ix.cfg.Actor, At: now}
		d.Outcome, d.Rule, d.Best = LinkedByScore, e.Link.Rule, &c
	default:
		if own != nil {
			// No longer like the records it was linked to: split off.
			nid, err := ix.freeID(ctx, e.OwnID, e.EnterpriseID)
			if err != nil {
				return Decision{}, err
			}
			e.EnterpriseID = nid
			e.Link = Link{Method: MethodNew, Rule: "updated:split:score<lower", Comparison: own, Actor: ix.cfg.Actor, At: now}
			d.Outcome, d.Rule, d.Best = NewPatient, e.Link.Rule, own
		} else {
			d.Rule = "known-mrn:updated"
		}
		if other != nil && other.Score >= ix.cfg.Lower {
			newTaskFor(*other)
			if task != nil {
				d.Outcome, d.Best = Review, other
				d.Rule += ":review"
			}
		}
	}
	ch.put(&before, e)
	return ix.finish(ctx, ch, d, "update", task)
}

// freeID returns own if no active entry uses it (other than as current),
// else a new id.
func (ix *Index) freeID(ctx context.Context, own, current string) (string, error) {
	if own != "" && own != current {
		ms, err := ix.store.Members(ctx, own)
		if err != nil {
			return "", fmt.Errorf("members: %w", err)
		}
		if len(ms) == 0 {
			return own, nil
		}
	}
	return ix.cfg.NewID(), nil
}

// sameRecord reports whether two records carry the same values.
func sameRecord(a, b *Record) bool {
	return a.Sender == b.Sender && a.Authority == b.Authority && a.MRN == b.MRN &&
		slices.Equal(a.Identifiers, b.Identifiers) && a.Family == b.Family && a.Given == b.Given &&
		a.Middle == b.Middle && a.BirthDate == b.BirthDate && a.Sex == b.Sex &&
		slices.Equal(a.AddressLines, b.AddressLines) && a.City == b.City && a.State == b.State &&
		a.Postcode == b.Postcode && a.Phone == b.Phone && a.NationalID == b.NationalID
}

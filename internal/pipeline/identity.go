package pipeline

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// Identity runs the master patient index inside database transactions: it
// takes the index lock, binds the index to the transaction, and after each
// change moves the resources of every source record that changed enterprise
// patient and queues the identity events (linked, merged, split) in the
// outbox, all in the same transaction.
type Identity struct {
	ix      *mpi.Index
	st      Store
	rt      Router
	decoded *sqlstore.Decoded // index entries decoded, for every transaction's store
	// OnCommit is called after a change committed (wakes the relay).
	OnCommit func()
}

// NewIdentity returns the identity service over ix (its settings; its own
// store is not used: every call binds it to a transaction on st).
func NewIdentity(ix *mpi.Index, st Store, rt Router) *Identity {
	return &Identity{ix: ix, st: st, rt: rt, decoded: sqlstore.NewDecoded(decodedEntries)}
}

// decodedEntries is how many index entries Identity keeps decoded (about
// 5 KB each with its stored body): the patients of the latest messages.
const decodedEntries = 2048

// Config returns the matcher settings.
func (id *Identity) Config() mpi.Config { return id.ix.Config() }

// bound is the index bound to one transaction.
type bound struct {
	ix *mpi.Index
	st *sqlstore.Store
	tx *store.Tx
}

// bind binds the index to tx; the caller has taken the index's locks (lock).
func (id *Identity) bind(tx *store.Tx) (*bound, error) {
	st := sqlstore.NewTx(tx.Ext()).WithDecoded(id.decoded)
	ix := id.ix.WithStore(st)
	if tx.Backend() == store.Postgres {
		// The database's locks keep transactions apart; an index of its
		// own keeps the shared one's in-process lock from serialising
		// lanes that hold different database locks (and from waiting, lock
		// in hand, behind a transaction that waits for a database lock).
		var err error
		if ix, err = mpi.New(st, id.ix.Config()); err != nil {
			return nil, err
		}
	}
	return &bound{ix: ix, st: st, tx: tx}, nil
}

// lock takes the index's locks for a transaction that identifies the
// patients of envs: per record when every message only resolves its
// patient, the whole index when one also merges records (ADT^A40).
func (id *Identity) lock(ctx context.Context, tx *store.Tx, envs []prepared) error {
	if tx.Backend() != store.Postgres {
		return nil // a single writer: nothing to lock
	}
	st := sqlstore.New(tx.SQL())
	var recs []mpi.Record
	for _, pe := range envs {
		for _, u := range pe.units {
			p := patientOf(u.Resources)
			if p == nil {
				continue
			}
			if len(replacedIdentifiers(p)) > 0 {
				return st.Lock(ctx)
			}
			r, err := recordOf(pe.e.Sender, p)
			if err != nil {
				continue // refused by identify, before it reads the index
			}
			recs = append(recs, r)
		}
	}
	return st.LockRecords(ctx, recs)
}

// Change runs fn on the index in a new transaction, applies the events it
// returns (resources follow their records, events go to the outbox, sent by
// the "mpi" sender), appends audit to the store's audit log, and commits.
func (id *Identity) Change(ctx context.Context, audit store.AuditEntry, fn func(ix *mpi.Index) ([]mpi.Event, error)) ([]mpi.Event, error) {
	var evs []mpi.Event
	err := id.st.InTx(ctx, func(tx *store.Tx) error {
		if err := sqlstore.New(tx.SQL()).Lock(ctx); err != nil {
			return err
		}
		b, err := id.bind(tx)
		if err != nil {
			return err
		}
		if evs, err = fn(b.ix); err != nil {
			return err
		}
		src := eventSource{sender: "mpi", envelopeID: "mpi-" + uuid.Must(uuid.NewV7()).String(), messageType: audit.Action}
		if err := id.apply(ctx, b, evs, src); err != nil {
			return err
		}
		if audit.Outcome == "" {
			audit.Outcome = "ok"
		}
		return tx.Audit(ctx, audit)
	})
	if err != nil {
		return nil, err
	}
	if id.OnCommit != nil && len(evs) > 0 {
		id.OnCommit()
	}
	return evs, nil
}

// View runs fn on the index and its store in a read transaction; fn must
// not change the index.
func (id *Identity) View(ctx context.Context, fn func(ix *mpi.Index, st *sqlstore.Store) error) error {
	return id.st.InTx(ctx, func(tx *store.Tx) error {
		st := sqlstore.New(tx.Ext())
		return fn(id.ix.WithStore(st), st)
	})
}

// eventSource names where identity events came from.
type eventSource struct {
	sender, envelopeID, controlID, messageType string
	unit                                       int // the message's index in its envelope (batches)
	raw                                        []byte
}

// apply moves the resources of the records named by evs to their current
// enterprise patients and queues the events subscribers follow.
func (id *Identity) apply(ctx context.Context, b *bound, evs []mpi.Event, src eventSource) error {
	moved := map[mpi.Key]bool{}
	var queue []mpi.Key
	for _, ev := range evs {
		for _, k := range ev.Keys {
			if !moved[k] {
				moved[k] = true
				queue = append(queue, k)
			}
		}
	}
	// Records merged into a moved record go with it.
	for i := 0; i < len(queue); i++ {
		more, err := b.st.MergedInto(ctx, queue[i])
		if err != nil {
			return err
		}
		for _, k := range more {
			if !moved[k] {
				moved[k] = true
				queue = append(queue, k)
			}
		}
	}
	for _, k := range queue {
		eid, ok, err := b.st.Resolve(ctx, k)
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		n, err := b.tx.MoveSource(ctx, k.Authority, k.MRN, eid)
		if err != nil {
			return err
		}
		// Resources reach eid only together with their Patients' new stamp
		// (here, or stamped when stored): when none moved, none is stale.
		if n == 0 {
			continue
		}
		if err := restampPatients(ctx, b.tx, k, eid); err != nil {
			return err
		}
	}
	n := 0
	for _, ev := range evs {
		typ := ""
		switch ev.Type {
		case mpi.EventMerged:
			typ = route.EventMerge
		case mpi.EventLinked, mpi.EventSplit:
			typ = route.EventUpdate
		default:
			continue // created and updated ride on the message's own event
		}
		n++
		var local []string
		for _, k := range ev.Keys {
			local = append(local, k.Authority+"|"+k.MRN)
		}
		// The event's own id keeps its bundle apart from the message's.
		entries, err := id.rt.Route(route.Event{Type: typ, Sender: src.sender, EnvelopeID: src.envelopeID,
			ID:        fmt.Sprintf("%s#%d/mpi-%d", src.envelopeID, src.unit, n),
			ControlID: src.controlID, MessageType: src.messageType, PatientID: ev.EnterpriseID, LocalIDs: local,
			Resources: []fhir.Resource{identityPatient(ev)}, At: time.Now(), Raw: src.raw})
		if err != nil {
			return err
		}
		if err := b.tx.AddOutbox(ctx, entries...); err != nil {
			return err
		}
	}
	return nil
}

// restampPatients writes a new version of each Patient that came from k
// whose enterprise identifier is not eid, so the stored record and what
// subscribers read later name the current enterprise patient.
func restampPatients(ctx context.Context, tx *store.Tx, k mpi.Key, eid string) error {
	rs, err := tx.SourceResources(ctx, k.Authority, k.MRN, "Patient")
	if err != nil {
		return err
	}
	for _, r := range rs {
		var p fhir.Resource
		if err := json.Unmarshal([]byte(r.Body), &p); err != nil {
			return fmt.Errorf("restamp patient: decode stored resource: %w", err)
		}
		addEnterpriseID(p, eid)
		body, err := fhir.Marshal(p)
		if err != nil {
			return fmt.Errorf("restamp patient: %w", err)
		}
		if _, _, err := tx.PutResource(ctx, r.EnvelopeID, r.Sender, store.Resource{ID: r.ID, Type: r.Type, PatientID: eid,
			Body: body, SourceAuthority: k.Authority, SourceMRN: k.MRN}); err != nil {
			return err
		}
	}
	return nil
}

// identityTagSystem tags the Patient of an identity event with its kind.
const identityTagSystem = "urn:hiegw:mpi-event"

// identityPatient describes an identity event as a FHIR Patient: the
// enterprise patient, the records (assigning authority and MRN) the event
// moved, and for a merge or split the enterprise patient they came from.
func identityPatient(ev mpi.Event) fhir.Resource {
	p := fhir.New("Patient", ev.EnterpriseID)
	p["meta"] = map[string]any{"tag": []any{map[string]any{"system": identityTagSystem, "code": string(ev.Type)}}}
	ids := []any{map[string]any{"use": "official", "system": enterpriseSystem, "value": ev.EnterpriseID}}
	for _, k := range ev.Keys {
		ids = append(ids, map[string]any{"use": "secondary", "system": k.Authority, "value": k.MRN,
			"type": map[string]any{"coding": []any{map[string]any{"system": v20203, "code": "MR"}}}})
	}
	p["identifier"] = ids
	if ev.From != "" {
		typ := "seealso"
		if ev.Type == mpi.EventMerged {
			typ = "replaces"
		}
		p["link"] = []any{map[string]any{"type": typ,
			"other": map[string]any{"identifier": map[string]any{"system": enterpriseSystem, "value": ev.From}}}}
	}
	return p
}

const v20203 = "http://terminology.hl7.org/CodeSystem/v2-0203"

// recordOf builds the index's view of a FHIR Patient: the MRN (the first
// identifier typed MR, else the first one) as the key, the other identifiers
// with their types, the first name, birth date, sex, first address and
// first phone. A social security or national id number also fills
// NationalID for scoring.
func recordOf(sender string, p fhir.Resource) (mpi.Record, error) {
	r := mpi.Record{Sender: sender}
	ids := linkIdentifiers(p)
	if len(ids) == 0 {
		return mpi.Record{}, contentErr("the Patient has no identifier to link it by (PID-3)")
	}
	key := slices.IndexFunc(ids, func(i linkIdentifier) bool { return i.typ == "MR" })
	if key < 0 {
		key = 0
	}
	r.Authority, r.MRN = ids[key].system, ids[key].value
	for i, id := range ids {
		if i == key {
			continue
		}
		r.Identifiers = append(r.Identifiers, mpi.Identifier{Type: id.typ, Authority: id.system, Value: id.value})
		if r.NationalID == "" && (id.typ == "SS" || id.typ == "NI" || id.typ == "SB") {
			r.NationalID = id.value
		}
	}
	if names, _ := p["name"].([]any); len(names) > 0 {
		n := preferredName(names)
		r.Family, _ = n["family"].(string)
		if given, _ := n["given"].([]any); len(given) > 0 {
			r.Given, _ = given[0].(string)
			if len(given) > 1 {
				r.Middle, _ = given[1].(string)
			}
		}
	}
	r.BirthDate, _ = p["birthDate"].(string)
	switch p["gender"] {
	case "male":
		r.Sex = "M"
	case "female":
		r.Sex = "F"
	}
	if addrs, _ := p["address"].([]any); len(addrs) > 0 {
		a, _ := addrs[0].(map[string]any)
		lines, _ := a["line"].([]any)
		for _, l := range lines {
			if s, _ := l.(string); s != "" {
				r.AddressLines = append(r.AddressLines, s)
			}
		}
		r.City, _ = a["city"].(string)
		r.State, _ = a["state"].(string)
		r.Postcode, _ = a["postalCode"].(string)
	}
	if tel, _ := p["telecom"].([]any); len(tel) > 0 {
		for _, t := range tel {
			m, _ := t.(map[string]any)
			if sys, _ := m["system"].(string); sys == "phone" || sys == "" {
				if v, _ := m["value"].(string); v != "" {
					r.Phone = v
					break
				}
			}
		}
	}
	return r, nil
}

// preferredName returns the official (or usual) name, else the first.
func preferredName(names []any) map[string]any {
	first, _ := names[0].(map[string]any)
	for _, want := range []string{"official", "usual"} {
		for _, n := range names {
			m, _ := n.(map[string]any)
			if u, _ := m["use"].(string); u == want {
				return m
			}
		}
	}
	return first
}

func typeCode(t any) string {
	m, _ := t.(map[string]any)
	codings, _ := m["coding"].([]any)
	for _, c := range codings {
		cm, _ := c.(map[string]any)
		if code, _ := cm["code"].(string); code != "" {
			return strings.ToUpper(code)
		}
	}
	return ""
}

// identify resolves the unit's Patient in the index within tx, applies an
// ADT^A40's merges, and returns the record's key and enterprise patient.
func (id *Identity) identify(ctx context.Context, tx *store.Tx, e store.Envelope, patient fhir.Resource, src eventSource) (mpi.Key, string, error) {
	rec, err := recordOf(e.Sender, patient)
	if err != nil {
		return mpi.Key{}, "", err
	}
	b, err := id.bind(tx)
	if err != nil {
		return mpi.Key{}, "", err
	}
	d, err := b.ix.Resolve(ctx, rec)
	if errors.Is(err, mpi.ErrNoKey) {
		return mpi.Key{}, "", contentErr("identify patient: %w", err)
	}
	if err != nil {
		return mpi.Key{}, "", fmt.Errorf("identify patient: %w", err)
	}
	evs := d.Events
	actor := "sender:" + e.Sender
	reason := "ADT^A40 in envelope " + e.ID
	replaced := replacedIdentifiers(patient)
	for _, prior := range replaced {
		if prior.System == rec.Authority && prior.Value == rec.MRN {
			continue
		}
		pk := mpi.Key{Authority: prior.System, MRN: prior.Value}
		if _, ok, err := b.st.Get(ctx, pk); err != nil {
			return mpi.Key{}, "", err
		} else if !ok {
			// The prior record was never seen: file it with the survivor's
			// demographics, so that later messages under it find the
			// survivor once merged.
			pr := rec
			pr.Authority, pr.MRN, pr.Identifiers = pk.Authority, pk.MRN, nil
			pd, err := b.ix.Resolve(ctx, pr)
			if err != nil {
				return mpi.Key{}, "", fmt.Errorf("identify merged patient: %w", err)
			}
			evs = append(evs, pd.Events...)
		}
		var mevs []mpi.Event
		if pk.Authority == rec.Authority {
			mevs, err = b.ix.Merge(ctx, rec.Authority, pk.MRN, rec.MRN, actor, reason)
		} else {
			// Another authority's identifier: the same person, but not a
			// merge within one MRN space.
			mevs, err = b.ix.Link(ctx, pk, rec.Key(), actor, reason)
		}
		outcome := "ok"
		if errors.Is(err, mpi.ErrMerged) {
			// The prior MRN already went elsewhere: keep the record as it
			// is and leave the conflict to an operator.
			outcome, err = "refused: prior record already merged into another", nil
		}
		if err != nil {
			return mpi.Key{}, "", fmt.Errorf("merge patient: %w", err)
		}
		evs = append(evs, mevs...)
		if err := tx.Audit(ctx, store.AuditEntry{Actor: actor, Action: "mpi.merge", Target: rec.Authority,
			Outcome: outcome, Detail: "envelope " + e.ID}); err != nil {
			return mpi.Key{}, "", err
		}
	}
	if err := id.apply(ctx, b, evs, src); err != nil {
		return mpi.Key{}, "", err
	}
	if len(replaced) == 0 {
		// Nothing after Resolve changed the index: its decision stands.
		return rec.Key(), d.EnterpriseID, nil
	}
	eid, _, err := b.st.Resolve(ctx, rec.Key())
	if err != nil {
		return mpi.Key{}, "", err
	}
	return rec.Key(), eid, nil
}

package store

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/google/uuid"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Tx is one processing transaction: the record changes of one envelope,
// its outbox rows and its status change commit together or not at all.
type Tx struct {
	tx       *sqlx.Tx
	x        *txExt // tx through the prepared-statement cache
	db       *DB
	now      time.Time
	finished []finished // envelopes whose log status follows the commit

	// The rows nothing reads back before the commit (outbox events,
	// envelopes' processed status) wait here and are written in one
	// statement each when fn returns: on PostgreSQL a round trip per row
	// costs more than the row, and on the embedded store a statement's
	// fixed cost about as much as the row.
	outbox []outboxRow
	done   []finished

	// On the embedded store, what this transaction has read or written of
	// stored resources, by id (nil when a statement may have changed
	// resources behind it): ResourceBodies reads a message's resources
	// once, and PutResource then writes them without reading them again.
	known map[string]*storedRow
	plain bool // read and write resources one statement at a time, as tests compare
}

// storedRow is a stored resource as the transaction knows it; found is false
// for an id that has no row.
type storedRow struct {
	found                     bool
	version                   int
	body                      string
	patientID, authority, mrn string
}

// remember records what the transaction now knows of resource id (the
// embedded store only).
func (t *Tx) remember(id string, row storedRow) {
	if t.db.backend == Postgres || t.plain {
		return
	}
	if t.known == nil {
		t.known = map[string]*storedRow{}
	}
	t.known[id] = &row
}

// forgetResources drops what the transaction knew of stored resources,
// after a statement that may have changed any of them.
func (t *Tx) forgetResources() { t.known = nil }

type outboxRow struct {
	e       OutboxEntry
	headers string
}

// InTx runs fn in one transaction.
func (db *DB) InTx(ctx context.Context, fn func(*Tx) error) error { return db.inTx(ctx, false, fn) }

// inTx is InTx; plain makes the transaction read and write resources without
// reusing what it read (the straightforward form tests compare with).
func (db *DB) inTx(ctx context.Context, plain bool, fn func(*Tx) error) error {
	var t *Tx
	err := db.tx(ctx, func(tx *sqlx.Tx) error {
		t = &Tx{tx: tx, x: &txExt{tx: tx, cache: db.stmts}, db: db, now: time.Now().UTC(), plain: plain}
		if err := fn(t); err != nil {
			return err
		}
		return t.flush(ctx)
	})
	if db.stmts != nil {
		db.stmts.prepareWanted(context.WithoutCancel(ctx))
	}
	if err != nil || len(t.finished) == 0 {
		return err
	}
	// The record committed; the log's status follows. Should this fail, the
	// next read of pending envelopes repairs it from processed_envelopes.
	if n := db.failLogMarks.Load(); n > 0 && db.failLogMarks.CompareAndSwap(n, n-1) {
		err = errors.New("log update failed (test)")
	} else {
		err = db.markProcessed(context.WithoutCancel(ctx), t.finished)
	}
	if err != nil {
		return fmt.Errorf("%w: %w", ErrLogBehind, err)
	}
	return nil
}

// ErrLogBehind is returned (wrapped) by InTx when the transaction committed
// in the record but the message log's status of the envelopes it finished
// could not be updated (say on a full disk): the processing is done and
// must not be done again. The next read of pending envelopes brings the
// log up to date from the record.
var ErrLogBehind = errors.New("processing committed; the message log's status is behind")

// Identifier is a patient identifier (FHIR Identifier.system and value).
type Identifier struct {
	System, Value string
}

// ResolvePatient returns the enterprise patient that owns any of ids
// (following merges), creating one when none does, and links every id that
// is not linked yet to it. created tells whether a new patient was made.
func (t *Tx) ResolvePatient(ctx context.Context, sender string, ids []Identifier) (id string, created bool, err error) {
	if err := t.lockIdentifiers(ctx, ids); err != nil {
		return "", false, err
	}
	q := t.db.rebind(`SELECT patient_id FROM patient_identifiers WHERE system = ? AND value = ?`)
	for _, i := range ids {
		var pid string
		err := sqlx.GetContext(ctx, t.x, &pid, q, i.System, i.Value)
		if errors.Is(err, sql.ErrNoRows) {
			continue
		}
		if err != nil {
			return "", false, fmt.Errorf("look up identifier: %w", err)
		}
		id = pid
		break
	}
	if id != "" {
		if id, err = t.survivor(ctx, id); err != nil {
			return "", false, err
		}
	} else {
		u, err := uuid.NewV7()
		if err != nil {
			return "", false, err
		}
		id, created = u.String(), true
		if _, err := t.x.ExecContext(ctx, t.db.rebind(`INSERT INTO patients (id, created_at, updated_at) VALUES (?, ?, ?)`),
			id, t.now, t.now); err != nil {
			return "", false, fmt.Errorf("create patient: %w", err)
		}
	}
	ins := t.db.rebind(`INSERT INTO patient_identifiers (system, value, patient_id, sender, created_at) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (system, value) DO NOTHING`)
	for _, i := range ids {
		if _, err := t.x.ExecContext(ctx, ins, i.System, i.Value, id, sender, t.now); err != nil {
			return "", false, fmt.Errorf("link identifier: %w", err)
		}
	}
	return id, created, nil
}

// lockIdentifiers serialises transactions that resolve the same
// identifiers, so that two senders' first messages about one patient,
// processed at once, cannot create two patients. PostgreSQL takes
// transaction-scoped advisory locks in a fixed order (no deadlock); the
// embedded store has a single writer and needs none.
func (t *Tx) lockIdentifiers(ctx context.Context, ids []Identifier) error {
	if t.db.backend != Postgres {
		return nil
	}
	keys := make([]string, 0, len(ids))
	for _, i := range ids {
		keys = append(keys, i.System+"|"+i.Value)
	}
	slices.Sort(keys)
	keys = slices.Compact(keys)
	for _, k := range keys {
		if _, err := t.x.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended($1, 0))`, k); err != nil {
			return fmt.Errorf("lock identifier: %w", err)
		}
	}
	return nil
}

// survivor follows merged_into links to the surviving patient.
func (t *Tx) survivor(ctx context.Context, id string) (string, error) {
	q := t.db.rebind(`SELECT merged_into FROM patients WHERE id = ?`)
	for range 32 {
		var next string
		if err := sqlx.GetContext(ctx, t.x, &next, q, id); err != nil {
			return "", fmt.Errorf("follow patient merge: %w", notFound(err))
		}
		if next == "" {
			return id, nil
		}
		id = next
	}
	return "", fmt.Errorf("follow patient merge: chain too long at %s", id)
}

// Resource is a FHIR resource to store.
type Resource struct {
	ID, Type, PatientID string
	Body                []byte // JSON
	// SourceAuthority and SourceMRN name the source record (the patient's
	// key in the master patient index) the resource came from, so that it
	// follows that record to another enterprise patient (MoveSource).
	SourceAuthority, SourceMRN string
}

// PutResource stores r as the new version of its id, keeping the earlier one
// in the history. An identical body stores nothing and reports unchanged.
func (t *Tx) PutResource(ctx context.Context, envelopeID, sender string, r Resource) (version int, changed bool, err error) {
	if t.db.backend == Postgres {
		return t.putResourcePostgres(ctx, envelopeID, sender, r)
	}
	cur, ok := t.known[r.ID]
	if !ok {
		if !t.plain {
			// Not read in this transaction: most such resources are new (a
			// message's Provenance, a result's Observations), so the insert
			// comes first, and only an id already stored costs a read.
			res, err := t.x.ExecContext(ctx, t.db.rebind(`INSERT INTO resources
				(id, resource_type, patient_id, version, body, envelope_id, sender, updated_at, source_authority, source_mrn)
				VALUES (?, ?, ?, 1, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO NOTHING`),
				r.ID, r.Type, r.PatientID, string(r.Body), envelopeID, sender, t.now, r.SourceAuthority, r.SourceMRN)
			if err != nil {
				return 0, false, fmt.Errorf("insert %s: %w", r.Type, err)
			}
			if n, err := res.RowsAffected(); err != nil {
				return 0, false, fmt.Errorf("insert %s: %w", r.Type, err)
			} else if n == 1 {
				t.remember(r.ID, storedAs(r, 1))
				return 1, true, nil
			}
		}
		if cur, err = t.readResource(ctx, r.ID); err != nil {
			return 0, false, fmt.Errorf("read %s: %w", r.Type, err)
		}
	}
	if !cur.found {
		if err := t.insertResources(ctx, envelopeID, sender, []Resource{r}); err != nil {
			return 0, false, err
		}
		t.remember(r.ID, storedAs(r, 1))
		return 1, true, nil
	}
	if jsonEqual([]byte(cur.body), r.Body) {
		if cur.patientID != r.PatientID || cur.authority != r.SourceAuthority || cur.mrn != r.SourceMRN {
			// Same content, new owner: not a new version.
			if _, err := t.x.ExecContext(ctx, t.db.rebind(`UPDATE resources SET patient_id = ?, source_authority = ?,
				source_mrn = ? WHERE id = ?`), r.PatientID, r.SourceAuthority, r.SourceMRN, r.ID); err != nil {
				return 0, false, fmt.Errorf("relink %s: %w", r.Type, err)
			}
			t.remember(r.ID, storedRow{found: true, version: cur.version, body: cur.body, patientID: r.PatientID,
				authority: r.SourceAuthority, mrn: r.SourceMRN})
		}
		return cur.version, false, nil
	}
	if _, err := t.x.ExecContext(ctx, t.db.rebind(`INSERT INTO resource_history (id, version, body, envelope_id, recorded_at)
		SELECT id, version, body, envelope_id, updated_at FROM resources WHERE id = ?`), r.ID); err != nil {
		return 0, false, fmt.Errorf("keep %s history: %w", r.Type, err)
	}
	version = cur.version + 1
	if _, err := t.x.ExecContext(ctx, t.db.rebind(`UPDATE resources SET version = ?, body = ?, patient_id = ?,
		envelope_id = ?, sender = ?, updated_at = ?, source_authority = ?, source_mrn = ? WHERE id = ?`),
		version, string(r.Body), r.PatientID, envelopeID, sender, t.now, r.SourceAuthority, r.SourceMRN, r.ID); err != nil {
		return 0, false, fmt.Errorf("update %s: %w", r.Type, err)
	}
	t.remember(r.ID, storedAs(r, version))
	return version, true, nil
}

// storedAs is what the transaction knows of r once it is stored as version.
func storedAs(r Resource, version int) storedRow {
	return storedRow{found: true, version: version, body: string(r.Body), patientID: r.PatientID,
		authority: r.SourceAuthority, mrn: r.SourceMRN}
}

// readResource reads one stored resource's state (the embedded store).
func (t *Tx) readResource(ctx context.Context, id string) (*storedRow, error) {
	var cur struct {
		Version   int    `db:"version"`
		Body      string `db:"body"`
		PatientID string `db:"patient_id"`
		Authority string `db:"source_authority"`
		MRN       string `db:"source_mrn"`
	}
	err := sqlx.GetContext(ctx, t.x, &cur, t.db.rebind(`SELECT version, body, patient_id, source_authority, source_mrn
		FROM resources WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return &storedRow{}, nil
	}
	if err != nil {
		return nil, err
	}
	return &storedRow{found: true, version: cur.Version, body: cur.Body, patientID: cur.PatientID, authority: cur.Authority,
		mrn: cur.MRN}, nil
}

// PutResources stores rs as PutResource does, in order. On PostgreSQL one
// statement inserts those not stored yet and reports the stored ones'
// versions and whether each differs; only a resource that changed costs
// another statement. A message whose resources are all new, or all the same
// as stored but for its new Provenance, is one round trip.
func (t *Tx) PutResources(ctx context.Context, envelopeID, sender string, rs []Resource) error {
	if len(rs) == 0 {
		return nil
	}
	if t.db.backend != Postgres || !distinctIDs(rs) {
		for _, r := range rs {
			if _, _, err := t.PutResource(ctx, envelopeID, sender, r); err != nil {
				return err
			}
		}
		return nil
	}
	cols := make([][]string, 6)
	for _, r := range rs {
		for i, v := range []string{r.ID, r.Type, string(r.Body), r.PatientID, r.SourceAuthority, r.SourceMRN} {
			cols[i] = append(cols[i], v)
		}
	}
	// Every part of the statement reads the table as it was before it: the
	// join sees only the rows stored earlier, never those it inserts. A
	// resource inserted meanwhile by another transaction fails the insert
	// on the primary key, as a plain insert would.
	var found []storedState
	err := sqlx.SelectContext(ctx, t.x, &found, `WITH v AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) WITH ORDINALITY
				AS v (id, resource_type, body, patient_id, source_authority, source_mrn, n)
		), fresh AS (
			INSERT INTO resources (id, resource_type, patient_id, version, body, envelope_id, sender, updated_at,
				source_authority, source_mrn)
			SELECT id, resource_type, patient_id, 1, body::jsonb, $7, $8, $9, source_authority, source_mrn FROM v
			WHERE NOT EXISTS (SELECT 1 FROM resources r WHERE r.id = v.id)
		)
		SELECT v.n, r.version, r.body = v.body::jsonb AS same,
			(r.patient_id <> v.patient_id OR r.source_authority <> v.source_authority OR r.source_mrn <> v.source_mrn) AS moved
		FROM v JOIN resources r ON r.id = v.id ORDER BY v.n`,
		pq.Array(cols[0]), pq.Array(cols[1]), pq.Array(cols[2]), pq.Array(cols[3]), pq.Array(cols[4]), pq.Array(cols[5]),
		envelopeID, sender, t.now)
	if err != nil {
		return fmt.Errorf("store %s and others: %w", rs[0].Type, err)
	}
	for _, st := range found {
		if _, _, err := t.writeResource(ctx, envelopeID, sender, rs[st.N-1], st); err != nil {
			return err
		}
	}
	return nil
}

func distinctIDs(rs []Resource) bool {
	seen := make(map[string]bool, len(rs))
	for _, r := range rs {
		if seen[r.ID] {
			return false
		}
		seen[r.ID] = true
	}
	return true
}

// storedState is what PostgreSQL reports of a stored resource against a
// new one: its version, whether the bodies are equal as jsonb, and whether
// its owner (patient or source record) differs.
type storedState struct {
	N       int  `db:"n"`
	Version int  `db:"version"`
	Same    bool `db:"same"`
	Moved   bool `db:"moved"`
}

// putResourcePostgres is PutResource with the bodies compared by
// PostgreSQL as jsonb, so that an unchanged resource (the common case for a
// patient's demographics and a visit) costs one small query: its stored
// body is neither sent back nor decoded.
func (t *Tx) putResourcePostgres(ctx context.Context, envelopeID, sender string, r Resource) (int, bool, error) {
	var cur storedState
	err := sqlx.GetContext(ctx, t.x, &cur, `SELECT 1 AS n, version, body = $2::jsonb AS same,
		(patient_id <> $3 OR source_authority <> $4 OR source_mrn <> $5) AS moved FROM resources WHERE id = $1`,
		r.ID, string(r.Body), r.PatientID, r.SourceAuthority, r.SourceMRN)
	if errors.Is(err, sql.ErrNoRows) {
		if err := t.insertResources(ctx, envelopeID, sender, []Resource{r}); err != nil {
			return 0, false, err
		}
		return 1, true, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("read %s: %w", r.Type, err)
	}
	return t.writeResource(ctx, envelopeID, sender, r, cur)
}

// insertResources inserts new resources as their version 1.
func (t *Tx) insertResources(ctx context.Context, envelopeID, sender string, rs []Resource) error {
	for len(rs) > 0 {
		n := min(len(rs), flushRows)
		args := make([]any, 0, 9*n)
		for _, r := range rs[:n] {
			args = append(args, r.ID, r.Type, r.PatientID, string(r.Body), envelopeID, sender, t.now, r.SourceAuthority, r.SourceMRN)
		}
		const row = `(?, ?, ?, 1, ?, ?, ?, ?, ?, ?)`
		if _, err := t.x.ExecContext(ctx, t.db.rebind(`INSERT INTO resources
			(id, resource_type, patient_id, version, body, envelope_id, sender, updated_at, source_authority, source_mrn)
			VALUES `+strings.Repeat(row+", ", n-1)+row), args...); err != nil {
			return fmt.Errorf("insert %s: %w", rs[0].Type, err)
		}
		rs = rs[n:]
	}
	return nil
}

// writeResource writes r over the stored resource described by cur
// (PostgreSQL): nothing when equal, a relink when only the owner changed,
// else a new version with the current one kept in the history.
func (t *Tx) writeResource(ctx context.Context, envelopeID, sender string, r Resource, cur storedState) (int, bool, error) {
	if cur.Same {
		if cur.Moved {
			// Same content, new owner: not a new version.
			if _, err := t.x.ExecContext(ctx, `UPDATE resources SET patient_id = $1, source_authority = $2,
				source_mrn = $3 WHERE id = $4`, r.PatientID, r.SourceAuthority, r.SourceMRN, r.ID); err != nil {
				return 0, false, fmt.Errorf("relink %s: %w", r.Type, err)
			}
		}
		return cur.Version, false, nil
	}
	// The current version goes to the history and the new one replaces it,
	// in one statement (both parts read the row as it was).
	if _, err := t.x.ExecContext(ctx, `WITH kept AS (
			INSERT INTO resource_history (id, version, body, envelope_id, recorded_at)
			SELECT id, version, body, envelope_id, updated_at FROM resources WHERE id = $1
		)
		UPDATE resources SET version = version + 1, body = $2, patient_id = $3, envelope_id = $4, sender = $5,
			updated_at = $6, source_authority = $7, source_mrn = $8 WHERE id = $1`,
		r.ID, string(r.Body), r.PatientID, envelopeID, sender, t.now, r.SourceAuthority, r.SourceMRN); err != nil {
		return 0, false, fmt.Errorf("update %s: %w", r.Type, err)
	}
	return cur.Version + 1, true, nil
}

// jsonEqual tells whether two JSON documents hold the same value. Bodies are
// written as encoding/json produces them (keys sorted), so equal bytes settle
// it at once; PostgreSQL's jsonb returns another layout, which needs the
// decoding comparison.
func jsonEqual(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var x, y any
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return bytes.Equal(a, b)
	}
	xa, _ := json.Marshal(x)
	ya, _ := json.Marshal(y)
	return bytes.Equal(xa, ya)
}

// OutboxEntry is an event waiting to be published.
type OutboxEntry struct {
	Subscriber, Topic, Key, EventType, EnvelopeID string
	Headers                                       map[string]string
	Payload                                       []byte
}

// AddOutbox queues events for the relay.
func (t *Tx) AddOutbox(ctx context.Context, entries ...OutboxEntry) error {
	for _, e := range entries {
		h, err := fhir.Marshal(e.Headers)
		if err != nil {
			return err
		}
		t.outbox = append(t.outbox, outboxRow{e: e, headers: string(h)})
	}
	return nil
}

const (
	outboxInsert = `INSERT INTO outbox (subscriber, topic, msg_key, headers, payload, event_type, envelope_id,
		created_at, next_attempt_at) VALUES `
	outboxValues = `(?, ?, ?, ?, ?, ?, ?, ?, ?)`
)

// flushRows bounds the rows of one multi-row statement (PostgreSQL takes
// at most 65,535 parameters).
const flushRows = 500

// flush writes what the transaction kept back: the outbox rows in the order
// they were queued, then the envelopes' processed status.
func (t *Tx) flush(ctx context.Context) error {
	for rows := t.outbox; len(rows) > 0; {
		n := min(len(rows), flushRows)
		args := make([]any, 0, 9*n)
		for _, r := range rows[:n] {
			e := r.e
			args = append(args, e.Subscriber, e.Topic, e.Key, r.headers, e.Payload, e.EventType, e.EnvelopeID, t.now, t.now)
		}
		q := outboxInsert + strings.Repeat(outboxValues+", ", n-1) + outboxValues
		if _, err := t.x.ExecContext(ctx, t.db.rebind(q), args...); err != nil {
			return fmt.Errorf("queue events: %w", err)
		}
		rows = rows[n:]
	}
	t.outbox = nil
	t.finished = firstMarks(t.finished)
	for rows := t.finished; len(rows) > 0; {
		n := min(len(rows), flushRows)
		args := make([]any, 0, 4*n)
		for _, f := range rows[:n] {
			args = append(args, f.EnvelopeID, f.PatientID, f.MappingVersion, f.ProcessedAt)
		}
		q := `INSERT INTO processed_envelopes (envelope_id, patient_id, mapping_version, processed_at) VALUES ` +
			strings.Repeat("(?, ?, ?, ?), ", n-1) + `(?, ?, ?, ?) ON CONFLICT (envelope_id) DO NOTHING`
		res, err := t.x.ExecContext(ctx, t.db.rebind(q), args...)
		if err != nil {
			return fmt.Errorf("record envelopes processed: %w", err)
		}
		if got, err := res.RowsAffected(); err == nil && got < int64(n) {
			// One of them was processed before, its log status left
			// behind: this transaction would write its resources and events
			// a second time.
			return ErrAlreadyProcessed
		}
		rows = rows[n:]
	}
	for rows := firstMarks(t.done); len(rows) > 0; {
		n := min(len(rows), flushRows)
		args := make([]any, 0, 3*n+1)
		args = append(args, t.now)
		for _, f := range rows[:n] {
			args = append(args, f.EnvelopeID, f.PatientID, f.MappingVersion)
		}
		q := `UPDATE envelopes SET status = 'processed', error = '', patient_id = v.patient_id,
			mapping_version = v.mapping_version, attempts = attempts + 1, processed_at = ?
			FROM (VALUES ` + strings.Repeat("(?, ?, ?), ", n-1) + `(?, ?, ?)) AS v (id, patient_id, mapping_version)
			WHERE envelopes.id = v.id AND envelopes.status <> 'processed'`
		res, err := t.x.ExecContext(ctx, t.db.rebind(q), args...)
		if err != nil {
			return fmt.Errorf("mark envelopes processed: %w", err)
		}
		if got, err := res.RowsAffected(); err == nil && got < int64(n) {
			// Another replica processed one of them since it was read
			// (before this one took the processing lease over), or one
			// is not in the log at all.
			return ErrAlreadyProcessed
		}
		rows = rows[n:]
	}
	t.done = nil
	return nil
}

// firstMarks drops from fs the later marks of an envelope marked twice in
// one transaction: it keeps its first.
func firstMarks(fs []finished) []finished {
	seen := make(map[string]bool, len(fs))
	out := fs[:0]
	for _, f := range fs {
		if !seen[f.EnvelopeID] {
			seen[f.EnvelopeID] = true
			out = append(out, f)
		}
	}
	return out
}

// FinishEnvelope marks an envelope processed.
func (t *Tx) FinishEnvelope(ctx context.Context, id, patientID, mappingVersion string) error {
	if t.db.split {
		// Its processed_envelopes row is written with the others at the end.
		t.finished = append(t.finished, finished{EnvelopeID: id, PatientID: patientID, MappingVersion: mappingVersion, ProcessedAt: t.now})
		return nil
	}
	if t.db.backend == Postgres {
		t.done = append(t.done, finished{EnvelopeID: id, PatientID: patientID, MappingVersion: mappingVersion})
		return nil
	}
	_, err := t.x.ExecContext(ctx, t.db.rebind(`UPDATE envelopes SET status = 'processed', error = '', patient_id = ?,
		mapping_version = ?, attempts = attempts + 1, processed_at = ? WHERE id = ?`), patientID, mappingVersion, t.now, id)
	if err != nil {
		return fmt.Errorf("mark envelope processed: %w", err)
	}
	return nil
}

// Audit appends to the audit log inside the transaction.
func (t *Tx) Audit(ctx context.Context, e AuditEntry) error {
	return addAudit(ctx, t.tx, t.db, t.now, e)
}

// AuditEntry is one audit log line: who did what to what, from where, with
// what outcome. It never holds message bodies.
type AuditEntry struct {
	Seq     int64     `db:"seq" json:"seq"`
	At      time.Time `db:"at" json:"at"`
	Actor   string    `db:"actor" json:"actor"`
	Action  string    `db:"action" json:"action"`
	Target  string    `db:"target" json:"target"`
	Outcome string    `db:"outcome" json:"outcome"`
	Peer    string    `db:"peer" json:"peer"`
	Detail  string    `db:"detail" json:"detail"`
}

func addAudit(ctx context.Context, x sqlx.ExecerContext, db *DB, now time.Time, e AuditEntry) error {
	if e.At.IsZero() {
		e.At = now
	}
	_, err := x.ExecContext(ctx, db.rebind(`INSERT INTO audit_log (at, actor, action, target, outcome, peer, detail)
		VALUES (?, ?, ?, ?, ?, ?, ?)`), e.At.UTC(), e.Actor, e.Action, e.Target, e.Outcome, e.Peer, e.Detail)
	if err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// Audit appends to the audit log (durably).
func (db *DB) Audit(ctx context.Context, e AuditEntry) error {
	return db.durableTx(ctx, db.x, func(tx *sqlx.Tx) error { return addAudit(ctx, tx, db, time.Now().UTC(), e) })
}

// AuditLog returns audit entries, newest first.
func (db *DB) AuditLog(ctx context.Context, limit int) ([]AuditEntry, error) {
	var out []AuditEntry
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT seq, at, actor, action, target, outcome, peer, detail
		FROM audit_log ORDER BY seq DESC LIMIT ?`), limit)
	return out, err
}

// StoredResource is a resource as stored.
type StoredResource struct {
	ID         string    `db:"id"`
	Type       string    `db:"resource_type"`
	PatientID  string    `db:"patient_id"`
	Version    int       `db:"version"`
	Body       string    `db:"body"`
	EnvelopeID string    `db:"envelope_id"`
	Sender     string    `db:"sender"`
	UpdatedAt  time.Time `db:"updated_at"`
}

// PatientResources returns the resources of an enterprise patient (and of
// the patients merged into it), ordered by type and id, paged.
func (db *DB) PatientResources(ctx context.Context, patientID string, offset, limit int) ([]StoredResource, error) {
	var out []StoredResource
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT id, resource_type, patient_id, version, body, envelope_id, sender, updated_at
		FROM resources WHERE patient_id = ? OR patient_id IN (SELECT id FROM patients WHERE merged_into = ?)
		ORDER BY resource_type, id LIMIT ? OFFSET ?`), patientID, patientID, limit, offset)
	if err != nil {
		return nil, fmt.Errorf("patient resources: %w", err)
	}
	return out, nil
}

// GetResource returns one stored resource.
func (db *DB) GetResource(ctx context.Context, id string) (*StoredResource, error) {
	var r StoredResource
	err := db.x.GetContext(ctx, &r, db.rebind(`SELECT id, resource_type, patient_id, version, body, envelope_id, sender, updated_at
		FROM resources WHERE id = ?`), id)
	if err != nil {
		return nil, fmt.Errorf("get resource: %w", notFound(err))
	}
	return &r, nil
}

// MergePatient merges the enterprise patient from into into: from's
// identifiers and resources move to into, and from remembers where it went
// so that anything still pointing at it resolves to the survivor.
func (t *Tx) MergePatient(ctx context.Context, from, into string) error {
	if from == into {
		return nil
	}
	t.forgetResources()
	steps := []struct {
		q    string
		args []any
	}{
		{`UPDATE patients SET merged_into = ?, updated_at = ? WHERE id = ?`, []any{into, t.now, from}},
		{`UPDATE patient_identifiers SET patient_id = ? WHERE patient_id = ?`, []any{into, from}},
		{`UPDATE resources SET patient_id = ? WHERE patient_id = ?`, []any{into, from}},
		{`UPDATE patients SET merged_into = ? WHERE merged_into = ?`, []any{into, from}},
	}
	for _, s := range steps {
		if _, err := t.x.ExecContext(ctx, t.db.rebind(s.q), s.args...); err != nil {
			return fmt.Errorf("merge patient: %w", err)
		}
	}
	return nil
}

// PatientOf returns the surviving enterprise patient that owns an
// identifier, or "" when none does.
func (t *Tx) PatientOf(ctx context.Context, id Identifier) (string, error) {
	var pid string
	err := sqlx.GetContext(ctx, t.x, &pid, t.db.rebind(`SELECT patient_id FROM patient_identifiers WHERE system = ? AND value = ?`), id.System, id.Value)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("look up identifier: %w", err)
	}
	return t.survivor(ctx, pid)
}

// SQL exposes the transaction to repositories of other packages that keep
// their tables in this schema (the MPI's), so their changes commit with the
// record's.
func (t *Tx) SQL() *sqlx.Tx { return t.tx }

// Ext is the transaction for repositories written against sqlx (the MPI's):
// recurring queries run as statements prepared once per connection.
func (t *Tx) Ext() sqlx.ExtContext { return t.x }

// Backend names the database backend (SQLite or Postgres).
func (t *Tx) Backend() string { return t.db.backend }

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Envelope is one stored envelope (message log row).
type Envelope struct {
	Seq            int64      `db:"seq"`
	ID             string     `db:"id"`
	Channel        string     `db:"channel"`
	Sender         string     `db:"sender"`
	Peer           string     `db:"peer"`
	ReceivedAt     time.Time  `db:"received_at"`
	Filename       string     `db:"filename"`
	Kind           string     `db:"kind"`
	MessageType    string     `db:"message_type"`
	ControlID      string     `db:"control_id"`
	DedupKey       string     `db:"dedup_key"`
	SHA256         string     `db:"sha256"`
	Status         string     `db:"status"`
	Error          string     `db:"error"`
	ACK            []byte     `db:"ack"`
	Raw            []byte     `db:"raw"`
	MappingVersion string     `db:"mapping_version"`
	Attempts       int        `db:"attempts"`
	ProcessedAt    *time.Time `db:"processed_at"`
	PatientID      string     `db:"patient_id"`
}

// Inserted tells what InsertEnvelopes did with one envelope.
type Inserted struct {
	Duplicate bool
	// For a duplicate, the first envelope's id, status, error and reply.
	ID     string
	Status string
	Error  string
	ACK    []byte
}

const insertEnvelope = `INSERT INTO envelopes
 (id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key, sha256, status, error, ack, raw)
 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
 ON CONFLICT (sender, dedup_key) DO NOTHING`

const firstEnvelope = `SELECT id, status, error, ack FROM envelopes WHERE sender = ? AND dedup_key = ?`

const markEnvelopeProcessed = `UPDATE envelopes SET status = 'processed', error = '',
 patient_id = ?, mapping_version = ?, attempts = attempts + 1, processed_at = ? WHERE id = ?`

// logStmts are the envelope log's hot statements on the embedded store,
// each prepared on first use: database/sql keeps a statement's prepared form
// per connection and lends it to a transaction (Tx.Stmtx), so a commit or a
// poll for pending envelopes does not compile its SQL again. Compiling was
// about a sixth of the CPU of a one-envelope commit, and most of the
// pipeline's poll. PostgreSQL runs the queries unprepared, like the record's
// (see stmtCache).
type logStmts struct {
	insert, marks, pending lazyStmt // on the log
	finished               lazyStmt // on the record
}

// lazyStmt is one statement prepared on first use. A failure is returned and
// tried again on the next call, not remembered. It must not be asked for
// inside a transaction on its database (the embedded store's single
// connection would wait for itself).
type lazyStmt struct {
	mu sync.Mutex
	st *sqlx.Stmt
}

func (l *lazyStmt) get(ctx context.Context, x *sqlx.DB, query string) (*sqlx.Stmt, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		st, err := x.PreparexContext(ctx, query)
		if err != nil {
			return nil, fmt.Errorf("prepare envelope log statement: %w", err)
		}
		l.st = st
	}
	return l.st, nil
}

func (l *lazyStmt) close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.st == nil {
		return nil
	}
	err := l.st.Close()
	l.st = nil
	return err
}

// logStmt returns the prepared statement l for query on the embedded store,
// nil on PostgreSQL.
func (db *DB) logStmt(ctx context.Context, l *lazyStmt, x *sqlx.DB, query string) (*sqlx.Stmt, error) {
	if !db.split {
		return nil, nil
	}
	return l.get(ctx, x, query)
}

// closeLogStatements releases the prepared statements (at Close).
func (db *DB) closeLogStatements() error {
	ls := &db.logStmts
	return errors.Join(ls.insert.close(), ls.marks.close(), ls.pending.close(), ls.finished.close())
}

// logTxStmt runs one of the log's queries in tx: through a prepared
// statement when there is one, else directly.
type logTxStmt struct {
	tx    *sqlx.Tx
	query string
	stmt  *sqlx.Stmt
}

// bindLogStmt lends prepared (a statement of logStmts) to tx; without one
// (PostgreSQL) the query runs unprepared.
func bindLogStmt(ctx context.Context, tx *sqlx.Tx, prepared *sqlx.Stmt, query string) logTxStmt {
	if prepared != nil {
		return logTxStmt{stmt: tx.StmtxContext(ctx, prepared)}
	}
	return logTxStmt{tx: tx, query: tx.Rebind(query)}
}

func (s logTxStmt) exec(ctx context.Context, args ...any) (sql.Result, error) {
	if s.stmt != nil {
		return s.stmt.ExecContext(ctx, args...)
	}
	return s.tx.ExecContext(ctx, s.query, args...)
}

// InsertEnvelopes stores envelopes durably, together: on PostgreSQL in one
// statement and transaction, on the embedded store with one journal write
// and fdatasync (intakejournal.go). An envelope whose (sender, dedup key) is
// already stored is not inserted again: its result carries the first one's
// id, status and reply.
func (db *DB) InsertEnvelopes(ctx context.Context, envs []*Envelope) ([]Inserted, error) {
	if db.ij != nil {
		return db.insertJournaled(ctx, envs)
	}
	if db.split {
		return nil, errors.New("insert envelopes: this store was opened without intake (NoIntake)")
	}
	return db.insertEnvelopesPG(ctx, envs)
}

// insertEnvelopesPG stores envelopes on PostgreSQL with one statement, in
// its own (durable) transaction: the rows go in as arrays, in order, and
// the ids that come back are the envelopes that were new. Two round trips
// whatever the number of envelopes, where a transaction with a statement
// per envelope took four or more. Duplicates, rare, are then read one by
// one.
func (db *DB) insertEnvelopesPG(ctx context.Context, envs []*Envelope) ([]Inserted, error) {
	n := len(envs)
	ids, channels, senders, peers, times := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	files, kinds, types, controls, keys := make([]string, n), make([]string, n), make([]string, n), make([]string, n), make([]string, n)
	sums, statuses, errs := make([]string, n), make([]string, n), make([]string, n)
	acks, raws := make(pq.ByteaArray, n), make(pq.ByteaArray, n)
	ackNull, rawNull := make(pq.BoolArray, n), make(pq.BoolArray, n)
	for i, e := range envs {
		ids[i], channels[i], senders[i], peers[i] = e.ID, e.Channel, e.Sender, e.Peer
		times[i] = e.ReceivedAt.UTC().Format(time.RFC3339Nano)
		files[i], kinds[i], types[i], controls[i], keys[i] = e.Filename, e.Kind, e.MessageType, e.ControlID, e.DedupKey
		sums[i], statuses[i], errs[i] = e.SHA256, e.Status, e.Error
		acks[i], raws[i], ackNull[i], rawNull[i] = e.ACK, e.Raw, e.ACK == nil, e.Raw == nil
	}
	rows, err := db.log.QueryContext(ctx, insertEnvelopesArrays, pq.StringArray(ids), pq.StringArray(channels),
		pq.StringArray(senders), pq.StringArray(peers), pq.StringArray(times), pq.StringArray(files), pq.StringArray(kinds),
		pq.StringArray(types), pq.StringArray(controls), pq.StringArray(keys), pq.StringArray(sums), pq.StringArray(statuses),
		pq.StringArray(errs), acks, raws, ackNull, rawNull)
	if err != nil {
		return nil, fmt.Errorf("insert envelopes: %w", err)
	}
	added := make(map[string]bool, n)
	for rows.Next() {
		var id string
		if err := rows.Scan(&id); err != nil {
			rows.Close()
			return nil, fmt.Errorf("insert envelopes: %w", err)
		}
		added[id] = true
	}
	if err := errors.Join(rows.Err(), rows.Close()); err != nil {
		return nil, fmt.Errorf("insert envelopes: %w", err)
	}
	out := make([]Inserted, n)
	for i, e := range envs {
		if added[e.ID] {
			out[i] = Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
			continue
		}
		var first struct {
			ID     string `db:"id"`
			Status string `db:"status"`
			Error  string `db:"error"`
			ACK    []byte `db:"ack"`
		}
		if err := db.log.GetContext(ctx, &first, db.rebind(firstEnvelope), e.Sender, e.DedupKey); err != nil {
			return nil, fmt.Errorf("read duplicate envelope: %w", err)
		}
		out[i] = Inserted{Duplicate: true, ID: first.ID, Status: first.Status, Error: first.Error, ACK: first.ACK}
	}
	return out, nil
}

// insertEnvelopesArrays inserts envelopes given as parallel arrays, in
// array order (so seq follows it), skipping those already stored.
const insertEnvelopesArrays = `INSERT INTO envelopes
 (id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key, sha256, status, error, ack, raw)
 SELECT id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key, sha256, status, error,
  CASE WHEN ack_null THEN NULL ELSE ack END, CASE WHEN raw_null THEN NULL ELSE raw END
 FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::text[], $8::text[],
  $9::text[], $10::text[], $11::text[], $12::text[], $13::text[], $14::bytea[], $15::bytea[], $16::bool[], $17::bool[])
  WITH ORDINALITY AS u (id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key,
  sha256, status, error, ack, raw, ack_null, raw_null, ord)
 ORDER BY ord
 ON CONFLICT (sender, dedup_key) DO NOTHING
 RETURNING id`

const envelopeCols = `seq, id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key,
 sha256, status, error, ack, raw, mapping_version, attempts, processed_at, patient_id`

const pendingEnvelopes = `SELECT ` + envelopeCols + ` FROM envelopes
 WHERE status = 'received' AND seq > ? ORDER BY seq LIMIT ?`

// PendingEnvelopes returns up to limit envelopes waiting for processing, in
// the order they were received, after seq.
func (db *DB) PendingEnvelopes(ctx context.Context, afterSeq int64, limit int) ([]Envelope, error) {
	if err := db.waitIngested(ctx, false); err != nil {
		return nil, err
	}
	var out []Envelope
	st, err := db.logStmt(ctx, &db.logStmts.pending, db.log, pendingEnvelopes)
	if err == nil {
		if st != nil {
			err = st.SelectContext(ctx, &out, afterSeq, limit)
		} else {
			err = db.log.SelectContext(ctx, &out, db.rebind(pendingEnvelopes), afterSeq, limit)
		}
	}
	if err != nil {
		return nil, fmt.Errorf("pending envelopes: %w", err)
	}
	if db.split {
		return db.dropProcessed(ctx, out)
	}
	return out, nil
}

// PendingKey names an envelope waiting for processing.
type PendingKey struct {
	Seq    int64  `db:"seq"`
	ID     string `db:"id"`
	Sender string `db:"sender"`
}

// PendingBetween returns the sequence numbers, ids and senders of up to
// limit envelopes waiting for processing after seq after and at or before
// seq upTo, oldest first, without their bodies: a cheap way for the
// pipeline to learn that envelopes behind its cursor are pending again
// (requeued by another process), page by page.
func (db *DB) PendingBetween(ctx context.Context, after, upTo int64, limit int) ([]PendingKey, error) {
	var out []PendingKey
	err := db.log.SelectContext(ctx, &out, db.rebind(`SELECT seq, id, sender FROM envelopes
		WHERE status = 'received' AND seq > ? AND seq <= ? ORDER BY seq LIMIT ?`), after, upTo, limit)
	if err != nil {
		return nil, fmt.Errorf("pending envelopes: %w", err)
	}
	return out, nil
}

const finishedEnvelope = `SELECT envelope_id, patient_id, mapping_version, processed_at FROM processed_envelopes
 WHERE envelope_id = ?`

// fewPending: up to this many pending envelopes are looked up in the record
// one by one with a prepared statement (the usual case: the pipeline reads
// each commit's few envelopes as they arrive); more in one IN query.
const fewPending = 16

// dropProcessed removes from envs those whose processing already committed
// in the record (the log's status update was lost, say by a crash right after
// the record's commit) and brings their log status up to date.
func (db *DB) dropProcessed(ctx context.Context, envs []Envelope) ([]Envelope, error) {
	if len(envs) == 0 {
		return envs, nil
	}
	var done []finished
	if len(envs) <= fewPending {
		st, err := db.finishedStmt(ctx)
		if err != nil {
			return nil, err
		}
		for _, e := range envs {
			var f finished
			switch err := st.GetContext(ctx, &f, e.ID); {
			case err == nil:
				done = append(done, f)
			case !errors.Is(err, sql.ErrNoRows):
				return nil, fmt.Errorf("processed envelopes: %w", err)
			}
		}
	} else {
		ids := make([]string, len(envs))
		for i, e := range envs {
			ids[i] = e.ID
		}
		q, args, err := sqlx.In(`SELECT envelope_id, patient_id, mapping_version, processed_at FROM processed_envelopes
		WHERE envelope_id IN (?)`, ids)
		if err != nil {
			return nil, err
		}
		if err := db.x.SelectContext(ctx, &done, db.rebind(q), args...); err != nil {
			return nil, fmt.Errorf("processed envelopes: %w", err)
		}
	}
	if len(done) == 0 {
		return envs, nil
	}
	if err := db.markProcessed(ctx, done); err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, f := range done {
		skip[f.EnvelopeID] = true
	}
	out := envs[:0]
	for _, e := range envs {
		if !skip[e.ID] {
			out = append(out, e)
		}
	}
	return out, nil
}

// finishedStmt is the record's prepared lookup of one processed envelope
// (embedded store only: dropProcessed runs only there).
func (db *DB) finishedStmt(ctx context.Context) (*sqlx.Stmt, error) {
	return db.logStmts.finished.get(ctx, db.x, finishedEnvelope)
}

// finished is a completed envelope, as the record knows it.
type finished struct {
	EnvelopeID     string    `db:"envelope_id"`
	PatientID      string    `db:"patient_id"`
	MappingVersion string    `db:"mapping_version"`
	ProcessedAt    time.Time `db:"processed_at"`
}

// markProcessed brings the log's status of finished envelopes up to date.
//
// It does not first wait for the intake journal's copier: the envelopes it
// marks were read from the log, so their rows are there, and hurrying the
// copier after every processing transaction would cut its gathering short
// (on one busy connection, a copy transaction per processing transaction).
// Should a row be missing all the same, the marks are rolled back and
// written again once everything received is in the log.
func (db *DB) markProcessed(ctx context.Context, fs []finished) error {
	marks, err := db.logStmt(ctx, &db.logStmts.marks, db.log, markEnvelopeProcessed)
	if err != nil {
		return err
	}
	write := func(strict bool) error {
		return runTx(ctx, db.log, func(tx *sqlx.Tx) error {
			mark := bindLogStmt(ctx, tx, marks, markEnvelopeProcessed)
			for _, f := range fs {
				res, err := mark.exec(ctx, f.PatientID, f.MappingVersion, f.ProcessedAt, f.EnvelopeID)
				if err != nil {
					return fmt.Errorf("mark envelope processed: %w", err)
				}
				if strict {
					if n, err := res.RowsAffected(); err == nil && n == 0 {
						return errNotInLog
					}
				}
			}
			return nil
		})
	}
	err = write(db.ij != nil)
	if !errors.Is(err, errNotInLog) {
		return err
	}
	if err := db.visible(ctx); err != nil {
		return err
	}
	return write(false)
}

// errNotInLog rolls back processed marks that found an envelope missing from
// the log (not yet copied from the intake journal).
var errNotInLog = errors.New("envelope not in the log yet")

// GetEnvelope returns one envelope by id.
func (db *DB) GetEnvelope(ctx context.Context, id string) (*Envelope, error) {
	if err := db.visible(ctx); err != nil {
		return nil, err
	}
	var e Envelope
	err := db.log.GetContext(ctx, &e, db.rebind(`SELECT `+envelopeCols+` FROM envelopes WHERE id = ?`), id)
	if err != nil {
		return nil, fmt.Errorf("get envelope: %w", notFound(err))
	}
	return &e, nil
}

// EnvelopeFilter selects envelopes for listing; zero fields match all.
type EnvelopeFilter struct {
	Sender, Status, ControlID, PatientID string
	Since, Until                         time.Time
	Limit                                int
	BeforeSeq                            int64
}

// ListEnvelopes returns envelopes matching f, newest first, without bodies.
func (db *DB) ListEnvelopes(ctx context.Context, f EnvelopeFilter) ([]Envelope, error) {
	if err := db.visible(ctx); err != nil {
		return nil, err
	}
	q := `SELECT seq, id, channel, sender, peer, received_at, filename, kind, message_type, control_id, dedup_key,
 sha256, status, error, mapping_version, attempts, processed_at, patient_id FROM envelopes WHERE 1=1`
	var args []any
	add := func(cond string, v any) { q += " AND " + cond; args = append(args, v) }
	if f.Sender != "" {
		add("sender = ?", f.Sender)
	}
	if f.Status != "" {
		add("status = ?", f.Status)
	}
	if f.ControlID != "" {
		add("control_id = ?", f.ControlID)
	}
	if f.PatientID != "" {
		// An envelope's patient_id is the patient it was processed for; a
		// later merge or link moves the record's resources, not that column.
		// The envelopes' Provenance resources move with the record, so they
		// say which envelopes belong to the patient now.
		ids, err := db.patientEnvelopes(ctx, f.PatientID)
		if err != nil {
			return nil, err
		}
		if len(ids) == 0 {
			add("patient_id = ?", f.PatientID)
		} else {
			in, inArgs, err := sqlx.In("(patient_id = ? OR id IN (?))", f.PatientID, ids)
			if err != nil {
				return nil, err
			}
			q += " AND " + in
			args = append(args, inArgs...)
		}
	}
	if !f.Since.IsZero() {
		add("received_at >= ?", f.Since.UTC())
	}
	if !f.Until.IsZero() {
		add("received_at < ?", f.Until.UTC())
	}
	if f.BeforeSeq > 0 {
		add("seq < ?", f.BeforeSeq)
	}
	if f.Limit <= 0 || f.Limit > 1000 {
		f.Limit = 100
	}
	q += " ORDER BY seq DESC LIMIT ?"
	args = append(args, f.Limit)
	var out []Envelope
	if err := db.log.SelectContext(ctx, &out, db.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("list envelopes: %w", err)
	}
	return out, nil
}

// CountEnvelopes counts envelopes by status.
func (db *DB) CountEnvelopes(ctx context.Context) (map[string]int64, error) {
	if err := db.visible(ctx); err != nil {
		return nil, err
	}
	rows, err := db.log.QueryxContext(ctx, `SELECT status, COUNT(*) FROM envelopes GROUP BY status`)
	if err != nil {
		return nil, fmt.Errorf("count envelopes: %w", err)
	}
	defer rows.Close()
	out := map[string]int64{}
	for rows.Next() {
		var s string
		var n int64
		if err := rows.Scan(&s, &n); err != nil {
			return nil, err
		}
		out[s] = n
	}
	return out, rows.Err()
}

// MarkFailed records that processing an envelope failed.
func (db *DB) MarkFailed(ctx context.Context, id, reason string) error {
	if err := db.visible(ctx); err != nil {
		return err
	}
	// An envelope already processed stays so: on PostgreSQL another replica
	// may have processed it since this one gave up on it.
	_, err := db.log.ExecContext(ctx, db.rebind(`UPDATE envelopes SET status = 'failed', error = ?, attempts = attempts + 1,
		processed_at = ? WHERE id = ? AND status <> 'processed'`), reason, time.Now().UTC(), id)
	if err != nil {
		return fmt.Errorf("mark envelope failed: %w", err)
	}
	return nil
}

// RequeueFilter chooses the failed envelopes to requeue; each field left
// empty chooses them all.
type RequeueFilter struct {
	Sender string
	IDs    []string
	Since  time.Time // received at or after
}

// Requeue puts the failed envelopes f chooses back in the processing queue
// (after a mapping fix) and returns how many.
func (db *DB) Requeue(ctx context.Context, f RequeueFilter) (int64, error) {
	if err := db.visible(ctx); err != nil {
		return 0, err
	}
	q := `UPDATE envelopes SET status = 'received', error = '' WHERE status = 'failed'`
	var args []any
	if f.Sender != "" {
		q += " AND sender = ?"
		args = append(args, f.Sender)
	}
	if !f.Since.IsZero() {
		q += " AND received_at >= ?"
		args = append(args, f.Since.UTC())
	}
	if len(f.IDs) > 0 {
		in, inArgs, err := sqlx.In(" AND id IN (?)", f.IDs)
		if err != nil {
			return 0, err
		}
		q += in
		args = append(args, inArgs...)
	}
	res, err := db.log.ExecContext(ctx, db.rebind(q), args...)
	if err != nil {
		return 0, fmt.Errorf("requeue: %w", err)
	}
	return res.RowsAffected()
}

// PurgeRaw removes the raw bodies (PHI) of settled envelopes (processed or
// rejected) received before t. The row, its hash and its ACK stay, so a
// duplicate is still recognised and answered. It returns how many bodies it
// removed.
func (db *DB) PurgeRaw(ctx context.Context, before time.Time) (int64, error) {
	if err := db.visible(ctx); err != nil {
		return 0, err
	}
	res, err := db.log.ExecContext(ctx, db.log.Rebind(`UPDATE envelopes SET raw = NULL
		WHERE received_at < ? AND status IN ('processed', 'rejected') AND raw IS NOT NULL`), before.UTC())
	if err != nil {
		return 0, fmt.Errorf("purge raw bodies: %w", err)
	}
	return res.RowsAffected()
}

// maxPatientEnvelopes bounds the envelopes a patient's message list looks
// up through its Provenance resources (the most recent ones).
const maxPatientEnvelopes = 5000

// patientEnvelopes returns the ids of the envelopes whose Provenance belongs
// to patientID now, most recent first.
func (db *DB) patientEnvelopes(ctx context.Context, patientID string) ([]string, error) {
	var ids []string
	err := db.x.SelectContext(ctx, &ids, db.rebind(`SELECT envelope_id FROM resources
		WHERE patient_id = ? AND resource_type = 'Provenance' ORDER BY updated_at DESC LIMIT ?`), patientID, maxPatientEnvelopes)
	if err != nil {
		return nil, fmt.Errorf("patient envelopes: %w", err)
	}
	return ids, nil
}

package store

import (
	"context"
	"database/sql"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/defect"
	"github.com/hiegw/hiegw/internal/journal"
	"github.com/jmoiron/sqlx"
)

// The embedded store receives envelopes through a journal (see package
// journal). InsertEnvelopes checks for duplicates, appends the new
// envelopes to the journal with one fdatasync and returns: they are durable.
// A background ingester then copies them into the envelope log (intake.db)
// in transactions that skip the fsync, and records in the same transaction
// how far it got (journal_state). Every read of the log first waits until
// what was appended before it is ingested, so callers see their own writes
// as before.
//
// Segments are released once their envelopes are ingested by a commit that
// was fsynced: the ingester fsyncs the commit that finishes a segment. At
// start-up the envelopes after journal_state's position are ingested again
// (the position and the rows commit together, so none twice), and at a
// clean shutdown the journal is emptied.

// ingestBatch bounds the envelopes copied in one transaction.
const ingestBatch = 512

// ingestDelay is how long the ingester lets envelopes gather before it
// copies them, unless a batch fills or a reader asks for them: one copy
// transaction writes the same few pages whether it holds one envelope or
// fifty, so on a busy single connection gathering saves most of the copy's
// cost. The processing pipeline waits for the copy, so this is also the
// most it adds to an envelope's processing latency.
const ingestDelay = 10 * time.Millisecond

// defaultMaxBacklog bounds the envelopes appended and not yet copied;
// receipt waits beyond it, for at most backlogWait, then fails (intake
// answers "not stored, send again later").
const (
	defaultMaxBacklog = 20000
	backlogWait       = 30 * time.Second
)

// visibleWait bounds how long a read waits for the ingester. A read that
// waits longer (the ingester is failing) goes ahead and may miss the latest
// envelopes; the failure is logged and reported by Ping.
const visibleWait = 2 * time.Second

type dedupKey struct{ sender, key string }

type journaled struct {
	env *Envelope
	end journal.Pos
}

// pendingEnv is an envelope placed in the journal and not yet copied: the
// answer for its duplicates, and where it ends (a duplicate is answered
// only once the first is durable).
type pendingEnv struct {
	ins Inserted
	end journal.Pos
}

// intakeJournal is the embedded store's journaled envelope intake.
type intakeJournal struct {
	j      *journal.Journal
	reader *sqlx.DB // a read-only handle on the log, for duplicate lookups
	first  lazyStmt // its prepared duplicate lookup
	filter *dedupFilter
	// filling is cancelled at shutdown; filled is closed when filling ends.
	cancelFill context.CancelFunc
	filled     chan struct{}
	log        *slog.Logger

	insert  sync.Mutex   // one InsertEnvelopes at a time: check, append, publish
	lookups atomic.Int64 // duplicate lookups that reached the log (tests)

	mu        sync.Mutex
	pending   map[dedupKey]pendingEnv // appended, not yet ingested
	queue     []journaled             // appended, not yet ingested, in order
	appended  journal.Pos
	ingested  journal.Pos
	durable   journal.Pos // ingested by an fsynced commit
	progress  chan struct{}
	ingestErr error
	closed    bool
	held      bool // tests: the ingester copies nothing (a crash image holds the journal only)
	// maxBacklog is defaultMaxBacklog (tests lower it).
	maxBacklog int

	kick   chan struct{}
	urgent chan struct{} // a reader waits: copy now
	stop   chan struct{}
	done   chan struct{}
}

// openIntakeJournal opens the journal in dir, ingests what an earlier run
// left in it and starts the ingester.
func (db *DB) openIntakeJournal(ctx context.Context, dir, logPath string, noSync bool, log *slog.Logger) (err error) {
	// A defect of hiegw while reading the journal at start (it is fuzzed:
	// FuzzOpen, FuzzDecodeEnvelope) stops the start with an error carrying
	// the stack rather than a crash; the journal is emptied only as the
	// recovery's last step, so what it holds waits for the fixed build.
	defer defect.Catch("internal error in hiegw while opening or recovering the intake journal, not in its files; "+
		"the journal was not emptied", &err)
	if log == nil {
		log = slog.Default()
	}
	j, err := journal.Open(dir, journal.Options{NoSync: noSync})
	if err != nil {
		return err
	}
	reader, err := openSQLiteReader(logPath)
	if err != nil {
		j.Close()
		return err
	}
	ij := &intakeJournal{
		j: j, reader: reader, log: log,
		pending: map[dedupKey]pendingEnv{}, maxBacklog: defaultMaxBacklog,
		progress: make(chan struct{}),
		kick:     make(chan struct{}, 1),
		urgent:   make(chan struct{}, 1),
		stop:     make(chan struct{}),
		done:     make(chan struct{}),
	}
	db.ij = ij
	if err := db.recoverJournal(ctx); err != nil {
		db.ij = nil
		return errors.Join(err, j.Close(), reader.Close())
	}
	end := j.End()
	ij.appended, ij.ingested, ij.durable = end, end, end
	var keys int64
	if err := reader.GetContext(ctx, &keys, `SELECT COUNT(*) FROM envelopes`); err != nil {
		db.ij = nil
		return errors.Join(fmt.Errorf("count envelopes: %w", err), j.Close(), reader.Close())
	}
	ij.filter = newDedupFilter(keys)
	fctx, cancel := context.WithCancel(context.Background())
	ij.cancelFill, ij.filled = cancel, make(chan struct{})
	go func() {
		defer close(ij.filled)
		ij.filter.fill(fctx, reader, ij.log)
	}()
	go db.ingestLoop()
	return nil
}

// recoverJournal ingests the envelopes after the recorded position, makes
// them durable and empties the journal.
func (db *DB) recoverJournal(ctx context.Context) error {
	var at struct {
		Seg int64 `db:"seg"`
		Off int64 `db:"off"`
	}
	if err := db.log.GetContext(ctx, &at, `SELECT seg, off FROM journal_state WHERE id = 1`); err != nil {
		return fmt.Errorf("read journal position: %w", err)
	}
	var batch []journaled
	n := 0
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := db.ingest(ctx, batch, false)
		n += len(batch)
		batch = batch[:0]
		return err
	}
	err := db.ij.j.Replay(journal.Pos{Seg: uint64(at.Seg), Off: at.Off}, func(end journal.Pos, rec []byte) error {
		e, err := decodeEnvelope(rec)
		if err != nil {
			return fmt.Errorf("journal record ending at %v: %w", end, err)
		}
		batch = append(batch, journaled{env: e, end: end})
		if len(batch) == ingestBatch {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return fmt.Errorf("recover intake journal: %w", err)
	}
	recorded := journal.Pos{Seg: uint64(at.Seg), Off: at.Off}
	if n > 0 {
		// One fsynced commit covers every recovered row.
		end := db.ij.j.End()
		if err := db.durableTx(ctx, db.log, func(tx *sqlx.Tx) error { return setJournalPos(ctx, tx, end) }); err != nil {
			return fmt.Errorf("recover intake journal: %w", err)
		}
		recorded = end
		db.ij.log.Info("intake journal recovered", "envelopes", n)
	}
	if end := db.ij.j.End(); end.Less(recorded) {
		db.ij.log.Warn("intake journal is behind the position the message log recorded (its directory was emptied or "+
			"replaced, or the log restored from a backup); it starts again from its first segment", "recorded", recorded.String(), "journal", end.String())
	}
	if err := db.ij.j.Reset(); err != nil {
		return err
	}
	// The recorded position names the journal as it now is: one recorded
	// beyond it (see above) would make the next recovery skip every record
	// the new journal takes.
	if end := db.ij.j.End(); end != recorded {
		if err := db.durableTx(ctx, db.log, func(tx *sqlx.Tx) error { return setJournalPos(ctx, tx, end) }); err != nil {
			return fmt.Errorf("recover intake journal: %w", err)
		}
	}
	return nil
}

func setJournalPos(ctx context.Context, tx *sqlx.Tx, p journal.Pos) error {
	if _, err := tx.ExecContext(ctx, `UPDATE journal_state SET seg = ?, off = ? WHERE id = 1`, int64(p.Seg), p.Off); err != nil {
		return fmt.Errorf("record journal position: %w", err)
	}
	return nil
}

// ingest copies batch into the envelope log in one transaction, fsynced
// when durable, together with the position after its last envelope.
func (db *DB) ingest(ctx context.Context, batch []journaled, durable bool) error {
	insStmt, err := db.logStmt(ctx, &db.logStmts.insert, db.log, insertEnvelope)
	if err != nil {
		return err
	}
	run := runTx
	if durable {
		run = db.durableTx
	}
	return run(ctx, db.log, func(tx *sqlx.Tx) error {
		ins := bindLogStmt(ctx, tx, insStmt, insertEnvelope)
		for _, b := range batch {
			e := b.env
			if _, err := ins.exec(ctx, e.ID, e.Channel, e.Sender, e.Peer, e.ReceivedAt.UTC(), e.Filename, e.Kind,
				e.MessageType, e.ControlID, e.DedupKey, e.SHA256, e.Status, e.Error, e.ACK, e.Raw); err != nil {
				return fmt.Errorf("ingest envelope: %w", err)
			}
		}
		return setJournalPos(ctx, tx, batch[len(batch)-1].end)
	})
}

// copyBatch is the copier's ingest under a recover: a panic (a defect of
// hiegw) fails the copy like a database error, so the copier retries with
// backoff, Ping reports it, and receipt goes on into the journal, instead
// of the process ending and meeting the same batch at every start.
func (db *DB) copyBatch(batch []journaled, durable bool) (err error) {
	defer defect.Recover(db.ij.log, "copy into the log panicked, a defect of hiegw", &err)
	return db.ingest(context.Background(), batch, durable)
}

// ingestLoop copies appended envelopes into the log until the store closes,
// then copies the rest and empties the journal.
func (db *DB) ingestLoop() {
	ij := db.ij
	defer close(ij.done)
	backoff := 50 * time.Millisecond
	for {
		stopping := false
		select {
		case <-ij.kick:
		case <-ij.urgent:
		case <-ij.stop:
			stopping = true
		}
		if !stopping {
			ij.gather()
		}
		for {
			// Only what is durable in the journal is copied: an envelope
			// whose sync is still under way (or failed) is not stored yet.
			synced := ij.j.Synced()
			ij.mu.Lock()
			n := 0
			for n < len(ij.queue) && n < ingestBatch && !synced.Less(ij.queue[n].end) {
				n++
			}
			if ij.held && !stopping {
				n = 0
			}
			batch := ij.queue[:n:n]
			ij.mu.Unlock()
			if n == 0 {
				break
			}
			end := batch[n-1].end
			// The commit that completes a segment is fsynced, so that
			// the segment can go.
			durable := end.Seg > ij.durable.Seg
			err := db.copyBatch(batch, durable)
			if err != nil {
				ij.mu.Lock()
				ij.ingestErr = err
				ij.mu.Unlock()
				ij.log.Error("intake journal: copying envelopes into the log failed; retrying", "err", err)
				if stopping {
					return // they stay in the journal for the next start
				}
				select {
				case <-time.After(backoff):
				case <-ij.stop:
					stopping = true
				}
				backoff = min(2*backoff, 5*time.Second)
				continue
			}
			backoff = 50 * time.Millisecond
			ij.mu.Lock()
			ij.ingestErr = nil
			for _, b := range batch {
				delete(ij.pending, dedupKey{b.env.Sender, b.env.DedupKey})
			}
			clear(batch) // the queue's copied entries: let the envelopes go
			ij.queue = ij.queue[n:]
			ij.ingested = end
			if durable {
				ij.durable = end
			}
			close(ij.progress)
			ij.progress = make(chan struct{})
			ij.mu.Unlock()
			if durable {
				if err := ij.j.Release(end); err != nil {
					ij.log.Error("intake journal: release segments", "err", err)
				}
			}
			// What arrived during the copy gathers again before it is
			// copied (each arrival kicked after its sync, so the kick is
			// waiting); only a full batch, or stopping, goes on at once.
			// Copying the remainder straight away halved the copies on one
			// busy connection.
			if n < ingestBatch && !stopping {
				break
			}
		}
		if stopping {
			db.closeJournal()
			return
		}
	}
}

// gather waits up to ingestDelay for more envelopes, unless a batch is
// already full or a reader asks for them.
func (ij *intakeJournal) gather() {
	ij.mu.Lock()
	n := len(ij.queue)
	ij.mu.Unlock()
	if n >= ingestBatch {
		return
	}
	t := time.NewTimer(ingestDelay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ij.urgent:
	case <-ij.stop:
	}
}

// closeJournal makes everything ingested durable and empties the journal
// (at a clean shutdown, once the queue is empty).
func (db *DB) closeJournal() {
	ij := db.ij
	ij.mu.Lock()
	end := ij.ingested
	ij.mu.Unlock()
	err := db.durableTx(context.Background(), db.log, func(tx *sqlx.Tx) error { return setJournalPos(context.Background(), tx, end) })
	if err == nil {
		err = ij.j.Reset()
	}
	if err != nil {
		ij.log.Error("intake journal: final checkpoint failed; the next start recovers from the journal", "err", err)
	}
}

// shutdown stops intake through the journal, waits for the ingester to
// finish and closes the files.
func (ij *intakeJournal) shutdown() error {
	ij.insert.Lock()
	ij.mu.Lock()
	already := ij.closed
	ij.closed = true
	ij.mu.Unlock()
	ij.insert.Unlock()
	if already {
		<-ij.done
		return nil
	}
	// Envelopes placed by calls still waiting for their sync become durable
	// now, so that the copier's last round takes them before the journal is
	// emptied. (After a failed sync they stay in the journal for the next
	// start: the copier takes only what is durable.)
	_ = ij.j.Sync(ij.j.End())
	close(ij.stop)
	<-ij.done
	ij.cancelFill()
	<-ij.filled
	return errors.Join(ij.first.close(), ij.reader.Close(), ij.j.Close())
}

// insertJournaled is InsertEnvelopes on the embedded store. Envelopes are
// checked for duplicates and placed in the journal one call at a time, in
// order; their syncs may overlap with those of the calls before and after
// (journal.Sync), and the call returns once its envelopes, and the first
// copies its duplicates stand for, are durable.
func (db *DB) insertJournaled(ctx context.Context, envs []*Envelope) ([]Inserted, error) {
	out, wait, fresh, err := db.placeJournaled(ctx, envs)
	if err != nil {
		return nil, err
	}
	if wait != (journal.Pos{}) {
		if err := db.ij.j.Sync(wait); err != nil {
			return nil, fmt.Errorf("insert envelope: %w", err)
		}
	}
	if fresh {
		select {
		case db.ij.kick <- struct{}{}:
		default:
		}
	}
	return out, nil
}

// placeJournaled answers duplicates and writes the new envelopes to the
// journal, without syncing it. It returns the answers, the position that
// must be durable before they are given (zero when nothing waits) and
// whether any envelope was new.
func (db *DB) placeJournaled(ctx context.Context, envs []*Envelope) ([]Inserted, journal.Pos, bool, error) {
	ij := db.ij
	ij.insert.Lock()
	defer ij.insert.Unlock()
	var none journal.Pos
	// Envelopes wait in memory until they are copied; if the copier falls
	// behind (a slow or failing disk), receipt waits for it rather than
	// holding an unbounded backlog.
	ij.mu.Lock()
	var giveUp <-chan time.Time
	for len(ij.queue) >= ij.maxBacklog && !ij.closed {
		ch := ij.progress
		ij.mu.Unlock()
		if giveUp == nil {
			t := time.NewTimer(backlogWait)
			defer t.Stop()
			giveUp = t.C
		}
		select {
		case ij.urgent <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-giveUp:
			return nil, none, false, fmt.Errorf("insert envelope: %d envelopes wait to be copied into the message log and the copier is not keeping up", ij.maxBacklog)
		case <-ctx.Done():
			return nil, none, false, fmt.Errorf("insert envelope: waiting for the journal copier: %w", ctx.Err())
		}
		ij.mu.Lock()
	}
	closed := ij.closed
	ij.mu.Unlock()
	if closed {
		return nil, none, false, errors.New("store closed")
	}
	out := make([]Inserted, len(envs))
	recs := make([][]byte, 0, len(envs))
	fresh := make([]int, 0, len(envs))
	var wait journal.Pos
	var inBatch map[dedupKey]int
	for i, e := range envs {
		k := dedupKey{e.Sender, e.DedupKey}
		if first, ok := inBatch[k]; ok {
			out[i] = out[first]
			out[i].Duplicate = true
			continue
		}
		dup, end, found, err := db.findEnvelope(ctx, k)
		if err != nil {
			return nil, none, false, err
		}
		if found {
			out[i] = dup
			if wait.Less(end) {
				wait = end
			}
		} else {
			out[i] = Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
			recs = append(recs, encodeEnvelope(e))
			fresh = append(fresh, i)
		}
		if len(envs) > 1 {
			if inBatch == nil {
				inBatch = map[dedupKey]int{}
			}
			inBatch[k] = i
		}
	}
	if len(recs) == 0 {
		return out, wait, false, nil
	}
	// The ingester may split a batch, so each record needs its own end
	// position; they follow from the last one and the record sizes.
	end, err := ij.j.Write(recs...)
	if err != nil {
		return nil, none, false, fmt.Errorf("insert envelope: %w", err)
	}
	ends := recordEnds(end, recs)
	ij.mu.Lock()
	for n, i := range fresh {
		e := envs[i]
		ij.filter.add(dedupKey{e.Sender, e.DedupKey})
		ij.pending[dedupKey{e.Sender, e.DedupKey}] = pendingEnv{ins: out[i], end: ends[n]}
		ij.queue = append(ij.queue, journaled{env: e, end: ends[n]})
	}
	ij.appended = end
	ij.mu.Unlock()
	return out, end, true, nil
}

// recordEnds gives the position after each of recs, appended together so
// that the last ends at end (one Append never spans segments).
func recordEnds(end journal.Pos, recs [][]byte) []journal.Pos {
	ends := make([]journal.Pos, len(recs))
	off := end.Off
	for i := len(recs) - 1; i >= 0; i-- {
		ends[i] = journal.Pos{Seg: end.Seg, Off: off}
		off -= journal.RecordOverhead + int64(len(recs[i]))
	}
	return ends
}

// findEnvelope looks k up among the envelopes appended but not yet
// ingested, then in the log. The ingester forgets a pending envelope only
// after its row has committed, so one of the two always has it. For a
// pending envelope it also gives where it ends in the journal (it may not
// be durable yet); for one in the log, the zero position.
func (db *DB) findEnvelope(ctx context.Context, k dedupKey) (Inserted, journal.Pos, bool, error) {
	ij := db.ij
	ij.mu.Lock()
	p, ok := ij.pending[k]
	ij.mu.Unlock()
	if ok {
		p.ins.Duplicate = true
		return p.ins, p.end, true, nil
	}
	var none journal.Pos
	if ij.filter.ready.Load() && !ij.filter.mayContain(k) {
		return Inserted{}, none, false, nil
	}
	ij.lookups.Add(1)
	st, err := ij.first.get(ctx, ij.reader, firstEnvelope)
	if err != nil {
		return Inserted{}, none, false, err
	}
	var first struct {
		ID     string `db:"id"`
		Status string `db:"status"`
		Error  string `db:"error"`
		ACK    []byte `db:"ack"`
	}
	switch err := st.GetContext(ctx, &first, k.sender, k.key); {
	case errors.Is(err, sql.ErrNoRows):
		return Inserted{}, none, false, nil
	case err != nil:
		return Inserted{}, none, false, fmt.Errorf("read duplicate envelope: %w", err)
	}
	return Inserted{Duplicate: true, ID: first.ID, Status: first.Status, Error: first.Error, ACK: first.ACK}, none, true, nil
}

// visible waits until every envelope appended before the call is in the
// log (at most visibleWait), so a read sees what was received before it,
// and has the ingester copy them at once.
func (db *DB) visible(ctx context.Context) error { return db.waitIngested(ctx, true) }

// waitIngested is visible; without urgent the ingester keeps gathering (the
// processing pipeline's poll: it is woken for each commit, and gathering
// lets it take the envelopes in runs).
func (db *DB) waitIngested(ctx context.Context, urgent bool) error {
	ij := db.ij
	if ij == nil {
		return nil
	}
	ij.mu.Lock()
	target := ij.appended
	var timeout <-chan time.Time
	for ij.ingested.Less(target) && !ij.closed {
		ch := ij.progress
		ij.mu.Unlock()
		if urgent {
			select {
			case ij.urgent <- struct{}{}:
			default:
			}
		}
		if timeout == nil {
			t := time.NewTimer(visibleWait)
			defer t.Stop()
			timeout = t.C
		}
		select {
		case <-ch:
		case <-timeout:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		ij.mu.Lock()
	}
	ij.mu.Unlock()
	return nil
}

// InsertConcurrency is how many InsertEnvelopes calls may usefully be
// under way at once: on the embedded store as many as the journal runs
// syncs at once (their syncs overlap; envelopes reach the log in journal
// order whatever order the calls end in). On PostgreSQL one: an envelope
// takes its sequence number as it inserts, and the pipeline reads the log
// in that order, so a commit that ended after a later-numbered one could be
// passed over until the next rescan.
func (db *DB) InsertConcurrency() int {
	if db.ij == nil {
		return 1
	}
	return db.ij.j.MaxSyncs()
}

// JournalBacklog is how many envelopes the embedded store has received
// through its journal and not yet copied into the message log (0 on
// PostgreSQL).
func (db *DB) JournalBacklog() int {
	if db.ij == nil {
		return 0
	}
	db.ij.mu.Lock()
	defer db.ij.mu.Unlock()
	return len(db.ij.queue)
}

// JournalStopped returns the error that stopped the embedded store's intake
// journal (a failed sync, or a write that failed for another reason than
// space), or nil. A stopped journal refuses every
// later envelope: what reached the disk is unknown until a restart recovers
// it.
func (db *DB) JournalStopped() error {
	if db.ij == nil {
		return nil
	}
	return db.ij.j.Err()
}

// journalErr reports a journal that stopped or an ingester that is failing.
func (db *DB) journalErr() error {
	ij := db.ij
	if ij == nil {
		return nil
	}
	if err := db.JournalStopped(); err != nil {
		return err
	}
	ij.mu.Lock()
	defer ij.mu.Unlock()
	return ij.ingestErr
}

// Journal encoding of an envelope: a version byte, then each field in a
// fixed order: strings and byte slices as a uvarint length and the bytes
// (byte slices with a leading presence byte, so that nil stays NULL), the
// time as a varint of Unix nanoseconds.
const envelopeRecordV1 = 1

func encodeEnvelope(e *Envelope) []byte {
	n := 32 + len(e.ID) + len(e.Channel) + len(e.Sender) + len(e.Peer) + len(e.Filename) + len(e.Kind) +
		len(e.MessageType) + len(e.ControlID) + len(e.DedupKey) + len(e.SHA256) + len(e.Status) + len(e.Error) +
		len(e.ACK) + len(e.Raw) + 16*binary.MaxVarintLen64
	b := make([]byte, 0, n)
	b = append(b, envelopeRecordV1)
	for _, s := range []string{e.ID, e.Channel, e.Sender, e.Peer} {
		b = appendString(b, s)
	}
	b = binary.AppendVarint(b, e.ReceivedAt.UnixNano())
	for _, s := range []string{e.Filename, e.Kind, e.MessageType, e.ControlID, e.DedupKey, e.SHA256, e.Status, e.Error} {
		b = appendString(b, s)
	}
	b = appendBytes(b, e.ACK)
	return appendBytes(b, e.Raw)
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendBytes(b, p []byte) []byte {
	if p == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	b = binary.AppendUvarint(b, uint64(len(p)))
	return append(b, p...)
}

var errShortRecord = errors.New("envelope record ends early")

func decodeEnvelope(b []byte) (*Envelope, error) {
	if len(b) == 0 || b[0] != envelopeRecordV1 {
		return nil, fmt.Errorf("unknown envelope record version")
	}
	d := decoder{b: b[1:]}
	e := &Envelope{}
	for _, p := range []*string{&e.ID, &e.Channel, &e.Sender, &e.Peer} {
		*p = d.string()
	}
	ns, k := binary.Varint(d.b)
	if k <= 0 {
		return nil, errShortRecord
	}
	d.b = d.b[k:]
	e.ReceivedAt = time.Unix(0, ns).UTC()
	for _, p := range []*string{&e.Filename, &e.Kind, &e.MessageType, &e.ControlID, &e.DedupKey, &e.SHA256, &e.Status, &e.Error} {
		*p = d.string()
	}
	e.ACK = d.bytes()
	e.Raw = d.bytes()
	if d.err != nil {
		return nil, d.err
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("envelope record has %d bytes too many", len(d.b))
	}
	return e, nil
}

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take() []byte {
	if d.err != nil {
		return nil
	}
	n, k := binary.Uvarint(d.b)
	if k <= 0 || n > uint64(len(d.b)-k) {
		d.err = errShortRecord
		return nil
	}
	p := d.b[k : k+int(n)]
	d.b = d.b[k+int(n):]
	return p
}

func (d *decoder) string() string { return string(d.take()) }

func (d *decoder) bytes() []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) == 0 {
		d.err = errShortRecord
		return nil
	}
	present := d.b[0]
	d.b = d.b[1:]
	if present == 0 {
		return nil
	}
	p := d.take()
	if p == nil {
		return nil
	}
	return append([]byte{}, p...)
}

// journalDir is where the embedded store keeps its intake journal.
func journalDir(dataDir string) string { return filepath.Join(dataDir, "journal") }

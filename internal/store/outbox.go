package store

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/jmoiron/sqlx"
)

// OutboxRow is a claimed outbox row.
type OutboxRow struct {
	Seq        int64     `db:"seq"`
	Subscriber string    `db:"subscriber"`
	Topic      string    `db:"topic"`
	Key        string    `db:"msg_key"`
	HeadersRaw string    `db:"headers"`
	Payload    []byte    `db:"payload"`
	EventType  string    `db:"event_type"`
	EnvelopeID string    `db:"envelope_id"`
	CreatedAt  time.Time `db:"created_at"`
	Attempts   int       `db:"attempts"`
	LastError  string    `db:"last_error"`
}

// Headers decodes the row's headers.
func (r OutboxRow) Headers() map[string]string {
	if h, ok := plainHeaders(r.HeadersRaw); ok {
		return h
	}
	h := map[string]string{}
	_ = json.Unmarshal([]byte(r.HeadersRaw), &h)
	return h
}

// plainHeaders decodes headers as AddOutbox writes them, a JSON object of
// strings without spaces, when no name or value needs an escape, without
// encoding/json (whose map decoding took 1–3 % of processing, in the relay).
// ok is false for anything else (an escape, a space, bytes that are not
// UTF-8, any other shape), which encoding/json then decodes.
func plainHeaders(s string) (h map[string]string, ok bool) {
	if len(s) < 2 || s[0] != '{' || s[len(s)-1] != '}' || !utf8.ValidString(s) {
		return nil, false
	}
	h = make(map[string]string, 8)
	i := 1
	if s == "{}" {
		return h, true
	}
	str := func() (string, bool) {
		if i >= len(s) || s[i] != '"' {
			return "", false
		}
		start := i + 1
		for j := start; j < len(s); j++ {
			switch c := s[j]; {
			case c == '"':
				i = j + 1
				return s[start:j], true
			case c == '\\' || c < 0x20:
				return "", false
			}
		}
		return "", false
	}
	for {
		k, ok := str()
		if !ok || i >= len(s) || s[i] != ':' {
			return nil, false
		}
		i++
		v, ok := str()
		if !ok || i >= len(s) {
			return nil, false
		}
		h[k] = v
		switch s[i] {
		case ',':
			i++
		case '}':
			return h, i == len(s)-1
		default:
			return nil, false
		}
	}
}

// ClaimOutbox claims up to limit rows due for publishing, for lease, in
// order. On PostgreSQL several relays claim disjoint rows (SKIP LOCKED); a
// claim that expires (a relay died) is claimed again by another relay. On
// the embedded store one process at a time uses the data directory (the
// journal's lock) and a crash gives every claim back anyway
// (releaseClaims), so claims are kept in memory: claiming reads the rows
// without writing each one, with its payload, to the database again.
func (db *DB) ClaimOutbox(ctx context.Context, owner string, limit int, lease time.Duration) ([]OutboxRow, error) {
	if db.backend == SQLite {
		return db.claimOutboxInMemory(ctx, limit, lease)
	}
	now := time.Now().UTC()
	q := db.rebind(`UPDATE outbox SET claimed_by = ?, claimed_until = ?
		WHERE seq IN (SELECT seq FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ?
			AND (claimed_until IS NULL OR claimed_until < ?) ORDER BY seq LIMIT ? FOR UPDATE SKIP LOCKED)
		RETURNING seq, subscriber, topic, msg_key, headers, payload, event_type, envelope_id, created_at, attempts, last_error`)
	var out []OutboxRow
	err := db.tx(ctx, func(tx *sqlx.Tx) error {
		return tx.SelectContext(ctx, &out, q, owner, now.Add(lease), now, now, limit)
	})
	if err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// outboxClaims are the embedded store's outbox claims: row seq to the end
// of its lease.
type outboxClaims struct {
	mu    sync.Mutex
	until map[int64]time.Time
}

const claimDueRows = `SELECT seq, subscriber, topic, msg_key, headers, payload, event_type, envelope_id, created_at, attempts, last_error
 FROM outbox WHERE sent_at IS NULL AND dead_at IS NULL AND next_attempt_at <= ? ORDER BY seq LIMIT ?`

// claimOutboxInMemory is ClaimOutbox on the embedded store: the due rows,
// less those under a live claim.
func (db *DB) claimOutboxInMemory(ctx context.Context, limit int, lease time.Duration) ([]OutboxRow, error) {
	c := &db.claims
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	for seq, until := range c.until {
		if !until.After(now) {
			delete(c.until, seq)
		}
	}
	var rows []OutboxRow
	if err := db.x.SelectContext(ctx, &rows, claimDueRows, now.UTC(), limit+len(c.until)); err != nil {
		return nil, fmt.Errorf("claim outbox: %w", err)
	}
	if c.until == nil {
		c.until = map[int64]time.Time{}
	}
	out := rows[:0]
	for _, r := range rows {
		if _, held := c.until[r.Seq]; held || len(out) == limit {
			continue
		}
		c.until[r.Seq] = now.Add(lease)
		out = append(out, r)
	}
	return out, nil
}

// unclaim ends the in-memory claims on seqs (embedded store).
func (db *DB) unclaim(seqs []int64) {
	if db.backend != SQLite {
		return
	}
	db.claims.mu.Lock()
	defer db.claims.mu.Unlock()
	for _, s := range seqs {
		delete(db.claims.until, s)
	}
}

// MarkSent records rows as published.
func (db *DB) MarkSent(ctx context.Context, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE outbox SET sent_at = ?, claimed_until = NULL WHERE seq IN (?)`, time.Now().UTC(), seqs)
	if err != nil {
		return err
	}
	if _, err := db.x.ExecContext(ctx, db.rebind(q), args...); err != nil {
		return fmt.Errorf("mark outbox sent: %w", err)
	}
	db.unclaim(seqs)
	return nil
}

// MarkRetry records a failed attempt and when to try again.
func (db *DB) MarkRetry(ctx context.Context, seqs []int64, reason string, next time.Time) error {
	if len(seqs) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?, claimed_until = NULL
		WHERE seq IN (?)`, reason, next.UTC(), seqs)
	if err != nil {
		return err
	}
	if _, err := db.x.ExecContext(ctx, db.rebind(q), args...); err != nil {
		return fmt.Errorf("mark outbox retry: %w", err)
	}
	db.unclaim(seqs)
	return nil
}

// MarkDead records rows as dead-lettered.
func (db *DB) MarkDead(ctx context.Context, seqs []int64, reason string) error {
	if len(seqs) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE outbox SET dead_at = ?, last_error = ?, claimed_until = NULL WHERE seq IN (?)`,
		time.Now().UTC(), reason, seqs)
	if err != nil {
		return err
	}
	if _, err := db.x.ExecContext(ctx, db.rebind(q), args...); err != nil {
		return fmt.Errorf("mark outbox dead: %w", err)
	}
	db.unclaim(seqs)
	return nil
}

// OutboxStats counts rows by state, per subscriber.
type OutboxStats struct {
	Subscriber          string `db:"subscriber"`
	Pending, Sent, Dead int64
}

// OutboxCounts returns the pending, sent and dead rows per subscriber.
func (db *DB) OutboxCounts(ctx context.Context) ([]OutboxStats, error) {
	rows, err := db.x.QueryxContext(ctx, `SELECT subscriber,
		SUM(CASE WHEN sent_at IS NULL AND dead_at IS NULL THEN 1 ELSE 0 END),
		SUM(CASE WHEN sent_at IS NOT NULL THEN 1 ELSE 0 END),
		SUM(CASE WHEN dead_at IS NOT NULL THEN 1 ELSE 0 END) FROM outbox GROUP BY subscriber ORDER BY subscriber`)
	if err != nil {
		return nil, fmt.Errorf("outbox counts: %w", err)
	}
	defer rows.Close()
	var out []OutboxStats
	for rows.Next() {
		var s OutboxStats
		if err := rows.Scan(&s.Subscriber, &s.Pending, &s.Sent, &s.Dead); err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// ReplayOutbox queues again, for a subscriber, every original event created
// since t, in their order, as new rows (the originals stay as they were;
// earlier replays' copies are not copied again). It returns how many.
func (db *DB) ReplayOutbox(ctx context.Context, subscriber string, since time.Time) (int64, error) {
	now := time.Now().UTC()
	res, err := db.x.ExecContext(ctx, db.rebind(`INSERT INTO outbox (subscriber, topic, msg_key, headers, payload, event_type,
		envelope_id, created_at, next_attempt_at, replay_of)
		SELECT subscriber, topic, msg_key, headers, payload, event_type, envelope_id, ?, ?, seq FROM outbox
		WHERE subscriber = ? AND created_at >= ? AND replay_of IS NULL ORDER BY seq`), now, now, subscriber, since.UTC())
	if err != nil {
		return 0, fmt.Errorf("replay: %w", err)
	}
	return res.RowsAffected()
}

// releaseClaims gives back the outbox rows and application acknowledgements
// that a previous process claimed and did not settle. On the embedded store
// one process at a time uses the data directory (the journal's lock), so
// every claim found at start-up is a dead process's, and waiting for its
// lease to run out would only hold up delivery. (On PostgreSQL other
// gateways may hold live claims; see ReleaseOwnClaims.)
func (db *DB) releaseClaims(ctx context.Context) error { return db.releaseClaimsOf(ctx, "") }

// ReleaseOwnClaims gives back, on PostgreSQL, the outbox rows and
// application acknowledgements claimed under owner and not settled. A
// gateway calls it at start-up when its name is its own alone (its data
// directory is locked): such claims are then its crashed predecessor's, and
// another gateway would otherwise take them over only when their leases
// expire. A no-op on the embedded store, which releases every claim when it
// opens.
func (db *DB) ReleaseOwnClaims(ctx context.Context, owner string) error {
	if db.backend != Postgres || owner == "" {
		return nil
	}
	return db.releaseClaimsOf(ctx, owner)
}

// releaseClaimsOf releases the unsettled claims of owner, or of every owner
// when owner is empty.
func (db *DB) releaseClaimsOf(ctx context.Context, owner string) error {
	return runTx(ctx, db.x, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, db.rebind(`UPDATE outbox SET claimed_by = '', claimed_until = NULL
			WHERE sent_at IS NULL AND claimed_until IS NOT NULL AND (? = '' OR claimed_by = ?)`), owner, owner); err != nil {
			return fmt.Errorf("release outbox claims: %w", err)
		}
		if _, err := tx.ExecContext(ctx, db.rebind(`UPDATE app_acks SET claimed_by = '', claimed_until = NULL
			WHERE status = 'pending' AND claimed_until IS NOT NULL AND (? = '' OR claimed_by = ?)`), owner, owner); err != nil {
			return fmt.Errorf("release application ack claims: %w", err)
		}
		return nil
	})
}

// purgeBatch bounds the rows one statement of PurgeOutbox deletes, so that
// a first purge of a large outbox does not hold one long transaction.
var purgeBatch = 5000 // tests lower it

// PurgeOutbox deletes the outbox rows of published events created before t
// (their payloads are FHIR Bundles: protected health information). Events
// not yet published and dead-lettered ones stay, whatever their age; replay
// reaches back only as far as the rows kept. Rows are created in seq order,
// so the rows before t are found from the first row at or after t, without
// an index on the creation time. It returns how many rows it deleted.
func (db *DB) PurgeOutbox(ctx context.Context, before time.Time) (int64, error) {
	var bound int64
	err := db.x.GetContext(ctx, &bound, db.rebind(`SELECT seq FROM outbox WHERE created_at >= ? ORDER BY seq LIMIT 1`), before.UTC())
	switch {
	case errors.Is(err, sql.ErrNoRows):
		bound = math.MaxInt64
	case err != nil:
		return 0, fmt.Errorf("purge outbox: %w", err)
	}
	var total int64
	for {
		res, err := db.x.ExecContext(ctx, db.rebind(`DELETE FROM outbox WHERE seq IN
			(SELECT seq FROM outbox WHERE seq < ? AND sent_at IS NOT NULL ORDER BY seq LIMIT ?)`), bound, purgeBatch)
		if err != nil {
			return total, fmt.Errorf("purge outbox: %w", err)
		}
		n, _ := res.RowsAffected()
		total += n
		if n < int64(purgeBatch) {
			return total, nil
		}
	}
}

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/jmoiron/sqlx"
)

// Application acknowledgement states (app_acks.status).
const (
	AppAckPending = "pending"  // to be sent to the sender's return address
	AppAckSent    = "sent"     // the sender committed it (CA, or AA from an original-mode receiver)
	AppAckRefused = "refused"  // the sender answered CE/CR/AE/AR; not sent again
	AppAckNoRoute = "no_route" // the sender has no return address configured; kept, visible, not sent
)

// AppAck is an application acknowledgement (enhanced mode, MSH-16) queued
// for its sender. Message is the complete ACK as it goes on the wire.
type AppAck struct {
	Seq          int64      `db:"seq"`
	EnvelopeID   string     `db:"envelope_id"`
	Sender       string     `db:"sender"`
	ControlID    string     `db:"control_id"`     // the acknowledged message's MSH-10 (MSA-2)
	AckControlID string     `db:"ack_control_id"` // the acknowledgement's own MSH-10
	Code         string     `db:"code"`           // MSA-1: AA, AE or AR
	Message      []byte     `db:"message"`
	Status       string     `db:"status"`
	CreatedAt    time.Time  `db:"created_at"`
	Attempts     int        `db:"attempts"`
	NextAttempt  time.Time  `db:"next_attempt_at"`
	DoneAt       *time.Time `db:"done_at"`
	ReplyCode    string     `db:"reply_code"` // MSA-1 of the sender's answer
	LastError    string     `db:"last_error"`
}

const appAckCols = `seq, envelope_id, sender, control_id, ack_control_id, code, message, status, created_at, attempts,
 next_attempt_at, done_at, reply_code, last_error`

const insertAppAck = `INSERT INTO app_acks (envelope_id, sender, control_id, ack_control_id, code, message, status,
 created_at, next_attempt_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (envelope_id) DO NOTHING`

// EnqueueAppAck queues a in the processing transaction, so that it commits
// with the envelope's outcome. An envelope has at most one application
// acknowledgement: when one is already queued (processing was redone), a is
// not added and queued is false. a.Status must be AppAckPending or
// AppAckNoRoute.
func (t *Tx) EnqueueAppAck(ctx context.Context, a AppAck) (queued bool, err error) {
	return enqueueAppAck(ctx, t.x, t.db, a, t.now) // through the prepared-statement cache
}

// EnqueueAppAck queues a in a transaction of its own (an envelope whose
// processing failed has no processing transaction); see Tx.EnqueueAppAck.
func (db *DB) EnqueueAppAck(ctx context.Context, a AppAck) (queued bool, err error) {
	err = db.tx(ctx, func(tx *sqlx.Tx) error {
		var err error
		queued, err = enqueueAppAck(ctx, tx, db, a, time.Now().UTC())
		return err
	})
	return queued, err
}

func enqueueAppAck(ctx context.Context, tx sqlx.ExecerContext, db *DB, a AppAck, now time.Time) (bool, error) {
	if a.Status != AppAckPending && a.Status != AppAckNoRoute {
		return false, fmt.Errorf("enqueue application ack: status %q is not %s or %s", a.Status, AppAckPending, AppAckNoRoute)
	}
	res, err := tx.ExecContext(ctx, db.rebind(insertAppAck), a.EnvelopeID, a.Sender, a.ControlID, a.AckControlID, a.Code,
		a.Message, a.Status, now, now)
	if err != nil {
		return false, fmt.Errorf("enqueue application ack: %w", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return false, fmt.Errorf("enqueue application ack: %w", err)
	}
	return n == 1, nil
}

// AppAckSenders returns the senders that have pending application
// acknowledgements.
func (db *DB) AppAckSenders(ctx context.Context) ([]string, error) {
	var out []string
	if err := db.x.SelectContext(ctx, &out, `SELECT DISTINCT sender FROM app_acks WHERE status = 'pending' ORDER BY sender`); err != nil {
		return nil, fmt.Errorf("application ack senders: %w", err)
	}
	return out, nil
}

// ClaimAppAcks claims, for owner and for lease, up to limit of sender's
// pending application acknowledgements, oldest first, so that they go out in
// the order they were queued. It claims nothing while the oldest one waits
// for its next attempt (a failed delivery blocks those behind it) or while
// another owner's claim on the sender's queue is live: one sender's queue is
// delivered by one owner at a time.
func (db *DB) ClaimAppAcks(ctx context.Context, sender, owner string, limit int, lease time.Duration) ([]AppAck, error) {
	now := time.Now().UTC()
	var out []AppAck
	err := db.tx(ctx, func(tx *sqlx.Tx) error {
		if db.backend == Postgres {
			// Serialise claims on one sender's queue across gateways; the
			// embedded store has a single writer already.
			if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtext('hiegw.app_acks'), hashtext($1))`, sender); err != nil {
				return fmt.Errorf("lock application ack queue: %w", err)
			}
		}
		var next time.Time
		err := tx.GetContext(ctx, &next, db.rebind(`SELECT next_attempt_at FROM app_acks WHERE sender = ? AND status = 'pending'
			ORDER BY seq LIMIT 1`), sender)
		if errors.Is(err, sql.ErrNoRows) {
			return nil
		}
		if err != nil {
			return err
		}
		if next.After(now) {
			return nil
		}
		var busy int
		if err := tx.GetContext(ctx, &busy, db.rebind(`SELECT COUNT(*) FROM app_acks WHERE sender = ? AND status = 'pending'
			AND claimed_by <> ? AND claimed_until IS NOT NULL AND claimed_until >= ?`), sender, owner, now); err != nil {
			return err
		}
		if busy > 0 {
			return nil
		}
		return tx.SelectContext(ctx, &out, db.rebind(`UPDATE app_acks SET claimed_by = ?, claimed_until = ?
			WHERE seq IN (SELECT seq FROM app_acks WHERE sender = ? AND status = 'pending' ORDER BY seq LIMIT ?)
			RETURNING `+appAckCols), owner, now.Add(lease), sender, limit)
	})
	if err != nil {
		return nil, fmt.Errorf("claim application acks: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Seq < out[j].Seq })
	return out, nil
}

// MarkAppAckSent records that the sender committed the acknowledgement
// (reply is its answer's MSA-1).
func (db *DB) MarkAppAckSent(ctx context.Context, seq int64, reply string) error {
	return db.finishAppAck(ctx, seq, AppAckSent, reply, "")
}

// MarkAppAckRefused records that the sender refused the acknowledgement
// (CE, CR, AE or AR) and why; it is not sent again.
func (db *DB) MarkAppAckRefused(ctx context.Context, seq int64, reply, reason string) error {
	return db.finishAppAck(ctx, seq, AppAckRefused, reply, reason)
}

func (db *DB) finishAppAck(ctx context.Context, seq int64, status, reply, reason string) error {
	_, err := db.x.ExecContext(ctx, db.rebind(`UPDATE app_acks SET status = ?, reply_code = ?, last_error = ?, done_at = ?,
		attempts = attempts + 1, claimed_until = NULL WHERE seq = ? AND status = 'pending'`),
		status, reply, reason, time.Now().UTC(), seq)
	if err != nil {
		return fmt.Errorf("mark application ack %s: %w", status, err)
	}
	return nil
}

// MarkAppAckRetry records a failed delivery attempt (no connection, no
// answer) and when to try again; the claim is released.
func (db *DB) MarkAppAckRetry(ctx context.Context, seq int64, reason string, next time.Time) error {
	_, err := db.x.ExecContext(ctx, db.rebind(`UPDATE app_acks SET attempts = attempts + 1, last_error = ?, next_attempt_at = ?,
		claimed_until = NULL WHERE seq = ? AND status = 'pending'`), reason, next.UTC(), seq)
	if err != nil {
		return fmt.Errorf("mark application ack retry: %w", err)
	}
	return nil
}

// ReleaseAppAcks gives back owner's claims on rows it did not get to.
func (db *DB) ReleaseAppAcks(ctx context.Context, owner string, seqs []int64) error {
	if len(seqs) == 0 {
		return nil
	}
	q, args, err := sqlx.In(`UPDATE app_acks SET claimed_until = NULL WHERE claimed_by = ? AND seq IN (?)`, owner, seqs)
	if err != nil {
		return err
	}
	if _, err := db.x.ExecContext(ctx, db.rebind(q), args...); err != nil {
		return fmt.Errorf("release application acks: %w", err)
	}
	return nil
}

// RouteAppAcks moves sender's acknowledgements between "no_route" and
// "pending": routed true queues those kept for want of a return address
// (one was configured since), false parks pending ones (it was removed). It
// returns how many rows changed.
func (db *DB) RouteAppAcks(ctx context.Context, sender string, routed bool) (int64, error) {
	from, to := AppAckPending, AppAckNoRoute
	if routed {
		from, to = AppAckNoRoute, AppAckPending
	}
	res, err := db.x.ExecContext(ctx, db.rebind(`UPDATE app_acks SET status = ?, next_attempt_at = ?, claimed_until = NULL
		WHERE sender = ? AND status = ?`), to, time.Now().UTC(), sender, from)
	if err != nil {
		return 0, fmt.Errorf("route application acks: %w", err)
	}
	return res.RowsAffected()
}

// AppAckCount is how many application acknowledgements of a sender are in
// a state.
type AppAckCount struct {
	Sender string `db:"sender"`
	Status string `db:"status"`
	N      int64  `db:"n"`
}

// AppAckCounts counts application acknowledgements by sender and state.
func (db *DB) AppAckCounts(ctx context.Context) ([]AppAckCount, error) {
	var out []AppAckCount
	if err := db.x.SelectContext(ctx, &out, `SELECT sender, status, COUNT(*) AS n FROM app_acks
		GROUP BY sender, status ORDER BY sender, status`); err != nil {
		return nil, fmt.Errorf("count application acks: %w", err)
	}
	return out, nil
}

// AppAckFilter selects application acknowledgements; zero fields match all.
type AppAckFilter struct {
	Sender, Status, EnvelopeID string
	Limit                      int // default 100, at most 1000
}

// ListAppAcks returns application acknowledgements matching f, with their
// messages, in the order they were queued.
func (db *DB) ListAppAcks(ctx context.Context, f AppAckFilter) ([]AppAck, error) {
	return db.RecentAppAcks(ctx, AppAckPage{Sender: f.Sender, Status: f.Status, EnvelopeID: f.EnvelopeID, Limit: f.Limit,
		WithMessage: true, OldestFirst: true})
}

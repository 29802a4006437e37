package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
)

// AppAckPage selects a page of application acknowledgements for operators,
// newest first; zero fields match all.
type AppAckPage struct {
	Sender, Status, EnvelopeID string
	// BeforeSeq keeps rows queued before that one (the last seq of the
	// previous page).
	BeforeSeq int64
	// Limit is the page size: default 100, at most 1000.
	Limit int
	// WithMessage also reads each acknowledgement as it goes on the wire;
	// without it Message is nil and the rows hold no message content.
	WithMessage bool
	// OldestFirst lists in queue order instead.
	OldestFirst bool
}

// appAckListCols are the columns of an operator's listing; the message
// itself is read only when asked for.
const appAckListCols = `seq, envelope_id, sender, control_id, ack_control_id, code, status, created_at, attempts,
 next_attempt_at, done_at, reply_code, last_error`

// RecentAppAcks returns the application acknowledgements matching p, newest
// first (by queue order).
func (db *DB) RecentAppAcks(ctx context.Context, p AppAckPage) ([]AppAck, error) {
	cols := appAckListCols
	if p.WithMessage {
		cols += ", message"
	}
	q := `SELECT ` + cols + ` FROM app_acks WHERE 1=1`
	var args []any
	add := func(cond string, v any) { q += " AND " + cond; args = append(args, v) }
	if p.Sender != "" {
		add("sender = ?", p.Sender)
	}
	if p.Status != "" {
		add("status = ?", p.Status)
	}
	if p.EnvelopeID != "" {
		add("envelope_id = ?", p.EnvelopeID)
	}
	if p.BeforeSeq > 0 {
		add("seq < ?", p.BeforeSeq)
	}
	if p.Limit <= 0 || p.Limit > 1000 {
		p.Limit = 100
	}
	if p.OldestFirst {
		q += " ORDER BY seq LIMIT ?"
	} else {
		q += " ORDER BY seq DESC LIMIT ?"
	}
	args = append(args, p.Limit)
	out := []AppAck{}
	if err := db.x.SelectContext(ctx, &out, db.rebind(q), args...); err != nil {
		return nil, fmt.Errorf("recent application acks: %w", err)
	}
	return out, nil
}

// EnvelopeAppAck returns the application acknowledgement queued for an
// envelope, with its message only when withMessage; ErrNotFound when there
// is none (the sender did not ask for one, or processing has not finished).
func (db *DB) EnvelopeAppAck(ctx context.Context, envelopeID string, withMessage bool) (*AppAck, error) {
	cols := appAckListCols
	if withMessage {
		cols += ", message"
	}
	var a AppAck
	err := db.x.GetContext(ctx, &a, db.rebind(`SELECT `+cols+` FROM app_acks WHERE envelope_id = ?`), envelopeID)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, fmt.Errorf("envelope application ack: %w", err)
	}
	return &a, nil
}

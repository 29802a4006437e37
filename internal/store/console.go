package store

import (
	"context"
	"fmt"
	"time"
)

// Read-only queries for the analysts' console: what one envelope produced
// (resources, routed events) and the senders seen.

// EnvelopeResource is one version of a resource written while processing an
// envelope.
type EnvelopeResource struct {
	ID         string    `db:"id"`
	Type       string    `db:"resource_type"`
	Version    int       `db:"version"`
	Body       string    `db:"body"`
	RecordedAt time.Time `db:"recorded_at"`
	// Current tells whether this version is still the resource's latest.
	Current bool `db:"current"`
}

// EnvelopeResources returns the resource versions an envelope wrote, by type
// and id: the versions still current and those superseded since. A resource
// the envelope left unchanged got no version of its own and is not listed.
// (No index covers envelope_id: fine for one envelope at a time from the
// console, not for bulk use.)
func (db *DB) EnvelopeResources(ctx context.Context, envelopeID string) ([]EnvelopeResource, error) {
	var out []EnvelopeResource
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT id, resource_type, version, CAST(body AS TEXT) AS body,
		updated_at AS recorded_at, 1 AS current FROM resources WHERE envelope_id = ?
		UNION ALL
		SELECT h.id, COALESCE(r.resource_type, '') AS resource_type, h.version, CAST(h.body AS TEXT) AS body,
		h.recorded_at, 0 AS current FROM resource_history h LEFT JOIN resources r ON r.id = h.id WHERE h.envelope_id = ?
		ORDER BY resource_type, id, version`), envelopeID, envelopeID)
	if err != nil {
		return nil, fmt.Errorf("envelope resources: %w", err)
	}
	return out, nil
}

// RoutedEvent is an outbox row seen from the console: where an envelope's
// event goes and how far it got. The payload is left out (it holds PHI);
// PayloadBytes gives its size.
type RoutedEvent struct {
	Seq           int64      `db:"seq" json:"seq"`
	Subscriber    string     `db:"subscriber" json:"subscriber"`
	Topic         string     `db:"topic" json:"topic"`
	Key           string     `db:"msg_key" json:"key"`
	EventType     string     `db:"event_type" json:"event_type"`
	CreatedAt     time.Time  `db:"created_at" json:"created_at"`
	Attempts      int        `db:"attempts" json:"attempts"`
	NextAttemptAt time.Time  `db:"next_attempt_at" json:"next_attempt_at"`
	SentAt        *time.Time `db:"sent_at" json:"sent_at,omitempty"`
	DeadAt        *time.Time `db:"dead_at" json:"dead_at,omitempty"`
	LastError     string     `db:"last_error" json:"last_error,omitempty"`
	PayloadBytes  int64      `db:"payload_bytes" json:"payload_bytes"`
}

// State is "sent", "dead" or "pending".
func (e RoutedEvent) State() string {
	switch {
	case e.SentAt != nil:
		return "sent"
	case e.DeadAt != nil:
		return "dead"
	}
	return "pending"
}

// EnvelopeOutbox returns the outbox rows of an envelope (replays included),
// oldest first.
func (db *DB) EnvelopeOutbox(ctx context.Context, envelopeID string) ([]RoutedEvent, error) {
	var out []RoutedEvent
	err := db.x.SelectContext(ctx, &out, db.rebind(`SELECT seq, subscriber, topic, msg_key, event_type, created_at, attempts,
		next_attempt_at, sent_at, dead_at, last_error, LENGTH(payload) AS payload_bytes
		FROM outbox WHERE envelope_id = ? ORDER BY seq`), envelopeID)
	if err != nil {
		return nil, fmt.Errorf("envelope outbox: %w", err)
	}
	return out, nil
}

// SenderCount is a sender and how many envelopes it has in the message log.
type SenderCount struct {
	Sender   string    `db:"sender" json:"sender"`
	Messages int64     `db:"messages" json:"messages"`
	Last     time.Time `db:"last" json:"last_received_at"`
}

// Senders lists every sender in the message log, most recently heard first.
func (db *DB) Senders(ctx context.Context) ([]SenderCount, error) {
	if err := db.visible(ctx); err != nil {
		return nil, err
	}
	var rows []struct {
		Sender   string `db:"sender"`
		Messages int64  `db:"messages"`
		LastSeq  int64  `db:"last_seq"`
	}
	if err := db.log.SelectContext(ctx, &rows, `SELECT sender, COUNT(*) AS messages, MAX(seq) AS last_seq
		FROM envelopes GROUP BY sender ORDER BY last_seq DESC`); err != nil {
		return nil, fmt.Errorf("senders: %w", err)
	}
	out := make([]SenderCount, 0, len(rows))
	for _, r := range rows {
		var at time.Time
		// The time of the sender's latest envelope: read by key so that both
		// backends return the same typed value.
		if err := db.log.GetContext(ctx, &at, db.rebind(`SELECT received_at FROM envelopes WHERE seq = ?`), r.LastSeq); err != nil {
			return nil, fmt.Errorf("senders: %w", err)
		}
		out = append(out, SenderCount{Sender: r.Sender, Messages: r.Messages, Last: at})
	}
	return out, nil
}

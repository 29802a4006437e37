-- +goose Up
-- Application acknowledgements (enhanced mode, MSH-16) waiting to be sent
-- back to the sender. A row is written in the transaction that records the
-- processing outcome of its envelope, at most one per envelope.
-- status: pending (to send), sent (the sender committed it), refused (the
-- sender answered CE/CR/AE/AR; not retried), no_route (the sender has no
-- return address configured).
CREATE TABLE app_acks (
    seq             INTEGER PRIMARY KEY,
    envelope_id     TEXT NOT NULL UNIQUE,
    sender          TEXT NOT NULL,
    control_id      TEXT NOT NULL,
    ack_control_id  TEXT NOT NULL,
    code            TEXT NOT NULL,
    message         BLOB NOT NULL,
    status          TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_by      TEXT NOT NULL DEFAULT '',
    claimed_until   TIMESTAMP,
    done_at         TIMESTAMP,
    reply_code      TEXT NOT NULL DEFAULT '',
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX app_acks_pending ON app_acks (sender, seq) WHERE status = 'pending';

-- +goose Down
DROP TABLE app_acks;

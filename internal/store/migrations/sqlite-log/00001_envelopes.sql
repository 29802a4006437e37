-- +goose Up
CREATE TABLE envelopes (
    seq             INTEGER PRIMARY KEY,
    id              TEXT NOT NULL UNIQUE,
    channel         TEXT NOT NULL,
    sender          TEXT NOT NULL,
    peer            TEXT NOT NULL DEFAULT '',
    received_at     TIMESTAMP NOT NULL,
    filename        TEXT NOT NULL DEFAULT '',
    kind            TEXT NOT NULL,
    message_type    TEXT NOT NULL DEFAULT '',
    control_id      TEXT NOT NULL DEFAULT '',
    dedup_key       TEXT NOT NULL,
    sha256          TEXT NOT NULL,
    status          TEXT NOT NULL,
    error           TEXT NOT NULL DEFAULT '',
    ack             BLOB,
    raw             BLOB,
    mapping_version TEXT NOT NULL DEFAULT '',
    attempts        INTEGER NOT NULL DEFAULT 0,
    processed_at    TIMESTAMP,
    patient_id      TEXT NOT NULL DEFAULT '',
    UNIQUE (sender, dedup_key)
);
CREATE INDEX envelopes_status_seq ON envelopes (status, seq);
CREATE INDEX envelopes_received ON envelopes (received_at);

-- +goose Down
DROP TABLE envelopes;

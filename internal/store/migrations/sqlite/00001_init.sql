-- +goose Up
-- Completed processing, recorded in the same transaction as the record
-- changes. The envelope log is its own database file on the embedded store
-- (see store.go); its status is brought up to date from this table.
CREATE TABLE processed_envelopes (
    envelope_id     TEXT PRIMARY KEY,
    patient_id      TEXT NOT NULL DEFAULT '',
    mapping_version TEXT NOT NULL DEFAULT '',
    processed_at    TIMESTAMP NOT NULL
);

CREATE TABLE patients (
    id          TEXT PRIMARY KEY,
    created_at  TIMESTAMP NOT NULL,
    updated_at  TIMESTAMP NOT NULL,
    merged_into TEXT NOT NULL DEFAULT ''
);

CREATE TABLE patient_identifiers (
    system     TEXT NOT NULL,
    value      TEXT NOT NULL,
    patient_id TEXT NOT NULL,
    sender     TEXT NOT NULL,
    created_at TIMESTAMP NOT NULL,
    PRIMARY KEY (system, value)
);
CREATE INDEX patient_identifiers_patient ON patient_identifiers (patient_id);

CREATE TABLE resources (
    id            TEXT PRIMARY KEY,
    resource_type TEXT NOT NULL,
    patient_id    TEXT NOT NULL DEFAULT '',
    version       INTEGER NOT NULL,
    body          TEXT NOT NULL CHECK (json_valid(body)),
    envelope_id   TEXT NOT NULL,
    sender        TEXT NOT NULL,
    updated_at    TIMESTAMP NOT NULL
);
CREATE INDEX resources_patient ON resources (patient_id, resource_type);

CREATE TABLE resource_history (
    id          TEXT NOT NULL,
    version     INTEGER NOT NULL,
    body        TEXT NOT NULL,
    envelope_id TEXT NOT NULL,
    recorded_at TIMESTAMP NOT NULL,
    PRIMARY KEY (id, version)
);

CREATE TABLE outbox (
    seq             INTEGER PRIMARY KEY,
    subscriber      TEXT NOT NULL,
    topic           TEXT NOT NULL,
    msg_key         TEXT NOT NULL,
    headers         TEXT NOT NULL CHECK (json_valid(headers)),
    payload         BLOB NOT NULL,
    event_type      TEXT NOT NULL,
    envelope_id     TEXT NOT NULL,
    created_at      TIMESTAMP NOT NULL,
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at TIMESTAMP NOT NULL,
    claimed_by      TEXT NOT NULL DEFAULT '',
    claimed_until   TIMESTAMP,
    sent_at         TIMESTAMP,
    dead_at         TIMESTAMP,
    last_error      TEXT NOT NULL DEFAULT ''
);
CREATE INDEX outbox_pending ON outbox (seq) WHERE sent_at IS NULL AND dead_at IS NULL;

CREATE TABLE audit_log (
    seq     INTEGER PRIMARY KEY,
    at      TIMESTAMP NOT NULL,
    actor   TEXT NOT NULL,
    action  TEXT NOT NULL,
    target  TEXT NOT NULL DEFAULT '',
    outcome TEXT NOT NULL DEFAULT '',
    peer    TEXT NOT NULL DEFAULT '',
    detail  TEXT NOT NULL DEFAULT ''
);

-- +goose Down
DROP TABLE audit_log;
DROP TABLE outbox;
DROP TABLE resource_history;
DROP TABLE resources;
DROP TABLE patient_identifiers;
DROP TABLE patients;
DROP TABLE processed_envelopes;

-- +goose Up
-- The master patient index (internal/mpi/sqlstore): one row per source
-- record (assigning authority + MRN) with its entry as JSON, plus the
-- blocking keys, identifiers, review tasks and audit trail the index needs.
CREATE TABLE mpi_entry (
    authority        TEXT NOT NULL,
    mrn              TEXT NOT NULL,
    enterprise_id    TEXT NOT NULL,
    active           INTEGER NOT NULL,
    merged_authority TEXT NOT NULL DEFAULT '',
    merged_mrn       TEXT NOT NULL DEFAULT '',
    version          BIGINT NOT NULL,
    body             TEXT NOT NULL,
    PRIMARY KEY (authority, mrn)
);
CREATE INDEX mpi_entry_enterprise ON mpi_entry (enterprise_id);
CREATE INDEX mpi_entry_merged ON mpi_entry (merged_authority, merged_mrn);

CREATE TABLE mpi_block (
    block     TEXT NOT NULL,
    authority TEXT NOT NULL,
    mrn       TEXT NOT NULL,
    PRIMARY KEY (block, authority, mrn)
);
CREATE INDEX mpi_block_entry ON mpi_block (authority, mrn);

CREATE TABLE mpi_identifier (
    id_type      TEXT NOT NULL,
    id_authority TEXT NOT NULL,
    id_value     TEXT NOT NULL,
    authority    TEXT NOT NULL,
    mrn          TEXT NOT NULL,
    PRIMARY KEY (id_type, id_authority, id_value, authority, mrn)
);
CREATE INDEX mpi_identifier_entry ON mpi_identifier (authority, mrn);
CREATE INDEX mpi_identifier_value ON mpi_identifier (id_authority, id_value);

CREATE TABLE mpi_task (
    seq       BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id        TEXT NOT NULL UNIQUE,
    status    TEXT NOT NULL,
    authority TEXT NOT NULL,
    mrn       TEXT NOT NULL,
    body      TEXT NOT NULL
);
CREATE INDEX mpi_task_status ON mpi_task (status, seq);

CREATE TABLE mpi_audit (
    seq    BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    id     TEXT NOT NULL UNIQUE,
    at     TIMESTAMPTZ NOT NULL,
    actor  TEXT NOT NULL,
    action TEXT NOT NULL,
    body   TEXT NOT NULL
);

CREATE TABLE mpi_audit_key (
    audit_seq BIGINT NOT NULL,
    authority TEXT NOT NULL,
    mrn       TEXT NOT NULL,
    PRIMARY KEY (authority, mrn, audit_seq)
);

-- Each resource remembers the source record it came from, so that it
-- follows that record when the index moves it to another enterprise patient.
ALTER TABLE resources ADD COLUMN source_authority TEXT NOT NULL DEFAULT '';
ALTER TABLE resources ADD COLUMN source_mrn TEXT NOT NULL DEFAULT '';
CREATE INDEX resources_source ON resources (source_authority, source_mrn);

-- +goose Down
DROP INDEX resources_source;
ALTER TABLE resources DROP COLUMN source_mrn;
ALTER TABLE resources DROP COLUMN source_authority;
DROP TABLE mpi_audit_key;
DROP TABLE mpi_audit;
DROP TABLE mpi_task;
DROP TABLE mpi_identifier;
DROP TABLE mpi_block;
DROP TABLE mpi_entry;

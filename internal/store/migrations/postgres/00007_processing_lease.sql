-- +goose Up
-- Which gateway process may process received messages. Several replicas
-- share one database; one of them holds the lease and renews it, the others
-- stand by and take it over once it has expired. Times are the database's.
CREATE TABLE processing_lease (
    name  TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    until TIMESTAMPTZ NOT NULL
);

-- +goose Down
DROP TABLE processing_lease;

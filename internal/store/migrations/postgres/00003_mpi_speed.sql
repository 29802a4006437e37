-- +goose Up
-- Scoring reads only a record's demographics, enterprise id and "not the
-- same" list. mpi_entry.cand holds them in a compact binary form
-- (internal/mpi/sqlstore, cand.go), so that finding candidates decodes a few
-- short strings instead of each entry's whole JSON body. Rows written before
-- this migration have no cand; the store reads their body instead.
ALTER TABLE mpi_entry ADD COLUMN cand BYTEA;

-- +goose Down
ALTER TABLE mpi_entry DROP COLUMN cand;

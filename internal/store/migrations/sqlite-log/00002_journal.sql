-- +goose Up
-- How far the envelopes received through the intake journal have been
-- copied into this log (segment number and byte offset after the last one).
CREATE TABLE journal_state (
    id  INTEGER PRIMARY KEY CHECK (id = 1),
    seg INTEGER NOT NULL,
    off INTEGER NOT NULL
);
INSERT INTO journal_state (id, seg, off) VALUES (1, 0, 0);

-- +goose Down
DROP TABLE journal_state;

-- +goose Up
-- What processing noticed about an envelope that did not stop it: codes no
-- table mapped (kept as sent) and values the mapping left out. Replaced when
-- the envelope is processed again.
CREATE TABLE envelope_notes (
    envelope_id TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    detail      TEXT NOT NULL,
    PRIMARY KEY (envelope_id, seq)
);

-- +goose Down
DROP TABLE envelope_notes;

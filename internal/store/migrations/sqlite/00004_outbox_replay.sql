-- +goose Up
-- A replayed event is a copy of an original outbox row; replay copies only
-- originals, so replaying twice does not multiply events.
ALTER TABLE outbox ADD COLUMN replay_of INTEGER;

-- +goose Down
ALTER TABLE outbox DROP COLUMN replay_of;

package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// ErrLeaseLost is returned by Tx.CheckLease when the transaction's process
// no longer holds the lease it names.
var ErrLeaseLost = errors.New("processing lease lost")

// ErrAlreadyProcessed fails a processing transaction that would mark
// processed an envelope already processed (on PostgreSQL another replica
// did it since this one read it; on either store, a commit whose log
// update failed, ErrLogBehind) or one the log does not hold.
var ErrAlreadyProcessed = errors.New("envelope already processed, or not in the log")

// HoldLease takes the named lease for owner, or renews it, until ttl from
// now by the database's clock. It succeeds when the lease is free, expired
// or already owner's; otherwise held is false and holder names the owner.
//
// On PostgreSQL the lease is a row that replicas sharing the database
// compete for. Processing transactions fence themselves by locking it FOR
// KEY SHARE (CheckLease): the holder's renewal, an UPDATE of columns no key
// covers, does not wait for them, so a long transaction cannot make its own
// replica's lease lapse; a takeover locks the row FOR UPDATE, which waits
// until they end. The embedded store belongs to one process (its intake
// journal is locked), so there the lease is always held.
func (db *DB) HoldLease(ctx context.Context, name, owner string, ttl time.Duration) (held bool, holder string, err error) {
	if db.backend != Postgres {
		return true, owner, nil
	}
	us := ttl.Microseconds()
	err = db.x.GetContext(ctx, &holder, `UPDATE processing_lease SET until = now() + $3 * interval '1 microsecond'
 WHERE name = $1 AND owner = $2 RETURNING owner`, name, owner, us)
	if err == nil {
		return true, owner, nil
	}
	if !errors.Is(err, sql.ErrNoRows) {
		return false, "", fmt.Errorf("lease %s: %w", name, err)
	}
	err = db.tx(ctx, func(tx *sqlx.Tx) error {
		// Waiting for a lock ends after one TTL: a fenced transaction that
		// hangs must not hold this replica's lease loop.
		if _, err := tx.ExecContext(ctx, `SELECT set_config('lock_timeout', $1, true)`,
			fmt.Sprintf("%dms", max(ttl.Milliseconds(), 1))); err != nil {
			return err
		}
		var cur struct {
			Owner   string `db:"owner"`
			Expired bool   `db:"expired"`
		}
		// First without a lock: a lease another replica holds is refused at
		// once, without queueing behind its transactions (and making its
		// renewal queue behind this one). The locked read may have waited,
		// so it asks the clock, not the transaction's start time.
		for _, q := range []string{
			`SELECT owner, until < now() AS expired FROM processing_lease WHERE name = $1`,
			`SELECT owner, until < clock_timestamp() AS expired FROM processing_lease WHERE name = $1 FOR UPDATE`,
		} {
			err := tx.GetContext(ctx, &cur, q, name)
			var pe *pq.Error
			switch {
			case errors.As(err, &pe) && pe.Code == "55P03": // lock_not_available
				holder = cur.Owner // as the unlocked read found it
				return errLeaseBusy
			case errors.Is(err, sql.ErrNoRows):
				holder, err = insertLease(ctx, tx, name, owner, us)
				return err
			case err != nil:
				return err
			case cur.Owner != owner && !cur.Expired:
				holder = cur.Owner
				return nil
			}
		}
		// Expired (or this owner's, renewed meanwhile), and locked FOR
		// UPDATE: its holder's fenced transactions have ended.
		holder = owner
		_, err := tx.ExecContext(ctx, `UPDATE processing_lease SET owner = $2, until = clock_timestamp() + $3 * interval '1 microsecond'
 WHERE name = $1`, name, owner, us)
		return err
	})
	if errors.Is(err, errLeaseBusy) {
		return false, holder, nil
	}
	if err != nil {
		return false, "", fmt.Errorf("lease %s: %w", name, err)
	}
	return holder == owner, holder, nil
}

// insertLease makes the lease for owner, unless another replica made it
// first, and returns its holder.
func insertLease(ctx context.Context, tx *sqlx.Tx, name, owner string, us int64) (string, error) {
	res, err := tx.ExecContext(ctx, `INSERT INTO processing_lease (name, owner, until)
 VALUES ($1, $2, now() + $3 * interval '1 microsecond') ON CONFLICT (name) DO NOTHING`, name, owner, us)
	if err != nil {
		return "", err
	}
	if n, err := res.RowsAffected(); err != nil || n == 1 {
		return owner, err
	}
	var holder string
	err = tx.GetContext(ctx, &holder, `SELECT owner FROM processing_lease WHERE name = $1`, name)
	return holder, err
}

// errLeaseBusy ends a takeover whose lock waited a whole TTL for the
// holder's transactions.
var errLeaseBusy = errors.New("lease locked by its holder's transactions")

// ReleaseLease gives up owner's lease, so that another replica can take it
// at once (at a clean shutdown).
func (db *DB) ReleaseLease(ctx context.Context, name, owner string) error {
	if db.backend != Postgres {
		return nil
	}
	if _, err := db.x.ExecContext(ctx, `DELETE FROM processing_lease WHERE name = $1 AND owner = $2`, name, owner); err != nil {
		return fmt.Errorf("release lease %s: %w", name, err)
	}
	return nil
}

// LiveLeases counts the unexpired leases whose names start with prefix (1
// on the embedded store, which one process owns).
func (db *DB) LiveLeases(ctx context.Context, prefix string) (int, error) {
	if db.backend != Postgres {
		return 1, nil
	}
	var n int
	if err := db.x.GetContext(ctx, &n, `SELECT COUNT(*) FROM processing_lease
 WHERE starts_with(name, $1) AND until > now()`, prefix); err != nil {
		return 0, fmt.Errorf("count leases %s*: %w", prefix, err)
	}
	return n, nil
}

// CheckLease fences the transaction: it fails with ErrLeaseLost unless owner
// holds every named lease, and keeps them held until the transaction ends
// (the rows are locked FOR KEY SHARE, so another replica's takeover, FOR
// UPDATE, waits for this commit, and a commit never follows a takeover; the
// holder's renewals do not wait). A no-op on the embedded store.
func (t *Tx) CheckLease(ctx context.Context, names []string, owner string) error {
	if t.db.backend != Postgres || len(names) == 0 {
		return nil
	}
	var held []string
	err := t.tx.SelectContext(ctx, &held, `SELECT name FROM processing_lease
 WHERE name = ANY($1) AND owner = $2 AND until > now() FOR KEY SHARE`, pq.Array(names), owner)
	if err != nil {
		return fmt.Errorf("check leases: %w", err)
	}
	for _, n := range names {
		if !slices.Contains(held, n) {
			return fmt.Errorf("%w: %s", ErrLeaseLost, n)
		}
	}
	return nil
}

package sqlstore

import (
	"context"
	"fmt"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/lib/pq"
)

// On PostgreSQL the index is guarded by transaction-scoped advisory locks,
// held until the transaction ends, so that two transactions (pipeline lanes,
// or gateway processes sharing the database) never score a record against
// a state the other is about to change. SQLite has a single writer and
// needs none.
//
// Two levels keep unrelated patients apart: the index lock, taken
// exclusively by changes that may rewrite any entry (merges, operator links
// and unlinks) and shared by resolutions; and under it one lock per name a
// resolution reads or writes: the record's key, its identifiers, the
// blocking keys it is filed and searched under, and the blocking keys the
// stored entry is filed under now. Two records that could be scored against
// each other share a blocking key or a trusted identifier, so their
// resolutions take turns; a record's own key keeps two resolutions of one
// MRN from both creating it. Every transaction takes the index lock first
// and the names after it in one sorted order, so they cannot deadlock.

// lockKey names the index lock.
const lockKey = "hiegw:mpi"

// Lock takes the index lock exclusively: nothing else reads or changes the
// index until the transaction ends. Call it on a transaction before its
// first read of the index, for changes that are not the resolution of a
// known set of records.
func (s *Store) Lock(ctx context.Context) error {
	if s.x.DriverName() != "postgres" {
		return nil
	}
	// A literal statement: one round trip.
	if _, err := s.x.ExecContext(ctx, `SELECT pg_advisory_xact_lock(hashtextextended('`+lockKey+`', 0))`); err != nil {
		return fmt.Errorf("lock mpi: %w", err)
	}
	return nil
}

// LockNames returns the lock names of the resolution of r (see the package
// comment), unsorted and possibly repeated.
func LockNames(r mpi.Record) []string {
	names := make([]string, 0, 12)
	names = append(names, "mpi:key:"+r.Authority+"|"+r.MRN)
	for _, id := range r.Identifiers {
		names = append(names, "mpi:id:"+id.Type+"|"+id.Authority+"|"+id.Value)
	}
	for _, b := range mpi.BlockKeys(r) {
		names = append(names, "mpi:block:"+b)
	}
	return names
}

// LockRecords prepares a transaction to resolve recs (and nothing else): it
// shares the index lock and locks every name of LockNames for each record,
// plus the blocking keys their stored entries are filed under, in one
// statement. Call it before the transaction's first read of the index; a
// transaction that may merge or link records calls Lock instead.
func (s *Store) LockRecords(ctx context.Context, recs []mpi.Record) error {
	if s.x.DriverName() != "postgres" || len(recs) == 0 {
		return nil
	}
	var names, auths, mrns []string
	for _, r := range recs {
		names = append(names, LockNames(r)...)
		auths = append(auths, r.Authority)
		mrns = append(mrns, r.MRN)
	}
	// The sorted subquery is not flattened into the outer one, so the locks
	// are taken in its order: the index lock first, then by hash.
	_, err := s.x.ExecContext(ctx, `SELECT COUNT(CASE WHEN g THEN pg_advisory_xact_lock_shared(h)
		ELSE pg_advisory_xact_lock(h) END) FROM (
			SELECT g, h FROM (
				SELECT true AS g, hashtextextended('`+lockKey+`', 0) AS h
				UNION
				SELECT false, hashtextextended(n, 0) FROM unnest($1::text[]) AS n
				UNION
				SELECT false, hashtextextended('mpi:block:' || b.block, 0) FROM mpi_block b
					JOIN unnest($2::text[], $3::text[]) AS r (authority, mrn) ON b.authority = r.authority AND b.mrn = r.mrn
			) u ORDER BY g DESC, h
		) sorted`, pq.Array(names), pq.Array(auths), pq.Array(mrns))
	if err != nil {
		return fmt.Errorf("lock mpi records: %w", err)
	}
	return nil
}

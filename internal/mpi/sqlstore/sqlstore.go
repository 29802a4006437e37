// Package sqlstore keeps the master patient index in hiegw's database (the
// mpi_* tables of migrations 00002 and 00003), on the embedded SQLite store and on
// PostgreSQL. A Store is bound to one handle: bind it to the processing
// transaction (store.Tx.SQL) so that the index's rows commit with the record
// they describe, and lock first in every transaction that changes the index
// (lock.go): Lock for a change that may touch any entry, LockRecords for
// the resolution of known records.
package sqlstore

import (
	"cmp"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// Store implements mpi.Store on a database handle (a transaction or a
// connection pool).
type Store struct {
	x sqlx.ExtContext
	// written holds each entry Put through a store bound to one transaction
	// (NewTx), so that reading it back needs no query.
	written map[mpi.Key]written
	decoded *Decoded // nil: every entry read is decoded
}

// written is an entry as Put wrote it: its body, and what Resolve reads
// without decoding it.
type written struct {
	body         string
	enterpriseID string
	mergedInto   *mpi.Key
	version      int64
}

var _ mpi.Store = (*Store)(nil)

// New returns a store over x; its driver ("sqlite" or "postgres") decides the
// placeholders.
func New(x sqlx.ExtContext) *Store { return &Store{x: x} }

// NewTx returns a store bound to transaction x, for a caller through which
// every change of an entry in x passes while the store is in use: an entry
// it wrote is read back from memory (the identity step resolves the record
// it has just filed).
func NewTx(x sqlx.ExtContext) *Store { return &Store{x: x, written: map[mpi.Key]written{}} }

// WithDecoded makes s take entries it reads unchanged from d instead of
// decoding them again, and returns s.
func (s *Store) WithDecoded(d *Decoded) *Store {
	s.decoded = d
	return s
}

func (s *Store) q(query string) string { return s.x.Rebind(query) }

func decodeEntries(rows []string) ([]mpi.Entry, error) {
	out := make([]mpi.Entry, 0, len(rows))
	for _, b := range rows {
		var e mpi.Entry
		if err := json.Unmarshal([]byte(b), &e); err != nil {
			return nil, fmt.Errorf("decode entry: %w", err)
		}
		out = append(out, e)
	}
	return out, nil
}

// Get implements mpi.Store.
func (s *Store) Get(ctx context.Context, k mpi.Key) (mpi.Entry, bool, error) {
	body := s.written[k].body
	if body == "" {
		err := sqlx.GetContext(ctx, s.x, &body, s.q(`SELECT body FROM mpi_entry WHERE authority = ? AND mrn = ?`), k.Authority, k.MRN)
		if errors.Is(err, sql.ErrNoRows) {
			return mpi.Entry{}, false, nil
		}
		if err != nil {
			return mpi.Entry{}, false, fmt.Errorf("get mpi entry: %w", err)
		}
	}
	if e, ok := s.decoded.get(k, body); ok {
		return e, true, nil
	}
	var e mpi.Entry
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return mpi.Entry{}, false, fmt.Errorf("get mpi entry: decode: %w", err)
	}
	s.decoded.put(k, body, e)
	return e, true, nil
}

type keyRow struct {
	Authority string `db:"authority"`
	MRN       string `db:"mrn"`
}

// Lookup implements mpi.Store.
func (s *Store) Lookup(ctx context.Context, id mpi.Identifier) ([]mpi.Key, error) {
	var rows []keyRow
	err := sqlx.SelectContext(ctx, s.x, &rows, s.q(`SELECT authority, mrn FROM mpi_identifier
		WHERE id_type = ? AND id_authority = ? AND id_value = ? ORDER BY authority, mrn`), id.Type, id.Authority, id.Value)
	if err != nil {
		return nil, fmt.Errorf("lookup mpi identifier: %w", err)
	}
	return toKeys(rows), nil
}

func toKeys(rows []keyRow) []mpi.Key {
	if len(rows) == 0 {
		return nil
	}
	out := make([]mpi.Key, len(rows))
	for i, r := range rows {
		out[i] = mpi.Key{Authority: r.Authority, MRN: r.MRN}
	}
	return out
}

// LookupValue returns the keys of records carrying an identifier of any
// type with this authority and value.
func (s *Store) LookupValue(ctx context.Context, authority, value string) ([]mpi.Key, error) {
	var rows []keyRow
	err := sqlx.SelectContext(ctx, s.x, &rows, s.q(`SELECT DISTINCT authority, mrn FROM mpi_identifier
		WHERE id_authority = ? AND id_value = ? ORDER BY authority, mrn`), authority, value)
	if err != nil {
		return nil, fmt.Errorf("lookup mpi identifier: %w", err)
	}
	return toKeys(rows), nil
}

// Candidates implements mpi.Store. The entries it returns hold what
// scoring reads (the record's compared fields, the enterprise id and the
// not-same list), decoded from the cand column; see mpi.Store.
func (s *Store) Candidates(ctx context.Context, blocks []string, maxBlock int) ([]mpi.Entry, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	q, args := candidatesQuery(blocks, maxBlock)
	rows, err := s.x.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return nil, fmt.Errorf("candidates: %w", err)
	}
	defer rows.Close()
	var (
		out  []mpi.Entry
		old  []int // entries without a cand column, read from their body
		cand sql.RawBytes
	)
	for rows.Next() {
		var e mpi.Entry
		if err := rows.Scan(&e.Record.Authority, &e.Record.MRN, &e.EnterpriseID, &cand); err != nil {
			return nil, fmt.Errorf("candidates: %w", err)
		}
		if n := len(out); n > 0 && out[n-1].Record.Authority == e.Record.Authority && out[n-1].Record.MRN == e.Record.MRN {
			continue
		}
		if len(cand) == 0 {
			old = append(old, len(out))
		} else if err := decodeCand(string(cand), &e); err != nil {
			return nil, fmt.Errorf("candidates: entry: %w", err)
		}
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("candidates: %w", err)
	}
	rows.Close()
	for _, i := range old {
		e, ok, err := s.Get(ctx, out[i].Key())
		if err != nil {
			return nil, fmt.Errorf("candidates: %w", err)
		}
		if ok {
			out[i] = e
		}
	}
	return out, nil
}

// candidatesQuery is one statement: the blocks holding at most maxBlock
// entries (each count stops at maxBlock+1 rows, so a key shared by
// thousands of entries costs no more than a small one), then their entries,
// driven by the blocking key's primary key and each entry's. A record
// shares several keys with a close match, so rows repeat; Candidates skips
// the repeats rather than asking for DISTINCT.
func candidatesQuery(blocks []string, maxBlock int) (string, []any) {
	var b strings.Builder
	args := make([]any, 0, len(blocks)+2)
	if maxBlock > 0 {
		b.WriteString(`WITH small (block) AS (SELECT column1 FROM (VALUES `)
		b.WriteString(tuples(len(blocks), 1))
		b.WriteString(`) v WHERE (SELECT COUNT(*) FROM (SELECT 1 FROM mpi_block c WHERE c.block = v.column1 LIMIT ?) n) <= ?) `)
	}
	b.WriteString(`SELECT e.authority, e.mrn, e.enterprise_id, e.cand FROM mpi_block b
		JOIN mpi_entry e ON e.authority = b.authority AND e.mrn = b.mrn WHERE b.block IN (`)
	if maxBlock > 0 {
		b.WriteString(`SELECT block FROM small`)
	} else {
		b.WriteString(strings.Repeat("?, ", len(blocks)-1) + "?")
	}
	b.WriteString(`) AND e.active = 1 ORDER BY e.authority, e.mrn`)
	for _, blk := range blocks {
		args = append(args, blk)
	}
	if maxBlock > 0 {
		args = append(args, maxBlock+1, maxBlock)
	}
	return b.String(), args
}

// Members implements mpi.Store.
func (s *Store) Members(ctx context.Context, enterpriseID string) ([]mpi.Entry, error) {
	var bodies []string
	if err := sqlx.SelectContext(ctx, s.x, &bodies, s.q(`SELECT body FROM mpi_entry WHERE enterprise_id = ? AND active = 1`),
		enterpriseID); err != nil {
		return nil, fmt.Errorf("mpi members: %w", err)
	}
	out, err := decodeEntries(bodies)
	if err != nil {
		return nil, fmt.Errorf("mpi members: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out, nil
}

// MergedInto returns the keys of entries an ADT^A40 merged into k.
func (s *Store) MergedInto(ctx context.Context, k mpi.Key) ([]mpi.Key, error) {
	if w, ok := s.written[k]; ok && w.version == 1 {
		// k is new in this transaction (Put's contract), and entries are
		// never deleted: whatever points at it was written since, through
		// this store (a merge files its survivor in the same change).
		var out []mpi.Key
		for key, o := range s.written {
			if o.mergedInto != nil && *o.mergedInto == k {
				out = append(out, key)
			}
		}
		slices.SortFunc(out, func(a, b mpi.Key) int {
			return cmp.Or(strings.Compare(a.Authority, b.Authority), strings.Compare(a.MRN, b.MRN))
		})
		return out, nil
	}
	var rows []keyRow
	if err := sqlx.SelectContext(ctx, s.x, &rows, s.q(`SELECT authority, mrn FROM mpi_entry
		WHERE merged_authority = ? AND merged_mrn = ? ORDER BY authority, mrn`), k.Authority, k.MRN); err != nil {
		return nil, fmt.Errorf("merged entries: %w", err)
	}
	return toKeys(rows), nil
}

// Put implements mpi.Store.
func (s *Store) Put(ctx context.Context, e mpi.Entry, blocks []string) error {
	k := e.Key()
	if k.Authority == "" || k.MRN == "" {
		return errors.New("put mpi entry: entry without authority or MRN")
	}
	body, err := json.Marshal(e)
	if err != nil {
		return fmt.Errorf("put mpi entry: encode: %w", err)
	}
	active := 1
	var ma, mm string
	if e.MergedInto != nil {
		active, ma, mm = 0, e.MergedInto.Authority, e.MergedInto.MRN
	}
	var cand []byte
	if e.Active() {
		cand = encodeCand(&e)
	}
	entry := []any{k.Authority, k.MRN, e.EnterpriseID, active, ma, mm, e.Version, string(body), cand}
	if e.Version == 1 && s.x.DriverName() == "postgres" {
		err = s.putNewPostgres(ctx, entry, blocks, e.Record.Identifiers)
	} else {
		err = s.putRows(ctx, k, entry, blocks, e.Record.Identifiers, e.Version == 1)
	}
	if err != nil {
		return err
	}
	if s.written != nil {
		w := written{body: string(body), enterpriseID: e.EnterpriseID, version: e.Version}
		if e.MergedInto != nil {
			mk := *e.MergedInto
			w.mergedInto = &mk
		}
		s.written[k] = w
	}
	return nil
}

// upsertEntry writes an mpi_entry row from the nine values of Put's entry
// list.
const upsertEntry = `INSERT INTO mpi_entry (authority, mrn, enterprise_id, active, merged_authority, merged_mrn, version,
		body, cand) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)
	ON CONFLICT (authority, mrn) DO UPDATE SET enterprise_id = excluded.enterprise_id, active = excluded.active,
		merged_authority = excluded.merged_authority, merged_mrn = excluded.merged_mrn, version = excluded.version,
		body = excluded.body, cand = excluded.cand`

// putRows writes an entry and replaces its index rows, a statement each.
// A new entry (version 1) is one the index found absent in this
// transaction (entries are never deleted), so it has no index rows to
// clear.
func (s *Store) putRows(ctx context.Context, k mpi.Key, entry []any, blocks []string, ids []mpi.Identifier, isNew bool) error {
	if _, err := s.x.ExecContext(ctx, s.q(upsertEntry), entry...); err != nil {
		return fmt.Errorf("put mpi entry: %w", err)
	}
	if !isNew {
		for _, q := range []string{`DELETE FROM mpi_block WHERE authority = ? AND mrn = ?`,
			`DELETE FROM mpi_identifier WHERE authority = ? AND mrn = ?`} {
			if _, err := s.x.ExecContext(ctx, s.q(q), k.Authority, k.MRN); err != nil {
				return fmt.Errorf("put mpi entry: clear index rows: %w", err)
			}
		}
	}
	if len(blocks) > 0 {
		args := make([]any, 0, 3*len(blocks))
		for _, b := range blocks {
			args = append(args, b, k.Authority, k.MRN)
		}
		if _, err := s.x.ExecContext(ctx, s.q(`INSERT INTO mpi_block (block, authority, mrn) VALUES `+
			tuples(len(blocks), 3)+` ON CONFLICT DO NOTHING`), args...); err != nil {
			return fmt.Errorf("put mpi entry: blocks: %w", err)
		}
	}
	if len(ids) > 0 {
		args := make([]any, 0, 5*len(ids))
		for _, id := range ids {
			args = append(args, id.Type, id.Authority, id.Value, k.Authority, k.MRN)
		}
		if _, err := s.x.ExecContext(ctx, s.q(`INSERT INTO mpi_identifier (id_type, id_authority, id_value, authority, mrn)
			VALUES `+tuples(len(ids), 5)+` ON CONFLICT DO NOTHING`), args...); err != nil {
			return fmt.Errorf("put mpi entry: identifiers: %w", err)
		}
	}
	return nil
}

// putNewPostgres writes a new entry and its index rows in one statement
// (PostgreSQL): a new patient's record costs one round trip instead of
// three. Only for a new entry: its index rows need no clearing, which could
// not share a statement with their inserts.
func (s *Store) putNewPostgres(ctx context.Context, entry []any, blocks []string, ids []mpi.Identifier) error {
	typ, auth, val := make([]string, len(ids)), make([]string, len(ids)), make([]string, len(ids))
	for i, id := range ids {
		typ[i], auth[i], val[i] = id.Type, id.Authority, id.Value
	}
	if _, err := s.x.ExecContext(ctx, s.q(`WITH entry AS (`+upsertEntry+`), blocks AS (
			INSERT INTO mpi_block (block, authority, mrn) SELECT b, $1, $2 FROM unnest($10::text[]) AS b
			ON CONFLICT DO NOTHING
		)
		INSERT INTO mpi_identifier (id_type, id_authority, id_value, authority, mrn)
		SELECT t, a, v, $1, $2 FROM unnest($11::text[], $12::text[], $13::text[]) AS i (t, a, v)
		ON CONFLICT DO NOTHING`), append(entry, pq.Array(blocks), pq.Array(typ), pq.Array(auth), pq.Array(val))...); err != nil {
		return fmt.Errorf("put mpi entry: %w", err)
	}
	return nil
}

// tuples returns n placeholder tuples of width columns for a multi-row
// VALUES list: (?, ?), (?, ?).
func tuples(n, width int) string {
	one := "(" + strings.Repeat("?, ", width-1) + "?)"
	return strings.Repeat(one+", ", n-1) + one
}

// PutTask implements mpi.Store.
func (s *Store) PutTask(ctx context.Context, t mpi.Task) error {
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("put review task: encode: %w", err)
	}
	if _, err := s.x.ExecContext(ctx, s.q(`INSERT INTO mpi_task (id, status, authority, mrn, body) VALUES (?, ?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, authority = excluded.authority, mrn = excluded.mrn,
		body = excluded.body`), t.ID, string(t.Status), t.Key.Authority, t.Key.MRN, string(body)); err != nil {
		return fmt.Errorf("put review task: %w", err)
	}
	return nil
}

// Task implements mpi.Store.
func (s *Store) Task(ctx context.Context, id string) (mpi.Task, bool, error) {
	var body string
	err := sqlx.GetContext(ctx, s.x, &body, s.q(`SELECT body FROM mpi_task WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return mpi.Task{}, false, nil
	}
	if err != nil {
		return mpi.Task{}, false, fmt.Errorf("get review task: %w", err)
	}
	var t mpi.Task
	if err := json.Unmarshal([]byte(body), &t); err != nil {
		return mpi.Task{}, false, fmt.Errorf("get review task: decode: %w", err)
	}
	return t, true, nil
}

// Tasks lists review tasks with the given status ("" for all) in creation
// order, at most limit (0: no limit) after the first offset.
func (s *Store) Tasks(ctx context.Context, status mpi.TaskStatus, offset, limit int) ([]mpi.Task, error) {
	if limit <= 0 {
		limit = 1 << 30
	}
	var bodies []string
	err := sqlx.SelectContext(ctx, s.x, &bodies, s.q(`SELECT body FROM mpi_task WHERE status = ? OR ? = ''
		ORDER BY seq LIMIT ? OFFSET ?`), string(status), string(status), limit, offset)
	if err != nil {
		return nil, fmt.Errorf("list review tasks: %w", err)
	}
	out := make([]mpi.Task, 0, len(bodies))
	for _, b := range bodies {
		var t mpi.Task
		if err := json.Unmarshal([]byte(b), &t); err != nil {
			return nil, fmt.Errorf("list review tasks: decode: %w", err)
		}
		out = append(out, t)
	}
	return out, nil
}

// AppendAudit implements mpi.Store.
func (s *Store) AppendAudit(ctx context.Context, a mpi.AuditEntry) error {
	body, err := json.Marshal(a)
	if err != nil {
		return fmt.Errorf("append mpi audit: encode: %w", err)
	}
	const insert = `INSERT INTO mpi_audit (id, at, actor, action, body) VALUES (?, ?, ?, ?, ?) RETURNING seq`
	if s.x.DriverName() == "postgres" && len(a.Keys) > 0 {
		// The entry and its keys in one statement.
		auth, mrn := make([]string, len(a.Keys)), make([]string, len(a.Keys))
		for i, k := range a.Keys {
			auth[i], mrn[i] = k.Authority, k.MRN
		}
		if _, err := s.x.ExecContext(ctx, s.q(`WITH audit AS (`+insert+`)
			INSERT INTO mpi_audit_key (audit_seq, authority, mrn)
			SELECT audit.seq, k.authority, k.mrn FROM audit, unnest($6::text[], $7::text[]) AS k (authority, mrn)
			ON CONFLICT DO NOTHING`), a.ID, a.At.UTC(), a.Actor, a.Action, string(body), pq.Array(auth), pq.Array(mrn)); err != nil {
			return fmt.Errorf("append mpi audit: %w", err)
		}
		return nil
	}
	var seq int64
	if err := sqlx.GetContext(ctx, s.x, &seq, s.q(insert), a.ID, a.At.UTC(), a.Actor, a.Action, string(body)); err != nil {
		return fmt.Errorf("append mpi audit: %w", err)
	}
	if len(a.Keys) == 0 {
		return nil
	}
	args := make([]any, 0, 3*len(a.Keys))
	for _, k := range a.Keys {
		args = append(args, seq, k.Authority, k.MRN)
	}
	if _, err := s.x.ExecContext(ctx, s.q(`INSERT INTO mpi_audit_key (audit_seq, authority, mrn) VALUES `+
		tuples(len(a.Keys), 3)+` ON CONFLICT DO NOTHING`), args...); err != nil {
		return fmt.Errorf("append mpi audit: keys: %w", err)
	}
	return nil
}

// AuditEntry implements mpi.Store.
func (s *Store) AuditEntry(ctx context.Context, id string) (mpi.AuditEntry, bool, error) {
	var body string
	err := sqlx.GetContext(ctx, s.x, &body, s.q(`SELECT body FROM mpi_audit WHERE id = ?`), id)
	if errors.Is(err, sql.ErrNoRows) {
		return mpi.AuditEntry{}, false, nil
	}
	if err != nil {
		return mpi.AuditEntry{}, false, fmt.Errorf("get mpi audit entry: %w", err)
	}
	var a mpi.AuditEntry
	if err := json.Unmarshal([]byte(body), &a); err != nil {
		return mpi.AuditEntry{}, false, fmt.Errorf("get mpi audit entry: decode: %w", err)
	}
	return a, true, nil
}

// Audit lists the audit entries that touched k, oldest first.
func (s *Store) Audit(ctx context.Context, k mpi.Key) ([]mpi.AuditEntry, error) {
	var bodies []string
	err := sqlx.SelectContext(ctx, s.x, &bodies, s.q(`SELECT a.body FROM mpi_audit a JOIN mpi_audit_key k ON k.audit_seq = a.seq
		WHERE k.authority = ? AND k.mrn = ? ORDER BY a.seq`), k.Authority, k.MRN)
	if err != nil {
		return nil, fmt.Errorf("list mpi audit: %w", err)
	}
	out := make([]mpi.AuditEntry, 0, len(bodies))
	for _, b := range bodies {
		var a mpi.AuditEntry
		if err := json.Unmarshal([]byte(b), &a); err != nil {
			return nil, fmt.Errorf("list mpi audit: decode: %w", err)
		}
		out = append(out, a)
	}
	return out, nil
}

// Resolve returns the enterprise patient of the record k, following
// merges, and whether k is known.
func (s *Store) Resolve(ctx context.Context, k mpi.Key) (string, bool, error) {
	for range 16 {
		w, ok := s.written[k]
		if !ok {
			e, found, err := s.Get(ctx, k)
			if err != nil || !found {
				return "", false, err
			}
			w = written{enterpriseID: e.EnterpriseID, mergedInto: e.MergedInto}
		}
		if w.mergedInto == nil {
			return w.enterpriseID, true, nil
		}
		k = *w.mergedInto
	}
	return "", false, errors.New("resolve mpi key: merge chain longer than 16")
}

// Records returns every entry filed under an enterprise patient, merged
// ones included, ordered by key: its full cross-reference list.
func (s *Store) Records(ctx context.Context, enterpriseID string) ([]mpi.Entry, error) {
	var bodies []string
	if err := sqlx.SelectContext(ctx, s.x, &bodies, s.q(`SELECT body FROM mpi_entry WHERE enterprise_id = ?
		ORDER BY authority, mrn`), enterpriseID); err != nil {
		return nil, fmt.Errorf("mpi records: %w", err)
	}
	return decodeEntries(bodies)
}

package mpi

import (
	"context"
	"errors"
	"slices"
	"sort"
	"sync"
)

// Store persists the index. It is deliberately narrow so that a SQL
// implementation is a handful of tables: entries (with their JSON), a
// blocking-key table, an identifier table, review tasks and the audit log.
// Index serialises its own calls; a Store used by several processes should
// be given to Index.WithStore bound to one transaction per operation.
type Store interface {
	// Get returns the entry stored under k.
	Get(ctx context.Context, k Key) (Entry, bool, error)
	// Lookup returns the keys of entries whose record carries id (same type,
	// authority and value).
	Lookup(ctx context.Context, id Identifier) ([]Key, error)
	// Candidates returns the active entries filed under any of blocks,
	// each once, skipping blocks that hold more than maxBlock entries.
	// The entries are for scoring only: a store may fill just the record's
	// key and compared fields (not Sender or Identifiers), EnterpriseID and
	// NotSame. Never Put a candidate back; Get the entry instead.
	Candidates(ctx context.Context, blocks []string, maxBlock int) ([]Entry, error)
	// Members returns the active entries of an enterprise patient.
	Members(ctx context.Context, enterpriseID string) ([]Entry, error)
	// Put inserts or replaces an entry with its blocking keys; it also files
	// the record's identifiers for Lookup. An entry of Version 1 is new (the
	// index gives version 1 only to a key it found absent, and entries are
	// never deleted), so a store may skip clearing its earlier index rows.
	Put(ctx context.Context, e Entry, blocks []string) error
	// PutTask inserts or replaces a review task.
	PutTask(ctx context.Context, t Task) error
	// Task returns a review task by id.
	Task(ctx context.Context, id string) (Task, bool, error)
	// AppendAudit adds an audit entry.
	AppendAudit(ctx context.Context, a AuditEntry) error
	// AuditEntry returns an audit entry by id.
	AuditEntry(ctx context.Context, id string) (AuditEntry, bool, error)
}

// Memory is an in-memory Store, safe for concurrent use. Besides Store it
// offers the listings an operator screen needs (Tasks, Audit).
type Memory struct {
	mu sync.RWMutex
	// Entries are numbered in order of arrival; indexes hold the numbers,
	// which keeps 100,000 patients' blocking index small.
	entries []*Entry
	byKey   map[Key]int32
	// Blocking keys are filed by a 64-bit hash: a collision only adds a
	// candidate, which scoring then rejects.
	blocks    map[uint64][]int32
	entBlocks [][]uint64
	idents    map[Identifier][]int32
	members   map[string][]int32
	tasks     map[string]Task
	taskOrder []string
	audit     []*AuditEntry
	auditByID map[string]int
	auditKey  map[Key][]int
}

var _ Store = (*Memory)(nil)

// NewMemory returns an empty in-memory store.
func NewMemory() *Memory {
	return &Memory{
		byKey:     make(map[Key]int32),
		blocks:    make(map[uint64][]int32),
		idents:    make(map[Identifier][]int32),
		members:   make(map[string][]int32),
		tasks:     make(map[string]Task),
		auditByID: make(map[string]int),
		auditKey:  make(map[Key][]int),
	}
}

// Get implements Store.
func (m *Memory) Get(ctx context.Context, k Key) (Entry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.byKey[k]
	if !ok {
		return Entry{}, false, nil
	}
	return *m.entries[i], true, nil
}

// Lookup implements Store.
func (m *Memory) Lookup(ctx context.Context, id Identifier) ([]Key, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Key
	for _, i := range m.idents[id] {
		out = append(out, m.entries[i].Key())
	}
	return out, nil
}

// Candidates implements Store.
func (m *Memory) Candidates(ctx context.Context, blocks []string, maxBlock int) ([]Entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var seen []int32
	var out []Entry
	for _, b := range blocks {
		ids := m.blocks[blockHash(b)]
		if maxBlock > 0 && len(ids) > maxBlock {
			continue
		}
		for _, i := range ids {
			if slices.Contains(seen, i) {
				continue
			}
			seen = append(seen, i)
			if e := m.entries[i]; e.Active() {
				out = append(out, *e)
			}
		}
	}
	return out, nil
}

// Members implements Store.
func (m *Memory) Members(ctx context.Context, enterpriseID string) ([]Entry, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Entry
	for _, i := range m.members[enterpriseID] {
		out = append(out, *m.entries[i])
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Key().String() < out[j].Key().String() })
	return out, nil
}

// Put implements Store.
func (m *Memory) Put(ctx context.Context, e Entry, blocks []string) error {
	k := e.Key()
	if k.Authority == "" || k.MRN == "" {
		return errors.New("memory put: entry without authority or MRN")
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	i, ok := m.byKey[k]
	if ok {
		old := m.entries[i]
		if old.Active() {
			m.members[old.EnterpriseID] = unfile(m.members[old.EnterpriseID], i)
			if len(m.members[old.EnterpriseID]) == 0 {
				delete(m.members, old.EnterpriseID)
			}
		}
		for _, id := range old.Record.Identifiers {
			if m.idents[id] = unfile(m.idents[id], i); len(m.idents[id]) == 0 {
				delete(m.idents, id)
			}
		}
		for _, b := range m.entBlocks[i] {
			if m.blocks[b] = unfile(m.blocks[b], i); len(m.blocks[b]) == 0 {
				delete(m.blocks, b)
			}
		}
	} else {
		i = int32(len(m.entries))
		m.byKey[k] = i
		m.entries = append(m.entries, nil)
		m.entBlocks = append(m.entBlocks, nil)
	}
	cp := e
	m.entries[i] = &cp
	if e.Active() {
		m.members[e.EnterpriseID] = append(m.members[e.EnterpriseID], i)
	}
	for _, id := range e.Record.Identifiers {
		m.idents[id] = append(m.idents[id], i)
	}
	hs := make([]uint64, len(blocks))
	for j, b := range blocks {
		h := blockHash(b)
		hs[j] = h
		m.blocks[h] = append(m.blocks[h], i)
	}
	m.entBlocks[i] = hs
	return nil
}

// blockHash is FNV-1a of a blocking key.
func blockHash(s string) uint64 {
	h := uint64(14695981039346656037)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= 1099511628211
	}
	return h
}

// unfile removes entry number i from a list, keeping the order.
func unfile(ids []int32, i int32) []int32 {
	if j := slices.Index(ids, i); j >= 0 {
		return slices.Delete(ids, j, j+1)
	}
	return ids
}

// PutTask implements Store.
func (m *Memory) PutTask(ctx context.Context, t Task) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.tasks[t.ID]; !ok {
		m.taskOrder = append(m.taskOrder, t.ID)
	}
	m.tasks[t.ID] = t
	return nil
}

// Task implements Store.
func (m *Memory) Task(ctx context.Context, id string) (Task, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	t, ok := m.tasks[id]
	return t, ok, nil
}

// Tasks lists review tasks with the given status ("" for all) in creation order.
func (m *Memory) Tasks(status TaskStatus) []Task {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []Task
	for _, id := range m.taskOrder {
		if t := m.tasks[id]; status == "" || t.Status == status {
			out = append(out, t)
		}
	}
	return out
}

// AppendAudit implements Store.
func (m *Memory) AppendAudit(ctx context.Context, a AuditEntry) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	i := len(m.audit)
	m.audit = append(m.audit, &a)
	m.auditByID[a.ID] = i
	for _, k := range a.Keys {
		m.auditKey[k] = append(m.auditKey[k], i)
	}
	return nil
}

// AuditEntry implements Store.
func (m *Memory) AuditEntry(ctx context.Context, id string) (AuditEntry, bool, error) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	i, ok := m.auditByID[id]
	if !ok {
		return AuditEntry{}, false, nil
	}
	return *m.audit[i], true, nil
}

// Audit lists the audit entries that touched k, oldest first.
func (m *Memory) Audit(k Key) []AuditEntry {
	m.mu.RLock()
	defer m.mu.RUnlock()
	var out []AuditEntry
	for _, i := range m.auditKey[k] {
		out = append(out, *m.audit[i])
	}
	return out
}

// Len returns the number of entries, merged ones included.
func (m *Memory) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.entries)
}

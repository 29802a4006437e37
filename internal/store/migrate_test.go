package store

import (
	"context"
	"sync"
	"testing"
)

// TestConcurrentMigrations starts several gateways at once on an empty
// PostgreSQL schema, as a Kubernetes deployment of several replicas does:
// each must open the store, and the schema must end up migrated once.
// Without the schema lock, 4 runs of 4 failed (one round in about five).
func TestConcurrentMigrations(t *testing.T) {
	for round := range 5 {
		if !openAtOnce(t, TestPostgresDSN(t), 6) {
			t.Fatalf("round %d failed", round)
		}
	}
}

func openAtOnce(t *testing.T, dsn string, n int) bool {
	t.Helper()
	var wg sync.WaitGroup
	errs := make([]error, n)
	dbs := make([]*DB, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			dbs[i], errs[i] = Open(context.Background(), Options{PostgresDSN: dsn, MaxOpenConns: 2})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("gateway %d: %v", i, err)
			continue
		}
		defer dbs[i].Close()
	}
	if t.Failed() {
		return false
	}
	var applied []int64
	if err := dbs[0].x.Select(&applied, `SELECT version_id FROM goose_db_version WHERE version_id > 0 ORDER BY id`); err != nil {
		t.Fatal(err)
	}
	seen := map[int64]bool{}
	for _, v := range applied {
		if seen[v] {
			t.Errorf("migration %d applied twice (%v)", v, applied)
		}
		seen[v] = true
	}
	if len(seen) == 0 {
		t.Error("no migration recorded")
	}
	return !t.Failed()
}

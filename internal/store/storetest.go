package store

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"testing"
)

// PostgresEnv names the variable that points tests at a PostgreSQL server.
const PostgresEnv = "HIEGW_TEST_POSTGRES_DSN"

// TestPostgresDSN returns a DSN for a fresh schema of its own on the test
// PostgreSQL server, dropped when the test ends. Without HIEGW_TEST_POSTGRES_DSN
// the test is skipped with a message saying how to run it.
func TestPostgresDSN(t testing.TB) string {
	t.Helper()
	base := os.Getenv(PostgresEnv)
	if base == "" {
		t.Skip("PostgreSQL tests skipped: set " + PostgresEnv + "=postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable to run them (.ci/run does)")
	}
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "hiegw_test_" + hex.EncodeToString(b[:])
	admin, err := Open(context.Background(), Options{PostgresDSN: withSearchPath(base, "public"), MaxOpenConns: 1, skipMigrate: true})
	if err != nil {
		t.Fatalf("connect to %s: %v", PostgresEnv, err)
	}
	if _, err := admin.x.Exec(`CREATE SCHEMA ` + schema); err != nil {
		t.Fatalf("create schema: %v", err)
	}
	t.Cleanup(func() {
		if _, err := admin.x.Exec(`DROP SCHEMA ` + schema + ` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
		admin.Close()
	})
	return withSearchPath(base, schema)
}

func withSearchPath(dsn, schema string) string { return withDSNParam(dsn, "search_path", schema) }

// withDSNParam sets one connection parameter in a PostgreSQL DSN, written as
// a URL or as key=value pairs.
func withDSNParam(dsn, key, value string) string {
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err == nil {
			q := u.Query()
			q.Set(key, value)
			u.RawQuery = q.Encode()
			return u.String()
		}
	}
	return dsn + " " + key + "=" + value
}

// TestEmbedded opens an embedded store in a temporary directory, without
// fsyncs (Sync "normal"), closed when the test ends.
func TestEmbedded(t testing.TB) *DB {
	t.Helper()
	db, err := Open(context.Background(), Options{DataDir: t.TempDir(), Sync: "normal"})
	if err != nil {
		t.Fatalf("open embedded store: %v", err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// FailLogUpdates makes the next n updates of the message log's status after
// a processing commit fail, as a full disk would (tests: InTx then returns
// ErrLogBehind).
func (db *DB) FailLogUpdates(n int) { db.failLogMarks.Store(int32(n)) }

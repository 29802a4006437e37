// Package store is hiegw's database: versioned migrations and the queries of
// every stage, on two backends behind sqlx: an embedded single-file SQLite
// database (pure Go, the default) and PostgreSQL (production).
package store

import (
	"context"
	"database/sql"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq" // PostgreSQL driver
	"github.com/pressly/goose/v3"
	_ "modernc.org/sqlite" // embedded driver
)

// Backends.
const (
	SQLite   = "sqlite"
	Postgres = "postgres"
)

//go:embed migrations
var migrations embed.FS

// Options says which database to open.
type Options struct {
	// Postgres DSN; empty means the embedded store in DataDir.
	PostgresDSN string
	// DataDir holds the embedded database file hiegw.db.
	DataDir string
	// Sync is the embedded store's durability: "full" (default) syncs every
	// receipt (the journal's fdatasync) and the commits that must survive
	// power loss; "normal" survives a process crash but may lose the last
	// receipts on power loss.
	Sync string
	// MaxOpenConns for PostgreSQL (default 16).
	MaxOpenConns int
	// NoIntake opens the embedded store for a command-line tool beside a
	// running gateway: without the intake journal (which that gateway
	// holds; InsertEnvelopes is refused) and without releasing the gateway's
	// claims.
	NoIntake bool
	// Logger receives the embedded store's own log lines (the intake
	// journal's recovery and copier); slog.Default() if nil.
	Logger *slog.Logger

	skipMigrate bool
}

// DB is an open, migrated database.
//
// On PostgreSQL everything is one database. The embedded store receives
// envelopes through its journal (intakejournal.go) and keeps the envelope
// log in a file of its own, intake.db, beside the record, hiegw.db: SQLite
// has one writer per file, and this way copying receipts never waits behind
// processing. The
// processing transaction records completion in the record's own
// processed_envelopes table and the log's status follows after the commit
// (repaired at the next read if that update was lost), so every envelope's
// effects are still applied exactly once.
type DB struct {
	x       *sqlx.DB // the record
	log     *sqlx.DB // the envelope log; the same handle as x on PostgreSQL
	split   bool     // log and record are separate databases
	backend string
	// durableSync: the embedded store fsyncs the commits that must survive
	// power loss (envelopes, audit); the others (processing, outbox
	// bookkeeping) are replayed from those if lost, so they skip the fsync.
	durableSync bool
	// logStmts: the envelope log's prepared statements (envelopes.go).
	logStmts logStmts
	stmts    *stmtCache // the record's recurring queries, prepared
	// ij receives envelopes through a journal on the embedded store
	// (intakejournal.go); nil on PostgreSQL.
	ij *intakeJournal
	// claims are the embedded store's outbox claims (outbox.go).
	claims outboxClaims
	// failLogMarks (tests) makes that many updates of the log's status
	// after a processing commit fail.
	failLogMarks atomic.Int32
}

// Backend names the backend: SQLite or Postgres.
func (db *DB) Backend() string { return db.backend }

// SQL exposes the underlying handle, for tests and health checks.
func (db *DB) SQL() *sqlx.DB { return db.x }

// Open opens the database and applies pending migrations. It refuses a
// database whose schema is newer than this binary knows.
func Open(ctx context.Context, o Options) (*DB, error) {
	var (
		x       *sqlx.DB
		err     error
		backend string
		dialect goose.Dialect
	)
	if o.PostgresDSN != "" {
		backend, dialect = Postgres, goose.DialectPostgres
		dsn := o.PostgresDSN
		if !strings.Contains(dsn, "binary_parameters") {
			// Statements with parameters then take one round trip instead of
			// two (the driver need not ask the server for the parameter types
			// first): PostgreSQL processing ran about 20 % faster. Every value
			// hiegw writes to a JSONB column is passed as a string, as this
			// setting requires.
			dsn = withDSNParam(dsn, "binary_parameters", "yes")
		}
		x, err = sqlx.Open("postgres", dsn)
		if err != nil {
			return nil, fmt.Errorf("open postgres: %w", err)
		}
		n := o.MaxOpenConns
		if n <= 0 {
			n = 16
		}
		x.SetMaxOpenConns(n)
		x.SetMaxIdleConns(n)
	} else {
		backend, dialect = SQLite, goose.DialectSQLite3
		sync := strings.ToUpper(o.Sync)
		if sync == "" {
			sync = "FULL"
		}
		if sync != "FULL" && sync != "NORMAL" {
			return nil, fmt.Errorf("open store: sync must be full or normal, not %q", o.Sync)
		}
		if err := os.MkdirAll(o.DataDir, 0o700); err != nil {
			return nil, fmt.Errorf("open store: %w", err)
		}
		if x, err = openSQLite(filepath.Join(o.DataDir, "hiegw.db")); err != nil {
			return nil, err
		}
	}
	db := &DB{x: x, log: x, backend: backend, durableSync: backend == SQLite && !strings.EqualFold(o.Sync, "normal")}
	if backend == SQLite {
		if db.log, err = openSQLite(filepath.Join(o.DataDir, "intake.db")); err != nil {
			x.Close()
			return nil, err
		}
		db.split = true
	}
	pctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := x.PingContext(pctx); err != nil {
		db.Close()
		return nil, fmt.Errorf("connect %s store: %w", backend, err)
	}
	if backend == SQLite {
		// PostgreSQL parses in its own process, and named statements do not
		// survive a transaction-pooling proxy such as PgBouncer.
		db.stmts = newStmtCache(x)
	}
	if o.skipMigrate {
		return db, nil
	}
	if err := migrate(ctx, x, dialect, "migrations/"+backend); err != nil {
		db.Close()
		return nil, err
	}
	if db.split {
		if err := migrate(ctx, db.log, dialect, "migrations/sqlite-log"); err != nil {
			db.Close()
			return nil, err
		}
		if !o.NoIntake {
			if err := db.openIntakeJournal(ctx, journalDir(o.DataDir), filepath.Join(o.DataDir, "intake.db"), !db.durableSync, o.Logger); err != nil {
				db.Close()
				return nil, err
			}
			if err := db.releaseClaims(ctx); err != nil {
				db.Close()
				return nil, err
			}
		}
	}
	return db, nil
}

// openSQLite opens one embedded database file with the one connection that
// SQLite's single writer wants. The connection rests at synchronous=NORMAL
// (WAL: durable against a process crash); durable transactions switch to
// FULL for their commit, whose fsync also covers every earlier frame.
//
// The WAL is checkpointed into the database file every 10,000 pages (40 MB)
// instead of SQLite's 1,000: a page that processing changes again and again
// (an outbox or index leaf, a patient's row) is then written back once per
// checkpoint rather than ten times, and each pwrite is a system call that
// costs 10-20 µs on a virtual machine. Processing ADT^A01 messages, strace
// counted 9.9 pwrites and 2.9 preads per message against 11.0 and 3.7.
func openSQLite(path string) (*sqlx.DB, error) {
	dsn := "file:" + path + "?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)" +
		"&_pragma=wal_autocheckpoint(10000)" +
		"&_pragma=busy_timeout(10000)&_pragma=foreign_keys(ON)&_txlock=immediate&_time_format=sqlite"
	x, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	x.SetMaxOpenConns(1)
	return x, nil
}

// openSQLiteReader opens a read-only handle on an embedded database file,
// for lookups that must not wait behind its writer.
func openSQLiteReader(path string) (*sqlx.DB, error) {
	dsn := "file:" + path + "?_pragma=query_only(1)&_pragma=busy_timeout(10000)&_time_format=sqlite"
	x, err := sqlx.Open("sqlite", dsn)
	if err != nil {
		return nil, fmt.Errorf("open %s: %w", path, err)
	}
	x.SetMaxOpenConns(4)
	x.SetMaxIdleConns(4)
	return x, nil
}

func migrate(ctx context.Context, x *sqlx.DB, dialect goose.Dialect, dir string) error {
	sub, err := fs.Sub(migrations, dir)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	var opts []goose.ProviderOption
	if dialect == goose.DialectPostgres {
		opts = append(opts, goose.WithSessionLocker(schemaLocker{}))
	}
	p, err := goose.NewProvider(dialect, x.DB, sub, opts...)
	if err != nil {
		return fmt.Errorf("migrations: %w", err)
	}
	current, err := p.GetDBVersion(ctx)
	if err != nil {
		return fmt.Errorf("read schema version: %w", err)
	}
	srcs := p.ListSources()
	latest := srcs[len(srcs)-1].Version
	if current > latest {
		return fmt.Errorf("schema version %d is newer than this hiegw knows (%d): upgrade hiegw, do not run an older binary against this database", current, latest)
	}
	if _, err := p.Up(ctx); err != nil {
		return fmt.Errorf("apply migrations: %w", err)
	}
	return nil
}

// schemaLocker makes gateways that start at once on one PostgreSQL schema
// (the replicas of a deployment) migrate it one after another: without it,
// two could create the same table at the same moment and one would fail to
// start. The lock is a session-level advisory lock for the schema, taken
// with a blocking pg_advisory_lock, so a waiting gateway goes on as soon as
// the first is done (goose's own locker polls once a second or slower).
type schemaLocker struct{}

// migrateLockClass is the first key of the advisory lock: "hiegw" read as
// an integer; the second key is a hash of the schema name, so gateways on
// other schemas of the same database do not wait for each other.
const migrateLockClass = 0x68696567

func (schemaLocker) SessionLock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_lock($1, hashtext(coalesce(current_schema(), '')))`, migrateLockClass); err != nil {
		return fmt.Errorf("lock the schema for migrations: %w", err)
	}
	return nil
}

func (schemaLocker) SessionUnlock(ctx context.Context, conn *sql.Conn) error {
	if _, err := conn.ExecContext(ctx, `SELECT pg_advisory_unlock($1, hashtext(coalesce(current_schema(), '')))`, migrateLockClass); err != nil {
		return fmt.Errorf("unlock the schema after migrations: %w", err)
	}
	return nil
}

// SchemaVersion returns the applied migration version.
func (db *DB) SchemaVersion(ctx context.Context) (int64, error) {
	var v int64
	err := db.x.GetContext(ctx, &v, `SELECT COALESCE(MAX(version_id), 0) FROM goose_db_version WHERE is_applied`)
	return v, err
}

// Close closes the database.
func (db *DB) Close() error {
	var err error
	if db.ij != nil {
		err = db.ij.shutdown()
	}
	if db.stmts != nil {
		db.stmts.close()
	}
	err = errors.Join(err, db.closeLogStatements(), db.x.Close())
	if db.split {
		err = errors.Join(err, db.log.Close())
	}
	return err
}

// Ping checks the database answers.
func (db *DB) Ping(ctx context.Context) error {
	if err := db.x.PingContext(ctx); err != nil {
		return err
	}
	if err := db.journalErr(); err != nil {
		return err
	}
	return db.log.PingContext(ctx)
}

// tx runs fn in one transaction on the record.
func (db *DB) tx(ctx context.Context, fn func(*sqlx.Tx) error) error { return runTx(ctx, db.x, fn) }

func runTx(ctx context.Context, x *sqlx.DB, fn func(*sqlx.Tx) error) error {
	tx, err := x.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return commitTx(tx, fn)
}

// commitTx runs fn in tx and commits it, or rolls it back when fn fails or
// panics. The panic goes on to the caller's recover; the transaction does
// not stay open holding a connection (on the embedded store, its only
// writer).
func commitTx(tx *sqlx.Tx, fn func(*sqlx.Tx) error) error {
	ok := false
	defer func() {
		if !ok {
			_ = tx.Rollback()
		}
	}()
	if err := fn(tx); err != nil {
		return err
	}
	ok = true
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}

// durableTx runs fn in one transaction on x whose commit is fsynced on the
// embedded store (PostgreSQL commits are always durable).
func (db *DB) durableTx(ctx context.Context, x *sqlx.DB, fn func(*sqlx.Tx) error) error {
	if !db.durableSync {
		return runTx(ctx, x, fn)
	}
	conn, err := x.Connx(ctx)
	if err != nil {
		return fmt.Errorf("connection: %w", err)
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, `PRAGMA synchronous=FULL`); err != nil {
		return fmt.Errorf("sync mode: %w", err)
	}
	defer func() {
		_, _ = conn.ExecContext(context.WithoutCancel(ctx), `PRAGMA synchronous=NORMAL`)
	}()
	tx, err := conn.BeginTxx(ctx, nil)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	return commitTx(tx, fn)
}

func (db *DB) rebind(q string) string { return db.x.Rebind(q) }

// ErrNotFound is returned when a looked-up row does not exist.
var ErrNotFound = errors.New("not found")

func notFound(err error) error {
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	return err
}

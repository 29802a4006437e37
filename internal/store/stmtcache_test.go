package store

import (
	"context"
	"fmt"
	"testing"

	"github.com/jmoiron/sqlx"
)

// TestRecurringQueriesArePrepared runs the same queries in successive
// transactions through Tx.Ext, as the MPI's repository does: from the third
// transaction on they must run as prepared statements (on the embedded store
// that means preparing outside the transaction, or the single connection
// would wait for itself), and every answer must stay right.
func TestRecurringQueriesArePrepared(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		if _, err := db.SQL().ExecContext(ctx, `CREATE TABLE stmt_probe (k TEXT PRIMARY KEY, v INTEGER NOT NULL)`); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _, _ = db.SQL().ExecContext(context.Background(), `DROP TABLE stmt_probe`) })
		ins := db.rebind(`INSERT INTO stmt_probe (k, v) VALUES (?, ?)`)
		sel := db.rebind(`SELECT v FROM stmt_probe WHERE k = ?`)
		if db.stmts == nil {
			t.Skip("statements are prepared on the embedded store only")
		}
		var usedPrepared []bool
		for i := 0; i < 5; i++ {
			err := db.InTx(ctx, func(tx *Tx) error {
				x := tx.Ext()
				usedPrepared = append(usedPrepared, tx.x.cache.prepared(ins))
				if _, err := x.ExecContext(ctx, ins, fmt.Sprint("k", i), i*10); err != nil {
					return err
				}
				var v int
				if err := sqlx.GetContext(ctx, x, &v, sel, fmt.Sprint("k", i)); err != nil {
					return err
				}
				if v != i*10 {
					return fmt.Errorf("read %d back as %d", i*10, v)
				}
				if i == 3 {
					return errRollback
				}
				return nil
			})
			if err != nil && (i != 3 || err != errRollback) {
				t.Fatalf("transaction %d: %v", i, err)
			}
		}
		want := []bool{false, false, true, true, true}
		if fmt.Sprint(usedPrepared) != fmt.Sprint(want) {
			t.Fatalf("prepared per transaction = %v, want %v", usedPrepared, want)
		}
		// The rolled-back row is gone, the others are there: prepared
		// statements ran inside their transactions.
		var n int
		if err := db.SQL().GetContext(ctx, &n, `SELECT COUNT(*) FROM stmt_probe`); err != nil {
			t.Fatal(err)
		}
		if n != 4 {
			t.Fatalf("%d rows after one rollback of five, want 4", n)
		}
	})
}

var errRollback = fmt.Errorf("roll back")

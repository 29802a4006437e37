package store

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestBackupWhileOpen: a backup taken while the store is in use opens as a
// store holding every envelope copied into the log, with its status, and
// takes new envelopes that survive a crash; a directory that is not empty
// or holds no store is refused.
func TestBackupWhileOpen(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for i := range 30 {
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("e", i), "A", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.InTx(ctx, func(tx *Tx) error { return tx.FinishEnvelope(ctx, "e3", "p3", "v1") }); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "instance-id"), []byte("abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetEnvelope(ctx, "e29"); err != nil { // every envelope copied into the log
		t.Fatal(err)
	}

	to := filepath.Join(t.TempDir(), "backup")
	files, err := Backup(ctx, dir, to)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range files {
		if f.Bytes <= 0 {
			t.Errorf("%s: %d bytes", f.Name, f.Bytes)
		}
		names = append(names, f.Name)
	}
	if got := strings.Join(names, " "); got != "intake.db hiegw.db instance-id" {
		t.Fatalf("backup wrote %s", got)
	}
	if _, err := Backup(ctx, dir, to); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("a second backup into the same directory: %v", err)
	}
	if _, err := Backup(ctx, t.TempDir(), filepath.Join(t.TempDir(), "x")); err == nil || !strings.Contains(err.Error(), "no embedded store") {
		t.Fatalf("a backup of a directory without a store: %v", err)
	}

	// Restored: the backup's files in an empty data directory.
	restored, err := Open(ctx, Options{DataDir: to})
	if err != nil {
		t.Fatal(err)
	}
	defer restored.Close()
	counts, err := restored.CountEnvelopes(ctx)
	if err != nil || counts["received"] != 29 || counts["processed"] != 1 {
		t.Fatalf("restored: %v %v, want 29 received and 1 processed", counts, err)
	}
	// New envelopes of the restored store survive a crash (its journal is
	// new; the position the log recorded is the live store's).
	holdIngest(restored, true)
	if _, err := restored.InsertEnvelopes(ctx, []*Envelope{env("after", "A", "100")}); err != nil {
		t.Fatal(err)
	}
	re := openCrashImage(t, to, Options{})
	if _, err := re.GetEnvelope(ctx, "after"); err != nil {
		t.Fatalf("an envelope taken after the restore, after a crash: %v", err)
	}
}

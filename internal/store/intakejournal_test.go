package store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
)

// copyDir copies a data directory file by file: with the store still open
// this is what a crash would leave on disk, as far as the files' contents
// go.
func copyDir(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.Walk(from, func(p string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if info.IsDir() {
			return os.MkdirAll(dst, 0o700)
		}
		in, err := os.Open(p)
		if err != nil {
			return err
		}
		defer in.Close()
		out, err := os.Create(dst)
		if err != nil {
			return err
		}
		if _, err := io.Copy(out, in); err != nil {
			return err
		}
		return out.Close()
	})
	if err != nil {
		t.Fatal(err)
	}
}

// openCrashImage opens, as the next start after a crash would, a copy of
// the data directory dir of a store still open; it is closed when the test
// ends.
func openCrashImage(t *testing.T, dir string, o Options) *DB {
	t.Helper()
	o.DataDir = t.TempDir()
	copyDir(t, dir, o.DataDir)
	db, err := Open(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func holdIngest(db *DB, hold bool) {
	db.ij.mu.Lock()
	db.ij.held = hold
	db.ij.mu.Unlock()
}

// TestJournalCrashRecovery: envelopes acknowledged but not yet copied into
// the log survive a crash: the next start copies them, once, and answers
// their duplicates with the first reply.
func TestJournalCrashRecovery(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	// Some envelopes reach the log, the rest stay in the journal only.
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("a1", "A", "1"), env("a2", "A", "2")}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetEnvelope(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	holdIngest(db, true)
	var journalOnly []*Envelope
	for i := 3; i <= 40; i++ {
		e := env(fmt.Sprint("a", i), "A", fmt.Sprint(i))
		if i%7 == 0 {
			e.ACK = nil // stays NULL
		}
		journalOnly = append(journalOnly, e)
	}
	if _, err := db.InsertEnvelopes(ctx, journalOnly[:20]); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertEnvelopes(ctx, journalOnly[20:]); err != nil {
		t.Fatal(err)
	}
	// A retransmission of a journal-only envelope is a duplicate already.
	res, err := db.InsertEnvelopes(ctx, []*Envelope{env("again", "A", "5")})
	if err != nil || !res[0].Duplicate || res[0].ID != "a5" {
		t.Fatalf("duplicate of a journalled envelope: %+v %v", res, err)
	}
	if n := db.JournalBacklog(); n != 38 {
		t.Fatalf("journal backlog %d, want 38", n)
	}
	var inLog int
	if err := db.log.Get(&inLog, `SELECT COUNT(*) FROM envelopes`); err != nil || inLog != 2 {
		t.Fatalf("log holds %d envelopes before the crash, want 2 (%v)", inLog, err)
	}

	crashed := t.TempDir()
	copyDir(t, dir, crashed)
	var logged bytes.Buffer
	re, err := Open(ctx, Options{DataDir: crashed, Logger: slog.New(slog.NewJSONHandler(&logged, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer re.Close()
	// The recovery is told on the logger given, in its format.
	if out := logged.String(); !strings.Contains(out, `"msg":"intake journal recovered","envelopes":38`) {
		t.Errorf("recovery logged %q", out)
	}
	counts, err := re.CountEnvelopes(ctx)
	if err != nil || counts["received"] != 40 {
		t.Fatalf("after recovery: %v %v, want 40 received", counts, err)
	}
	for _, want := range journalOnly {
		got, err := re.GetEnvelope(ctx, want.ID)
		if err != nil {
			t.Fatalf("%s after recovery: %v", want.ID, err)
		}
		if got.Sender != want.Sender || got.DedupKey != want.DedupKey || !bytes.Equal(got.Raw, want.Raw) ||
			!reflect.DeepEqual(got.ACK, want.ACK) || !got.ReceivedAt.Equal(want.ReceivedAt.Truncate(time.Microsecond)) && !got.ReceivedAt.Equal(want.ReceivedAt) {
			t.Fatalf("%s after recovery: %+v, want %+v", want.ID, got, want)
		}
	}
	res, err = re.InsertEnvelopes(ctx, []*Envelope{env("late", "A", "33"), env("new", "A", "41")})
	if err != nil || !res[0].Duplicate || res[0].ID != "a33" || res[1].Duplicate {
		t.Fatalf("after recovery: %+v %v", res, err)
	}
	segs, _ := filepath.Glob(filepath.Join(journalDir(crashed), "*.journal"))
	if len(segs) != 1 {
		t.Fatalf("after recovery the journal holds %d segments, want 1 (fresh)", len(segs))
	}
	// Recovering the same crash image a second time must not add anything.
	re.Close()
	again, err := Open(ctx, Options{DataDir: crashed})
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if counts, err := again.CountEnvelopes(ctx); err != nil || counts["received"] != 41 {
		t.Fatalf("after a second start: %v %v, want 41", counts, err)
	}
}

// TestDuplicatesInOneBatch: a message and its retransmission in one group
// commit are stored once, and an envelope without an ACK keeps NULL, on
// both backends.
func TestDuplicatesInOneBatch(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		noACK := env("x4", "C", "1")
		noACK.ACK = nil
		res, err := db.InsertEnvelopes(ctx, []*Envelope{env("x1", "A", "1"), env("x2", "B", "1"), env("x3", "A", "1"), noACK})
		if err != nil {
			t.Fatal(err)
		}
		if res[0].Duplicate || res[1].Duplicate || !res[2].Duplicate || res[2].ID != "x1" || string(res[2].ACK) != "ACK-x1" || res[3].Duplicate {
			t.Fatalf("results %+v", res)
		}
		counts, err := db.CountEnvelopes(ctx)
		if err != nil || counts["received"] != 3 {
			t.Fatalf("%v %v", counts, err)
		}
		got, err := db.GetEnvelope(ctx, "x4")
		if err != nil || got.ACK != nil || string(got.Raw) != "MSH|x4" {
			t.Fatalf("envelope without ACK: %+v %v", got, err)
		}
		// Order of receipt is kept.
		list, err := db.ListEnvelopes(ctx, EnvelopeFilter{})
		if err != nil || len(list) != 3 || list[0].ID != "x4" || list[2].ID != "x1" {
			t.Fatalf("listed %+v %v", list, err)
		}
	})
}

// TestJournalCleanShutdown: a clean close leaves every envelope in the log
// and an empty journal behind.
func TestJournalCleanShutdown(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	holdIngest(db, true)
	for i := 0; i < 10; i++ {
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("c", i), "C", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("late", "C", "late")}); err == nil {
		t.Fatal("insert after close succeeded")
	}
	log, err := openSQLite(filepath.Join(dir, "intake.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	var n int
	if err := log.Get(&n, `SELECT COUNT(*) FROM envelopes`); err != nil || n != 10 {
		t.Fatalf("log holds %d after a clean close (%v), want 10", n, err)
	}
	j, err := os.ReadDir(journalDir(dir))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range j {
		info, _ := f.Info()
		b, _ := os.ReadFile(filepath.Join(journalDir(dir), f.Name()))
		if info.Size() > 0 && bytes.Count(b[16:], []byte{0}) != len(b)-16 {
			t.Fatalf("journal segment %s still holds records after a clean close", f.Name())
		}
	}
}

func TestEnvelopeRecordRoundTrip(t *testing.T) {
	e := env("id1", "S", "k")
	e.Peer, e.Filename, e.Error = "10.0.0.1:5000", "f.hl7", "bad PID-7"
	e.ACK = nil
	e.Raw = []byte{}
	got, err := decodeEnvelope(encodeEnvelope(e))
	if err != nil {
		t.Fatal(err)
	}
	if got.ACK != nil || got.Raw == nil || !got.ReceivedAt.Equal(e.ReceivedAt) {
		t.Fatalf("nil/empty/time not kept: %+v", got)
	}
	got.ReceivedAt, e.ReceivedAt = time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, e) {
		t.Fatalf("round trip: %+v, want %+v", got, e)
	}
	b := encodeEnvelope(e)
	for i := 0; i < len(b); i++ {
		if _, err := decodeEnvelope(b[:i]); err == nil {
			t.Fatalf("a record cut to %d of %d bytes decoded", i, len(b))
		}
	}
}

func FuzzDecodeEnvelope(f *testing.F) {
	f.Add(encodeEnvelope(env("id", "S", "1")))
	f.Add([]byte{1, 0xff, 0xff, 0xff, 0xff, 0x0f})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		again, err := decodeEnvelope(encodeEnvelope(e))
		if err != nil || !reflect.DeepEqual(again, e) {
			t.Fatalf("re-encoding %+v gave %+v, %v", e, again, err)
		}
	})
}

func TestDedupFilter(t *testing.T) {
	f := newDedupFilter(0)
	for i := 0; i < 50000; i++ {
		f.add(dedupKey{"S", fmt.Sprint("msh10:", i)})
	}
	fp := 0
	for i := 0; i < 50000; i++ {
		if !f.mayContain(dedupKey{"S", fmt.Sprint("msh10:", i)}) {
			t.Fatalf("key %d added but not found", i)
		}
		if f.mayContain(dedupKey{"T", fmt.Sprint("msh10:", i)}) {
			fp++
		}
	}
	if fp > 500 {
		t.Fatalf("%d false positives in 50,000", fp)
	}
	if big := newDedupFilter(10_000_000); big.mask+1 < 200_000_000 {
		t.Fatalf("a filter for 10 M keys has %d bits", big.mask+1)
	}
}

// TestDuplicateAfterRestart: once the filter is built from the log, a new
// message costs no lookup and an old one is still recognised.
func TestDuplicateAfterRestart(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 100; i++ {
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("r", i), "R", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	db.Close()
	db, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	<-db.ij.filled
	if !db.ij.filter.ready.Load() {
		t.Fatal("filter not ready")
	}
	before := db.ij.lookups.Load()
	for i := 100; i < 150; i++ {
		res, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("r", i), "R", fmt.Sprint(i))})
		if err != nil || res[0].Duplicate {
			t.Fatalf("new envelope %d: %+v %v", i, res, err)
		}
	}
	if n := db.ij.lookups.Load() - before; n > 3 {
		t.Fatalf("%d of 50 new envelopes were looked up in the log", n)
	}
	for _, i := range []int{0, 57, 99, 120} {
		res, err := db.InsertEnvelopes(ctx, []*Envelope{env("again", "R", fmt.Sprint(i))})
		if err != nil || !res[0].Duplicate || res[0].ID != fmt.Sprint("r", i) {
			t.Fatalf("resent %d: %+v %v", i, res, err)
		}
	}
}

// TestJournalBacklogIsBounded: while the copier is held, receipt takes
// envelopes up to the backlog bound, then waits, and goes on once the
// copier catches up.
func TestJournalBacklogIsBounded(t *testing.T) {
	ctx := context.Background()
	db, err := Open(ctx, Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.ij.mu.Lock()
	db.ij.maxBacklog = 5
	db.ij.mu.Unlock()
	holdIngest(db, true)
	for i := 0; i < 5; i++ {
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("b", i), "B", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		_, err := db.InsertEnvelopes(ctx, []*Envelope{env("b5", "B", "5")})
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the sixth envelope went in past the bound: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	holdIngest(db, false)
	db.ij.urgent <- struct{}{}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("receipt did not go on once the copier caught up")
	}
	if counts, err := db.CountEnvelopes(ctx); err != nil || counts["received"] != 6 {
		t.Fatalf("%v %v", counts, err)
	}
}

// TestNoIntakeBesideAGateway: a tool opens the store beside a running
// gateway without its journal; it cannot receive.
func TestNoIntakeBesideAGateway(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	gw, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if _, err := Open(ctx, Options{DataDir: dir}); err == nil {
		t.Fatal("a second store with intake opened beside the gateway")
	}
	tool, err := Open(ctx, Options{DataDir: dir, NoIntake: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tool.Close()
	if _, err := tool.InsertEnvelopes(ctx, []*Envelope{env("t1", "T", "1")}); err == nil {
		t.Fatal("a NoIntake store received an envelope")
	}
	if _, err := gw.InsertEnvelopes(ctx, []*Envelope{env("g1", "G", "1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := tool.CountEnvelopes(ctx); err != nil {
		t.Fatal(err)
	}
}

// TestJournalCopiesWithoutReaders: with nobody reading the log, the copier
// still copies everything that arrives, also what arrives while it copies
// (it gathers again instead of copying the remainder at once, and must not
// forget it).
func TestJournalCopiesWithoutReaders(t *testing.T) {
	ctx := context.Background()
	db := TestEmbedded(t)
	const senders, each = 4, 150
	errs := make(chan error, senders)
	for s := range senders {
		go func() {
			for i := range each {
				id := fmt.Sprintf("s%d-%d", s, i)
				if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(id, fmt.Sprint("S", s), fmt.Sprint(i))}); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range senders {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	// No read hurries the copier: wait for it on its own.
	for deadline := time.Now().Add(20 * time.Second); db.JournalBacklog() > 0; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d envelopes still not copied into the log", db.JournalBacklog())
		}
	}
	var inLog int
	if err := db.log.Get(&inLog, `SELECT COUNT(*) FROM envelopes`); err != nil || inLog != senders*each {
		t.Fatalf("log holds %d envelopes, want %d (%v)", inLog, senders*each, err)
	}
}

// TestMarkProcessedOfAnEnvelopeNotCopiedYet: processed marks do not wait for
// the copier, so a mark that finds its envelope missing from the log waits
// for the copy and is written then, not lost.
func TestMarkProcessedOfAnEnvelopeNotCopiedYet(t *testing.T) {
	ctx := context.Background()
	db := TestEmbedded(t)
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("in-log", "A", "1")}); err != nil {
		t.Fatal(err)
	}
	if _, err := db.GetEnvelope(ctx, "in-log"); err != nil {
		t.Fatal(err)
	}
	holdIngest(db, true)
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("journal-only", "A", "2")}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Truncate(time.Second)
	done := make(chan error, 1)
	go func() {
		done <- db.markProcessed(ctx, []finished{
			{EnvelopeID: "in-log", PatientID: "p1", MappingVersion: "v1", ProcessedAt: at},
			{EnvelopeID: "journal-only", PatientID: "p2", MappingVersion: "v1", ProcessedAt: at},
		})
	}()
	time.Sleep(50 * time.Millisecond)
	holdIngest(db, false)
	db.ij.kick <- struct{}{}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, patient := range map[string]string{"in-log": "p1", "journal-only": "p2"} {
		e, err := db.GetEnvelope(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if e.Status != "processed" || e.PatientID != patient || e.MappingVersion != "v1" {
			t.Errorf("%s: status %q patient %q mapping %q, want processed for %s", id, e.Status, e.PatientID, e.MappingVersion, patient)
		}
	}
}

// TestCopyPanicIsRetried: a panic while copying envelopes from the journal
// into the log (here from a broken prepared statement, standing for a
// defect) fails that copy like a database error: Ping reports it, receipt
// goes on, and the copy succeeds once the defect is gone. Without the guard
// the panic ends the test binary.
func TestCopyPanicIsRetried(t *testing.T) {
	ctx := context.Background()
	db := TestEmbedded(t)
	ins := &db.logStmts.insert
	ins.mu.Lock()
	if ins.st != nil {
		ins.st.Close()
	}
	ins.st = &sqlx.Stmt{} // no statement inside: using it panics
	ins.mu.Unlock()
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("p1", "S", "1")}); err != nil {
		t.Fatalf("receipt while the copy panics: %v", err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		err := db.Ping(ctx)
		if err != nil && strings.Contains(err.Error(), "copy into the log panicked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("Ping after the copy panicked: %v", err)
		}
	}
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("p2", "S", "2")}); err != nil {
		t.Fatalf("receipt after the copy panicked: %v", err)
	}
	ins.mu.Lock()
	ins.st = nil // prepared again at the next copy
	ins.mu.Unlock()
	for deadline := time.Now().Add(20 * time.Second); db.JournalBacklog() > 0 || db.Ping(ctx) != nil; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%d envelopes not copied after the defect was gone (%v)", db.JournalBacklog(), db.Ping(ctx))
		}
	}
	var inLog int
	if err := db.log.Get(&inLog, `SELECT COUNT(*) FROM envelopes WHERE id IN ('p1', 'p2')`); err != nil || inLog != 2 {
		t.Fatalf("log holds %d of the 2 envelopes (%v)", inLog, err)
	}
}

// TestJournalStartsAfterItsDirectoryWasLost: a message log whose recorded
// journal position lies in a later segment than the journal holds (the
// journal directory was lost or emptied by hand, or the log restored from
// a backup) must not make the next recovery skip what the new journal
// holds: envelopes acknowledged from the new journal and not yet copied
// survive a crash.
func TestJournalStartsAfterItsDirectoryWasLost(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	db, err := Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	// A few restarts move the journal on to a later segment number.
	for i := range 3 {
		if _, err := db.InsertEnvelopes(ctx, []*Envelope{env(fmt.Sprint("old", i), "A", fmt.Sprint(i))}); err != nil {
			t.Fatal(err)
		}
		if err := db.Close(); err != nil {
			t.Fatal(err)
		}
		if db, err = Open(ctx, Options{DataDir: dir}); err != nil {
			t.Fatal(err)
		}
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(filepath.Join(dir, "journal")); err != nil {
		t.Fatal(err)
	}
	db, err = Open(ctx, Options{DataDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	holdIngest(db, true)
	if _, err := db.InsertEnvelopes(ctx, []*Envelope{env("new1", "A", "100"), env("new2", "A", "101")}); err != nil {
		t.Fatal(err)
	}
	re := openCrashImage(t, dir, Options{})
	for _, id := range []string{"old0", "old2", "new1", "new2"} {
		if _, err := re.GetEnvelope(ctx, id); err != nil {
			t.Errorf("%s after the crash: %v", id, err)
		}
	}
}

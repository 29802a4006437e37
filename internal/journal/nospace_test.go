package journal

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestWriteWithoutSpace: a batch refused for want of space, after part of
// it reached the file, is reported failed and leaves the journal usable;
// the next batch takes its place, and a replay finds neither a whole record
// of the failed batch behind it nor a tear.
func TestWriteWithoutSpace(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte("a"), 100)
	if _, err := j.Append(first); err != nil {
		t.Fatal(err)
	}
	// Three records of 100 bytes; the disk takes the first two and part of
	// the third.
	failed := [][]byte{bytes.Repeat([]byte("b"), 100), bytes.Repeat([]byte("c"), 100), bytes.Repeat([]byte("d"), 100)}
	real := j.writeAt
	refuse := true
	j.writeAt = func(f *os.File, b []byte, off int64) (int, error) {
		if !refuse {
			return real(f, b, off)
		}
		refuse = false
		n, err := real(f, b[:2*(recHeader+100)+50], off)
		if err != nil {
			return n, err
		}
		return n, &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
	}
	_, err = j.Write(failed...)
	if err == nil || !NoSpace(err) || !strings.Contains(err.Error(), j.path(1)) {
		t.Fatalf("write on a full disk: %v, want ENOSPC naming the segment", err)
	}
	if j.Err() != nil {
		t.Fatalf("the journal stopped after a write refused for want of space: %v", j.Err())
	}
	// The same length as the failed batch's first record: without the
	// zeros, its second record would follow as if appended.
	again := bytes.Repeat([]byte("e"), 100)
	if _, err := j.Append(again); err != nil {
		t.Fatalf("append once space is back: %v", err)
	}
	j = reopen(t, j, dir)
	recs, _ := replayAll(t, j, Pos{})
	if len(recs) != 2 || !bytes.Equal(recs[0], first) || !bytes.Equal(recs[1], again) {
		t.Fatalf("replayed %d records (%q), want the first and the one after the failure", len(recs), recs)
	}
}

// TestFailedZeroingSyncStopsTheJournal: the zeroing goroutine's fdatasync
// covers records too, and the kernel reports a lost page to one sync only,
// so its failure stops the journal like a failed sync of records.
func TestFailedZeroingSyncStopsTheJournal(t *testing.T) {
	defer func(f func(*os.File) error) { zeroSync = f }(zeroSync)
	zeroSync = func(*os.File) error { return syscall.EIO }
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	deadline := time.Now().Add(10 * time.Second)
	for j.Err() == nil && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if !errors.Is(j.Err(), syscall.EIO) {
		t.Fatalf("journal error after a failed zeroing sync: %v", j.Err())
	}
	if _, err := j.Append([]byte("r")); !errors.Is(err, syscall.EIO) {
		t.Fatalf("append after a failed zeroing sync: %v", err)
	}
}

// reopen closes j and opens the journal in dir again, closed when the test
// ends.
func reopen(t *testing.T, j *Journal, dir string) *Journal {
	t.Helper()
	if err := j.Close(); err != nil {
		t.Fatal(err)
	}
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j
}

// TestNewSegmentWithoutSpace: a batch that needs a new segment which cannot
// be made for want of space is refused and the journal stays usable; the
// next batch makes the segment, and a replay finds every record appended.
func TestNewSegmentWithoutSpace(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	first := bytes.Repeat([]byte("a"), 150)
	if _, err := j.Append(first); err != nil {
		t.Fatal(err)
	}
	real := j.openSegment
	j.openSegment = func(name string) (*os.File, error) {
		return nil, &os.PathError{Op: "open", Path: name, Err: syscall.ENOSPC}
	}
	second := bytes.Repeat([]byte("b"), 150) // does not fit after the first
	if _, err := j.Append(second); !NoSpace(err) {
		t.Fatalf("a batch needing a segment on a full disk: %v, want ENOSPC", err)
	}
	if j.Err() != nil {
		t.Fatalf("the journal stopped: %v", j.Err())
	}
	j.openSegment = real
	if _, err := j.Append(second); err != nil {
		t.Fatalf("once there is space: %v", err)
	}
	j = reopen(t, j, dir)
	recs, _ := replayAll(t, j, Pos{})
	if len(recs) != 2 || !bytes.Equal(recs[0], first) || !bytes.Equal(recs[1], second) {
		t.Fatalf("replayed %d records, want the two appended", len(recs))
	}
}

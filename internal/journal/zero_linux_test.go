package journal

import (
	"bytes"
	"fmt"
	"os"
	"syscall"
	"testing"
	"time"
)

// allocated is how many bytes of path's blocks are allocated on disk.
func allocated(t *testing.T, path string) int64 {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Sys().(*syscall.Stat_t).Blocks * 512
}

// TestZeroAhead: the segment's blocks are written ahead of the last record
// (so appends fill no holes), one piece at first and further as records
// come, and records written past several zeroed pieces, while zeroing goes
// on, all come back from a replay.
func TestZeroAhead(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	seg := j.path(j.seg)
	deadline := time.Now().Add(10 * time.Second)
	for allocated(t, seg) < zeroChunk {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes allocated after 10 s, want %d ahead of the header", allocated(t, seg), zeroChunk)
		}
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	if a := allocated(t, seg); a > 2*zeroChunk {
		t.Fatalf("%d bytes allocated before any record: a journal opened for a few records writes megabytes of zeros", a)
	}
	rec := func(i int) []byte { return append([]byte(fmt.Sprintf("%06d ", i)), bytes.Repeat([]byte{'r'}, 4000)...) }
	const n = 4000 // about 16 MB: past the first zeroed stretch
	for i := 0; i < n; i += 10 {
		batch := make([][]byte, 10)
		for k := range batch {
			batch[k] = rec(i + k)
		}
		if _, err := j.Append(batch...); err != nil {
			t.Fatal(err)
		}
	}
	end := j.End()
	for allocated(t, seg) < end.Off+zeroAhead/2 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes allocated with records up to %d: zeroing did not keep ahead", allocated(t, seg), end.Off)
		}
		time.Sleep(5 * time.Millisecond)
	}
	j = reopen(t, j, dir)
	if j.End() != end {
		t.Fatalf("reopened at %v, want %v: zeros read as records?", j.End(), end)
	}
	recs, _ := replayAll(t, j, Pos{})
	if len(recs) != n {
		t.Fatalf("%d records, want %d", len(recs), n)
	}
	for i, r := range recs {
		if !bytes.Equal(r, rec(i)) {
			t.Fatalf("record %d is %.20q", i, r)
		}
	}
}

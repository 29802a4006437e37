package journal

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func rec(i int) []byte { return []byte(fmt.Sprintf("record %04d %s", i, strings.Repeat("x", i%37))) }

func replayAll(t *testing.T, j *Journal, after Pos) ([][]byte, []Pos) {
	t.Helper()
	var recs [][]byte
	var ends []Pos
	err := j.Replay(after, func(end Pos, r []byte) error {
		recs = append(recs, bytes.Clone(r))
		ends = append(ends, end)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return recs, ends
}

func TestAppendReplayAcrossSegments(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	var want [][]byte
	var last Pos
	for i := 0; i < 60; i += 3 {
		batch := [][]byte{rec(i), rec(i + 1), rec(i + 2)}
		p, err := j.Append(batch...)
		if err != nil {
			t.Fatal(err)
		}
		if !last.Less(p) {
			t.Fatalf("position %v after %v", p, last)
		}
		last = p
		want = append(want, batch...)
	}
	if j.End() != last {
		t.Fatalf("End %v, last append %v", j.End(), last)
	}
	segs, _ := j.segments()
	if len(segs) < 3 {
		t.Fatalf("%d segments, want several with a 512-byte segment size", len(segs))
	}
	got, ends := replayAll(t, j, Pos{})
	if len(got) != len(want) {
		t.Fatalf("replayed %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
	if ends[len(ends)-1] != last {
		t.Fatalf("last replayed end %v, want %v", ends[len(ends)-1], last)
	}
	// From the middle: exactly the records after that position.
	mid, _ := replayAll(t, j, ends[29])
	if len(mid) != 30 || !bytes.Equal(mid[0], want[30]) {
		t.Fatalf("replay after record 29: %d records starting %q", len(mid), mid[0])
	}
	j.Close()

	// Reopened, appends continue after the last record.
	j, err = Open(dir, Options{SegmentSize: 512})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.End() != last {
		t.Fatalf("reopened End %v, want %v", j.End(), last)
	}
	if _, err := j.Append([]byte("after reopen")); err != nil {
		t.Fatal(err)
	}
	got, _ = replayAll(t, j, Pos{})
	if len(got) != 61 || string(got[60]) != "after reopen" {
		t.Fatalf("after reopen: %d records, last %q", len(got), got[len(got)-1])
	}
}

func TestReleaseAndReset(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 256})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	var ends []Pos
	for i := 0; i < 30; i++ {
		p, err := j.Append(rec(i))
		if err != nil {
			t.Fatal(err)
		}
		ends = append(ends, p)
	}
	before, _ := j.segments()
	if err := j.Release(ends[15]); err != nil {
		t.Fatal(err)
	}
	after, _ := j.segments()
	if len(after) >= len(before) || after[0] != ends[15].Seg {
		t.Fatalf("segments %v released up to %v: %v", before, ends[15], after)
	}
	got, _ := replayAll(t, j, ends[15])
	if len(got) != 14 {
		t.Fatalf("after release, %d records follow record 15, want 14", len(got))
	}
	if err := j.Reset(); err != nil {
		t.Fatal(err)
	}
	segs, _ := j.segments()
	if len(segs) != 1 || segs[0] <= after[len(after)-1] {
		t.Fatalf("after reset: segments %v", segs)
	}
	if got, _ := replayAll(t, j, Pos{}); len(got) != 0 {
		t.Fatalf("after reset %d records remain", len(got))
	}
}

// TestTornTail writes a batch whose first record is torn and whose second
// reached the disk whole: Open keeps only what precedes the tear, and the
// stale whole record never reappears behind later appends of the same size.
func TestTornTail(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	end, err := j.Append([]byte("kept one"), []byte("kept two"))
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	frame := func(p []byte) []byte {
		b := binary.BigEndian.AppendUint32(nil, uint32(len(p)))
		b = binary.BigEndian.AppendUint32(b, crcOf(p))
		return append(b, p...)
	}
	torn := frame([]byte("torn record"))
	torn[len(torn)-1] ^= 0xff // checksum no longer matches
	stale := frame([]byte("stale whole"))
	f, err := os.OpenFile(filepath.Join(dir, fmt.Sprintf("%016d.journal", end.Seg)), os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(append(torn, stale...), end.Off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	j, err = Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	if j.End() != end {
		t.Fatalf("after repair End %v, want %v", j.End(), end)
	}
	if _, err := j.Append([]byte("new one rec")); err != nil { // as long as the torn one
		t.Fatal(err)
	}
	got, _ := replayAll(t, j, Pos{})
	var names []string
	for _, g := range got {
		names = append(names, string(g))
	}
	if strings.Join(names, ",") != "kept one,kept two,new one rec" {
		t.Fatalf("records after repair: %q", names)
	}
}

func TestDamageInOlderSegmentIsAnError(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{SegmentSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 12; i++ {
		if _, err := j.Append(rec(i)); err != nil {
			t.Fatal(err)
		}
	}
	j.Close()
	first := filepath.Join(dir, fmt.Sprintf("%016d.journal", 1))
	b, err := os.ReadFile(first)
	if err != nil {
		t.Fatal(err)
	}
	b[headerSize+recHeader] ^= 0x01
	if err := os.WriteFile(first, b, 0o600); err != nil {
		t.Fatal(err)
	}
	j, err = Open(dir, Options{SegmentSize: 128})
	if err != nil {
		t.Fatal(err)
	}
	defer j.Close()
	err = j.Replay(Pos{}, func(Pos, []byte) error { return nil })
	if err == nil || !strings.Contains(err.Error(), first) || !strings.Contains(err.Error(), "offset 16") {
		t.Fatalf("replay over a damaged older segment: %v", err)
	}
}

func TestFailedWriteStopsTheJournal(t *testing.T) {
	j, err := Open(t.TempDir(), Options{})
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.stopZeroing() // as Close does before closing the file
	j.f.Close()     // the next write fails
	j.mu.Unlock()
	_, err1 := j.Append([]byte("a"))
	_, err2 := j.Append([]byte("b"))
	if err1 == nil || err2 == nil || err1.Error() != err2.Error() || j.Err() == nil {
		t.Fatalf("appends after a failed write: %v / %v", err1, err2)
	}
	if _, err := j.Append(); err == nil {
		t.Fatal("an empty append on a stopped journal succeeded")
	}
}

func TestRefusals(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, Options{SegmentSize: 8}); err == nil {
		t.Fatal("an 8-byte segment size was accepted")
	}
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append([]byte{}); err == nil {
		t.Fatal("an empty record was accepted")
	}
	j.Close()
	if err := os.WriteFile(filepath.Join(dir, "notes.journal"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "notes.journal") {
		t.Fatalf("a foreign file in the journal: %v", err)
	}
}

func crcOf(p []byte) uint32 { return crc32Checksum(p) }

// FuzzOpen treats arbitrary bytes as the records of the newest segment:
// Open and Replay must not panic, every record they return must be whole,
// and an append after recovery must come back.
func FuzzOpen(f *testing.F) {
	good := binary.BigEndian.AppendUint32(nil, 3)
	good = binary.BigEndian.AppendUint32(good, crc32Checksum([]byte("abc")))
	good = append(good, "abc"...)
	f.Add(good)
	f.Add(append(good, 0, 0, 0, 9, 1, 2))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		hdr := make([]byte, headerSize)
		copy(hdr, magic)
		binary.BigEndian.PutUint64(hdr[8:], 1)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("%016d.journal", 1)), append(hdr, body...), 0o600); err != nil {
			t.Fatal(err)
		}
		j, err := Open(dir, Options{SegmentSize: 4096, NoSync: true})
		if err != nil {
			t.Fatal(err)
		}
		defer j.Close()
		n := 0
		if err := j.Replay(Pos{}, func(_ Pos, r []byte) error { n++; return nil }); err != nil {
			t.Fatal(err)
		}
		if _, err := j.Append([]byte("marker")); err != nil {
			t.Fatal(err)
		}
		var last []byte
		m := 0
		if err := j.Replay(Pos{}, func(_ Pos, r []byte) error { m++; last = bytes.Clone(r); return nil }); err != nil {
			t.Fatal(err)
		}
		if m != n+1 || string(last) != "marker" {
			t.Fatalf("%d records before the append, %d after, last %q", n, m, last)
		}
	})
}

func TestOneProcessPerDirectory(t *testing.T) {
	dir := t.TempDir()
	j, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(dir, Options{}); err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("a second journal on the same directory: %v", err)
	}
	j.Close()
	j2, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("after close: %v", err)
	}
	j2.Close()
}

// Package journal is an append-only log of records on disk, written in
// batches with one fdatasync each. The embedded store keeps what intake
// receives here first: appending a batch and syncing it costs one small
// write and one fdatasync, where a durable SQLite commit of the same rows
// writes several whole pages and their checksums. The store then copies the
// records into its database at leisure and releases the segments it no
// longer needs.
//
// On disk a journal is a directory of segment files named by a 16-digit
// sequence number with the suffix ".journal". A segment starts with a
// 16-byte header (the magic "HIEGWJ1\n" and the segment's number, big
// endian) followed by records, each a 4-byte big-endian payload length, a
// 4-byte CRC-32C of the payload and the payload. A new segment is created at
// its full nominal size as a sparse file, so that an append never changes
// the file's size and fdatasync has no metadata to write; the records end
// at the first zero length.
//
// Appending is two steps, Write and Sync, so that several batches can be
// on their way to the disk at once: Write places a batch after the last one
// (in the page cache), Sync waits until every record up to a position is
// durable, starting an fdatasync when none under way covers it. Up to
// Options.MaxSyncs fdatasyncs run at the same time (a disk that takes
// 0.2 ms per flush does about half as many again with two in flight as with
// one). Each covers what was written before it started, and a position
// counts as durable only once every sync started before it has succeeded
// too: after a failed sync, pages it was writing may be lost even when a
// later sync reports success, and a record behind a lost one would be
// unreadable.
//
// A fresh segment is sparse, and writing into a hole allocates blocks: the
// fdatasync after it must then commit the file system's journal, and on
// ext4 (data=ordered) that commit first writes out the data other files
// (the store's SQLite files) have pending, so a sync that takes 0.2 ms alone
// took 0.35-0.5 ms while the store wrote. A background goroutine therefore
// writes zeros a few megabytes ahead of the last record and syncs them, so
// that appends overwrite blocks already allocated and their syncs flush data
// only. What a reader sees is unchanged: zeros after the last record.
//
// A write refused for want of space (ENOSPC, EDQUOT) does not stop the
// journal: whatever part of the batch reached the file is overwritten with
// zeros, the batch is reported failed, and the next Write goes to the same
// place, so that appends go on as soon as space is freed. Any other failed
// write, and every failed sync, stops the journal for good: after a failed
// fdatasync the kernel may have dropped pages it could not write and a
// later sync would not say so. (A crash in the moment between a partial
// write and the next sync may leave a record of the failed batch on disk;
// it is then a message answered "not stored" that recovery finds, and its
// sender's retry is answered as a duplicate.)
//
// Only the tail of the newest segment can be torn by a crash (a batch is
// acknowledged only after its Sync, and a segment is synced whole before
// the next one starts). Open cuts such a tail off, and
// zeroes what lay after it, so that no stale bytes can be mistaken for
// records later. A damaged record anywhere else is corruption and is
// reported with the file and offset.
package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	magic      = "HIEGWJ1\n"
	headerSize = 16
	recHeader  = 8
	suffix     = ".journal"
	// DefaultSegmentSize is the nominal size of a segment.
	DefaultSegmentSize = 64 << 20
	// RecordOverhead is what a record takes on disk besides its payload.
	RecordOverhead = recHeader
	// MaxRecord bounds one record's payload.
	MaxRecord = 1 << 30
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// Pos is a position in the journal: the segment and the byte offset just
// after a record. The zero Pos lies before every record.
type Pos struct {
	Seg uint64
	Off int64
}

// Less reports whether p comes before q.
func (p Pos) Less(q Pos) bool { return p.Seg < q.Seg || p.Seg == q.Seg && p.Off < q.Off }

func (p Pos) String() string { return fmt.Sprintf("%d:%d", p.Seg, p.Off) }

// Options configure a journal.
type Options struct {
	// SegmentSize is the nominal segment size (DefaultSegmentSize when 0). A
	// batch that does not fit in the rest of a segment starts a new one; a
	// record larger than a segment gets a segment of its own.
	SegmentSize int64
	// NoSync skips fdatasync (for a store that does not promise durability
	// against power loss).
	NoSync bool
	// MaxSyncs bounds the fdatasyncs under way at the same time
	// (DefaultMaxSyncs when 0).
	MaxSyncs int
}

// DefaultMaxSyncs is how many fdatasyncs may run at once by default.
const DefaultMaxSyncs = 2

// Zeroing ahead of the last record: how far ahead at most, and in what
// pieces. The distance starts at one piece and grows to twice what was
// written since the journal opened or the segment began, so that a journal
// opened for a few records does not write megabytes of zeros.
const (
	zeroAhead = 8 << 20
	zeroChunk = 1 << 20
)

var zeros = make([]byte, zeroChunk)

// Journal is an open journal. Its methods may be called from several
// goroutines.
type Journal struct {
	dir string
	opt Options

	lock *os.File // held locked while the journal is open: one process per directory

	mu   sync.Mutex
	cond sync.Cond // on mu: broadcast when a sync ends
	f    *os.File  // current segment
	seg  uint64    // its number
	off  int64     // where the next record goes
	size int64     // its size on disk
	err  error     // sticky: after a failed sync (or write other than for space) nothing more is appended
	buf  []byte

	synced Pos         // every record up to here is durable
	syncs  []*syncCall // fdatasyncs under way, oldest first
	// syncFile is fdatasync; tests replace it to choose when and how
	// syncs end. writeAt is (*os.File).WriteAt for records and the zeros
	// over a failed batch; tests replace it to fail writes.
	syncFile func(*os.File) error
	writeAt  func(f *os.File, b []byte, off int64) (int, error)
	// openSegment creates a new segment's file; tests replace it to fail.
	openSegment func(name string) (*os.File, error)

	// Zeroing ahead (not with NoSync): the current segment's blocks are
	// written up to zeroed; [zeroFrom, zeroTo) is being zeroed now, and no
	// Write may touch it until it is done.
	zeroed, zeroFrom, zeroTo int64
	zeroBase                 int64 // where the segment's writing began (at open or roll)
	stopZero                 bool
	zeroDone                 chan struct{} // closed when the zeroing goroutine ends
	zeroWake                 chan struct{}
	// stopping, when set (tests), runs while stopZeroing waits without j.mu.
	stopping func()
}

// syncCall is one fdatasync under way; it covers every record up to target.
type syncCall struct {
	target Pos
	done   bool
}

// Open opens (or creates) the journal in dir, repairs a torn tail of the
// newest segment and positions appends after its last record.
func Open(dir string, opt Options) (*Journal, error) {
	if opt.SegmentSize <= 0 {
		opt.SegmentSize = DefaultSegmentSize
	}
	if opt.SegmentSize < headerSize+recHeader {
		return nil, fmt.Errorf("journal: segment size %d is too small", opt.SegmentSize)
	}
	if opt.MaxSyncs <= 0 {
		opt.MaxSyncs = DefaultMaxSyncs
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	lock, err := LockFile(filepath.Join(dir, "LOCK"))
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	j, err := open(dir, opt)
	if err != nil {
		lock.Close()
		return nil, err
	}
	j.lock = lock
	return j, nil
}

// open is Open once the directory is locked.
func open(dir string, opt Options) (*Journal, error) {
	j := &Journal{dir: dir, opt: opt, syncFile: fdatasync, writeAt: (*os.File).WriteAt, openSegment: func(name string) (*os.File, error) {
		return os.OpenFile(name, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
	}}
	j.cond.L = &j.mu
	segs, err := j.segments()
	if err != nil {
		return nil, err
	}
	if len(segs) == 0 {
		if err := j.create(1); err != nil {
			return nil, err
		}
		j.startZeroing()
		return j, nil
	}
	last := segs[len(segs)-1]
	f, err := os.OpenFile(j.path(last), os.O_RDWR, 0)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	end, torn, err := scanSegment(f, j.path(last), last, func(Pos, []byte) error { return nil }, 0)
	if err != nil {
		f.Close()
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("journal: %w", err)
	}
	size := max(st.Size(), opt.SegmentSize)
	if torn || st.Size() > end {
		// Cut everything after the last whole record and extend the file
		// again: the extension reads as zeros, so no stale record behind
		// the tear can come back to life.
		if err := f.Truncate(end); err == nil {
			err = f.Truncate(size)
		}
		if err == nil && !opt.NoSync {
			err = f.Sync()
		}
		if err != nil {
			f.Close()
			return nil, fmt.Errorf("journal: repair %s: %w", j.path(last), err)
		}
	}
	j.f, j.seg, j.off, j.size = f, last, end, size
	j.synced = Pos{last, end}
	j.zeroed, j.zeroBase = end, end
	j.startZeroing()
	return j, nil
}

// Dir is the journal's directory.
func (j *Journal) Dir() string { return j.dir }

// End is the position after the last record appended.
func (j *Journal) End() Pos {
	j.mu.Lock()
	defer j.mu.Unlock()
	return Pos{j.seg, j.off}
}

// Append writes recs after the last record, syncs them, and returns the
// position after the last one: Write, then Sync.
func (j *Journal) Append(recs ...[]byte) (Pos, error) {
	end, err := j.Write(recs...)
	if err != nil {
		return Pos{}, err
	}
	return end, j.Sync(end)
}

// Write places recs after the last record and returns the position after
// the last one; they are durable once Sync of that position returns nil.
// Batches are placed in the order of the calls. A batch refused for want of
// space leaves nothing behind and the journal usable (NoSpace reports such
// an error). After any other failed write, or a failed sync, the journal
// refuses every later Write and Sync with the same error: what reached the
// disk is unknown, so the process must restart and recover.
func (j *Journal) Write(recs ...[]byte) (Pos, error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := int64(0)
	for _, r := range recs {
		if len(r) == 0 || len(r) > MaxRecord {
			return Pos{}, fmt.Errorf("journal: record of %d bytes (must be 1 to %d)", len(r), MaxRecord)
		}
		n += recHeader + int64(len(r))
	}
	for {
		if j.err != nil {
			return Pos{}, j.err
		}
		if j.f == nil {
			return Pos{}, errors.New("journal: closed")
		}
		if n == 0 {
			return Pos{j.seg, j.off}, nil
		}
		if j.off > headerSize && j.off+n > j.opt.SegmentSize {
			// The batch starts a new segment. The current one is synced
			// whole first (recovery takes a torn tail only in the newest
			// segment), once the syncs and the zeroing under way on its file
			// have ended.
			if len(j.syncs) > 0 || j.zeroFrom < j.zeroTo {
				j.cond.Wait()
				continue
			}
			if err := j.syncCurrent(); err != nil {
				return Pos{}, err
			}
			if err := j.roll(); err != nil {
				if !NoSpace(err) { // a segment that could not be made for want of space is tried again next time
					j.err = err
				}
				return Pos{}, err
			}
			continue
		}
		if j.zeroFrom < j.zeroTo && j.off < j.zeroTo && j.off+n > j.zeroFrom {
			j.cond.Wait() // the batch would land where zeros are being written
			continue
		}
		break
	}
	buf := j.buf[:0]
	for _, r := range recs {
		buf = binary.BigEndian.AppendUint32(buf, uint32(len(r)))
		buf = binary.BigEndian.AppendUint32(buf, crc32Checksum(r))
		buf = append(buf, r...)
	}
	if cap(buf) <= 1<<20 {
		j.buf = buf
	}
	if done, err := j.writeAt(j.f, buf, j.off); err != nil {
		var pe *os.PathError // names the file as it was created, before its rename
		if errors.As(err, &pe) {
			err = pe.Err
		}
		err = fmt.Errorf("journal: write %s: %w", j.path(j.seg), err)
		if NoSpace(err) {
			// Nothing of the batch may stay: the next batch, written here,
			// may be shorter, and a whole record of this one behind it
			// would come back at replay. Blocks the write allocated take
			// the zeros without more space.
			if _, zerr := j.writeAt(j.f, make([]byte, done), j.off); zerr == nil {
				return Pos{}, err
			}
		}
		j.err = err
		return Pos{}, j.err
	}
	j.off += n
	j.size = max(j.size, j.off)
	if j.zeroed < min(j.off+j.ahead()/2, j.opt.SegmentSize) {
		j.wakeZeroing()
	}
	return Pos{j.seg, j.off}, nil
}

// NoSpace reports whether err is a write refused for want of space (ENOSPC,
// or EDQUOT for a quota), after which the journal stays usable.
func NoSpace(err error) bool {
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT)
}

// wakeZeroing asks the zeroing goroutine, if it runs, to look again; j.mu
// is held.
func (j *Journal) wakeZeroing() {
	if j.zeroWake != nil {
		select {
		case j.zeroWake <- struct{}{}:
		default:
		}
	}
}

// MaxSyncs is how many fdatasyncs this journal runs at once.
func (j *Journal) MaxSyncs() int { return j.opt.MaxSyncs }

// startZeroing starts the goroutine that keeps zeros written ahead of the
// last record (not with NoSync, where nothing is synced anyway).
func (j *Journal) startZeroing() {
	if j.opt.NoSync {
		return
	}
	j.zeroWake = make(chan struct{}, 1)
	j.zeroDone = make(chan struct{})
	j.zeroWake <- struct{}{}
	go j.zeroLoop(j.zeroWake, j.zeroDone)
}

// zeroSync is fdatasync for the zeroing goroutine; a test replaces it
// before opening a journal.
var zeroSync = fdatasync

// zeroRetry is how long zeroing waits after a write of zeros failed (a full
// disk) before it tries again.
const zeroRetry = time.Second

// zeroLoop writes zeros ahead of the last record, a piece at a time, each
// synced, until the journal closes. A failed write of zeros pauses the
// zeroing (appends fill holes meanwhile, as without it). A failed sync stops
// the journal: the sync covers the records written before it too, and the
// kernel reports a lost page only once, to whichever sync comes first.
func (j *Journal) zeroLoop(wake <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	for range wake {
		for {
			j.mu.Lock()
			if j.stopZero || j.err != nil || j.f == nil {
				j.mu.Unlock()
				return
			}
			from := max(j.zeroed, j.off)
			to := min(from+zeroChunk, j.opt.SegmentSize)
			if from >= min(j.off+j.ahead(), j.opt.SegmentSize) || from >= to {
				j.mu.Unlock()
				break
			}
			f, seg := j.f, j.seg
			j.zeroFrom, j.zeroTo = from, to
			j.mu.Unlock()
			_, werr := f.WriteAt(zeros[:to-from], from)
			var serr error
			if werr == nil {
				serr = zeroSync(f)
			}
			j.mu.Lock()
			j.zeroFrom, j.zeroTo = 0, 0
			if werr == nil && serr == nil && seg == j.seg {
				j.zeroed = to
			}
			if serr != nil && j.err == nil {
				j.err = fmt.Errorf("journal: sync %s: %w", j.path(seg), serr)
			}
			j.cond.Broadcast()
			j.mu.Unlock()
			if serr != nil {
				return
			}
			if werr != nil {
				t := time.NewTimer(zeroRetry)
				select {
				case _, open := <-wake:
					if !open {
						t.Stop()
						return
					}
				case <-t.C:
				}
				t.Stop()
			}
		}
	}
}

// ahead is how far ahead of the last record zeros are kept; j.mu is held.
func (j *Journal) ahead() int64 {
	return min(zeroAhead, max(zeroChunk, 2*(j.off-j.zeroBase)))
}

// stopZeroing ends the zeroing goroutine and waits for it; j.mu is held.
func (j *Journal) stopZeroing() {
	if j.zeroWake == nil {
		return
	}
	// The field is cleared before j.mu is let go, so that no Write that
	// takes j.mu meanwhile wakes a closed channel.
	wake, done := j.zeroWake, j.zeroDone
	j.stopZero, j.zeroWake = true, nil
	close(wake)
	j.mu.Unlock()
	if j.stopping != nil {
		j.stopping()
	}
	<-done
	j.mu.Lock()
}

// Sync returns once every record up to p is durable, or with the error
// that stopped the journal. It waits for a sync under way that covers p, or
// starts one (at most Options.MaxSyncs run at once).
func (j *Journal) Sync(p Pos) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		if j.err != nil {
			return j.err
		}
		if !j.synced.Less(p) {
			return nil
		}
		if j.f == nil {
			return errors.New("journal: closed")
		}
		if end := (Pos{j.seg, j.off}); end.Less(p) {
			return fmt.Errorf("journal: sync to %v, beyond the last record (%v)", p, end)
		}
		covered := false
		for _, s := range j.syncs {
			covered = covered || !s.target.Less(p)
		}
		if covered || len(j.syncs) >= j.opt.MaxSyncs {
			j.cond.Wait()
			continue
		}
		j.runSync()
	}
}

// runSync syncs the current segment up to its end, with j.mu released
// while the disk works; j.mu is held on entry and on return.
func (j *Journal) runSync() {
	s := &syncCall{target: Pos{j.seg, j.off}}
	j.syncs = append(j.syncs, s)
	f, name := j.f, j.path(j.seg)
	j.mu.Unlock()
	var err error
	if !j.opt.NoSync {
		err = j.syncFile(f)
	}
	j.mu.Lock()
	s.done = true
	if err != nil && j.err == nil {
		j.err = fmt.Errorf("journal: sync %s: %w", name, err)
	}
	// The durable position moves over the oldest syncs that have ended, and
	// only while none of them failed.
	for len(j.syncs) > 0 && j.syncs[0].done {
		if j.err == nil && j.synced.Less(j.syncs[0].target) {
			j.synced = j.syncs[0].target
		}
		j.syncs[0] = nil
		j.syncs = j.syncs[1:]
	}
	j.cond.Broadcast()
}

// syncCurrent syncs the current segment whole, in the caller's goroutine;
// j.mu is held and no sync is under way.
func (j *Journal) syncCurrent() error {
	if j.synced == (Pos{j.seg, j.off}) {
		return nil
	}
	if !j.opt.NoSync {
		if err := j.syncFile(j.f); err != nil {
			j.err = fmt.Errorf("journal: sync %s: %w", j.path(j.seg), err)
			return j.err
		}
	}
	j.synced = Pos{j.seg, j.off}
	return nil
}

// Synced is the position up to which every record is durable.
func (j *Journal) Synced() Pos {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.synced
}

// Replay calls fn with every record after position after, in order, and the
// position just after each. It reads the files, so it sees only what was
// appended before it started; the store calls it at start-up, before any
// append.
func (j *Journal) Replay(after Pos, fn func(end Pos, rec []byte) error) error {
	segs, err := j.segments()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s < after.Seg {
			continue
		}
		from := int64(0)
		if s == after.Seg {
			from = after.Off
		}
		f, err := os.Open(j.path(s))
		if err != nil {
			return fmt.Errorf("journal: %w", err)
		}
		end, torn, err := scanSegment(f, j.path(s), s, fn, from)
		f.Close()
		if err != nil {
			return err
		}
		if torn && s != segs[len(segs)-1] {
			return fmt.Errorf("journal: %s: damaged record at offset %d (only the newest segment may end torn)", j.path(s), end)
		}
	}
	return nil
}

// Release removes the segments whose records all lie before p (every
// segment numbered below p.Seg). The caller must have made those records
// durable elsewhere first.
func (j *Journal) Release(p Pos) error {
	j.mu.Lock()
	cur := j.seg
	j.mu.Unlock()
	segs, err := j.segments()
	if err != nil {
		return err
	}
	removed := false
	for _, s := range segs {
		if s >= p.Seg || s >= cur {
			break
		}
		if err := os.Remove(j.path(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("journal: release: %w", err)
		}
		removed = true
	}
	if removed && !j.opt.NoSync {
		return syncDir(j.dir)
	}
	return nil
}

// Reset starts a new, empty segment and removes every older one. The caller
// must have made every record durable elsewhere first (the store does this
// after replaying the journal at start-up, and at a clean shutdown).
func (j *Journal) Reset() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for len(j.syncs) > 0 {
		j.cond.Wait()
	}
	if j.err != nil {
		return j.err
	}
	if j.off == headerSize {
		return nil // already empty
	}
	if err := j.roll(); err != nil {
		j.err = err
		return err
	}
	segs, err := j.segments()
	if err != nil {
		return err
	}
	for _, s := range segs {
		if s < j.seg {
			if err := os.Remove(j.path(s)); err != nil && !errors.Is(err, os.ErrNotExist) {
				return fmt.Errorf("journal: reset: %w", err)
			}
		}
	}
	if j.opt.NoSync {
		return nil
	}
	return syncDir(j.dir)
}

// Err returns the error that stopped the journal, if any.
func (j *Journal) Err() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// Close closes the current segment, once the syncs under way have ended.
func (j *Journal) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.stopZeroing()
	for len(j.syncs) > 0 {
		j.cond.Wait()
	}
	var err error
	if j.f != nil {
		err = j.f.Close()
		j.f = nil
	}
	if j.lock != nil {
		err = errors.Join(err, j.lock.Close()) // closing releases the lock
		j.lock = nil
	}
	return err
}

// roll closes the current segment and starts the next; j.mu is held.
func (j *Journal) roll() error {
	for j.zeroFrom < j.zeroTo {
		j.cond.Wait() // zeros being written to the current file
	}
	next := j.seg + 1
	old := j.f
	if err := j.create(next); err != nil {
		return err
	}
	if old != nil {
		_ = old.Close()
	}
	return nil
}

// create makes segment n, sparse at the nominal size, and makes it current.
func (j *Journal) create(n uint64) error {
	// The segment is prepared under a temporary name and renamed when its
	// header is on disk, so a crash never leaves a headless segment.
	p := j.path(n)
	tmp := p + ".tmp"
	_ = os.Remove(tmp)
	f, err := j.openSegment(tmp)
	if err != nil {
		return fmt.Errorf("journal: create segment: %w", err)
	}
	hdr := make([]byte, headerSize)
	copy(hdr, magic)
	binary.BigEndian.PutUint64(hdr[8:], n)
	_, err = f.WriteAt(hdr, 0)
	if err == nil {
		err = f.Truncate(j.opt.SegmentSize)
	}
	if err == nil && !j.opt.NoSync {
		err = f.Sync()
	}
	if err == nil {
		err = os.Rename(tmp, p)
	}
	if err == nil && !j.opt.NoSync {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("journal: create %s: %w", p, err)
	}
	j.f, j.seg, j.off, j.size = f, n, headerSize, j.opt.SegmentSize
	j.synced = Pos{n, headerSize}
	j.zeroed, j.zeroBase = headerSize, headerSize
	j.wakeZeroing()
	return nil
}

func (j *Journal) path(n uint64) string {
	return filepath.Join(j.dir, fmt.Sprintf("%016d%s", n, suffix))
}

// segments lists the segment numbers in dir, oldest first.
func (j *Journal) segments() ([]uint64, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []uint64
	for _, e := range ents {
		if e.Name() == "LOCK" {
			continue
		}
		name, ok := strings.CutSuffix(e.Name(), suffix)
		if !ok || e.IsDir() { // including a segment left half made (.tmp)
			continue
		}
		n, err := strconv.ParseUint(name, 10, 64)
		if err != nil || len(name) != 16 {
			return nil, fmt.Errorf("journal: unexpected file %s in %s", e.Name(), j.dir)
		}
		out = append(out, n)
	}
	slices.Sort(out)
	return out, nil
}

// scanSegment reads the records of segment n from f, calling fn with each
// one starting at offset from or later (0 means the first record). It
// returns the offset after the last whole record and whether the records
// ended in something other than a clean end (a zero length or the end of
// the file): a length past the end, an impossible length or a wrong
// checksum.
func scanSegment(f *os.File, name string, n uint64, fn func(Pos, []byte) error, from int64) (end int64, torn bool, err error) {
	hdr := make([]byte, headerSize)
	if _, err := io.ReadFull(f, hdr); err != nil {
		return 0, false, fmt.Errorf("journal: %s: segment header: %w", name, err)
	}
	if string(hdr[:8]) != magic {
		return 0, false, fmt.Errorf("journal: %s: not a journal segment (bad magic at offset 0)", name)
	}
	if got := binary.BigEndian.Uint64(hdr[8:]); got != n {
		return 0, false, fmt.Errorf("journal: %s: header names segment %d", name, got)
	}
	st, err := f.Stat()
	if err != nil {
		return 0, false, fmt.Errorf("journal: %w", err)
	}
	size := st.Size()
	r := &offsetReader{f: f, off: headerSize}
	var rh [recHeader]byte
	var payload []byte
	for {
		at := r.off
		if at+recHeader > size {
			return at, false, nil
		}
		if err := r.read(rh[:]); err != nil {
			return at, false, fmt.Errorf("journal: %s at offset %d: %w", name, at, err)
		}
		length := binary.BigEndian.Uint32(rh[:4])
		if length == 0 {
			return at, false, nil
		}
		if length > MaxRecord || at+recHeader+int64(length) > size {
			return at, true, nil
		}
		payload = slices.Grow(payload[:0], int(length))[:length]
		if err := r.read(payload); err != nil {
			return at, false, fmt.Errorf("journal: %s at offset %d: %w", name, at, err)
		}
		if crc32Checksum(payload) != binary.BigEndian.Uint32(rh[4:]) {
			return at, true, nil
		}
		if at >= from {
			if err := fn(Pos{n, r.off}, payload); err != nil {
				return at, false, err
			}
		}
	}
}

// offsetReader reads f sequentially through a buffer.
type offsetReader struct {
	f   *os.File
	off int64
	buf []byte
	bo  int64 // file offset of buf[0]
}

func (r *offsetReader) read(p []byte) error {
	for len(p) > 0 {
		if r.off < r.bo || r.off >= r.bo+int64(len(r.buf)) {
			if r.buf == nil {
				r.buf = make([]byte, 0, 1<<20)
			}
			nb := r.buf[:cap(r.buf)]
			k, err := r.f.ReadAt(nb, r.off)
			if k == 0 {
				if err == nil {
					err = io.ErrUnexpectedEOF
				}
				return err
			}
			r.buf, r.bo = nb[:k], r.off
		}
		c := copy(p, r.buf[r.off-r.bo:])
		p = p[c:]
		r.off += int64(c)
	}
	return nil
}

// WriteFileAtomic writes a small file durably: whole under a temporary
// name, synced, renamed into place and its directory synced, so that after
// a crash the file is either absent or complete.
func WriteFileAtomic(path string, data []byte) error {
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}

func crc32Checksum(p []byte) uint32 { return crc32.Checksum(p, castagnoli) }

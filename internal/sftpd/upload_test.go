package sftpd

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pkg/sftp"

	"github.com/hiegw/hiegw/internal/intake"
)

// Uploading real corpus files and closing them hands each one to intake
// exactly once with the exact bytes, then moves it to processed/.
func TestUploadCloseAccepted(t *testing.T) {
	var paths []string
	paths = append(paths, corpusFiles(t, "hl7v2/batch")...)
	paths = append(paths, corpusFiles(t, "ccda")...)
	paths = append(paths, corpusFiles(t, "ccda/edge")...) // includes a 0-byte file
	h := newHarness(t, nil)
	c := h.sftp("alice")

	want := map[string][]byte{}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		name := filepath.Base(p)
		if _, dup := want[name]; dup {
			continue
		}
		want[name] = data
		if err := put(c, name, data); err != nil {
			t.Fatalf("upload %s: %v", name, err)
		}
		// Close returned: intake has answered and the file is filed.
		if got := h.readFile("alice", folderProcessed, name); !bytes.Equal(got, data) {
			t.Fatalf("processed/%s differs from the upload", name)
		}
	}

	envs := h.in.envelopes()
	if len(envs) != len(want) {
		t.Fatalf("Accept called %d times for %d uploads", len(envs), len(want))
	}
	seen := map[string]bool{}
	for _, e := range envs {
		if seen[e.Filename] {
			t.Errorf("%s accepted twice", e.Filename)
		}
		seen[e.Filename] = true
		if !bytes.Equal(e.Raw, want[e.Filename]) {
			t.Errorf("%s: envelope bytes differ from the upload (%d vs %d bytes)", e.Filename, len(e.Raw), len(want[e.Filename]))
		}
		if e.Channel != intake.ChannelSFTP || e.Sender != "alice" || e.Peer == "" || e.ReceivedAt.IsZero() {
			t.Errorf("%s: envelope header %q %q %q %v", e.Filename, e.Channel, e.Sender, e.Peer, e.ReceivedAt)
		}
	}
	if left := h.files("alice", folderInbox); len(left) != 0 {
		t.Errorf("inbox not empty: %v", left)
	}
	if left := h.files("alice", stagingDir); len(left) != 0 {
		t.Errorf("staging not empty: %v", left)
	}
	if st := h.srv.Stats(); st.Uploads != uint64(len(want)) || st.Accepted != uint64(len(want)) {
		t.Errorf("stats %+v, want %d uploads and accepted", st, len(want))
	}
}

// A file written under a temporary name is not picked up when closed, only
// when renamed to its final name.
func TestTemporaryNameThenRename(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	data := sample(t)
	for _, tc := range []struct{ tmp, final string }{
		{"a.hl7.part", "a.hl7"},
		{"b.hl7.tmp", "b.hl7"},
		{".c.hl7", "c.hl7"},
		{"d.xml.filepart", "d.xml"},
		{"e.xml.PART", "e.xml"},
	} {
		before := len(h.in.envelopes())
		if err := put(c, tc.tmp, data); err != nil {
			t.Fatalf("upload %s: %v", tc.tmp, err)
		}
		if n := len(h.in.envelopes()); n != before {
			t.Fatalf("%s was picked up before its rename", tc.tmp)
		}
		if !contains(h.files("alice", folderInbox), tc.tmp) {
			t.Fatalf("%s not in inbox after close", tc.tmp)
		}
		if err := c.Rename(tc.tmp, tc.final); err != nil {
			t.Fatalf("rename %s: %v", tc.tmp, err)
		}
		envs := h.in.envelopes()
		if len(envs) != before+1 {
			t.Fatalf("rename of %s: Accept called %d times, want 1", tc.tmp, len(envs)-before)
		}
		if e := envs[len(envs)-1]; e.Filename != tc.final || !bytes.Equal(e.Raw, data) {
			t.Fatalf("rename of %s: envelope %q with %d bytes", tc.tmp, e.Filename, len(e.Raw))
		}
		if !bytes.Equal(h.readFile("alice", folderProcessed, tc.final), data) {
			t.Fatalf("processed/%s differs", tc.final)
		}
	}
	if left := h.files("alice", folderInbox); len(left) != 0 {
		t.Errorf("inbox not empty: %v", left)
	}
}

// OpenSSH and pkg/sftp clients may rename with the posix-rename extension.
func TestPosixRename(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("bob")
	data := sample(t)
	if err := put(c, "/inbox/x.hl7.part", data); err != nil {
		t.Fatal(err)
	}
	if err := c.PosixRename("/inbox/x.hl7.part", "/inbox/x.hl7"); err != nil {
		t.Fatal(err)
	}
	envs := h.in.bySender("bob")
	if len(envs) != 1 || envs[0].Filename != "x.hl7" || !bytes.Equal(envs[0].Raw, data) {
		t.Fatalf("envelopes after posix-rename: %+v", envs)
	}
}

// Renaming a temporary file while it is still open for writing is refused,
// so a file is never handed over half written.
func TestRenameWhileWritingRefused(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	f, err := c.Create("y.hl7.part")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write([]byte("MSH|")); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("y.hl7.part", "y.hl7"); err == nil {
		t.Fatal("rename of a file still open for writing succeeded")
	}
	if n := len(h.in.envelopes()); n != 0 {
		t.Fatalf("Accept called %d times", n)
	}
	if _, err := f.Write([]byte("rest\r")); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("y.hl7.part", "y.hl7"); err != nil {
		t.Fatal(err)
	}
	if envs := h.in.envelopes(); len(envs) != 1 || string(envs[0].Raw) != "MSH|rest\r" {
		t.Fatalf("envelopes: %+v", envs)
	}
}

// A rejected file goes to failed/ next to NAME.error.txt holding the reason,
// which the sender can read.
func TestRejectedGoesToFailed(t *testing.T) {
	h := newHarness(t, nil)
	const reason = "MSH-9: message type missing"
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{EnvelopeID: "e1", Status: intake.StatusRejected, Reason: reason}, nil
	})
	c := h.sftp("alice")
	data := []byte("not hl7 at all")
	if err := put(c, "bad.hl7", data); err != nil {
		t.Fatal(err)
	}
	if got := h.readFile("alice", folderFailed, "bad.hl7"); !bytes.Equal(got, data) {
		t.Fatalf("failed/bad.hl7 = %q", got)
	}
	if got := string(h.readFile("alice", folderFailed, "bad.hl7.error.txt")); got != reason+"\n" {
		t.Fatalf("error file = %q, want %q", got, reason+"\n")
	}
	got, err := readAll(c, "/failed/bad.hl7.error.txt")
	if err != nil || string(got) != reason+"\n" {
		t.Fatalf("sender reads error file: %q, %v", got, err)
	}
	// A second rejected upload of the same name does not overwrite the first.
	if err := put(c, "bad.hl7", []byte("second")); err != nil {
		t.Fatal(err)
	}
	if got := string(h.readFile("alice", folderFailed, "bad-1.hl7")); got != "second" {
		t.Fatalf("failed/bad-1.hl7 = %q", got)
	}
	if got := string(h.readFile("alice", folderFailed, "bad-1.hl7.error.txt")); got != reason+"\n" {
		t.Fatalf("failed/bad-1.hl7.error.txt = %q", got)
	}
	if len(h.files("alice", folderProcessed)) != 0 || len(h.files("alice", folderInbox)) != 0 {
		t.Fatal("rejected files left elsewhere")
	}
	if st := h.srv.Stats(); st.Rejected != 2 {
		t.Fatalf("Rejected = %d, want 2", st.Rejected)
	}
}

// A duplicate is filed as processed; names already taken get a suffix.
func TestDuplicateAndNameClash(t *testing.T) {
	h := newHarness(t, nil)
	calls := 0
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		calls++
		return intake.Receipt{EnvelopeID: "first", Status: intake.StatusReceived, Duplicate: calls > 1}, nil
	})
	c := h.sftp("alice")
	data := sample(t)
	for i := 0; i < 3; i++ {
		if err := put(c, "same.hl7", data); err != nil {
			t.Fatal(err)
		}
	}
	want := []string{"same-1.hl7", "same-2.hl7", "same.hl7"}
	if got := h.files("alice", folderProcessed); strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("processed = %v, want %v", got, want)
	}
}

// When intake fails the file stays in inbox/, the client still gets
// success (the file is safe with us), and the rescan delivers it later.
func TestAcceptErrorRetriedByRescan(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RescanInterval = 20 * time.Millisecond })
	outage := errors.New("store unavailable")
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{}, outage
	})
	c := h.sftp("alice")
	data := sample(t)
	if err := put(c, "later.hl7", data); err != nil {
		t.Fatalf("upload during an intake outage: %v", err)
	}
	waitFor(t, "a retry by the rescan", func() bool { return len(h.in.envelopes()) >= 2 })
	if !contains(h.files("alice", folderInbox), "later.hl7") {
		t.Fatal("file left inbox before a successful Accept")
	}
	if len(h.files("alice", folderProcessed)) != 0 || len(h.files("alice", folderFailed)) != 0 {
		t.Fatal("file filed before a successful Accept")
	}

	h.in.setAccept(nil) // the store is back
	waitFor(t, "processed/later.hl7", func() bool { return contains(h.files("alice", folderProcessed), "later.hl7") })
	for _, e := range h.in.envelopes() {
		if e.Filename != "later.hl7" || !bytes.Equal(e.Raw, data) || e.Sender != "alice" {
			t.Fatalf("retried envelope %q from %q with %d bytes", e.Filename, e.Sender, len(e.Raw))
		}
	}
	if left := h.files("alice", folderInbox); len(left) != 0 {
		t.Fatalf("inbox not empty: %v", left)
	}
	if st := h.srv.Stats(); st.AcceptErrors < 2 || st.Accepted != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// Files left in inbox/ by a crash are delivered when the server starts; files
// with temporary names and old staging files are not; stale staging files
// are swept.
func TestRescanAtStart(t *testing.T) {
	h := newStoppedHarness(t, nil)
	data := sample(t)
	write := func(folder, name string, mtime time.Time) {
		p := filepath.Join(h.dir("bob", folder), name)
		if err := os.WriteFile(p, data, 0o640); err != nil {
			t.Fatal(err)
		}
		if !mtime.IsZero() {
			if err := os.Chtimes(p, mtime, mtime); err != nil {
				t.Fatal(err)
			}
		}
	}
	write(folderInbox, "left.hl7", time.Now().Add(-time.Minute))
	write(folderInbox, "half.hl7.part", time.Time{})
	write(stagingDir, "0123abcd", time.Now().Add(-48*time.Hour))
	write(stagingDir, "fresh", time.Time{})
	h.start()

	waitFor(t, "processed/left.hl7", func() bool { return contains(h.files("bob", folderProcessed), "left.hl7") })
	envs := h.in.envelopes()
	if len(envs) != 1 || envs[0].Filename != "left.hl7" || envs[0].Sender != "bob" || !bytes.Equal(envs[0].Raw, data) {
		t.Fatalf("envelopes: %+v", envs)
	}
	waitFor(t, "stale staging file swept", func() bool { return !contains(h.files("bob", stagingDir), "0123abcd") })
	if !contains(h.files("bob", stagingDir), "fresh") {
		t.Fatal("a fresh staging file was swept")
	}
	if !contains(h.files("bob", folderInbox), "half.hl7.part") {
		t.Fatal("temporary file was moved")
	}
}

// A transfer cut off mid-upload is never handed to intake, even though the
// server still sees a Close for it.
func TestAbortedTransferNotPickedUp(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RescanInterval = 20 * time.Millisecond })
	sc, err := h.dial("alice")
	if err != nil {
		t.Fatal(err)
	}
	c, err := newSFTP(sc)
	if err != nil {
		t.Fatal(err)
	}
	f, err := c.Create("cut.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(bytes.Repeat([]byte("OBX|1|TX|||x\r"), 1000)); err != nil {
		t.Fatal(err)
	}
	// a temporary file cut off too: it must stay temporary
	g, err := c.Create("cut2.hl7.part")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := g.Write([]byte("MSH|")); err != nil {
		t.Fatal(err)
	}
	sc.Close() // the connection drops with both files open

	waitFor(t, "the aborted uploads to be counted", func() bool { return h.srv.Stats().UploadFailures == 2 })
	if left := h.files("alice", stagingDir); len(left) != 0 {
		t.Fatalf("partial staging file kept: %v", left)
	}
	// Let a rescan run over inbox/, proven by it delivering a marker file.
	if err := os.WriteFile(filepath.Join(h.dir("alice", folderInbox), "marker.hl7"), []byte("M"), 0o640); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the rescan to deliver the marker", func() bool { return len(h.in.envelopes()) > 0 })
	for _, e := range h.in.envelopes() {
		if e.Filename != "marker.hl7" {
			t.Fatalf("aborted upload %s was handed to intake", e.Filename)
		}
	}
	if got := h.files("alice", folderInbox); strings.Join(got, ",") != "cut2.hl7.part" {
		t.Fatalf("inbox = %v, want only the temporary partial", got)
	}
}

// A new upload with the name of a file still waiting in inbox/ neither
// replaces it nor is lost.
func TestUploadOverPendingFile(t *testing.T) {
	h := newHarness(t, nil)
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{}, errors.New("down")
	})
	c := h.sftp("alice")
	if err := put(c, "p.hl7", []byte("one")); err != nil {
		t.Fatal(err)
	}
	if err := put(c, "p.hl7", []byte("two")); err != nil {
		t.Fatal(err)
	}
	if got := string(h.readFile("alice", folderInbox, "p.hl7")); got != "one" {
		t.Fatalf("inbox/p.hl7 = %q", got)
	}
	if got := string(h.readFile("alice", folderInbox, "p-1.hl7")); got != "two" {
		t.Fatalf("inbox/p-1.hl7 = %q", got)
	}
	// Resuming (no truncate) onto a pending final name is refused.
	if _, err := c.OpenFile("p.hl7", os.O_WRONLY|os.O_APPEND); err == nil {
		t.Fatal("append to a pending file was allowed")
	}
}

// The sender can read processed files back and stat a file while it is
// still being written.
func TestReadBackAndStatDuringUpload(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	data := sample(t)
	f, err := c.Create("s.hl7")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	fi, err := c.Stat("s.hl7")
	if err != nil || fi.Size() != int64(len(data)) || fi.Name() != "s.hl7" {
		t.Fatalf("stat during upload: %v %v", fi, err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	got, err := readAll(c, "/processed/s.hl7")
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v", err)
	}
	if _, err := c.Stat("/inbox/s.hl7"); err == nil {
		t.Fatal("file still in inbox")
	}
	wd, err := c.Getwd()
	if err != nil || wd != "/inbox" {
		t.Fatalf("start directory %q, %v", wd, err)
	}
}

// Logs never contain file contents, at any level.
func TestLogsHoldNoContent(t *testing.T) {
	h := newHarness(t, nil)
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{Status: intake.StatusRejected, Reason: "PID-3: missing"}, nil
	})
	c := h.sftp("alice")
	const marker = "ZZTOPSECRETPATIENTNAME"
	if err := put(c, "phi.hl7", []byte("MSH|^~\\&|\rPID|||123||"+marker+"\r")); err != nil {
		t.Fatal(err)
	}
	if err := put(c, "phi2.hl7.part", []byte(marker)); err != nil {
		t.Fatal(err)
	}
	if err := c.Rename("phi2.hl7.part", "phi2.hl7"); err != nil {
		t.Fatal(err)
	}
	logs := h.logs.String()
	if strings.Contains(logs, marker) {
		t.Fatalf("file contents reached the log:\n%s", logs)
	}
	if !strings.Contains(logs, "sftp file rejected by intake") {
		t.Fatalf("no pickup logged:\n%s", logs)
	}
}

// File names may hold a patient's name or MRN (EMRs name exports so), so
// above debug level the log names no file: not when a file is accepted,
// rejected, left for a retry, refused by policy, or fails to upload; and
// not in an error's path. The debug lines carry the names.
func TestLogsHoldNoFileNamesAboveDebug(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxFileSize = 4096 })
	const marker = "ZZSMITHJOHN_MRN4455667"
	c := h.sftp("alice")
	if err := put(c, marker+"_accepted.hl7", sample(t)); err != nil {
		t.Fatal(err)
	}
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{Status: intake.StatusRejected, Reason: "PID-3: missing"}, nil
	})
	if err := put(c, marker+"_rejected.hl7", sample(t)); err != nil {
		t.Fatal(err)
	}
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		return intake.Receipt{}, errors.New("store envelope: insert " + env.Filename + ": connection refused")
	})
	if err := put(c, marker+"_later.hl7", sample(t)); err != nil {
		t.Fatal(err)
	}
	if err := put(c, marker+"_big.hl7", bytes.Repeat([]byte("x"), 5000)); err == nil {
		t.Fatal("oversize upload succeeded")
	}
	if err := c.Remove("/processed/" + marker + "_accepted.hl7"); err == nil {
		t.Fatal("remove in processed/ allowed")
	}
	if err := c.Rename(marker+"_later.hl7", "/processed/"+marker+".hl7"); err == nil {
		t.Fatal("rename out of inbox/ allowed")
	}
	var above, debug []string
	for _, line := range strings.Split(strings.TrimSpace(h.logs.String()), "\n") {
		if strings.Contains(line, "level=DEBUG") {
			debug = append(debug, line)
		} else {
			above = append(above, line)
		}
	}
	for _, msg := range []string{"sftp file accepted", "sftp file rejected by intake", "sftp intake failed; file left in inbox",
		"sftp upload failed; partial file discarded", `what=path op=remove folder=/processed`, `what=path op=rename folder="/inbox -> /processed"`} {
		if !slices.ContainsFunc(above, func(l string) bool { return strings.Contains(l, msg) }) {
			t.Errorf("no line above debug level with %q", msg)
		}
	}
	for _, l := range above {
		if strings.Contains(l, "MRN4455667") {
			t.Errorf("a file name above debug level: %s", l)
		}
	}
	named := 0
	for _, l := range debug {
		if strings.Contains(l, marker) {
			named++
		}
	}
	if named < 6 {
		t.Errorf("%d debug lines name the file, want one for each of the 6 above:\n%s", named, strings.Join(debug, "\n"))
	}
}

// Several connections of two senders upload at once, with the client
// writing chunks out of order; every file arrives once, intact.
func TestConcurrentUploads(t *testing.T) {
	h := newHarness(t, nil)
	big := bytes.Repeat([]byte("OBX|1|TX|||concurrent upload line\r"), 10000) // 350 KB: many packets
	type job struct{ user, name string }
	var jobs []job
	errs := make(chan error, 64)
	var wg sync.WaitGroup
	for i, user := range []string{"alice", "alice", "bob", "bob"} {
		sc, err := h.dial(user)
		if err != nil {
			t.Fatal(err)
		}
		defer sc.Close()
		c, err := sftp.NewClient(sc, sftp.UseConcurrentWrites(true))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for j := 0; j < 8; j++ {
			name := fmt.Sprintf("c%d-%d.hl7", i, j)
			jobs = append(jobs, job{user, name})
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j := 0; j < 8; j++ {
				name := fmt.Sprintf("c%d-%d.hl7", i, j)
				var err error
				if j%2 == 0 {
					err = put(c, name, big)
				} else if err = put(c, name+".part", big); err == nil {
					err = c.Rename(name+".part", name)
				}
				if err != nil {
					errs <- fmt.Errorf("%s: %w", name, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	envs := h.in.envelopes()
	if len(envs) != len(jobs) {
		t.Fatalf("%d envelopes for %d uploads", len(envs), len(jobs))
	}
	for _, e := range envs {
		if !bytes.Equal(e.Raw, big) {
			t.Fatalf("%s from %s: bytes differ", e.Filename, e.Sender)
		}
	}
	for _, j := range jobs {
		if !contains(h.files(j.user, folderProcessed), j.name) {
			t.Errorf("%s/processed/%s missing", j.user, j.name)
		}
	}
}

// SETSTAT (put -p, chmod, touch) is accepted and ignored inside the folder;
// a sender may remove its own leftovers in inbox/.
func TestSetstatIgnoredAndRemove(t *testing.T) {
	h := newHarness(t, nil)
	c := h.sftp("alice")
	if err := put(c, "left.hl7.part", []byte("x")); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(filepath.Join(h.dir("alice", folderInbox), "left.hl7.part"))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Chmod("left.hl7.part", 0o777); err != nil {
		t.Fatalf("chmod: %v", err)
	}
	if err := c.Chtimes("left.hl7.part", time.Unix(0, 0), time.Unix(0, 0)); err != nil {
		t.Fatalf("chtimes: %v", err)
	}
	after, err := os.Stat(filepath.Join(h.dir("alice", folderInbox), "left.hl7.part"))
	if err != nil {
		t.Fatal(err)
	}
	if after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatal("SETSTAT changed the file")
	}
	if err := c.Chmod("/etc/passwd", 0o777); err == nil {
		t.Fatal("chmod outside the folder accepted")
	}
	if err := c.Remove("left.hl7.part"); err != nil {
		t.Fatalf("remove: %v", err)
	}
	if got := h.files("alice", folderInbox); len(got) != 0 {
		t.Fatalf("inbox = %v", got)
	}
}

// A panic in intake (a defect of hiegw) is handled as an intake failure:
// the server goes on, the file stays in inbox/, and the rescan delivers it.
func TestAcceptPanicRetriedByRescan(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RescanInterval = 20 * time.Millisecond })
	var calls atomic.Int32
	h.in.setAccept(func(ctx context.Context, env *intake.Envelope) (intake.Receipt, error) {
		if calls.Add(1) == 1 {
			var m map[string]int
			m[env.Filename]++
		}
		return intake.Receipt{EnvelopeID: "e", Status: intake.StatusReceived}, nil
	})
	c := h.sftp("alice")
	if err := put(c, "defect.hl7", sample(t)); err != nil {
		t.Fatalf("upload: %v", err)
	}
	waitFor(t, "processed/defect.hl7", func() bool { return contains(h.files("alice", folderProcessed), "defect.hl7") })
	if st := h.srv.Stats(); st.AcceptErrors != 1 || st.Accepted != 1 {
		t.Fatalf("stats %+v, want one accept error (the panic) and one acceptance", st)
	}
}

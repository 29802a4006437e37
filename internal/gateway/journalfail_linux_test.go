package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

// swapJournal puts repl in place of every open segment of the intake
// journal under dir (the descriptor number stays, the file behind it
// changes) and returns a function that puts the segments back.
func swapJournal(t *testing.T, dir string, repl *os.File) (restore func()) {
	t.Helper()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	// The segments are found before any is swapped: a copy made by Dup
	// may take a number the listing gave to another file.
	var segs []int
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, filepath.Join(dir, "journal")) || !strings.HasSuffix(target, ".journal") {
			continue
		}
		n, err := strconv.Atoi(fd.Name())
		if err != nil {
			t.Fatal(err)
		}
		segs = append(segs, n)
	}
	var undo []func()
	for _, n := range segs {
		saved, err := syscall.Dup(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := syscall.Dup2(int(repl.Fd()), n); err != nil {
			t.Fatal(err)
		}
		undo = append(undo, func() {
			if err := syscall.Dup2(saved, n); err != nil {
				t.Fatal(err)
			}
			syscall.Close(saved)
		})
	}
	if len(undo) == 0 {
		t.Fatal("no open journal segment found")
	}
	return func() {
		for _, u := range undo {
			u()
		}
	}
}

// TestFullDiskRefusesUntilSpace: while the intake journal's disk is full
// (its segment swapped for /dev/full, which answers every write with
// ENOSPC) a message is answered AR (CR in enhanced mode) "send it again later" and not stored;
// the gateway stays up, and once there is space again the same message is
// accepted, without a restart, and stored once.
func TestFullDiskRefusesUntilSpace(t *testing.T) {
	dir := t.TempDir()
	r := start(t, testConfig(t, dir, ""))
	first := readFile(t, "adt_a01.hl7")
	if ack := send(t, r.g.MLLPAddr(), first); !accepted(ack.Raw()) {
		t.Fatalf("first message: %q", ack.Raw())
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	restore := swapJournal(t, dir, full)

	second := []byte(strings.Replace(string(first), "|ADT0001|", "|FULL-2|", 1))
	reply, err := sendRaw(r.g.MLLPAddr(), second)
	if err != nil {
		restore()
		t.Fatalf("no answer while the disk was full: %v", err)
	}
	if ack, err := hl7.Parse(reply); err != nil || (ack.Get("MSA-1") != "AR" && ack.Get("MSA-1") != "CR") || !strings.Contains(ack.Get("ERR-8"), "send it again later") {
		restore()
		t.Fatalf("answer while the disk was full: %q, want AR or CR asking to send again", reply)
	}
	restore()
	if ack := send(t, r.g.MLLPAddr(), second); !accepted(ack.Raw()) {
		t.Fatalf("the refused message sent again once there was space: %q", ack.Raw())
	}
	select {
	case err := <-r.done:
		t.Fatalf("the gateway stopped: %v", err)
	default:
	}
	if err := r.g.DB().JournalStopped(); err != nil {
		t.Fatalf("the journal stopped: %v", err)
	}
	r.shutdown(t)

	again := start(t, testConfig(t, dir, ""))
	defer again.shutdown(t)
	es, err := again.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]int{}
	for _, e := range es {
		ids[e.ControlID]++
	}
	if len(es) != 2 || ids["ADT0001"] != 1 || ids["FULL-2"] != 1 {
		t.Fatalf("after a restart the store holds %d envelopes %v, want each message once", len(es), ids)
	}
}

// TestJournalWriteErrorStopsTheGateway: a write that fails for another
// reason than space (here the segment swapped for a descriptor open for
// reading only) leaves what reached the disk unknown: the message under way
// is not acknowledged as stored, the gateway stops with an error naming the
// journal instead of refusing every message from then on, and a restart on
// the same data directory has every message acknowledged before the
// failure and takes new ones.
func TestJournalWriteErrorStopsTheGateway(t *testing.T) {
	dir := t.TempDir()
	r := start(t, testConfig(t, dir, ""))
	first := readFile(t, "adt_a01.hl7")
	if ack := send(t, r.g.MLLPAddr(), first); !accepted(ack.Raw()) {
		t.Fatalf("first message: %q", ack.Raw())
	}
	ro, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	swapJournal(t, dir, ro)

	second := []byte(strings.Replace(string(first), "|ADT0001|", "|FAIL-2|", 1))
	if reply, err := sendRaw(r.g.MLLPAddr(), second); err == nil && accepted(reply) {
		t.Fatalf("a message the journal could not write was acknowledged as stored: %q", reply)
	}
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "intake journal stopped") || !errors.Is(err, syscall.EBADF) ||
			!strings.Contains(err.Error(), filepath.Join(dir, "journal", "0000000000000001.journal: ")) {
			t.Fatalf("the gateway stopped with %v, want the journal's error", err)
		}
	case <-time.After(30 * time.Second):
		r.stop()
		t.Fatal("the gateway kept running on a stopped journal")
	}

	again := start(t, testConfig(t, dir, ""))
	defer again.shutdown(t)
	es, err := again.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].ControlID == "FAIL-2" {
		t.Fatalf("after the restart the store holds %d envelopes (%v), want the first message only", len(es), es)
	}
	if ack := send(t, again.g.MLLPAddr(), second); !accepted(ack.Raw()) {
		t.Fatalf("the refused message sent again: %q", ack.Raw())
	}
}

// sendRaw sends msg and returns the reply, or the error that came instead.
func sendRaw(addr string, msg []byte) ([]byte, error) {
	cl, err := mllp.Dial(context.Background(), addr, nil)
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	return cl.Send(ctx, msg)
}

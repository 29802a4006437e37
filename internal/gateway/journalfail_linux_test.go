package gateway

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

// TestFullDiskStopsTheGateway: when the intake journal can no longer write
// (its segment swapped for /dev/full, which answers every write with
// ENOSPC), the message under way is not acknowledged as stored, the gateway
// stops with an error naming the journal instead of refusing every message
// from then on, and a restart on the same data directory has every message
// acknowledged before the failure and takes new ones.
func TestFullDiskStopsTheGateway(t *testing.T) {
	dir := t.TempDir()
	r := start(t, testConfig(t, dir, ""))
	first := readFile(t, "adt_a01.hl7")
	if ack := send(t, r.g.MLLPAddr(), first); ack.Get("MSA-1") != "CA" && ack.Get("MSA-1") != "AA" {
		t.Fatalf("first message: %q", ack.Raw())
	}

	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0)
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	defer full.Close()
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("no /proc/self/fd: %v", err)
	}
	swapped := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err != nil || !strings.HasPrefix(target, filepath.Join(dir, "journal")) || !strings.HasSuffix(target, ".journal") {
			continue
		}
		n := 0
		for _, c := range fd.Name() {
			n = n*10 + int(c-'0')
		}
		if err := syscall.Dup2(int(full.Fd()), n); err != nil {
			t.Fatal(err)
		}
		swapped++
	}
	if swapped == 0 {
		t.Fatal("no open journal segment found")
	}

	second := []byte(strings.Replace(string(first), "|ADT0001|", "|FULL-2|", 1))
	reply, err := sendRaw(r.g.MLLPAddr(), second)
	if err == nil {
		if ack, perr := hl7.Parse(reply); perr == nil && (ack.Get("MSA-1") == "CA" || ack.Get("MSA-1") == "AA") {
			t.Fatalf("a message the journal could not write was acknowledged as stored: %q", reply)
		}
	}
	select {
	case err := <-r.done:
		if err == nil || !strings.Contains(err.Error(), "intake journal stopped") || !errors.Is(err, syscall.ENOSPC) ||
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
	if len(es) != 1 || es[0].ControlID == "FULL-2" {
		t.Fatalf("after the restart the store holds %d envelopes (%v), want the first message only", len(es), es)
	}
	if ack := send(t, again.g.MLLPAddr(), second); ack.Get("MSA-1") != "CA" && ack.Get("MSA-1") != "AA" {
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

package defect

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

func TestDescribe(t *testing.T) {
	recovered := func(f func()) (r any) {
		defer func() { r = recover() }()
		f()
		return nil
	}
	var m map[string]int
	if got := Describe(recovered(func() { m["x"]++ })); got != "assignment to entry in nil map" {
		t.Errorf("runtime error: %q", got)
	}
	var s []int
	if got := Describe(recovered(func() { _ = s[3] })); !strings.Contains(got, "index out of range [3] with length 0") {
		t.Errorf("runtime error: %q", got)
	}
	for _, v := range []any{"Jane Doe, MRN 4455667", errors.New("PID-5 Jane Doe"), 42} {
		got := Describe(recovered(func() { panic(v) }))
		if strings.Contains(got, "Jane") || strings.Contains(got, "4455667") || strings.Contains(got, "42") ||
			!strings.HasPrefix(got, "a panic of type ") {
			t.Errorf("panic(%#v) described as %q: only its type may be named", v, got)
		}
	}
}

// panicsOnNilMap is where TestLog's panic happens; its name must be in the
// logged stack.
func panicsOnNilMap() {
	var m map[string]int
	m["x"]++
}

func TestLog(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var got string
	func() {
		defer func() { got = Log(log, "it broke", recover(), "envelope", "e1") }()
		panicsOnNilMap()
	}()
	out := buf.String()
	if got != "assignment to entry in nil map" || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, `msg="it broke"`) ||
		!strings.Contains(out, "envelope=e1") || !strings.Contains(out, `panic="assignment to entry in nil map"`) ||
		!strings.Contains(out, "panicsOnNilMap") {
		t.Fatalf("Log returned %q and logged:\n%s", got, out)
	}
}

package defect

import (
	"bytes"
	"errors"
	"fmt"
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

// Recover, deferred, ends the panic, logs it like Log and makes the error;
// with a nil error pointer it only logs; without a panic it does nothing.
func TestRecover(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	run := func(fail bool) (err error) {
		defer Recover(log, "the copy panicked", &err, "batch", 3)
		if fail {
			panicsOnNilMap()
		}
		return errors.New("its own error")
	}
	if err := run(true); err == nil || err.Error() != "the copy panicked: assignment to entry in nil map" {
		t.Fatalf("error after a panic: %v", err)
	}
	out := buf.String()
	if !strings.Contains(out, `msg="the copy panicked"`) || !strings.Contains(out, "batch=3") ||
		!strings.Contains(out, "panicsOnNilMap") {
		t.Fatalf("logged:\n%s", out)
	}
	buf.Reset()
	if err := run(false); err == nil || err.Error() != "its own error" || buf.Len() != 0 {
		t.Fatalf("without a panic: %v, logged %q", err, buf.String())
	}
	func() {
		defer Recover(log, "a round panicked", nil)
		panicsOnNilMap()
	}()
	if !strings.Contains(buf.String(), `msg="a round panicked"`) {
		t.Fatalf("with no error to set, logged:\n%s", buf.String())
	}
}

// Catch, deferred, turns a panic into an *Error with the message, the
// description and the stack, found again by StackOf through wrapping; it
// leaves a function that did not panic alone.
func TestCatch(t *testing.T) {
	run := func(fail bool) (err error) {
		defer Catch("internal error while reading the file", &err)
		if fail {
			panicsOnNilMap()
		}
		return errors.New("its own error")
	}
	err := run(true)
	var e *Error
	if !errors.As(err, &e) || err.Error() != "internal error while reading the file (assignment to entry in nil map)" ||
		!strings.Contains(string(e.Stack), "panicsOnNilMap") {
		t.Fatalf("error after a panic: %v", err)
	}
	if st := StackOf(fmt.Errorf("reload: %w", err)); !bytes.Equal(st, e.Stack) {
		t.Errorf("StackOf a wrapped Error: %.100q", st)
	}
	if err := run(false); err == nil || err.Error() != "its own error" || StackOf(err) != nil {
		t.Errorf("without a panic: %v, stack %q", err, StackOf(err))
	}
}

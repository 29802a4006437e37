// Package defect describes a recovered panic, a defect of hiegw rather than
// of its input, in words safe to log at any level and to store with a
// message: the runtime's own message for a runtime error (an index out of
// range, a nil map), else only the type of the panic value, which may hold
// patient data.
package defect

import (
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"runtime/debug"
)

// Describe returns what to say about the recovered panic value r.
func Describe(r any) string {
	if re, ok := r.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("a panic of type %T", r)
}

// Log logs the recovered panic value r on log at error level, with msg and
// args, what r was (Describe) and the stack of the calling goroutine, which
// during the deferred call that recovered r still holds the panic's frames.
// It returns Describe(r), for the error the caller makes of the panic.
func Log(log *slog.Logger, msg string, r any, args ...any) string {
	what := Describe(r)
	log.Error(msg, append(args, "panic", what, "stack", string(debug.Stack()))...)
	return what
}

// Recover, deferred, recovers a panic of the calling function, logs it with
// Log under msg and args, and, when err is not nil, sets *err to an error
// reading "msg: what". The function then returns as if it had failed.
func Recover(log *slog.Logger, msg string, err *error, args ...any) {
	r := recover()
	if r == nil {
		return
	}
	what := Log(log, msg, r, args...)
	if err != nil {
		*err = fmt.Errorf("%s: %s", msg, what)
	}
}

// Error is a recovered panic returned as an error, for a caller that
// decides where to log it: a reload that refuses a new file and keeps the
// old one, a command that prints it. Msg says what was being done and that
// the fault is hiegw's, What is Describe of the panic value and Stack the
// panicking goroutine's stack.
type Error struct {
	Msg   string
	What  string
	Stack []byte
}

func (e *Error) Error() string { return e.Msg + " (" + e.What + ")" }

// Catch, deferred, recovers a panic of the calling function and sets *err
// to an *Error with msg, the panic's description and the stack. Unlike
// Recover it logs nothing.
func Catch(msg string, err *error) {
	if r := recover(); r != nil {
		*err = &Error{Msg: msg, What: Describe(r), Stack: debug.Stack()}
	}
}

// StackOf returns the stack of the *Error in err's chain, or nil.
func StackOf(err error) []byte {
	var e *Error
	if errors.As(err, &e) {
		return e.Stack
	}
	return nil
}

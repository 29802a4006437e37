// Package defect describes a recovered panic, a defect of hiegw rather than
// of its input, in words safe to log at any level and to store with a
// message: the runtime's own message for a runtime error (an index out of
// range, a nil map), else only the type of the panic value, which may hold
// patient data.
package defect

import (
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

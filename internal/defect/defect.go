// Package defect describes a recovered panic, a defect of hiegw rather than
// of its input, in words safe to log at any level and to store with a
// message: the runtime's own message for a runtime error (an index out of
// range, a nil map), else only the type of the panic value, which may hold
// patient data.
package defect

import (
	"fmt"
	"runtime"
)

// Describe returns what to say about the recovered panic value r.
func Describe(r any) string {
	if re, ok := r.(runtime.Error); ok {
		return re.Error()
	}
	return fmt.Sprintf("a panic of type %T", r)
}

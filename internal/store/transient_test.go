package store

import (
	"context"
	"database/sql/driver"
	"errors"
	"fmt"
	"net"
	"syscall"
	"testing"

	"github.com/lib/pq"
)

func TestTransient(t *testing.T) {
	dial := &net.OpError{Op: "dial", Net: "tcp", Err: &net.AddrError{Err: "connection refused"}}
	for err, want := range map[error]bool{
		nil:                                      false,
		fmt.Errorf("insert envelopes: %w", dial): true,
		fmt.Errorf("insert envelopes: %w", syscall.ECONNREFUSED):                       true,
		fmt.Errorf("begin: %w", driver.ErrBadConn):                                     true,
		&pq.Error{Code: "57P03", Message: "the database system is starting up"}:        true,
		&pq.Error{Code: "57P01", Message: "terminating connection due to admin"}:       true,
		&pq.Error{Code: "08006", Message: "connection failure"}:                        true,
		&pq.Error{Code: "23505", Message: "duplicate key value"}:                       false,
		&pq.Error{Code: "42P01", Message: "relation does not exist"}:                   false,
		errors.New("journal: write 0000000000000001.journal: no space left on device"): false,
		context.DeadlineExceeded: false,
	} {
		if got := Transient(err); got != want {
			t.Errorf("Transient(%v) = %v, want %v", err, got, want)
		}
	}
}

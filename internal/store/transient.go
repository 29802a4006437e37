package store

import (
	"database/sql/driver"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/lib/pq"
)

// Transient tells whether err is one that the same statement may not meet
// again a moment later: PostgreSQL could not be reached or went away (a
// restart, a failover, a dropped connection), as opposed to a refusal of
// the statement or its data, or a failure of the embedded store's disk.
func Transient(err error) bool {
	if err == nil {
		return false
	}
	for _, e := range []error{driver.ErrBadConn, io.EOF, io.ErrUnexpectedEOF, syscall.ECONNREFUSED, syscall.ECONNRESET,
		syscall.ECONNABORTED, syscall.EPIPE} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne *net.OpError
	if errors.As(err, &ne) {
		return true
	}
	var pe *pq.Error
	if errors.As(err, &pe) {
		switch pe.Code {
		case "57P01", "57P02", "57P03", "53300": // admin or crash shutdown, cannot connect now, too many connections
			return true
		}
		return pe.Code.Class() == "08" // connection exception
	}
	return false
}

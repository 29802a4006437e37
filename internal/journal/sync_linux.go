package journal

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// fdatasync flushes f's data and what is needed to read it back, but not
// its timestamps: the segment's size never changes on append.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}

// LocksAcrossProcesses tells whether LockFile keeps other processes out.
const LocksAcrossProcesses = true

// LockFile opens path and locks it exclusively, failing at once if another
// process holds it: two gateways appending to one journal would corrupt it.
// The lock lasts until the file is closed or the process ends.
func LockFile(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("%s is locked by another process: is another hiegw using this data directory?", path)
		}
		return nil, fmt.Errorf("lock %s: %w", path, err)
	}
	return f, nil
}

package journal

import (
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

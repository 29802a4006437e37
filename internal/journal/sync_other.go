//go:build !linux

package journal

import "os"

func fdatasync(f *os.File) error { return f.Sync() }

// LocksAcrossProcesses tells whether LockFile keeps other processes out.
const LocksAcrossProcesses = false

// LockFile opens path; other systems get no cross-process lock.
func LockFile(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
}

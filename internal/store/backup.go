package store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/jmoiron/sqlx"
)

// BackupFile is one file a backup wrote.
type BackupFile struct {
	Name  string
	Bytes int64
}

// backupDatabases are the embedded store's databases, in the order a backup
// takes them: the message log first, then the record. A record taken after
// the log may hold the processing of envelopes the log still shows as
// received, which the first read of pending envelopes after a restore puts
// right from the record, and of a few envelopes received after the log's
// snapshot (their resources and events stay, their envelopes are not in the
// backup); the other order could show as processed an envelope whose
// processing the record does not hold, and it would never be processed
// again.
var backupDatabases = []string{"intake.db", "hiegw.db"}

// backupExtras are small files of the data directory a restore wants back:
// the gateway's id among replicas and the SFTP host key (senders' known_hosts
// name it); each is copied when present.
var backupExtras = []string{"instance-id", "sftp_host_ed25519_key"}

// Backup copies the embedded store of dataDir into the directory to, which
// must not exist or be empty, while a gateway may be running on it. Each
// database is copied as one consistent snapshot (SQLite's VACUUM INTO,
// which also leaves out free pages); messages acknowledged in the moment
// before, still in the intake journal and not yet copied into the log
// (about 10 ms of traffic), are not in it. The embedded broker's topics are
// not copied: the events are in the record's outbox, and hiegw replay
// --subscriber publishes them again. To restore, stop the gateway and put
// the files in an empty data directory.
func Backup(ctx context.Context, dataDir, to string) ([]BackupFile, error) {
	for _, name := range backupDatabases {
		if _, err := os.Stat(filepath.Join(dataDir, name)); err != nil {
			return nil, fmt.Errorf("backup: no embedded store in %s: %w", dataDir, err)
		}
	}
	if ents, err := os.ReadDir(to); err == nil && len(ents) > 0 {
		return nil, fmt.Errorf("backup: %s is not empty", to)
	} else if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("backup: %w", err)
	}
	if err := os.MkdirAll(to, 0o700); err != nil {
		return nil, fmt.Errorf("backup: %w", err)
	}
	var out []BackupFile
	for _, name := range backupDatabases {
		dst := filepath.Join(to, name)
		if err := snapshot(ctx, filepath.Join(dataDir, name), dst); err != nil {
			return out, fmt.Errorf("backup %s: %w", name, err)
		}
		fi, err := os.Stat(dst)
		if err != nil {
			return out, fmt.Errorf("backup %s: %w", name, err)
		}
		out = append(out, BackupFile{Name: name, Bytes: fi.Size()})
	}
	for _, name := range backupExtras {
		n, err := copyFile(filepath.Join(dataDir, name), filepath.Join(to, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("backup %s: %w", name, err)
		}
		out = append(out, BackupFile{Name: name, Bytes: n})
	}
	d, err := os.Open(to)
	if err != nil {
		return out, fmt.Errorf("backup: %w", err)
	}
	if err := errors.Join(d.Sync(), d.Close()); err != nil {
		return out, fmt.Errorf("backup: sync %s: %w", to, err)
	}
	return out, nil
}

// snapshot writes a consistent copy of the SQLite database src to dst.
func snapshot(ctx context.Context, src, dst string) error {
	x, err := sqlx.Open("sqlite", "file:"+src+"?_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer x.Close()
	if _, err := x.ExecContext(ctx, `VACUUM INTO ?`, dst); err != nil {
		return err
	}
	// VACUUM INTO does not sync what it wrote.
	f, err := os.OpenFile(dst, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

func copyFile(src, dst string) (int64, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return 0, err
	}
	n, err := io.Copy(out, in)
	if err == nil {
		err = out.Sync()
	}
	return n, errors.Join(err, out.Close())
}

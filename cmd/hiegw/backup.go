package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/store"
)

const backupUsage = `usage: hiegw backup --to DIR [--config FILE | --data-dir DIR]

Copies the embedded store (the message log intake.db, then the record
hiegw.db, each a consistent snapshot, and the instance id and SFTP host key)
into DIR, which must not exist or be empty, while the gateway runs. Messages
acknowledged in the moment before (still in the intake journal) are not in
it, nor are the embedded broker's topics: their events are in the record and
"hiegw replay --subscriber" publishes them again. To restore, stop the
gateway and start it on a data directory holding the files of DIR. A
gateway on PostgreSQL is backed up with PostgreSQL's tools (pg_dump,
pg_basebackup).

`

func runBackup(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hiegw backup", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, backupUsage); fs.PrintDefaults() }
	to := fs.String("to", "", "directory to write the backup into (must not exist or be empty)")
	cfgFile := fs.String("config", "", "configuration file of the gateway (for its data directory)")
	dataDir := fs.String("data-dir", "", "data directory of the gateway's embedded store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *to == "" || fs.NArg() > 0 {
		fs.Usage()
		return exitCode(2)
	}
	var cargs []string
	if *cfgFile != "" {
		cargs = append(cargs, "--config", *cfgFile)
	}
	if *dataDir != "" {
		cargs = append(cargs, "--data-dir", *dataDir)
	}
	cfg, err := config.Load(cargs, os.Getenv, stderr)
	if err != nil {
		return err
	}
	if cfg.Store.PostgresDSN != "" {
		return errors.New("backup: the gateway's store is PostgreSQL: back it up with pg_dump or pg_basebackup")
	}
	files, err := store.Backup(ctx, cfg.DataDir, *to)
	for _, f := range files {
		fmt.Fprintf(stdout, "%s\t%d bytes\n", f.Name, f.Bytes)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "backup of %s written to %s\n", cfg.DataDir, *to)
	return nil
}

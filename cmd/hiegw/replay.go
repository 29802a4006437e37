package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/store"
)

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hiegw replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	sub := fs.String("subscriber", "", "subscriber whose events to publish again (required)")
	since := fs.String("since", "", "RFC 3339 time, e.g. 2026-11-01T00:00:00Z (required)")
	cfgArgs := fs.String("config", "", "configuration file of the gateway (for its store)")
	dataDir := fs.String("data-dir", "", "data directory of the gateway's embedded store")
	dsn := fs.String("postgres-dsn", "", "PostgreSQL DSN of the gateway's store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *sub == "" || *since == "" {
		return fmt.Errorf("replay: --subscriber and --since are required")
	}
	t, err := time.Parse(time.RFC3339, *since)
	if err != nil {
		return fmt.Errorf("replay: --since: %w", err)
	}
	var cargs []string
	for k, v := range map[string]string{"--config": *cfgArgs, "--data-dir": *dataDir, "--postgres-dsn": *dsn} {
		if v != "" {
			cargs = append(cargs, k, v)
		}
	}
	cfg, err := config.Load(cargs, os.Getenv, stderr)
	if err != nil {
		return err
	}
	// NoIntake: the gateway may be running on this data directory.
	db, err := store.Open(ctx, store.Options{PostgresDSN: cfg.Store.PostgresDSN, DataDir: cfg.DataDir, Sync: cfg.Store.Sync, NoIntake: true})
	if err != nil {
		return err
	}
	defer db.Close()
	n, err := db.ReplayOutbox(ctx, *sub, t)
	if err != nil {
		return err
	}
	_ = db.Audit(ctx, store.AuditEntry{Actor: "cli", Action: "subscriber.replay", Target: *sub, Outcome: "ok",
		Detail: fmt.Sprintf("%d events since %s", n, t.Format(time.RFC3339))})
	fmt.Fprintf(stdout, "queued %d events of %s since %s; the running gateway publishes them\n", n, *sub, t.Format(time.RFC3339))
	return nil
}

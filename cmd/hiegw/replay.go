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

const replayUsage = `usage: hiegw replay --subscriber S --since TIME [store flags]
       hiegw replay --failed [--list] [--sender S] [--since TIME] [store flags] [MESSAGE-ID...]

The first form queues a subscriber's events again from the store. The second
puts messages whose processing failed back in the processing queue, after a
mapping fix: all of them, a sender's, those received since a time, or the
messages named. A gateway running on the same store picks them up at its next
poll and processes them with the mappings it holds now. With --list it prints
the failed messages it would choose, each with the error that failed it, and
requeues nothing.

`

func runReplay(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("hiegw replay", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, replayUsage); fs.PrintDefaults() }
	failed := fs.Bool("failed", false, "requeue messages whose processing failed instead of publishing events again")
	list := fs.Bool("list", false, "with --failed: list the failed messages chosen, with their errors, and requeue nothing")
	sub := fs.String("subscriber", "", "subscriber whose events to publish again")
	sender := fs.String("sender", "", "with --failed: only this sender's messages")
	since := fs.String("since", "", "RFC 3339 time, e.g. 2026-11-01T00:00:00Z: events queued, or with --failed messages received, since then")
	cfgArgs := fs.String("config", "", "configuration file of the gateway (for its store)")
	dataDir := fs.String("data-dir", "", "data directory of the gateway's embedded store")
	dsn := fs.String("postgres-dsn", "", "PostgreSQL DSN of the gateway's store")
	if err := fs.Parse(args); err != nil {
		return err
	}
	switch {
	case *failed && *sub != "":
		return fmt.Errorf("replay: --subscriber publishes events again; --failed requeues messages: give one")
	case !*failed && (*sub == "" || *since == ""):
		return fmt.Errorf("replay: --subscriber and --since are required (or --failed to requeue failed messages)")
	case !*failed && (*sender != "" || *list || fs.NArg() > 0):
		return fmt.Errorf("replay: --sender, --list and message ids are for failed messages: add --failed")
	}
	var t time.Time
	if *since != "" {
		var err error
		if t, err = time.Parse(time.RFC3339, *since); err != nil {
			return fmt.Errorf("replay: --since: %w", err)
		}
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
	chosen := store.RequeueFilter{Sender: *sender, IDs: fs.Args(), Since: t}
	if *failed && *list {
		return listFailed(ctx, db, chosen, stdout)
	}
	if *failed {
		n, err := db.Requeue(ctx, chosen)
		if err != nil {
			return err
		}
		_ = db.Audit(ctx, store.AuditEntry{Actor: "cli", Action: "message.reprocess", Target: *sender, Outcome: "ok",
			Detail: fmt.Sprintf("%d requeued", n)})
		fmt.Fprintf(stdout, "requeued %s; the running gateway processes them again\n", failedMessages(n))
		return nil
	}
	n, err := db.ReplayOutbox(ctx, *sub, t)
	if err != nil {
		return err
	}
	_ = db.Audit(ctx, store.AuditEntry{Actor: "cli", Action: "subscriber.replay", Target: *sub, Outcome: "ok",
		Detail: fmt.Sprintf("%d events since %s", n, t.Format(time.RFC3339))})
	fmt.Fprintf(stdout, "queued %d events of %s since %s; the running gateway publishes them\n", n, *sub, t.Format(time.RFC3339))
	return nil
}

// listPage is how many failed messages listFailed reads at a time.
var listPage = 500

// listFailed prints the failed messages f chooses, newest first: when each
// was received, its id, sender, type, control id, attempts and the error
// that failed it (which names the field and the mapping rule).
func listFailed(ctx context.Context, db *store.DB, f store.RequeueFilter, w io.Writer) error {
	ids := map[string]bool{}
	for _, id := range f.IDs {
		ids[id] = true
	}
	n := 0
	filter := store.EnvelopeFilter{Sender: f.Sender, Status: "failed", Since: f.Since, Limit: listPage}
	for {
		es, err := db.ListEnvelopes(ctx, filter)
		if err != nil {
			return err
		}
		for _, e := range es {
			if len(ids) > 0 && !ids[e.ID] {
				continue
			}
			n++
			fmt.Fprintf(w, "%s  %s  %s  %s  %s  attempts %d  %s\n", e.ReceivedAt.UTC().Format(time.RFC3339), e.ID, e.Sender,
				e.MessageType, e.ControlID, e.Attempts, e.Error)
		}
		if len(es) < filter.Limit {
			break
		}
		filter.BeforeSeq = es[len(es)-1].Seq
	}
	fmt.Fprintln(w, failedMessages(int64(n)))
	return nil
}

func failedMessages(n int64) string {
	if n == 1 {
		return "1 failed message"
	}
	return fmt.Sprintf("%d failed messages", n)
}

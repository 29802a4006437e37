package store

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestRecentAppAcks: newest first, filtered by sender and status, paged by
// seq, without the message unless asked; one envelope's acknowledgement by
// envelope id.
func TestRecentAppAcks(t *testing.T) {
	backends(t, func(t *testing.T, db *DB) {
		ctx := context.Background()
		for _, a := range []AppAck{
			appAck("env-1", "A", "1", AppAckPending),
			appAck("env-2", "B", "2", AppAckNoRoute),
			appAck("env-3", "A", "3", AppAckPending),
			appAck("env-4", "A", "4", AppAckPending),
			appAck("env-5", "B", "5", AppAckNoRoute),
		} {
			if _, err := db.EnqueueAppAck(ctx, a); err != nil {
				t.Fatal(err)
			}
		}
		all := mustRecent(t, db, AppAckPage{})
		if fmt.Sprint(seqsOf(all)) != "[5 4 3 2 1]" {
			t.Fatalf("newest first: %v", seqsOf(all))
		}
		for _, a := range all {
			if a.Message != nil {
				t.Fatalf("row %s carries its message without WithMessage", a.ControlID)
			}
			if a.CreatedAt.IsZero() || a.NextAttempt.IsZero() || a.AckControlID != "ACK"+a.ControlID || a.Code != "AA" {
				t.Fatalf("row %+v", a)
			}
		}
		if got := mustRecent(t, db, AppAckPage{Sender: "A"}); fmt.Sprint(seqsOf(got)) != "[4 3 1]" {
			t.Fatalf("sender A: %v", seqsOf(got))
		}
		if got := mustRecent(t, db, AppAckPage{Status: AppAckNoRoute}); fmt.Sprint(seqsOf(got)) != "[5 2]" {
			t.Fatalf("no_route: %v", seqsOf(got))
		}
		if got := mustRecent(t, db, AppAckPage{Sender: "B", Status: AppAckPending}); len(got) != 0 {
			t.Fatalf("B pending: %v", seqsOf(got))
		}

		// Pages of two, each starting below the last seq of the one before.
		var pages []string
		var before int64
		for i := 0; i < 4; i++ {
			page := mustRecent(t, db, AppAckPage{Limit: 2, BeforeSeq: before})
			pages = append(pages, fmt.Sprint(seqsOf(page)))
			if len(page) == 0 {
				break
			}
			before = page[len(page)-1].Seq
		}
		if fmt.Sprint(pages) != "[[5 4] [3 2] [1] []]" {
			t.Fatalf("pages %v", pages)
		}

		withMsg := mustRecent(t, db, AppAckPage{Sender: "A", Limit: 1, WithMessage: true})
		if len(withMsg) != 1 || string(withMsg[0].Message) != "MSH|^~\\&|A\rMSA|AA|4\r" {
			t.Fatalf("with message: %+v", withMsg)
		}

		// Settle one: its envelope's acknowledgement says so.
		claimed, err := db.ClaimAppAcks(ctx, "A", "one", 1, time.Minute)
		if err != nil || len(claimed) != 1 {
			t.Fatalf("claim %v %v", seqsOf(claimed), err)
		}
		if err := db.MarkAppAckRefused(ctx, claimed[0].Seq, "CR", "MSA-3: unknown"); err != nil {
			t.Fatal(err)
		}
		a, err := db.EnvelopeAppAck(ctx, "env-1", false)
		if err != nil {
			t.Fatal(err)
		}
		if a.Status != AppAckRefused || a.ReplyCode != "CR" || a.LastError != "MSA-3: unknown" || a.Attempts != 1 ||
			a.DoneAt == nil || a.Message != nil || a.ControlID != "1" {
			t.Fatalf("envelope ack %+v", a)
		}
		if a, err := db.EnvelopeAppAck(ctx, "env-1", true); err != nil || string(a.Message) != "MSH|^~\\&|A\rMSA|AA|1\r" {
			t.Fatalf("envelope ack with message: %+v %v", a, err)
		}
		if _, err := db.EnvelopeAppAck(ctx, "env-none", false); !errors.Is(err, ErrNotFound) {
			t.Fatalf("no ack: %v, want ErrNotFound", err)
		}
	})
}

func mustRecent(t *testing.T, db *DB, p AppAckPage) []AppAck {
	t.Helper()
	out, err := db.RecentAppAcks(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

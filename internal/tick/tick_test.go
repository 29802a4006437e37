package tick

import (
	"context"
	"errors"
	"testing"
	"time"
)

// f runs at the start only when asked, then at each tick, until it fails;
// its error comes back.
func TestEveryStopsOnError(t *testing.T) {
	for _, now := range []bool{false, true} {
		calls := 0
		stop := errors.New("stop")
		err := Every(context.Background(), time.Millisecond, now, func() error {
			if calls++; calls == 3 {
				return stop
			}
			return nil
		})
		if !errors.Is(err, stop) || calls != 3 {
			t.Fatalf("now=%v: %v after %d calls", now, err, calls)
		}
	}
}

// An ended context stops the loop with no error, and f is not called
// after it ended, however many ticks were due.
func TestEveryEndsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	calls := 0
	err := Every(ctx, time.Millisecond, true, func() error {
		if calls++; calls == 2 {
			cancel()
			time.Sleep(5 * time.Millisecond) // ticks fall due meanwhile
		}
		return nil
	})
	if err != nil || calls != 2 {
		t.Fatalf("%v after %d calls", err, calls)
	}
}

// An error on the first call, made at once, ends Every before any tick.
func TestEveryFirstCallFails(t *testing.T) {
	stop := errors.New("stop")
	calls := 0
	if err := Every(context.Background(), time.Hour, true, func() error { calls++; return stop }); !errors.Is(err, stop) || calls != 1 {
		t.Fatalf("%v after %d calls", err, calls)
	}
}

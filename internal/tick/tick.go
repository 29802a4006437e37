// Package tick runs a function at an interval until a context ends: the
// loop behind the gateway's watchers (mapping set, subscriptions,
// certificates, intake journal) and its periodic jobs (outbox lag, raw body
// retention).
package tick

import (
	"context"
	"time"
)

// Every calls f every interval, and once at the start too when now is set,
// until ctx ends or f returns an error, which Every then returns (nil when
// ctx ended). A call to f that outlasts the interval delays the next one;
// calls never overlap.
func Every(ctx context.Context, interval time.Duration, now bool, f func() error) error {
	if now {
		if err := f(); err != nil {
			return err
		}
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		if ctx.Err() != nil {
			return nil
		}
		if err := f(); err != nil {
			return err
		}
	}
}

package route

import (
	"bytes"
	"context"
	"os"
	"time"

	"github.com/hiegw/hiegw/internal/tick"
)

// Watch polls a subscriptions file every interval and swaps a valid new
// content into the router; an invalid file is refused and the running set
// keeps serving. onReload (may be nil) hears of each attempt. The first
// poll always loads the file, so a change made while the caller started is
// not missed.
func Watch(ctx context.Context, path string, interval time.Duration, rt *Router, onReload func(n int, err error)) {
	if path == "" || interval <= 0 {
		return
	}
	var last []byte
	_ = tick.Every(ctx, interval, false, func() error {
		data, err := os.ReadFile(path)
		if err != nil || last != nil && bytes.Equal(data, last) {
			return nil
		}
		last = data
		subs, err := ParseSubscriptions(path, data)
		if err == nil {
			rt.Swap(subs)
		}
		if onReload != nil {
			onReload(len(subs), err)
		}
		return nil
	})
}

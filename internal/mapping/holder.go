package mapping

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/tick"
)

// Holder serves the current mapping set and replaces it atomically. A new
// set is compiled completely before the swap; a set with errors is refused
// and the old one keeps serving.
type Holder struct {
	cur atomic.Pointer[Set]
}

// NewHolder returns a Holder serving s.
func NewHolder(s *Set) *Holder {
	h := &Holder{}
	h.cur.Store(s)
	return h
}

// Current returns the set in use. Callers keep the returned set for the
// whole of one message, so a reload never changes mappings mid-message.
func (h *Holder) Current() *Set { return h.cur.Load() }

// Reload compiles dir and, if it has no errors, makes it current. On error
// the current set is unchanged; the error lists every problem located.
func (h *Holder) Reload(dir string) error {
	s, err := Load(dir)
	if err != nil {
		return fmt.Errorf("reload mappings: %w", err)
	}
	h.cur.Store(s)
	return nil
}

// Watch polls dir every interval and reloads when the content of its mapping
// files differs from the set serving (a content hash: touching a file without
// changing it does nothing, and content already refused is not tried again).
// onResult, if not nil, is called after each reload attempt with the version
// now serving and the reload error (nil on success). It returns when ctx is
// done.
func (h *Holder) Watch(ctx context.Context, dir string, interval time.Duration, onResult func(version string, err error)) {
	if interval <= 0 {
		interval = 2 * time.Second
	}
	refused := ""
	_ = tick.Every(ctx, interval, false, func() error {
		files, err := readTree(dir)
		if err != nil {
			return nil
		}
		sum := hashFiles(files)
		if sum == h.Current().Version() || sum == refused {
			return nil
		}
		s, err := compileSet(dir, files)
		if err != nil {
			refused = sum
			err = fmt.Errorf("reload mappings: %w", err)
		} else {
			refused = ""
			h.cur.Store(s)
		}
		if onResult != nil {
			onResult(h.Current().Version(), err)
		}
		return nil
	})
}

package route

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestWatchSwapsValidFilesOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subs.yaml")
	write := func(s string) {
		if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	write("subscriptions:\n  - name: a\n    topic: t.a\n")
	r := NewRouter([]Subscription{{Name: "a", Topic: "t.a"}}, nil)
	results := make(chan error, 10)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go Watch(ctx, path, 10*time.Millisecond, r, func(_ int, err error) { results <- err })
	next := func() error {
		select {
		case err := <-results:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("no reload seen")
			return nil
		}
	}
	if err := next(); err != nil { // the first poll loads the file
		t.Fatal(err)
	}
	write("subscriptions:\n  - name: b\n    topic: t.b\n")
	if err := next(); err != nil {
		t.Fatal(err)
	}
	if s := r.Subscriptions(); len(s) != 1 || s[0].Name != "b" {
		t.Fatalf("after a valid change: %+v", s)
	}
	write("subscriptions:\n  - name: c\n    topic: \"bad topic\"\n")
	if err := next(); err == nil {
		t.Fatal("invalid file accepted")
	}
	if s := r.Subscriptions(); len(s) != 1 || s[0].Name != "b" {
		t.Fatalf("an invalid file replaced the set: %+v", s)
	}
}

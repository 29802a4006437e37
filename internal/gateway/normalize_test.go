package gateway

import (
	"testing"

	"github.com/hiegw/hiegw/internal/mapping"
)

func TestMapCacheHandsOnOnceAndEvictsOldest(t *testing.T) {
	c := newMapCache(2)
	a, b, d := &mapping.Result{Event: "a"}, &mapping.Result{Event: "b"}, &mapping.Result{Event: "d"}
	c.put("S", "v1", []byte("msg-a"), a)
	if _, ok := c.take("S", "v2", []byte("msg-a")); ok {
		t.Fatal("a result of another mapping version was handed on")
	}
	if _, ok := c.take("T", "v1", []byte("msg-a")); ok {
		t.Fatal("a result of another sender was handed on")
	}
	if got, ok := c.take("S", "v1", []byte("msg-a")); !ok || got != a {
		t.Fatal("the result was not handed on")
	}
	if _, ok := c.take("S", "v1", []byte("msg-a")); ok {
		t.Fatal("a result was handed on twice")
	}
	c.put("S", "v1", []byte("msg-a"), a)
	c.put("S", "v1", []byte("msg-b"), b)
	c.put("S", "v1", []byte("msg-d"), d) // evicts msg-a
	if _, ok := c.take("S", "v1", []byte("msg-a")); ok {
		t.Fatal("the oldest entry was not evicted")
	}
	if got, ok := c.take("S", "v1", []byte("msg-d")); !ok || got != d {
		t.Fatal("the newest entry is missing")
	}
	var nilCache *mapCache
	nilCache.put("S", "v1", nil, a)
	if _, ok := nilCache.take("S", "v1", nil); ok {
		t.Fatal("a nil cache handed something on")
	}
}

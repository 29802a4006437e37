package gateway

import (
	"os"
	"path/filepath"
	"slices"
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

// TestCCDAIsMappedByTheFiles: a C-CDA document is mapped by the mapping set,
// so a sender's file changes what its documents become, every resource once,
// with references that meet.
func TestCCDAIsMappedByTheFiles(t *testing.T) {
	dir := t.TempDir()
	if err := os.CopyFS(dir, os.DirFS(filepath.Join("..", "..", "mappings"))); err != nil {
		t.Fatal(err)
	}
	override := "senders: [EMR1]\nresources:\n  ccda-patient:\n    elements:\n      active:\n        const: true\n"
	if err := os.WriteFile(filepath.Join(dir, "senders", "emr1.yaml"), []byte(override), 0o600); err != nil {
		t.Fatal(err)
	}
	set, err := mapping.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := normalizer{maps: mapping.NewHolder(set), cache: newMapCache(4), docs: newDocCache(4)}
	doc, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ccda", "sample_ccd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sender := range []string{"EMR1", "OTHER"} {
		out, err := n.NormalizeCCDA(sender, doc)
		if err != nil {
			t.Fatalf("%s: %v", sender, err)
		}
		rs := out.Resources
		if len(rs) == 0 || rs[0].Type() != "Patient" {
			t.Fatalf("%s: the Patient is not first", sender)
		}
		if got := rs[0]["active"]; (sender == "EMR1") != (got == true) {
			t.Fatalf("%s: Patient.active = %v; the sender's file was not applied to its documents alone", sender, got)
		}
		seen := map[string]bool{}
		count := map[string]int{}
		for _, r := range rs {
			if seen[r.Ref()] {
				t.Fatalf("%s: %s twice", sender, r.Ref())
			}
			seen[r.Ref()] = true
			count[r.Type()]++
		}
		if count["DocumentReference"] != 1 || count["Condition"] == 0 || count["MedicationStatement"]+count["MedicationRequest"] == 0 {
			t.Fatalf("%s: resources %v", sender, count)
		}
		patient := rs[0].Ref()
		for _, r := range rs[1:] {
			subj, _ := r["subject"].(map[string]any)
			if subj == nil {
				subj, _ = r["patient"].(map[string]any)
			}
			if subj != nil && subj["reference"] != patient {
				t.Fatalf("%s: %s points to %v, not %s", sender, r.Ref(), subj["reference"], patient)
			}
		}
		if !slices.Contains(out.Also, "medication") {
			t.Fatalf("%s: no medication event among %v", sender, out.Also)
		}
	}
}

package mapping

import (
	"os"
	"path/filepath"
	"testing"
)

func TestScanCorpus(t *testing.T) {
	if os.Getenv("SCAN") == "" {
		t.Skip()
	}
	s, err := Load("../../mappings")
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("../../../shared/corpus/hl7v2/*/*")
	for _, f := range files {
		data, _ := os.ReadFile(f)
		rs, err := s.MapBytes("", data)
		n, u, w := 0, 0, 0
		for _, r := range rs {
			n += len(r.Resources)
			u += len(r.Unmapped)
			w += len(r.Warnings)
		}
		t.Logf("%-60s msgs=%d res=%d unmapped=%d warn=%d err=%v", filepath.Base(f), len(rs), n, u, w, err)
		if os.Getenv("SCAN") == "v" {
			for _, r := range rs {
				for _, x := range r.Warnings {
					t.Logf("   W %s", x)
				}
				for _, x := range r.Unmapped {
					t.Logf("   U %+v", x)
				}
			}
		}
	}
}

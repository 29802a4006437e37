package mapping

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
)

// addFiles adds as seeds the files matching the patterns, up to limit
// bytes each (the fuzzer minimises a large input slowly).
func addFiles(f *testing.F, limit int, patterns ...string) {
	for _, pattern := range patterns {
		paths, _ := filepath.Glob(pattern)
		for _, p := range paths {
			if b, err := os.ReadFile(p); err == nil && len(b) <= limit {
				f.Add(b)
			}
		}
	}
}

// checkResult holds a mapping's output to what the pipeline relies on:
// every resource names its type and encodes as JSON.
func checkResult(t *testing.T, r *Result) {
	t.Helper()
	for i, res := range r.Resources {
		if res.Type() == "" {
			t.Fatalf("resource %d has no resourceType", i)
		}
		if _, err := json.Marshal(res); err != nil {
			t.Fatalf("resource %d (%s) does not encode: %v", i, res.Type(), err)
		}
	}
}

// noDefect fails when a mapping panicked: the engine recovers a panic into
// an AE with the stack, which a fuzzer must still report.
func noDefect(t *testing.T, err error) {
	t.Helper()
	if me := (*MapError)(nil); errors.As(err, &me) && me.Stack != nil {
		t.Fatalf("mapping panicked: %s\n%s", me.Msg, me.Stack)
	}
}

// FuzzMapHL7 maps whatever the HL7 v2 parser accepts with the shipped set:
// the gateway maps every message it has stored, so no message may make the
// mapping panic.
func FuzzMapHL7(f *testing.F) {
	addFiles(f, 64<<10, corpusDir+"/*/*.hl7", "testdata/*.hl7", "testdata/*/*.hl7")
	f.Add(oru20())
	s := loadDefault(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		m, err := hl7.Parse(raw)
		if err != nil {
			return
		}
		r, err := s.MapHL7("FUZZ", m)
		noDefect(t, err)
		if err == nil {
			checkResult(t, r)
		}
	})
}

// FuzzMapCCDA does the same for C-CDA documents the reader accepts.
func FuzzMapCCDA(f *testing.F) {
	addFiles(f, 16<<10, ccdaCorpusDir+"/*.xml", ccdaCorpusDir+"/*/*.xml", "testdata/*.xml", "testdata/*/*.xml")
	s := loadDefault(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		doc, err := ccda.Parse(raw, ccda.DefaultLimits)
		if err != nil {
			return
		}
		r, err := s.MapCCDA("FUZZ", doc)
		noDefect(t, err)
		if err == nil {
			checkResult(t, r)
		}
	})
}

// FuzzIndexesHL7 and FuzzIndexesCCDA map what the parsers accept twice,
// scanning and through the indexes of large messages (smallMessage 0), and
// compare: the indexes must change nothing but the time taken.
func FuzzIndexesHL7(f *testing.F) {
	addFiles(f, 64<<10, corpusDir+"/*/*.hl7", "testdata/*.hl7", "testdata/*/*.hl7")
	f.Add(largeORU(2, 5, 3))
	s := loadDefault(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := hl7.Parse(raw); err != nil {
			return
		}
		compareIndexed(t, func() string { return mapJSON(t, s, raw) })
	})
}

func FuzzIndexesCCDA(f *testing.F) {
	addFiles(f, 16<<10, ccdaCorpusDir+"/*.xml", ccdaCorpusDir+"/*/*.xml")
	s := loadDefault(f)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if _, err := ccda.Parse(raw, ccda.DefaultLimits); err != nil {
			return
		}
		compareIndexed(t, func() string { return mapDocJSON(t, s, raw) })
	})
}

// compareIndexed runs mapIt scanning and through the indexes and fails when
// the two differ.
func compareIndexed(t *testing.T, mapIt func() string) {
	t.Helper()
	defer func(n int) { smallMessage = n }(smallMessage)
	smallMessage = 1 << 30
	scanned := mapIt()
	smallMessage = 0
	if indexed := mapIt(); scanned != indexed {
		t.Fatalf("maps differently through the indexes:\nscanned %.300s\nindexed %.300s", scanned, indexed)
	}
}

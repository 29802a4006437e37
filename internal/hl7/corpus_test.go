package hl7

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"sort"
	"testing"
)

const corpusDir = "../../../shared/corpus/hl7v2"

// corpusFiles returns the files of the shared corpus by folder, skipping the test when it is absent.
func corpusFiles(t testing.TB) map[string][]string {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("shared corpus not found at %s (relative to the package): %v", corpusDir, err)
	}
	out := map[string][]string{}
	err := filepath.WalkDir(corpusDir, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		folder := filepath.Base(filepath.Dir(p))
		out[folder] = append(out[folder], p)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// corpusMessages splits a corpus file into messages: batch files and files with several MSH through SplitBatch.
// eachCorpusMessage calls fn for every corpus message that parses, with
// its folder and its name (folder/file).
func eachCorpusMessage(t *testing.T, fn func(folder, name string, raw []byte, m *Message)) {
	t.Helper()
	for folder, files := range corpusFiles(t) {
		for _, p := range files {
			raw, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			msgs, _ := corpusMessages(folder, raw)
			for _, r := range msgs {
				if m, err := Parse(r); err == nil {
					fn(folder, folder+"/"+filepath.Base(p), r, m)
				}
			}
		}
	}
}

func corpusMessages(folder string, raw []byte) ([][]byte, error) {
	if folder != "batch" && bytes.Count(raw, []byte("MSH")) <= 1 {
		return [][]byte{raw}, nil
	}
	b, err := SplitBatch(raw)
	return b.Messages, err
}

// walkMessage reads every value of m the way a consumer would, and re-parses its encoding.
func walkMessage(t *testing.T, name string, m *Message) {
	for i := range m.SegmentCount() {
		s := m.Segment(i)
		_ = s.Name()
		for f := 1; f <= s.FieldCount(); f++ {
			fld := s.Field(f)
			_ = fld.String()
			_ = fld.IsNull()
			for r := 1; r <= fld.RepCount(); r++ {
				rep := fld.Rep(r)
				_ = rep.Text()
				for c := 1; c <= rep.ComponentCount(); c++ {
					comp := rep.Component(c)
					_ = comp.String()
					for k := 1; k <= comp.SubCount(); k++ {
						_ = comp.Sub(k)
					}
				}
			}
		}
	}
	_ = m.Header()
	_ = m.Validate()
	_, _, _ = m.Structure()
	enc := m.Encode()
	m2, err := Parse(enc)
	if err != nil {
		t.Errorf("%s: re-parsing the encoding fails: %v", name, err)
		return
	}
	if !bytes.Equal(m2.Encode(), enc) || m2.SegmentCount() != m.SegmentCount() {
		t.Errorf("%s: encoding is not stable", name)
	}
}

// TestCorpus parses every file of the shared corpus: each message parses or is refused with a located
// *ParseError; nothing panics. Files of adt, oru and other must all parse.
func TestCorpus(t *testing.T) {
	folders := corpusFiles(t)
	names := make([]string, 0, len(folders))
	for f := range folders {
		names = append(names, f)
	}
	sort.Strings(names)
	for _, folder := range names {
		var parsed, refused, invalid, files int
		for _, path := range folders[folder] {
			raw, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			files++
			name := folder + "/" + filepath.Base(path)
			msgs, err := corpusMessages(folder, raw)
			if err != nil {
				checkLocated(t, name, err)
				if folder != "edge" && folder != "batch" {
					t.Errorf("%s: split: %v", name, err)
				}
			}
			if len(msgs) == 0 {
				refused++
				continue
			}
			for _, raw := range msgs {
				m, err := Parse(raw)
				if err != nil {
					refused++
					checkLocated(t, name, err)
					if folder == "adt" || folder == "oru" || folder == "other" {
						t.Errorf("%s: %v", name, err)
					}
					continue
				}
				parsed++
				if m.Validate() != nil {
					invalid++
				}
				walkMessage(t, name, m)
			}
		}
		t.Logf("%-6s files %3d  messages parsed %3d (of which Validate reports problems: %2d)  refused %2d",
			folder, files, parsed, invalid, refused)
	}
}

// checkLocated fails unless err is (or joins) *ParseErrors that name a place; only an empty input has none.
func checkLocated(t *testing.T, name string, err error) {
	t.Helper()
	errs := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	}
	for _, e := range errs {
		var pe *ParseError
		if !errors.As(e, &pe) {
			t.Errorf("%s: error is not a *ParseError: %v", name, e)
			continue
		}
		if pe.Line == 0 && pe.Segment == "" && !errors.Is(pe, ErrEmpty) {
			t.Errorf("%s: error has no location: %v", name, e)
		}
	}
}

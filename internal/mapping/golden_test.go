package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/fhir"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/golden")

const (
	corpusDir   = "../../../shared/corpus/hl7v2"
	mappingsDir = "../../mappings"
	goldenSend  = "GOLDEN"
)

func corpusOrSkip(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(corpusDir); err != nil {
		t.Skipf("shared corpus not found at %s (it lives in /work/shared/corpus): %v", corpusDir, err)
	}
}

func loadDefault(t testing.TB) *Set {
	t.Helper()
	s, err := Load(mappingsDir)
	if err != nil {
		t.Fatalf("load shipped mappings: %v", err)
	}
	return s
}

// goldenInputs are the corpus messages the default mappings are held to:
// every ADT and result message, and the pharmacy and immunisation ones.
func goldenInputs(t *testing.T) []string {
	var files []string
	for _, pat := range []string{"adt/*", "oru/*", "other/vxu_*", "other/rde_*", "other/rds_*"} {
		m, err := filepath.Glob(filepath.Join(corpusDir, pat))
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	return files
}

// TestGoldenCorpus maps corpus messages with the shipped default set and
// compares the dry-run Bundle with testdata/golden/<dir>_<file>.json (or, for
// a message that cannot be mapped, the MapError text with .error). Every
// resource is checked by the FHIR validator again here. -update rewrites.
func TestGoldenCorpus(t *testing.T) {
	corpusOrSkip(t)
	s := loadDefault(t)
	files := goldenInputs(t)
	if len(files) < 20 {
		t.Fatalf("only %d corpus messages found; expected at least 20", len(files))
	}
	mapped, resources := 0, 0
	for _, f := range files {
		name := filepath.Base(filepath.Dir(f)) + "_" + strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			err = DryRun(&out, s, goldenSend, data)
			jsonPath := filepath.Join("testdata", "golden", name+".json")
			errPath := filepath.Join("testdata", "golden", name+".error")
			if err != nil {
				var me *MapError
				if !errors.As(err, &me) {
					t.Fatalf("not a MapError: %v", err)
				}
				checkGolden(t, errPath, []byte(err.Error()+"\n"))
				return
			}
			mapped++
			results, err := s.MapBytes(goldenSend, data)
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range results {
				if len(r.Resources) > 0 && r.Resources[0].Type() != "Patient" && hasType(r.Resources, "Patient") {
					t.Errorf("Patient is not first")
				}
				for _, res := range r.Resources {
					resources++
					if probs := Validate(res); len(probs) > 0 {
						t.Errorf("%s invalid: %v", res.Type(), probs)
					}
				}
			}
			checkGolden(t, jsonPath, out.Bytes())
		})
	}
	t.Logf("%d of %d corpus files mapped to %d resources", mapped, len(files), resources)
	if mapped < 20 {
		t.Errorf("only %d corpus files mapped; expected at least 20", mapped)
	}
}

func hasType(rs []fhir.Resource, typ string) bool {
	for _, r := range rs {
		if r.Type() == typ {
			return true
		}
	}
	return false
}

func checkGolden(t *testing.T, path string, got []byte) {
	t.Helper()
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no golden file (run go test -update): %v", err)
	}
	if bytes.Equal(want, got) {
		return
	}
	if strings.HasSuffix(path, ".json") {
		diffs, err := diffJSON(want, got)
		if err == nil {
			t.Fatalf("output differs from %s:\n  %s", path, strings.Join(diffs, "\n  "))
		}
	}
	t.Fatalf("output differs from %s:\nwant:\n%s\ngot:\n%s", path, want, got)
}

// TestGoldenIsJSONBundle keeps the goldens honest: each is a collection
// Bundle whose entries carry resources with ids.
func TestGoldenIsJSONBundle(t *testing.T) {
	files, _ := filepath.Glob("testdata/golden/*.json")
	if len(files) < 20 {
		t.Fatalf("only %d golden bundles", len(files))
	}
	nonEmpty := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := json.NewDecoder(bytes.NewReader(data))
		for dec.More() {
			var b fhir.Bundle
			if err := dec.Decode(&b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			if b.ResourceType != "Bundle" || b.Type != "collection" {
				t.Errorf("%s: not a collection Bundle", f)
			}
			if len(b.Entry) > 0 {
				nonEmpty++
			}
			for _, e := range b.Entry {
				if e.Resource.ID() == "" || e.FullURL != "urn:uuid:"+e.Resource.ID() && e.Resource.Type() != "OperationOutcome" {
					t.Errorf("%s: entry without a matching id and fullUrl", f)
				}
			}
		}
	}
	if nonEmpty < 20 {
		t.Errorf("only %d golden bundles hold resources", nonEmpty)
	}
}

package mapping

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/hl7"
)

// Check loads dir and prints every problem, located, to w; it returns an
// error if there is any. Analysts run it as `hiegw mappings check [DIR]`.
func Check(w io.Writer, dir string) error {
	s, err := Load(dir)
	if err != nil {
		errs := Errors(err)
		if len(errs) == 0 {
			fmt.Fprintln(w, err)
			return err
		}
		for _, e := range errs {
			fmt.Fprintf(w, "%s\n\n", e)
		}
		fmt.Fprintf(w, "%d problem(s) in %s\n", len(errs), dir)
		return fmt.Errorf("check mappings: %d problem(s)", len(errs))
	}
	rules := 0
	for _, p := range s.profiles {
		rules += len(p.resources)
	}
	fmt.Fprintf(w, "ok: %s version %s: %d resource rules in the default set, %d sender(s) with their own mappings, %d code tables\n",
		dir, s.Version(), len(s.def.resources), len(s.profiles)-1, len(s.tables))
	return nil
}

// MapBytes parses data (one message, or a batch or several messages back to
// back, or one C-CDA document) and maps every message. It stops at the first
// message that cannot be parsed or mapped.
func (s *Set) MapBytes(sender string, data []byte) ([]*Result, error) {
	if ccda.Detect(data) {
		doc, err := ccda.Parse(data, ccda.DefaultLimits)
		if err != nil {
			return nil, fmt.Errorf("parse C-CDA document: %w", err)
		}
		r, err := s.MapCCDA(sender, doc)
		if err != nil {
			return nil, fmt.Errorf("map C-CDA document: %w", err)
		}
		return []*Result{r}, nil
	}
	msgs := [][]byte{data}
	if bytes.Count(data, []byte("MSH")) > 1 || bytes.Contains(data, []byte("FHS")) || bytes.Contains(data, []byte("BHS")) {
		b, err := hl7.SplitBatch(data)
		if len(b.Messages) == 0 {
			if err != nil {
				return nil, fmt.Errorf("split batch: %w", err)
			}
			return nil, errors.New("split batch: no message found")
		}
		msgs = b.Messages
	}
	out := make([]*Result, 0, len(msgs))
	for i, raw := range msgs {
		m, err := hl7.Parse(raw)
		if err != nil {
			return out, fmt.Errorf("parse message %d: %w", i+1, err)
		}
		r, err := s.MapHL7(sender, m)
		if err != nil {
			return out, fmt.Errorf("map message %d: %w", i+1, err)
		}
		out = append(out, r)
	}
	return out, nil
}

// DryRun maps data as if sender had sent it and prints one FHIR Bundle
// (type collection) per message on w. Codes no table mapped and warnings are
// added as an OperationOutcome entry at the end of the Bundle. Nothing is
// stored.
func DryRun(w io.Writer, set *Set, sender string, data []byte) error {
	results, err := set.MapBytes(sender, data)
	for _, r := range results {
		b, merr := json.MarshalIndent(bundleOf(r), "", "  ")
		if merr != nil {
			return fmt.Errorf("dry run: %w", merr)
		}
		w.Write(b)
		fmt.Fprintln(w)
	}
	if err != nil {
		return fmt.Errorf("dry run: %w", err)
	}
	return nil
}

// bundleOf wraps a result in a collection Bundle, with an OperationOutcome
// listing unmapped codes and warnings.
func bundleOf(r *Result) *fhir.Bundle {
	res := append([]fhir.Resource(nil), r.Resources...)
	if oo := outcomeOf(r); oo != nil {
		res = append(res, oo)
	}
	b := fhir.NewBundle("collection", res)
	return b
}

func outcomeOf(r *Result) fhir.Resource {
	var issues []any
	for _, u := range r.Unmapped {
		issues = append(issues, map[string]any{"severity": "information", "code": "code-invalid",
			"diagnostics": fmt.Sprintf("unmapped code: table %s, system %q, code %q, at %s", u.Table, u.System, u.Code, u.Where)})
	}
	for _, w := range r.Warnings {
		issues = append(issues, map[string]any{"severity": "warning", "code": "value", "diagnostics": w})
	}
	for _, res := range r.Resources {
		if keep := r.Keep[res.ID()]; len(keep) > 0 {
			issues = append(issues, map[string]any{"severity": "information", "code": "informational",
				"diagnostics": fmt.Sprintf("%s: not sent, so a stored value stays (absent: keep): %s", res.Ref(), strings.Join(keep, ", "))})
		}
	}
	if len(issues) == 0 {
		return nil
	}
	oo := fhir.New("OperationOutcome", "mapping-outcome")
	oo["issue"] = issues
	return oo
}

// RunTests runs the test cases under dir: every *.hl7 (or *.er7) file, and
// every *.xml file that is a C-CDA document, is mapped and compared with the
// JSON file of the same name, which holds the expected dry-run output (one
// Bundle). A case under a directory named
// senders/NAME/ is mapped as sent by NAME; others as sent by an unknown
// sender (the default mappings). A readable difference is printed for each
// failure; the error says how many failed.
func RunTests(w io.Writer, set *Set, dir string) error {
	var cases []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		ext := strings.ToLower(filepath.Ext(p))
		if !d.IsDir() && (ext == ".hl7" || ext == ".er7" || ext == ".xml" && isCCDAFile(p)) {
			cases = append(cases, p)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("run mapping tests: %w", err)
	}
	sort.Strings(cases)
	failed := 0
	for _, c := range cases {
		name, _ := filepath.Rel(dir, c)
		if ok := runCase(w, set, c, name); !ok {
			failed++
		}
	}
	fmt.Fprintf(w, "%d test(s), %d failed\n", len(cases), failed)
	if len(cases) == 0 {
		return fmt.Errorf("run mapping tests: no *.hl7 or C-CDA *.xml test case under %s", dir)
	}
	if failed > 0 {
		return fmt.Errorf("run mapping tests: %d of %d failed", failed, len(cases))
	}
	return nil
}

// senderOf returns NAME for a case under .../senders/NAME/...
func senderOf(path string) string {
	parts := strings.Split(filepath.ToSlash(path), "/")
	for i := 0; i+2 < len(parts); i++ {
		if parts[i] == "senders" {
			return parts[i+1]
		}
	}
	return ""
}

func runCase(w io.Writer, set *Set, path, name string) bool {
	data, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(w, "FAIL %s: %v\n", name, err)
		return false
	}
	wantPath := strings.TrimSuffix(path, filepath.Ext(path)) + ".json"
	wantData, err := os.ReadFile(wantPath)
	if err != nil {
		fmt.Fprintf(w, "FAIL %s: no expected output %s (write it from `hiegw mappings test` dry-run output)\n", name, filepath.Base(wantPath))
		return false
	}
	var got bytes.Buffer
	if err := DryRun(&got, set, senderOf(path), data); err != nil {
		fmt.Fprintf(w, "FAIL %s: %v\n", name, err)
		return false
	}
	diffs, err := diffJSON(wantData, got.Bytes())
	if err != nil {
		fmt.Fprintf(w, "FAIL %s: %v\n", name, err)
		return false
	}
	if len(diffs) > 0 {
		fmt.Fprintf(w, "FAIL %s: %d difference(s) (- expected, + got)\n", name, len(diffs))
		for _, d := range diffs {
			fmt.Fprintf(w, "    %s\n", d)
		}
		return false
	}
	fmt.Fprintf(w, "ok   %s\n", name)
	return true
}

// diffJSON compares two JSON documents (or streams of documents) and returns
// one line per difference, named by its JSON path.
func diffJSON(want, got []byte) ([]string, error) {
	wv, err := decodeAll(want)
	if err != nil {
		return nil, fmt.Errorf("expected output: %w", err)
	}
	gv, err := decodeAll(got)
	if err != nil {
		return nil, fmt.Errorf("output: %w", err)
	}
	var out []string
	diffValue(&out, "$", any(wv), any(gv))
	return out, nil
}

func decodeAll(b []byte) ([]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var docs []any
	for {
		var v any
		if err := dec.Decode(&v); err == io.EOF {
			break
		} else if err != nil {
			return nil, err
		}
		docs = append(docs, v)
	}
	return docs, nil
}

func diffValue(out *[]string, path string, want, got any) {
	const maxDiffs = 50
	if len(*out) >= maxDiffs {
		return
	}
	switch w := want.(type) {
	case map[string]any:
		g, ok := got.(map[string]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: - %s  + %s", path, short(want), short(got)))
			return
		}
		keys := map[string]bool{}
		for k := range w {
			keys[k] = true
		}
		for k := range g {
			keys[k] = true
		}
		ks := make([]string, 0, len(keys))
		for k := range keys {
			ks = append(ks, k)
		}
		sort.Strings(ks)
		for _, k := range ks {
			wv, wok := w[k]
			gv, gok := g[k]
			p := path + "." + k
			switch {
			case !gok:
				*out = append(*out, fmt.Sprintf("%s: - %s  (missing)", p, short(wv)))
			case !wok:
				*out = append(*out, fmt.Sprintf("%s: + %s  (unexpected)", p, short(gv)))
			default:
				diffValue(out, p, wv, gv)
			}
		}
	case []any:
		g, ok := got.([]any)
		if !ok {
			*out = append(*out, fmt.Sprintf("%s: - %s  + %s", path, short(want), short(got)))
			return
		}
		n := max(len(w), len(g))
		for i := 0; i < n; i++ {
			p := fmt.Sprintf("%s[%d]", path, i)
			switch {
			case i >= len(g):
				*out = append(*out, fmt.Sprintf("%s: - %s  (missing)", p, short(w[i])))
			case i >= len(w):
				*out = append(*out, fmt.Sprintf("%s: + %s  (unexpected)", p, short(g[i])))
			default:
				diffValue(out, p, w[i], g[i])
			}
		}
	default:
		if !reflect.DeepEqual(want, got) {
			*out = append(*out, fmt.Sprintf("%s: - %s  + %s", path, short(want), short(got)))
		}
	}
}

func short(v any) string {
	b, _ := json.Marshal(v)
	s := string(b)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}

// isCCDAFile reports whether the file at p starts like a C-CDA document.
func isCCDAFile(p string) bool {
	f, err := os.Open(p)
	if err != nil {
		return false
	}
	defer f.Close()
	head := make([]byte, 64<<10)
	n, _ := io.ReadFull(f, head)
	return ccda.Detect(head[:n])
}

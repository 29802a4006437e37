package mapping

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/hl7"
)

// copyTree copies the files of src into dst (directories created as needed).
func copyTree(t testing.TB, src, dst string) {
	t.Helper()
	err := filepath.WalkDir(src, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		target := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(target, 0o755)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(target, data, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// setDir builds a mapping directory from the shipped default set and code
// tables plus the senders/ and codes/ of each overlay directory.
func setDir(t testing.TB, overlays ...string) string {
	t.Helper()
	dir := t.TempDir()
	copyTree(t, filepath.Join(mappingsDir, "default"), filepath.Join(dir, "default"))
	copyTree(t, filepath.Join(mappingsDir, "codes"), filepath.Join(dir, "codes"))
	for _, o := range overlays {
		for _, sub := range []string{"senders", "codes"} {
			if _, err := os.Stat(filepath.Join(o, sub)); err == nil {
				copyTree(t, filepath.Join(o, sub), filepath.Join(dir, sub))
			}
		}
	}
	return dir
}

// TestMappingFileTests runs the analysts' test cases beside the default
// mappings (mappings/default/tests/*.hl7 with *.json) through RunTests.
// -update rewrites the expected outputs from the current mappings.
func TestMappingFileTests(t *testing.T) {
	s := loadDefault(t)
	dir := filepath.Join(mappingsDir, "default", "tests")
	if *update {
		cases, _ := filepath.Glob(filepath.Join(dir, "*.hl7"))
		xml, _ := filepath.Glob(filepath.Join(dir, "*.xml"))
		for _, c := range append(cases, xml...) {
			data, _ := os.ReadFile(c)
			var out bytes.Buffer
			if err := DryRun(&out, s, "", data); err != nil {
				t.Fatalf("%s: %v", c, err)
			}
			if err := os.WriteFile(strings.TrimSuffix(c, filepath.Ext(c))+".json", out.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	var out bytes.Buffer
	if err := RunTests(&out, s, dir); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "6 test(s), 0 failed") || !strings.Contains(out.String(), "ok   ccda_ccd.xml") {
		t.Fatalf("unexpected summary:\n%s", out.String())
	}
}

// TestRunTestsReportsDifferences proves RunTests can fail: a changed
// expectation is reported with its JSON path.
func TestRunTestsReportsDifferences(t *testing.T) {
	s := loadDefault(t)
	dir := t.TempDir()
	src := filepath.Join(mappingsDir, "default", "tests")
	for _, n := range []string{"adt_a03.hl7", "adt_a03.json"} {
		data, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if n == "adt_a03.json" {
			data = bytes.Replace(data, []byte(`"finished"`), []byte(`"in-progress"`), 1)
		}
		os.WriteFile(filepath.Join(dir, n), data, 0o644)
	}
	var out bytes.Buffer
	err := RunTests(&out, s, dir)
	if err == nil {
		t.Fatal("RunTests passed with a wrong expectation")
	}
	if !strings.Contains(out.String(), `.status: - "in-progress"  + "finished"`) {
		t.Errorf("difference not shown by path:\n%s", out.String())
	}
}

// TestWorkedExample is the README's example: NORTHLAB's MRN is the second
// PID-3 repetition and its glucose code is local. The default mapping takes
// the wrong MRN and reports GLU as unmapped; the 10-line override file and the
// one-row code table fix both.
func TestWorkedExample(t *testing.T) {
	example := filepath.Join(mappingsDir, "examples", "northlab")
	msgFile := filepath.Join(example, "senders", "NORTHLAB", "glucose.hl7")
	data, err := os.ReadFile(msgFile)
	if err != nil {
		t.Fatal(err)
	}
	m, err := hl7.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	before, err := loadDefault(t).MapHL7("NORTHLAB", m)
	if err != nil {
		t.Fatal(err)
	}
	after, err := mustLoad(t, setDir(t, example)).MapHL7("NORTHLAB", m)
	if err != nil {
		t.Fatal(err)
	}

	pb, pa := before.Resources[0], after.Resources[0]
	if pb.Type() != "Patient" || pa.Type() != "Patient" {
		t.Fatal("Patient is not first")
	}
	if pb.ID() == pa.ID() {
		t.Error("the override did not change the patient id")
	}
	// the id is derived from the second repetition, as the hospital MRN
	if want := "urn:hiegw:aa:NHOSP|123456"; pa.ID() != stableID("NORTHLAB", "Patient", want) {
		t.Errorf("patient id not derived from %s", want)
	}
	if pb.ID() != stableID("NORTHLAB", "Patient", "urn:hiegw:aa:NLAB|88001") {
		t.Error("default patient id not derived from the first repetition")
	}

	obsCode := func(r *Result) map[string]any {
		for _, x := range r.Resources {
			if x.Type() == "Observation" {
				return x["code"].(map[string]any)["coding"].([]any)[0].(map[string]any)
			}
		}
		t.Fatal("no Observation")
		return nil
	}
	if c := obsCode(before); c["code"] != "GLU" || c["system"] != "urn:hiegw:cs:L" {
		t.Errorf("default: local code not kept as sent: %v", c)
	}
	if !hasUnmapped(before, "lab", "L", "GLU") {
		t.Errorf("default: GLU not reported unmapped: %+v", before.Unmapped)
	}
	if c := obsCode(after); c["code"] != "2345-7" || c["system"] != "http://loinc.org" {
		t.Errorf("override: glucose not mapped to LOINC: %v", c)
	}
	if hasUnmapped(after, "lab", "L", "GLU") {
		t.Errorf("override: GLU still reported unmapped")
	}
	// other senders are untouched by NORTHLAB's file
	other, err := mustLoad(t, setDir(t, example)).MapHL7("OTHERLAB", m)
	if err != nil {
		t.Fatal(err)
	}
	if other.Resources[0].ID() != stableID("OTHERLAB", "Patient", "urn:hiegw:aa:NLAB|88001") {
		t.Error("the override leaked to another sender")
	}

	// and the example's own test case passes through RunTests
	if *update {
		var exp bytes.Buffer
		if err := DryRun(&exp, mustLoad(t, setDir(t, example)), "NORTHLAB", data); err != nil {
			t.Fatal(err)
		}
		os.WriteFile(strings.TrimSuffix(msgFile, ".hl7")+".json", exp.Bytes(), 0o644)
	}
	var out bytes.Buffer
	if err := RunTests(&out, mustLoad(t, setDir(t, example)), filepath.Join(example, "senders")); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
}

func stableID(sender, typ string, keys ...string) string {
	return fhirStableID(sender, typ, keys...)
}

func hasUnmapped(r *Result, table, system, code string) bool {
	for _, u := range r.Unmapped {
		if u.Table == table && u.System == system && u.Code == code {
			return true
		}
	}
	return false
}

func mustLoad(t testing.TB, dir string) *Set {
	t.Helper()
	s, err := Load(dir)
	if err != nil {
		t.Fatalf("load %s: %v", dir, err)
	}
	return s
}

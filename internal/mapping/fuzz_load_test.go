package mapping

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
)

// FuzzCompileSet compiles whatever an analyst might save: a default file,
// a sender's file and a code table, beside the shipped common rules and
// code tables. The gateway compiles a changed set while it runs, so no file
// may make the compiler panic; every problem must be an *Error located in
// one of the set's files; and a set that compiles must map the shipped
// samples without a defect.
func FuzzCompileSet(f *testing.F) {
	var fixed []*srcFile
	read := func(name string) []byte {
		b, err := os.ReadFile(filepath.Join(mappingsDir, name))
		if err != nil {
			f.Fatal(err)
		}
		return b
	}
	fixed = append(fixed, newSrcFile("default/common.yaml", read("default/common.yaml")))
	csvs, _ := filepath.Glob(filepath.Join(mappingsDir, "codes", "*.csv"))
	for _, p := range csvs {
		fixed = append(fixed, newSrcFile("codes/"+filepath.Base(p), read("codes/"+filepath.Base(p))))
	}
	var msgs []*hl7.Message
	for _, name := range []string{"adt_a01.hl7", "adt_a40.hl7", "oru_r01.hl7", "vxu_v04.hl7"} {
		m, err := hl7.Parse(read("default/tests/" + name))
		if err != nil {
			f.Fatal(err)
		}
		msgs = append(msgs, m)
	}
	doc, err := ccda.Parse(read("default/tests/ccda_ccd.xml"), ccda.DefaultLimits)
	if err != nil {
		f.Fatal(err)
	}

	// the example overlays codes/northlab-lab.csv, here codes/fz.csv
	northlab := []byte(strings.ReplaceAll(string(read("examples/northlab/senders/northlab.yaml")), "northlab-lab", "fz"))
	northCSV := read("examples/northlab/codes/northlab-lab.csv")
	for _, name := range []string{"adt.yaml", "oru.yaml", "pharmacy.yaml", "vxu.yaml"} {
		f.Add(read("default/"+name), northlab, northCSV)
	}
	table := []byte("source_system,source_code,target_system,target_code,display\nlocal,GLU,http://loinc.org,2345-7,Glucose\n")
	f.Add(read("default/ccda.yaml"), []byte(""), table)
	f.Add([]byte(""), []byte("senders: FZ\nresources:\n  patient:\n    id: key(\"PID-3[2]\")\n"), table)

	f.Fuzz(func(t *testing.T, def, sender, table []byte) {
		files := append([]*srcFile{}, fixed...)
		files = append(files, newSrcFile("codes/fz.csv", table), newSrcFile("default/fz.yaml", def),
			newSrcFile("senders/fz.yaml", sender))
		s, err := compileSet("fz", files)
		if err != nil {
			checkLocated(t, err, files)
			return
		}
		for _, sender := range []string{"FZ", "OTHER"} {
			for _, m := range msgs {
				r, err := s.MapHL7(sender, m)
				noDefect(t, err)
				if err == nil {
					checkResult(t, r)
				}
			}
			r, err := s.MapCCDA(sender, doc)
			noDefect(t, err)
			if err == nil {
				checkResult(t, r)
			}
		}
	})
}

// checkLocated fails unless err joins *Errors, each naming one of files and
// a line of it, with a message.
func checkLocated(t *testing.T, err error, files []*srcFile) {
	t.Helper()
	lines := map[string]int{}
	for _, f := range files {
		lines[f.name] = len(f.lines)
	}
	list := []error{err}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		list = j.Unwrap()
	}
	for _, e := range list {
		var le *Error
		if !errors.As(e, &le) {
			t.Fatalf("not a located error: %v", e)
		}
		n, ok := lines[le.File]
		switch {
		case !ok:
			t.Fatalf("error names no file of the set: %v", le)
		case le.Line < 0 || le.Line > n+1 || le.Column < 0:
			t.Fatalf("error at line %d column %d of a file of %d lines: %v", le.Line, le.Column, n, le)
		case strings.TrimSpace(le.Msg) == "":
			t.Fatalf("error without a message: %+v", le)
		}
	}
}

package mpi

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const benchDir = "../../../shared/mpi-bench"

func benchFile(t testing.TB, name string) string {
	t.Helper()
	p := filepath.Join(benchDir, name)
	if _, err := os.Stat(p); err != nil {
		t.Skipf("patient-matching benchmark not available at %s: %v", benchDir, err)
	}
	return p
}

// TestEvalRun runs Eval on the files named in MPI_EVAL (comma-separated runs,
// files within a run joined by '+'), printing its lines. It is a developer
// tool for reproducing the README figures and is skipped without MPI_EVAL.
func TestEvalRun(t *testing.T) {
	spec := os.Getenv("MPI_EVAL")
	if spec == "" {
		t.Skip("set MPI_EVAL=febrl_dataset1.csv,febrl_dataset4a.csv+febrl_dataset4b.csv to run")
	}
	for _, run := range strings.Split(spec, ",") {
		var files []string
		for _, f := range strings.Split(run, "+") {
			files = append(files, benchFile(t, f))
		}
		var buf bytes.Buffer
		if err := Eval(context.Background(), &buf, files, EvalOptions{Estimate: os.Getenv("MPI_EM") != ""}); err != nil {
			t.Fatal(err)
		}
		t.Log(strings.TrimSpace(buf.String()))
	}
}

// TestScaleRun runs the scale check with MPI_SCALE patients (developer tool).
func TestScaleRun(t *testing.T) {
	n := os.Getenv("MPI_SCALE")
	if n == "" {
		t.Skip("set MPI_SCALE=100000 to run")
	}
	var size int
	for _, c := range n {
		size = size*10 + int(c-'0')
	}
	var buf bytes.Buffer
	if err := Eval(context.Background(), &buf, nil, EvalOptions{Scale: size, Queries: 20000, Seed: 1}); err != nil {
		t.Fatal(err)
	}
	t.Log(strings.TrimSpace(buf.String()))
}

// TestAccuracyFEBRL holds the matcher to the accuracy measured with the
// default settings (see README.md), with a margin.
func TestAccuracyFEBRL(t *testing.T) {
	cases := []struct {
		files                        []string
		precision, recall, f1, revPc float64
	}{
		// measured: 1.0000 0.9880 0.9940 0.50%
		{[]string{"febrl_dataset1.csv"}, 0.995, 0.97, 0.98, 1.5},
		// measured: 1.0000 0.9740 0.9868 0.98%
		{[]string{"febrl_dataset3.csv"}, 0.995, 0.96, 0.975, 2},
		// measured: 1.0000 0.9868 0.9934 0.63%
		{[]string{"febrl_dataset4a.csv", "febrl_dataset4b.csv"}, 0.995, 0.97, 0.98, 1.5},
	}
	for _, c := range cases {
		var paths []string
		for _, f := range c.files {
			paths = append(paths, benchFile(t, f))
		}
		r, err := evalFiles(context.Background(), paths, DefaultConfig())
		if err != nil {
			t.Fatal(err)
		}
		t.Log(r)
		revPc := 100 * float64(r.Reviews) / float64(r.Records)
		if r.Precision < c.precision || r.Recall < c.recall || r.F1 < c.f1 || revPc > c.revPc {
			t.Errorf("%v: precision %.4f (min %.3f) recall %.4f (min %.3f) f1 %.4f (min %.3f) review %.2f%% (max %.1f%%)",
				c.files, r.Precision, c.precision, r.Recall, c.recall, r.F1, c.f1, revPc, c.revPc)
		}
	}
}

func TestEvalOutput(t *testing.T) {
	p := benchFile(t, "febrl_dataset1.csv")
	var buf bytes.Buffer
	if err := Eval(context.Background(), &buf, []string{p}, EvalOptions{Scale: 2000, Queries: 200, Seed: 3}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 2 {
		t.Fatalf("want an accuracy line and a scale line, got %q", buf.String())
	}
	for _, want := range []string{"precision=", "recall=", "f1=", "review=", "records_per_s=", "peak_heap_mb="} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("accuracy line lacks %s: %s", want, lines[0])
		}
	}
	for _, want := range []string{"scale patients=2000", "queries=200", "records_per_s=", "peak_heap_mb="} {
		if !strings.Contains(lines[1], want) {
			t.Errorf("scale line lacks %s: %s", want, lines[1])
		}
	}
	if err := Eval(context.Background(), &buf, []string{p, p, p}, EvalOptions{}); err == nil {
		t.Error("three files accepted")
	}
	if err := Eval(context.Background(), &buf, []string{"testdata/missing.csv"}, EvalOptions{}); err == nil {
		t.Error("missing file accepted")
	}
}

func TestLoadFEBRLRejectsBadRecID(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.csv")
	data := "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id\n" +
		"rec-1-org, a, b, 1, c, d, e, 2000, nsw, 19700101, 1234567\n" +
		"person-2, a, b, 1, c, d, e, 2000, nsw, 19700101, 1234567\n"
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err := LoadFEBRL(p)
	if err == nil || !strings.Contains(err.Error(), "line 3") {
		t.Fatalf("want an error naming line 3, got %v", err)
	}
}

func TestScaleCheckSmall(t *testing.T) {
	r, err := ScaleCheck(context.Background(), DefaultConfig(), 5000, 1000, 7)
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if r.Linked+r.Reviews+r.Created != 1000 {
		t.Errorf("outcomes do not add up: %+v", r)
	}
	// Half the queries are altered copies; nearly all must be found, and
	// no new person may be linked to an indexed one.
	if r.CorrectLinks < 450 || r.WrongLinks != 0 {
		t.Errorf("synthetic duplicates: %+v", r)
	}
}

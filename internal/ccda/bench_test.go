package ccda

import (
	"os"
	"path/filepath"
	"testing"
)

// Benchmarks on a ~100 KB and a ~1 MB vendor document: Parse alone, and
// Parse plus ToFHIR. docs/s is reported next to ns/op.
func benchDoc(b *testing.B, name string, mapToo bool) {
	data, err := os.ReadFile(filepath.Join(corpusDir, name))
	if err != nil {
		b.Skipf("public corpus not found: %v", err)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		d, err := Parse(data, DefaultLimits)
		if err != nil {
			b.Fatal(err)
		}
		if mapToo {
			d.ToFHIR("bench")
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "docs/s")
}

func BenchmarkParse100KB(b *testing.B)       { benchDoc(b, "emerge_patient_0.xml", false) }
func BenchmarkParse1MB(b *testing.B)         { benchDoc(b, "vitera_ccd_large.xml", false) }
func BenchmarkParseToFHIR100KB(b *testing.B) { benchDoc(b, "emerge_patient_0.xml", true) }
func BenchmarkParseToFHIR1MB(b *testing.B)   { benchDoc(b, "vitera_ccd_large.xml", true) }
func BenchmarkParseToFHIR2MB(b *testing.B)   { benchDoc(b, "onc_discharge_summary_large_bom.xml", true) }

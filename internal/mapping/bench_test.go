package mapping

import (
	"bytes"
	"fmt"
	lenaten "github.com/lenaten/hl7"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
)

// oru20 is an ORU^R01 with one OBR and 20 numeric OBX.
func oru20() []byte {
	var b strings.Builder
	b.WriteString("MSH|^~\\&|LAB|GHH LAB|HIE|HIEGW|20240111101500-0500||ORU^R01^ORU_R01|B1|P|2.5.1\r")
	b.WriteString("PID|1||555001^^^GHH^MR~999887777^^^USSSA^SS||Example^Pat^Q^Jr||19700301|M|||12 Main St^^Springfield^IL^62701^USA^H\r")
	b.WriteString("PV1|1|O|CLINIC1||||||||||||||||V9100^^^GHH^VN\r")
	b.WriteString("ORC|RE|PO100^GHH|FO200^GHHLAB\r")
	b.WriteString("OBR|1|PO100^GHH|FO200^GHHLAB|24323-8^Comprehensive metabolic panel^LN|||20240111080000-0500|||||||||||||||20240111100000-0500|||F\r")
	for i := 1; i <= 20; i++ {
		fmt.Fprintf(&b, "OBX|%d|NM|%d-%d^Analyte %d^LN||%d.%d|mg/dL^^UCUM|70-99|N|||F|||20240111080000-0500\r", i, 2000+i, i%10, i, 60+i, i)
	}
	return []byte(b.String())
}

func benchInputs(b *testing.B) map[string][]byte {
	adt, err := os.ReadFile(filepath.Join(corpusDir, "adt", "adt_a01_v251_fhirconv_ghh.hl7"))
	if err != nil {
		b.Skipf("shared corpus not found: %v", err)
	}
	return map[string][]byte{"ADT_A01": adt, "ORU_R01_20OBX": oru20()}
}

// BenchmarkParse is the yardstick: parsing the same messages with internal/hl7.
func BenchmarkParse(b *testing.B) {
	for _, name := range []string{"ADT_A01", "ORU_R01_20OBX"} {
		data := benchInputs(b)[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if _, err := hl7.Parse(data); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkParseBaseline parses the same messages with github.com/lenaten/hl7,
// the project's named HL7 v2 library and the parser benchmarks' baseline:
// what "the parse stage" costs with a parser that builds the whole tree.
func BenchmarkParseBaseline(b *testing.B) {
	for _, name := range []string{"ADT_A01", "ORU_R01_20OBX"} {
		// lenaten reads only CR segment ends, as MLLP carries them, and no
		// byte-order mark (the corpus file has one).
		data := bytes.TrimPrefix(benchInputs(b)[name], []byte("\xef\xbb\xbf"))
		data = bytes.ReplaceAll(bytes.ReplaceAll(data, []byte("\r\n"), []byte("\r")), []byte("\n"), []byte("\r"))
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			// lenaten's Parse needs two spare bytes of capacity (see DEPENDENCIES.md).
			buf := make([]byte, len(data), len(data)+2)
			for b.Loop() {
				copy(buf, data)
				if err := lenaten.NewMessage(buf).Parse(); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkMap measures mapping alone (the message is parsed once).
func BenchmarkMap(b *testing.B) {
	s := loadDefault(b)
	for _, name := range []string{"ADT_A01", "ORU_R01_20OBX"} {
		data := benchInputs(b)[name]
		m, err := hl7.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if _, err := s.MapHL7("BENCH", m); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkLoad measures reading and compiling the whole shipped set.
func BenchmarkLoad(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(mappingsDir); err != nil {
			b.Fatal(err)
		}
	}
}

func TestOru20Maps(t *testing.T) {
	s := loadDefault(t)
	m, err := hl7.Parse(oru20())
	if err != nil {
		t.Fatal(err)
	}
	r, err := s.MapHL7("BENCH", m)
	if err != nil {
		t.Fatal(err)
	}
	// Patient, Encounter, 20 Observations, DiagnosticReport
	if len(r.Resources) != 23 || len(r.Unmapped) != 0 || len(r.Warnings) != 0 {
		t.Fatalf("got %d resources, unmapped %v, warnings %v", len(r.Resources), r.Unmapped, r.Warnings)
	}
	if res := r.Resources[22]["result"].([]any); len(res) != 20 {
		t.Errorf("report has %d results", len(res))
	}
}

// BenchmarkParseAndMap is the gateway's per-message cost in steady state:
// one hl7.Message reused with Reset for each incoming message, then mapped.
func BenchmarkParseAndMap(b *testing.B) {
	s := loadDefault(b)
	for _, name := range []string{"ADT_A01", "ORU_R01_20OBX"} {
		data := benchInputs(b)[name]
		m, err := hl7.Parse(data)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			cpu := processCPU()
			for b.Loop() {
				if err := m.Reset(data); err != nil {
					b.Fatal(err)
				}
				if _, err := s.MapHL7("BENCH", m); err != nil {
					b.Fatal(err)
				}
			}
			reportCPU(b, cpu)
		})
	}
}

// BenchmarkMapCCDA maps a 100 KB C-CDA document (parsed once) with the
// default mapping files, and, for comparison, with internal/ccda's Go
// converter.
func BenchmarkMapCCDA(b *testing.B) {
	data, err := os.ReadFile(filepath.Join(ccdaCorpusDir, "emerge_patient_0.xml"))
	if err != nil {
		b.Skipf("shared corpus not found: %v", err)
	}
	doc, err := ccda.Parse(data, ccda.DefaultLimits)
	if err != nil {
		b.Fatal(err)
	}
	s := loadDefault(b)
	b.Run("files", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			if _, err := s.MapCCDA("BENCH", doc); err != nil {
				b.Fatal(err)
			}
		}
		reportCPU(b, cpu)
	})
	b.Run("converter", func(b *testing.B) {
		b.ReportAllocs()
		cpu := processCPU()
		for b.Loop() {
			doc.ToFHIR("BENCH")
		}
		reportCPU(b, cpu)
	})
}

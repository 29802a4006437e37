package hl7

import (
	"os"
	"path/filepath"
	"testing"

	lenaten "github.com/lenaten/hl7"
)

// benchMessages are the three benchmark inputs in testdata/bench (see its README.md).
var benchMessages = []string{"adt_a01", "mixed", "oru_r01"}

func loadBench(b *testing.B, name string) []byte {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "bench", name+".hl7"))
	if err != nil {
		b.Fatalf("read benchmark message: %v", err)
	}
	return raw
}

// workload reads what the brief measures: PID-3, PID-5 and every OBX-5, as strings.
func workload(m *Message) int {
	n := len(m.Get("PID-3")) + len(m.Get("PID-5"))
	for i := range m.SegmentCount() {
		s := m.Segment(i)
		if s.Name() == "OBX" {
			n += len(s.Field(5).Rep(1).Text())
		}
	}
	return n
}

// BenchmarkWorkload: parse plus PID-3, PID-5 and every OBX-5. "parse" builds a new Message per message,
// "reset" reuses one, "lenaten" is github.com/lenaten/hl7 doing the same work.
func BenchmarkWorkload(b *testing.B) {
	for _, name := range benchMessages {
		raw := loadBench(b, name)
		b.Run(name+"/parse", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				m, err := Parse(raw)
				if err != nil {
					b.Fatal(err)
				}
				if workload(m) == 0 {
					b.Fatal("nothing read")
				}
			}
		})
		b.Run(name+"/reset", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			var m Message
			for b.Loop() {
				if err := m.Reset(raw); err != nil {
					b.Fatal(err)
				}
				if workload(&m) == 0 {
					b.Fatal("nothing read")
				}
			}
		})
		b.Run(name+"/lenaten", func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			// lenaten's Parse needs two spare bytes of capacity (see DEPENDENCIES.md).
			buf := make([]byte, len(raw), len(raw)+2)
			for b.Loop() {
				copy(buf, raw)
				m := lenaten.NewMessage(buf)
				if err := m.Parse(); err != nil {
					b.Fatal(err)
				}
				p3, _ := m.Find("PID.3")
				p5, _ := m.Find("PID.5")
				obx, _ := m.FindAll("OBX.5")
				if len(p3)+len(p5)+len(obx) == 0 {
					b.Fatal("nothing read")
				}
			}
		})
	}
}

// BenchmarkParse measures indexing alone (Reset, no values read).
func BenchmarkParse(b *testing.B) {
	for _, name := range benchMessages {
		raw := loadBench(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			var m Message
			for b.Loop() {
				if err := m.Reset(raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkValidate measures a full decode check of every field.
func BenchmarkValidate(b *testing.B) {
	for _, name := range benchMessages {
		raw := loadBench(b, name)
		m, err := Parse(raw)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(raw)))
			b.ReportAllocs()
			for b.Loop() {
				_ = m.Validate()
			}
		})
	}
}

// BenchmarkNewACK builds an AE with one ERR segment.
func BenchmarkNewACK(b *testing.B) {
	h, d, err := ParseHeader(loadBench(b, "mixed"))
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = NewACK(h, d, AppError, "ACK1", ackTime, ErrorDetail{Location: "PID^1^5", Code: "101", Message: "missing"})
	}
}

package mapping

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
)

// largeORU is an ORU^R01 with obx results under each of obrs orders, each
// result with a note, and a PID-3 of reps identifiers (the MRN last).
func largeORU(obrs, obx, reps int) []byte {
	var b strings.Builder
	b.WriteString("MSH|^~\\&|LAB|GHH LAB|HIE|HIEGW|20240111101500-0500||ORU^R01^ORU_R01|B1|P|2.5.1\r")
	b.WriteString("PID|1||")
	for i := range reps - 1 {
		fmt.Fprintf(&b, "%d^^^OTHER%d^PI~", i, i)
	}
	b.WriteString("555001^^^GHH^MR||Example^Pat||19700301|M\r")
	b.WriteString("PV1|1|O|CLINIC1||||||||||||||||V9100^^^GHH^VN\r")
	for o := range obrs {
		fmt.Fprintf(&b, "ORC|RE|PO%d^GHH|FO%d^GHHLAB\r", o, o)
		fmt.Fprintf(&b, "OBR|%d|PO%d^GHH|FO%d^GHHLAB|24323-8^CMP^LN|||20240111080000-0500|||||||||||||||20240111100000-0500|||F\r", o+1, o, o)
		for i := 1; i <= obx; i++ {
			fmt.Fprintf(&b, "OBX|%d|NM|%d-%d^Analyte %d^LN||%d.%d|mg/dL^^UCUM|70-99|N|||F|||20240111080000-0500\r", i, 2000+i, i%10, i, 60+i, i)
			fmt.Fprintf(&b, "NTE|1||note %d.%d\r", o, i)
		}
	}
	return []byte(b.String())
}

// mapJSON maps raw and returns the result (or the error) as JSON.
func mapJSON(t *testing.T, s *Set, raw []byte) string {
	t.Helper()
	m, err := hl7.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return resultJSON(t)(s.MapHL7("X", m))
}

// resultJSON returns a function that gives a mapping's result, or its
// error, as JSON.
func resultJSON(t *testing.T) func(*Result, error) string {
	return func(r *Result, err error) string {
		t.Helper()
		noDefect(t, err)
		if err != nil {
			return "error: " + err.Error()
		}
		out, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		return string(out)
	}
}

// mapDocJSON maps a C-CDA document and returns the result (or the error)
// as JSON.
func mapDocJSON(t *testing.T, s *Set, raw []byte) string {
	t.Helper()
	doc, err := ccda.Parse(raw, ccda.DefaultLimits)
	if err != nil {
		return "parse error: " + err.Error()
	}
	return resultJSON(t)(s.MapCCDA("X", doc))
}

// largeCCDA is a corpus document whose results section holds n copies of
// its first entry, three by three with the same ids, as a document that
// lists one fact several times, or reuses an identifier, does.
func largeCCDA(t testing.TB, n int) []byte {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(ccdaCorpusDir, "emerge_patient_0.xml"))
	if err != nil {
		t.Skipf("shared corpus not found: %v", err)
	}
	doc := etree.NewDocument()
	if err := doc.ReadFromBytes(data); err != nil {
		t.Fatal(err)
	}
	var section *etree.Element
	for _, sec := range doc.FindElements("//section") {
		for _, tid := range sec.SelectElements("templateId") {
			if strings.HasPrefix(tid.SelectAttrValue("root", ""), "2.16.840.1.113883.10.20.22.2.3") {
				section = sec
			}
		}
	}
	if section == nil || section.SelectElement("entry") == nil {
		t.Fatal("no results section with an entry in emerge_patient_0.xml")
	}
	entry := section.SelectElement("entry")
	for _, e := range section.SelectElements("entry") {
		section.RemoveChild(e)
	}
	for i := range n {
		c := entry.Copy()
		k := i - i%3
		for _, id := range c.FindElements(".//id") {
			id.CreateAttr("root", fmt.Sprintf("1.2.3.4.%d", k))
		}
		section.AddChild(c)
	}
	out, err := doc.WriteToBytes()
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestIndexesMapAsScans: a large message is searched through indexes (of
// segments by name, of resources by rule) instead of by scanning. Every
// corpus message, and a large ORU, must map the same both ways.
func TestIndexesMapAsScans(t *testing.T) {
	s := loadDefault(t)
	inputs := map[string][]byte{"large ORU": largeORU(3, 40, 30)}
	for _, f := range goldenInputs(t) {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		b, err := hl7.SplitBatch(data)
		if err != nil {
			inputs[f] = data
			continue
		}
		for i, msg := range b.Messages {
			inputs[fmt.Sprintf("%s#%d", f, i+1)] = msg
		}
	}
	docs := map[string][]byte{"large C-CDA": largeCCDA(t, 60)}
	paths, _ := filepath.Glob(ccdaCorpusDir + "/*.xml")
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		docs[p] = data
	}
	for name, raw := range docs {
		t.Run(filepath.Base(name), func(t *testing.T) { compareIndexed(t, func() string { return mapDocJSON(t, s, raw) }) })
	}
	for name, raw := range inputs {
		t.Run(filepath.Base(name), func(t *testing.T) { compareIndexed(t, func() string { return mapJSON(t, s, raw) }) })
	}
	if n := strings.Count(mapJSON(t, s, largeORU(3, 40, 30)), `"resourceType":"Observation"`); n != 120 {
		t.Errorf("large ORU: %d observations, want 120", n)
	}
}

// BenchmarkMapCCDALarge maps documents of 100 and 1,000 result organizers
// (largeCCDA): the cost per result should not grow with the document.
func BenchmarkMapCCDALarge(b *testing.B) {
	s := loadDefault(b)
	for _, n := range []int{100, 1000} {
		doc, err := ccda.Parse(largeCCDA(b, n), ccda.DefaultLimits)
		if err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("%d_results", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.MapCCDA("BENCH", doc); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(n), "ns/item")
		})
	}
}

// BenchmarkMapLarge maps ORU^R01 messages of 100 and 4,000 results (with a
// note each), and an ADT-like PID-3 of 4,000 repetitions: the cost per
// result should not grow with the message.
func BenchmarkMapLarge(b *testing.B) {
	s := loadDefault(b)
	for _, c := range []struct {
		name           string
		obx, reps, per int
	}{{"ORU_100OBX", 100, 1, 100}, {"ORU_4000OBX", 4000, 1, 4000}, {"PID3_4000reps", 1, 4000, 4000}} {
		m, err := hl7.Parse(largeORU(1, c.obx, c.reps))
		if err != nil {
			b.Fatal(err)
		}
		b.Run(c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := s.MapHL7("BENCH", m); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(c.per), "ns/item")
		})
	}
}

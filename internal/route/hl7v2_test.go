package route

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/hl7"
)

func TestAddEnterpriseID(t *testing.T) {
	cases := []struct {
		name, in, id, aa, want string
	}{
		{"appends a repetition", "MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||123^^^H^MR||DOE^J\r", "E1", "HIEGW",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||123^^^H^MR~E1^^^HIEGW^PI||DOE^J\r"},
		{"empty PID-3", "MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\nPID|1|||\n", "E1", "HIEGW",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\nPID|1||E1^^^HIEGW^PI|\n"},
		{"short PID", "MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\r\nPID|1\r\nPV1|1|I\r\n", "E1", "HIEGW",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\r\nPID|1||E1^^^HIEGW^PI\r\nPV1|1|I\r\n"},
		{"escapes values", "MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||1\r", "E|1^x", "A&B",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||1~E\\F\\1\\S\\x^^^A\\T\\B^PI\r"},
		{"other delimiters", "MSH#:*!@#A#F######ADT:A01#1#P#2.5\rPID#1##9:::H:MR\r", "E1", "HIEGW",
			"MSH#:*!@#A#F######ADT:A01#1#P#2.5\rPID#1##9:::H:MR*E1:::HIEGW:PI\r"},
		{"replaces an earlier enterprise id", "MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||OLD^^^HIEGW^PI~9^^^H^MR|x\r", "E2", "HIEGW",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||9^^^H^MR~E2^^^HIEGW^PI|x\r"},
		{"every PID", "MSH|^~\\&|A|F|||||ADT^A40|1|P|2.5\rPID|1||1\rMRG|2\rPID|2||3\r", "E1", "X",
			"MSH|^~\\&|A|F|||||ADT^A40|1|P|2.5\rPID|1||1~E1^^^X^PI\rMRG|2\rPID|2||3~E1^^^X^PI\r"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := AddEnterpriseID([]byte(c.in), c.id, c.aa)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != c.want {
				t.Errorf("got\n%q\nwant\n%q", got, c.want)
			}
			again, err := AddEnterpriseID(got, c.id, c.aa)
			if err != nil || !bytes.Equal(again, got) {
				t.Errorf("not idempotent:\n%q", again)
			}
		})
	}
}

// A PID wrapped with a bare LF inside it (which the HL7 reader keeps as data)
// gets the id in its real PID-3, and mixed terminators, blank lines and a
// byte-order mark stay as they were.
func TestAddEnterpriseIDWrappedAndMixed(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1\nX||123^^^H^MR||DOE\r",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1\nX||123^^^H^MR~E1^^^HIEGW^PI||DOE\r"},
		{"\ufeffMSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\r\n\r\nPID|1||1\nPV1|1\r",
			"\ufeffMSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\r\n\r\nPID|1||1~E1^^^HIEGW^PI\nPV1|1\r"},
		{"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||E0^^^HIEGW^PI~9^^^H^MR~E0^^^HIEGW^PI",
			"MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||9^^^H^MR~E1^^^HIEGW^PI"},
	} {
		got, err := AddEnterpriseID([]byte(c.in), "E1", "HIEGW")
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("got\n%q\nwant\n%q", got, c.want)
		}
		m, err := hl7.Parse(got)
		if err != nil {
			t.Fatal(err)
		}
		if v, _ := m.Query("PID-3[*].1"); v[len(v)-1] != "E1" {
			t.Errorf("PID-3 repetitions %q", v)
		}
	}
}

func TestAddEnterpriseIDRefuses(t *testing.T) {
	for _, c := range []struct {
		in   string
		want error
	}{
		{"<ClinicalDocument/>", ErrNotHL7},
		{"", ErrNotHL7},
		{"garbage MSH|^~\\&|", ErrNotHL7},
		{"MSH|^~\\&|A|F|||||ORM^O01|1|P|2.5\rORC|NW\r", ErrNoPID},
	} {
		if _, err := AddEnterpriseID([]byte(c.in), "E", "H"); !errors.Is(err, c.want) {
			t.Errorf("%q: got %v, want %v", c.in, err, c.want)
		}
	}
}

// Every corpus message with a PID re-encodes to a message that parses, keeps
// every other segment byte for byte, and carries the id in PID-3.
func TestAddEnterpriseIDCorpus(t *testing.T) {
	root := filepath.Join("..", "..", "..", "shared", "corpus", "hl7v2")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("public corpus not found at %s", root)
	}
	n := 0
	for _, dir := range []string{"adt", "oru", "other"} {
		filepath.WalkDir(filepath.Join(root, dir), func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			raw, _ := os.ReadFile(path)
			m, err := hl7.Parse(raw)
			if err != nil || len(m.Segments("PID")) == 0 || bytes.Count(raw, []byte("MSH")) != 1 {
				return nil
			}
			out, err := AddEnterpriseID(raw, "ENT-42", "HIEGW")
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return nil
			}
			m2, err := hl7.Parse(out)
			if err != nil {
				t.Errorf("%s: re-encoded message does not parse: %v", path, err)
				return nil
			}
			if m.SegmentCount() != m2.SegmentCount() {
				t.Errorf("%s: %d segments became %d", path, m.SegmentCount(), m2.SegmentCount())
				return nil
			}
			for i := 0; i < m.SegmentCount(); i++ {
				a, b := m.Segment(i), m2.Segment(i)
				if a.Name() != "PID" {
					if !bytes.Equal(a.Raw(), b.Raw()) {
						t.Errorf("%s: segment %d (%s) changed", path, i+1, a.Name())
					}
					continue
				}
				f := b.Field(3)
				last := f.Rep(f.RepCount())
				if last.Component(1).String() != "ENT-42" || last.Component(4).String() != "HIEGW" || last.Component(5).String() != "PI" {
					t.Errorf("%s: PID-3 does not end with the enterprise id", path)
				}
				for fn := 1; fn <= max(a.FieldCount(), b.FieldCount()); fn++ {
					if fn != 3 && !bytes.Equal(a.Field(fn).Raw(), b.Field(fn).Raw()) {
						t.Errorf("%s: PID-%d changed", path, fn)
					}
				}
			}
			n++
			return nil
		})
	}
	if n < 20 {
		t.Errorf("only %d corpus messages checked", n)
	}
	t.Logf("%d corpus messages re-encoded", n)

}

// FuzzAddEnterpriseID: whatever the input, no panic; a result re-encodes to
// itself and keeps every segment but PID.
func FuzzAddEnterpriseID(f *testing.F) {
	for _, name := range []string{"adt_a01.hl7", "oru_r01.hl7"} {
		if b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hl7", name)); err == nil {
			f.Add(b, "ENT-1")
		}
	}
	f.Add([]byte("MSH|^~\\&|A|F|||||ADT^A01|1|P|2.5\rPID|1||1\r"), "E|^~\\&")
	f.Add([]byte("MSH#:*!@#A\nPID#\n"), "x")
	f.Fuzz(func(t *testing.T, raw []byte, id string) {
		out, err := AddEnterpriseID(raw, id, "HIEGW")
		if err != nil {
			return
		}
		again, err := AddEnterpriseID(out, id, "HIEGW")
		if err != nil {
			t.Fatalf("re-encoding failed: %v", err)
		}
		if !bytes.Equal(again, out) {
			t.Fatalf("not idempotent:\n%q\n%q", out, again)
		}
		if strings.Count(string(out), "\r")+strings.Count(string(out), "\n") != strings.Count(string(raw), "\r")+strings.Count(string(raw), "\n") {
			t.Fatalf("segment terminators changed")
		}
	})
}

// BenchmarkAddEnterpriseID re-encodes the 1.6 KB sample ADT^A01 for an hl7v2 subscriber.
func BenchmarkAddEnterpriseID(b *testing.B) {
	raw, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hl7", "adt_a01.hl7"))
	if err != nil {
		b.Skip(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		if _, err := AddEnterpriseID(raw, "ENT-42", "HIEGW"); err != nil {
			b.Fatal(err)
		}
	}
}

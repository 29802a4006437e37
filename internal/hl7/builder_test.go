package hl7

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"
)

func mustSet(t testing.TB, b *Builder, path, text string) {
	t.Helper()
	if err := b.Set(path, text); err != nil {
		t.Fatalf("Set(%s): %v", path, err)
	}
}

// header sets the MSH fields Validate requires.
func header(t testing.TB, b *Builder) {
	t.Helper()
	for _, kv := range [][2]string{{"MSH-9.1", "ADT"}, {"MSH-9.2", "A08"}, {"MSH-10", "C1"}, {"MSH-11", "P"}, {"MSH-12", "2.5.1"}} {
		mustSet(t, b, kv[0], kv[1])
	}
}

func mustAdd(t testing.TB, b *Builder, name string) int {
	t.Helper()
	n, err := b.Add(name)
	if err != nil {
		t.Fatalf("Add(%s): %v", name, err)
	}
	return n
}

// TestBuilderNew builds a message from nothing, compares its bytes and reads every value back.
func TestBuilderNew(t *testing.T) {
	b := NewBuilder(DefaultDelimiters)
	mustSet(t, b, "MSH-3", "HIEGW")
	mustSet(t, b, "MSH-9.1", "ADT")
	mustSet(t, b, "MSH-9.2", "A01")
	mustSet(t, b, "MSH-10", "C1")
	mustSet(t, b, "MSH-11", "P")
	mustSet(t, b, "MSH-12", "2.5.1")
	mustAdd(t, b, "PID")
	mustSet(t, b, "PID-3[2].1", "E|1")
	mustSet(t, b, "PID-3[2].4.2", "1.2&3")
	mustSet(t, b, "PID-5.1", "O'Brien^Smith")
	mustSet(t, b, "PID-5.2", "Zoë")
	if n := mustAdd(t, b, "OBX"); n != 1 {
		t.Errorf("first OBX is occurrence %d", n)
	}
	if n := mustAdd(t, b, "OBX"); n != 2 {
		t.Errorf("second OBX is occurrence %d", n)
	}
	mustSet(t, b, "OBX[2]-5", "line one\nline two ~ \\ \r end")
	want := "MSH|^~\\&|HIEGW||||||ADT^A01|C1|P|2.5.1\r" +
		"PID|||~E\\F\\1^^^&1.2\\T\\3||O'Brien\\S\\Smith^Zoë\r" +
		"OBX\r" +
		"OBX|||||line one\\.br\\line two \\R\\ \\E\\ \\X0D\\ end\r"
	got := b.Bytes()
	if string(got) != want {
		t.Fatalf("bytes\n%q\nwant\n%q", got, want)
	}
	if b.Len() != len(got) {
		t.Errorf("Len %d, Bytes %d", b.Len(), len(got))
	}
	m, err := Parse(got)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	for path, text := range map[string]string{
		"MSH-3": "HIEGW", "MSH-9.2": "A01", "MSH-12": "2.5.1",
		"PID-3[2].1": "E|1", "PID-3[2].4.2": "1.2&3", "PID-3[1]": "", "PID-5.1": "O'Brien^Smith", "PID-5.2": "Zoë",
		"OBX[2]-5": "line one\nline two ~ \\ \r end", "OBX[1]-5": "",
	} {
		if got := m.Get(path); got != text {
			t.Errorf("%s = %q, want %q", path, got, text)
		}
	}
	if m.Get("MSH-2") != "^~\\&" || m.Delimiters() != DefaultDelimiters {
		t.Errorf("MSH-1/MSH-2 changed: %q", m.Get("MSH-2"))
	}
}

// TestBuilderOverwrite: setting a value again replaces it in place, longer or shorter, in any segment.
func TestBuilderOverwrite(t *testing.T) {
	b := NewBuilder(Delimiters{})
	mustAdd(t, b, "PID")
	mustAdd(t, b, "PV1")
	mustSet(t, b, "PID-5.1", "DOE")
	mustSet(t, b, "PID-5.2", "JOHN")
	mustSet(t, b, "PV1-2", "I")
	mustSet(t, b, "PID-5.1", "MUCH-LONGER-NAME")
	mustSet(t, b, "PV1-2", "")
	mustSet(t, b, "PID-5.2", "J")
	mustSet(t, b, "MSH-4", "FAC")
	want := "MSH|^~\\&||FAC\rPID|||||MUCH-LONGER-NAME^J\rPV1||\r"
	if got := string(b.Bytes()); got != want {
		t.Errorf("got\n%q\nwant\n%q", got, want)
	}
}

func TestBuilderOtherDelimiters(t *testing.T) {
	d := Delimiters{Field: '#', Component: ':', Repetition: '*', Escape: '!', Subcomponent: '@', Truncation: '%'}
	b := NewBuilder(d)
	if b.Delimiters() != d {
		t.Fatalf("delimiters %+v", b.Delimiters())
	}
	mustAdd(t, b, "NTE")
	text := "a#b:c*d!e@f%g|^~\\&"
	mustSet(t, b, "NTE-3[2].2.2", text)
	m, err := Parse(b.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if m.Delimiters() != d {
		t.Errorf("parsed delimiters %+v", m.Delimiters())
	}
	if got := m.Get("NTE-3[2].2.2"); got != text {
		t.Errorf("got %q", got)
	}
	// '.' as a delimiter: a newline cannot be written \.br\ there.
	dot := Delimiters{Field: '.', Component: '!', Repetition: '"', Escape: '#', Subcomponent: '&'}
	b = NewBuilder(dot)
	mustAdd(t, b, "NTE")
	mustSet(t, b, "NTE-3", "line\none.two")
	if got := string(b.Bytes()); got != "MSH.!\"#&\rNTE...line#X0A#one#F#two\r" {
		t.Errorf("dot delimiters: %q", got)
	}
	if m, err := Parse(b.Bytes()); err != nil || m.Get("NTE-3") != "line\none.two" {
		t.Errorf("dot delimiters read back: %v %q", err, m.Get("NTE-3"))
	}
	// Delimiters that MSH-2 cannot express (repetition left out, non-standard characters) give the defaults.
	if got := NewBuilder(Delimiters{Field: '|', Component: ':', Escape: '!'}).Delimiters(); got != DefaultDelimiters {
		t.Errorf("unwritable delimiters kept: %+v", got)
	}
}

func TestBuilderErrors(t *testing.T) {
	b := NewBuilder(DefaultDelimiters)
	mustAdd(t, b, "PID")
	for _, c := range []struct {
		path string
		want error
	}{
		{"MSH-1", ErrBadPath},
		{"MSH-2", ErrBadPath},
		{"PID", ErrBadPath},
		{"PID-0", ErrBadPath},
		{"pid-3", ErrBadPath},
		{"PID[2]-3", ErrBadPath},
		{"OBX-5", ErrBadPath},
		{"PID[*]-3", ErrBadPath},
		{"PID-3[*]", ErrBadPath},
	} {
		err := b.Set(c.path, "secret value")
		if !errors.Is(err, c.want) {
			t.Errorf("Set(%s): %v, want %v", c.path, err, c.want)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("error quotes the text: %v", err)
		}
	}
	for _, name := range []string{"pid", "PI", "PIDX", "MSH", ""} {
		if _, err := b.Add(name); err == nil {
			t.Errorf("Add(%q) accepted", name)
		}
	}
	if err := b.SetEncoded("PID-3", "a|b"); !errors.Is(err, ErrBadPath) {
		t.Errorf("encoded field separator: %v", err)
	}
	if err := b.SetEncoded("PID-3.1", "a^b"); !errors.Is(err, ErrBadPath) {
		t.Errorf("encoded component separator in a component: %v", err)
	}
	if err := b.SetEncoded("PID-3", "a\rb"); !errors.Is(err, ErrControlChar) {
		t.Errorf("encoded line break: %v", err)
	}
	if err := b.Remove("MSH"); !errors.Is(err, ErrBadPath) {
		t.Errorf("Remove(MSH): %v", err)
	}
	if _, err := b.Insert("MSH", "EVN"); !errors.Is(err, ErrBadPath) {
		t.Errorf("Insert before MSH: %v", err)
	}
	if got := string(b.Bytes()); got != "MSH|^~\\&\rPID\r" {
		t.Errorf("failed calls changed the message: %q", got)
	}
	// No subcomponent separator declared: a subcomponent cannot be addressed beyond the first.
	nb := Edit(mustParse(t, "MSH|^~\\|A\rPID|1\r"))
	if err := nb.Set("PID-3.1.2", "x"); !errors.Is(err, ErrBadPath) {
		t.Errorf("no subcomponent separator: %v", err)
	}
}

func TestBuilderRemoveInsert(t *testing.T) {
	src := "MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rPID|1||A~B~C||X\rOBR|1\rOBX|1||x\rNTE|1\rOBX|2||y\rNTE|2\rZPD|1\rZPD|2\r"
	b := Edit(mustParse(t, src))
	for _, p := range []string{"PID-3[2]", "NTE[1]", "ZPD[*]", "PID-5.1", "PID-9", "OBX[7]", "PID-3[9]"} {
		if err := b.Remove(p); err != nil {
			t.Fatalf("Remove(%s): %v", p, err)
		}
	}
	want := "MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rPID|1||A~C||\rOBR|1\rOBX|1||x\rOBX|2||y\rNTE|2\r"
	if got := string(b.Bytes()); got != want {
		t.Fatalf("after Remove\n%q\nwant\n%q", got, want)
	}
	if err := b.Remove("PID-3[2]"); err != nil { // the last repetition takes the separator before it
		t.Fatal(err)
	}
	if err := b.Remove("PID-3"); err != nil { // the only one left
		t.Fatal(err)
	}
	n, err := b.Insert("OBX[2]", "NTE")
	if err != nil || n != 1 {
		t.Fatalf("Insert: %d %v", n, err)
	}
	mustSet(t, b, "NTE[1]-3", "note")
	mustSet(t, b, "NTE[2]-3", "other")
	want = "MSH|^~\\&|A||||||ORU^R01|1|P|2.5\rPID|1||||\rOBR|1\rOBX|1||x\rNTE|||note\rOBX|2||y\rNTE|2||other\r"
	if got := string(b.Bytes()); got != want {
		t.Errorf("after Insert\n%q\nwant\n%q", got, want)
	}
	b2 := Edit(mustParse(t, src))
	for path, want := range map[string]int{"PID-3": 3, "PID[1]-3[2].1": 3, "PID-5": 1, "PID-4": 0, "PID-30": 0, "PV1-3": 0, "OBX[2]-1": 1} {
		if got := b2.RepCount(path); got != want {
			t.Errorf("RepCount(%s) = %d, want %d", path, got, want)
		}
	}
	mustSet(t, b2, "PID-3["+fmt.Sprint(b2.RepCount("PID-3")+1)+"]", "D")
	if got := b2.RepCount("PID-3"); got != 4 {
		t.Errorf("after appending, RepCount = %d", got)
	}
	if err := b2.Remove("PID-3[*]"); err != nil {
		t.Fatal(err)
	}
	if got := string(b2.Bytes()); !strings.Contains(got, "PID|1||||X\r") {
		t.Errorf("PID-3[*] not emptied: %q", got)
	}
}

// TestBuilderEditKeepsBytes: an unchanged edit gives the source back byte for byte, terminators and blank
// lines included; new segments take the source's terminator.
func TestBuilderEditKeepsBytes(t *testing.T) {
	for _, src := range []string{
		"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\r\nPID|1||X\r\n\r\nPV1|1\r\n",
		"\xEF\xBB\xBFMSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\nPID|1||X\nPV1|1",
		"MSH|^~\\&|A|B|||||ADT^A01|1|P|2.5\rPID|1||X\rPV1|1\r",
	} {
		m := mustParse(t, src)
		b := Edit(m)
		if got := b.Bytes(); string(got) != src {
			t.Errorf("unchanged edit\n%q\nwant\n%q", got, src)
		}
		mustAdd(t, b, "ZPD")
		got := string(b.Bytes())
		term := "\r"
		if strings.Contains(src, "\r\n") {
			term = "\r\n"
		} else if strings.Contains(src, "\n") {
			term = "\n"
		}
		if !strings.HasSuffix(got, "PV1|1"+term+"ZPD"+term) {
			t.Errorf("added segment: %q", got)
		}
	}
}

// TestBuilderEditCorpus edits PID-5.1 (or MSH-10 without a PID) of every corpus message: the value reads back,
// every other segment keeps its bytes and every other field of the edited segment too.
func TestBuilderEditCorpus(t *testing.T) {
	n := 0
	eachCorpusMessage(t, func(folder, name string, r []byte, m *Message) {
		if got := Edit(m).Bytes(); !bytes.Equal(got, r) {
			t.Errorf("%s: unchanged edit differs from the source", name)
			return
		}
		path, seg, field := "MSH-10", "MSH", 10
		if _, ok := m.First("PID"); ok {
			path, seg, field = "PID-5.1", "PID", 5
		}
		text := "Nöel^O'Neil|&~\\x"
		b := Edit(m)
		if err := b.Set(path, text); err != nil {
			if m.cs.kind == csASCII || m.cs.kind == csCharmap {
				return // "ö" may not exist there
			}
			t.Errorf("%s: %v", name, err)
			return
		}
		m2, err := Parse(b.Bytes())
		if err != nil {
			t.Errorf("%s: edited message does not parse: %v", name, err)
			return
		}
		if got := m2.Get(path); got != text && m.d.Escape != 0 {
			t.Errorf("%s: %s = %q", name, path, got)
		}
		if m.SegmentCount() != m2.SegmentCount() {
			t.Errorf("%s: segment count changed", name)
			return
		}
		for i := range m.SegmentCount() {
			a, c := m.Segment(i), m2.Segment(i)
			if a.Name() != seg || a.Index() != mustFirst(m, seg) {
				if !bytes.Equal(a.Raw(), c.Raw()) {
					t.Errorf("%s: segment %d changed", name, i+1)
				}
				continue
			}
			for f := 1; f <= max(a.FieldCount(), c.FieldCount()); f++ {
				if f != field && !bytes.Equal(a.Field(f).Raw(), c.Field(f).Raw()) {
					t.Errorf("%s: %s-%d changed", name, seg, f)
				}
			}
			for r := 2; r <= a.Field(field).RepCount(); r++ {
				if !bytes.Equal(a.Field(field).Rep(r).Raw(), c.Field(field).Rep(r).Raw()) {
					t.Errorf("%s: %s-%d[%d] changed", name, seg, field, r)
				}
			}
			for k := 2; k <= a.Field(field).Rep(1).ComponentCount(); k++ {
				if !bytes.Equal(a.Field(field).Rep(1).Component(k).Raw(), c.Field(field).Rep(1).Component(k).Raw()) {
					t.Errorf("%s: %s-%d.%d changed", name, seg, field, k)
				}
			}
		}
		n++
	})
	if n < 100 {
		t.Errorf("only %d corpus messages edited", n)
	}
	t.Logf("%d corpus messages edited", n)
}

func mustFirst(m *Message, name string) int {
	s, _ := m.First(name)
	return s.Index()
}

func TestBuilderCharset(t *testing.T) {
	b := NewBuilder(DefaultDelimiters)
	header(t, b)
	mustSet(t, b, "MSH-18", "8859/1")
	mustAdd(t, b, "PID")
	mustSet(t, b, "PID-5.1", "Müller")
	raw := b.Bytes()
	if !bytes.Contains(raw, []byte("M\xfcller")) {
		t.Errorf("not written in 8859/1: %q", raw)
	}
	m, err := Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("PID-5.1"); got != "Müller" {
		t.Errorf("read back %q", got)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("Validate: %v", err)
	}
	if err := b.Set("PID-5.2", "日本"); !errors.Is(err, ErrCharset) {
		t.Errorf("text 8859/1 cannot hold: %v", err)
	}
	a := NewBuilder(DefaultDelimiters)
	mustSet(t, a, "MSH-18", "ASCII")
	mustAdd(t, a, "PID")
	if err := a.Set("PID-5", "Zoë"); !errors.Is(err, ErrCharset) {
		t.Errorf("non-ASCII text in an ASCII message: %v", err)
	}
	mustSet(t, a, "PID-5", "Zoe")
}

// TestBuilderEditRoundTripFiles: the package's round-trip files, edited, read back every value they had.
func TestBuilderEditRoundTripFiles(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join("testdata", "roundtrip", "*.hl7"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		b := Edit(m)
		mustSet(t, b, "MSH-10", "NEW-ID")
		m2, err := Parse(b.Bytes())
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if m2.Get("MSH-10") != "NEW-ID" {
			t.Errorf("%s: MSH-10 = %q", f, m2.Get("MSH-10"))
		}
		if dumpValues(m2) == dumpValues(m) {
			t.Errorf("%s: nothing changed", f)
		}
		for i := 1; i < m.SegmentCount(); i++ {
			if !bytes.Equal(m.Segment(i).Raw(), m2.Segment(i).Raw()) {
				t.Errorf("%s: segment %d changed", f, i+1)
			}
		}
	}
}

// fuzzPaths are the places FuzzBuildRoundTrip writes to, in a new message and in an edited one.
// None contains another, so every one must read back what was written last.
var fuzzPaths = []string{"PID-5.2", "PID-3[3].4.2", "OBX[2]-5", "MSH-13", "NTE-3[2]", "PID-3[1].1.1", "OBX-5.1.1", "PID-9", "MSH-8"}

// FuzzBuildRoundTrip writes random text at several paths, with several delimiter sets, and reads it back: the
// parse-back must equal the text, and the message must validate.
func FuzzBuildRoundTrip(f *testing.F) {
	for _, s := range []string{"", "plain", "a|b^c~d\\e&f", "\\F\\ \\X0D\\ \\.br\\", "é中\U0001F600", "\r\n\t\x00\x7f",
		"\"\"", "#%!@:*", "MSH|^~\\&|x\rPID|1"} {
		f.Add(s, uint8(0), uint8(0))
		f.Add(s, uint8(1), uint8(3))
	}
	delims := []Delimiters{
		DefaultDelimiters,
		{Field: '#', Component: ':', Repetition: '*', Escape: '!', Subcomponent: '@', Truncation: '%'},
		{Field: '|', Component: '^', Repetition: '~', Escape: '\\', Subcomponent: '&', Truncation: '#'},
		{Field: '.', Component: '!', Repetition: '"', Escape: '#', Subcomponent: '&'},
	}
	f.Fuzz(func(t *testing.T, text string, dsel, psel uint8) {
		if !utf8.ValidString(text) {
			return // the reader replaces invalid UTF-8; nothing to compare
		}
		d := delims[int(dsel)%len(delims)]
		b := NewBuilder(d)
		header(t, b)
		mustAdd(t, b, "PID")
		mustAdd(t, b, "OBX")
		mustAdd(t, b, "OBX")
		mustAdd(t, b, "NTE")
		first := int(psel) % len(fuzzPaths)
		for k := range fuzzPaths {
			p := fuzzPaths[(first+k)%len(fuzzPaths)]
			if err := b.Set(p, text); err != nil {
				t.Fatalf("Set(%s): %v", p, err)
			}
		}
		raw := b.Bytes()
		m, err := Parse(raw)
		if err != nil {
			t.Fatalf("built message does not parse: %v\n%q", err, raw)
		}
		if m.Delimiters() != d {
			t.Fatalf("delimiters changed: %+v", m.Delimiters())
		}
		for _, p := range fuzzPaths {
			if got := m.Get(p); got != text {
				t.Fatalf("%s = %q, want %q\n%q", p, got, text, raw)
			}
		}
		if err := m.Validate(); err != nil {
			t.Fatalf("built message does not validate: %v\n%q", err, raw)
		}
		// An edit of the built message changes only what it addresses.
		e := Edit(m)
		if err := e.Set("PID-7", text); err != nil {
			t.Fatal(err)
		}
		m2, err := Parse(e.Bytes())
		if err != nil {
			t.Fatalf("edited message does not parse: %v", err)
		}
		if got := m2.Get("PID-7"); got != text {
			t.Fatalf("PID-7 = %q, want %q", got, text)
		}
		for i := range m.SegmentCount() {
			if m.Segment(i).Name() != "PID" && !bytes.Equal(m.Segment(i).Raw(), m2.Segment(i).Raw()) {
				t.Fatalf("segment %d changed by the edit", i+1)
			}
		}
	})
}

// FuzzEditRoundTrip edits a parsed message (the corpus and the package's fixtures as seeds): the edited message
// parses, the value reads back, and every other segment keeps its bytes.
func FuzzEditRoundTrip(f *testing.F) {
	var paths []string
	for _, pattern := range []string{corpusDir + "/*/*", "testdata/roundtrip/*.hl7", "testdata/bench/*.hl7"} {
		m, _ := filepath.Glob(pattern)
		paths = append(paths, m...)
	}
	for i, p := range paths {
		if b, err := os.ReadFile(p); err == nil && len(b) <= 64<<10 {
			f.Add(b, "x|y^z", uint8(i))
		}
	}
	f.Add([]byte(sampleADT), "Zoë \\ ~", uint8(0))
	edits := []string{"PID-5.2", "PID-3[2].4.1", "MSH-10", "OBX[2]-5", "PV1-3.1.2", "NTE-3[3]"}
	f.Fuzz(func(t *testing.T, raw []byte, text string, psel uint8) {
		m, err := Parse(raw)
		if err != nil || !utf8.ValidString(text) || m.d.Escape == 0 || m.cs.kind != csUTF8 {
			return
		}
		path := edits[int(psel)%len(edits)]
		b := Edit(m)
		if got := b.Bytes(); !bytes.Equal(got, raw) {
			t.Fatalf("unchanged edit differs from the source")
		}
		if err := b.Set(path, text); err != nil {
			if errors.Is(err, ErrBadPath) {
				return // no such segment, or no separator for the level
			}
			t.Fatalf("Set(%s): %v", path, err)
		}
		m2, err := Parse(b.Bytes())
		if err != nil {
			t.Fatalf("edited message does not parse: %v", err)
		}
		if got := m2.Get(path); got != text {
			t.Fatalf("%s = %q, want %q", path, got, text)
		}
		if m2.SegmentCount() != m.SegmentCount() {
			t.Fatalf("segments: %d became %d", m.SegmentCount(), m2.SegmentCount())
		}
		seg := path[:3]
		for i := range m.SegmentCount() {
			if m.Segment(i).Name() != seg && !bytes.Equal(m.Segment(i).Raw(), m2.Segment(i).Raw()) {
				t.Fatalf("segment %d changed", i+1)
			}
		}
	})
}

// BenchmarkBuildACK builds an ACK-sized message: MSH with ten fields, MSA and ERR.
func BenchmarkBuildACK(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		bl := NewBuilder(DefaultDelimiters)
		_ = bl.Set("MSH-3", "HIEGW")
		_ = bl.Set("MSH-4", "HIE")
		_ = bl.Set("MSH-5", "LAB")
		_ = bl.Set("MSH-6", "NORTH")
		_ = bl.Set("MSH-7", "20261125083000+0000")
		_ = bl.Set("MSH-9.1", "ACK")
		_ = bl.Set("MSH-9.2", "R01")
		_ = bl.Set("MSH-9.3", "ACK")
		_ = bl.Set("MSH-10", "ACK-000123")
		_ = bl.Set("MSH-11", "P")
		_ = bl.Set("MSH-12", "2.5.1")
		_, _ = bl.Add("MSA")
		_ = bl.Set("MSA-1", "AE")
		_ = bl.Set("MSA-2", "MSG-000123")
		_, _ = bl.Add("ERR")
		_ = bl.Set("ERR-2.1", "PID")
		_ = bl.Set("ERR-2.2", "1")
		_ = bl.Set("ERR-2.3", "5")
		_ = bl.Set("ERR-3.1", "101")
		_ = bl.Set("ERR-3.2", "Required field missing")
		_ = bl.Set("ERR-4", "E")
		_ = bl.Bytes()
	}
}

// BenchmarkEdit edits PID-5.1 of the 1.6 KB ADT^A01 and encodes it.
func BenchmarkEdit(b *testing.B) {
	raw := loadBench(b, "adt_a01")
	m, err := Parse(raw)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetBytes(int64(len(raw)))
	for b.Loop() {
		e := Edit(m)
		if err := e.Set("PID-5.1", "NEWNAME"); err != nil {
			b.Fatal(err)
		}
		_ = e.Bytes()
	}
}

func ExampleBuilder() {
	b := NewBuilder(DefaultDelimiters)
	_ = b.Set("MSH-9", "ACK")
	_ = b.Set("MSH-10", "A1")
	_, _ = b.Add("MSA")
	_ = b.Set("MSA-1", "AA")
	_ = b.Set("MSA-3", "fine | done")
	fmt.Printf("%q\n", b.Bytes())
	// Output: "MSH|^~\\&|||||||ACK|A1\rMSA|AA||fine \\F\\ done\r"
}

// --- Message structure by version (structure.go) ---

// structureWarnings returns the warnings of m's structure as "LOCATION detail" lines.
func structureWarnings(t *testing.T, raw string) []string {
	t.Helper()
	m := mustParse(t, raw)
	g, warnings, err := m.Structure()
	if err != nil {
		t.Fatalf("Structure: %v", err)
	}
	if len(g.Segments()) != m.SegmentCount() {
		t.Errorf("structure holds %d of %d segments", len(g.Segments()), m.SegmentCount())
	}
	var out []string
	for _, w := range warnings {
		if !errors.Is(&w, ErrStructure) {
			t.Errorf("warning does not wrap ErrStructure: %v", w.Error())
		}
		out = append(out, w.Location()+" "+w.Detail)
	}
	return out
}

func TestStructureByVersion(t *testing.T) {
	msh := func(typ, v string) string { return "MSH|^~\\&|A|F|||20260101||" + typ + "|1|P|" + v + "\r" }
	cases := []struct {
		name, raw string
		want      []string
	}{
		// ORU_R01 before v2.5: NK1 comes before NTE in PATIENT; v2.5 swapped them.
		{"oru 2.3 NK1 then NTE", msh("ORU^R01", "2.3") + "PID|1\rNK1|1\rNTE|1\rOBR|1\rOBX|1\r", nil},
		{"oru 2.3.1 NK1 then NTE", msh("ORU^R01", "2.3.1") + "PID|1\rNK1|1\rNTE|1\rOBR|1\rOBX|1\r", nil},
		{"oru 2.5.1 NK1 then NTE", msh("ORU^R01", "2.5.1") + "PID|1\rNK1|1\rNTE|1\rOBR|1\rOBX|1\r",
			[]string{"NTE^1 required group ORDER_OBSERVATION missing in PATIENT_RESULT",
				"NTE^1 segment is out of place for ORU_R01", "OBR^1 segment is out of place for ORU_R01"}},
		// SPECIMEN and TQ1 do not exist in v2.3.
		{"oru 2.3 SPM", msh("ORU^R01", "2.3") + "PID|1\rOBR|1\rOBX|1\rSPM|1\r",
			[]string{"SPM^1 segment is not part of OBSERVATION"}},
		{"oru 2.5.1 SPM", msh("ORU^R01", "2.5.1") + "PID|1\rOBR|1\rOBX|1\rSPM|1\r", nil},
		// SFT arrived in v2.5, ROL after PD1 in v2.4.
		{"adt 2.3 SFT", msh("ADT^A01", "2.3") + "SFT|1\rEVN|A01\rPID|1\rPV1|1\r",
			[]string{"SFT^1 segment is not part of ADT_A01"}},
		{"adt 2.3 ROL after PID", msh("ADT^A01", "2.3") + "EVN|A01\rPID|1\rROL|1\rPV1|1\r",
			[]string{"ROL^1 required segment PV1 missing in ADT_A01", "ROL^1 segment is out of place for ADT_A01",
				"PV1^1 segment is out of place for ADT_A01"}},
		{"adt 2.4 ROL after PID", msh("ADT^A01", "2.4") + "EVN|A01\rPID|1\rROL|1\rPV1|1\rIN1|1\rIN3|1\rIN3|2\r", nil},
		{"adt 2.3 groups", msh("ADT^A01", "2.3") + "EVN|A01\rPID|1\rPV1|1\rPR1|1\rROL|1\rIN1|1\rIN2|1\rIN1|2\r", nil},
		// v2.8: AUT and RF1 in INSURANCE, PRT and ARV.
		{"adt 2.8 RF1", msh("ADT^A01^ADT_A01", "2.8") + "EVN|A01\rPID|1\rARV|1\rPV1|1\rIN1|1\rIN2|1\rAUT|1\rRF1|1\rPDA|1\r", nil},
		{"adt 2.5.1 RF1", msh("ADT^A01^ADT_A01", "2.5.1") + "EVN|A01\rPID|1\rPV1|1\rIN1|1\rIN2|1\rRF1|1\r",
			[]string{"RF1^1 segment is not part of INSURANCE"}},
		{"oru 2.8 PRT", msh("ORU^R01^ORU_R01", "2.8") + "PID|1\rPRT|1\rPV1|1\rPRT|2\rOBR|1\rPRT|3\rOBX|1\rPRT|4\r", nil},
		{"oru 2.5.1 PRT", msh("ORU^R01^ORU_R01", "2.5.1") + "PID|1\rOBR|1\rOBX|1\rPRT|1\r",
			[]string{"PRT^1 segment is not part of OBSERVATION"}},
		{"vxu 2.8 person observation", msh("VXU^V04^VXU_V04", "2.8") + "PID|1\rPV1|1\rOBX|1\rPRT|1\rNTE|1\rORC|RE\rPRT|2\rRXA|0\rRXR|1\rOBX|2\r", nil},
		{"vxu 2.5.1 person observation", msh("VXU^V04^VXU_V04", "2.5.1") + "PID|1\rPV1|1\rOBX|1\rORC|RE\rRXA|0\r",
			[]string{"OBX^1 segment is out of place for VXU_V04", "ORC^1 segment is out of place for VXU_V04"}},
		{"vxu 2.3.1 without ORC", msh("VXU^V04", "2.3.1") + "PID|1\rRXA|0\rRXR|1\rOBX|1\r", nil},
		{"rds 2.8 CDO", msh("RDS^O13^RDS_O13", "2.8") + "PID|1\rORC|NW\rRXO|1\rPRT|1\rRXR|1\rRXE|1\rPRT|2\rTQ1|1\rRXR|1\rRXD|1\rPRT|3\rRXR|1\rCDO|1\rOBX|1\rPRT|4\rFT1|1\r", nil},
		{"rde 2.8 CDO", msh("RDE^O11^RDE_O11", "2.8") + "PID|1\rORC|NW\rRXE|1\rTQ1|1\rRXR|1\rCDO|1\r", nil},
		{"rde 2.5.1 CDO", msh("RDE^O11^RDE_O11", "2.5.1") + "PID|1\rORC|NW\rRXE|1\rTQ1|1\rRXR|1\rCDO|1\r",
			[]string{"CDO^1 segment is not part of ORDER"}},
		// Invalid order stays a located warning in every version.
		{"adt 2.8 PV1 before PID", msh("ADT^A01", "2.8") + "EVN|A01\rPV1|1\rPID|1\r",
			[]string{"PV1^1 required segment PID missing in ADT_A01", "PID^1 segment is out of place for ADT_A01"}},
		{"adt 2.3 PV1 before PID", msh("ADT^A01", "2.3") + "EVN|A01\rPV1|1\rPID|1\r",
			[]string{"PV1^1 required segment PID missing in ADT_A01", "PID^1 segment is out of place for ADT_A01"}},
		// An unreadable version is read as v2.5.1.
		{"no version", msh("ORU^R01", "") + "PID|1\rOBR|1\rOBX|1\rSPM|1\r", nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := structureWarnings(t, c.raw)
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("warnings\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(c.want, "\n"))
			}
		})
	}
	// Group names stay the same across versions; v2.8 VXU_V04 calls the visit group PATIENT_VISIT.
	g, _, _ := mustParse(t, msh("ADT^A01", "2.3")+"EVN|A01\rPID|1\rPV1|1\rIN1|1\r").Structure()
	if len(g.Groups("INSURANCE")) != 1 {
		t.Errorf("v2.3 INSURANCE group missing")
	}
	g, _, _ = mustParse(t, msh("VXU^V04", "2.8")+"PID|1\rPV1|1\r").Structure()
	if len(g.Groups("PATIENT_VISIT")) != 1 {
		t.Errorf("v2.8 PATIENT_VISIT group missing")
	}
}

func TestStructureFamily(t *testing.T) {
	for v, want := range map[string]int{"2.8": 0, "2.8.2": 0, "2.7.1": 0, "2.7": 0, "2.6": 1, "2.5.1": 1, "2.5": 1,
		"2.4": 2, "2.3.1": 3, "2.3": 3, "2.2": 3, "2.1": 3, "": defaultFamily, "x": defaultFamily, "2.10": defaultFamily,
		" 2.3 ": 3, "1.0": defaultFamily} {
		if got := family(v); got != want {
			t.Errorf("family(%q) = %d, want %d", v, got, want)
		}
	}
}

// TestStructureCorpusByVersion walks the corpus and counts structure warnings per version: messages of adt,
// oru and other from v2.3.1 on give none (the files listed in knownInvalid are invalid for their own version),
// and every warning is located.
func TestStructureCorpusByVersion(t *testing.T) {
	knownInvalid := map[string]string{
		"adt/adt_a01_v23_nodehl7_hcits.hl7":       "segments separated by spaces: one long MSH",
		"adt/adt_a04_v23_fhirconv_redox.hl7":      "no EVN, required in v2.3",
		"oru/oru_r01_v23_lenaten_two_pid.hl7":     "a PID without an order",
		"oru/oru_r01_v23_prime_flfhospital.hl7":   "PD1 after PV1",
		"oru/oru_r01_v251_fhirconv_iaphl_elr.hl7": "PRT (v2.7) and OBX/TXA before OBR in a v2.5.1 message",
	}
	type tally struct{ messages, warnings int }
	counts := map[string]*tally{}
	eachCorpusMessage(t, func(folder, name string, r []byte, m *Message) {
		_, warnings, err := m.Structure()
		if err != nil {
			return // no structure known for the type
		}
		v := m.Header().Version
		if counts[v] == nil {
			counts[v] = &tally{}
		}
		counts[v].messages++
		counts[v].warnings += len(warnings)
		for _, w := range warnings {
			if w.Segment == "" && !strings.Contains(w.Detail, "required") {
				t.Errorf("%s: warning without location: %s", name, w.Detail)
			}
		}
		if folder == "edge" || folder == "batch" || len(warnings) == 0 || knownInvalid[name] != "" {
			return
		}
		t.Errorf("%s (v%s): %d structure warnings, first: %s %s", name, v, len(warnings),
			warnings[0].Location(), warnings[0].Detail)
	})
	for _, v := range []string{"2.3", "2.3.1", "2.4", "2.5", "2.5.1", "2.6", "2.7", "2.8"} {
		if c := counts[v]; c != nil {
			t.Logf("v%-5s messages %3d  structure warnings %2d", v, c.messages, c.warnings)
		}
	}
}

// --- Character sets (validate.go) ---

func TestValidateCharsetMismatch(t *testing.T) {
	msh := func(cs string) string {
		return "MSH|^~\\&|A|F|||20260101||ADT^A08|1|P|2.5.1||||||" + cs + "\rEVN|A08\r"
	}
	// 8859/1 declared, UTF-8 sent: a located warning, not quoting the text; the value reads as declared.
	m := mustParse(t, msh("8859/1")+"PID|1||123||Zoë^Anaïs\rNK1|1|Müller\r")
	err := m.Validate()
	if !OnlyWarnings(err) {
		t.Fatalf("Validate: %v, want warnings only", err)
	}
	var w *Warning
	if !errors.As(err, &w) || !errors.Is(err, ErrCharset) {
		t.Fatalf("not a charset *Warning: %#v", err)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Location() != "PID^1^5^1" || pe.Line != 3 {
		t.Errorf("location %q line %d", pe.Location(), pe.Line)
	}
	if msg := err.Error(); strings.Contains(msg, "Zo") || strings.Contains(msg, "ller") || !strings.Contains(msg, "UTF-8") {
		t.Errorf("message: %s", msg)
	}
	if j, ok := err.(interface{ Unwrap() []error }); !ok || len(j.Unwrap()) != 1 {
		t.Errorf("want one warning for the message, got %v", err)
	}
	if got := m.Get("PID-5.1"); got != "ZoÃ«" {
		t.Errorf("read as declared: %q", got)
	}
	if _, err := ParseWith(m.Raw(), Options{Strict: true}); !errors.Is(err, ErrCharset) {
		t.Errorf("strict parse: %v", err)
	}
	// Real 8859/1 text: nothing to report.
	if err := mustParse(t, msh("8859/1")+"PID|1||123||Zo\xeb^Ana\xefs\r").Validate(); err != nil {
		t.Errorf("8859/1 text: %v", err)
	}
	// A warning next to an error: not only warnings.
	err = mustParse(t, msh("8859/1")+"PID|1||123||Zoë\\X4\\\r").Validate()
	if err == nil || OnlyWarnings(err) {
		t.Errorf("warning and bad escape: %v", err)
	}
	// ASCII declared: bytes above 0x7F are errors, located, with a hint when they are UTF-8.
	for _, c := range []struct{ body, hint string }{
		{"PID|1||123||Zoë\r", "valid UTF-8"},
		{"PID|1||123||Zo\xeb\r", ""},
	} {
		err := mustParse(t, msh("ASCII")+c.body).Validate()
		if err == nil || OnlyWarnings(err) || !errors.Is(err, ErrCharset) {
			t.Fatalf("ASCII: %v", err)
		}
		if !errors.As(err, &pe) || pe.Location() != "PID^1^5^1^1" {
			t.Errorf("ASCII location: %v", err)
		}
		if strings.Contains(err.Error(), "valid UTF-8") != (c.hint != "") || strings.Contains(err.Error(), "Zo") {
			t.Errorf("ASCII message: %v", err)
		}
	}
	// Windows-1252 leaves some bytes undefined: UTF-8 that hits one is an error saying so.
	err = mustParse(t, msh("CP1252")+"PID|1||123||\u00c1lvaro\r").Validate()
	if err == nil || OnlyWarnings(err) || !strings.Contains(err.Error(), "valid UTF-8") {
		t.Errorf("CP1252: %v", err)
	}
	// UTF-8 declared (or nothing declared) and UTF-8 sent: fine.
	for _, cs := range []string{"", "UNICODE UTF-8"} {
		if err := mustParse(t, msh(cs)+"PID|1||123||Zoë\r").Validate(); err != nil {
			t.Errorf("%q: %v", cs, err)
		}
	}
	if OnlyWarnings(nil) {
		t.Error("OnlyWarnings(nil)")
	}
}

// TestValidateCharsetCorpus: the corpus's mis-declared UTF-8 sender gives one located warning; its 8859/1 bytes
// sent without MSH-18 (so read as UTF-8) are located errors.
func TestValidateCharsetCorpus(t *testing.T) {
	corpusFiles(t) // skips without the corpus
	for name, wantWarning := range map[string]bool{
		"oru_r01_v251_prime_8859_declared_utf8_fffd.hl7": true,
		"adt_a40_v231_ipf_iso8859_1.hl7":                 false,
	} {
		raw, err := os.ReadFile(filepath.Join(corpusDir, "edge", name))
		if err != nil {
			t.Fatal(err)
		}
		m, err := Parse(raw)
		if err != nil {
			t.Fatal(err)
		}
		err = m.Validate()
		if err == nil || OnlyWarnings(err) != wantWarning || !errors.Is(err, ErrCharset) {
			t.Errorf("%s: Validate: %v", name, err)
			continue
		}
		if wantWarning && !strings.Contains(err.Error(), "segment 14 (OBX), field 3") {
			t.Errorf("%s: location: %v", name, err)
		}
		if !wantWarning && !strings.Contains(err.Error(), "invalid UTF-8") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

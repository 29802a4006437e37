package hl7

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

const sampleADT = "MSH|^~\\&|SEND^1.2.3^ISO|FAC|RECV|RFAC|20240101120000||ADT^A01^ADT_A01|CTRL1|P|2.5.1||||||UNICODE UTF-8\r" +
	"EVN|A01|20240101120000\r" +
	"PID|1||111^^^HOSP^MR~222^^^SSA^SS||DOE&VAN^JOHN^Q||19800101|M|||1 MAIN ST^^TOWN^ST^12345\r" +
	"OBX|1|NM|GLU^Glucose||5.4|mmol/L\r" +
	`OBX|2|ST|NOTE||A\T\B \F\ C\S\D\R\\E\\.br\\F\` + "\r" +
	"OBX|3|NM|HGB||\"\"\r" +
	"ZPD|custom||x\r"

func mustParse(t *testing.T, s string) *Message {
	t.Helper()
	m, err := Parse([]byte(s))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return m
}

func TestParseStructure(t *testing.T) {
	m := mustParse(t, sampleADT)
	if got := m.SegmentCount(); got != 7 {
		t.Fatalf("SegmentCount = %d, want 7", got)
	}
	names := []string{}
	for i := range m.SegmentCount() {
		s := m.Segment(i)
		if s.Index() != i {
			t.Errorf("Index = %d, want %d", s.Index(), i)
		}
		names = append(names, s.Name())
	}
	if want := []string{"MSH", "EVN", "PID", "OBX", "OBX", "OBX", "ZPD"}; !slices.Equal(names, want) {
		t.Errorf("names = %v, want %v", names, want)
	}
	msh := m.Segment(0)
	if got := msh.Field(1).String(); got != "|" {
		t.Errorf("MSH-1 = %q", got)
	}
	if got := msh.Field(2).String(); got != "^~\\&" {
		t.Errorf("MSH-2 = %q (must not be split or unescaped)", got)
	}
	if got := msh.Field(2).RepCount(); got != 1 {
		t.Errorf("MSH-2 RepCount = %d, want 1", got)
	}
	if got := msh.Field(3).Rep(1).Component(2).String(); got != "1.2.3" {
		t.Errorf("MSH-3.2 = %q", got)
	}
	if got := msh.FieldCount(); got != 18 {
		t.Errorf("MSH FieldCount = %d, want 18", got)
	}
	pid := m.Segment(2)
	if pid.FieldCount() != 11 {
		t.Errorf("PID FieldCount = %d, want 11", pid.FieldCount())
	}
	f3 := pid.Field(3)
	if f3.RepCount() != 2 {
		t.Fatalf("PID-3 RepCount = %d", f3.RepCount())
	}
	if got := f3.Rep(2).Component(4).String(); got != "SSA" {
		t.Errorf("PID-3[2].4 = %q", got)
	}
	if got := f3.Rep(2).ComponentCount(); got != 5 {
		t.Errorf("PID-3[2] ComponentCount = %d", got)
	}
	if got := f3.Rep(3).Raw(); got != nil {
		t.Errorf("PID-3[3] = %q, want absent", got)
	}
	name := pid.Field(5).Rep(1)
	if got := name.Component(1).SubCount(); got != 2 {
		t.Errorf("PID-5.1 SubCount = %d", got)
	}
	if got := name.Component(1).Sub(2); got != "VAN" {
		t.Errorf("PID-5.1.2 = %q", got)
	}
	if got := name.Component(1).String(); got != "DOE&VAN" {
		t.Errorf("PID-5.1 = %q", got)
	}
	if got := pid.Field(5).String(); got != "DOE&VAN" {
		t.Errorf("Field.String = %q, want first component", got)
	}
	if got := pid.Value(5, 1, 2, 0); got != "JOHN" {
		t.Errorf("Value(5,1,2,0) = %q", got)
	}
	if got := pid.Value(5, 1, 0, 0); got != "DOE&VAN^JOHN^Q" {
		t.Errorf("Value(5,1,0,0) = %q", got)
	}
	if got := pid.Value(99, 1, 1, 1); got != "" {
		t.Errorf("absent field = %q", got)
	}
	if got := string(pid.Raw()); !strings.HasPrefix(got, "PID|1||") || strings.ContainsAny(got, "\r\n") {
		t.Errorf("Segment.Raw = %q", got)
	}
	if !m.Segment(5).Field(5).IsNull() || m.Segment(5).Field(5).String() != `""` {
		t.Errorf("OBX-5 null not recognised")
	}
	if m.Segment(3).Field(5).IsNull() {
		t.Errorf("non-null reported as null")
	}
	var zero Segment
	if zero.Name() != "" || zero.Field(1).String() != "" || zero.FieldCount() != 0 || zero.Raw() != nil {
		t.Errorf("zero Segment not empty")
	}
	if got := m.Segment(99).Name(); got != "" {
		t.Errorf("out of range segment name %q", got)
	}
}

func TestGetAndQuery(t *testing.T) {
	m := mustParse(t, sampleADT)
	cases := map[string]string{
		"MSH-9.2":      "A01",
		"MSH-9":        "ADT^A01^ADT_A01",
		"MSH-1":        "|",
		"MSH-2":        "^~\\&",
		"MSH-10":       "CTRL1",
		"PID-3":        "111^^^HOSP^MR",
		"PID-3[2].1":   "222",
		"PID-3[*].1":   "111",
		"PID-5.1.1":    "DOE",
		"PID-5.1.2":    "VAN",
		"PID-5.2":      "JOHN",
		"OBX[2]-5":     "A&B | C^D~\\\n|",
		"OBX[3]-3.2":   "",
		"OBX[*]-5":     "5.4",
		"ZPD-3":        "x",
		"PV1-2":        "",
		"PID-3[9].1":   "",
		"bad":          "",
		"PID-0":        "",
		"PID-5.0":      "",
		"PID[0]-5":     "",
		"pid-5":        "",
		"PID-5x":       "",
		"PID-3[x].1":   "",
		"OBX[2]-3.1.1": "NOTE",
	}
	for p, want := range cases {
		if got := m.Get(p); got != want {
			t.Errorf("Get(%q) = %q, want %q", p, got, want)
		}
	}
	q := map[string][]string{
		"OBX[*]-5":     {"5.4", "A&B | C^D~\\\n|", `""`},
		"PID-3[*].1":   {"111", "222"},
		"PID-3[*].4":   {"HOSP", "SSA"},
		"OBX[*]-3.1":   {"GLU", "NOTE", "HGB"},
		"OBX[2]-1":     {"2"},
		"PV1[*]-2":     nil,
		"MSH-9.1":      {"ADT"},
		"OBX[*]-99":    {"", "", ""},
		"PID[*]-3[*]":  {"111^^^HOSP^MR", "222^^^SSA^SS"},
		"EVN[*]-5[*]":  nil,
		"ZPD[1]-1[1]":  {"custom"},
		"OBX[9]-5":     nil,
		"PID-11[*].3":  {"TOWN"},
		"OBX[1]-6[*]":  {"mmol/L"},
		"PID-5[*].1.1": {"DOE"},
	}
	for p, want := range q {
		got, err := m.Query(p)
		if err != nil {
			t.Errorf("Query(%q): %v", p, err)
			continue
		}
		if !slices.Equal(got, want) {
			t.Errorf("Query(%q) = %q, want %q", p, got, want)
		}
	}
	for _, bad := range []string{"", "PID", "PID-", "PID-a", "PID-5.", "PID-5..1", "PI-5", "PID[*-5", "PID-5[0]", "PID-5.1.1.1"} {
		if _, err := m.Query(bad); !errors.Is(err, ErrBadPath) {
			t.Errorf("Query(%q) err = %v, want ErrBadPath", bad, err)
		}
	}
}

func TestLineEndingsAndBOM(t *testing.T) {
	body := []string{"MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5", "PID|1||42", "OBX|1|ST|X||v"}
	variants := map[string]string{
		"CR":         strings.Join(body, "\r") + "\r",
		"LF":         strings.Join(body, "\n") + "\n",
		"CRLF":       strings.Join(body, "\r\n") + "\r\n",
		"no final":   strings.Join(body, "\r"),
		"BOM":        "\xEF\xBB\xBF" + strings.Join(body, "\n"),
		"blank":      "\r\n\n" + strings.Join(body, "\n\n") + "\n\n\n",
		"mixed":      body[0] + "\r\n" + body[1] + "\n" + body[2] + "\r",
		"mllp bytes": strings.Join(body, "\r") + "\r\x1c\r",
		"wrapped LF": strings.Join(body, "\r") + "\r",
	}
	for name, in := range variants {
		m, err := Parse([]byte(in))
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if got := string(m.Encode()); got != strings.Join(body, "\r")+"\r" {
			t.Errorf("%s: Encode = %q", name, got)
		}
		if m.Get("OBX-5") != "v" || m.Get("PID-3") != "42" {
			t.Errorf("%s: values wrong", name)
		}
	}
	// A lone LF inside a CR-terminated segment that is not followed by a segment is data, not a terminator.
	m := mustParse(t, "MSH|^~\\&|A|B|C|D|20240101||ADT^A01|1|P|2.5\rPID|1||42||DOE^JO\nHN\rOBX|1\r")
	if m.SegmentCount() != 3 || m.Get("PID-5.2") != "JO\nHN" {
		t.Errorf("wrapped LF: %d segments, PID-5.2 %q", m.SegmentCount(), m.Get("PID-5.2"))
	}
	if err := m.Validate(); !errors.Is(err, ErrControlChar) {
		t.Errorf("Validate of wrapped LF = %v, want ErrControlChar", err)
	}
	// line numbers count CRLF once and include blank lines.
	m = mustParse(t, "\r\nMSH|^~\\&|A\r\n\r\nPID|1\nOBX|1")
	if got := []int{m.Segment(0).Line(), m.Segment(1).Line(), m.Segment(2).Line()}; !slices.Equal(got, []int{2, 4, 5}) {
		t.Errorf("lines = %v, want [2 4 5]", got)
	}
}

func TestDelimiters(t *testing.T) {
	cases := []struct {
		msh  string
		want Delimiters
	}{
		{"MSH|^~\\&|", DefaultDelimiters},
		{"MSH|^~\\&#|", Delimiters{'|', '^', '~', '\\', '&', '#'}},
		{"MSH|^~&|", Delimiters{'|', '^', '~', 0, '&', 0}},
		{"MSH|^\\&|", Delimiters{'|', '^', 0, '\\', '&', 0}},
		{"MSH|^~`&|", Delimiters{'|', '^', '~', '`', '&', 0}},
		{"MSH^~|\\&^", Delimiters{'^', '~', '|', '\\', '&', 0}},
		{"MSH|^~\\}|", Delimiters{'|', '^', '~', '\\', '}', 0}},
		{"MSH|^|", Delimiters{'|', '^', 0, 0, 0, 0}},
	}
	for _, c := range cases {
		m, err := Parse([]byte(c.msh + "X\rPID" + string(c.want.Field) + "1\r"))
		if err != nil {
			t.Errorf("%q: %v", c.msh, err)
			continue
		}
		if m.Delimiters() != c.want {
			t.Errorf("%q: delimiters %+v, want %+v", c.msh, m.Delimiters(), c.want)
		}
	}
	m := mustParse(t, "MSH^~|\\&^A~a1^B\rPID^1^^x|y~z\r")
	if got := m.Get("PID-3[2].2"); got != "z" {
		t.Errorf("custom delimiters: PID-3[2].2 = %q", got)
	}
	if got := m.Get("MSH-3.2"); got != "a1" {
		t.Errorf("custom delimiters: MSH-3.2 = %q", got)
	}
	if got := DefaultDelimiters.EncodingChars(); got != "^~\\&" {
		t.Errorf("EncodingChars = %q", got)
	}
}

func TestParseErrors(t *testing.T) {
	cases := []struct {
		in       string
		err      error
		location string
		line     int
	}{
		{"", ErrEmpty, "", 0},
		{"\r\n\r\n", ErrEmpty, "", 0},
		{"\xEF\xBB\xBF", ErrEmpty, "", 0},
		{"PID|1\r", ErrNoMSH, "", 1},
		{"FHS|^~\\&\rMSH|^~\\&|\r", ErrNoMSH, "", 1},
		{"MSH", ErrBadDelimiters, "MSH^1^1", 1},
		{"MSHA^~\\&", ErrBadDelimiters, "MSH^1^1", 1},
		{"MSH||A", ErrBadDelimiters, "MSH^1^2", 1},
		{"MSH|^^\\&|", ErrBadDelimiters, "MSH^1^2", 1},
		{"MSH|^~\\&xy|", ErrBadDelimiters, "MSH^1^2", 1},
		{"MSH|^~\\&|A\rPID|1\rpid|2\r", ErrBadSegmentName, "", 3},
		{"MSH|^~\\&|A\rPI|1\r", ErrBadSegmentName, "", 2},
		{"MSH|^~\\&|A\rPID^1\r", ErrBadSegmentName, "", 2},
		{"MSH|^~\\&|A\rPID|1\rMSH|^~\\&|B\r", ErrMultipleMessages, "MSH^2", 3},
	}
	for _, c := range cases {
		_, err := Parse([]byte(c.in))
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Errorf("%q: error %v is not a *ParseError", c.in, err)
			continue
		}
		if !errors.Is(err, c.err) {
			t.Errorf("%q: error %v, want %v", c.in, err, c.err)
		}
		if pe.Location() != c.location || pe.Line != c.line {
			t.Errorf("%q: location %q line %d, want %q line %d (%v)", c.in, pe.Location(), pe.Line, c.location, c.line, err)
		}
	}
	if _, err := ParseWith([]byte(sampleADT), Options{MaxBytes: 10}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxBytes: %v", err)
	}
	if _, err := ParseWith([]byte(sampleADT), Options{MaxSegments: 3}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("MaxSegments: %v", err)
	}
}

func TestParseErrorText(t *testing.T) {
	pe := &ParseError{Segment: "PID", SegmentIndex: 3, Occurrence: 1, Field: 5, Rep: 1, Component: 2, Line: 3,
		Err: ErrBadEscape, Detail: "unterminated escape sequence"}
	want := "hl7: line 3, segment 3 (PID), field 5, repetition 1, component 2: invalid escape sequence: unterminated escape sequence"
	if pe.Error() != want {
		t.Errorf("Error() = %q", pe.Error())
	}
	if pe.Location() != "PID^1^5^1^2" {
		t.Errorf("Location() = %q", pe.Location())
	}
	if pe.AckCode() != "102" {
		t.Errorf("AckCode = %q", pe.AckCode())
	}
	if (&ParseError{Err: ErrEmpty}).Error() != "hl7: empty message" {
		t.Errorf("bare error text %q", (&ParseError{Err: ErrEmpty}).Error())
	}
	if got := (&ParseError{Segment: "OBX", Occurrence: 2, Field: 5, Component: 1}).Location(); got != "OBX^2^5^1^1" {
		t.Errorf("Location with component and no rep = %q", got)
	}
}

func TestPHINotInErrors(t *testing.T) {
	const secret = "SECRETNAME"
	inputs := []string{
		"MSH|^~\\&|A\rPID|1||" + secret + "\r" + secret + "|x\r",
		"MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1||" + secret + "\\Zbad\r",
		"MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1||" + secret + "\xff\xfe\r",
		"MSH|^~\\&|A||||||ADT^A01|1|P|" + secret + "\r",
		secret + "\r",
		"MSH" + secret,
	}
	for _, in := range inputs {
		m, err := Parse([]byte(in))
		if err == nil {
			err = m.Validate()
		}
		if err == nil {
			t.Errorf("%q: expected an error", in)
			continue
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Errorf("error text leaks content: %v", err)
		}
	}
}

func TestResetReusesMemory(t *testing.T) {
	m := mustParse(t, sampleADT)
	raw := []byte(sampleADT)
	allocs := testing.AllocsPerRun(100, func() {
		if err := m.Reset(raw); err != nil {
			t.Fatal(err)
		}
		_ = m.Segment(2).Field(3).Rep(2).Component(1).Raw()
		_ = m.Segment(4).Field(5).RepCount()
		_ = m.Segment(1).Name()
	})
	if allocs != 0 {
		t.Errorf("Reset + Raw + Get: %v allocs per run, want 0", allocs)
	}
	// strings: one copy of the message per Reset, none per field.
	allocs = testing.AllocsPerRun(100, func() {
		_ = m.Reset(raw)
		for range 5 {
			_ = m.Get("PID-5.1.1")
			_ = m.Get("OBX[1]-5")
			_ = m.Get("PID-3[2].1")
		}
	})
	if allocs != 1 {
		t.Errorf("Reset + 15 Gets: %v allocs per run, want 1", allocs)
	}
	// a failed Reset leaves an empty message, the next one works again.
	if err := m.Reset([]byte("garbage")); err == nil || m.SegmentCount() != 0 {
		t.Errorf("failed Reset: err %v, %d segments", err, m.SegmentCount())
	}
	if err := m.Reset(raw); err != nil || m.Get("MSH-10") != "CTRL1" {
		t.Errorf("Reset after failure: %v", err)
	}
}

func TestStrictOption(t *testing.T) {
	in := "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1||bad\\Xzz\\\r"
	if _, err := Parse([]byte(in)); err != nil {
		t.Fatalf("lenient Parse failed: %v", err)
	}
	_, err := ParseWith([]byte(in), Options{Strict: true})
	if !errors.Is(err, ErrBadEscape) {
		t.Fatalf("strict Parse: %v, want ErrBadEscape", err)
	}
}

func TestSegmentsLookup(t *testing.T) {
	m := mustParse(t, sampleADT)
	obx := m.Segments("OBX")
	if len(obx) != 3 || obx[2].Field(1).String() != "3" {
		t.Errorf("Segments(OBX) = %d", len(obx))
	}
	if s, ok := m.First("ZPD"); !ok || s.Index() != 6 || s.Name() != "ZPD" {
		t.Errorf("First(ZPD) = %v %v", s.Index(), ok)
	}
	if _, ok := m.First("PV1"); ok {
		t.Errorf("First(PV1) found")
	}
}

func TestIterators(t *testing.T) {
	m := mustParse(t, sampleADT)
	pid := m.Segment(2)
	var got []string
	for i, r := range pid.Field(3).Reps() {
		for j, c := range r.Components() {
			for k, s := range c.Subs() {
				if s != "" {
					got = append(got, fmt.Sprintf("%d.%d.%d=%s", i, j, k, s))
				}
			}
		}
	}
	if want := "1.1.1=111 1.4.1=HOSP 1.5.1=MR 2.1.1=222 2.4.1=SSA 2.5.1=SS"; strings.Join(got, " ") != want {
		t.Errorf("iterators: %s", strings.Join(got, " "))
	}
	for range pid.Field(99).Reps() {
		t.Error("absent field yields a repetition")
	}
	// early break
	n := 0
	for range pid.Field(3).Reps() {
		n++
		break
	}
	if n != 1 {
		t.Errorf("break: %d", n)
	}
	// Validate stays linear on a field with very many repetitions.
	big := "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rPID|1||" + strings.Repeat("a\\F\\b~", 200000) + "\\Xz\\\r"
	m = mustParse(t, big)
	err := m.Validate()
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Rep != 200001 {
		t.Errorf("Validate on many repetitions: %v", err)
	}
}

package hl7

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestUnescape(t *testing.T) {
	d := Delimiters{'|', '^', '~', '\\', '&', '#'}
	cases := map[string]string{
		`plain`:            "plain",
		`a\F\b`:            "a|b",
		`\S\\T\\R\\E\`:     `^&~\`,
		`\F\\F\`:           "||",
		`x\P\y`:            "x#y",
		`\X41\`:            "A",
		`\X0D0A\`:          "\r\n",
		`\X414243\`:        "ABC",
		`\Xzz\`:            `\Xzz\`,
		`\X123\`:           `\X123\`,
		`a\.br\b`:          "a\nb",
		`\H\bold\N\`:       "bold",
		`\.sp\`:            `\.sp\`,
		`\Zvendor\`:        `\Zvendor\`,
		`\C2842\`:          `\C2842\`,
		`\M2442\`:          `\M2442\`,
		`\\`:               `\\`,
		`open \F`:          `open \F`,
		`\`:                `\`,
		`SMITH \T\^JOHN`:   "SMITH &^JOHN",
		`\E\F\E\`:          `\F\`,
		`tail\`:            `tail\`,
		`\F\\S\\T\\R\\E\x`: `|^&~\x`,
	}
	for in, want := range cases {
		if got := string(Unescape([]byte(in), d)); got != want {
			t.Errorf("Unescape(%q) = %q, want %q", in, got, want)
		}
	}
	// no escape character declared: nothing is unescaped.
	if got := string(Unescape([]byte(`a\F\b`), Delimiters{'|', '^', '~', 0, '&', 0})); got != `a\F\b` {
		t.Errorf("no escape char: %q", got)
	}
	// a non-default escape character.
	if got := string(Unescape([]byte("a`F`b`.br`c"), Delimiters{'|', '^', '~', '`', '&', 0})); got != "a|b\nc" {
		t.Errorf("backtick escape: %q", got)
	}
	// \P\ without a truncation character stays literal
	if got := string(Unescape([]byte(`\P\`), DefaultDelimiters)); got != `\P\` {
		t.Errorf(`\P\ without truncation: %q`, got)
	}
}

func TestKeepHighlight(t *testing.T) {
	in := "MSH|^~\\&|A||||||ADT^A01|1|P|2.5\rNTE|1||\\H\\Important\\N\\ note\r"
	m := mustParse(t, in)
	if got := m.Get("NTE-3"); got != "Important note" {
		t.Errorf("default: %q", got)
	}
	m, err := ParseWith([]byte(in), Options{KeepHighlight: true})
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("NTE-3"); got != `\H\Important\N\ note` {
		t.Errorf("KeepHighlight: %q", got)
	}
}

func TestEscapeRoundTrip(t *testing.T) {
	ds := []Delimiters{DefaultDelimiters, {'|', '^', '~', '\\', '&', '#'}, {'^', '~', '|', '\\', '&', 0}, {'|', '^', '~', '`', '&', 0}}
	texts := []string{"", "plain", "a|b^c~d\\e&f#g", "line1\nline2", "cr\rhere", "tab\tok", "\x00\x01\x7f", "MUÑOZ^JOSÉ", `\F\`, "``"}
	for _, d := range ds {
		for _, txt := range texts {
			enc := Escape(txt, d)
			for _, c := range []byte{d.Field, d.Component, d.Repetition, d.Subcomponent, '\r', '\n'} {
				if c != 0 && strings.IndexByte(enc, c) >= 0 {
					t.Errorf("Escape(%q, %q) = %q still holds delimiter %q", txt, d.EncodingChars(), enc, c)
				}
			}
			if got := string(Unescape([]byte(enc), d)); got != txt {
				t.Errorf("round trip %q with %q: escaped %q, back %q", txt, d.EncodingChars(), enc, got)
			}
		}
	}
	// without an escape character delimiters become spaces.
	if got := Escape("a|b^c", Delimiters{'|', '^', '~', 0, '&', 0}); got != "a b c" {
		t.Errorf("no escape char: %q", got)
	}
}

func TestCharsets(t *testing.T) {
	hdr := func(cs string) string {
		return "MSH|^~\\&|A||||||ADT^A01|1|P|2.5||||||" + cs + "\r"
	}
	// 8859/1: Ä (0xC4), Ö (0xD6), and a hex escape holding é (0xE9) in the declared set.
	m := mustParse(t, hdr("8859/1")+"PID|1||x||M\xC4LLER^J\xD6RG\\XE9\\\r")
	if got := m.Get("PID-5"); got != "MÄLLER^JÖRGé" {
		t.Errorf("8859/1: %q", got)
	}
	if err := m.Validate(); err != nil {
		t.Errorf("8859/1 Validate: %v", err)
	}
	// UTF-8 (declared or not) passes through without copying; hex escapes are UTF-8 bytes.
	for _, cs := range []string{"", "UNICODE UTF-8"} {
		m = mustParse(t, hdr(cs)+"PID|1||x||MUÑOZ^JOSÉ\\XC3A9\\\r")
		if got := m.Get("PID-5.2"); got != "JOSÉé" {
			t.Errorf("%q: %q", cs, got)
		}
		if got := m.Get("PID-5.1"); got != "MUÑOZ" {
			t.Errorf("%q: %q", cs, got)
		}
	}
	// invalid UTF-8: getters replace, Validate locates.
	m = mustParse(t, hdr("UNICODE UTF-8")+"PID|1||x||ok^bad\xff\r")
	if got := m.Get("PID-5.2"); got != "bad\uFFFD" || !utf8.ValidString(got) {
		t.Errorf("invalid UTF-8 getter: %q", got)
	}
	err := m.Validate()
	var pe *ParseError
	if !errors.As(err, &pe) || !errors.Is(err, ErrCharset) || pe.Location() != "PID^1^5^1^2" {
		t.Errorf("Validate invalid UTF-8: %v (location %v)", err, pe)
	}
	// ASCII declared, high byte present.
	m = mustParse(t, hdr("ASCII")+"PID|1||x||caf\xc3\xa9\r")
	if err := m.Validate(); !errors.Is(err, ErrCharset) {
		t.Errorf("ASCII Validate: %v", err)
	}
	if got := m.Get("PID-5"); got != "café" {
		t.Errorf("ASCII getter: %q", got)
	}
	// unsupported character set: reported, text read as UTF-8.
	m = mustParse(t, hdr("ISO IR87")+"PID|1||x||abc\r")
	if err := m.Validate(); !errors.Is(err, ErrCharset) {
		t.Errorf("unsupported charset Validate: %v", err)
	}
	// MSH-18 repetitions: the first one counts.
	m = mustParse(t, hdr("8859/1~UNICODE UTF-8")+"PID|1||x||\xE9\r")
	if got := m.Get("PID-5"); got != "é" {
		t.Errorf("MSH-18 repetition: %q", got)
	}
	if got := m.Header().CharacterSet; got != "8859/1" {
		t.Errorf("Header.CharacterSet = %q", got)
	}
}

func TestValidateEscapesAndRequired(t *testing.T) {
	m := mustParse(t, "MSH|^~\\&|A|B|C|D|||ADT\rPID|1||ok~x^y&\\Xz\\||ok\\F\rOBX|1\r")
	err := m.Validate()
	if err == nil {
		t.Fatal("Validate: nil")
	}
	var locs []string
	for _, e := range err.(interface{ Unwrap() []error }).Unwrap() {
		var pe *ParseError
		if !errors.As(e, &pe) {
			t.Fatalf("%v is not a ParseError", e)
		}
		locs = append(locs, pe.Location()+" "+strings.TrimPrefix(pe.Err.Error(), "hl7: "))
	}
	want := []string{
		"MSH^1^10 required value missing",
		"MSH^1^11^1^1 required value missing",
		"MSH^1^12^1^1 required value missing",
		"PID^1^3^2^2^2 invalid escape sequence",
		"PID^1^5^1^1 invalid escape sequence",
	}
	if strings.Join(locs, "\n") != strings.Join(want, "\n") {
		t.Errorf("Validate locations:\n%s\nwant\n%s", strings.Join(locs, "\n"), strings.Join(want, "\n"))
	}
	m = mustParse(t, "MSH|^~\\&|A||||||ADT^A01|1|P|3.0\r")
	if err := m.Validate(); !errors.Is(err, ErrVersion) {
		t.Errorf("version 3.0: %v", err)
	}
	m = mustParse(t, sampleADT)
	if err := m.Validate(); err != nil {
		t.Errorf("sample Validate: %v", err)
	}
}

package hl7

import (
	"errors"
	"strings"
	"testing"
	"time"
)

var ackTime = time.Date(2024, 3, 5, 14, 7, 9, 0, time.FixedZone("", -5*3600))

func TestHeader(t *testing.T) {
	m := mustParse(t, sampleADT)
	h := m.Header()
	want := Header{
		FieldSep: '|', EncodingChars: "^~\\&",
		SendingApplication:   HD{"SEND", "1.2.3", "ISO", "SEND^1.2.3^ISO"},
		SendingFacility:      HD{"FAC", "", "", "FAC"},
		ReceivingApplication: HD{"RECV", "", "", "RECV"},
		ReceivingFacility:    HD{"RFAC", "", "", "RFAC"},
		DateTime:             "20240101120000",
		MessageCode:          "ADT", TriggerEvent: "A01", MessageStructure: "ADT_A01",
		ControlID: "CTRL1", ProcessingID: "P", Version: "2.5.1", CharacterSet: "UNICODE UTF-8",
	}
	if h != want {
		t.Errorf("Header = %+v\nwant     %+v", h, want)
	}
}

func TestParseHeaderLenient(t *testing.T) {
	// body broken beyond Parse, header readable.
	raw := []byte("\x00\x00MSH|^~\\&|APP|FAC|GW|HIE|20240101||ORU^R01|C42|P|2.3\rgarbage\r")
	if _, err := Parse(raw); err == nil {
		t.Fatal("Parse accepted a broken message")
	}
	h, d, err := ParseHeader(raw)
	if err != nil {
		t.Errorf("ParseHeader: %v", err)
	}
	if d != DefaultDelimiters || h.ControlID != "C42" || h.TriggerEvent != "R01" || h.SendingApplication.Raw != "APP" {
		t.Errorf("ParseHeader = %+v, %+v", h, d)
	}
	// unusable encoding characters: defaults used, error reported, values still read.
	h, d, err = ParseHeader([]byte("MSH|^\x01\\&|APP||||||ADT^A01|C1|P|2.5\r"))
	if !errors.Is(err, ErrBadDelimiters) || h.ControlID != "C1" || d.Component != '^' {
		t.Errorf("bad encoding chars: %v %+v %+v", err, h, d)
	}
	// missing control id and version: reported, rest returned.
	h, _, err = ParseHeader([]byte("MSH|^~\\&|APP||||||ADT^A01\r"))
	if !errors.Is(err, ErrRequired) || h.MessageCode != "ADT" {
		t.Errorf("missing fields: %v %+v", err, h)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Location() != "MSH^1^10" {
		t.Errorf("first missing field location: %v", pe)
	}
	if _, _, err := ParseHeader(nil); !errors.Is(err, ErrEmpty) {
		t.Errorf("empty: %v", err)
	}
	if _, _, err := ParseHeader([]byte("PID|1")); !errors.Is(err, ErrNoMSH) {
		t.Errorf("no MSH: %v", err)
	}
	if _, _, err := ParseHeader([]byte("MSH")); !errors.Is(err, ErrBadDelimiters) {
		t.Errorf("bare MSH: %v", err)
	}
}

func ackSegments(t *testing.T, ack []byte) []string {
	t.Helper()
	s := string(ack)
	if !strings.HasSuffix(s, "\r") || strings.Contains(s, "\n") {
		t.Fatalf("ACK segments must end with CR only: %q", s)
	}
	return strings.Split(strings.TrimSuffix(s, "\r"), "\r")
}

func TestNewACKv25(t *testing.T) {
	h, d, err := ParseHeader([]byte("MSH|^~\\&|LAB^1.2^ISO|LABFAC|HIE|HIEFAC|20240101||ORU^R01^ORU_R01|MSG001|P|2.5.1\r"))
	if err != nil {
		t.Fatal(err)
	}
	ack := NewACK(h, d, AppError, "ACK001", ackTime,
		ErrorDetail{Location: "PID^1^5", Code: "101", Message: "name | missing ^ here & there ~ \\ ok\nline2"},
		ErrorDetail{Code: "207", Severity: "W", Message: "note"})
	segs := ackSegments(t, ack)
	want := []string{
		"MSH|^~\\&|HIE|HIEFAC|LAB^1.2^ISO|LABFAC|20240305140709-0500||ACK^R01^ACK|ACK001|P|2.5.1",
		"MSA|AE|MSG001",
		"ERR||PID^1^5|101^Required field missing^HL70357|E||||name \\F\\ missing \\S\\ here \\T\\ there \\R\\ \\E\\ ok\\.br\\line2",
		"ERR|||207^Application internal error^HL70357|W||||note",
	}
	if strings.Join(segs, "\n") != strings.Join(want, "\n") {
		t.Errorf("ACK:\n%s\nwant\n%s", strings.Join(segs, "\n"), strings.Join(want, "\n"))
	}
	// The ACK parses back and its values decode to what was put in.
	m, err := Parse(ack)
	if err != nil {
		t.Fatal(err)
	}
	if m.Get("ERR-8") != "name | missing ^ here & there ~ \\ ok\nline2" || m.Get("MSA-2") != "MSG001" || m.Get("ERR[2]-3.1") != "207" {
		t.Errorf("ACK does not read back: ERR-8 %q", m.Get("ERR-8"))
	}
	if err := m.Validate(); err != nil {
		t.Errorf("ACK does not validate: %v", err)
	}
}

func TestNewACKv23(t *testing.T) {
	h, d, _ := ParseHeader([]byte("MSH|^~\\&|APP|FAC|GW|HIE|20240101||ADT^A01|C9|T|2.3\r"))
	ack := NewACK(h, d, AppReject, "A9", ackTime, ErrorDetail{Location: "PID^1^3^1^1", Code: "101", Message: "id missing"})
	segs := ackSegments(t, ack)
	want := []string{
		"MSH|^~\\&|GW|HIE|APP|FAC|20240305140709-0500||ACK^A01|A9|T|2.3",
		"MSA|AR|C9|id missing",
		"ERR|PID^1^3^101&Required field missing&HL70357",
	}
	if strings.Join(segs, "\n") != strings.Join(want, "\n") {
		t.Errorf("ACK:\n%s\nwant\n%s", strings.Join(segs, "\n"), strings.Join(want, "\n"))
	}
	// 2.3.1 already has the message structure component.
	h.Version = "2.3.1"
	if segs := ackSegments(t, NewACK(h, d, AppAccept, "A10", ackTime)); !strings.Contains(segs[0], "|ACK^A01^ACK|") || len(segs) != 2 {
		t.Errorf("2.3.1 ACK: %q", segs)
	}
}

func TestNewACKCustomDelimiters(t *testing.T) {
	// field separator '^', component '~', repetition '|', and an 8859/1 sender.
	raw := "MSH^~|\\&^APP~X^FAC^GW^HIE^20240101^^ORU~R01^C7^P^2.5^^^^^^8859/1\r"
	h, d, err := ParseHeader([]byte(raw))
	if err != nil {
		t.Fatal(err)
	}
	ack := NewACK(h, d, AppError, "A7", ackTime, ErrorDetail{Location: "OBX^2^5", Code: "102", Message: "bad ^ value ~ é"})
	segs := ackSegments(t, ack)
	want := []string{
		"MSH^~|\\&^GW^HIE^APP~X^FAC^20240305140709-0500^^ACK~R01~ACK^A7^P^2.5^^^^^^8859/1",
		"MSA^AE^C7",
		"ERR^^OBX~2~5^102~Data type error~HL70357^E^^^^bad \\F\\ value \\S\\ \xe9",
	}
	if strings.Join(segs, "\n") != strings.Join(want, "\n") {
		t.Errorf("ACK:\n%q\nwant\n%q", segs, want)
	}
	m, err := Parse(ack)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Get("ERR-8"); got != "bad ^ value ~ é" {
		t.Errorf("ERR-8 reads back as %q", got)
	}
	// no escape character: delimiters in text become spaces.
	h2, d2, _ := ParseHeader([]byte("MSH|^~&|A||||||ADT^A01|C|P|2.5.1\r"))
	ack = NewACK(h2, d2, AppError, "X", ackTime, ErrorDetail{Code: "207", Message: "a|b^c"})
	if segs := ackSegments(t, ack); !strings.HasPrefix(segs[0], "MSH|^~&|") || !strings.HasSuffix(segs[2], "|a b c") {
		t.Errorf("no-escape ACK: %q", segs)
	}
	// unusable delimiters fall back to the defaults.
	ack = NewACK(Header{ControlID: "Z"}, Delimiters{}, CommitAccept, "Y", ackTime)
	if segs := ackSegments(t, ack); segs[0] != "MSH|^~\\&|||||20240305140709-0500||ACK^^ACK|Y|P|2.5.1" || segs[1] != "MSA|CA|Z" {
		t.Errorf("zero header ACK: %q", segs)
	}
}

func TestNewACKFromParseError(t *testing.T) {
	raw := []byte("MSH|^~\\&|APP|FAC|GW|HIE|20240101||ADT^A01|C1|P|2.5.1\rPID|1||\\Xzz\\\r")
	m := mustParse(t, string(raw))
	err := m.Validate()
	var pe *ParseError
	if !errors.As(err, &pe) {
		t.Fatalf("Validate: %v", err)
	}
	ack := NewACK(m.Header(), m.Delimiters(), AppError, "A1", ackTime,
		ErrorDetail{Location: pe.Location(), Code: pe.AckCode(), Message: pe.Error()})
	segs := ackSegments(t, ack)
	if !strings.HasPrefix(segs[2], "ERR||PID^1^3^1^1|102^Data type error^HL70357|E||||hl7: line 2") {
		t.Errorf("ERR from ParseError: %q", segs[2])
	}
}

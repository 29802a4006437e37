package appack

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
)

func TestWanted(t *testing.T) {
	// MSH-15, MSH-16 -> wanted after success, after failure.
	cases := []struct {
		msh15, msh16 string
		ok, fail     bool
	}{
		{"AL", "AL", true, true},
		{"NE", "AL", true, true}, // no commit ACK asked for; still enhanced mode
		{"AL", "ER", false, true},
		{"AL", "SU", true, false},
		{"AL", "NE", false, false},
		{"AL", "", false, false},
		{"", "AL", false, false}, // original mode answered on the connection
		{"", "", false, false},
	}
	for _, c := range cases {
		h := hl7.Header{AcceptAckType: c.msh15, ApplicationAckType: c.msh16}
		if got := Wanted(h, true); got != c.ok {
			t.Errorf("MSH-15 %q MSH-16 %q after success: %v", c.msh15, c.msh16, got)
		}
		if got := Wanted(h, false); got != c.fail {
			t.Errorf("MSH-15 %q MSH-16 %q after failure: %v", c.msh15, c.msh16, got)
		}
	}
}

func env(raw string) store.Envelope {
	return store.Envelope{ID: "e1", Channel: intake.ChannelMLLP, Kind: intake.KindHL7, Sender: "lab", ControlID: "C1", Raw: []byte(raw)}
}

const labMsg = "MSH|^~\\&|LIS|CITYLAB|HIEGW|HIE|20261124101500||ORU^R01^ORU_R01|C1|P|2.5.1|||AL|AL||8859/1\r" +
	"PID|1||1^^^CITYLAB^MR\r"

func TestBuild(t *testing.T) {
	a := New(nil, Options{Routes: map[string]Route{"lab": {Addr: "127.0.0.1:1"}}})
	now := time.Date(2026, 11, 25, 8, 0, 0, 0, time.UTC)

	row, ok := a.build(env(labMsg), nil, now)
	if !ok {
		t.Fatal("no acknowledgement for AL")
	}
	m, err := hl7.Parse(row.Message)
	if err != nil {
		t.Fatalf("%q: %v", row.Message, err)
	}
	h := m.Header()
	if m.Get("MSA-1") != "AA" || m.Get("MSA-2") != "C1" || row.Code != "AA" || row.ControlID != "C1" || row.Status != store.AppAckPending {
		t.Fatalf("row %+v, ack %q", row, row.Message)
	}
	if h.ControlID != row.AckControlID || len(h.ControlID) != 20 || !strings.HasPrefix(h.ControlID, "HA") {
		t.Fatalf("ack control id %q (row %q)", h.ControlID, row.AckControlID)
	}
	if h.AcceptAckType != "AL" || h.ApplicationAckType != "NE" || h.CharacterSet != "8859/1" {
		t.Fatalf("MSH-15/16/18 %q/%q/%q in %q", h.AcceptAckType, h.ApplicationAckType, h.CharacterSet, row.Message)
	}
	if h.ReceivingApplication.NamespaceID != "LIS" || h.ReceivingFacility.NamespaceID != "CITYLAB" || h.TriggerEvent != "R01" {
		t.Fatalf("header %+v", h)
	}
	if m.Get("ERR-3") != "" {
		t.Fatalf("AA with ERR: %q", row.Message)
	}
	if row2, _ := a.build(env(labMsg), nil, now); row2.AckControlID == row.AckControlID {
		t.Fatal("two acknowledgements share a control id")
	}

	// A failure: one ERR per located problem; AR when no rule handles the type.
	fail := fmt.Errorf("map: %w", errors.Join(
		&mapping.MapError{Location: "PID^1^7", Field: "Patient.birthDate", Rule: "common.yaml:30", Msg: "not a date", Code: "102"},
		&hl7.ParseError{Segment: "OBX", Occurrence: 2, Field: 5, Err: hl7.ErrBadEscape}))
	row, ok = a.build(env(labMsg), fail, now)
	if !ok || row.Code != "AE" {
		t.Fatalf("failure: %v %+v", ok, row)
	}
	m, err = hl7.Parse(row.Message)
	if err != nil {
		t.Fatal(err)
	}
	locs, _ := m.Query("ERR[*]-2.1")
	codes, _ := m.Query("ERR[*]-3.1")
	if fmt.Sprint(locs) != "[PID OBX]" || fmt.Sprint(codes) != "[102 102]" || m.Get("MSA-1") != "AE" {
		t.Fatalf("ERR locations %v codes %v in %q", locs, codes, row.Message)
	}
	if !strings.Contains(m.Get("ERR[1]-8"), "not a date") {
		t.Fatalf("ERR-8 %q", m.Get("ERR[1]-8"))
	}
	row, _ = a.build(env(labMsg), &mapping.MapError{Location: "MSH^1^9", Msg: "no rule", Code: "200"}, now)
	if row.Code != "AR" {
		t.Fatalf("unsupported type answered %s", row.Code)
	}
	row, _ = a.build(env(labMsg), errors.New("the Patient has no identifier to link it by (PID-3)"), now)
	if m, _ := hl7.Parse(row.Message); row.Code != "AE" || m.Get("ERR-3.1") != "207" || !strings.Contains(m.Get("ERR-8"), "no identifier") {
		t.Fatalf("plain failure %q", row.Message)
	}

	// A sender without a route: kept as no_route.
	e := env(labMsg)
	e.Sender = "elsewhere"
	if row, ok := a.build(e, nil, now); !ok || row.Status != store.AppAckNoRoute {
		t.Fatalf("unrouted sender: %v %+v", ok, row)
	}
	// Nothing for files, for original mode, for what was not asked.
	e = env(labMsg)
	e.Channel = intake.ChannelSFTP
	if _, ok := a.build(e, nil, now); ok {
		t.Fatal("acknowledgement for a file")
	}
	for _, types := range []string{"|||AL|NE", "||||AL", "|||AL|ER", "|||AL|"} {
		raw := strings.Replace(labMsg, "|||AL|AL", types, 1)
		if _, ok := a.build(env(raw), nil, now); ok {
			t.Errorf("acknowledgement of a success for %q", types)
		}
	}
	if _, ok := a.build(env(strings.Replace(labMsg, "|||AL|AL", "|||AL|SU", 1)), errors.New("x"), now); ok {
		t.Error("acknowledgement of a failure for SU")
	}
}

func TestCommitOnlyKeepsOtherFields(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|X|P|2.5.1\rMSA|AA|1\r", "MSH|^~\\&|A|B|C|D|T||ACK^A01^ACK|X|P|2.5.1|||AL|NE\rMSA|AA|1\r"},
		{"MSH#^~\\&#A#B#C#D#T##ACK^A01^ACK#X#P#2.5.1######UNICODE UTF-8\rMSA#AA#1\r",
			"MSH#^~\\&#A#B#C#D#T##ACK^A01^ACK#X#P#2.5.1###AL#NE##UNICODE UTF-8\rMSA#AA#1\r"},
	} {
		if got := string(commitOnly([]byte(c.in))); got != c.want {
			t.Errorf("commitOnly(%q)\n got %q\nwant %q", c.in, got, c.want)
		}
	}
}

func TestJudge(t *testing.T) {
	ack := func(code, msa2, rest string) []byte {
		return []byte("MSH|^~\\&|ADT|GH|HIEGW|HIE|20261125||ACK^A01^ACK|R1|P|2.5.1\rMSA|" + code + "|" + msa2 + "\r" + rest)
	}
	if code, _, err := judge(ack("CA", "HA1", ""), "HA1"); err != nil || code != "CA" {
		t.Fatalf("CA: %s %v", code, err)
	}
	code, reason, err := judge(ack("CR", "HA1", "ERR||MSA^1|204^Unknown key identifier^HL70357|E||||no such order\r"), "HA1")
	if err != nil || code != "CR" || reason != "no such order" {
		t.Fatalf("CR: %s %q %v", code, reason, err)
	}
	if _, _, err := judge(ack("CA", "HA0", ""), "HA1"); err == nil {
		t.Fatal("an answer to another message accepted")
	}
	if _, _, err := judge([]byte("garbage"), "HA1"); err == nil {
		t.Fatal("an unreadable answer accepted")
	}
	if _, _, err := judge([]byte("MSH|^~\\&|A|B|C|D|T||ACK|R|P|2.5.1\r"), "HA1"); err == nil {
		t.Fatal("an answer without MSA accepted")
	}
}

func TestBackoff(t *testing.T) {
	var got []time.Duration
	for n := range 6 {
		got = append(got, backoff(time.Second, 10*time.Second, n))
	}
	if fmt.Sprint(got) != "[1s 2s 4s 8s 10s 10s]" {
		t.Fatalf("backoff %v", got)
	}
}

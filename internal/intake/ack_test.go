package intake

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// dupStore detects duplicates by (sender, dedup key) like the real store,
// and can be made to fail.
type dupStore struct {
	seen map[string]store.Inserted
	fail error
}

func (d *dupStore) InsertEnvelopes(_ context.Context, envs []*store.Envelope) ([]store.Inserted, error) {
	if d.fail != nil {
		return nil, d.fail
	}
	out := make([]store.Inserted, len(envs))
	for i, e := range envs {
		k := e.Sender + "|" + e.DedupKey
		if first, ok := d.seen[k]; ok {
			first.Duplicate = true
			out[i] = first
			continue
		}
		d.seen[k] = store.Inserted{ID: e.ID, Status: e.Status, Error: e.Error, ACK: e.ACK}
		out[i] = d.seen[k]
	}
	return out, nil
}

type checkFunc func(string, *hl7.Message) []hl7.ErrorDetail

func (f checkFunc) Check(s string, m *hl7.Message) []hl7.ErrorDetail { return f(s, m) }

const good = "MSH|^~\\&|ADT|GOODHEALTH|HIEGW|HIE|20260101120000||ADT^A01^ADT_A01|%s|P|2.5.1%s\rPID|1||1^^^H^MR||DOE^JANE\r"

func goodMsg(id, msh15 string) []byte {
	extra := ""
	if msh15 != "" {
		extra = "|||" + msh15 + "|NE"
	}
	return []byte(strings.Replace(strings.Replace(good, "%s", id, 1), "%s", extra, 1))
}

// TestAckConformance is the README's table: for each input, the ACK sent.
func TestAckConformance(t *testing.T) {
	st := &dupStore{seen: map[string]store.Inserted{}}
	in := New(st, Options{
		Supported: func(code, _ string) bool { return code != "QRY" },
		Covers:    func(_, code, _ string) bool { return code != "ZZZ" },
		Check: checkFunc(func(_ string, m *hl7.Message) []hl7.ErrorDetail {
			if m.Get("MSH-9.1") == "ZZZ" {
				return []hl7.ErrorDetail{{Location: "MSH^1^9", Code: "200", Severity: "E", Message: "no mapping for ZZZ^Z01"}}
			}
			if m.Get("PID-5.1") == "NODATE" {
				return []hl7.ErrorDetail{{Location: "PID^1^7", Code: "101", Severity: "E", Message: "PID-7 birth date is required (rule adt.yaml:12)"}}
			}
			return nil
		}),
	})
	defer in.Close()
	cases := []struct {
		name, raw       string
		code, errCode   string // "" code: no ACK at all
		status          string
		errLoc, errText string
	}{
		{"good, original mode", string(goodMsg("G1", "")), "AA", "", StatusReceived, "", ""},
		{"good, enhanced AL", string(goodMsg("G2", "AL")), "CA", "", StatusReceived, "", ""},
		{"good, enhanced NE: no ACK", string(goodMsg("G3", "NE")), "", "", StatusReceived, "", ""},
		{"good, enhanced ER: no ACK on success", string(goodMsg("G4", "ER")), "", "", StatusReceived, "", ""},
		{"good, enhanced SU", string(goodMsg("G5", "SU")), "CA", "", StatusReceived, "", ""},
		{"no MSH", "PID|1||1^^^H^MR\r", "AR", "100", StatusRejected, "", ""},
		{"MSH-10 missing", string(goodMsg("", "")), "AR", "101", StatusRejected, "MSH^1^10", "MSH-10"},
		{"unknown message type", "MSH|^~\\&|A|F|B|G|20260101||QRY^A19|Q1|P|2.5.1\r", "AR", "200", StatusRejected, "MSH^1^9", `QRY\S\A19`},
		{"no mapping for the type", "MSH|^~\\&|A|F|B|G|20260101||ZZZ^Z01|Z1|P|2.5.1\r", "AR", "200", StatusRejected, "MSH^1^9", "no mapping"},
		{"body does not parse", "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|B1|P|2.5.1\rP!D|1\r", "AE", "", StatusRejected, "", ""},
		{"text invalid in its character set", strings.Replace(strings.Replace(string(goodMsg("C1", "")), "2.5.1", "2.5.1||||||ASCII", 1),
			"DOE^JANE", "DO\u00c9^JANE", 1), "AE", "102", StatusRejected, "PID^1^5", "ASCII"},
		{"malformed escape", strings.Replace(string(goodMsg("C2", "")), "DOE^JANE", `DOE\Xzz\^JANE`, 1), "AE", "102",
			StatusRejected, "PID^1^5", ""},
		{"8859/1 declared, UTF-8 sent: read as declared", strings.Replace(strings.Replace(string(goodMsg("C3", "")), "2.5.1",
			"2.5.1||||||8859/1", 1), "DOE^JANE", "DO\u00c9^JANE", 1), "AA", "", StatusReceived, "", ""},
		{"mapping cannot handle it", strings.Replace(string(goodMsg("M1", "")), "DOE^JANE", "NODATE^JANE", 1), "AE", "101", StatusRejected, "PID^1^7", "rule adt.yaml:12"},
		// In enhanced mode content is the application ACK's business: the
		// message is stored (commit accepted) and fails in processing.
		{"enhanced AL, mapping cannot handle it: stored", strings.Replace(string(goodMsg("M2", "AL")), "DOE^JANE", "NODATE^JANE", 1), "CA", "", StatusReceived, "", ""},
		{"enhanced ER, mapping cannot handle it: stored, no ACK", strings.Replace(string(goodMsg("M3", "ER")), "DOE^JANE", "NODATE^JANE", 1), "", "", StatusReceived, "", ""},
		{"enhanced SU, mapping cannot handle it: stored", strings.Replace(string(goodMsg("M4", "SU")), "DOE^JANE", "NODATE^JANE", 1), "CA", "", StatusReceived, "", ""},
		{"enhanced AL, no mapping for the type", "MSH|^~\\&|A|F|B|G|20260101||ZZZ^Z01|Z2|P|2.5.1|||AL|NE\r", "CR", "200", StatusRejected, "MSH^1^9", "no mapping"},
		{"enhanced ER, body does not parse", "MSH|^~\\&|A|F|B|G|20260101||ADT^A01|B2|P|2.5.1|||ER|NE\rP!D|1\r", "CE", "", StatusRejected, "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rec, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: []byte(tc.raw)})
			if err != nil {
				t.Fatal(err)
			}
			if rec.Status != tc.status {
				t.Errorf("status %q, want %q", rec.Status, tc.status)
			}
			if tc.code == "" {
				if rec.ACK != nil {
					t.Fatalf("the sender asked for no ACK, got %q", rec.ACK)
				}
				return
			}
			ack, err := hl7.Parse(rec.ACK)
			if err != nil {
				t.Fatalf("ACK does not parse: %v\n%q", err, rec.ACK)
			}
			if got := ack.Get("MSA-1"); got != tc.code {
				t.Fatalf("MSA-1 %q, want %q\n%q", got, tc.code, rec.ACK)
			}
			if h, _, _ := hl7.ParseHeader([]byte(tc.raw)); ack.Get("MSA-2") != h.ControlID {
				t.Errorf("MSA-2 %q, want the message's MSH-10 %q", ack.Get("MSA-2"), h.ControlID)
			}
			if tc.errCode != "" && ack.Get("ERR-3.1") != tc.errCode {
				t.Errorf("ERR-3 %q, want %q\n%q", ack.Get("ERR-3.1"), tc.errCode, rec.ACK)
			}
			if tc.errLoc != "" && !strings.HasPrefix(ack.Get("ERR-2"), strings.Split(tc.errLoc, "^")[0]) {
				t.Errorf("ERR-2 %q, want %q\n%q", ack.Get("ERR-2"), tc.errLoc, rec.ACK)
			}
			if tc.errText != "" && !strings.Contains(string(rec.ACK), tc.errText) {
				t.Errorf("ACK does not say %q:\n%q", tc.errText, rec.ACK)
			}
			if tc.code != "AA" && tc.code != "CA" && ack.Get("ERR-3.1") == "" {
				t.Errorf("a negative ACK without an ERR segment:\n%q", rec.ACK)
			}
		})
	}
}

func TestDuplicateGetsTheFirstAnswer(t *testing.T) {
	st := &dupStore{seen: map[string]store.Inserted{}}
	in := New(st, Options{})
	defer in.Close()
	first, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("D1", "")})
	if err != nil {
		t.Fatal(err)
	}
	again, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("D1", "")})
	if err != nil {
		t.Fatal(err)
	}
	if !again.Duplicate || string(again.ACK) != string(first.ACK) || again.EnvelopeID != first.EnvelopeID {
		t.Fatalf("duplicate answered differently:\n%q\n%q", first.ACK, again.ACK)
	}
}

func TestStoreDownIsNeverAcceptedPositively(t *testing.T) {
	in := New(&dupStore{fail: errors.New("disk full")}, Options{})
	defer in.Close()
	rec, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("S1", "")})
	if err == nil {
		t.Fatal("a failed commit must be an error")
	}
	ack, perr := hl7.Parse(rec.ACK)
	if perr != nil || ack.Get("MSA-1") != "AR" || ack.Get("ERR-3.1") != "207" {
		t.Fatalf("want AR with ERR 207, got %q", rec.ACK)
	}
}

// While the store is down every message is answered AR and counted, on
// each channel, and the log gets one line for the first, not one each.
func TestStoreDownIsCountedAndLoggedOnce(t *testing.T) {
	var logged bytes.Buffer
	reg := prometheus.NewRegistry()
	in := New(&dupStore{fail: errors.New("dial tcp 127.0.0.1:5432: connect: connection refused")},
		Options{Logger: slog.New(slog.NewTextHandler(&logged, nil)), Registerer: reg})
	defer in.Close()
	for i := range 50 {
		if _, err := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Peer: "10.0.0.9:4000",
			Raw: goodMsg(fmt.Sprintf("S%d", i), "")}); err == nil {
			t.Fatal("a failed commit must be an error")
		}
	}
	in.RefuseOversize(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("BIG", "")},
		errors.New("frame larger than 1 MiB"))
	if _, err := in.Accept(context.Background(), &Envelope{Channel: ChannelSFTP, Sender: "emr", ReceivedAt: time.Now(),
		Raw: goodMsg("F1", "")}); err == nil {
		t.Fatal("a failed file commit must be an error")
	}
	if got := testutil.ToFloat64(in.storeFailures.WithLabelValues(ChannelMLLP)); got != 51 {
		t.Errorf("MLLP store failures counted: %v, want 51", got)
	}
	if got := testutil.ToFloat64(in.storeFailures.WithLabelValues(ChannelSFTP)); got != 1 {
		t.Errorf("SFTP store failures counted: %v, want 1", got)
	}
	out := logged.String()
	if n := strings.Count(out, "\n"); n != 1 || !strings.Contains(out, "level=ERROR") || !strings.Contains(out, "connection refused") ||
		!strings.Contains(out, "peer=10.0.0.9:4000") || !strings.Contains(out, "more_since_last_line=0") {
		t.Errorf("%d lines logged:\n%s", n, out)
	}
}

// flakyStore fails its first fails commits with err, then stores like
// dupStore.
type flakyStore struct {
	dupStore
	fails int
	err   error
	calls int
}

func (f *flakyStore) InsertEnvelopes(ctx context.Context, envs []*store.Envelope) ([]store.Inserted, error) {
	if f.calls++; f.calls <= f.fails {
		return nil, f.err
	}
	return f.dupStore.InsertEnvelopes(ctx, envs)
}

// A commit that fails on a transient error (the database restarting) is
// tried again within StoreRetry and the sender gets its AA; past the window,
// or on an error that is not transient, the sender is answered AR at once.
func TestTransientStoreErrorRetried(t *testing.T) {
	restarting := &net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED}
	cases := []struct {
		name      string
		fails     int
		err       error
		retry     time.Duration
		want      string
		wantCalls int
	}{
		{"restart shorter than the window", 3, restarting, 2 * time.Second, "AA", 4},
		// Tried at 0, 50 and 150 ms; 200 more would pass the window. (A slow
		// machine may fit fewer tries in it: at least one retry is asked.)
		{"restart longer than the window", 100, restarting, 300 * time.Millisecond, "AR", 3},
		{"not transient", 1, errors.New("disk full"), 2 * time.Second, "AR", 1},
		{"retry off", 1, restarting, -1, "AR", 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := &flakyStore{dupStore: dupStore{seen: map[string]store.Inserted{}}, fails: c.fails, err: c.err}
			reg := prometheus.NewRegistry()
			in := New(st, Options{StoreRetry: c.retry, Registerer: reg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			defer in.Close()
			rec, _ := in.Accept(context.Background(), &Envelope{Channel: ChannelMLLP, ReceivedAt: time.Now(), Raw: goodMsg("R1", "")})
			ack, err := hl7.Parse(rec.ACK)
			if err != nil || ack.Get("MSA-1") != c.want || st.calls > c.wantCalls || c.wantCalls > 1 && st.calls < 2 {
				t.Fatalf("ACK %q after %d commits, want %s after %d", rec.ACK, st.calls, c.want, c.wantCalls)
			}
			if got := testutil.ToFloat64(in.storeRetries); got != float64(st.calls-1) {
				t.Errorf("retries counted %v after %d commits", got, st.calls)
			}
		})
	}
}

func TestFileKinds(t *testing.T) {
	st := &dupStore{seen: map[string]store.Inserted{}}
	in := New(st, Options{DetectCCDA: func(b []byte) bool { return strings.Contains(string(b), "<ClinicalDocument") }})
	defer in.Close()
	cases := map[string]string{
		"MSH|^~\\&|A|F|B|G|1||ADT^A01|1|P|2.5.1\r":                            KindHL7,
		"\xef\xbb\xbfMSH|^~\\&|A|F|B|G|1||ADT^A01|1|P|2.5.1\r":                KindHL7,
		"MSH|^~\\&|A|F\rPID|1\rMSH|^~\\&|A|F\rPID|2\r":                        KindHL7Batch,
		"FHS|^~\\&|A\rBHS|^~\\&|A\rMSH|^~\\&|A|F\rBTS|1\rFTS|1\r":             KindHL7Batch,
		"<?xml version=\"1.0\"?><ClinicalDocument xmlns=\"urn:hl7-org:v3\"/>": KindCCDA,
		"%PDF-1.7 not a clinical message":                                     KindUnknown,
	}
	for data, want := range cases {
		if got := in.detect([]byte(data)); got != want {
			t.Errorf("%q detected as %s, want %s", data[:min(20, len(data))], got, want)
		}
	}
	rec, err := in.Accept(context.Background(), &Envelope{Channel: ChannelSFTP, Sender: "emr", Filename: "x.pdf", Raw: []byte("%PDF-1.7")})
	if err != nil || rec.Status != StatusRejected || !strings.Contains(rec.Reason, "neither") {
		t.Fatalf("unknown file: %+v %v", rec, err)
	}
	dup, err := in.Accept(context.Background(), &Envelope{Channel: ChannelSFTP, Sender: "emr", Filename: "y.pdf", Raw: []byte("%PDF-1.7")})
	if err != nil || !dup.Duplicate {
		t.Fatalf("the same file again is a duplicate: %+v %v", dup, err)
	}
}

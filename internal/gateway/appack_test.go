package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/hiegw/hiegw/internal/store"
)

// senderApp plays the sending application's receiver of application
// acknowledgements: an MLLP server over mutual TLS that records what it
// receives and answers CA, or CR for the control ids in refuse.
type senderApp struct {
	addr   string
	tls    *tls.Config
	refuse map[string]bool // MSA-2 values (the original control ids) to refuse

	mu  sync.Mutex
	got []*hl7.Message
	srv *mllp.Server
}

func (s *senderApp) start(t *testing.T) {
	t.Helper()
	ln, err := net.Listen("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &mllp.Server{TLSConfig: s.tls, Handler: mllp.HandlerFunc(s.serve)}
	s.mu.Lock()
	s.srv = srv
	s.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

func (s *senderApp) stop(t *testing.T) {
	t.Helper()
	s.mu.Lock()
	srv := s.srv
	s.srv = nil
	s.mu.Unlock()
	if srv == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
}

func (s *senderApp) serve(_ context.Context, _ mllp.ConnInfo, frame []byte, _ error) []byte {
	m, err := hl7.Parse(append([]byte(nil), frame...))
	if err != nil {
		return nil
	}
	// Everything is read from m before the test may see it: a Message is
	// not safe for concurrent use.
	code, details := hl7.CommitAccept, []hl7.ErrorDetail(nil)
	if s.refuse[m.Get("MSA-2")] {
		code = hl7.CommitReject
		details = append(details, hl7.ErrorDetail{Code: "204", Message: "no such order here"})
	}
	reply := hl7.NewACK(m.Header(), m.Delimiters(), code, "RCV"+m.Header().ControlID, time.Now(), details...)
	s.mu.Lock()
	s.got = append(s.got, m)
	s.mu.Unlock()
	return reply
}

// received returns the application acknowledgements received so far.
func (s *senderApp) received() []*hl7.Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Clone(s.got)
}

// adtAck is an ADT^A01 from GOODHEALTH (or facility) asking for acknowledgements
// msh15/msh16. A bad one has a PID-3 without an assigning authority: the
// mapping accepts it at intake, but processing cannot link the patient and
// fails it.
func adtAck(facility, control, msh15, msh16 string, good bool) []byte {
	pid := "PID|1||" + control + "^^^" + facility + "^MR||ABERNATHY^MARGARET||19620101|F\r"
	if !good {
		pid = "PID|1||" + control + "||ABERNATHY^MARGARET||19620101|F\r"
	}
	return []byte("MSH|^~\\&|ADT|" + facility + "|HIEGW|HIE|20261124083000||ADT^A01^ADT_A01|" + control + "|P|2.5.1|||" +
		msh15 + "|" + msh16 + "\r" + "EVN|A01|20261124083000\r" + pid + "PV1|1|I|4W^401^A\r")
}

func TestAppAcksEmbedded(t *testing.T) { appAcks(t, "") }

func TestAppAcksPostgres(t *testing.T) { appAcks(t, store.TestPostgresDSN(t)) }

// appAcks sends messages in enhanced mode asking for every kind of
// application acknowledgement and checks exactly which arrive at the
// sender's receiver, over mutual TLS, in order; that a refusal is recorded
// and not sent again; that a sender without a return address has its
// acknowledgements kept; and that one queued while the receiver is down
// arrives once it is up.
func appAcks(t *testing.T, dsn string) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "hie test CA")
	c := testConfig(t, t.TempDir(), dsn)
	cert, key := ca.Server(t, "hiegw").WriteFiles(t, dir, "server")
	caFile := ca.WriteFile(t, dir, "ca")
	c.MLLP.TLS = config.TLS{Cert: cert, Key: key, ClientCA: caFile}
	// hiegw presents its own client certificate to the sender's receiver.
	gwCert, gwKey := ca.Client(t, "hiegw.example").WriteFiles(t, dir, "hiegw-client")
	app := &senderApp{addr: freePort(t), refuse: map[string]bool{"G-REF": true}}
	c.MLLP.Senders = []config.MLLPSender{
		{Name: "goodhealth-adt", CertCN: "adt.goodhealth.example", Facilities: []string{"GOODHEALTH"},
			AckAddr: app.addr, AckTLS: config.TLS{CA: caFile, Cert: gwCert, Key: gwKey}},
		{Name: "citylab", CertCN: "lab.city.example", Facilities: []string{"CITYLAB"}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	recv := ca.Server(t, "goodhealth receiver")
	app.tls = &tls.Config{Certificates: []tls.Certificate{recv.TLS}, ClientCAs: ca.Pool(),
		ClientAuth: tls.RequireAndVerifyClientCert, MinVersion: tls.VersionTLS12}
	app.start(t)
	defer app.stop(t)
	r := start(t, c)
	defer r.shutdown(t)

	client := func(cn string) *tls.Config {
		leaf := ca.Client(t, cn)
		return &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", Certificates: []tls.Certificate{leaf.TLS}}
	}
	adt := client("adt.goodhealth.example")
	cases := []struct {
		control, msh15, msh16 string
		good                  bool
		want                  string // the application acknowledgement's MSA-1; "" none
	}{
		{"G-AL", "AL", "AL", true, "AA"},
		{"B-AL", "AL", "AL", false, "AE"},
		{"G-ER", "AL", "ER", true, ""},
		{"B-ER", "AL", "ER", false, "AE"},
		{"G-SU", "AL", "SU", true, "AA"},
		{"B-SU", "AL", "SU", false, ""},
		{"G-NE", "AL", "NE", true, ""},
		{"B-NE", "AL", "NE", false, ""},
		{"G-EMPTY", "AL", "", true, ""},
		{"G-ORIG", "", "AL", true, ""}, // original mode: the answer on the connection is the application ACK
		{"G-REF", "AL", "AL", true, "AA"},
		// No PID-3 at all: the mapping cannot make the Patient. In enhanced
		// mode that is the application's answer, not the commit's.
		{"M-AL", "AL", "AL", false, "AE"},
	}
	var want []string
	for _, tc := range cases {
		msg := adtAck("GOODHEALTH", tc.control, tc.msh15, tc.msh16, tc.good)
		if strings.HasPrefix(tc.control, "M-") {
			msg = []byte(strings.Replace(string(msg), "PID|1||"+tc.control+"||", "PID|1||||", 1))
		}
		ack, err := sendTLS(r.g.MLLPAddr(), adt, msg)
		if err != nil {
			t.Fatalf("%s: %v", tc.control, err)
		} else if code := ack.Get("MSA-1"); (tc.msh15 != "" && code != "CA") || (tc.msh15 == "" && code != "AA") {
			t.Fatalf("%s: commit ACK %s", tc.control, code)
		}
		if tc.want != "" {
			want = append(want, tc.control+":"+tc.want)
		}
	}
	waitFor(t, "every envelope processed or failed", func() bool {
		n, err := r.g.DB().CountEnvelopes(context.Background())
		return err == nil && n["processed"]+n["failed"] == int64(len(cases)) && n["received"] == 0
	})
	// Exactly the asked-for acknowledgements were queued...
	waitFor(t, "application acks settled", func() bool {
		rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "goodhealth-adt"})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) > len(want) {
			var ids []string
			for _, row := range rows {
				ids = append(ids, row.ControlID+":"+row.Code)
			}
			t.Fatalf("queued %v, want %v", ids, want)
		}
		if len(rows) < len(want) {
			return false
		}
		for _, row := range rows {
			if row.Status == store.AppAckPending {
				return false
			}
		}
		return true
	})
	rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "goodhealth-adt"})
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	for _, row := range rows {
		queued = append(queued, row.ControlID+":"+row.Code)
		wantStatus, wantReply := store.AppAckSent, "CA"
		if row.ControlID == "G-REF" {
			wantStatus, wantReply = store.AppAckRefused, "CR"
			if !strings.Contains(row.LastError, "no such order here") {
				t.Errorf("refusal reason %q", row.LastError)
			}
		}
		if row.Status != wantStatus || row.ReplyCode != wantReply {
			t.Errorf("%s: status %s reply %s, want %s %s", row.ControlID, row.Status, row.ReplyCode, wantStatus, wantReply)
		}
	}
	if fmt.Sprint(queued) != fmt.Sprint(want) {
		t.Fatalf("queued %v, want %v", queued, want)
	}
	// ...and arrived, once each, in the order the messages were sent.
	got := app.received()
	var arrived []string
	for _, m := range got {
		arrived = append(arrived, m.Get("MSA-2")+":"+m.Get("MSA-1"))
		checkAppAck(t, m)
		if m.Get("MSA-2") == "M-AL" && (!strings.HasPrefix(m.Get("ERR-2"), "PID") || !strings.Contains(m.Get("ERR-8"), "rule")) {
			t.Errorf("the mapping failure's AE must name the field and the rule: %q", m.Raw())
		}
	}
	if fmt.Sprint(arrived) != fmt.Sprint(want) {
		t.Fatalf("application acks received %v, want %v", arrived, want)
	}
	// The counters follow the store's commit.
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_sent_total{sender="goodhealth-adt"}`, fmt.Sprint(len(want)-1))
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_refused_total{sender="goodhealth-adt"}`, "1")
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_queued_total{sender="goodhealth-adt"}`, fmt.Sprint(len(want)))

	// Processing the failed messages again (after a mapping fix, say) does
	// not answer them twice.
	if n, err := r.g.DB().Requeue(context.Background(), store.RequeueFilter{Sender: "goodhealth-adt"}); err != nil || n != 5 {
		t.Fatalf("requeue: %d %v", n, err)
	}
	r.g.pipe.Rescan()
	waitFor(t, "the failed messages processed again", func() bool {
		es, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{Sender: "goodhealth-adt", Status: "failed"})
		if err != nil || len(es) != 5 {
			return false
		}
		for _, e := range es {
			if e.Attempts < 2 {
				return false
			}
		}
		return true
	})
	if rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "goodhealth-adt"}); err != nil || len(rows) != len(want) {
		t.Fatalf("after reprocessing: %d application acks queued, want %d (%v)", len(rows), len(want), err)
	}

	// A sender without a return address: kept as no_route, counted.
	if ack, err := sendTLS(r.g.MLLPAddr(), client("lab.city.example"), adtAck("CITYLAB", "L-AL", "AL", "AL", true)); err != nil ||
		ack.Get("MSA-1") != "CA" {
		t.Fatalf("citylab: %v", err)
	}
	waitFor(t, "citylab's ack kept without a route", func() bool {
		rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "citylab"})
		return err == nil && len(rows) == 1 && rows[0].Status == store.AppAckNoRoute && rows[0].Code == "AA"
	})
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_no_route_total{sender="citylab"}`, "1")

	// The receiver goes down: the ack waits, is retried, and arrives once it is back.
	app.stop(t)
	if _, err := sendTLS(r.g.MLLPAddr(), adt, adtAck("GOODHEALTH", "G-DOWN", "AL", "AL", true)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed delivery attempt", func() bool {
		rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "goodhealth-adt", Status: store.AppAckPending})
		return err == nil && len(rows) == 1 && rows[0].ControlID == "G-DOWN" && rows[0].Attempts >= 1 && rows[0].LastError != ""
	})
	if n := len(app.received()); n != len(want) {
		t.Fatalf("%d acks received while the receiver was down", n-len(want))
	}
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_pending{sender="goodhealth-adt"}`, "1")
	app.start(t)
	waitFor(t, "the queued ack delivered", func() bool {
		rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{Sender: "goodhealth-adt", Status: store.AppAckSent})
		return err == nil && len(rows) == len(want)
	})
	got = app.received()
	if n := len(got); n != len(want)+1 || got[n-1].Get("MSA-2") != "G-DOWN" || got[n-1].Get("MSA-1") != "AA" {
		t.Fatalf("after the receiver came back: %d acks, last %q", n, got[n-1].Get("MSA-2"))
	}
	checkAppAck(t, got[len(got)-1])
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_pending{sender="goodhealth-adt"}`, "0")
}

// checkAppAck checks an application acknowledgement's header and ERR.
func checkAppAck(t *testing.T, m *hl7.Message) {
	t.Helper()
	h := m.Header()
	id := m.Get("MSA-2")
	if h.ReceivingApplication.NamespaceID != "ADT" || h.ReceivingFacility.NamespaceID != "GOODHEALTH" ||
		h.SendingApplication.NamespaceID != "HIEGW" || h.SendingFacility.NamespaceID != "HIE" {
		t.Errorf("%s: MSH-3..6 not swapped: %+v", id, h)
	}
	if h.MessageCode != "ACK" || h.TriggerEvent != "A01" || h.Version != "2.5.1" || h.ControlID == "" || len(h.ControlID) > 20 {
		t.Errorf("%s: header %+v", id, h)
	}
	// It asks for a commit ACK only.
	if h.AcceptAckType != "AL" || h.ApplicationAckType != "NE" {
		t.Errorf("%s: MSH-15/16 %q/%q, want AL/NE", id, h.AcceptAckType, h.ApplicationAckType)
	}
	errs, _ := m.Query("ERR[*]-3.1")
	switch m.Get("MSA-1") {
	case "AA":
		if len(errs) != 0 {
			t.Errorf("%s: AA with ERR %v", id, errs)
		}
	case "AE":
		if len(errs) == 0 || m.Get("ERR-8") == "" {
			t.Errorf("%s: AE without ERR (%v)", id, m.Raw())
		}
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func waitMetric(t *testing.T, httpAddr, name, want string) {
	t.Helper()
	var got string
	waitFor(t, name+" "+want, func() bool {
		got = metric(t, httpAddr, name)
		return got == want
	})
}

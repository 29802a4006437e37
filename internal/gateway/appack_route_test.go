package gateway

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp/testcert"
	"github.com/hiegw/hiegw/internal/store"
)

// adtFromApp is an ADT^A01 whose only sender name is MSH-3 (no MSH-4), in
// enhanced mode asking for every application acknowledgement.
func adtFromApp(app, control string) []byte {
	return []byte("MSH|^~\\&|" + app + "||HIEGW|HIE|20261124083000||ADT^A01^ADT_A01|" + control + "|P|2.5.1|||AL|AL\r" +
		"EVN|A01|20261124083000\r" + "PID|1||" + control + "^^^" + app + "^MR||ABERNATHY^MARGARET||19620101|F\r" +
		"PV1|1|I|4W^401^A\r")
}

func TestAppAckRoutesPlainTCPEmbedded(t *testing.T) { plainTCPAckRoutes(t, "") }

func TestAppAckRoutesPlainTCPPostgres(t *testing.T) { plainTCPAckRoutes(t, store.TestPostgresDSN(t)) }

// plainTCPAckRoutes: senders on a plain-TCP listener, known only by MSH-4 or
// MSH-3, get their application acknowledgements at their mllp.ack_routes
// address (plain, or TLS verified against a CA), in order; a sender without
// a route has them kept as no_route.
func plainTCPAckRoutes(t *testing.T, dsn string) {
	dir := t.TempDir()
	ca := testcert.NewCA(t, "hie test CA")
	caFile := ca.WriteFile(t, dir, "ca")
	city := &senderApp{addr: freePort(t)}
	north := &senderApp{addr: freePort(t), tls: &tls.Config{Certificates: []tls.Certificate{ca.Server(t, "north receiver").TLS},
		MinVersion: tls.VersionTLS12}}
	city.start(t)
	defer city.stop(t)
	north.start(t)
	defer north.stop(t)

	c := testConfig(t, t.TempDir(), dsn)
	c.MLLP.AckRoutes = []config.AckRoute{
		{Facility: "CITYHOSP", Addr: city.addr},
		{Facility: "NORTHADT", Addr: north.addr, TLS: config.TLS{CA: caFile}},
	}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if c.MLLP.TLS.Enabled() || len(c.MLLP.Senders) > 0 {
		t.Fatal("the listener must be plain TCP for this test")
	}
	r := start(t, c)
	defer r.shutdown(t)

	msgs := []struct {
		msg  []byte
		want string // sender:control:MSA-1 of the application ACK; "" none
	}{
		{adtAck("CITYHOSP", "C-AL", "AL", "AL", true), "CITYHOSP:C-AL:AA"},
		{adtAck("CITYHOSP", "C-BAD", "AL", "AL", false), "CITYHOSP:C-BAD:AE"},
		{adtAck("CITYHOSP", "C-NE", "AL", "NE", true), ""},
		{adtAck("CITYHOSP", "C-ER", "AL", "ER", true), ""},
		{adtFromApp("NORTHADT", "N-AL"), "NORTHADT:N-AL:AA"},
		{adtAck("CITYHOSP", "C-SU", "AL", "SU", true), "CITYHOSP:C-SU:AA"},
		{adtAck("OTHERHOSP", "O-AL", "AL", "AL", true), "OTHERHOSP:O-AL:AA"},
	}
	for _, m := range msgs {
		if ack := send(t, r.g.MLLPAddr(), m.msg); ack.Get("MSA-1") != "CA" {
			t.Fatalf("commit ACK %s (%s)", ack.Get("MSA-1"), ack.Get("ERR-8"))
		}
	}
	waitFor(t, "every envelope processed or failed", func() bool {
		n, err := r.g.DB().CountEnvelopes(context.Background())
		return err == nil && n["processed"]+n["failed"] == int64(len(msgs)) && n["received"] == 0
	})
	waitFor(t, "the routed acks settled and the unrouted one kept", func() bool {
		rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{})
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) < 5 {
			return false
		}
		for _, row := range rows {
			wantStatus := store.AppAckSent
			if row.Sender == "OTHERHOSP" {
				wantStatus = store.AppAckNoRoute
			}
			if row.Status != wantStatus {
				return false
			}
		}
		return true
	})

	arrived := func(app *senderApp) []string {
		var out []string
		for _, got := range app.received() {
			// A parsed message decodes lazily, so read a copy of its own,
			// not the one the receiver's goroutine reads.
			m, err := hl7.Parse(append([]byte(nil), got.Raw()...))
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, m.Header().ReceivingFacility.NamespaceID+"/"+m.Header().ReceivingApplication.NamespaceID+":"+
				m.Get("MSA-2")+":"+m.Get("MSA-1"))
			if h := m.Header(); h.SendingApplication.NamespaceID != "HIEGW" || h.AcceptAckType != "AL" || h.ApplicationAckType != "NE" {
				t.Errorf("%s: header %+v", m.Get("MSA-2"), h)
			}
			if m.Get("MSA-1") == "AE" && m.Get("ERR-8") == "" {
				t.Errorf("%s: AE without ERR", m.Get("MSA-2"))
			}
		}
		return out
	}
	// MSH-3..6 swapped: the ACK names the sender's own facility and application.
	if got, want := fmt.Sprint(arrived(city)), "[CITYHOSP/ADT:C-AL:AA CITYHOSP/ADT:C-BAD:AE CITYHOSP/ADT:C-SU:AA]"; got != want {
		t.Fatalf("at CITYHOSP's route: %s, want %s", got, want)
	}
	if got, want := fmt.Sprint(arrived(north)), "[/NORTHADT:N-AL:AA]"; got != want {
		t.Fatalf("at NORTHADT's route: %s, want %s", got, want)
	}

	rows, err := r.g.DB().ListAppAcks(context.Background(), store.AppAckFilter{})
	if err != nil {
		t.Fatal(err)
	}
	var queued []string
	for _, row := range rows {
		queued = append(queued, row.Sender+":"+row.ControlID+":"+row.Code)
	}
	var want []string
	for _, m := range msgs {
		if m.want != "" {
			want = append(want, m.want)
		}
	}
	slices.Sort(queued)
	slices.Sort(want)
	if fmt.Sprint(queued) != fmt.Sprint(want) {
		t.Fatalf("queued %v, want %v", queued, want)
	}
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_sent_total{sender="CITYHOSP"}`, "3")
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_sent_total{sender="NORTHADT"}`, "1")
	waitMetric(t, r.g.HTTPAddr(), `hiegw_appack_no_route_total{sender="OTHERHOSP"}`, "1")
}

// TestAppAckRouteTLSUnusableStopsStart: a route whose TLS cannot be set up
// stops start-up, naming the route.
func TestAppAckRouteTLSUnusableStopsStart(t *testing.T) {
	dir := t.TempDir()
	c := testConfig(t, t.TempDir(), "")
	bad := filepath.Join(dir, "not-a-ca.pem")
	if err := os.WriteFile(bad, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	c.MLLP.AckRoutes = []config.AckRoute{{Facility: "CITYHOSP", Addr: "127.0.0.1:6661", TLS: config.TLS{CA: bad}}}
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	g, err := New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil {
		g.closeAll()
		t.Fatal("started with an unusable ack route CA")
	}
	if want := "mllp.ack_routes CITYHOSP: tls"; !strings.Contains(err.Error(), want) {
		t.Fatalf("error %q does not name %q", err, want)
	}
}

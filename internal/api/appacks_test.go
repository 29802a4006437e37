package api

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// seedAppAcks queues application acknowledgements for five envelopes of
// two senders and settles two of them: LAB1 sent, LAB2 refused.
func seedAppAcks(t *testing.T, db *store.DB) {
	t.Helper()
	ctx := context.Background()
	var envs []*store.Envelope
	for i, s := range []string{"LAB", "LAB", "CLINIC", "LAB", "CLINIC"} {
		c := fmt.Sprintf("%s%d", s, i+1)
		envs = append(envs, &store.Envelope{ID: "env-" + c, Channel: "mllp", Sender: s, ReceivedAt: time.Now().UTC(),
			Kind: "hl7v2", MessageType: "ORU^R01", ControlID: c, DedupKey: "msh10:" + c, SHA256: "x", Status: "received",
			Raw: []byte("MSH|^~\\&|A|" + s + "|B|C|2026||ORU^R01|" + c + "|P|2.5.1\rPID|1||1^^^X^MR||SECRETNAME\r")})
	}
	if _, err := db.InsertEnvelopes(ctx, envs); err != nil {
		t.Fatal(err)
	}
	for _, e := range envs {
		status := store.AppAckPending
		if e.Sender == "CLINIC" {
			status = store.AppAckNoRoute
		}
		code := "AA"
		if e.ControlID == "LAB2" {
			code = "AE"
		}
		_, err := db.EnqueueAppAck(ctx, store.AppAck{EnvelopeID: e.ID, Sender: e.Sender, ControlID: e.ControlID,
			AckControlID: "HIEGW-" + e.ControlID, Code: code, Status: status,
			Message: []byte("MSH|^~\\&|HIEGW|HIE|A|" + e.Sender + "|2026||ACK^R01^ACK|HIEGW-" + e.ControlID + "|P|2.5.1\rMSA|" + code + "|" + e.ControlID + "\r")})
		if err != nil {
			t.Fatal(err)
		}
	}
	got, err := db.ClaimAppAcks(ctx, "LAB", "test", 2, time.Minute)
	if err != nil || len(got) != 2 {
		t.Fatalf("claim: %d %v", len(got), err)
	}
	if err := db.MarkAppAckSent(ctx, got[0].Seq, "CA"); err != nil {
		t.Fatal(err)
	}
	if err := db.MarkAppAckRefused(ctx, got[1].Seq, "CR", "MSA-3: duplicate"); err != nil {
		t.Fatal(err)
	}
}

type appAckList struct {
	AppAcks    []map[string]any  `json:"appacks"`
	NextBefore string            `json:"next_before"`
	Counts     []appAckCountView `json:"counts"`
	ByStatus   map[string]int64  `json:"by_status"`
}

func (f *fixture) appAcks(t *testing.T, path, tok string, wantStatus int) appAckList {
	t.Helper()
	w := f.do("GET", path, tok)
	if w.Code != wantStatus {
		t.Fatalf("GET %s: %d, want %d: %s", path, w.Code, wantStatus, w.Body)
	}
	var out appAckList
	if wantStatus == 200 {
		if err := json.Unmarshal(w.Body.Bytes(), &out); err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
	}
	return out
}

func controls(l appAckList) string {
	var out []string
	for _, a := range l.AppAcks {
		out = append(out, fmt.Sprint(a["control_id"]))
	}
	return strings.Join(out, " ")
}

// TestAppAckList: newest first, filtered, paged, counted per sender and
// state; readable by every role without content and without an audit entry;
// the acknowledgements' text only with ?body=true, and that read audited
// with the envelopes it showed.
func TestAppAckList(t *testing.T) {
	f := newFixture(t)
	seedAppAcks(t, f.db)
	auditsBefore := len(mustAudit(t, f.db))

	all := f.appAcks(t, "/api/v1/appacks", f.readOnly, 200)
	if got := controls(all); got != "CLINIC5 LAB4 CLINIC3 LAB2 LAB1" {
		t.Fatalf("order %q", got)
	}
	for _, a := range all.AppAcks {
		if _, ok := a["message"]; ok {
			t.Fatalf("row %v carries the acknowledgement without body=true", a["control_id"])
		}
		for _, k := range []string{"seq", "envelope_id", "sender", "ack_control_id", "code", "status", "attempts", "created_at"} {
			if _, ok := a[k]; !ok {
				t.Fatalf("row %v has no %s", a["control_id"], k)
			}
		}
	}
	byControl := map[string]map[string]any{}
	for _, a := range all.AppAcks {
		byControl[fmt.Sprint(a["control_id"])] = a
	}
	if a := byControl["LAB1"]; a["status"] != "sent" || a["reply_code"] != "CA" || a["sent_at"] == nil || a["next_attempt_at"] != nil {
		t.Errorf("LAB1 %v", a)
	}
	if a := byControl["LAB2"]; a["status"] != "refused" || a["code"] != "AE" || a["last_error"] != "MSA-3: duplicate" ||
		a["done_at"] == nil || a["sent_at"] != nil || a["attempts"] != 1.0 {
		t.Errorf("LAB2 %v", a)
	}
	if a := byControl["LAB4"]; a["status"] != "pending" || a["next_attempt_at"] == nil || a["envelope_id"] != "env-LAB4" ||
		a["ack_control_id"] != "HIEGW-LAB4" {
		t.Errorf("LAB4 %v", a)
	}
	if fmt.Sprint(all.Counts) != "[{CLINIC no_route 2} {LAB pending 1} {LAB refused 1} {LAB sent 1}]" {
		t.Errorf("counts %v", all.Counts)
	}
	if fmt.Sprint(all.ByStatus) != "map[no_route:2 pending:1 refused:1 sent:1]" {
		t.Errorf("by status %v", all.ByStatus)
	}

	if got := controls(f.appAcks(t, "/api/v1/appacks?sender=LAB", f.analyst, 200)); got != "LAB4 LAB2 LAB1" {
		t.Errorf("sender LAB: %q", got)
	}
	if got := controls(f.appAcks(t, "/api/v1/appacks?status=no_route", f.operator, 200)); got != "CLINIC5 CLINIC3" {
		t.Errorf("no_route: %q", got)
	}
	if got := controls(f.appAcks(t, "/api/v1/appacks?sender=CLINIC&status=sent", f.operator, 200)); got != "" {
		t.Errorf("CLINIC sent: %q", got)
	}
	// Pages of two.
	var pages []string
	path := "/api/v1/appacks?limit=2"
	for i := 0; i < 4; i++ {
		l := f.appAcks(t, path, f.readOnly, 200)
		pages = append(pages, controls(l))
		if l.NextBefore == "" {
			break
		}
		path = "/api/v1/appacks?limit=2&before=" + l.NextBefore
	}
	if fmt.Sprint(pages) != "[CLINIC5 LAB4 CLINIC3 LAB2 LAB1 ]" {
		t.Errorf("pages %q", pages)
	}
	for _, bad := range []string{"status=done", "limit=x", "limit=0", "before=-1", "body=yes"} {
		f.appAcks(t, "/api/v1/appacks?"+bad, f.operator, 400)
	}
	if n := len(mustAudit(t, f.db)); n != auditsBefore {
		t.Fatalf("listing without bodies wrote %d audit entries", n-auditsBefore)
	}

	withBody := f.appAcks(t, "/api/v1/appacks?sender=LAB&body=true", f.analyst, 200)
	if len(withBody.AppAcks) != 3 || !strings.Contains(fmt.Sprint(withBody.AppAcks[0]["message"]), "MSA|AA|LAB4") {
		t.Fatalf("with body: %v", withBody.AppAcks)
	}
	e := f.lastAudit(t)
	if e.Action != "appack.read_body" || e.Actor != "interface-analyst" || e.Target != "env-LAB4,env-LAB2,env-LAB1" ||
		e.Outcome != "ok" || e.Peer == "" {
		t.Fatalf("audit entry %+v", e)
	}

	// Without a token: refused like the rest of the API.
	f.appAcks(t, "/api/v1/appacks", "", 401)
}

// TestMessageShowsAppAck: the single message view names its application
// acknowledgement's state, and its text only with ?body=true.
func TestMessageShowsAppAck(t *testing.T) {
	f := newFixture(t)
	seedAppAcks(t, f.db)
	get := func(path string) messageView {
		t.Helper()
		w := f.do("GET", path, f.operator)
		if w.Code != 200 {
			t.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
		var v messageView
		if err := json.Unmarshal(w.Body.Bytes(), &v); err != nil {
			t.Fatal(err)
		}
		return v
	}
	v := get("/api/v1/messages/env-LAB2")
	if v.AppAck == nil || v.AppAck.Status != "refused" || v.AppAck.Code != "AE" || v.AppAck.ReplyCode != "CR" ||
		v.AppAck.LastError != "MSA-3: duplicate" || v.AppAck.Message != "" {
		t.Fatalf("app ack of env-LAB2: %+v", v.AppAck)
	}
	v = get("/api/v1/messages/env-CLINIC3?body=true")
	if v.AppAck == nil || v.AppAck.Status != "no_route" || !strings.Contains(v.AppAck.Message, "MSA|AA|CLINIC3") {
		t.Fatalf("app ack of env-CLINIC3 with body: %+v", v.AppAck)
	}
	if e := f.lastAudit(t); e.Action != "message.read_body" || e.Target != "env-CLINIC3" {
		t.Fatalf("body read audited as %+v", e)
	}

	// A message without one says nothing about it.
	if _, err := f.db.InsertEnvelopes(context.Background(), []*store.Envelope{{ID: "env-plain", Channel: "mllp",
		Sender: "LAB", ReceivedAt: time.Now().UTC(), Kind: "hl7v2", ControlID: "P1", DedupKey: "msh10:P1", SHA256: "x",
		Status: "received", Raw: []byte("MSH|^~\\&|A|LAB|B|C|2026||ADT^A01|P1|P|2.5.1\r")}}); err != nil {
		t.Fatal(err)
	}
	w := f.do("GET", "/api/v1/messages/env-plain", f.operator)
	if w.Code != 200 || strings.Contains(w.Body.String(), "app_ack") {
		t.Fatalf("message without an application ack: %d %s", w.Code, w.Body)
	}
}

func mustAudit(t *testing.T, db *store.DB) []store.AuditEntry {
	t.Helper()
	es, err := db.AuditLog(context.Background(), 1000)
	if err != nil {
		t.Fatal(err)
	}
	return es
}

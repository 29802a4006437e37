package pipeline_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/intake"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

// The api package's Identity is what pipeline.Identity offers.
var _ api.Identity = (*pipeline.Identity)(nil)

// pidNormalizer is a small stand-in for the mapping set: a Patient from PID
// (identifiers PID-3 with authority and type, name, birth date, sex,
// address, phone; MRG-1 as a "replaces" link) and one Encounter per message,
// keyed by its control id, so each message leaves a resource of its own.
type pidNormalizer struct{}

func (pidNormalizer) Version() string { return "test" }

func (pidNormalizer) NormalizeCCDA(string, []byte) (pipeline.Normalized, error) {
	return pipeline.Normalized{}, fmt.Errorf("no C-CDA here")
}

func cx(m *hl7.Message, field string, rep int) map[string]any {
	p := fmt.Sprintf("%s[%d]", field, rep)
	val, auth, typ := m.Get(p+".1"), m.Get(p+".4"), m.Get(p+".5")
	if val == "" {
		return nil
	}
	id := map[string]any{"system": "urn:hiegw:aa:" + auth, "value": val}
	if typ != "" {
		id["type"] = map[string]any{"coding": []any{map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v2-0203", "code": typ}}}
	}
	return id
}

func (pidNormalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	var ids []any
	for rep := 1; rep <= 4; rep++ {
		if id := cx(m, "PID-3", rep); id != nil {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return pipeline.Normalized{}, fmt.Errorf("PID-3: required")
	}
	first := ids[0].(map[string]any)
	p := fhir.New("Patient", fhir.StableID(sender, "Patient", first["system"].(string), first["value"].(string)))
	p["identifier"] = ids
	p["name"] = []any{map[string]any{"family": m.Get("PID-5.1"), "given": []any{m.Get("PID-5.2")}}}
	if d := m.Get("PID-7"); len(d) >= 8 {
		p["birthDate"] = d[:4] + "-" + d[4:6] + "-" + d[6:8]
	}
	switch m.Get("PID-8") {
	case "M":
		p["gender"] = "male"
	case "F":
		p["gender"] = "female"
	}
	p["address"] = []any{map[string]any{"line": []any{m.Get("PID-11.1")}, "city": m.Get("PID-11.3"),
		"state": m.Get("PID-11.4"), "postalCode": m.Get("PID-11.5")}}
	p["telecom"] = []any{map[string]any{"system": "phone", "value": m.Get("PID-13.1")}}
	if prior := cx(m, "MRG-1", 1); prior != nil {
		p["link"] = []any{map[string]any{"type": "replaces", "other": map[string]any{"identifier": prior}}}
	}
	h := m.Header()
	enc := fhir.New("Encounter", fhir.StableID(sender, "Encounter", h.ControlID))
	enc["subject"] = map[string]any{"reference": p.Ref()}
	ev := route.EventAdmit
	switch h.TriggerEvent {
	case "A08":
		ev = route.EventUpdate
	case "A40":
		ev = route.EventMerge
	}
	return pipeline.Normalized{Event: ev, Resources: []fhir.Resource{p, enc}}, nil
}

// person is the demographics of a PID segment.
type person struct {
	mrn, auth, family, given, dob, sex, street, city, zip, phone string
}

func (p person) pid() string {
	return fmt.Sprintf("PID|1||%s^^^%s^MR||%s^%s||%s|%s|||%s^^%s^IL^%s||%s", p.mrn, p.auth, p.family, p.given, p.dob, p.sex,
		p.street, p.city, p.zip, p.phone)
}

func (p person) key() mpi.Key { return mpi.Key{Authority: "urn:hiegw:aa:" + p.auth, MRN: p.mrn} }

func msg(trigger, control string, p person, extra ...string) []byte {
	segs := append([]string{"MSH|^~\\&|APP|FAC|HIE|HIEGW|20240110093000||ADT^" + trigger + "|" + control + "|P|2.5.1",
		"EVN|" + trigger, p.pid()}, extra...)
	return []byte(strings.Join(segs, "\r") + "\r")
}

// captureRouter queues one outbox row per event and keeps the events.
type captureRouter struct {
	mu     sync.Mutex
	events []route.Event
}

func (c *captureRouter) Route(ev route.Event) ([]store.OutboxEntry, error) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	return []store.OutboxEntry{{Subscriber: "test", Topic: "hie.events", Key: ev.PatientID, EventType: ev.Type,
		EnvelopeID: ev.EnvelopeID, Payload: []byte("{}"), Headers: map[string]string{"hiegw-sender": ev.Sender}}}, nil
}

func (c *captureRouter) all() []route.Event {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.events)
}

type harness struct {
	t     *testing.T
	db    *store.DB
	rt    *captureRouter
	id    *pipeline.Identity
	pipe  *pipeline.Pipeline
	http  *httptest.Server
	seq   int
	local map[string]string // control id -> envelope id
}

func backends(t *testing.T, fn func(t *testing.T, h *harness)) {
	t.Run("sqlite", func(t *testing.T) {
		fn(t, newHarness(t, store.TestEmbedded(t)))
	})
	t.Run("postgres", func(t *testing.T) {
		db, err := store.Open(context.Background(), store.Options{PostgresDSN: store.TestPostgresDSN(t), MaxOpenConns: 4})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { db.Close() })
		fn(t, newHarness(t, db))
	})
}

func newHarness(t *testing.T, db *store.DB) *harness {
	ix, err := mpi.New(sqlstore.New(db.SQL()), mpi.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	rt := &captureRouter{}
	id := pipeline.NewIdentity(ix, db, rt)
	h := &harness{t: t, db: db, rt: rt, id: id, local: map[string]string{},
		pipe: pipeline.New(db, pidNormalizer{}, rt, pipeline.Options{Identity: id})}
	mux := http.NewServeMux()
	for pattern, hd := range api.MPIHandlers(id, db) {
		mux.Handle(pattern, hd)
	}
	h.http = httptest.NewServer(mux)
	t.Cleanup(h.http.Close)
	return h
}

// send stores and processes one message from sender.
func (h *harness) send(sender string, raw []byte) string {
	h.t.Helper()
	ctx := context.Background()
	h.seq++
	id := fmt.Sprintf("env-%s-%d", sender, h.seq)
	e := &store.Envelope{ID: id, Channel: "mllp", Sender: sender, ReceivedAt: time.Now(), Kind: intake.KindHL7,
		MessageType: "ADT", ControlID: id, DedupKey: "msh10:" + id, SHA256: id, Status: "received", Raw: raw}
	if _, err := h.db.InsertEnvelopes(ctx, []*store.Envelope{e}); err != nil {
		h.t.Fatal(err)
	}
	if err := h.pipe.Process(ctx, *e); err != nil {
		h.t.Fatalf("process %s: %v", id, err)
	}
	return id
}

// eid returns the enterprise patient a record belongs to now.
func (h *harness) eid(p person) string {
	h.t.Helper()
	id, err := h.db.PatientByIdentifier(context.Background(), p.key().Authority, p.key().MRN)
	if err != nil {
		h.t.Fatalf("patient of a record: %v", err)
	}
	return id
}

// senders returns, per sender, the number of resources of an enterprise
// patient (what /everything shows).
func (h *harness) senders(eid string) map[string]int {
	h.t.Helper()
	rs, err := h.db.PatientResources(context.Background(), eid, 0, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	out := map[string]int{}
	for _, r := range rs {
		out[r.Sender]++
	}
	return out
}

// patientStamp returns the enterprise identifier written into the stored
// Patient resource of an enterprise patient.
func (h *harness) patientStamp(eid string) string {
	h.t.Helper()
	rs, err := h.db.PatientResources(context.Background(), eid, 0, 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	for _, r := range rs {
		if r.Type != "Patient" {
			continue
		}
		var p struct {
			Identifier []struct{ System, Value string } `json:"identifier"`
		}
		if err := json.Unmarshal([]byte(r.Body), &p); err != nil {
			h.t.Fatal(err)
		}
		for _, id := range p.Identifier {
			if id.System == "urn:hiegw:enterprise-patient" {
				return id.Value
			}
		}
	}
	return ""
}

// outbox returns "event_type key" rows queued so far.
func (h *harness) outbox() []string {
	h.t.Helper()
	var rows []struct {
		Type string `db:"event_type"`
		Key  string `db:"msg_key"`
	}
	if err := h.db.SQL().Select(&rows, `SELECT event_type, msg_key FROM outbox ORDER BY seq`); err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for _, r := range rows {
		out = append(out, r.Type+" "+r.Key)
	}
	return out
}

// mpiAudit returns the index's audit trail of a record as "action actor".
func (h *harness) mpiAudit(p person) []string {
	h.t.Helper()
	var body struct {
		Entries []mpi.AuditEntry `json:"entries"`
	}
	h.call("GET", "/api/v1/mpi/records/audit?authority="+p.key().Authority+"&mrn="+p.mrn, nil, http.StatusOK, &body)
	var out []string
	for _, a := range body.Entries {
		out = append(out, a.Action+" "+a.Actor)
	}
	return out
}

// storeAudit returns the store audit log, oldest first, as "action actor outcome".
func (h *harness) storeAudit(prefix string) []string {
	h.t.Helper()
	es, err := h.db.AuditLog(context.Background(), 1000)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []string
	for i := len(es) - 1; i >= 0; i-- {
		if strings.HasPrefix(es[i].Action, prefix) {
			out = append(out, es[i].Action+" "+es[i].Actor+" "+es[i].Outcome)
		}
	}
	return out
}

func (h *harness) call(method, path string, body any, want int, out any) {
	h.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, h.http.URL+path, rd)
	req.Header.Set("X-Hiegw-Actor", "reviewer-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if resp.StatusCode != want {
		h.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, buf.String())
	}
	if out != nil {
		if err := json.Unmarshal(buf.Bytes(), out); err != nil {
			h.t.Fatalf("%s %s: %v", method, path, err)
		}
	}
}

func contains(list []string, want string) bool { return slices.Contains(list, want) }

var (
	// grace at two hospitals: the same person, spelled alike.
	graceA = person{mrn: "A100", auth: "GHH", family: "Hopper", given: "Grace", dob: "19061209", sex: "F",
		street: "12 Main St", city: "Springfield", zip: "62701", phone: "2175550100"}
	graceB = person{mrn: "B7", auth: "NLAB", family: "Hopper", given: "Grace", dob: "19061209", sex: "F",
		street: "12 Main Street", city: "Springfield", zip: "62701", phone: "2175550100"}
	// alan is someone else entirely.
	alan = person{mrn: "A200", auth: "GHH", family: "Turing", given: "Alan", dob: "19120623", sex: "M",
		street: "3 Hill Rd", city: "Wilmslow", zip: "60001", phone: "3125550111"}
)

func TestTwoSendersLinkedByScore(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.send("ghh", msg("A01", "1", graceA))
		h.send("ghh", msg("A01", "2", alan))
		labEnv := h.send("nlab", msg("A04", "3", graceB))
		eid := h.eid(graceA)
		if got := h.eid(graceB); got != eid {
			t.Fatalf("the second sender's record is patient %s, the first's %s: not linked", got, eid)
		}
		if h.eid(alan) == eid {
			t.Fatal("a different person was linked")
		}
		if got := h.senders(eid); got["ghh"] != 3 || got["nlab"] != 3 { // Patient, Encounter, Provenance each
			t.Errorf("everything of the linked patient by sender: %v", got)
		}
		// The record's explanation: linked by score, with the field weights.
		var rec struct {
			Records []struct {
				EnterpriseID string    `json:"enterprise_id"`
				Entry        mpi.Entry `json:"entry"`
			} `json:"records"`
		}
		h.call("GET", "/api/v1/mpi/records?authority=urn:hiegw:aa:NLAB&identifier=B7", nil, http.StatusOK, &rec)
		if len(rec.Records) != 1 || rec.Records[0].EnterpriseID != eid || rec.Records[0].Entry.Link.Method != mpi.MethodScore ||
			rec.Records[0].Entry.Link.Comparison == nil || len(rec.Records[0].Entry.Link.Comparison.Fields) == 0 {
			t.Fatalf("record lookup: %+v", rec)
		}
		// The link is an event keyed by the enterprise id, with the source message.
		ob := h.outbox()
		if !contains(ob, route.EventUpdate+" "+eid) {
			t.Errorf("no identity event for the link in the outbox: %v", ob)
		}
		var envs []string
		if err := h.db.SQL().Select(&envs, h.db.SQL().Rebind(`SELECT envelope_id FROM outbox WHERE event_type = ? AND msg_key = ?`),
			route.EventUpdate, eid); err != nil {
			t.Fatal(err)
		}
		if len(envs) != 1 || envs[0] != labEnv {
			t.Errorf("the link event's outbox row names envelopes %v, want [%s]", envs, labEnv)
		}
		for _, ev := range h.rt.all() {
			if len(ev.Raw) == 0 || !bytes.HasPrefix(ev.Raw, []byte("MSH|")) {
				t.Errorf("event %s %s carries no source message", ev.Type, ev.EnvelopeID)
			}
		}
		if got := h.mpiAudit(graceB); len(got) != 1 || got[0] != "resolve mpi" {
			t.Errorf("audit trail of the linked record: %v", got)
		}
		if got := h.storeAudit("mpi."); !contains(got, "mpi.lookup reviewer-1 ok") || !contains(got, "mpi.audit.read reviewer-1 ok") {
			t.Errorf("store audit of the API reads: %v", got)
		}
		// The cross-reference list names both records.
		var xref struct {
			Records []mpi.Entry `json:"records"`
		}
		h.call("GET", "/api/v1/mpi/patients/"+eid, nil, http.StatusOK, &xref)
		var keys []string
		for _, e := range xref.Records {
			keys = append(keys, e.Key().String())
		}
		if !slices.Equal(keys, []string{graceA.key().String(), graceB.key().String()}) {
			t.Errorf("cross-reference list: %v", keys)
		}
		// Search by demographics ranks Grace first.
		var found struct {
			Candidates []struct {
				mpi.Comparison
			} `json:"candidates"`
		}
		h.call("GET", "/api/v1/mpi/search?family=Hopper&given=Grace&birth_date=1906-12-09", nil, http.StatusOK, &found)
		if len(found.Candidates) == 0 || found.Candidates[0].EnterpriseID != eid || found.Candidates[0].Score < 20 {
			t.Errorf("search: %+v", found)
		}
	})
}

func TestMergeThenMessageUnderOldMRN(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		// One person registered twice at one hospital, with a wrong birth
		// date the second time: two enterprise patients.
		prior := graceA
		prior.mrn, prior.dob, prior.given, prior.street, prior.zip, prior.phone = "A999", "19551103", "Mary", "77 Oak Ave", "62999", "2175559999"
		h.send("ghh", msg("A01", "1", graceA))
		h.send("ghh", msg("A01", "2", prior))
		survivorEID, priorEID := h.eid(graceA), h.eid(prior)
		if survivorEID == priorEID {
			t.Fatal("the two registrations were linked before the merge; the test needs them apart")
		}
		// ADT^A40: A999 merged into A100.
		h.send("ghh", msg("A40", "3", graceA, "MRG|A999^^^GHH^MR"))
		if got := h.eid(prior); got != survivorEID {
			t.Fatalf("merged MRN resolves to %s, want the survivor's %s", got, survivorEID)
		}
		if got := h.senders(priorEID); len(got) != 0 {
			t.Errorf("resources left behind on the retired patient: %v", got)
		}
		before := h.senders(survivorEID)["ghh"]
		// A new message under the old MRN lands on the survivor.
		h.send("ghh", msg("A08", "4", prior))
		if got := h.eid(prior); got != survivorEID {
			t.Fatalf("old MRN after a new message: %s, want %s", got, survivorEID)
		}
		if got := h.senders(survivorEID)["ghh"]; got <= before {
			t.Errorf("the message under the old MRN added no resources to the survivor: %d, was %d", got, before)
		}
		if ob := h.outbox(); !contains(ob, route.EventMerge+" "+survivorEID) {
			t.Errorf("no merge event keyed by the survivor: %v", ob)
		}
		if got := h.mpiAudit(prior); !contains(got, "merge sender:ghh") {
			t.Errorf("audit trail of the merged record: %v", got)
		}
		if got := h.storeAudit("mpi.merge"); len(got) != 1 || got[0] != "mpi.merge sender:ghh ok" {
			t.Errorf("store audit of the merge: %v", got)
		}
	})
}

func TestUpdateChangesMatch(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		// The lab first sends a record that matches no one (another name,
		// birth date and address), then corrects it with an A08.
		wrong := graceB
		wrong.family, wrong.given, wrong.dob, wrong.street, wrong.zip, wrong.phone = "Smith", "Jane", "19800101", "9 Elm Rd", "70001", "9995550000"
		h.send("ghh", msg("A01", "1", graceA))
		h.send("nlab", msg("A04", "2", wrong))
		eidA, eidB := h.eid(graceA), h.eid(wrong)
		if eidA == eidB {
			t.Fatal("records linked before the update")
		}
		h.send("nlab", msg("A08", "3", graceB))
		if got := h.eid(graceB); got != eidA {
			t.Fatalf("after the update the lab's record is patient %s, want %s", got, eidA)
		}
		if got := h.senders(eidA); got["nlab"] == 0 {
			t.Errorf("the lab's resources did not follow the record: %v", got)
		}
		if got := h.senders(eidB); len(got) != 0 {
			t.Errorf("resources left on the lab record's old patient: %v", got)
		}
		if got := h.mpiAudit(graceB); len(got) != 2 || got[1] != "update mpi" {
			t.Errorf("audit trail: %v", got)
		}
		if ob := h.outbox(); !contains(ob, route.EventUpdate+" "+eidA) {
			t.Errorf("no identity event for the new link: %v", ob)
		}
	})
}

func TestUnlinkRestoresBothHistories(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		h.send("ghh", msg("A01", "1", graceA))
		h.send("nlab", msg("A04", "2", graceB))
		eid := h.eid(graceA)
		if h.eid(graceB) != eid {
			t.Fatal("records not linked; the test needs them linked")
		}
		var res struct {
			Events []mpi.Event `json:"events"`
		}
		h.call("POST", "/api/v1/mpi/unlink", map[string]any{"key": graceB.key(), "reason": "different person, checked by phone"},
			http.StatusOK, &res)
		if len(res.Events) == 0 || res.Events[0].Type != mpi.EventSplit {
			t.Fatalf("unlink events: %+v", res.Events)
		}
		eidB := h.eid(graceB)
		if eidB == eid || h.eid(graceA) != eid {
			t.Fatalf("after unlink: A in %s, B in %s (was %s)", h.eid(graceA), eidB, eid)
		}
		if got := h.senders(eid); got["nlab"] != 0 || got["ghh"] != 3 {
			t.Errorf("first history after unlink: %v", got)
		}
		if got := h.senders(eidB); got["ghh"] != 0 || got["nlab"] != 3 {
			t.Errorf("second history after unlink: %v", got)
		}
		if got := h.patientStamp(eidB); got != eidB {
			t.Errorf("the moved Patient names enterprise patient %q, want %q", got, eidB)
		}
		if ob := h.outbox(); !contains(ob, route.EventUpdate+" "+eidB) {
			t.Errorf("no split event keyed by the new patient: %v", ob)
		}
		// The same person sent again stays apart: the unlink is remembered.
		h.send("nlab", msg("A08", "3", graceB))
		if h.eid(graceB) == eid {
			t.Fatal("the unlinked record was linked again by score")
		}
		trail := h.mpiAudit(graceB)
		if !contains(trail, "unlink reviewer-1") {
			t.Fatalf("audit trail: %v", trail)
		}
		if got := h.storeAudit("mpi.unlink"); len(got) != 1 || got[0] != "mpi.unlink reviewer-1 ok" {
			t.Errorf("store audit of the unlink: %v", got)
		}
		// Undo the unlink: linked again, resources follow.
		var full struct {
			Entries []mpi.AuditEntry `json:"entries"`
		}
		h.call("GET", "/api/v1/mpi/records/audit?authority="+graceB.key().Authority+"&mrn="+graceB.mrn, nil, http.StatusOK, &full)
		unlinkID := ""
		for _, a := range full.Entries {
			if a.Action == "unlink" {
				unlinkID = a.ID
			}
		}
		h.call("POST", "/api/v1/mpi/undo", map[string]any{"audit_id": unlinkID, "reason": "unlinked by mistake"}, http.StatusOK, nil)
		if h.eid(graceB) != eid {
			t.Fatal("undo did not restore the link")
		}
		if got := h.senders(eid); got["nlab"] != 5 || got["ghh"] != 3 { // the A08 added an Encounter and a Provenance
			t.Errorf("history after undo: %v", got)
		}
		// Undoing twice conflicts and is audited as refused.
		h.call("POST", "/api/v1/mpi/undo", map[string]any{"audit_id": unlinkID}, http.StatusConflict, nil)
		if got := h.storeAudit("mpi.undo"); len(got) != 2 || got[0] != "mpi.undo reviewer-1 ok" || !strings.HasPrefix(got[1], "mpi.undo reviewer-1 refused") {
			t.Errorf("store audit of the undos: %v", got)
		}
	})
}

func TestReviewDecision(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		// Same family, birth date and address, given names that disagree
		// outright: a high score held back for a person to decide.
		other := graceB
		other.given = "Winifred"
		h.send("ghh", msg("A01", "1", graceA))
		h.send("nlab", msg("A04", "2", other))
		eidA, eidB := h.eid(graceA), h.eid(other)
		if eidA == eidB {
			t.Fatal("conflicting given names were linked automatically")
		}
		var q struct {
			Tasks []struct {
				mpi.Task
				Record    *mpi.Entry `json:"record"`
				Candidate *mpi.Entry `json:"candidate_record"`
			} `json:"tasks"`
		}
		h.call("GET", "/api/v1/mpi/tasks", nil, http.StatusOK, &q)
		if len(q.Tasks) != 1 {
			t.Fatalf("open tasks: %d, want 1", len(q.Tasks))
		}
		task := q.Tasks[0]
		if task.Record == nil || task.Candidate == nil || task.Record.Key() != other.key() || task.Candidate.Key() != graceA.key() ||
			len(task.Comparison.Fields) == 0 {
			t.Fatalf("task view: %+v", task)
		}
		h.call("POST", "/api/v1/mpi/tasks/"+task.ID+"/decision", map[string]any{"note": "missing match"}, http.StatusBadRequest, nil)
		h.call("POST", "/api/v1/mpi/tasks/"+task.ID+"/decision", map[string]any{"match": true, "note": "same person, nickname"},
			http.StatusOK, nil)
		if h.eid(other) != h.eid(graceA) {
			t.Fatal("match decision did not link the records")
		}
		eid := h.eid(graceA)
		if got := h.senders(eid); got["ghh"] != 3 || got["nlab"] != 3 {
			t.Errorf("history after the decision: %v", got)
		}
		h.call("GET", "/api/v1/mpi/tasks", nil, http.StatusOK, &q)
		if len(q.Tasks) != 0 {
			t.Errorf("task still open after the decision")
		}
		h.call("POST", "/api/v1/mpi/tasks/"+task.ID+"/decision", map[string]any{"match": false}, http.StatusConflict, nil)
		if got := h.mpiAudit(other); !contains(got, "review-match reviewer-1") {
			t.Errorf("audit trail: %v", got)
		}
		if got := h.storeAudit("mpi.review"); len(got) != 2 || got[0] != "mpi.review reviewer-1 ok" || !strings.HasPrefix(got[1], "mpi.review reviewer-1 refused") {
			t.Errorf("store audit of the decisions: %v", got)
		}
		if ob := h.outbox(); !contains(ob, route.EventMerge+" "+eid) && !contains(ob, route.EventUpdate+" "+eid) {
			t.Errorf("no identity event for the decision: %v", ob)
		}
	})
}

func TestMergeOfUnseenPriorMRN(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		// The hub never saw A555; the A40 still teaches it that A555 is now
		// A100, so a late message under A555 joins the survivor.
		h.send("ghh", msg("A01", "1", graceA))
		h.send("ghh", msg("A40", "2", graceA, "MRG|A555^^^GHH^MR"))
		late := graceA
		late.mrn = "A555"
		h.send("ghh", msg("A08", "3", late))
		if got, want := h.eid(late), h.eid(graceA); got != want {
			t.Fatalf("late message under the prior MRN: patient %s, want %s", got, want)
		}
		var rec struct {
			Records []struct {
				Entry mpi.Entry `json:"entry"`
			} `json:"records"`
		}
		h.call("GET", "/api/v1/mpi/records?authority=urn:hiegw:aa:GHH&identifier=A555", nil, http.StatusOK, &rec)
		if len(rec.Records) != 1 || rec.Records[0].Entry.MergedInto == nil || *rec.Records[0].Entry.MergedInto != graceA.key() {
			t.Fatalf("prior record: %+v", rec)
		}
		if got := h.mpiAudit(late); !contains(got, "merge sender:ghh") {
			t.Errorf("audit trail: %v", got)
		}
	})
}

// TestLanesDoNotSplitAPerson processes one person's first messages from six
// senders in parallel lanes: one enterprise patient comes out.
func TestLanesDoNotSplitAPerson(t *testing.T) {
	backends(t, func(t *testing.T, h *harness) {
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		p := pipeline.New(h.db, pidNormalizer{}, h.rt, pipeline.Options{Identity: h.id, Lanes: 6, Poll: 10 * time.Millisecond})
		var envs []*store.Envelope
		var people []person
		for i := range 6 {
			pr := graceA
			pr.auth, pr.mrn = fmt.Sprintf("H%d", i), fmt.Sprintf("M%d", i)
			people = append(people, pr)
			id := fmt.Sprintf("lane-%d", i)
			envs = append(envs, &store.Envelope{ID: id, Channel: "mllp", Sender: fmt.Sprintf("sender-%d", i), ReceivedAt: time.Now(),
				Kind: intake.KindHL7, MessageType: "ADT", ControlID: id, DedupKey: id, SHA256: id, Status: "received",
				Raw: msg("A01", id, pr)})
		}
		if _, err := h.db.InsertEnvelopes(ctx, envs); err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { p.Run(ctx); close(done) }()
		deadline := time.Now().Add(time.Minute)
		for {
			n, err := h.db.CountEnvelopes(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if n["processed"] == int64(len(envs)) {
				break
			}
			if n["failed"] > 0 || time.Now().After(deadline) {
				t.Fatalf("envelopes by status: %v", n)
			}
			time.Sleep(10 * time.Millisecond)
		}
		cancel()
		<-done
		want := h.eid(people[0])
		for i, pr := range people {
			if got := h.eid(pr); got != want {
				t.Fatalf("sender %d's record is patient %s, sender 0's %s: one person became two", i, got, want)
			}
		}
	})
}

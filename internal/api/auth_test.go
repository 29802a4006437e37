package api

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

func openStore(t *testing.T) *store.DB { return store.TestEmbedded(t) }

func token(t *testing.T, name string, role Role) (string, Token) {
	t.Helper()
	tok, hash, err := NewToken()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(hash, "sha256:") || HashToken(tok) != hash {
		t.Fatalf("hash %q", hash)
	}
	return tok, Token{Name: name, SHA256: strings.TrimPrefix(hash, "sha256:"), Role: role}
}

type fixture struct {
	h                 http.Handler
	db                *store.DB
	reg               *prometheus.Registry
	operator, analyst string
	readOnly          string
	extraSaw          []Principal
}

func newFixture(t *testing.T) *fixture {
	f := &fixture{db: openStore(t), reg: prometheus.NewRegistry()}
	var ops, ana, ro Token
	f.operator, ops = token(t, "oncall", RoleOperator)
	f.analyst, ana = token(t, "interface-analyst", RoleAnalyst)
	f.readOnly, ro = token(t, "dashboard", RoleReadOnly)
	extra := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, _ := PrincipalFrom(r.Context())
		f.extraSaw = append(f.extraSaw, p)
		_ = f.db.Audit(r.Context(), RequestAudit(r, "mappings.dry_run", "lab", "ok"))
		w.Write([]byte("ran"))
	})
	f.h = Handler(f.db, Options{Tokens: []Token{ops, ana, ro}, Registerer: f.reg, Gatherer: f.reg,
		Extra: map[string]http.Handler{"POST /api/v1/mappings/dry-run": extra, "POST /api/v1/mpi/links": extra}})
	return f
}

func (f *fixture) do(method, path, tok string) *httptest.ResponseRecorder {
	var body *strings.Reader
	if method == http.MethodPost {
		body = strings.NewReader(`{"sender":"lab","ids":[]}`)
	} else {
		body = strings.NewReader("")
	}
	r := httptest.NewRequest(method, path, body)
	r.RemoteAddr = "192.0.2.7:40000"
	if tok != "" {
		r.Header.Set("Authorization", "Bearer "+tok)
	}
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	return w
}

func (f *fixture) lastAudit(t *testing.T) store.AuditEntry {
	t.Helper()
	es, err := f.db.AuditLog(context.Background(), 1)
	if err != nil || len(es) != 1 {
		t.Fatalf("audit log: %v %v", es, err)
	}
	return es[0]
}

// TestAccessRules checks every role against every kind of route, and that
// each refusal is audited with who, from where, what and the outcome.
func TestAccessRules(t *testing.T) {
	f := newFixture(t)
	cases := []struct {
		name, method, path, tok string
		status                  int
		auditActor, auditAction string
		outcome                 string
	}{
		{"missing token", "GET", "/api/v1/messages", "", 401, "unknown", "api.authenticate", "denied: missing bearer token"},
		{"wrong token", "GET", "/api/v1/messages", "hiegw_not-a-real-token", 401, "unknown", "api.authenticate", "denied: invalid token"},
		{"basic auth", "GET", "/api/v1/stats", "", 401, "unknown", "api.authenticate", "denied: missing bearer token"},
		{"read-only reprocess", "POST", "/api/v1/messages/reprocess", f.readOnly, 403, "dashboard", "api.authorize", "denied: role read-only may not POST this path"},
		{"read-only dry-run", "POST", "/api/v1/mappings/dry-run", f.readOnly, 403, "dashboard", "api.authorize", "denied: role read-only may not POST this path"},
		{"read-only audit", "GET", "/api/v1/audit", f.readOnly, 403, "dashboard", "api.authorize", "denied: role read-only may not GET this path"},
		{"analyst reprocess", "POST", "/api/v1/messages/reprocess", f.analyst, 403, "interface-analyst", "api.authorize", "denied: role analyst may not POST this path"},
		{"analyst MPI link", "POST", "/api/v1/mpi/links", f.analyst, 403, "interface-analyst", "api.authorize", "denied: role analyst may not POST this path"},
		{"analyst dry-run", "POST", "/api/v1/mappings/dry-run", f.analyst, 200, "interface-analyst", "mappings.dry_run", "ok"},
		{"operator reprocess", "POST", "/api/v1/messages/reprocess", f.operator, 200, "oncall", "message.reprocess", "ok"},
		{"operator MPI link", "POST", "/api/v1/mpi/links", f.operator, 200, "oncall", "mappings.dry_run", "ok"},
		{"operator audit", "GET", "/api/v1/audit", f.operator, 200, "oncall", "audit.export", "ok"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w := f.do(tc.method, tc.path, tc.tok)
			if tc.name == "basic auth" {
				r := httptest.NewRequest("GET", tc.path, nil)
				r.SetBasicAuth("oncall", f.operator)
				w = httptest.NewRecorder()
				f.h.ServeHTTP(w, r)
				tc.outcome = "denied: authorization is not a bearer token"
			}
			if w.Code != tc.status {
				t.Fatalf("status %d, want %d: %s", w.Code, tc.status, w.Body)
			}
			if tc.status == 401 && w.Header().Get("WWW-Authenticate") == "" {
				t.Error("401 without WWW-Authenticate")
			}
			e := f.lastAudit(t)
			if e.Actor != tc.auditActor || e.Action != tc.auditAction || e.Outcome != tc.outcome || e.Peer == "" || e.At.IsZero() {
				t.Fatalf("audit entry %+v", e)
			}
			if tc.status >= 400 && e.Target != tc.method+" "+tc.path {
				t.Fatalf("audit target %q", e.Target)
			}
		})
	}
	for _, p := range f.extraSaw {
		if p.Name == "" || (p.Role != RoleAnalyst && p.Role != RoleOperator) {
			t.Errorf("extra handler saw principal %+v", p)
		}
	}
	if len(f.extraSaw) != 2 {
		t.Errorf("extra handler ran %d times, want 2", len(f.extraSaw))
	}
}

func TestPublicPathsNeedNoToken(t *testing.T) {
	f := newFixture(t)
	for _, p := range []string{"/healthz", "/readyz", "/metrics"} {
		if w := f.do("GET", p, ""); w.Code != 200 {
			t.Errorf("%s: %d %s", p, w.Code, w.Body)
		}
	}
	// The console's static files are public (status 404: none is mounted
	// here), its data is not.
	if w := f.do("GET", "/console/app.js", ""); w.Code != 404 {
		t.Errorf("/console/app.js: %d", w.Code)
	}
	if w := f.do("GET", "/api/v1/console/status", ""); w.Code != 401 {
		t.Errorf("/api/v1/console/status: %d", w.Code)
	}
	// Dot segments do not reach data through a public prefix or an
	// analyst's path.
	r := httptest.NewRequest("GET", "/console/../api/v1/messages", nil)
	r.URL.Path = "/console/../api/v1/messages"
	w := httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != 401 {
		t.Errorf("/console/../api/v1/messages: %d", w.Code)
	}
	r = httptest.NewRequest("POST", "/api/v1/mappings/../messages/reprocess", strings.NewReader("{}"))
	r.URL.Path = "/api/v1/mappings/../messages/reprocess"
	r.Header.Set("Authorization", "Bearer "+f.analyst)
	w = httptest.NewRecorder()
	f.h.ServeHTTP(w, r)
	if w.Code != 403 {
		t.Errorf("analyst through /api/v1/mappings/..: %d", w.Code)
	}
	// POST to a public path is not public.
	if w := f.do("POST", "/healthz", ""); w.Code != 401 {
		t.Errorf("POST /healthz: %d", w.Code)
	}
	// The refusals are counted.
	f.do("GET", "/api/v1/messages", "")
	f.do("POST", "/api/v1/messages/reprocess", f.readOnly)
	mfs, err := f.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() == "hiegw_api_auth_failures_total" {
			for _, m := range mf.GetMetric() {
				got[m.GetLabel()[0].GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	if got["api.authenticate"] != 4 || got["api.authorize"] != 2 {
		t.Fatalf("failure counters %v", got)
	}
}

// TestNoTokensServesLoopbackOnly checks the laptop default: with no token
// configured, a loopback caller is served (as "local") and any other refused.
func TestNoTokensServesLoopbackOnly(t *testing.T) {
	db := openStore(t)
	h := Handler(db, Options{})
	for _, tc := range []struct {
		remote string
		status int
	}{{"127.0.0.1:5000", 200}, {"[::1]:5000", 200}, {"10.0.0.8:5000", 401}} {
		r := httptest.NewRequest("POST", "/api/v1/messages/reprocess", strings.NewReader(`{"sender":"x"}`))
		r.RemoteAddr = tc.remote
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != tc.status {
			t.Fatalf("%s: %d %s", tc.remote, w.Code, w.Body)
		}
		es, _ := db.AuditLog(context.Background(), 1)
		if tc.status == 200 && es[0].Actor != LocalPrincipal {
			t.Fatalf("actor %q", es[0].Actor)
		}
		if tc.status == 401 && (es[0].Actor != "unknown" || es[0].Peer != "10.0.0.8") {
			t.Fatalf("refusal audit %+v", es[0])
		}
	}
}

// TestAuditExportFHIR reads a message body (audited), then exports the
// audit log as FHIR AuditEvents and checks who, when, where, what, outcome,
// and that the body is nowhere in the export.
func TestAuditExportFHIR(t *testing.T) {
	f := newFixture(t)
	body := "MSH|^~\\&|LIS|CITYLAB|HIE|HIE|20260101||ORU^R01|C1|P|2.5.1\rPID|1||MRN98765^^^CITY^MR||ZYXWVUTS^QUENTINA\r"
	ins, err := f.db.InsertEnvelopes(context.Background(), []*store.Envelope{{ID: "env-1", Channel: "mllp", Sender: "lab",
		ReceivedAt: time.Now(), Kind: "hl7v2", DedupKey: "msh10:C1", SHA256: "x", Status: "received", Raw: []byte(body)}})
	if err != nil || len(ins) != 1 {
		t.Fatal(err)
	}
	if w := f.do("GET", "/api/v1/messages/env-1?body=true", f.readOnly); w.Code != 200 || !strings.Contains(w.Body.String(), "ZYXWVUTS") {
		t.Fatalf("body read: %d", w.Code)
	}
	f.do("GET", "/api/v1/messages", "wrong")
	w := f.do("GET", "/api/v1/audit?format=fhir&limit=10", f.operator)
	if w.Code != 200 || w.Header().Get("Content-Type") != "application/fhir+json" {
		t.Fatalf("export: %d %s", w.Code, w.Header())
	}
	for _, phi := range []string{"ZYXWVUTS", "QUENTINA", "PID|", "MSH|"} {
		if strings.Contains(w.Body.String(), phi) {
			t.Fatalf("export holds message content %q", phi)
		}
	}
	var b struct {
		ResourceType, Type string
		Entry              []struct{ Resource map[string]any }
	}
	if err := json.Unmarshal(w.Body.Bytes(), &b); err != nil {
		t.Fatal(err)
	}
	if b.ResourceType != "Bundle" || b.Type != "collection" || len(b.Entry) != 2 {
		t.Fatalf("bundle %s %s with %d entries", b.ResourceType, b.Type, len(b.Entry))
	}
	// Newest first: the failed authentication, then the body read (the
	// export is audited after it reads the log).
	fail, read := b.Entry[0].Resource, b.Entry[1].Resource
	check := func(name string, r map[string]any, path string, want any) {
		t.Helper()
		var v any = r
		for _, k := range strings.Split(path, ".") {
			switch x := v.(type) {
			case map[string]any:
				v = x[k]
			case []any:
				v = x[0].(map[string]any)[k]
			}
		}
		if v != want {
			t.Errorf("%s %s = %v, want %v", name, path, v, want)
		}
	}
	check("failure", fail, "resourceType", "AuditEvent")
	check("failure", fail, "type.code", "110114")
	check("failure", fail, "outcome", "4")
	check("failure", fail, "agent.who.display", "unknown")
	check("failure", fail, "agent.network.address", "192.0.2.7")
	check("read", read, "type.code", "110110")
	check("read", read, "action", "R")
	check("read", read, "outcome", "0")
	check("read", read, "agent.who.display", "dashboard")
	check("read", read, "entity.what.identifier.value", "env-1")
	check("read", read, "subtype.code", "message.read_body")
	if _, err := time.Parse(time.RFC3339Nano, read["recorded"].(string)); err != nil {
		t.Errorf("recorded: %v", err)
	}
	if w := f.do("GET", "/api/v1/messages?patient=P-42", f.readOnly); w.Code != 200 {
		t.Fatalf("messages of a patient: %d", w.Code)
	}
	if e := f.lastAudit(t); e.Action != "patient.messages_search" || e.Target != "P-42" || e.Actor != "dashboard" {
		t.Fatalf("search of a patient's messages not audited: %+v", e)
	}
	if w := f.do("GET", "/api/v1/audit?format=xml", f.operator); w.Code != 400 {
		t.Errorf("unknown format: %d", w.Code)
	}
}

func TestAuditTrailsAreForOperators(t *testing.T) {
	for _, path := range []string{"/api/v1/audit", "/api/v1/mpi/records/audit"} {
		for _, role := range []Role{RoleReadOnly, RoleAnalyst} {
			if Allowed(role, http.MethodGet, path) {
				t.Errorf("%s may read %s", role, path)
			}
		}
		if !Allowed(RoleOperator, http.MethodGet, path) {
			t.Errorf("an operator may not read %s", path)
		}
	}
	if !Allowed(RoleReadOnly, http.MethodGet, "/api/v1/mpi/records") {
		t.Error("read-only lost its GET of MPI records")
	}
}

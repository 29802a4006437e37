package api

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

const oruPath = "../../testdata/hl7/oru_r01.hl7"

// consoleFixture is a store holding one processed ORU (with its resources
// and one routed event) and one failed message, served by the full API with
// the console mounted.
type consoleFixture struct {
	db  *store.DB
	srv *httptest.Server
	set *mapping.Set
}

func newConsoleFixture(t *testing.T) *consoleFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	set, err := mapping.Load("../../mappings")
	if err != nil {
		t.Fatalf("load shipped mappings: %v", err)
	}
	raw, err := os.ReadFile(oruPath)
	if err != nil {
		t.Fatal(err)
	}
	raw = bytes.ReplaceAll(raw, []byte("\n"), []byte("\r"))
	now := time.Now().UTC()
	envs := []*store.Envelope{
		{ID: "env-oru", Channel: "mllp", Sender: "CITYLAB", ReceivedAt: now, Kind: "hl7v2", MessageType: "ORU^R01",
			ControlID: "LAB0001", DedupKey: "msh10:LAB0001", SHA256: "x", Status: "received", Raw: raw,
			ACK: []byte("MSH|^~\\&|HIEGW|HIE|LABSYS|CITYLAB|20261124101500||ACK^R01^ACK|A1|P|2.5.1\rMSA|AA|LAB0001\r")},
		{ID: "env-bad", Channel: "mllp", Sender: "CITYLAB", ReceivedAt: now, Kind: "hl7v2", MessageType: "ADT^A01",
			ControlID: "ADT9", DedupKey: "msh10:ADT9", SHA256: "y", Status: "received",
			Raw: []byte("MSH|^~\\&|A|CITYLAB|B|C|2026||ADT^A01|ADT9|P|2.5.1\rPID|1||1^^^X^MR||SECRETNAME^ANN\r")},
	}
	if _, err := db.InsertEnvelopes(ctx, envs); err != nil {
		t.Fatal(err)
	}
	m, err := hl7.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	res, err := set.MapHL7("CITYLAB", m)
	if err != nil {
		t.Fatalf("map fixture: %v", err)
	}
	err = db.InTx(ctx, func(tx *store.Tx) error {
		pid, _, err := tx.ResolvePatient(ctx, "CITYLAB", []store.Identifier{{System: "urn:test:GOODHEALTH", Value: "4455667"}})
		if err != nil {
			return err
		}
		for _, r := range res.Resources {
			body, err := json.Marshal(r)
			if err != nil {
				return err
			}
			if _, _, err := tx.PutResource(ctx, "env-oru", "CITYLAB", store.Resource{ID: r.ID(), Type: r.Type(), PatientID: pid, Body: body}); err != nil {
				return err
			}
		}
		if err := tx.AddOutbox(ctx, store.OutboxEntry{Subscriber: "default", Topic: "hie.events", Key: pid, EventType: "result",
			EnvelopeID: "env-oru", Headers: map[string]string{}, Payload: []byte(`{"resourceType":"Bundle"}`)}); err != nil {
			return err
		}
		return tx.FinishEnvelope(ctx, "env-oru", pid, set.Version())
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := db.MarkFailed(ctx, "env-bad", "map PID^1^7 to Patient.birthDate (rule default/adt.yaml:12): required value missing"); err != nil {
		t.Fatal(err)
	}

	reg := prometheus.NewRegistry()
	received := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_intake_received_total", Help: "h"}, []string{"channel"})
	reg.MustRegister(received)
	received.WithLabelValues("mllp").Add(5)
	received.WithLabelValues("sftp").Add(2)

	started := now.Add(-90 * time.Second)
	routes := Console(db, ConsoleOptions{
		Mappings: func() *mapping.Set { return set },
		Listeners: func() []Listener {
			return []Listener{{Name: "mllp", Addr: "127.0.0.1:2575", Security: "plain"}, {Name: "http", Addr: "127.0.0.1:8080", Security: "TLS"}}
		},
		Gatherer: reg, Started: started, Version: "test",
	})
	// Mounted exactly as the gateway mounts it: a pattern clash with the
	// core API would panic here.
	srv := httptest.NewServer(Handler(db, Options{Gatherer: reg, Extra: routes}))
	t.Cleanup(srv.Close)
	return &consoleFixture{db: db, srv: srv, set: set}
}

func (f *consoleFixture) get(t *testing.T, path string, into any) *http.Response {
	t.Helper()
	resp, err := http.Get(f.srv.URL + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if into != nil {
		if err := json.Unmarshal(body, into); err != nil {
			t.Fatalf("GET %s: %d %s: %v", path, resp.StatusCode, body, err)
		}
	}
	return resp
}

func (f *consoleFixture) auditActions(t *testing.T) []string {
	t.Helper()
	es, err := f.db.AuditLog(context.Background(), 100)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range es {
		out = append(out, e.Action+" "+e.Target)
	}
	return out
}

func TestConsoleAssets(t *testing.T) {
	f := newConsoleFixture(t)
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Get(f.srv.URL + "/console")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMovedPermanently || resp.Header.Get("Location") != "/console/" {
		t.Fatalf("/console: %d to %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	for path, ctype := range map[string]string{
		"/console/":           "text/html",
		"/console/app.js":     "javascript",
		"/console/dom.js":     "javascript",
		"/console/api.js":     "javascript",
		"/console/review.js":  "javascript",
		"/console/appacks.js": "javascript",
		"/console/style.css":  "text/css",
	} {
		resp, err := http.Get(f.srv.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Content-Type"), ctype) || len(body) == 0 {
			t.Errorf("%s: %d %q (%d bytes)", path, resp.StatusCode, resp.Header.Get("Content-Type"), len(body))
		}
		csp := resp.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self'") || !strings.Contains(csp, "frame-ancestors 'none'") {
			t.Errorf("%s: Content-Security-Policy %q", path, csp)
		}
		if resp.Header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("%s: no nosniff", path)
		}
	}
	if resp := f.get(t, "/console/nope.js", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("missing asset: %d", resp.StatusCode)
	}
}

// TestConsoleAssetRules guards the console's rules in its source: nothing is
// loaded from another origin, no data reaches innerHTML/outerHTML/
// insertAdjacentHTML/document.write, no inline script, handler or style
// (the Content-Security-Policy would block them).
func TestConsoleAssetRules(t *testing.T) {
	external := regexp.MustCompile(`(?i)(src|href)\s*=\s*["']?\s*(https?:)?//|@import|url\(\s*["']?https?:|fonts\.googleapis|cdn\.`)
	sinks := regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(|new Function|style:\s*['"]|\.style\.`)
	inline := regexp.MustCompile(`(?i)<script>|<style|\son[a-z]+\s*=|\sstyle\s*=`)
	n := 0
	err := fs.WalkDir(consoleAssets, "console", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		n++
		b, err := consoleAssets.ReadFile(p)
		if err != nil {
			return err
		}
		s := string(b)
		if loc := external.FindStringIndex(s); loc != nil {
			t.Errorf("%s refers to another origin: %q", p, s[loc[0]:loc[1]])
		}
		if strings.HasSuffix(p, ".js") {
			if loc := sinks.FindStringIndex(s); loc != nil {
				t.Errorf("%s uses an HTML sink: %q", p, s[loc[0]:loc[1]])
			}
		}
		if strings.HasSuffix(p, ".html") {
			if loc := inline.FindStringIndex(s); loc != nil {
				t.Errorf("%s has inline script: %q", p, s[loc[0]:loc[1]])
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n < 5 {
		t.Fatalf("only %d console assets embedded", n)
	}
}

func TestConsoleStatus(t *testing.T) {
	f := newConsoleFixture(t)
	var s statusView
	if resp := f.get(t, "/api/v1/console/status", &s); resp.StatusCode != 200 {
		t.Fatalf("status: %d", resp.StatusCode)
	}
	if s.Counters["received"] != 7 || s.Counters["processed"] != 0 {
		t.Errorf("counters: %v", s.Counters)
	}
	if len(s.Listeners) != 2 || s.Listeners[0].Name != "mllp" {
		t.Errorf("listeners: %+v", s.Listeners)
	}
	if s.MappingVersion != f.set.Version() || s.MappingVersion == "" {
		t.Errorf("mapping version %q, want %q", s.MappingVersion, f.set.Version())
	}
	if s.UptimeSeconds < 89 || s.Version != "test" {
		t.Errorf("uptime %d version %q", s.UptimeSeconds, s.Version)
	}
	if s.MessagesByStatus["processed"] != 1 || s.MessagesByStatus["failed"] != 1 {
		t.Errorf("by status: %v", s.MessagesByStatus)
	}
	if len(s.Senders) != 1 || s.Senders[0].Sender != "CITYLAB" || s.Senders[0].Messages != 2 {
		t.Errorf("senders: %+v", s.Senders)
	}
}

func TestConsoleMessageTree(t *testing.T) {
	f := newConsoleFixture(t)
	var tr Tree
	if resp := f.get(t, "/api/v1/messages/env-oru/tree", &tr); resp.StatusCode != 200 {
		t.Fatalf("tree: %d", resp.StatusCode)
	}
	if tr.Structure != "ORU_R01" || len(tr.Segments) != 6 || len(tr.Problems) != 0 {
		t.Fatalf("tree: structure %q, %d segments, problems %+v", tr.Structure, len(tr.Segments), tr.Problems)
	}
	pid := tr.Segments[1]
	if pid.Name != "PID" || pid.Index != 2 || pid.Line != 2 || pid.Occurrence != 1 {
		t.Fatalf("PID segment: %+v", pid)
	}
	var name *TreeField
	for i := range pid.Fields {
		if pid.Fields[i].N == 5 {
			name = &pid.Fields[i]
		}
	}
	if name == nil || name.Path != "PID-5" || len(name.Reps) != 1 || len(name.Reps[0].Components) != 3 {
		t.Fatalf("PID-5: %+v", name)
	}
	if c := name.Reps[0].Components[1]; c.Path != "PID-5.2" || c.Value != "JOSÉ" {
		t.Errorf("PID-5.2: %+v", c)
	}
	obx := tr.Segments[4]
	if obx.Name != "OBX" || obx.Occurrence != 2 {
		t.Errorf("second OBX: %+v", obx)
	}
	msh := tr.Segments[0]
	if msh.Fields[0].Path != "MSH-1" || msh.Fields[0].Reps[0].Value != "|" || msh.Fields[1].Reps[0].Value != `^~\&` {
		t.Errorf("MSH-1/2: %+v", msh.Fields[:2])
	}
	if got := f.auditActions(t); len(got) == 0 || got[0] != "message.read_tree env-oru" {
		t.Errorf("tree read not audited: %v", got)
	}
	if resp := f.get(t, "/api/v1/messages/nope/tree", nil); resp.StatusCode != http.StatusNotFound {
		t.Errorf("unknown message: %d", resp.StatusCode)
	}
}

func TestBuildTreeRepetitionsAndEscapes(t *testing.T) {
	raw := "MSH|^~\\&|A|B|C|D|20260101||ADT^A08|C1|P|2.5.1\rPID|1||111^^^H^MR~222^^^L^PI||O\\T\\NEIL&VAN^ANN\r"
	tr := BuildTree([]byte(raw))
	if len(tr.Problems) != 0 || len(tr.Segments) != 2 {
		t.Fatalf("tree: %+v", tr)
	}
	var ids, name TreeField
	for _, fl := range tr.Segments[1].Fields {
		switch fl.N {
		case 3:
			ids = fl
		case 5:
			name = fl
		}
	}
	if len(ids.Reps) != 2 || ids.Reps[1].Path != "PID-3[2]" || ids.Reps[1].Components[3].Path != "PID-3[2].4" ||
		ids.Reps[1].Components[3].Value != "L" {
		t.Errorf("PID-3 repetitions: %+v", ids)
	}
	fam := name.Reps[0].Components[0]
	if len(fam.Subs) != 2 || fam.Subs[0].Value != "O&NEIL" || fam.Subs[1].Path != "PID-5.1.2" {
		t.Errorf("PID-5.1 subcomponents and escape: %+v", fam)
	}
}

func TestBuildTreeUnparseable(t *testing.T) {
	tr := BuildTree([]byte("PID|1||SECRETNAME\r"))
	if len(tr.Segments) != 0 || len(tr.Problems) == 0 {
		t.Fatalf("tree of a message without MSH: %+v", tr)
	}
	b, _ := json.Marshal(tr)
	if bytes.Contains(b, []byte("SECRETNAME")) {
		t.Errorf("problem text carries message content: %s", b)
	}
}

// TestBuildTreeCorpus runs every public HL7 v2 sample through the tree: no
// panic, and for each message that parses, one tree segment per segment.
func TestBuildTreeCorpus(t *testing.T) {
	root := filepath.Join("..", "..", "..", "shared", "corpus", "hl7v2")
	if _, err := os.Stat(root); err != nil {
		t.Skipf("public corpus not found at %s: %v", root, err)
	}
	files, parsed := 0, 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files++
		tr := BuildTree(data)
		if m, err := hl7.Parse(data); err == nil {
			parsed++
			if len(tr.Segments) != m.SegmentCount() {
				t.Errorf("%s: %d tree segments for %d segments", p, len(tr.Segments), m.SegmentCount())
			}
		} else if len(tr.Problems) == 0 {
			t.Errorf("%s: parse failed but the tree reports no problem", p)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if files < 100 || parsed < 50 {
		t.Fatalf("corpus walk saw %d files, %d parsed", files, parsed)
	}
}

func TestConsoleResourcesRoutingPatient(t *testing.T) {
	f := newConsoleFixture(t)
	var rs struct {
		Status    string `json:"status"`
		Resources []struct {
			Type     string          `json:"resource_type"`
			Current  bool            `json:"current"`
			Resource json.RawMessage `json:"resource"`
		} `json:"resources"`
	}
	f.get(t, "/api/v1/messages/env-oru/resources", &rs)
	types := map[string]int{}
	for _, r := range rs.Resources {
		types[r.Type]++
		if !r.Current || !bytes.Contains(r.Resource, []byte(`"resourceType"`)) {
			t.Errorf("resource %s: %+v", r.Type, r)
		}
	}
	if rs.Status != "processed" || types["Patient"] != 1 || types["Observation"] < 3 {
		t.Errorf("resources of the ORU: %v (status %s)", types, rs.Status)
	}
	var none struct {
		Resources []json.RawMessage `json:"resources"`
	}
	f.get(t, "/api/v1/messages/env-bad/resources", &none)
	if none.Resources == nil || len(none.Resources) != 0 {
		t.Errorf("failed message resources: %+v", none)
	}

	var routing struct {
		Events []struct {
			Subscriber string `json:"subscriber"`
			State      string `json:"state"`
			Bytes      int    `json:"payload_bytes"`
		} `json:"events"`
	}
	f.get(t, "/api/v1/messages/env-oru/routing", &routing)
	if len(routing.Events) != 1 || routing.Events[0].Subscriber != "default" || routing.Events[0].State != "pending" ||
		routing.Events[0].Bytes == 0 {
		t.Errorf("routing: %+v", routing)
	}

	var pat struct {
		PatientID   string             `json:"patient_id"`
		Identifiers []store.Identifier `json:"identifiers"`
	}
	f.get(t, "/api/v1/messages/env-oru/patient", &pat)
	if pat.PatientID == "" || len(pat.Identifiers) == 0 {
		t.Errorf("patient link: %+v", pat)
	}
	got := strings.Join(f.auditActions(t), "\n")
	for _, want := range []string{"message.read_resources env-oru", "patient.identifiers " + pat.PatientID} {
		if !strings.Contains(got, want) {
			t.Errorf("audit log lacks %q:\n%s", want, got)
		}
	}
}

func (f *consoleFixture) dryRun(t *testing.T, body string) (int, DryRunResult) {
	t.Helper()
	resp, err := http.Post(f.srv.URL+"/api/v1/mappings/dry-run", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var r DryRunResult
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode == 200 {
		if err := json.Unmarshal(b, &r); err != nil {
			t.Fatalf("dry-run answer: %v: %s", err, b)
		}
	}
	return resp.StatusCode, r
}

func TestConsoleDryRun(t *testing.T) {
	f := newConsoleFixture(t)
	raw, err := os.ReadFile(oruPath)
	if err != nil {
		t.Fatal(err)
	}
	// As pasted into a browser: LF line ends.
	msg := strings.ReplaceAll(strings.ReplaceAll(string(raw), "\r\n", "\n"), "\r", "\n")
	req, _ := json.Marshal(DryRunRequest{Sender: "CITYLAB", Message: msg})
	code, r := f.dryRun(t, string(req))
	if code != 200 || !r.OK || len(r.Bundles) != 1 || len(r.Problems) != 0 || r.MappingVersion != f.set.Version() {
		t.Fatalf("dry-run of the ORU: %d %+v", code, r)
	}
	var b struct {
		ResourceType string `json:"resourceType"`
		Entry        []struct {
			Resource map[string]any `json:"resource"`
		} `json:"entry"`
	}
	if err := json.Unmarshal(r.Bundles[0], &b); err != nil || b.ResourceType != "Bundle" || len(b.Entry) < 4 ||
		b.Entry[0].Resource["resourceType"] != "Patient" {
		t.Fatalf("bundle: %v %+v", err, b)
	}

	// A birth date that is not a date is left out, with a warning naming
	// the place and not the value.
	bad := strings.Replace(msg, "19670315", "1967XX15", 1)
	req, _ = json.Marshal(DryRunRequest{Message: bad})
	code, r = f.dryRun(t, string(req))
	if code != 200 || !r.OK || len(r.Bundles) != 1 || len(r.Warnings) == 0 {
		t.Fatalf("dry-run of a bad date: %d ok=%v bundles=%d warnings=%+v problems=%+v", code, r.OK, len(r.Bundles), r.Warnings, r.Problems)
	}
	if w := r.Warnings[0]; !strings.Contains(w.Message, "PID^1^7") || strings.Contains(w.Message, "1967XX15") {
		t.Errorf("warning not located or carries the value: %+v", w)
	}

	// No patient identifier: the message cannot be mapped; the error is
	// located.
	noID := strings.Replace(msg, "4455667^^^GOODHEALTH^MR", "", 1)
	req, _ = json.Marshal(DryRunRequest{Message: noID})
	code, r = f.dryRun(t, string(req))
	if code != 200 || r.OK || len(r.Problems) != 1 || len(r.Bundles) != 0 {
		t.Fatalf("dry-run without PID-3: %d ok=%v bundles=%d problems=%+v", code, r.OK, len(r.Bundles), r.Problems)
	}
	if p := r.Problems[0]; p.Location != "PID^1^3" || p.Field != "Patient.id" || !strings.Contains(p.Rule, ".yaml:") {
		t.Errorf("problem not located: %+v", p)
	}

	// Not HL7 at all.
	req, _ = json.Marshal(DryRunRequest{Message: "hello"})
	if code, r = f.dryRun(t, string(req)); code != 200 || r.OK || len(r.Problems) == 0 || len(r.Bundles) != 0 {
		t.Errorf("dry-run of text: %d %+v", code, r)
	}
	if code, _ = f.dryRun(t, `{"message": "  "}`); code != http.StatusBadRequest {
		t.Errorf("empty message: %d", code)
	}
	if code, _ = f.dryRun(t, `not json`); code != http.StatusBadRequest {
		t.Errorf("bad body: %d", code)
	}
	if got := f.auditActions(t); len(got) < 3 || got[0] != "mapping.dry_run " {
		t.Errorf("dry-runs not audited: %v", got)
	}
}

func TestConsoleDryRunOff(t *testing.T) {
	db, err := store.Open(context.Background(), store.Options{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	srv := httptest.NewServer(Handler(db, Options{Extra: Console(db, ConsoleOptions{})}))
	defer srv.Close()
	resp, err := http.Post(srv.URL+"/api/v1/mappings/dry-run", "application/json", strings.NewReader(`{"message":"MSH|"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("dry-run without mappings: %d", resp.StatusCode)
	}
	var s statusView
	resp, err = http.Get(srv.URL + "/api/v1/console/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&s); err != nil || s.Listeners == nil || s.Counters["received"] != 0 {
		t.Errorf("status with nothing configured: %v %+v", err, s)
	}
}

// BenchmarkBuildTree measures the parsed tree of the 6-segment ORU fixture,
// JSON encoding included (what one tree request costs besides the store).
func BenchmarkBuildTree(b *testing.B) {
	raw, err := os.ReadFile(oruPath)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := json.Marshal(BuildTree(raw)); err != nil {
			b.Fatal(err)
		}
	}
}

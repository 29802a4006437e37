package gateway

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mllp"
	"github.com/hiegw/hiegw/internal/store"
)

// running is a gateway started in-process on free ports.
type running struct {
	g    *Gateway
	stop context.CancelFunc
	done chan error
}

func testConfig(t testing.TB, dataDir, dsn string) *config.Config {
	t.Helper()
	c := config.Default()
	c.DataDir = dataDir
	c.MLLP.Addr, c.HTTP.Addr, c.Broker.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.SFTP.Addr = ""
	c.Mappings.Dir = filepath.Join("..", "..", "mappings")
	c.Store.PostgresDSN = dsn
	c.Log.Level = "warn"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	return c
}

func start(t testing.TB, c *config.Config) *running {
	t.Helper()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if testing.Verbose() {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	g, err := New(context.Background(), c, log)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{g: g, stop: cancel, done: make(chan error, 1)}
	go func() { r.done <- g.Run(ctx) }()
	return r
}

func (r *running) shutdown(t testing.TB) {
	t.Helper()
	r.stop()
	select {
	case err := <-r.done:
		if err != nil {
			t.Fatalf("run: %v", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("gateway did not stop")
	}
}

func send(t testing.TB, addr string, msg []byte) *hl7.Message {
	t.Helper()
	cl, err := mllp.Dial(context.Background(), addr, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	reply, err := cl.Send(context.Background(), msg)
	if err != nil {
		t.Fatal(err)
	}
	ack, err := hl7.Parse(reply)
	if err != nil {
		t.Fatalf("unreadable ACK %q: %v", reply, err)
	}
	return ack
}

// accepted reports whether ack accepts the message (CA or AA).
func accepted(ack []byte) bool {
	m, err := hl7.Parse(ack)
	return err == nil && (m.Get("MSA-1") == "CA" || m.Get("MSA-1") == "AA")
}

func readFile(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "testdata", "hl7", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

type event struct {
	key     string
	headers map[string]string
	bundle  map[string]any
}

// readEvents reads at least n events from the topic with a real Kafka
// client (or what is there when wait passes) and decodes their Bundles.
func readEvents(t *testing.T, broker, topic string, n int, wait time.Duration) []event {
	t.Helper()
	var out []event
	for _, m := range readTopic(t, broker, topic, n, wait) {
		ev := event{key: m.key, headers: m.headers}
		if err := json.Unmarshal(m.value, &ev.bundle); err != nil {
			t.Fatalf("event value is not JSON: %v", err)
		}
		out = append(out, ev)
	}
	return out
}

func resourcesOf(b map[string]any, typ string) []map[string]any {
	var out []map[string]any
	entries, _ := b["entry"].([]any)
	for _, e := range entries {
		r, _ := e.(map[string]any)["resource"].(map[string]any)
		if r["resourceType"] == typ {
			out = append(out, r)
		}
	}
	return out
}

func TestEndToEndEmbedded(t *testing.T) { endToEnd(t, "") }

func TestEndToEndPostgres(t *testing.T) { endToEnd(t, store.TestPostgresDSN(t)) }

func endToEnd(t *testing.T, dsn string) {
	dataDir := t.TempDir()
	c := testConfig(t, dataDir, dsn)
	r := start(t, c)
	addr, broker := r.g.MLLPAddr(), r.g.BrokerAddr()

	adt := send(t, addr, readFile(t, "adt_a01.hl7"))
	// ADT_A01 asks for enhanced acknowledgement (MSH-15 AL): commit ACK CA.
	if got := adt.Get("MSA-1"); got != "CA" {
		t.Fatalf("ADT ACK code %q, want CA: %s", got, adt.Raw())
	}
	if adt.Get("MSA-2") != "ADT0001" || adt.Get("MSH-3") != "HIEGW" || adt.Get("MSH-5") != "EPICADT" {
		t.Fatalf("ADT ACK header: %q", adt.Raw())
	}
	oru := send(t, addr, readFile(t, "oru_r01.hl7"))
	if oru.Get("MSA-1") != "AA" || oru.Get("MSA-2") != "LAB0001" {
		t.Fatalf("ORU ACK: %q", oru.Raw())
	}
	// A duplicate is answered like the first time and not processed again.
	dup := send(t, addr, readFile(t, "oru_r01.hl7"))
	if string(dup.Raw()) != string(oru.Raw()) {
		t.Fatalf("duplicate answered differently:\n%q\n%q", dup.Raw(), oru.Raw())
	}
	bad := send(t, addr, readFile(t, "bad_msh.hl7"))
	if bad.Get("MSA-1") != "AR" || bad.Get("ERR-3.1") == "" {
		t.Fatalf("bad MSH ACK: %q", bad.Raw())
	}

	evs := readEvents(t, broker, "hie.events", 2, 30*time.Second)
	if len(evs) != 2 {
		t.Fatalf("got %d events, want 2", len(evs))
	}
	byType := map[string]event{}
	for _, e := range evs {
		byType[e.headers["hiegw-message-type"]] = e
	}
	a, o := byType["ADT^A01"], byType["ORU^R01"]
	if a.key == "" || a.key != o.key {
		t.Fatalf("both events must be keyed by one enterprise patient id: %q %q", a.key, o.key)
	}
	if a.headers["hiegw-sender"] != "GOODHEALTH" || a.headers["hiegw-message-id"] != "ADT0001" || a.headers["hiegw-event"] != "admit" {
		t.Fatalf("ADT headers %v", a.headers)
	}
	pats := resourcesOf(a.bundle, "Patient")
	if len(pats) != 1 {
		t.Fatalf("ADT bundle has %d Patients", len(pats))
	}
	pj, _ := json.Marshal(pats[0])
	for _, want := range []string{`"family":"MUÑOZ"`, `"JOSÉ"`, `"birthDate":"1967-03-15"`, `"gender":"male"`, `"4455667"`, a.key} {
		if !strings.Contains(string(pj), want) {
			t.Errorf("Patient lacks %s: %s", want, pj)
		}
	}
	if len(resourcesOf(a.bundle, "Encounter")) != 1 {
		t.Errorf("ADT bundle lacks an Encounter")
	}
	obs := resourcesOf(o.bundle, "Observation")
	if len(obs) != 3 {
		t.Fatalf("ORU bundle has %d Observations, want 3", len(obs))
	}
	oj, _ := json.Marshal(obs)
	for _, want := range []string{`"2345-7"`, `"value":182`, `"unit":"mg/dL"`, `"value":1.1`, `Fasting specimen`} {
		if !strings.Contains(string(oj), want) {
			t.Errorf("Observations lack %s: %s", want, oj)
		}
	}
	if len(resourcesOf(o.bundle, "Provenance")) != 1 {
		t.Errorf("ORU bundle lacks its Provenance")
	}

	// The record is readable through the API, and the read is audited.
	resp, err := http.Get("http://" + r.g.HTTPAddr() + "/api/v1/patients/" + a.key + "/everything")
	if err != nil {
		t.Fatal(err)
	}
	var everything map[string]any
	json.NewDecoder(resp.Body).Decode(&everything)
	resp.Body.Close()
	if n := len(resourcesOf(everything, "Observation")); n != 3 {
		t.Fatalf("everything has %d Observations", n)
	}
	// Bytes outside frames are skipped and counted.
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	// The noise precedes a duplicate of ADT0001, so nothing new is stored.
	raw.Write(append(append([]byte("noise\x0b"), readFile(t, "adt_a01.hl7")...), 0x1c, '\r'))
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := raw.Read(make([]byte, 512)); err != nil {
		t.Fatalf("no answer after noise: %v", err)
	}
	raw.Close()
	if got := metric(t, r.g.HTTPAddr(), "hiegw_mllp_skipped_bytes_total"); got != "5" {
		t.Fatalf("skipped bytes counted %s, want 5", got)
	}
	buildInfo := fmt.Sprintf(`hiegw_build_info{goversion=%q,version=%q}`, runtime.Version(), r.g.cfg.Version)
	if got := metric(t, r.g.HTTPAddr(), buildInfo); got != "1" {
		t.Fatalf("%s is %q, want 1", buildInfo, got)
	}
	for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
		resp, err := http.Get("http://" + r.g.HTTPAddr() + path)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("%s: %v %v", path, err, resp.Status)
		}
		resp.Body.Close()
	}
	r.shutdown(t)

	// Restart on the same data: nothing lost, nothing processed twice.
	c2 := testConfig(t, dataDir, dsn)
	c2.Broker.Addr = broker // the same broker address, so its data directory matches
	r2 := start(t, c2)
	defer r2.shutdown(t)
	counts, err := r2.g.DB().CountEnvelopes(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if counts["processed"] != 2 || counts["rejected"] != 1 || counts["received"] != 0 {
		t.Fatalf("after restart: %v", counts)
	}
	dup2 := send(t, r2.g.MLLPAddr(), readFile(t, "adt_a01.hl7"))
	if string(dup2.Raw()) != string(adt.Raw()) {
		t.Fatalf("duplicate after restart answered differently")
	}
	upd := strings.Replace(string(readFile(t, "adt_a01.hl7")), "ADT^A01^ADT_A01|ADT0001", "ADT^A08^ADT_A01|ADT0002", 1)
	upd = strings.Replace(upd, "EVN|A01", "EVN|A08", 1)
	if ack := send(t, r2.g.MLLPAddr(), []byte(upd)); ack.Get("MSA-1") != "CA" {
		t.Fatalf("A08: %q", ack.Raw())
	}
	evs = readEvents(t, r2.g.BrokerAddr(), "hie.events", 3, 30*time.Second)
	if len(evs) != 3 {
		t.Fatalf("after restart: %d events, want 3 (2 before, 1 new)", len(evs))
	}
}

// TestUnpublishedEventsSurviveRestart commits events while the broker cannot
// be reached and checks that they are published once it can.
func TestUnpublishedEventsSurviveRestart(t *testing.T) {
	dataDir := t.TempDir()
	c := testConfig(t, dataDir, "")
	c.Kafka.Brokers = []string{"127.0.0.1:1"} // nothing listens there
	r := start(t, c)
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		st, err := r.g.DB().OutboxCounts(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if len(st) == 1 && st[0].Pending == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("outbox: %+v", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	r.shutdown(t)

	c2 := testConfig(t, dataDir, "")
	r2 := start(t, c2)
	defer r2.shutdown(t)
	evs := readEvents(t, r2.g.BrokerAddr(), "hie.events", 1, 30*time.Second)
	if len(evs) != 1 || evs[0].headers["hiegw-message-id"] != "LAB0001" {
		t.Fatalf("events after the broker came back: %+v", evs)
	}
}

func TestInvalidTLSRefusesToStart(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "cert.pem"), []byte("not a certificate"), 0o600)
	os.WriteFile(filepath.Join(dir, "key.pem"), []byte("not a key"), 0o600)
	c.MLLP.TLS = config.TLS{Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem")}
	_, err := New(context.Background(), c, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "mllp.tls") {
		t.Fatalf("want a start-up error naming mllp.tls, got %v", err)
	}
}

// TestOneGatewayPerDataDir: a second gateway on a data directory in use is
// refused with a message that says why, on PostgreSQL too (where no intake
// journal locks the directory); once the first has stopped, the directory
// can be used again, and the gateway's name in shared leases is the same as
// before (a restart takes back what it held).
func TestOneGatewayPerDataDir(t *testing.T) {
	t.Run("embedded", func(t *testing.T) { oneGatewayPerDataDir(t, "") })
	t.Run("postgres", func(t *testing.T) { oneGatewayPerDataDir(t, store.TestPostgresDSN(t)) })
}

func oneGatewayPerDataDir(t *testing.T, dsn string) {
	dir := t.TempDir()
	first := start(t, testConfig(t, dir, dsn))
	_, err := New(context.Background(), testConfig(t, dir, dsn), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), "is another hiegw using this data directory") {
		t.Fatalf("a second gateway on %s: %v", dir, err)
	}
	name := first.g.owner
	first.shutdown(t)
	again := start(t, testConfig(t, dir, dsn))
	restarted := again.g.owner
	again.shutdown(t)
	if restarted != name || !strings.Contains(name, dir) {
		t.Fatalf("owner after a restart %q, before %q", restarted, name)
	}
	if other, err := ownerName(t.TempDir(), true); err != nil || other == name {
		t.Fatalf("two data directories share the owner name %q (%v)", name, err)
	}
	// Another machine of the same host name, its data directory at the
	// same path: a fresh directory there is another gateway.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	elsewhere := start(t, testConfig(t, dir, dsn))
	defer elsewhere.shutdown(t)
	if elsewhere.g.owner == name || !strings.Contains(elsewhere.g.owner, dir) {
		t.Fatalf("a fresh data directory at the same path has the owner name %q (before %q)", elsewhere.g.owner, name)
	}
}

// An instance id that is not one stops start-up with the file named.
func TestBadInstanceID(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "instance-id"), []byte("a b\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := New(context.Background(), testConfig(t, dir, ""), slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err == nil || !strings.Contains(err.Error(), filepath.Join(dir, "instance-id")+": not an instance id") {
		t.Fatalf("start with a bad instance id: %v", err)
	}
}

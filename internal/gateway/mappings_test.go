package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/store"
)

// TestMappingReloadRefusedThenFixed: an analyst's broken file is refused on
// reload (the API and the metrics say so, naming file and line), the old set
// keeps serving, and the fixed file is taken up.
func TestMappingReloadRefusedThenFixed(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "mappings")
	if out, err := exec.Command("cp", "-r", filepath.Join("..", "..", "mappings"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy mappings: %v %s", err, out)
	}
	c := testConfig(t, t.TempDir(), "")
	c.Mappings.Dir = dir
	c.Mappings.ReloadInterval = 1 << 62 // reload only when asked
	r := start(t, c)
	defer r.shutdown(t)
	base := "http://" + r.g.HTTPAddr() + "/api/v1/mappings"
	state := func(method string, want int) map[string]any {
		t.Helper()
		req, _ := http.NewRequest(method, base+map[string]string{"GET": "", "POST": "/reload"}[method], nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var out map[string]any
		json.NewDecoder(resp.Body).Decode(&out)
		if resp.StatusCode != want {
			t.Fatalf("%s %s: %d, want %d: %v", method, base, resp.StatusCode, want, out)
		}
		return out
	}
	before := state("GET", 200)["version"]

	broken := filepath.Join(dir, "senders", "acme.yaml")
	if err := os.MkdirAll(filepath.Dir(broken), 0o755); err != nil {
		t.Fatal(err)
	}
	err := os.WriteFile(broken, []byte("senders: [ACME]\nresources:\n  patient:\n    elements:\n      gender: lookupp(\"administrative-sex\", v(\"PID-8\"))\n"), 0o644)
	if err != nil {
		t.Fatal(err)
	}
	got := state("POST", 422)
	last := got["last_reload"].(map[string]any)
	if last["outcome"] != "refused" || !strings.Contains(last["error"].(string), "senders/acme.yaml:5") || got["version"] != before {
		t.Fatalf("refused reload: %v", got)
	}
	if m := metric(t, r.g.HTTPAddr(), "hiegw_mapping_reload_refused"); m != "1" {
		t.Fatalf("hiegw_mapping_reload_refused %q", m)
	}
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
		t.Fatalf("the old set must keep serving: %q", ack.Raw())
	}

	os.Remove(broken)
	if got := state("POST", 200); got["last_reload"].(map[string]any)["outcome"] != "ok" {
		t.Fatalf("fixed reload: %v", got)
	}
	if m := metric(t, r.g.HTTPAddr(), "hiegw_mapping_reload_refused"); m != "0" {
		t.Fatalf("hiegw_mapping_reload_refused %q after the fix", m)
	}
}

// TestUnmappedCodesAreCounted: a local lab code with no LOINC in the tables
// is kept with its own system and counted.
func TestUnmappedCodesAreCounted(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	msg := strings.Replace(string(readFile(t, "oru_r01.hl7")), "2345-7^Glucose^LN", "GLU^Glucose^L", 1)
	if ack := send(t, r.g.MLLPAddr(), []byte(msg)); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	evs := readEvents(t, r.g.BrokerAddr(), "hie.events", 1, 20e9)
	if len(evs) != 1 {
		t.Fatalf("%d events", len(evs))
	}
	obs, _ := json.Marshal(resourcesOf(evs[0].bundle, "Observation"))
	if !strings.Contains(string(obs), `"code":"GLU"`) {
		t.Fatalf("the unmapped code was not kept: %s", obs)
	}
	if m := metric(t, r.g.HTTPAddr(), `hiegw_mapping_unmapped_codes_total{table="lab"}`); m != "1" {
		t.Fatalf("unmapped codes counted %q, want 1", m)
	}
}

// An ADT^A01 without PID is answered AE with an ERR at PID, code 100
// (required segment missing), and stored as rejected, rather than stored as
// an Encounter about nobody.
func TestMessageWithoutPatientRefused(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	msg := "MSH|^~\\&|ADT|GOODHEALTH|HIEGW|HIE|20261124083000||ADT^A01^ADT_A01|NOPID1|P|2.5.1\rEVN|A01|20261124083000\rPV1|1|I|4W^401^A\r"
	ack, err := sendTLS(r.g.MLLPAddr(), nil, []byte(msg))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Get("MSA-1") != "AE" || ack.Get("ERR-2") != "PID" || ack.Get("ERR-3.1") != "100" ||
		!strings.Contains(ack.Get("ERR-8"), "required segment PID missing") {
		t.Fatalf("ACK %q", ack.Raw())
	}
	envs, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{ControlID: "NOPID1"})
	if err != nil || len(envs) != 1 || envs[0].Status != "rejected" || !strings.Contains(envs[0].Error, "PID") {
		t.Fatalf("stored %+v, %v", envs, err)
	}
}

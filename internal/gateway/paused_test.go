package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// TestStartPaused: with pipeline.paused the gateway receives, stores and
// acknowledges but processes nothing until an operator resumes it through
// the API.
func TestStartPaused(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	c.Pipeline.Paused = true
	r := start(t, c)
	defer r.shutdown(t)
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	state := func() map[string]any {
		resp, err := http.Get("http://" + r.g.HTTPAddr() + "/api/v1/pipeline")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var m map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	time.Sleep(300 * time.Millisecond) // a few polls' worth
	if s := state(); s["paused"] != true || s["waiting"] != float64(1) {
		t.Fatalf("paused gateway: %v", s)
	}
	resp, err := http.Post("http://"+r.g.HTTPAddr()+"/api/v1/pipeline/resume", "application/json", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("resume: %v %v", resp, err)
	}
	resp.Body.Close()
	waitFor(t, "the waiting message processed", func() bool {
		n, err := r.g.DB().CountEnvelopes(context.Background())
		return err == nil && n["processed"] == 1
	})
	if s := state(); s["paused"] != false || s["waiting"] != float64(0) {
		t.Fatalf("resumed gateway: %v", s)
	}
}

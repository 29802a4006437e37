package api

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

type fakePipeline struct {
	mu     sync.Mutex
	paused bool
}

func (f *fakePipeline) Pause()          { f.mu.Lock(); f.paused = true; f.mu.Unlock() }
func (f *fakePipeline) Resume()         { f.mu.Lock(); f.paused = false; f.mu.Unlock() }
func (f *fakePipeline) Paused() bool    { f.mu.Lock(); defer f.mu.Unlock(); return f.paused }
func (f *fakePipeline) Partitions() int { return 16 }

// TestPipelinePauseResume: operators pause and resume processing, every
// role may read the state, the others may not change it, and each change is
// audited.
func TestPipelinePauseResume(t *testing.T) {
	f := newFixture(t)
	ctl := &fakePipeline{}
	var ops, ro Token
	f.operator, ops = token(t, "oncall", RoleOperator)
	f.readOnly, ro = token(t, "dashboard", RoleReadOnly)
	reg := prometheus.NewRegistry()
	f.h = Handler(f.db, Options{Tokens: []Token{ops, ro}, Registerer: reg, Gatherer: reg, Pipeline: ctl})

	state := func(w interface{ Result() *http.Response }) map[string]any {
		var m map[string]any
		if err := json.NewDecoder(w.Result().Body).Decode(&m); err != nil {
			t.Fatal(err)
		}
		return m
	}
	if w := f.do("POST", "/api/v1/pipeline/pause", f.readOnly); w.Code != http.StatusForbidden || ctl.Paused() {
		t.Fatalf("read-only pause: %d, paused %v", w.Code, ctl.Paused())
	}
	w := f.do("POST", "/api/v1/pipeline/pause", f.operator)
	if w.Code != 200 || !ctl.Paused() || state(w)["paused"] != true {
		t.Fatalf("operator pause: %d, paused %v", w.Code, ctl.Paused())
	}
	if a := f.lastAudit(t); a.Action != "pipeline.pause" || a.Actor != "oncall" {
		t.Fatalf("audit %+v", a)
	}
	w = f.do("GET", "/api/v1/pipeline", f.readOnly)
	if w.Code != 200 || state(w)["paused"] != true {
		t.Fatalf("read state: %d", w.Code)
	}
	w = f.do("POST", "/api/v1/pipeline/resume", f.operator)
	if w.Code != 200 || ctl.Paused() || state(w)["paused"] != false {
		t.Fatalf("resume: %d, paused %v", w.Code, ctl.Paused())
	}
	if a := f.lastAudit(t); a.Action != "pipeline.resume" {
		t.Fatalf("audit %+v", a)
	}
}

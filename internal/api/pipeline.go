package api

import (
	"net/http"
)

// PipelineControl pauses and resumes processing.
type PipelineControl interface {
	Pause()
	Resume()
	Paused() bool
	// Partitions tells how many sender partitions this replica processes
	// (none: it stands by while other replicas process).
	Partitions() int
}

// pipelineState answers GET /api/v1/pipeline: whether processing is paused,
// how many sender partitions this replica processes (standby: none), and how
// many messages wait for processing.
func (a *api) pipelineState(w http.ResponseWriter, r *http.Request) {
	c, err := a.st.CountEnvelopes(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	parts := a.o.Pipeline.Partitions()
	writeJSON(w, http.StatusOK, map[string]any{"paused": a.o.Pipeline.Paused(), "standby": parts == 0,
		"partitions": parts, "waiting": c["received"]})
}

// pausePipeline and resumePipeline (operators only, audited) hold and
// release processing; receipt and acknowledgement go on either way.
func (a *api) pausePipeline(w http.ResponseWriter, r *http.Request) {
	a.o.Pipeline.Pause()
	_ = a.st.Audit(r.Context(), RequestAudit(r, "pipeline.pause", "pipeline", "ok"))
	a.pipelineState(w, r)
}

func (a *api) resumePipeline(w http.ResponseWriter, r *http.Request) {
	a.o.Pipeline.Resume()
	_ = a.st.Audit(r.Context(), RequestAudit(r, "pipeline.resume", "pipeline", "ok"))
	a.pipelineState(w, r)
}

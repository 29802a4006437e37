package api

import (
	"net/http"
)

// PipelineControl pauses and resumes processing.
type PipelineControl interface {
	Pause()
	Resume()
	Paused() bool
	// Standby tells whether other replicas hold every processing partition.
	Standby() bool
	// Partitions tells how many sender partitions this replica processes.
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
	writeJSON(w, http.StatusOK, map[string]any{"paused": a.o.Pipeline.Paused(), "standby": a.o.Pipeline.Standby(),
		"partitions": a.o.Pipeline.Partitions(),
		"waiting":    c["received"]})
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

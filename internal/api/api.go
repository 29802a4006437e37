// Package api serves hiegw's HTTP port: health and readiness probes,
// Prometheus metrics, and the JSON API over the message log and the record.
// Every read of patient data is written to the audit log.
package api

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Store is what the API reads and changes.
type Store interface {
	Ping(ctx context.Context) error
	ListEnvelopes(ctx context.Context, f store.EnvelopeFilter) ([]store.Envelope, error)
	GetEnvelope(ctx context.Context, id string) (*store.Envelope, error)
	EnvelopeNotes(ctx context.Context, id string) ([]store.Note, error)
	PatientResources(ctx context.Context, patientID string, offset, limit int) ([]store.StoredResource, error)
	PatientIdentifiers(ctx context.Context, patientID string) ([]store.Identifier, error)
	PatientByIdentifier(ctx context.Context, system, value string) (string, error)
	OutboxCounts(ctx context.Context) ([]store.OutboxStats, error)
	CountEnvelopes(ctx context.Context) (map[string]int64, error)
	Requeue(ctx context.Context, f store.RequeueFilter) (int64, error)
	Audit(ctx context.Context, e store.AuditEntry) error
	AuditLog(ctx context.Context, limit int) ([]store.AuditEntry, error)
	RecentAppAcks(ctx context.Context, p store.AppAckPage) ([]store.AppAck, error)
	AppAckCounts(ctx context.Context) ([]store.AppAckCount, error)
	EnvelopeAppAck(ctx context.Context, envelopeID string, withMessage bool) (*store.AppAck, error)
}

var _ Store = (*store.DB)(nil)

// Check is one readiness check.
type Check struct {
	Name string
	Fn   func(ctx context.Context) error
}

// Options configure the API.
type Options struct {
	Gatherer prometheus.Gatherer
	Checks   []Check
	// OnRequeue is called after envelopes are requeued (wakes the pipeline).
	OnRequeue func()
	// Pipeline, when set, serves /api/v1/pipeline (pause and resume).
	Pipeline PipelineControl
	// Extra routes mounted by other parts (mapping dry-run, MPI review...).
	// They sit behind the same authentication; read the caller with
	// PrincipalFrom or Actor, and audit with RequestAudit.
	Extra map[string]http.Handler
	// Tokens the API accepts. With none, only loopback callers are served
	// (as LocalPrincipal, an operator); the configuration refuses an empty
	// list on any other address.
	Tokens []Token
	// CurrentTokens, when set, is asked for the tokens at every request
	// instead of Tokens, so that tokens can be revoked or added while the
	// gateway runs (its configuration reloaded on SIGHUP).
	CurrentTokens func() []Token
	// Public lists path prefixes served without a token to GET (static
	// console assets holding no patient data); /healthz, /readyz and
	// /metrics always are.
	Public []string
	// Registerer, when set, receives the authentication failure counter.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Handler returns the HTTP handler.
func Handler(st Store, o Options) http.Handler {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	a := &api{st: st, o: o}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", a.ready)
	if o.Gatherer != nil {
		mux.Handle("GET /metrics", promhttp.HandlerFor(o.Gatherer, promhttp.HandlerOpts{}))
	}
	mux.HandleFunc("GET /api/v1/messages", a.listMessages)
	mux.HandleFunc("GET /api/v1/messages/{id}", a.getMessage)
	mux.HandleFunc("POST /api/v1/messages/reprocess", a.reprocess)
	mux.HandleFunc("GET /api/v1/patients", a.findPatient)
	mux.HandleFunc("GET /api/v1/patients/{id}/everything", a.everything)
	mux.HandleFunc("GET /api/v1/outbox", a.outbox)
	mux.HandleFunc("GET /api/v1/stats", a.stats)
	mux.HandleFunc("GET /api/v1/audit", a.audit)
	mux.HandleFunc("GET /api/v1/appacks", a.listAppAcks)
	if o.Pipeline != nil {
		mux.HandleFunc("GET /api/v1/pipeline", a.pipelineState)
		mux.HandleFunc("POST /api/v1/pipeline/pause", a.pausePipeline)
		mux.HandleFunc("POST /api/v1/pipeline/resume", a.resumePipeline)
	}
	for pattern, h := range o.Extra {
		mux.Handle(pattern, h)
	}
	failures := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_api_auth_failures_total",
		Help: "API requests refused, by step (api.authenticate: no or bad token; api.authorize: role too weak)."}, []string{"step"})
	if o.Registerer != nil {
		o.Registerer.MustRegister(failures)
	}
	tokens := o.CurrentTokens
	if tokens == nil {
		tokens = func() []Token { return o.Tokens }
	}
	return &authenticator{tokens: tokens, public: o.Public, audit: st.Audit, next: mux,
		onFail: func(step string) { failures.WithLabelValues(step).Inc() }}
}

type api struct {
	st Store
	o  Options
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}

func (a *api) ready(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 3*time.Second)
	defer cancel()
	checks := append([]Check{{Name: "store", Fn: a.st.Ping}}, a.o.Checks...)
	out := map[string]string{}
	status := http.StatusOK
	for _, c := range checks {
		if err := c.Fn(ctx); err != nil {
			out[c.Name] = err.Error()
			status = http.StatusServiceUnavailable
		} else {
			out[c.Name] = "ok"
		}
	}
	writeJSON(w, status, out)
}

func peer(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

func (a *api) auditRead(r *http.Request, action, target, outcome string) error {
	return a.st.Audit(r.Context(), RequestAudit(r, action, target, outcome))
}

type messageView struct {
	ID             string     `json:"id"`
	Channel        string     `json:"channel"`
	Sender         string     `json:"sender"`
	ReceivedAt     time.Time  `json:"received_at"`
	Filename       string     `json:"filename,omitempty"`
	Kind           string     `json:"kind"`
	MessageType    string     `json:"message_type,omitempty"`
	ControlID      string     `json:"control_id,omitempty"`
	SHA256         string     `json:"sha256"`
	Status         string     `json:"status"`
	Error          string     `json:"error,omitempty"`
	MappingVersion string     `json:"mapping_version,omitempty"`
	Attempts       int        `json:"attempts"`
	ProcessedAt    *time.Time `json:"processed_at,omitempty"`
	PatientID      string     `json:"patient_id,omitempty"`
	// Notes: what processing noticed without failing (unmapped codes kept
	// as sent, values left out); on GET /api/v1/messages/{id} only.
	Notes []store.Note `json:"notes,omitempty"`
	// AppAck is the application acknowledgement queued for the message
	// (enhanced mode, MSH-16), when there is one; on GET
	// /api/v1/messages/{id} only, its text with ?body=true.
	AppAck *appAckView `json:"app_ack,omitempty"`
	Body   string      `json:"body,omitempty"`
	ACK    string      `json:"ack,omitempty"`
}

func view(e store.Envelope) messageView {
	return messageView{ID: e.ID, Channel: e.Channel, Sender: e.Sender, ReceivedAt: e.ReceivedAt, Filename: e.Filename,
		Kind: e.Kind, MessageType: e.MessageType, ControlID: e.ControlID, SHA256: e.SHA256, Status: e.Status,
		Error: e.Error, MappingVersion: e.MappingVersion, Attempts: e.Attempts, ProcessedAt: e.ProcessedAt, PatientID: e.PatientID}
}

func (a *api) listMessages(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	f := store.EnvelopeFilter{Sender: q.Get("sender"), Status: q.Get("status"), ControlID: q.Get("control_id"),
		PatientID: q.Get("patient")}
	var err error
	if f.Since, err = parseTime(q.Get("since")); err != nil {
		writeError(w, http.StatusBadRequest, "since: "+err.Error())
		return
	}
	if f.Until, err = parseTime(q.Get("until")); err != nil {
		writeError(w, http.StatusBadRequest, "until: "+err.Error())
		return
	}
	f.Limit, _ = strconv.Atoi(q.Get("limit"))
	f.BeforeSeq, _ = strconv.ParseInt(q.Get("before"), 10, 64)
	envs, err := a.st.ListEnvelopes(r.Context(), f)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if f.PatientID != "" {
		// Which messages concern a patient is patient data: audited.
		if err := a.auditRead(r, "patient.messages_search", f.PatientID, "ok"); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
	}
	out := make([]messageView, 0, len(envs))
	for _, e := range envs {
		out = append(out, view(e))
	}
	next := ""
	if len(envs) > 0 {
		next = strconv.FormatInt(envs[len(envs)-1].Seq, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages": out, "next_before": next})
}

func parseTime(s string) (time.Time, error) {
	if s == "" {
		return time.Time{}, nil
	}
	return time.Parse(time.RFC3339, s)
}

func (a *api) getMessage(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	e, err := a.st.GetEnvelope(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no message "+id)
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	v := view(*e)
	if v.Notes, err = a.st.EnvelopeNotes(r.Context(), id); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	withBody := r.URL.Query().Get("body") == "true"
	switch ack, err := a.st.EnvelopeAppAck(r.Context(), id, withBody); {
	case err == nil:
		av := appAckViewOf(*ack)
		v.AppAck = &av
	case !errors.Is(err, store.ErrNotFound):
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if withBody {
		// The body is PHI: its read is audited.
		if err := a.auditRead(r, "message.read_body", id, "ok"); err != nil {
			writeError(w, http.StatusInternalServerError, err.Error())
			return
		}
		v.Body, v.ACK = string(e.Raw), string(e.ACK)
	}
	writeJSON(w, http.StatusOK, v)
}

func (a *api) reprocess(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Sender string    `json:"sender"`
		IDs    []string  `json:"ids"`
		Since  time.Time `json:"since"`
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20)).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return
	}
	n, err := a.st.Requeue(r.Context(), store.RequeueFilter{Sender: req.Sender, IDs: req.IDs, Since: req.Since})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	e := RequestAudit(r, "message.reprocess", req.Sender, "ok")
	e.Detail = strconv.FormatInt(n, 10) + " requeued"
	_ = a.st.Audit(r.Context(), e)
	if a.o.OnRequeue != nil {
		a.o.OnRequeue()
	}
	writeJSON(w, http.StatusOK, map[string]int64{"requeued": n})
}

func (a *api) findPatient(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	sys, val := q.Get("system"), q.Get("value")
	if sys == "" || val == "" {
		writeError(w, http.StatusBadRequest, "system and value are required")
		return
	}
	id, err := a.st.PatientByIdentifier(r.Context(), sys, val)
	outcome := "ok"
	if errors.Is(err, store.ErrNotFound) {
		outcome = "not found"
	}
	if aerr := a.auditRead(r, "patient.lookup", sys+"|"+val, outcome); aerr != nil {
		writeError(w, http.StatusInternalServerError, aerr.Error())
		return
	}
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no patient with that identifier")
		return
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	ids, err := a.st.PatientIdentifiers(r.Context(), id)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"patient_id": id, "identifiers": ids})
}

func (a *api) everything(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	count, _ := strconv.Atoi(r.URL.Query().Get("count"))
	if count <= 0 || count > 500 {
		count = 100
	}
	rs, err := a.st.PatientResources(r.Context(), id, offset, count+1)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if err := a.auditRead(r, "patient.everything", id, "ok"); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	more := len(rs) > count
	if more {
		rs = rs[:count]
	}
	b := &fhir.Bundle{ResourceType: "Bundle", Type: "searchset"}
	for _, sr := range rs {
		var res fhir.Resource
		if err := json.Unmarshal([]byte(sr.Body), &res); err != nil {
			continue
		}
		b.Entry = append(b.Entry, fhir.BundleEntry{FullURL: sr.Type + "/" + sr.ID, Resource: res})
	}
	self := "/api/v1/patients/" + id + "/everything?offset=" + strconv.Itoa(offset) + "&count=" + strconv.Itoa(count)
	b.Link = append(b.Link, fhir.BundleLink{Relation: "self", URL: self})
	if more {
		b.Link = append(b.Link, fhir.BundleLink{Relation: "next",
			URL: "/api/v1/patients/" + id + "/everything?offset=" + strconv.Itoa(offset+count) + "&count=" + strconv.Itoa(count)})
	}
	w.Header().Set("Content-Type", "application/fhir+json")
	_ = json.NewEncoder(w).Encode(b)
}

func (a *api) outbox(w http.ResponseWriter, r *http.Request) {
	c, err := a.st.OutboxCounts(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"subscribers": c})
}

func (a *api) stats(w http.ResponseWriter, r *http.Request) {
	c, err := a.st.CountEnvelopes(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"messages_by_status": c})
}

func (a *api) audit(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	es, err := a.st.AuditLog(r.Context(), limit)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	// The log names patients and who looked at them: reading it is audited.
	format := r.URL.Query().Get("format")
	if format != "" && format != "json" && format != "fhir" {
		writeError(w, http.StatusBadRequest, "format: use json or fhir")
		return
	}
	if err := a.auditRead(r, "audit.export", "audit_log", "ok"); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	switch format {
	case "fhir":
		w.Header().Set("Content-Type", "application/fhir+json")
		_ = json.NewEncoder(w).Encode(AuditBundle(es))
	default:
		writeJSON(w, http.StatusOK, map[string]any{"entries": es})
	}
}

package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"

	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/store"
)

// Identity is what the master patient index endpoints need
// (pipeline.Identity implements it): changes run in one transaction that
// also moves resources, queues the identity events and writes the audit
// entry; views read a consistent state.
type Identity interface {
	Change(ctx context.Context, audit store.AuditEntry, fn func(ix *mpi.Index) ([]mpi.Event, error)) ([]mpi.Event, error)
	View(ctx context.Context, fn func(ix *mpi.Index, st *sqlstore.Store) error) error
}

// Auditor appends to the store's audit log.
type Auditor interface {
	Audit(ctx context.Context, e store.AuditEntry) error
}

// MPIHandlers returns the master patient index endpoints, to mount through
// Options.Extra:
//
//	GET  /api/v1/mpi/tasks?status=open&offset=&limit=   review queue: both records and the score breakdown
//	POST /api/v1/mpi/tasks/{id}/decision                {"match": bool, "note": "..."}
//	GET  /api/v1/mpi/records?authority=&identifier=     a record by (assigning authority, MRN or other identifier)
//	GET  /api/v1/mpi/records/audit?authority=&mrn=      the index's audit trail of a record
//	GET  /api/v1/mpi/search?family=&given=&birth_date=&sex=&postcode=&phone=&national_id=&min_score=&limit=
//	GET  /api/v1/mpi/patients/{id}                      an enterprise patient's cross-reference list
//	POST /api/v1/mpi/link                               {"a": key, "b": key, "reason": "..."}
//	POST /api/v1/mpi/unlink                             {"key": key, "reason": "..."}
//	POST /api/v1/mpi/undo                               {"audit_id": "...", "reason": "..."}
//
// A key is {"authority": "...", "mrn": "..."}. Every call writes the audit
// log; changes are audited in their own transaction, with their events.
func MPIHandlers(id Identity, audit Auditor) map[string]http.Handler {
	h := &mpiAPI{id: id, audit: audit}
	return map[string]http.Handler{
		"GET /api/v1/mpi/tasks":                http.HandlerFunc(h.tasks),
		"POST /api/v1/mpi/tasks/{id}/decision": http.HandlerFunc(h.decide),
		"GET /api/v1/mpi/records":              http.HandlerFunc(h.record),
		"GET /api/v1/mpi/records/audit":        http.HandlerFunc(h.recordAudit),
		"GET /api/v1/mpi/search":               http.HandlerFunc(h.search),
		"GET /api/v1/mpi/patients/{id}":        http.HandlerFunc(h.patient),
		"POST /api/v1/mpi/link":                http.HandlerFunc(h.link),
		"POST /api/v1/mpi/unlink":              http.HandlerFunc(h.unlink),
		"POST /api/v1/mpi/undo":                http.HandlerFunc(h.undo),
	}
}

type mpiAPI struct {
	id    Identity
	audit Auditor
}

// mpiActor names the caller: the authenticated principal, else (paths
// served without authentication) the X-Hiegw-Actor header, else anonymous.
func mpiActor(r *http.Request) string {
	a := Actor(r.Context())
	if a == "anonymous" {
		if h := r.Header.Get("X-Hiegw-Actor"); h != "" {
			return h
		}
	}
	return a
}

func (h *mpiAPI) entry(r *http.Request, action, target, outcome string) store.AuditEntry {
	e := RequestAudit(r, action, target, outcome)
	e.Actor = mpiActor(r)
	return e
}

// read audits a read, then answers; a failed audit fails the request.
func (h *mpiAPI) read(w http.ResponseWriter, r *http.Request, action, target string, status int, v any) {
	outcome := "ok"
	if status == http.StatusNotFound {
		outcome = "not found"
	}
	if err := h.audit.Audit(r.Context(), h.entry(r, action, target, outcome)); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	writeJSON(w, status, v)
}

// mpiStatus maps index errors to HTTP statuses.
func mpiStatus(err error) int {
	switch {
	case errors.Is(err, mpi.ErrNotFound), errors.Is(err, mpi.ErrTaskNotFound):
		return http.StatusNotFound
	case errors.Is(err, mpi.ErrTaskClosed), errors.Is(err, mpi.ErrConflict), errors.Is(err, mpi.ErrNotLinked),
		errors.Is(err, mpi.ErrMerged), errors.Is(err, mpi.ErrNotReversible):
		return http.StatusConflict
	case errors.Is(err, mpi.ErrNoKey), errors.Is(err, mpi.ErrSameAuthority):
		return http.StatusBadRequest
	}
	return http.StatusInternalServerError
}

// change runs an operator change, audits a refusal outside the failed
// transaction, and answers with the events.
func (h *mpiAPI) change(w http.ResponseWriter, r *http.Request, action, target, reason string, fn func(ix *mpi.Index) ([]mpi.Event, error)) {
	a := h.entry(r, action, target, "ok")
	if reason != "" {
		a.Detail += "; reason: " + reason
	}
	evs, err := h.id.Change(r.Context(), a, fn)
	if err != nil {
		status := mpiStatus(err)
		a.Outcome = "refused: " + err.Error()
		if status == http.StatusInternalServerError {
			a.Outcome = "failed"
		}
		if aerr := h.audit.Audit(r.Context(), a); aerr != nil {
			writeError(w, http.StatusInternalServerError, aerr.Error())
			return
		}
		writeError(w, status, err.Error())
		return
	}
	if evs == nil {
		evs = []mpi.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

func decodeBody(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "body: "+err.Error())
		return false
	}
	return true
}

// taskView is a review task with both records as they stand now.
type taskView struct {
	mpi.Task
	Record    *mpi.Entry `json:"record,omitempty"`
	Candidate *mpi.Entry `json:"candidate_record,omitempty"`
}

func (h *mpiAPI) tasks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	status := mpi.TaskStatus(q.Get("status"))
	if q.Get("status") == "" {
		status = mpi.TaskOpen
	} else if status == "all" {
		status = ""
	}
	offset, _ := strconv.Atoi(q.Get("offset"))
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 500 {
		limit = 100
	}
	var out []taskView
	err := h.id.View(r.Context(), func(ix *mpi.Index, st *sqlstore.Store) error {
		ts, err := st.Tasks(r.Context(), status, max(offset, 0), limit)
		if err != nil {
			return err
		}
		for _, t := range ts {
			v := taskView{Task: t}
			var err error
			if v.Record, err = entryOf(r.Context(), st, t.Key); err != nil {
				return err
			}
			if v.Candidate, err = entryOf(r.Context(), st, t.Candidate); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if out == nil {
		out = []taskView{}
	}
	h.read(w, r, "mpi.tasks.list", string(status), http.StatusOK, map[string]any{"tasks": out})
}

func (h *mpiAPI) decide(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Match *bool  `json:"match"`
		Note  string `json:"note"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Match == nil {
		writeError(w, http.StatusBadRequest, "body: match (true or false) is required")
		return
	}
	id, actor := r.PathValue("id"), mpiActor(r)
	h.change(w, r, "mpi.review", id, req.Note, func(ix *mpi.Index) ([]mpi.Event, error) {
		return ix.Decide(r.Context(), id, *req.Match, actor, req.Note)
	})
}

// recordView is a record of the index and the enterprise patient it
// belongs to now (a merged record's survivor's).
type recordView struct {
	EnterpriseID string    `json:"enterprise_id"`
	Entry        mpi.Entry `json:"entry"`
}

func (h *mpiAPI) record(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	auth, value := q.Get("authority"), q.Get("identifier")
	if auth == "" || value == "" {
		writeError(w, http.StatusBadRequest, "authority and identifier are required")
		return
	}
	var out []recordView
	err := h.id.View(r.Context(), func(ix *mpi.Index, st *sqlstore.Store) error {
		keys := []mpi.Key{{Authority: auth, MRN: value}}
		if _, ok, err := st.Get(r.Context(), keys[0]); err != nil {
			return err
		} else if !ok {
			if keys, err = st.LookupValue(r.Context(), auth, value); err != nil {
				return err
			}
		}
		for _, k := range keys {
			e, ok, err := st.Get(r.Context(), k)
			if err != nil {
				return err
			}
			if !ok {
				continue
			}
			eid, _, err := st.Resolve(r.Context(), k)
			if err != nil {
				return err
			}
			out = append(out, recordView{EnterpriseID: eid, Entry: e})
		}
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(out) == 0 {
		h.read(w, r, "mpi.lookup", auth+"|"+value, http.StatusNotFound, map[string]string{"error": "no record with that identifier"})
		return
	}
	h.read(w, r, "mpi.lookup", auth+"|"+value, http.StatusOK, map[string]any{"records": out})
}

func (h *mpiAPI) recordAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	k := mpi.Key{Authority: q.Get("authority"), MRN: q.Get("mrn")}
	if k.Authority == "" || k.MRN == "" {
		writeError(w, http.StatusBadRequest, "authority and mrn are required")
		return
	}
	var out []mpi.AuditEntry
	err := h.id.View(r.Context(), func(ix *mpi.Index, st *sqlstore.Store) error {
		var err error
		out, err = st.Audit(r.Context(), k)
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if out == nil {
		out = []mpi.AuditEntry{}
	}
	h.read(w, r, "mpi.audit.read", k.String(), http.StatusOK, map[string]any{"entries": out})
}

func (h *mpiAPI) search(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	rec := mpi.Record{Family: q.Get("family"), Given: q.Get("given"), Middle: q.Get("middle"),
		BirthDate: q.Get("birth_date"), Sex: q.Get("sex"), City: q.Get("city"), State: q.Get("state"),
		Postcode: q.Get("postcode"), Phone: q.Get("phone"), NationalID: q.Get("national_id")}
	if l := q.Get("address"); l != "" {
		rec.AddressLines = []string{l}
	}
	if rec.Family == "" && rec.Given == "" && rec.BirthDate == "" && rec.Phone == "" && rec.NationalID == "" {
		writeError(w, http.StatusBadRequest, "give at least one of family, given, birth_date, phone, national_id")
		return
	}
	minScore := 0.0
	if s := q.Get("min_score"); s != "" {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			writeError(w, http.StatusBadRequest, "min_score must be a number")
			return
		}
		minScore = v
	}
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 100 {
		limit = 10
	}
	type candidate struct {
		mpi.Comparison
		Record *mpi.Entry `json:"record,omitempty"`
	}
	var out []candidate
	compared := 0
	err := h.id.View(r.Context(), func(ix *mpi.Index, st *sqlstore.Store) error {
		cs, n, err := ix.Search(r.Context(), rec, minScore, limit)
		if err != nil {
			return err
		}
		compared = n
		for _, c := range cs {
			v := candidate{Comparison: c}
			var err error
			if v.Record, err = entryOf(r.Context(), st, c.Candidate); err != nil {
				return err
			}
			out = append(out, v)
		}
		return nil
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if out == nil {
		out = []candidate{}
	}
	body := map[string]any{"candidates": out, "compared": compared}
	if cfg, ok := h.id.(interface{ Config() mpi.Config }); ok {
		c := cfg.Config()
		body["thresholds"] = map[string]float64{"upper": c.Upper, "lower": c.Lower}
	}
	h.read(w, r, "mpi.search", "demographics", http.StatusOK, body)
}

func (h *mpiAPI) patient(w http.ResponseWriter, r *http.Request) {
	eid := r.PathValue("id")
	var out []mpi.Entry
	err := h.id.View(r.Context(), func(ix *mpi.Index, st *sqlstore.Store) error {
		var err error
		out, err = st.Records(r.Context(), eid)
		return err
	})
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if len(out) == 0 {
		h.read(w, r, "mpi.patient.read", eid, http.StatusNotFound, map[string]string{"error": "no enterprise patient " + eid})
		return
	}
	h.read(w, r, "mpi.patient.read", eid, http.StatusOK, map[string]any{"enterprise_id": eid, "records": out})
}

type linkRequest struct {
	A      mpi.Key `json:"a"`
	B      mpi.Key `json:"b"`
	Reason string  `json:"reason"`
}

func (h *mpiAPI) link(w http.ResponseWriter, r *http.Request) {
	var req linkRequest
	if !decodeBody(w, r, &req) {
		return
	}
	if req.A.Authority == "" || req.A.MRN == "" || req.B.Authority == "" || req.B.MRN == "" {
		writeError(w, http.StatusBadRequest, "a and b need authority and mrn")
		return
	}
	actor := mpiActor(r)
	h.change(w, r, "mpi.link", req.A.String()+" + "+req.B.String(), req.Reason, func(ix *mpi.Index) ([]mpi.Event, error) {
		return ix.Link(r.Context(), req.A, req.B, actor, req.Reason)
	})
}

func (h *mpiAPI) unlink(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Key    mpi.Key `json:"key"`
		Reason string  `json:"reason"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.Key.Authority == "" || req.Key.MRN == "" {
		writeError(w, http.StatusBadRequest, "key needs authority and mrn")
		return
	}
	actor := mpiActor(r)
	h.change(w, r, "mpi.unlink", req.Key.String(), req.Reason, func(ix *mpi.Index) ([]mpi.Event, error) {
		return ix.Unlink(r.Context(), req.Key, actor, req.Reason)
	})
}

func (h *mpiAPI) undo(w http.ResponseWriter, r *http.Request) {
	var req struct {
		AuditID string `json:"audit_id"`
		Reason  string `json:"reason"`
	}
	if !decodeBody(w, r, &req) {
		return
	}
	if req.AuditID == "" {
		writeError(w, http.StatusBadRequest, "audit_id is required")
		return
	}
	actor := mpiActor(r)
	h.change(w, r, "mpi.undo", req.AuditID, req.Reason, func(ix *mpi.Index) ([]mpi.Event, error) {
		return ix.Undo(r.Context(), req.AuditID, actor, req.Reason)
	})
}

// entryOf returns the index entry stored under k, or nil when there is none.
func entryOf(ctx context.Context, st *sqlstore.Store, k mpi.Key) (*mpi.Entry, error) {
	e, ok, err := st.Get(ctx, k)
	if err != nil || !ok {
		return nil, err
	}
	return &e, nil
}

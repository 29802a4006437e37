package api

import (
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// appAckStatuses are the states an application acknowledgement can be in,
// the only values ?status= accepts.
var appAckStatuses = map[string]bool{store.AppAckPending: true, store.AppAckSent: true, store.AppAckRefused: true,
	store.AppAckNoRoute: true}

// maxAppAckBodies bounds a page read with ?body=true, so that one audited
// read names a bounded list of envelopes.
const maxAppAckBodies = 50

// appAckView is an application acknowledgement as operators see it. It
// holds ids, codes and delivery bookkeeping; the acknowledgement itself
// (Message) only on request, audited.
type appAckView struct {
	Seq          int64     `json:"seq"`
	EnvelopeID   string    `json:"envelope_id"`
	Sender       string    `json:"sender"`
	ControlID    string    `json:"control_id"`     // the acknowledged message's MSH-10
	AckControlID string    `json:"ack_control_id"` // the acknowledgement's own MSH-10
	Code         string    `json:"code"`           // AA, AE or AR
	Status       string    `json:"status"`
	Attempts     int       `json:"attempts"`
	CreatedAt    time.Time `json:"created_at"`
	// NextAttemptAt is when delivery is tried next; pending only.
	NextAttemptAt *time.Time `json:"next_attempt_at,omitempty"`
	// DoneAt is when the sender's answer settled it (sent or refused);
	// SentAt repeats it for a sent one.
	DoneAt    *time.Time `json:"done_at,omitempty"`
	SentAt    *time.Time `json:"sent_at,omitempty"`
	ReplyCode string     `json:"reply_code,omitempty"` // MSA-1 of the sender's answer
	// LastError is why the last delivery failed or why the sender refused.
	LastError string `json:"last_error,omitempty"`
	Message   string `json:"message,omitempty"`
}

func appAckViewOf(a store.AppAck) appAckView {
	v := appAckView{Seq: a.Seq, EnvelopeID: a.EnvelopeID, Sender: a.Sender, ControlID: a.ControlID,
		AckControlID: a.AckControlID, Code: a.Code, Status: a.Status, Attempts: a.Attempts, CreatedAt: a.CreatedAt,
		DoneAt: a.DoneAt, ReplyCode: a.ReplyCode, LastError: a.LastError, Message: string(a.Message)}
	if a.Status == store.AppAckPending && !a.NextAttempt.IsZero() {
		next := a.NextAttempt
		v.NextAttemptAt = &next
	}
	if a.Status == store.AppAckSent {
		v.SentAt = a.DoneAt
	}
	return v
}

// listAppAcks serves GET /api/v1/appacks?sender=&status=&limit=&before=&body=:
// application acknowledgements newest first, and how many each sender has
// in each state.
func (a *api) listAppAcks(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p := store.AppAckPage{Sender: q.Get("sender"), Status: q.Get("status")}
	if p.Status != "" && !appAckStatuses[p.Status] {
		writeError(w, http.StatusBadRequest, "status: use pending, sent, refused or no_route")
		return
	}
	var err error
	if s := q.Get("limit"); s != "" {
		if p.Limit, err = strconv.Atoi(s); err != nil || p.Limit < 1 {
			writeError(w, http.StatusBadRequest, "limit: a positive number")
			return
		}
	}
	if s := q.Get("before"); s != "" {
		if p.BeforeSeq, err = strconv.ParseInt(s, 10, 64); err != nil || p.BeforeSeq < 1 {
			writeError(w, http.StatusBadRequest, "before: the next_before of the previous page")
			return
		}
	}
	switch q.Get("body") {
	case "", "false":
	case "true":
		p.WithMessage = true
		if p.Limit <= 0 || p.Limit > maxAppAckBodies {
			p.Limit = maxAppAckBodies
		}
	default:
		writeError(w, http.StatusBadRequest, "body: true or false")
		return
	}
	acks, err := a.st.RecentAppAcks(r.Context(), p)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	counts, err := a.st.AppAckCounts(r.Context())
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if p.WithMessage {
		// The acknowledgements are message content: which ones were read,
		// and by whom, is audited like a message body.
		ids := make([]string, 0, len(acks))
		for _, x := range acks {
			ids = append(ids, x.EnvelopeID)
		}
		e := RequestAudit(r, "appack.read_body", strings.Join(ids, ","), "ok")
		e.Detail += " (" + strconv.Itoa(len(ids)) + " application acknowledgements)"
		if err := a.st.Audit(r.Context(), e); err != nil {
			writeError(w, http.StatusInternalServerError, "audit: "+err.Error())
			return
		}
	}
	out := make([]appAckView, 0, len(acks))
	for _, x := range acks {
		out = append(out, appAckViewOf(x))
	}
	next := ""
	if len(acks) > 0 {
		next = strconv.FormatInt(acks[len(acks)-1].Seq, 10)
	}
	byStatus := map[string]int64{}
	for _, c := range counts {
		byStatus[c.Status] += c.N
	}
	if counts == nil {
		counts = []store.AppAckCount{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"appacks": out, "next_before": next,
		"counts": countViews(counts), "by_status": byStatus})
}

// appAckCountView is AppAckCount with JSON names.
type appAckCountView struct {
	Sender string `json:"sender"`
	Status string `json:"status"`
	N      int64  `json:"n"`
}

func countViews(cs []store.AppAckCount) []appAckCountView {
	out := make([]appAckCountView, 0, len(cs))
	for _, c := range cs {
		out = append(out, appAckCountView{Sender: c.Sender, Status: c.Status, N: c.N})
	}
	return out
}

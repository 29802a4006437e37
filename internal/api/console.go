package api

import (
	"bytes"
	"context"
	"embed"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// The console's static assets: plain HTML, CSS and JavaScript modules, no
// build step and nothing fetched from elsewhere.
//
//go:embed console
var consoleAssets embed.FS

// ConsoleStore is what the console's endpoints read from the database.
type ConsoleStore interface {
	GetEnvelope(ctx context.Context, id string) (*store.Envelope, error)
	EnvelopeResources(ctx context.Context, envelopeID string) ([]store.EnvelopeResource, error)
	EnvelopeOutbox(ctx context.Context, envelopeID string) ([]store.RoutedEvent, error)
	PatientIdentifiers(ctx context.Context, patientID string) ([]store.Identifier, error)
	Senders(ctx context.Context) ([]store.SenderCount, error)
	CountEnvelopes(ctx context.Context) (map[string]int64, error)
	Audit(ctx context.Context, e store.AuditEntry) error
}

var _ ConsoleStore = (*store.DB)(nil)

// Listener describes one listener for the console's status panel.
type Listener struct {
	Name     string `json:"name"` // mllp, sftp, http, broker
	Addr     string `json:"addr"`
	Security string `json:"security"` // e.g. "plain", "TLS", "mutual TLS", "SSH"
	// CertNotAfter is when a TLS listener's certificate in force expires.
	CertNotAfter *time.Time `json:"cert_not_after,omitempty"`
}

// ConsoleOptions configure the console.
type ConsoleOptions struct {
	// Mappings returns the mapping set serving now; nil turns the mapping
	// playground off.
	Mappings func() *mapping.Set
	// Listeners reports the bound listeners.
	Listeners func() []Listener
	// Gatherer supplies the counters shown as throughput.
	Gatherer prometheus.Gatherer
	// Started is when the gateway started.
	Started time.Time
	// Version is the hiegw version string.
	Version string
}

// maxDryRunBytes bounds a message pasted into the mapping playground.
const maxDryRunBytes = 4 << 20

// Console returns the console's routes, to mount with Options.Extra: the
// static console under /console/ and the JSON endpoints it reads besides
// the core API (a message's parsed tree, resources, routing and patient
// link, a status summary and the mapping dry-run). Reads of message content
// and patient data are audited like the rest of the API.
func Console(st ConsoleStore, o ConsoleOptions) map[string]http.Handler {
	c := &console{st: st, o: o}
	assets, err := fs.Sub(consoleAssets, "console")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	files := http.StripPrefix("/console/", http.FileServerFS(assets))
	return map[string]http.Handler{
		"GET /console": http.RedirectHandler("/console/", http.StatusMovedPermanently),
		"GET /console/": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			secureHeaders(w.Header())
			w.Header().Set("Cache-Control", "no-cache")
			files.ServeHTTP(w, r)
		}),
		"GET /api/v1/console/status":          http.HandlerFunc(c.status),
		"GET /api/v1/messages/{id}/tree":      http.HandlerFunc(c.tree),
		"GET /api/v1/messages/{id}/resources": http.HandlerFunc(c.resources),
		"GET /api/v1/messages/{id}/routing":   http.HandlerFunc(c.routing),
		"GET /api/v1/messages/{id}/patient":   http.HandlerFunc(c.patient),
		"POST /api/v1/mappings/dry-run":       http.HandlerFunc(c.dryRun),
	}
}

// secureHeaders keeps the console's page to its own origin: no inline
// script, nothing loaded from elsewhere, never framed.
func secureHeaders(h http.Header) {
	h.Set("Content-Security-Policy", "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "+
		"connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
}

type console struct {
	st ConsoleStore
	o  ConsoleOptions
}

// statusView is the console's status panel.
type statusView struct {
	Version          string              `json:"version,omitempty"`
	StartedAt        time.Time           `json:"started_at"`
	UptimeSeconds    int64               `json:"uptime_seconds"`
	Now              time.Time           `json:"now"`
	Listeners        []Listener          `json:"listeners"`
	MappingVersion   string              `json:"mapping_version,omitempty"`
	MappedSenders    []string            `json:"mapped_senders"`
	Senders          []store.SenderCount `json:"senders"`
	MessagesByStatus map[string]int64    `json:"messages_by_status"`
	// Counters are cumulative since start; the console turns two readings
	// into a rate.
	Counters map[string]float64 `json:"counters"`
}

// counterNames are the metric families the status panel sums (over all
// their labels).
var counterNames = map[string]string{
	"hiegw_intake_received_total":        "received",
	"hiegw_intake_duplicates_total":      "duplicates",
	"hiegw_intake_rejected_total":        "rejected",
	"hiegw_pipeline_processed_total":     "processed",
	"hiegw_pipeline_failed_total":        "failed",
	"hiegw_route_published_total":        "published",
	"hiegw_route_publish_failures_total": "publish_failures",
	"hiegw_route_dead_lettered_total":    "dead_lettered",
	"hiegw_route_unmatched_total":        "unmatched",
}

func (c *console) status(w http.ResponseWriter, r *http.Request) {
	now := time.Now().UTC()
	v := statusView{Version: c.o.Version, StartedAt: c.o.Started.UTC(), Now: now, Listeners: []Listener{},
		MappedSenders: []string{}, Counters: map[string]float64{}}
	if !c.o.Started.IsZero() {
		v.UptimeSeconds = int64(now.Sub(c.o.Started).Seconds())
	}
	if c.o.Listeners != nil {
		v.Listeners = append(v.Listeners, c.o.Listeners()...)
	}
	if c.o.Mappings != nil {
		if set := c.o.Mappings(); set != nil {
			v.MappingVersion = set.Version()
			v.MappedSenders = append(v.MappedSenders, set.Senders()...)
		}
	}
	var err error
	if v.Senders, err = c.st.Senders(r.Context()); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if v.MessagesByStatus, err = c.st.CountEnvelopes(r.Context()); err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if c.o.Gatherer != nil {
		v.Counters = sumCounters(c.o.Gatherer)
	}
	writeJSON(w, http.StatusOK, v)
}

// sumCounters reads the counters the status panel shows; a family not
// registered (yet) reads as 0.
func sumCounters(g prometheus.Gatherer) map[string]float64 {
	out := map[string]float64{}
	for _, short := range counterNames {
		out[short] = 0
	}
	mfs, err := g.Gather()
	if err != nil && len(mfs) == 0 {
		return out
	}
	for _, mf := range mfs {
		short, ok := counterNames[mf.GetName()]
		if !ok {
			continue
		}
		for _, m := range mf.GetMetric() {
			out[short] += m.GetCounter().GetValue()
		}
	}
	return out
}

// envelope reads the envelope named in the path, answering 404 or 500
// itself when it cannot.
func (c *console) envelope(w http.ResponseWriter, r *http.Request) (*store.Envelope, bool) {
	id := r.PathValue("id")
	e, err := c.st.GetEnvelope(r.Context(), id)
	if errors.Is(err, store.ErrNotFound) {
		writeError(w, http.StatusNotFound, "no message "+id)
		return nil, false
	}
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return nil, false
	}
	return e, true
}

// audit records a read of PHI; a read that cannot be audited is refused.
func (c *console) audit(w http.ResponseWriter, r *http.Request, action, target string) bool {
	err := c.st.Audit(r.Context(), RequestAudit(r, action, target, "ok"))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "audit: "+err.Error())
		return false
	}
	return true
}

// Tree is a parsed HL7 v2 message as the console shows it.
type Tree struct {
	Kind      string        `json:"kind"`
	Structure string        `json:"structure,omitempty"`
	Segments  []TreeSegment `json:"segments"`
	// Problems are located parse and validation findings (never values).
	Problems []Problem `json:"problems"`
}

// TreeSegment is one segment and its non-empty fields.
type TreeSegment struct {
	Name       string      `json:"name"`
	Index      int         `json:"index"`      // 1-based position in the message
	Occurrence int         `json:"occurrence"` // 1-based among segments of the same name
	Line       int         `json:"line"`
	Fields     []TreeField `json:"fields"`
}

// TreeField is one field; Reps holds its repetitions.
type TreeField struct {
	Path string    `json:"path"` // e.g. PID-5
	N    int       `json:"n"`
	Reps []TreeRep `json:"reps"`
}

// TreeRep is one repetition; Components is empty when it has only one.
type TreeRep struct {
	Path       string     `json:"path"` // e.g. PID-3[2]
	Value      string     `json:"value"`
	Components []TreePart `json:"components,omitempty"`
}

// TreePart is a component (or subcomponent); Subs is empty when it has only
// one subcomponent.
type TreePart struct {
	Path  string     `json:"path"` // e.g. PID-5.1 or PID-3[2].4.1
	Value string     `json:"value"`
	Subs  []TreePart `json:"subs,omitempty"`
}

// Problem is a located finding about a message.
type Problem struct {
	Location string `json:"location,omitempty"` // ERR-2 style, e.g. PID^1^7
	Line     int    `json:"line,omitempty"`
	Field    string `json:"field,omitempty"` // FHIR element (mapping errors)
	Rule     string `json:"rule,omitempty"`  // mapping rule file:line
	Message  string `json:"message"`
}

// BuildTree parses raw as HL7 v2 and returns its tree with every decoded
// value and its path. A message that cannot be parsed returns a Tree with
// no segments and the located problem.
func BuildTree(raw []byte) Tree {
	t := Tree{Kind: "hl7v2", Segments: []TreeSegment{}, Problems: []Problem{}}
	m, err := hl7.Parse(raw)
	if err != nil {
		t.Problems = append(t.Problems, problemsOf(err)...)
		return t
	}
	t.Structure = m.StructureName()
	if err := m.Validate(); err != nil {
		t.Problems = append(t.Problems, problemsOf(err)...)
	}
	occ := map[string]int{}
	for i := 0; i < m.SegmentCount(); i++ {
		seg := m.Segment(i)
		name := seg.Name()
		occ[name]++
		ts := TreeSegment{Name: name, Index: i + 1, Occurrence: occ[name], Line: seg.Line(), Fields: []TreeField{}}
		for f := 1; f <= seg.FieldCount(); f++ {
			fld := seg.Field(f)
			if fld.IsEmpty() {
				continue
			}
			fp := name + "-" + strconv.Itoa(f)
			tf := TreeField{Path: fp, N: f}
			reps := fld.RepCount()
			for ri := 1; ri <= max(reps, 1); ri++ {
				rep := fld.Rep(ri)
				rp := fp
				if reps > 1 {
					rp += "[" + strconv.Itoa(ri) + "]"
				}
				tr := TreeRep{Path: rp, Value: rep.Text()}
				if n := rep.ComponentCount(); n > 1 {
					for ci := 1; ci <= n; ci++ {
						comp := rep.Component(ci)
						cp := rp + "." + strconv.Itoa(ci)
						part := TreePart{Path: cp, Value: comp.String()}
						if sn := comp.SubCount(); sn > 1 {
							for si := 1; si <= sn; si++ {
								part.Subs = append(part.Subs, TreePart{Path: cp + "." + strconv.Itoa(si), Value: comp.Sub(si)})
							}
						}
						tr.Components = append(tr.Components, part)
					}
				}
				tf.Reps = append(tf.Reps, tr)
			}
			ts.Fields = append(ts.Fields, tf)
		}
		t.Segments = append(t.Segments, ts)
	}
	return t
}

// problemsOf flattens joined errors into located problems. Parse and
// mapping errors never carry message values, so their text is safe to show.
func problemsOf(err error) []Problem {
	var out []Problem
	for _, e := range flatten(err) {
		var pe *hl7.ParseError
		var me *mapping.MapError
		switch {
		case errors.As(e, &me):
			out = append(out, Problem{Location: me.Location, Field: me.Field, Rule: me.Rule, Message: me.Error()})
		case errors.As(e, &pe):
			out = append(out, Problem{Location: pe.Location(), Line: pe.Line, Message: pe.Error()})
		default:
			out = append(out, Problem{Message: e.Error()})
		}
	}
	return out
}

// flatten unwraps errors.Join trees, also below %w wrappers, into their
// leaves; an error with no join inside is returned whole.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	for e := err; e != nil; e = errors.Unwrap(e) {
		if j, ok := e.(interface{ Unwrap() []error }); ok {
			var out []error
			for _, x := range j.Unwrap() {
				out = append(out, flatten(x)...)
			}
			return out
		}
	}
	return []error{err}
}

func (c *console) tree(w http.ResponseWriter, r *http.Request) {
	e, ok := c.envelope(w, r)
	if !ok {
		return
	}
	if e.Kind == "ccda" {
		writeJSON(w, http.StatusOK, Tree{Kind: e.Kind, Segments: []TreeSegment{},
			Problems: []Problem{{Message: "a C-CDA document has no HL7 v2 tree; see its raw XML and FHIR output"}}})
		return
	}
	if !c.audit(w, r, "message.read_tree", e.ID) {
		return
	}
	writeJSON(w, http.StatusOK, BuildTree(e.Raw))
}

// resourceView is one resource version an envelope wrote.
type resourceView struct {
	ID         string          `json:"id"`
	Type       string          `json:"resource_type"`
	Version    int             `json:"version"`
	Current    bool            `json:"current"`
	RecordedAt time.Time       `json:"recorded_at"`
	Resource   json.RawMessage `json:"resource"`
}

func (c *console) resources(w http.ResponseWriter, r *http.Request) {
	e, ok := c.envelope(w, r)
	if !ok {
		return
	}
	rs, err := c.st.EnvelopeResources(r.Context(), e.ID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !c.audit(w, r, "message.read_resources", e.ID) {
		return
	}
	out := make([]resourceView, 0, len(rs))
	for _, x := range rs {
		body := json.RawMessage(x.Body)
		if !json.Valid(body) {
			body = json.RawMessage("null")
		}
		out = append(out, resourceView{ID: x.ID, Type: x.Type, Version: x.Version, Current: x.Current,
			RecordedAt: x.RecordedAt, Resource: body})
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": e.ID, "status": e.Status,
		"mapping_version": e.MappingVersion, "resources": out})
}

type routedView struct {
	store.RoutedEvent
	State string `json:"state"`
}

func (c *console) routing(w http.ResponseWriter, r *http.Request) {
	e, ok := c.envelope(w, r)
	if !ok {
		return
	}
	evs, err := c.st.EnvelopeOutbox(r.Context(), e.ID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	out := make([]routedView, 0, len(evs))
	for _, ev := range evs {
		out = append(out, routedView{RoutedEvent: ev, State: ev.State()})
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": e.ID, "events": out})
}

func (c *console) patient(w http.ResponseWriter, r *http.Request) {
	e, ok := c.envelope(w, r)
	if !ok {
		return
	}
	if e.PatientID == "" {
		writeJSON(w, http.StatusOK, map[string]any{"message_id": e.ID, "patient_id": "", "identifiers": []store.Identifier{}})
		return
	}
	ids, err := c.st.PatientIdentifiers(r.Context(), e.PatientID)
	if err != nil {
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	if !c.audit(w, r, "patient.identifiers", e.PatientID) {
		return
	}
	if ids == nil {
		ids = []store.Identifier{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"message_id": e.ID, "patient_id": e.PatientID, "identifiers": ids})
}

// DryRunRequest is the mapping playground's request.
type DryRunRequest struct {
	Sender  string `json:"sender"`
	Message string `json:"message"`
}

// DryRunResult is what the playground shows: one Bundle per message mapped,
// or the located problems.
type DryRunResult struct {
	MappingVersion string            `json:"mapping_version"`
	Sender         string            `json:"sender"`
	OK             bool              `json:"ok"`
	Bundles        []json.RawMessage `json:"bundles"`
	// Problems stop a message from being mapped; Warnings name values left
	// out and codes no table knew (also in each Bundle's OperationOutcome).
	Problems []Problem `json:"problems"`
	Warnings []Problem `json:"warnings"`
}

func (c *console) dryRun(w http.ResponseWriter, r *http.Request) {
	if c.o.Mappings == nil || c.o.Mappings() == nil {
		writeError(w, http.StatusServiceUnavailable, "mapping dry-run is not available on this gateway")
		return
	}
	var req DryRunRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxDryRunBytes))
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "body: expected JSON {\"sender\": ..., \"message\": ...}")
		return
	}
	if strings.TrimSpace(req.Message) == "" {
		writeError(w, http.StatusBadRequest, "message: is empty")
		return
	}
	// The pasted message is PHI held only for this request: its use is
	// audited, its content is neither stored nor logged.
	if !c.audit(w, r, "mapping.dry_run", req.Sender) {
		return
	}
	writeJSON(w, http.StatusOK, DryRun(c.o.Mappings(), req.Sender, []byte(req.Message)))
}

// DryRun maps msg (one message, several, or a batch) with set as if sender
// had sent it. Line ends typed or pasted in a browser (LF, CRLF) are
// accepted.
func DryRun(set *mapping.Set, sender string, msg []byte) DryRunResult {
	res := DryRunResult{MappingVersion: set.Version(), Sender: sender, Bundles: []json.RawMessage{}, Problems: []Problem{},
		Warnings: []Problem{}}
	var out bytes.Buffer
	err := mapping.DryRun(&out, set, sender, msg)
	dec := json.NewDecoder(&out)
	for {
		var b json.RawMessage
		if derr := dec.Decode(&b); derr != nil {
			if !errors.Is(derr, io.EOF) {
				res.Problems = append(res.Problems, Problem{Message: "dry-run output: " + derr.Error()})
			}
			break
		}
		res.Bundles = append(res.Bundles, b)
		res.Warnings = append(res.Warnings, outcomeIssues(b)...)
	}
	if err != nil {
		res.Problems = append(res.Problems, problemsOf(err)...)
	}
	res.OK = err == nil && len(res.Problems) == 0
	return res
}

// outcomeIssues reads the issues of the OperationOutcome a dry-run Bundle
// carries (values left out, unmapped codes).
func outcomeIssues(bundle json.RawMessage) []Problem {
	var b struct {
		Entry []struct {
			Resource struct {
				ResourceType string `json:"resourceType"`
				Issue        []struct {
					Severity    string `json:"severity"`
					Diagnostics string `json:"diagnostics"`
				} `json:"issue"`
			} `json:"resource"`
		} `json:"entry"`
	}
	if json.Unmarshal(bundle, &b) != nil {
		return nil
	}
	var out []Problem
	for _, e := range b.Entry {
		if e.Resource.ResourceType != "OperationOutcome" {
			continue
		}
		for _, is := range e.Resource.Issue {
			out = append(out, Problem{Message: is.Severity + ": " + is.Diagnostics})
		}
	}
	return out
}

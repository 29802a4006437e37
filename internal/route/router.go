// Package route decides which subscribers receive each event, queues the
// events in the outbox with the record changes, and relays them to Kafka.
package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
)

// Event types.
const (
	EventAdmit        = "admit"
	EventDischarge    = "discharge"
	EventTransfer     = "transfer"
	EventRegister     = "register"
	EventUpdate       = "update"
	EventMerge        = "merge"
	EventResult       = "result"
	EventMedication   = "medication"
	EventImmunisation = "immunisation"
	EventDocument     = "document"
	EventOther        = "other"
)

// Event is one processed envelope's outcome, ready to route.
type Event struct {
	Type       string
	Sender     string
	EnvelopeID string
	// ID tells apart several events from one envelope (a document that is
	// also a medication update, an identity change): it names the event's
	// Bundle and MessageHeader. Empty means EnvelopeID.
	ID          string
	ControlID   string
	MessageType string
	PatientID   string   // enterprise patient id: the Kafka key
	LocalIDs    []string // the patient's identifiers as "system|value"
	Resources   []fhir.Resource
	// Encoded, when set, holds each of Resources as json.Marshal (or
	// fhir.Marshal, the same bytes) wrote it (the caller stored them so):
	// the event Bundle splices these instead of encoding the resources
	// again.
	Encoded [][]byte
	At      time.Time
	// Facility is the sending facility (MSH-4); when empty the router reads
	// it from Raw.
	Facility string
	// Raw is the source message (HL7 v2) or document, for subscribers that
	// receive the original format.
	Raw []byte
}

// Router matches events against the current subscriptions.
type Router struct {
	subs      atomic.Pointer[[]compiled]
	unmatched prometheus.Counter
	matched   *prometheus.CounterVec
	fallback  *prometheus.CounterVec
}

// compiled is a subscription with its lists turned into sets.
type compiled struct {
	Subscription
	events, senders, facilities, types, codes, patients, practitioners, roles map[string]bool
}

func setOf(v []string) map[string]bool {
	if len(v) == 0 {
		return nil
	}
	m := make(map[string]bool, len(v))
	for _, s := range v {
		m[strings.TrimSpace(s)] = true
	}
	return m
}

func compile(s Subscription) compiled {
	c := compiled{Subscription: s, events: setOf(s.Events), senders: setOf(s.Senders), facilities: setOf(s.Facilities),
		types: setOf(s.ResourceTypes), codes: setOf(s.Codes), patients: setOf(s.Patients)}
	if s.Format == "" {
		c.Format = FormatFHIR
	}
	if c.EnterpriseAuthority == "" {
		c.EnterpriseAuthority = "HIEGW"
	}
	if a := s.Attribution; a != nil {
		c.practitioners = setOf(a.Practitioners)
		roles := a.Roles
		if len(roles) == 0 {
			roles = []string{RolePCP, RoleAttending}
		}
		c.roles = setOf(roles)
	}
	return c
}

// NewRouter makes a router over subs.
func NewRouter(subs []Subscription, reg prometheus.Registerer) *Router {
	r := &Router{
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "hiegw_route_unmatched_total",
			Help: "Events that matched no subscription (kept in the store, published nowhere)."}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_matched_total",
			Help: "Events queued for a subscriber."}, []string{"subscriber"}),
		fallback: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_format_fallback_total",
			Help: "Events an hl7v2 subscriber received as FHIR JSON because the source was not HL7 v2."}, []string{"subscriber"}),
	}
	if reg != nil {
		reg.MustRegister(r.unmatched, r.matched, r.fallback)
	}
	r.Swap(subs)
	return r
}

// Swap replaces the subscriptions atomically (hot reload).
func (r *Router) Swap(subs []Subscription) {
	cs := make([]compiled, len(subs))
	for i, s := range subs {
		cs[i] = compile(s)
	}
	r.subs.Store(&cs)
}

// Subscriptions returns the current set.
func (r *Router) Subscriptions() []Subscription {
	cs := *r.subs.Load()
	out := make([]Subscription, len(cs))
	for i, c := range cs {
		out[i] = c.Subscription
	}
	return out
}

// Route returns one outbox entry per matching subscription. An event that
// matches none returns nothing and is counted.
func (r *Router) Route(ev Event) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	var fhirPayload []byte
	var hl7Payloads map[string][]byte // by enterprise authority
	facility, known := ev.Facility, ev.Facility != ""
	for _, s := range *r.subs.Load() {
		if s.facilities != nil && !known {
			facility, known = facilityOf(ev), true
		}
		if !s.matches(ev, facility) {
			continue
		}
		var payload []byte
		contentType, format := "application/fhir+json", FormatFHIR
		if s.Format == FormatHL7v2 {
			p, ok := hl7Payloads[s.EnterpriseAuthority]
			if !ok {
				p, _ = AddEnterpriseID(ev.Raw, ev.PatientID, s.EnterpriseAuthority)
				if hl7Payloads == nil {
					hl7Payloads = map[string][]byte{}
				}
				hl7Payloads[s.EnterpriseAuthority] = p
			}
			if p != nil {
				payload, contentType, format = p, "x-application/hl7-v2+er7", FormatHL7v2
			} else {
				// The source is a document or was not kept: the subscriber
				// gets the FHIR form rather than nothing, and it is counted.
				r.fallback.WithLabelValues(s.Name).Inc()
			}
		}
		if payload == nil {
			if fhirPayload == nil {
				var err error
				if fhirPayload, err = EventBundle(ev); err != nil {
					return nil, fmt.Errorf("route: %w", err)
				}
			}
			payload = fhirPayload
		}
		r.matched.WithLabelValues(s.Name).Inc()
		out = append(out, store.OutboxEntry{
			Subscriber: s.Name, Topic: s.Topic, Key: ev.PatientID, EventType: ev.Type, EnvelopeID: ev.EnvelopeID,
			Payload: payload,
			Headers: map[string]string{
				"hiegw-event":        ev.Type,
				"hiegw-sender":       ev.Sender,
				"hiegw-message-id":   ev.ControlID,
				"hiegw-message-type": ev.MessageType,
				"hiegw-envelope":     ev.EnvelopeID,
				"hiegw-subscriber":   s.Name,
				"hiegw-format":       format,
				"content-type":       contentType,
			},
		})
	}
	if len(out) == 0 {
		r.unmatched.Inc()
	}
	return out, nil
}

// facilityOf reads MSH-4 from an HL7 v2 source, else falls back to the
// sender's name.
func facilityOf(ev Event) string {
	if bytes.HasPrefix(bytes.TrimLeft(ev.Raw, "\ufeff\r\n\t "), []byte("MSH")) {
		if h, _, _ := hl7.ParseHeader(ev.Raw); h.SendingFacility.NamespaceID != "" || h.SendingFacility.UniversalID != "" {
			if h.SendingFacility.NamespaceID != "" {
				return h.SendingFacility.NamespaceID
			}
			return h.SendingFacility.UniversalID
		}
	}
	return ev.Sender
}

func (s compiled) matches(ev Event, facility string) bool {
	if s.events != nil && !s.events[ev.Type] {
		return false
	}
	if s.senders != nil && !s.senders[ev.Sender] {
		return false
	}
	if s.facilities != nil && !s.facilities[facility] {
		return false
	}
	if s.patients != nil || s.practitioners != nil {
		if !s.inPanel(ev) {
			return false
		}
	}
	if s.types != nil || s.codes != nil {
		found := false
		for _, res := range ev.Resources {
			if s.types != nil && !s.types[res.Type()] {
				continue
			}
			if s.codes != nil && !hasCode(res, s.codes) {
				continue
			}
			found = true
			break
		}
		if !found {
			return false
		}
	}
	return true
}

func (s compiled) inPanel(ev Event) bool {
	if s.patients != nil {
		if s.patients[ev.PatientID] {
			return true
		}
		for _, id := range ev.LocalIDs {
			if s.patients[id] {
				return true
			}
		}
	}
	if s.practitioners == nil {
		return false
	}
	for _, res := range ev.Resources {
		switch res.Type() {
		case "Patient":
			if s.roles[RolePCP] && s.anyPractitioner(res["generalPractitioner"]) {
				return true
			}
		case "Encounter":
			if !s.roles[RoleAttending] && !s.roles[RoleAny] {
				continue
			}
			parts, _ := res["participant"].([]any)
			for _, p := range parts {
				pm, _ := p.(map[string]any)
				if !s.roles[RoleAny] && !hasTypeCode(pm["type"], "ATND") {
					continue
				}
				if s.anyPractitioner(pm["individual"]) {
					return true
				}
			}
		}
	}
	return false
}

// anyPractitioner reports whether a reference, or a list of references,
// names one of the panel's practitioners by identifier.
func (s compiled) anyPractitioner(v any) bool {
	switch t := v.(type) {
	case []any:
		for _, it := range t {
			if s.anyPractitioner(it) {
				return true
			}
		}
	case map[string]any:
		var ids []any
		switch id := t["identifier"].(type) {
		case map[string]any:
			ids = []any{id}
		case []any:
			ids = id
		}
		for _, it := range ids {
			m, _ := it.(map[string]any)
			val, _ := m["value"].(string)
			sys, _ := m["system"].(string)
			if val != "" && (s.practitioners[val] || s.practitioners[sys+"|"+val]) {
				return true
			}
		}
	}
	return false
}

func hasTypeCode(v any, code string) bool {
	list, _ := v.([]any)
	for _, cc := range list {
		m, _ := cc.(map[string]any)
		codings, _ := m["coding"].([]any)
		for _, c := range codings {
			cm, _ := c.(map[string]any)
			if cm["code"] == code {
				return true
			}
		}
	}
	return false
}

func hasCode(r fhir.Resource, codes map[string]bool) bool {
	for _, field := range []string{"code", "vaccineCode", "medicationCodeableConcept"} {
		cc, _ := r[field].(map[string]any)
		codings, _ := cc["coding"].([]any)
		for _, c := range codings {
			m, _ := c.(map[string]any)
			sys, _ := m["system"].(string)
			code, _ := m["code"].(string)
			if code == "" {
				continue
			}
			if codes[code] || codes[sys+"|"+code] {
				return true
			}
		}
	}
	return false
}

// EventBundle encodes an event as a FHIR R4 message Bundle: a MessageHeader
// naming the event, sender and focus, then the resources.
func EventBundle(ev Event) ([]byte, error) {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	id := ev.ID
	if id == "" {
		id = ev.EnvelopeID
	}
	hdr := fhir.New("MessageHeader", fhir.StableID(ev.Sender, "MessageHeader", id))
	hdr["eventCoding"] = map[string]any{"system": "urn:hiegw:event", "code": ev.Type}
	hdr["source"] = map[string]any{"name": ev.Sender, "endpoint": "urn:hiegw:sender:" + ev.Sender}
	var focus []any
	for _, r := range ev.Resources {
		focus = append(focus, map[string]any{"reference": r.Ref()})
	}
	if len(focus) > 0 {
		hdr["focus"] = focus
	}
	if len(ev.Encoded) != len(ev.Resources) {
		all := append([]fhir.Resource{hdr}, ev.Resources...)
		b := fhir.NewBundle("message", all)
		b.ID = fhir.StableID(ev.Sender, "Bundle", id)
		b.Timestamp = at.UTC().Format(time.RFC3339)
		return json.Marshal(b)
	}
	// The same Bundle, written with the resources' JSON spliced in (the
	// fields in fhir.Bundle's order; the strings quoted by encoding/json).
	h, err := fhir.Marshal(hdr)
	if err != nil {
		return nil, err
	}
	n := 160 + len(h)
	for _, e := range ev.Encoded {
		n += len(e) + 64
	}
	out := make([]byte, 0, n)
	out = append(out, `{"resourceType":"Bundle","id":`...)
	out = fhir.AppendJSONString(out, fhir.StableID(ev.Sender, "Bundle", id))
	out = append(out, `,"type":"message","timestamp":`...)
	out = fhir.AppendJSONString(out, at.UTC().Format(time.RFC3339))
	out = append(out, `,"entry":[`...)
	out = appendEntry(out, hdr.ID(), h)
	for i, r := range ev.Resources {
		out = append(out, ',')
		out = appendEntry(out, r.ID(), ev.Encoded[i])
	}
	return append(out, "]}"...), nil
}

// appendEntry writes one Bundle.entry whose resource is already JSON.
func appendEntry(out []byte, id string, resource []byte) []byte {
	out = append(out, `{"fullUrl":`...)
	out = fhir.AppendJSONString(out, "urn:uuid:"+id)
	out = append(out, `,"resource":`...)
	out = append(out, resource...)
	return append(out, '}')
}

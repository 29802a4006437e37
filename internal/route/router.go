// Package route decides which subscribers receive each event, queues the
// events in the outbox with the record changes, and relays them to Kafka.
package route

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
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
	Type        string
	Sender      string
	EnvelopeID  string
	ControlID   string
	MessageType string
	PatientID   string   // enterprise patient id: the Kafka key
	LocalIDs    []string // the patient's identifiers as "system|value"
	Resources   []fhir.Resource
	At          time.Time
	// Raw is the source message (HL7 v2) or document, for subscribers that
	// receive the original format.
	Raw []byte
}

// Subscription says who receives what, and where.
type Subscription struct {
	Name          string   `yaml:"name" json:"name"`
	Kind          string   `yaml:"kind" json:"kind"` // provider, lab, pharmacy, other
	Topic         string   `yaml:"topic" json:"topic"`
	Format        string   `yaml:"format" json:"format"` // fhir-json (default)
	Events        []string `yaml:"events" json:"events"`
	Senders       []string `yaml:"senders" json:"senders"`
	ResourceTypes []string `yaml:"resource_types" json:"resource_types"`
	// Codes match any coding in a resource's code (Observation.code, ...),
	// as "system|code" or a bare code.
	Codes []string `yaml:"codes" json:"codes"`
	// Patients is a panel: enterprise ids or local identifiers "system|value".
	Patients []string `yaml:"patients" json:"patients"`
}

// DefaultSubscription receives every event on hie.events.
var DefaultSubscription = Subscription{Name: "default", Kind: "other", Topic: "hie.events", Format: "fhir-json"}

type subscriptionsFile struct {
	Subscriptions []Subscription `yaml:"subscriptions"`
}

// LoadSubscriptions reads a subscriptions file; unknown keys are errors.
func LoadSubscriptions(path string) ([]Subscription, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("subscriptions: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f subscriptionsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("subscriptions %s: %w", path, err)
	}
	if err := Validate(f.Subscriptions); err != nil {
		return nil, fmt.Errorf("subscriptions %s: %w", path, err)
	}
	return f.Subscriptions, nil
}

var knownEvents = []string{EventAdmit, EventDischarge, EventTransfer, EventRegister, EventUpdate, EventMerge,
	EventResult, EventMedication, EventImmunisation, EventDocument, EventOther}

// Validate checks subscriptions.
func Validate(subs []Subscription) error {
	seen := map[string]bool{}
	for i, s := range subs {
		where := fmt.Sprintf("subscriptions[%d]", i)
		if s.Name == "" {
			return fmt.Errorf("%s.name is required", where)
		}
		if seen[s.Name] {
			return fmt.Errorf("%s.name %q is used twice", where, s.Name)
		}
		seen[s.Name] = true
		if s.Topic == "" {
			return fmt.Errorf("%s (%s).topic is required", where, s.Name)
		}
		if s.Format != "" && s.Format != "fhir-json" {
			return fmt.Errorf("%s (%s).format %q is not supported (fhir-json)", where, s.Name, s.Format)
		}
		for _, e := range s.Events {
			if !slices.Contains(knownEvents, e) {
				return fmt.Errorf("%s (%s).events: unknown event %q (known: %s)", where, s.Name, e, strings.Join(knownEvents, ", "))
			}
		}
	}
	return nil
}

// Router matches events against the current subscriptions.
type Router struct {
	subs      atomic.Pointer[[]Subscription]
	unmatched prometheus.Counter
	matched   *prometheus.CounterVec
}

// NewRouter makes a router over subs.
func NewRouter(subs []Subscription, reg prometheus.Registerer) *Router {
	r := &Router{
		unmatched: prometheus.NewCounter(prometheus.CounterOpts{Name: "hiegw_route_unmatched_total",
			Help: "Events that matched no subscription (kept in the store, published nowhere)."}),
		matched: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "hiegw_route_matched_total",
			Help: "Events queued for a subscriber."}, []string{"subscriber"}),
	}
	if reg != nil {
		reg.MustRegister(r.unmatched, r.matched)
	}
	r.Swap(subs)
	return r
}

// Swap replaces the subscriptions atomically (hot reload).
func (r *Router) Swap(subs []Subscription) { r.subs.Store(&subs) }

// Subscriptions returns the current set.
func (r *Router) Subscriptions() []Subscription { return *r.subs.Load() }

// Route returns one outbox entry per matching subscription. An event that
// matches none returns nothing and is counted.
func (r *Router) Route(ev Event) ([]store.OutboxEntry, error) {
	var out []store.OutboxEntry
	var payload []byte
	for _, s := range *r.subs.Load() {
		if !s.matches(ev) {
			continue
		}
		if payload == nil {
			var err error
			if payload, err = EventBundle(ev); err != nil {
				return nil, err
			}
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
				"content-type":       "application/fhir+json",
			},
		})
	}
	if len(out) == 0 {
		r.unmatched.Inc()
	}
	return out, nil
}

func (s Subscription) matches(ev Event) bool {
	if len(s.Events) > 0 && !slices.Contains(s.Events, ev.Type) {
		return false
	}
	if len(s.Senders) > 0 && !slices.Contains(s.Senders, ev.Sender) {
		return false
	}
	if len(s.Patients) > 0 {
		in := slices.Contains(s.Patients, ev.PatientID)
		for _, id := range ev.LocalIDs {
			in = in || slices.Contains(s.Patients, id)
		}
		if !in {
			return false
		}
	}
	if len(s.ResourceTypes) > 0 || len(s.Codes) > 0 {
		found := false
		for _, res := range ev.Resources {
			if len(s.ResourceTypes) > 0 && !slices.Contains(s.ResourceTypes, res.Type()) {
				continue
			}
			if len(s.Codes) > 0 && !hasCode(res, s.Codes) {
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

func hasCode(r fhir.Resource, codes []string) bool {
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
			if slices.Contains(codes, code) || slices.Contains(codes, sys+"|"+code) {
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
	hdr := fhir.New("MessageHeader", fhir.StableID(ev.Sender, "MessageHeader", ev.EnvelopeID))
	hdr["eventCoding"] = map[string]any{"system": "urn:hiegw:event", "code": ev.Type}
	hdr["source"] = map[string]any{"name": ev.Sender, "endpoint": "urn:hiegw:sender:" + ev.Sender}
	var focus []any
	for _, r := range ev.Resources {
		focus = append(focus, map[string]any{"reference": r.Ref()})
	}
	if len(focus) > 0 {
		hdr["focus"] = focus
	}
	all := append([]fhir.Resource{hdr}, ev.Resources...)
	b := fhir.NewBundle("message", all)
	b.ID = fhir.StableID(ev.Sender, "Bundle", ev.EnvelopeID)
	b.Timestamp = at.UTC().Format(time.RFC3339)
	return json.Marshal(b)
}

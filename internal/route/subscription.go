package route

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/hiegw/hiegw/internal/defect"
)

// Formats a subscriber can receive.
const (
	FormatFHIR  = "fhir-json" // a FHIR R4 message Bundle (the default)
	FormatHL7v2 = "hl7v2"     // the source HL7 v2 message with the enterprise id added to PID-3
)

// Attribution roles: where a practitioner is named in the event's FHIR.
const (
	RolePCP       = "pcp"       // Patient.generalPractitioner (PD1-4)
	RoleAttending = "attending" // Encounter.participant of type ATND (PV1-7)
	RoleAny       = "any"       // any Encounter.participant
)

// Subscription says who receives what, and where. Empty filters match
// everything; all non-empty filters must match.
type Subscription struct {
	Name   string `yaml:"name" json:"name"`
	Kind   string `yaml:"kind" json:"kind"` // provider, lab, pharmacy, other
	Topic  string `yaml:"topic" json:"topic"`
	Format string `yaml:"format" json:"format"` // fhir-json (default) or hl7v2
	// EnterpriseAuthority is the assigning authority written with the
	// enterprise patient id in PID-3 (hl7v2 only; default HIEGW).
	EnterpriseAuthority string   `yaml:"enterprise_authority" json:"enterprise_authority"`
	Events              []string `yaml:"events" json:"events"`
	Senders             []string `yaml:"senders" json:"senders"`
	// Facilities match the sending facility (MSH-4 namespace or universal
	// id) of HL7 v2 events, and the sender name of other events.
	Facilities    []string `yaml:"facilities" json:"facilities"`
	ResourceTypes []string `yaml:"resource_types" json:"resource_types"`
	// Codes match any coding in a resource's code (Observation.code, ...),
	// as "system|code" or a bare code. With ResourceTypes, one resource must
	// satisfy both.
	Codes []string `yaml:"codes" json:"codes"`
	// Patients is a panel: enterprise ids or local identifiers "system|value".
	Patients []string `yaml:"patients" json:"patients"`
	// Attribution admits a patient attributed, in the event itself, to one
	// of the named practitioners. With Patients, either one admits.
	Attribution *Attribution `yaml:"attribution" json:"attribution,omitempty"`
}

// Attribution is a patient-panel rule: the patient belongs to the panel
// when the event names one of Practitioners in one of Roles.
type Attribution struct {
	// Practitioners are identifiers, "system|value" or a bare value.
	Practitioners []string `yaml:"practitioners" json:"practitioners"`
	// Roles default to pcp and attending.
	Roles []string `yaml:"roles" json:"roles"`
}

// DefaultSubscription receives every event on hie.events.
var DefaultSubscription = Subscription{Name: "default", Kind: "other", Topic: "hie.events", Format: FormatFHIR}

type subscriptionsFile struct {
	Subscriptions []Subscription `yaml:"subscriptions"`
}

var knownEvents = []string{EventAdmit, EventDischarge, EventTransfer, EventRegister, EventUpdate, EventMerge,
	EventResult, EventMedication, EventImmunisation, EventDocument, EventOther}

var knownKinds = []string{"provider", "lab", "pharmacy", "other"}

var knownRoles = []string{RolePCP, RoleAttending, RoleAny}

// LoadSubscriptions reads a subscriptions file. Unknown keys are errors,
// and every problem found is reported at once with the file and line.
func LoadSubscriptions(path string) ([]Subscription, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load subscriptions: %w", err)
	}
	return ParseSubscriptions(path, data)
}

// ParseSubscriptions reads a subscriptions file's content; name is used in
// error messages.
func ParseSubscriptions(name string, data []byte) (_ []Subscription, err error) {
	// The gateway parses a changed file while it runs (watcher, SIGHUP):
	// a defect here refuses the file, the subscriptions serving stay.
	defer defect.Catch("internal error in hiegw while reading subscriptions "+name+", not in the file; the file is refused", &err)
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	var f subscriptionsFile
	if err := dec.Decode(&f); err != nil {
		// yaml.v3 errors say "line N: ..." already.
		return nil, fmt.Errorf("subscriptions %s: %w", name, err)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("subscriptions %s: %w", name, err)
	}
	lines := itemLines(&doc)
	var errs []error
	for i, s := range f.Subscriptions {
		line := 0
		if i < len(lines) {
			line = lines[i]
		}
		for _, e := range validateOne(f.Subscriptions[:i], i, s) {
			errs = append(errs, fmt.Errorf("%s:%d: %w", name, line, e))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("subscriptions:\n%w", err)
	}
	return f.Subscriptions, nil
}

// itemLines returns the line of each item of the top-level subscriptions
// list.
func itemLines(doc *yaml.Node) []int {
	if doc.Kind != yaml.DocumentNode || len(doc.Content) == 0 {
		return nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value != "subscriptions" || m.Content[i+1].Kind != yaml.SequenceNode {
			continue
		}
		var out []int
		for _, it := range m.Content[i+1].Content {
			out = append(out, it.Line)
		}
		return out
	}
	return nil
}

// Validate checks subscriptions and reports every problem at once.
func Validate(subs []Subscription) error {
	var errs []error
	for i, s := range subs {
		errs = append(errs, validateOne(subs[:i], i, s)...)
	}
	return errors.Join(errs...)
}

func validateOne(before []Subscription, i int, s Subscription) []error {
	where := fmt.Sprintf("subscriptions[%d]", i)
	if s.Name != "" {
		where += " (" + s.Name + ")"
	}
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf(where+"."+format, args...))
	}
	if s.Name == "" {
		bad("name is required")
	}
	for _, o := range before {
		if s.Name != "" && o.Name == s.Name {
			bad("name is used twice")
		}
	}
	if s.Topic == "" {
		bad("topic is required")
	} else if !validTopic(s.Topic) {
		bad("topic may hold only letters, digits, '.', '_' and '-' (at most 249)")
	}
	if s.Kind != "" && !slices.Contains(knownKinds, s.Kind) {
		bad("kind %q is not known (known: %s)", s.Kind, strings.Join(knownKinds, ", "))
	}
	if s.Format != "" && s.Format != FormatFHIR && s.Format != FormatHL7v2 {
		bad("format %q is not supported (%s, %s)", s.Format, FormatFHIR, FormatHL7v2)
	}
	if s.EnterpriseAuthority != "" && strings.ContainsAny(s.EnterpriseAuthority, "|^~\\&\r\n") {
		bad("enterprise_authority must not hold HL7 delimiters")
	}
	for _, e := range s.Events {
		if !slices.Contains(knownEvents, e) {
			bad("events: unknown event %q (known: %s)", e, strings.Join(knownEvents, ", "))
		}
	}
	for _, list := range []struct {
		name string
		v    []string
	}{{"senders", s.Senders}, {"facilities", s.Facilities}, {"resource_types", s.ResourceTypes}, {"codes", s.Codes}, {"patients", s.Patients}} {
		for j, v := range list.v {
			if strings.TrimSpace(v) == "" {
				bad("%s[%d] is empty", list.name, j)
			}
		}
	}
	if a := s.Attribution; a != nil {
		if len(a.Practitioners) == 0 {
			bad("attribution.practitioners is required")
		}
		for _, r := range a.Roles {
			if !slices.Contains(knownRoles, r) {
				bad("attribution.roles: unknown role %q (known: %s)", r, strings.Join(knownRoles, ", "))
			}
		}
	}
	return errs
}

func validTopic(t string) bool {
	if len(t) > 249 || t == "." || t == ".." {
		return false
	}
	for _, c := range t {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

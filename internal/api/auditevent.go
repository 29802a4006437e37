package api

import (
	"strconv"
	"strings"
	"time"

	"github.com/hiegw/hiegw/internal/fhir"
	"github.com/hiegw/hiegw/internal/store"
)

// Code systems used in exported AuditEvents.
const (
	dicomSystem     = "http://dicom.nema.org/resources/ontology/DCM"
	eventTypeSystem = "http://terminology.hl7.org/CodeSystem/audit-event-type"
	sourceSystem    = "http://terminology.hl7.org/CodeSystem/security-source-type"
	actionSystem    = "urn:hiegw:audit-action"
	envelopeSystem  = "urn:hiegw:envelope"
)

// AuditEvent turns an audit log entry into a FHIR R4 AuditEvent. The entry
// holds no message body, so neither does the event.
func AuditEvent(e store.AuditEntry) fhir.Resource {
	r := fhir.New("AuditEvent", "audit-"+strconv.FormatInt(e.Seq, 10))
	r["type"] = eventType(e.Action)
	r["subtype"] = []any{map[string]any{"system": actionSystem, "code": e.Action}}
	r["action"] = actionCode(e.Action)
	r["recorded"] = e.At.UTC().Format(time.RFC3339Nano)
	r["outcome"] = outcomeCode(e.Outcome)
	if e.Outcome != "" {
		r["outcomeDesc"] = e.Outcome
	}
	agent := map[string]any{"who": map[string]any{"display": e.Actor}, "requestor": true}
	if e.Actor == "system" {
		agent["requestor"] = false
	}
	if e.Peer != "" {
		agent["network"] = map[string]any{"address": e.Peer, "type": "2"} // 2: IP address
	}
	r["agent"] = []any{agent}
	r["source"] = map[string]any{"observer": map[string]any{"display": "hiegw"},
		"type": []any{map[string]any{"system": sourceSystem, "code": "4", "display": "Application Server"}}}
	if ent := entity(e); ent != nil {
		r["entity"] = []any{ent}
	}
	return r
}

func coding(system, code, display string) map[string]any {
	return map[string]any{"system": system, "code": code, "display": display}
}

func eventType(action string) map[string]any {
	switch {
	case strings.HasPrefix(action, "api.auth"):
		return coding(dicomSystem, "110114", "User Authentication")
	case strings.HasPrefix(action, "mllp."):
		return coding(dicomSystem, "110113", "Security Alert")
	case strings.Contains(action, "reload"):
		return coding(dicomSystem, "110100", "Application Activity")
	case strings.HasPrefix(action, "patient."), strings.HasPrefix(action, "message."), strings.HasPrefix(action, "mpi."):
		return coding(dicomSystem, "110110", "Patient Record")
	}
	return coding(eventTypeSystem, "rest", "RESTful Operation")
}

// actionCode is the AuditEvent action: R read, U update, E execute.
func actionCode(action string) string {
	for _, w := range []string{"read", "lookup", "everything", "export", "search"} {
		if strings.Contains(action, w) {
			return "R"
		}
	}
	for _, w := range []string{"link", "merge", "review", "reprocess", "replay"} {
		if strings.Contains(action, w) {
			return "U"
		}
	}
	return "E"
}

// outcomeCode maps the log's outcome words to AuditEvent outcome codes: 0
// success, 4 minor failure (a refusal), 8 serious failure.
func outcomeCode(outcome string) string {
	o := strings.ToLower(outcome)
	switch {
	case o == "" || o == "ok" || o == "not found" || strings.HasPrefix(o, "ok"):
		return "0"
	case strings.HasPrefix(o, "denied"), strings.HasPrefix(o, "refused"), strings.HasPrefix(o, "rejected"):
		return "4"
	}
	return "8"
}

func entity(e store.AuditEntry) map[string]any {
	if e.Target == "" && e.Detail == "" {
		return nil
	}
	ent := map[string]any{}
	switch {
	case strings.HasPrefix(e.Action, "patient.") && strings.Contains(e.Target, "|"):
		sys, val, _ := strings.Cut(e.Target, "|")
		ent["what"] = map[string]any{"identifier": map[string]any{"system": sys, "value": val}}
	case strings.HasPrefix(e.Action, "patient.") && e.Target != "":
		ent["what"] = map[string]any{"reference": "Patient/" + e.Target}
	case strings.HasPrefix(e.Action, "message.") && e.Target != "" && !strings.Contains(e.Target, " "):
		ent["what"] = map[string]any{"identifier": map[string]any{"system": envelopeSystem, "value": e.Target}}
	case e.Target != "":
		ent["what"] = map[string]any{"display": e.Target}
	}
	if e.Detail != "" {
		ent["detail"] = []any{map[string]any{"type": "detail", "valueString": e.Detail}}
	}
	return ent
}

// AuditBundle wraps entries as a FHIR R4 Bundle (type collection) of
// AuditEvents, newest first.
func AuditBundle(es []store.AuditEntry) *fhir.Bundle {
	b := &fhir.Bundle{ResourceType: "Bundle", Type: "collection", Timestamp: time.Now().UTC().Format(time.RFC3339)}
	for _, e := range es {
		b.Entry = append(b.Entry, fhir.BundleEntry{Resource: AuditEvent(e)})
	}
	return b
}

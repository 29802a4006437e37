package gateway

import (
	"errors"
	"fmt"

	"github.com/hiegw/hiegw/internal/ccda"
	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/mapping"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
)

// normalizer adapts the mapping set (HL7 v2) and the C-CDA reader to the
// pipeline.
type normalizer struct {
	maps *mapping.Holder
}

var _ pipeline.Normalizer = normalizer{}

func (n normalizer) Version() string { return n.maps.Current().Version() }

func (n normalizer) NormalizeHL7(sender string, m *hl7.Message) (pipeline.Normalized, error) {
	res, err := n.maps.Current().MapHL7(sender, m)
	if err != nil {
		return pipeline.Normalized{}, fmt.Errorf("map: %w", err)
	}
	ev := res.Event
	if ev == "" {
		ev = route.EventOther
	}
	return pipeline.Normalized{Event: ev, Resources: res.Resources}, nil
}

func (n normalizer) NormalizeCCDA(sender string, data []byte) (pipeline.Normalized, error) {
	doc, err := ccda.Parse(data, ccda.DefaultLimits)
	if err != nil {
		return pipeline.Normalized{}, fmt.Errorf("read C-CDA: %w", err)
	}
	rs, _ := doc.ToFHIR(sender)
	// Put the Patient first, as the pipeline expects.
	for i, r := range rs {
		if r.Type() == "Patient" && i > 0 {
			rs[0], rs[i] = rs[i], rs[0]
			break
		}
	}
	return pipeline.Normalized{Event: route.EventDocument, Resources: rs}, nil
}

// mappingCheck runs the mapping at intake so that a message it cannot
// handle is answered AE naming the field and the rule.
type mappingCheck struct {
	maps *mapping.Holder
}

func (c mappingCheck) Check(sender string, m *hl7.Message) []hl7.ErrorDetail {
	_, err := c.maps.Current().MapHL7(sender, m)
	if err == nil {
		return nil
	}
	var details []hl7.ErrorDetail
	var me *mapping.MapError
	for _, e := range unwrapAll(err) {
		if errors.As(e, &me) {
			code := me.Code
			if code == "" {
				code = "207"
			}
			details = append(details, hl7.ErrorDetail{Location: me.Location, Code: code, Severity: "E", Message: me.Error()})
		}
	}
	if len(details) == 0 {
		details = append(details, hl7.ErrorDetail{Code: "207", Severity: "E", Message: err.Error()})
	}
	return details
}

// unwrapAll flattens errors joined with errors.Join.
func unwrapAll(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unwrapAll(e)...)
		}
		return out
	}
	return []error{err}
}

// checkFile validates an uploaded file before it is committed, so that the
// sender finds a refused file in failed/ with the reason.
func checkFile(kind string, data []byte) string {
	switch kind {
	case "ccda":
		if _, err := ccda.Parse(data, ccda.DefaultLimits); err != nil {
			return err.Error()
		}
	case "hl7v2", "hl7v2-batch":
		b, err := hl7.SplitBatch(data)
		if err != nil {
			return err.Error()
		}
		for i, raw := range b.Messages {
			if _, err := hl7.Parse(raw); err != nil {
				return fmt.Sprintf("message %d: %v", i+1, err)
			}
		}
	}
	return ""
}

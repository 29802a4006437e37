package intake

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/hiegw/hiegw/internal/hl7"
	"github.com/hiegw/hiegw/internal/store"
)

// ackMode tells how a message asked to be acknowledged.
func enhanced(h hl7.Header) bool { return h.AcceptAckType != "" }

// ackCode maps the outcome to AA/AE/AR in original mode and CA/CE/CR in
// enhanced mode.
func ackCode(h hl7.Header, outcome byte) hl7.AckCode {
	if enhanced(h) {
		return hl7.AckCode("C" + string(outcome))
	}
	return hl7.AckCode("A" + string(outcome))
}

// Outcomes: Accept, Error (content), Reject.
const (
	accept = 'A'
	errOut = 'E'
	reject = 'R'
)

func (in *Intake) acceptMessage(ctx context.Context, env *Envelope) (Receipt, error) {
	now := time.Now()
	sum := digest(env.Raw)
	h, d, herr := hl7.ParseHeader(env.Raw)
	e := &store.Envelope{
		ID: newID(), Channel: env.Channel, Sender: senderOf(env, h), Peer: env.Peer, ReceivedAt: env.ReceivedAt,
		Kind: KindHL7, MessageType: messageType(h), ControlID: h.ControlID, SHA256: sum, Status: StatusReceived,
		Raw: env.Raw,
	}
	if h.ControlID != "" {
		e.DedupKey = "msh10:" + h.ControlID
	} else {
		e.DedupKey = "sha256:" + sum
	}
	outcome, details := in.judge(env, h, herr)
	denied := false
	if herr == nil && !facilityAllowed(env.Facilities, h) {
		denied, outcome = true, reject
		details = []hl7.ErrorDetail{{Location: "MSH^1^4", Code: "207", Severity: "E",
			Message: "MSH-4 sending facility is not one this sender is registered to send as"}}
	}
	if outcome != accept {
		e.Status = StatusRejected
		e.Error = describe(details)
	}
	e.ACK = hl7.NewACK(h, d, ackCode(h, byte(outcome)), in.nextAckID(), now, details...)
	ins, err := in.commit(ctx, e)
	if err != nil {
		in.storeFailed(env, e.Sender, err)
		ack := hl7.NewACK(h, d, ackCode(h, reject), in.nextAckID(), now, hl7.ErrorDetail{
			Code: "207", Severity: "E", Message: "message not stored: the gateway's store is unavailable; send it again later"})
		return Receipt{Status: StatusRejected, Reason: "store unavailable", ACK: ack}, fmt.Errorf("store envelope: %w", err)
	}
	in.count(env.Channel, KindHL7, ins)
	ack := ins.ACK
	if !wantsAck(h, ins.Status == StatusReceived) {
		ack = nil // stored, but the sender asked not to be told
	}
	return Receipt{EnvelopeID: ins.ID, Duplicate: ins.Duplicate, Status: ins.Status, Reason: ins.Error, ACK: ack,
		Denied: denied}, nil
}

// wantsAck applies the sender's accept acknowledgement type (MSH-15, table
// 0155) in enhanced mode: AL always, NE never, ER only for a message that
// was not accepted, SU only for one that was. Original mode always answers.
func wantsAck(h hl7.Header, accepted bool) bool {
	switch h.AcceptAckType {
	case "NE":
		return false
	case "ER":
		return !accepted
	case "SU":
		return accepted
	}
	return true
}

// facilityAllowed tells whether the message's MSH-4 is one of allowed (nil
// allows any). Both the namespace id and the universal id are compared, case
// and surrounding spaces ignored.
func facilityAllowed(allowed []string, h hl7.Header) bool {
	if allowed == nil {
		return true
	}
	ns, uid := strings.TrimSpace(h.SendingFacility.NamespaceID), strings.TrimSpace(h.SendingFacility.UniversalID)
	for _, a := range allowed {
		a = strings.TrimSpace(a)
		if a != "" && (strings.EqualFold(a, ns) || strings.EqualFold(a, uid)) {
			return true
		}
	}
	return false
}

// judge decides how to answer: AR for an unreadable header or an unsupported
// message, AE for a body that does not parse or fails the checker.
func (in *Intake) judge(env *Envelope, h hl7.Header, herr error) (int, []hl7.ErrorDetail) {
	if herr != nil {
		return reject, []hl7.ErrorDetail{detailOf(herr, "MSH^1", "100")}
	}
	var missing []hl7.ErrorDetail
	if h.ControlID == "" {
		missing = append(missing, hl7.ErrorDetail{Location: "MSH^1^10", Code: "101", Severity: "E", Message: "MSH-10 message control id is required"})
	}
	if h.MessageCode == "" {
		missing = append(missing, hl7.ErrorDetail{Location: "MSH^1^9", Code: "101", Severity: "E", Message: "MSH-9 message type is required"})
	}
	if h.Version == "" {
		missing = append(missing, hl7.ErrorDetail{Location: "MSH^1^12", Code: "101", Severity: "E", Message: "MSH-12 version id is required"})
	}
	if len(missing) > 0 {
		return reject, missing
	}
	if in.opt.Supported != nil && !in.opt.Supported(h.MessageCode, h.TriggerEvent) {
		return reject, []hl7.ErrorDetail{{Location: "MSH^1^9", Code: "200", Severity: "E",
			Message: fmt.Sprintf("message type %s is not accepted by this gateway", messageType(h))}}
	}
	m, err := hl7.Parse(env.Raw)
	if err != nil {
		return errOut, []hl7.ErrorDetail{detailOf(err, "", "100")}
	}
	// Text that cannot be decoded (bytes invalid in the declared character
	// set, a malformed escape, a control character) is refused with its
	// location rather than stored as mojibake. Warnings (a single-byte set
	// whose bytes look like UTF-8) do not stop the message.
	if err := m.Validate(); err != nil && !hl7.OnlyWarnings(err) {
		var details []hl7.ErrorDetail
		for _, e := range unwrapJoined(err) {
			if _, warning := e.(*hl7.Warning); !warning {
				details = append(details, detailOf(e, "", "102"))
			}
		}
		return errOut, details
	}
	if enhanced(h) {
		// In enhanced mode the reply is a commit acknowledgement: it says
		// the message is safely stored. Whether the mappings can handle its
		// content is the application's answer, sent as the application ACK
		// once processing has tried (AE naming the field and the rule), and
		// the message waits as failed for a fix. Only a type no mapping
		// covers is refused at commit.
		if in.opt.Covers != nil && !in.opt.Covers(senderOf(env, h), h.MessageCode, h.TriggerEvent) {
			return reject, []hl7.ErrorDetail{{Location: "MSH^1^9", Code: "200", Severity: "E",
				Message: fmt.Sprintf("no mapping for message type %s", messageType(h))}}
		}
		return accept, nil
	}
	if in.opt.Check != nil {
		if problems := in.opt.Check.Check(senderOf(env, h), m); len(problems) > 0 {
			for _, p := range problems {
				if p.Code == "200" || p.Code == "201" {
					return reject, problems // no mapping handles this message type or event
				}
			}
			return errOut, problems
		}
	}
	return accept, nil
}

// unwrapJoined lists the errors joined in err (err itself when it is one).
func unwrapJoined(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

func detailOf(err error, defLoc, defCode string) hl7.ErrorDetail {
	d := hl7.ErrorDetail{Location: defLoc, Code: defCode, Severity: "E", Message: err.Error()}
	var pe *hl7.ParseError
	if errors.As(err, &pe) {
		if loc := pe.Location(); loc != "" {
			d.Location = loc
		}
		switch {
		case errors.Is(err, hl7.ErrRequired):
			d.Code = "101"
		case errors.Is(err, hl7.ErrCharset), errors.Is(err, hl7.ErrBadEscape):
			d.Code = "102"
		}
	}
	return d
}

func describe(ds []hl7.ErrorDetail) string {
	s := ""
	for i, d := range ds {
		if i > 0 {
			s += "; "
		}
		if d.Location != "" {
			s += d.Location + ": "
		}
		s += d.Message
	}
	return s
}

// RefuseOversize stores what was kept of a message that exceeded the size
// limit, as rejected, and returns an AR naming the limit.
func (in *Intake) RefuseOversize(ctx context.Context, env *Envelope, cause error) []byte {
	h, d, _ := hl7.ParseHeader(env.Raw)
	sum := digest(env.Raw)
	detail := hl7.ErrorDetail{Location: "MSH^1", Code: "207", Severity: "E", Message: "message refused: " + cause.Error()}
	e := &store.Envelope{
		ID: newID(), Channel: env.Channel, Sender: senderOf(env, h), Peer: env.Peer, ReceivedAt: env.ReceivedAt,
		Kind: KindHL7, MessageType: messageType(h), ControlID: h.ControlID, DedupKey: "oversize:" + newID(), SHA256: sum,
		Status: StatusRejected, Error: detail.Message, Raw: env.Raw,
	}
	e.ACK = hl7.NewACK(h, d, ackCode(h, reject), in.nextAckID(), time.Now(), detail)
	if _, err := in.commit(ctx, e); err != nil {
		in.storeFailed(env, e.Sender, err)
	}
	in.rejected.WithLabelValues(env.Channel).Inc()
	return e.ACK
}

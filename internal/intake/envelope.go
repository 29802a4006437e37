package intake

import "time"

// Channels an envelope can arrive on.
const (
	ChannelMLLP = "mllp"
	ChannelSFTP = "sftp"
)

// Envelope is one unit received from a sender, exactly as received: an HL7 v2
// message from an MLLP frame, or a whole uploaded file (a C-CDA document, an
// HL7 v2 message, or an HL7 v2 batch). Listeners fill it in and know nothing
// of its clinical content.
type Envelope struct {
	Channel    string    // ChannelMLLP or ChannelSFTP
	Sender     string    // authenticated sender name; empty lets intake take it from MSH-4 (then MSH-3)
	Peer       string    // remote address, for the audit trail
	ReceivedAt time.Time // when the listener finished reading it
	Filename   string    // the uploaded file's name (SFTP only)
	// Facilities, when not nil, are the sending facilities (MSH-4 namespace
	// or universal id) the authenticated sender may send as; a message naming
	// another is stored as rejected and answered AR. Nil allows any.
	Facilities []string
	Raw        []byte
}

// Statuses of a stored envelope.
const (
	StatusReceived  = "received"  // committed, waiting for processing
	StatusProcessed = "processed" // turned into record entries and events
	StatusRejected  = "rejected"  // refused at intake (unreadable, unsupported); never processed
	StatusFailed    = "failed"    // processing failed; can be reprocessed
)

// Receipt is intake's answer for one envelope, given only after the envelope
// is durably committed.
type Receipt struct {
	EnvelopeID string // id of the stored envelope (the first one, for a duplicate)
	Duplicate  bool   // the same sender sent the same control id (or file hash) before
	Status     string // StatusReceived or StatusRejected
	Reason     string // why it was rejected, naming the location (no PHI)
	ACK        []byte // the HL7 v2 acknowledgement to send back (MLLP); the stored one for a duplicate
	// Denied is set when the message named a sending facility its sender may
	// not use; the caller audits it.
	Denied bool
}

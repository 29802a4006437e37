// Package mpi is the master patient index: it turns a sender's patient
// identifier plus demographics into an enterprise patient id.
//
// Resolve links a record by identifier first (the same assigning authority
// and MRN, a merged MRN, or a configured trusted identifier type shared across
// senders), then by Fellegi-Sunter scoring against candidates found through
// several blocking keys. Above the upper threshold it links, between the
// thresholds it opens a review task, below the lower one it creates a new
// enterprise patient. Every decision carries its explanation, and every change
// (link, update, merge, operator link/unlink, review decision, undo) writes an
// audit entry with the affected entries before and after, so it can be
// reversed, and returns events for the caller to publish.
//
// Persistence is behind Store; Memory is the in-memory implementation.
package mpi

import (
	"fmt"
	"time"
)

// Record is one sender's view of a patient: its key (assigning authority and
// MRN) plus demographics. Empty fields are unknown, not "blank".
type Record struct {
	Sender       string       `json:"sender,omitempty"`
	Authority    string       `json:"authority"` // assigning authority of MRN (PID-3.4)
	MRN          string       `json:"mrn"`
	Identifiers  []Identifier `json:"identifiers,omitempty"` // other identifiers (insurance, HIE-wide, ...)
	Family       string       `json:"family,omitempty"`
	Given        string       `json:"given,omitempty"`
	Middle       string       `json:"middle,omitempty"`
	BirthDate    string       `json:"birth_date,omitempty"` // YYYYMMDD, YYYY-MM-DD or an HL7 TS
	Sex          string       `json:"sex,omitempty"`        // M, F, or anything else for unknown
	AddressLines []string     `json:"address_lines,omitempty"`
	City         string       `json:"city,omitempty"`
	State        string       `json:"state,omitempty"`
	Postcode     string       `json:"postcode,omitempty"`
	Phone        string       `json:"phone,omitempty"`
	NationalID   string       `json:"national_id,omitempty"` // e.g. a social security number; scored, never a key
}

// Identifier is an identifier other than the record's own MRN.
type Identifier struct {
	Type      string `json:"type"`      // HL7 table 0203 code, e.g. MR, NI, PI
	Authority string `json:"authority"` // assigning authority
	Value     string `json:"value"`
}

// Key identifies a source record: the assigning authority and the MRN.
type Key struct {
	Authority string `json:"authority"`
	MRN       string `json:"mrn"`
}

// String renders the key as authority|mrn. MRNs are identifiers, so keep keys
// out of info-level logs like other PHI.
func (k Key) String() string { return k.Authority + "|" + k.MRN }

// Key returns the record's key.
func (r Record) Key() Key { return Key{Authority: r.Authority, MRN: r.MRN} }

// Method says how an entry came to its enterprise patient.
type Method string

// Link methods.
const (
	MethodNew        Method = "new"        // first record of a new enterprise patient
	MethodIdentifier Method = "identifier" // shared trusted identifier
	MethodScore      Method = "score"      // probabilistic score above the upper threshold
	MethodReview     Method = "review"     // reviewer decided match
	MethodOperator   Method = "operator"   // operator linked, unlinked or merged
	MethodMerge      Method = "merge"      // moved by an ADT^A40 merge
)

// sticky reports whether automatic re-evaluation may move an entry linked
// this way. Human and identifier decisions stay until a human changes them.
func (m Method) sticky() bool {
	switch m {
	case MethodIdentifier, MethodReview, MethodOperator, MethodMerge:
		return true
	}
	return false
}

// Link records why an entry belongs to its enterprise patient.
type Link struct {
	Method     Method      `json:"method"`
	Rule       string      `json:"rule"`
	Comparison *Comparison `json:"comparison,omitempty"` // the deciding comparison, if scored
	Actor      string      `json:"actor"`
	At         time.Time   `json:"at"`
}

// Entry is what the index keeps per source record.
type Entry struct {
	Record       Record `json:"record"`
	EnterpriseID string `json:"enterprise_id"`
	// OwnID is the enterprise id minted for this record when it was first
	// seen; unlinking returns the record to it when it is free, so that its
	// history is again its own.
	OwnID string `json:"own_id"`
	// MergedInto is set once an ADT^A40 merged this MRN into another of the
	// same authority; the entry is then inactive and resolves to the survivor.
	MergedInto *Key   `json:"merged_into,omitempty"`
	Link       Link   `json:"link"`
	NotSame    []Key  `json:"not_same,omitempty"`  // records a human declared different
	OpenTask   string `json:"open_task,omitempty"` // id of the open review task about this entry
	Version    int64  `json:"version"`

	feat *features // cached comparison features; nil when loaded from elsewhere
}

// Key returns the entry's key.
func (e *Entry) Key() Key { return e.Record.Key() }

// Active reports whether the entry takes part in matching.
func (e *Entry) Active() bool { return e.MergedInto == nil }

func (e *Entry) features() *features {
	if e.feat == nil {
		e.feat = newFeatures(&e.Record)
	}
	return e.feat
}

func (e *Entry) notSame(k Key) bool {
	for _, n := range e.NotSame {
		if n == k {
			return true
		}
	}
	return false
}

// Outcome is the kind of decision Resolve made.
type Outcome string

// Outcomes.
const (
	LinkedByIdentifier Outcome = "linked_by_identifier"
	LinkedByScore      Outcome = "linked_by_score"
	NewPatient         Outcome = "new"
	Review             Outcome = "review"
)

// Decision is the result of Resolve.
type Decision struct {
	Key          Key     `json:"key"` // the entry the message belongs to (the survivor for a merged MRN)
	EnterpriseID string  `json:"enterprise_id"`
	Outcome      Outcome `json:"outcome"`
	Rule         string  `json:"rule"` // the rule that fired
	// Best is the highest-scoring comparison, if any candidate was scored.
	Best *Comparison `json:"best,omitempty"`
	// Compared is the number of candidates scored.
	Compared int     `json:"compared"`
	TaskID   string  `json:"task_id,omitempty"` // review task opened by this decision
	Events   []Event `json:"events,omitempty"`
}

// EventType names an identity event for subscribers.
type EventType string

// Event types.
const (
	EventCreated EventType = "created" // a new enterprise patient
	EventLinked  EventType = "linked"  // records joined an existing enterprise patient
	EventMerged  EventType = "merged"  // enterprise patient From was retired into EnterpriseID
	EventSplit   EventType = "split"   // records left From for a new or revived EnterpriseID
	EventUpdated EventType = "updated" // demographics of a record changed
)

// Event is an identity change the caller should publish.
type Event struct {
	Type         EventType `json:"type"`
	EnterpriseID string    `json:"enterprise_id"`
	From         string    `json:"from,omitempty"`
	Keys         []Key     `json:"keys,omitempty"`
}

// TaskStatus is the state of a review task.
type TaskStatus string

// Task statuses.
const (
	TaskOpen     TaskStatus = "open"
	TaskMatch    TaskStatus = "match"     // reviewer decided same person
	TaskNonMatch TaskStatus = "non_match" // reviewer decided different people
)

// Task asks a person whether Key and Candidate are the same patient.
type Task struct {
	ID         string     `json:"id"`
	Key        Key        `json:"key"`
	Candidate  Key        `json:"candidate"`
	Comparison Comparison `json:"comparison"`
	Reason     string     `json:"reason"`
	Status     TaskStatus `json:"status"`
	Created    time.Time  `json:"created"`
	DecidedBy  string     `json:"decided_by,omitempty"`
	DecidedAt  time.Time  `json:"decided_at,omitempty"`
	Note       string     `json:"note,omitempty"`
}

// AuditEntry records one change: who, when, why, and the affected entries
// before and after. Before holds no entry for a record that did not exist.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`
	Action string    `json:"action"`
	Reason string    `json:"reason"`
	Keys   []Key     `json:"keys"`
	Before []Entry   `json:"before,omitempty"`
	After  []Entry   `json:"after"`
	Events []Event   `json:"events,omitempty"`
	TaskID string    `json:"task_id,omitempty"`
	Undoes string    `json:"undoes,omitempty"` // id of the audit entry this one reversed
}

func (a *AuditEntry) String() string {
	return fmt.Sprintf("%s %s by %s (%d entries)", a.ID, a.Action, a.Actor, len(a.After))
}

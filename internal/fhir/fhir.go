// Package fhir holds the canonical model: FHIR R4 resources kept as their JSON
// objects, so that mappings and document readers can build any resource type
// without generated structs, plus the Bundle that carries them.
package fhir

import (
	"crypto/sha1"

	"github.com/google/uuid"
)

// Resource is one FHIR R4 resource as its JSON object. "resourceType" and "id"
// are always set by producers.
type Resource map[string]any

// New returns a resource of the given type with the given id.
func New(resourceType, id string) Resource {
	return Resource{"resourceType": resourceType, "id": id}
}

// Type returns the resourceType.
func (r Resource) Type() string { s, _ := r["resourceType"].(string); return s }

// ID returns the id.
func (r Resource) ID() string { s, _ := r["id"].(string); return s }

// Ref returns the relative reference "Type/id" to the resource.
func (r Resource) Ref() string { return r.Type() + "/" + r.ID() }

// namespace is the UUIDv5 namespace of every id hiegw derives.
var namespace = uuid.MustParse("4f0c2b6e-6d1e-4c55-9a8e-2f7d3c1b9a10")

// StableID derives a deterministic resource id from the sender, the resource
// type and the keys that identify the fact at its source (for example an
// assigning authority and MRN, or a filler order number and an OBX-3 code).
// The same fact sent again gets the same id, so it updates the stored resource
// instead of duplicating it.
func StableID(sender, resourceType string, keys ...string) string {
	// The name hashed is the namespace followed by sender, type and keys
	// separated by NUL bytes (a UUIDv5, as uuid.NewSHA1 makes it), built in
	// a stack buffer when it fits, so that an id costs one string.
	var buf [256]byte
	b := append(buf[:0], namespace[:]...)
	b = append(b, sender...)
	b = append(b, 0)
	b = append(b, resourceType...)
	for _, k := range keys {
		b = append(b, 0)
		b = append(b, k...)
	}
	sum := sha1.Sum(b)
	var u uuid.UUID
	copy(u[:], sum[:])
	u[6] = u[6]&0x0f | 5<<4 // version 5 (SHA-1, name based)
	u[8] = u[8]&0x3f | 0x80 // RFC 4122 variant
	return u.String()
}

// Bundle is a FHIR R4 Bundle.
type Bundle struct {
	ResourceType string        `json:"resourceType"`
	ID           string        `json:"id,omitempty"`
	Type         string        `json:"type"`
	Timestamp    string        `json:"timestamp,omitempty"`
	Total        *int          `json:"total,omitempty"`
	Link         []BundleLink  `json:"link,omitempty"`
	Entry        []BundleEntry `json:"entry,omitempty"`
}

// BundleLink is a Bundle.link (paging).
type BundleLink struct {
	Relation string `json:"relation"`
	URL      string `json:"url"`
}

// BundleEntry is one Bundle.entry.
type BundleEntry struct {
	FullURL  string   `json:"fullUrl,omitempty"`
	Resource Resource `json:"resource"`
}

// NewBundle wraps resources in a Bundle of the given type ("collection",
// "message", "searchset", ...).
func NewBundle(typ string, resources []Resource) *Bundle {
	b := &Bundle{ResourceType: "Bundle", Type: typ}
	for _, r := range resources {
		b.Entry = append(b.Entry, BundleEntry{FullURL: "urn:uuid:" + r.ID(), Resource: r})
	}
	return b
}

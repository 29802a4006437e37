package ccda

import (
	"encoding/base64"
	"strings"
)

// Document facts that are not in the XML itself, or that the mapping files
// cannot spell with a C-CDA path: the IHE format code the document follows
// and the inline content of an unstructured body as base64.

// FormatCode is the IHE format code (urn:hl7-org:sdwg:...) for the
// document's template family and body kind.
func (d *Document) FormatCode() string {
	switch {
	case d.NonXMLBody != nil && d.Profile == ProfileCCDA11:
		return "urn:hl7-org:sdwg:ccda-nonXMLBody:1.1"
	case d.NonXMLBody != nil:
		return "urn:hl7-org:sdwg:ccda-nonXMLBody:2.1"
	case d.Profile == ProfileCCDA11:
		return "urn:hl7-org:sdwg:ccda-structuredBody:1.1"
	case d.Profile == ProfileC32:
		return "urn:ihe:pcc:xphr:2007"
	}
	return "urn:hl7-org:sdwg:ccda-structuredBody:2.1"
}

// InlineData is the inline content of an unstructured body as base64 (a B64
// body without its line breaks, any other encoded), or "" when the body is
// referenced or empty.
func (b *NonXMLBody) InlineData() string {
	switch {
	case b == nil || b.Reference != "":
		return ""
	case strings.EqualFold(b.Representation, "B64"):
		return strings.Join(strings.Fields(b.Content), "")
	case b.Content != "":
		return base64.StdEncoding.EncodeToString([]byte(b.Content))
	}
	return ""
}

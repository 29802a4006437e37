package ccda

import (
	"strings"

	"github.com/beevik/etree"
)

// Navigation and data type helpers for code outside this package that walks
// a parsed document itself (the mapping engine's C-CDA paths). They read the
// same normalised tree ToFHIR reads: element namespaces are canonical markers
// (SpaceV3, SpaceSDTC), never the sender's prefixes.

// Canonical namespace markers of elements and attributes after Parse.
const (
	SpaceV3   = spV3   // urn:hl7-org:v3 elements; attributes in no namespace
	SpaceSDTC = spSDTC // urn:hl7-org:sdtc
	SpaceXSI  = spXSI  // XML Schema instance attributes (xsi:type)
)

// Root returns the ClinicalDocument element.
func (d *Document) Root() *etree.Element { return d.root }

// Path returns the XML path of e with 1-based positions among same-named
// siblings, as ToFHIR uses it in reports and to key entries without ids.
func (d *Document) Path(e *etree.Element) string { return d.path(e) }

// Attr returns the trimmed value of the attribute key (no namespace) of e.
func Attr(e *etree.Element, key string) string { return attr(e, key) }

// XSIType returns the local part of e's xsi:type attribute.
func XSIType(e *etree.Element) string { return xsiType(e) }

// Text returns the text of e and its descendants with white space collapsed.
func Text(e *etree.Element) string { return text(e) }

// IsNull reports whether e is absent or carries a nullFlavor.
func IsNull(e *etree.Element) bool { return isNull(e) }

// Narrative returns the text of e, or of the narrative element its
// <reference value="#id"/> points to.
func (d *Document) Narrative(e *etree.Element) string { return d.narrative(e) }

// CDOf reads a coded value (CD, CE, CV, CO, CS) with its translations and
// original text.
func (d *Document) CDOf(e *etree.Element) CD { return d.cd(e) }

// IIOf reads an instance identifier.
func (d *Document) IIOf(e *etree.Element) II { return d.ii(e) }

// IntervalOf reads a TS or IVL_TS element.
func IntervalOf(e *etree.Element) Interval { return interval(e) }

// NameOf reads one PN element; ok is false for a nullFlavor or an empty name.
func NameOf(n *etree.Element) (Name, bool) {
	if isNull(n) {
		return Name{}, false
	}
	nm := Name{Use: attr(n, "use")}
	parts := false
	for _, p := range elems(n) {
		v := text(p)
		if v == "" {
			continue
		}
		switch p.Tag {
		case "prefix":
			nm.Prefix, parts = append(nm.Prefix, v), true
		case "given":
			nm.Given, parts = append(nm.Given, v), true
		case "family":
			nm.Family, parts = append(nm.Family, v), true
		case "suffix":
			nm.Suffix, parts = append(nm.Suffix, v), true
		case "validTime":
			nm.ValidLow, nm.ValidHigh = attr(child(p, "low"), "value"), attr(child(p, "high"), "value")
		}
	}
	if !parts {
		nm.Text = directText(n)
		if nm.Text == "" {
			return Name{}, false
		}
	}
	return nm, true
}

// AddressOf reads one AD element; ok is false for a nullFlavor or an address
// with no line, city, state, postal code or country.
func AddressOf(a *etree.Element) (Address, bool) {
	if isNull(a) {
		return Address{}, false
	}
	ad := Address{Use: attr(a, "use")}
	for _, p := range elems(a) {
		v := text(p)
		switch p.Tag {
		case "streetAddressLine":
			if v != "" {
				ad.Lines = append(ad.Lines, v)
			}
		case "city":
			ad.City = v
		case "county":
			ad.County = v
		case "state":
			ad.State = v
		case "postalCode":
			ad.PostalCode = v
		case "country":
			ad.Country = v
		case "useablePeriod":
			ad.ValidLow, ad.ValidHigh = attr(child(p, "low"), "value"), attr(child(p, "high"), "value")
		}
	}
	if len(ad.Lines) == 0 && ad.City == "" && ad.State == "" && ad.PostalCode == "" && ad.Country == "" {
		return Address{}, false
	}
	return ad, true
}

// TelecomOf reads one TEL element; ok is false without a value.
func TelecomOf(t *etree.Element) (Telecom, bool) {
	if t == nil || attr(t, "nullFlavor") != "" {
		return Telecom{}, false
	}
	v := attr(t, "value")
	if v == "" {
		return Telecom{}, false
	}
	return Telecom{Use: attr(t, "use"), Value: v}, true
}

// FHIRDateTime converts an HL7 TS to a FHIR dateTime ("" when it is not a
// valid time); a time without a zone is cut to its date.
func FHIRDateTime(ts string) string { return dateTime(ts) }

// FHIRDate converts an HL7 TS to a FHIR date.
func FHIRDate(ts string) string { return date(ts) }

// ValidTS reports whether ts is a well-formed HL7 TS.
func ValidTS(ts string) bool {
	s, _ := convertTS(strings.TrimSpace(ts))
	return s != ""
}

// FHIRDecimal turns an HL7 REAL literal into a FHIR decimal, keeping its
// digits.
func FHIRDecimal(s string) (string, bool) {
	n, ok := decimal(s)
	return string(n), ok
}

// UCUM returns the UCUM code for a unit as written, and whether it can be one.
func UCUM(unit string) (string, bool) { return ucum(unit) }

// FHIRHumanName converts a name to a FHIR HumanName.
func FHIRHumanName(n Name) map[string]any { return humanName(n) }

// FHIRAddress converts an address to a FHIR Address.
func FHIRAddress(a Address) map[string]any { return address(a) }

// FHIRContactPoint converts a telecom to a FHIR ContactPoint (nil when empty).
func FHIRContactPoint(t Telecom) map[string]any { return contactPoint(t) }

// IsOID reports whether s is a dotted OID.
func IsOID(s string) bool { return isOID(s) }

// IsUUID reports whether s is a UUID in its 8-4-4-4-12 form.
func IsUUID(s string) bool { return isUUID(s) }

// CodeSystemOIDs returns the code system OIDs ToFHIR knows with their FHIR
// URIs (a copy), and IdentifierSystemOIDs the identifier roots with theirs.
func CodeSystemOIDs() map[string]string {
	out := make(map[string]string, len(codeSystems))
	for k, v := range codeSystems {
		out[k] = v
	}
	return out
}

// IdentifierSystemOIDs returns the identifier roots with a FHIR system URI.
func IdentifierSystemOIDs() map[string]string {
	out := make(map[string]string, len(idSystems))
	for k, v := range idSystems {
		out[k] = v
	}
	return out
}

package ccda

import (
	"strconv"
	"strings"

	"github.com/beevik/etree"
)

// II is an HL7 instance identifier.
type II struct {
	Root, Extension, AssigningAuthorityName, NullFlavor string
}

// Valid reports whether the identifier names something (a root, not a
// nullFlavor).
func (i II) Valid() bool { return i.Root != "" && i.NullFlavor == "" }

// CD is a coded value with its translations. OriginalText holds the text the
// code was chosen from, with narrative references already resolved.
type CD struct {
	Code, CodeSystem, CodeSystemName, DisplayName string
	OriginalText                                  string
	NullFlavor                                    string
	Translations                                  []CD
}

// IsZero reports whether c carries neither a code, a translation nor text.
func (c CD) IsZero() bool { return c.Code == "" && len(c.Translations) == 0 && c.OriginalText == "" }

// Interval is a time or time interval as HL7 TS strings (YYYYMMDDhhmmss.s±ZZZZ
// with any precision): Value for a point, Low and High for an interval.
type Interval struct{ Value, Low, High string }

// IsZero reports whether no time is given.
func (t Interval) IsZero() bool { return t.Value == "" && t.Low == "" && t.High == "" }

// Name is a person name (PN).
type Name struct {
	Use                           string
	Prefix, Given, Family, Suffix []string
	Text                          string // unstructured name, when no parts are given
	ValidLow, ValidHigh           string
}

// Address is a postal address (AD).
type Address struct {
	Use                                      string
	Lines                                    []string
	City, County, State, PostalCode, Country string
	ValidLow, ValidHigh                      string
}

// Telecom is a phone number, e-mail or other contact point (TEL): Value keeps
// its scheme (tel:, mailto:, fax:, http:).
type Telecom struct{ Use, Value string }

// Language is one languageCommunication of the patient.
type Language struct {
	Code      string
	Mode      CD
	Preferred *bool
}

// Organization is an organization named in the header.
type Organization struct {
	IDs       []II
	Name      string
	Telecoms  []Telecom
	Addresses []Address
}

// Patient is the recordTarget's patientRole and patient.
type Patient struct {
	Path               string
	IDs                []II
	Names              []Name
	Addresses          []Address
	Telecoms           []Telecom
	Gender             CD
	BirthTime          string
	Deceased           *bool
	DeceasedTime       string
	MaritalStatus      CD
	Religion           CD
	Race               []CD // raceCode, then each sdtc:raceCode
	Ethnicity          []CD // ethnicGroupCode, then each sdtc:ethnicGroupCode
	Languages          []Language
	MultipleBirth      *bool
	MultipleBirthOrder int
	Organization       *Organization // providerOrganization
}

// Author is an author of the document: a person or a device, usually on
// behalf of an organization.
type Author struct {
	Time         string
	IDs          []II
	Code         CD
	Names        []Name
	Device       string // software or model name of an authoring device
	Organization *Organization
}

// Encounter is the header's componentOf/encompassingEncounter.
type Encounter struct {
	Path                 string
	IDs                  []II
	Code                 CD
	Time                 Interval
	DischargeDisposition CD
	Location             string
	Responsible          []Name
}

// ServiceEvent is a documentationOf/serviceEvent.
type ServiceEvent struct {
	Code CD
	Time Interval
}

// RelatedDocument is a relatedDocument: a parent this document replaces
// (RPLC), appends to (APND) or transforms (XFRM).
type RelatedDocument struct {
	TypeCode  string
	ID, SetID II
	Version   int
}

// NonXMLBody is the body of an unstructured document.
type NonXMLBody struct {
	MediaType      string
	Representation string // B64 or TXT
	Reference      string // URL of external content, when referenced
	Content        string // inline content as found (base64 text or plain text)
}

// Profile says which family of templates a document follows.
type Profile string

// Profiles Parse tells apart.
const (
	ProfileCCDA21 Profile = "C-CDA R2.1"
	ProfileCCDA11 Profile = "C-CDA R1.1"
	ProfileC32    Profile = "CCD 1.0 / HITSP C32"
	ProfileCDA    Profile = "CDA R2"
)

// Section is one section of a structured body (subsections are listed after
// their parent, in document order).
type Section struct {
	Path        string
	TemplateIDs []II
	Code        CD
	Title       string
	NullFlavor  string
	Kind        Kind // what ToFHIR maps it as; KindNone when it has no mapping
	Entries     []Entry
	el          *etree.Element
}

// Entry is the clinical statement of one section entry.
type Entry struct {
	Path        string
	Element     string // act, observation, substanceAdministration, organizer, encounter, procedure, supply, ...
	ClassCode   string
	MoodCode    string
	Negated     bool
	TemplateIDs []II
	IDs         []II
	Code        CD
	Status      string
	Time        Interval
	el          *etree.Element
}

// Document is a parsed CDA document: its header read into fields, its
// sections indexed; entries are read in full by ToFHIR.
type Document struct {
	ID               II
	SetID            II
	Version          int
	Type             CD // the document code (e.g. LOINC 34133-9)
	Title            string
	EffectiveTime    string
	Confidentiality  CD
	Language         string
	TemplateIDs      []II
	Profile          Profile
	Patient          Patient
	Authors          []Author
	Custodian        *Organization
	Encounter        *Encounter // componentOf/encompassingEncounter
	ServiceEvents    []ServiceEvent
	RelatedDocuments []RelatedDocument
	Sections         []Section
	NonXMLBody       *NonXMLBody
	Size             int      // bytes of input
	SHA1             []byte   // of the input as received
	Warnings         []string // departures from CDA or C-CDA rules that did not stop parsing

	root      *etree.Element
	ids       map[string]*etree.Element
	ords      ordinals          // sibling positions, for paths
	narrCache map[string]string // text of referenced narrative elements
}

// path renders the XML path of e (see elementPath) in time proportional to
// its depth, once each parent's children have been counted.
func (d *Document) path(e *etree.Element) string {
	if d.ords == nil {
		d.ords = ordinals{}
	}
	return pathWith(e, d.ords)
}

// hasTemplate reports whether any of ids has the root (with any extension).
func hasTemplate(ids []II, roots ...string) bool {
	for _, i := range ids {
		for _, r := range roots {
			if i.Root == r {
				return true
			}
		}
	}
	return false
}

func (d *Document) warn(path, msg string) { d.Warnings = append(d.Warnings, path+": "+msg) }

func (d *Document) readHeader() error {
	r := d.root
	d.TemplateIDs = d.iis(r, "templateId")
	d.ID = d.ii(child(r, "id"))
	d.SetID = d.ii(child(r, "setId"))
	if v := attr(child(r, "versionNumber"), "value"); v != "" {
		d.Version, _ = strconv.Atoi(v)
	}
	d.Type = d.cd(child(r, "code"))
	d.Title = text(child(r, "title"))
	d.EffectiveTime = attr(child(r, "effectiveTime"), "value")
	d.Confidentiality = d.cd(child(r, "confidentialityCode"))
	d.Language = attr(child(r, "languageCode"), "code")

	switch {
	case hasUSRealmHeader(d.TemplateIDs, true):
		d.Profile = ProfileCCDA21
	case hasUSRealmHeader(d.TemplateIDs, false) || hasCCDADocumentTemplate(d.TemplateIDs):
		d.Profile = ProfileCCDA11
	case hasTemplate(d.TemplateIDs, "2.16.840.1.113883.10.20.1", "2.16.840.1.113883.3.88.11.32.1", "2.16.840.1.113883.3.88.11.83.1"):
		d.Profile = ProfileC32
	default:
		d.Profile = ProfileCDA
	}
	if d.Profile == ProfileC32 || d.Profile == ProfileCDA {
		d.warn("/ClinicalDocument", "no C-CDA document template; sections are mapped only where they carry C-CDA templates")
	}

	rt := child(r, "recordTarget")
	pr := child(rt, "patientRole")
	if rt == nil {
		return &Error{Path: "/ClinicalDocument", Err: ErrMissing, Msg: "recordTarget is missing"}
	}
	if pr == nil {
		return &Error{Path: elementPath(rt), Err: ErrMissing, Msg: "patientRole is missing"}
	}
	if n := len(children(r, "recordTarget")); n > 1 {
		d.warn("/ClinicalDocument", strconv.Itoa(n)+" recordTargets; only the first is read")
	}
	d.readPatient(pr)

	for _, a := range children(r, "author") {
		d.Authors = append(d.Authors, d.readAuthor(a))
	}
	if org := walk(r, "custodian", "assignedCustodian", "representedCustodianOrganization"); org != nil {
		d.Custodian = d.org(org)
	}
	for _, so := range children(r, "documentationOf") {
		se := child(so, "serviceEvent")
		if se == nil {
			continue
		}
		d.ServiceEvents = append(d.ServiceEvents, ServiceEvent{Code: d.cd(child(se, "code")), Time: interval(child(se, "effectiveTime"))})
	}
	for _, rd := range children(r, "relatedDocument") {
		pd := child(rd, "parentDocument")
		if pd == nil {
			continue
		}
		rel := RelatedDocument{TypeCode: attr(rd, "typeCode"), ID: d.ii(child(pd, "id")), SetID: d.ii(child(pd, "setId"))}
		rel.Version, _ = strconv.Atoi(attr(child(pd, "versionNumber"), "value"))
		d.RelatedDocuments = append(d.RelatedDocuments, rel)
	}
	if ee := walk(r, "componentOf", "encompassingEncounter"); ee != nil {
		enc := &Encounter{Path: elementPath(ee), IDs: d.iis(ee, "id"), Code: d.cd(child(ee, "code")), Time: interval(child(ee, "effectiveTime"))}
		enc.DischargeDisposition = d.cd(child(ee, "dischargeDispositionCode"))
		if enc.DischargeDisposition.IsZero() {
			enc.DischargeDisposition = d.cd(childNS(ee, spSDTC, "dischargeDispositionCode"))
		}
		hcf := walk(ee, "location", "healthCareFacility")
		enc.Location = text(walk(hcf, "location", "name"))
		if enc.Location == "" {
			enc.Location = text(walk(hcf, "serviceProviderOrganization", "name"))
		}
		enc.Responsible = d.names(walk(ee, "responsibleParty", "assignedEntity", "assignedPerson"))
		d.Encounter = enc
	}

	for _, miss := range []string{"id", "code", "effectiveTime", "author", "custodian"} {
		if child(r, miss) == nil {
			d.warn("/ClinicalDocument", miss+" is missing (required by CDA R2)")
		}
	}
	return nil
}

// hasUSRealmHeader reports a C-CDA document template: any, or (r21) one
// with the versioned extension R2.x uses.
func hasUSRealmHeader(ids []II, r21 bool) bool {
	for _, i := range ids {
		if i.Root == "2.16.840.1.113883.10.20.22.1.1" || strings.HasPrefix(i.Root, "2.16.840.1.113883.10.20.22.1.") {
			if !r21 || i.Extension != "" {
				return true
			}
		}
	}
	return false
}

func hasCCDADocumentTemplate(ids []II) bool {
	for _, i := range ids {
		if strings.HasPrefix(i.Root, "2.16.840.1.113883.10.20.22.1.") {
			return true
		}
	}
	return false
}

func (d *Document) readPatient(pr *etree.Element) {
	p := &d.Patient
	p.Path = elementPath(pr)
	p.IDs = d.iis(pr, "id")
	p.Addresses = d.addrs(pr)
	p.Telecoms = telecoms(pr)
	pt := child(pr, "patient")
	p.Names = d.names(pt)
	p.Gender = d.cd(child(pt, "administrativeGenderCode"))
	p.BirthTime = attr(child(pt, "birthTime"), "value")
	if p.BirthTime == "" {
		p.BirthTime = attr(childNS(pt, spSDTC, "birthTime"), "value")
	}
	if v := attr(childNS(pt, spSDTC, "deceasedInd"), "value"); v != "" {
		b := v == "true"
		p.Deceased = &b
	}
	p.DeceasedTime = attr(childNS(pt, spSDTC, "deceasedTime"), "value")
	p.MaritalStatus = d.cd(child(pt, "maritalStatusCode"))
	p.Religion = d.cd(child(pt, "religiousAffiliationCode"))
	if c := d.cd(child(pt, "raceCode")); !c.IsZero() || c.NullFlavor != "" {
		p.Race = append(p.Race, c)
	}
	for _, e := range childrenNS(pt, spSDTC, "raceCode") {
		p.Race = append(p.Race, d.cd(e))
	}
	if c := d.cd(child(pt, "ethnicGroupCode")); !c.IsZero() || c.NullFlavor != "" {
		p.Ethnicity = append(p.Ethnicity, c)
	}
	for _, e := range childrenNS(pt, spSDTC, "ethnicGroupCode") {
		p.Ethnicity = append(p.Ethnicity, d.cd(e))
	}
	for _, lc := range children(pt, "languageCommunication") {
		l := Language{Code: attr(child(lc, "languageCode"), "code"), Mode: d.cd(child(lc, "modeCode"))}
		if v := attr(child(lc, "preferenceInd"), "value"); v != "" {
			b := v == "true"
			l.Preferred = &b
		}
		if l.Code != "" {
			p.Languages = append(p.Languages, l)
		}
	}
	if v := attr(childNS(pt, spSDTC, "multipleBirthInd"), "value"); v != "" {
		b := v == "true"
		p.MultipleBirth = &b
	}
	p.MultipleBirthOrder, _ = strconv.Atoi(attr(childNS(pt, spSDTC, "multipleBirthOrderNumber"), "value"))
	if po := child(pr, "providerOrganization"); po != nil && !isNull(po) {
		p.Organization = d.org(po)
	}
}

func (d *Document) readAuthor(a *etree.Element) Author {
	au := Author{Time: attr(child(a, "time"), "value")}
	aa := child(a, "assignedAuthor")
	au.IDs = d.iis(aa, "id")
	au.Code = d.cd(child(aa, "code"))
	au.Names = d.names(child(aa, "assignedPerson"))
	if dev := child(aa, "assignedAuthoringDevice"); dev != nil {
		au.Device = text(child(dev, "softwareName"))
		if au.Device == "" {
			au.Device = text(child(dev, "manufacturerModelName"))
		}
	}
	if o := child(aa, "representedOrganization"); o != nil && !isNull(o) {
		au.Organization = d.org(o)
	}
	return au
}

func (d *Document) org(e *etree.Element) *Organization {
	return &Organization{IDs: d.iis(e, "id"), Name: text(child(e, "name")), Telecoms: telecoms(e), Addresses: d.addrs(e)}
}

// ii reads an instance identifier.
func (d *Document) ii(e *etree.Element) II {
	if e == nil {
		return II{}
	}
	return II{Root: attr(e, "root"), Extension: attr(e, "extension"),
		AssigningAuthorityName: attr(e, "assigningAuthorityName"), NullFlavor: attr(e, "nullFlavor")}
}

func (d *Document) iis(e *etree.Element, name string) []II {
	var out []II
	for _, c := range children(e, name) {
		out = append(out, d.ii(c))
	}
	return out
}

// cd reads a coded value (CD, CE, CV, CO, CS) with its translations.
func (d *Document) cd(e *etree.Element) CD {
	if e == nil {
		return CD{}
	}
	c := CD{Code: attr(e, "code"), CodeSystem: attr(e, "codeSystem"), CodeSystemName: attr(e, "codeSystemName"),
		DisplayName: attr(e, "displayName"), NullFlavor: attr(e, "nullFlavor")}
	c.OriginalText = d.narrative(child(e, "originalText"))
	for _, t := range children(e, "translation") {
		tc := d.cd(t)
		if tc.Code != "" {
			c.Translations = append(c.Translations, tc)
		}
	}
	if c.Code == "" && c.DisplayName == "" && c.OriginalText == "" && len(c.Translations) == 0 && c.NullFlavor == "" {
		return CD{}
	}
	return c
}

// narrative returns the text of e, or of the narrative element its
// <reference value="#id"/> points to.
func (d *Document) narrative(e *etree.Element) string {
	if e == nil {
		return ""
	}
	if ref := child(e, "reference"); ref != nil {
		v := attr(ref, "value")
		if strings.HasPrefix(v, "#") {
			if s, ok := d.narrCache[v[1:]]; ok && s != "" {
				return s
			}
			if target, ok := d.ids[v[1:]]; ok {
				s := text(target)
				if d.narrCache == nil {
					d.narrCache = map[string]string{}
				}
				d.narrCache[v[1:]] = s
				if s != "" {
					return s
				}
			}
		}
	}
	return text(e)
}

func (d *Document) names(e *etree.Element) []Name {
	var out []Name
	for _, n := range children(e, "name") {
		if nm, ok := NameOf(n); ok {
			out = append(out, nm)
		}
	}
	return out
}

// directText returns the text directly inside e (not in child elements).
func directText(e *etree.Element) string {
	var b strings.Builder
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return strings.Join(strings.Fields(b.String()), " ")
}

func (d *Document) addrs(e *etree.Element) []Address {
	var out []Address
	for _, a := range children(e, "addr") {
		if ad, ok := AddressOf(a); ok {
			out = append(out, ad)
		}
	}
	return out
}

func telecoms(e *etree.Element) []Telecom {
	var out []Telecom
	for _, t := range children(e, "telecom") {
		if tel, ok := TelecomOf(t); ok {
			out = append(out, tel)
		}
	}
	return out
}

// interval reads a TS or IVL_TS element.
func interval(e *etree.Element) Interval {
	if e == nil || attr(e, "nullFlavor") != "" && len(elems(e)) == 0 {
		return Interval{}
	}
	t := Interval{Value: attr(e, "value"), Low: attr(child(e, "low"), "value"), High: attr(child(e, "high"), "value")}
	if t.Value == "" && t.Low == "" && t.High == "" {
		t.Value = attr(child(e, "center"), "value")
	}
	return t
}

// readBody indexes the sections of a structured body, or reads a nonXMLBody.
func (d *Document) readBody() {
	body := child(d.root, "component")
	if nx := child(body, "nonXMLBody"); nx != nil {
		t := child(nx, "text")
		d.NonXMLBody = &NonXMLBody{MediaType: attr(t, "mediaType"), Representation: attr(t, "representation"),
			Reference: attr(child(t, "reference"), "value")}
		if d.NonXMLBody.Reference == "" {
			d.NonXMLBody.Content = directText(t)
			if !strings.EqualFold(d.NonXMLBody.Representation, "B64") {
				d.NonXMLBody.Content = textRaw(t)
			}
		}
		return
	}
	sb := child(body, "structuredBody")
	for _, c := range children(sb, "component") {
		if s := child(c, "section"); s != nil {
			d.readSection(s)
		}
	}
}

// textRaw returns the character data directly inside e, unaltered.
func textRaw(e *etree.Element) string {
	var b strings.Builder
	for _, t := range e.Child {
		if cd, ok := t.(*etree.CharData); ok {
			b.WriteString(cd.Data)
		}
	}
	return b.String()
}

func (d *Document) readSection(s *etree.Element) {
	sec := Section{Path: d.path(s), TemplateIDs: d.iis(s, "templateId"), Code: d.cd(child(s, "code")),
		Title: text(child(s, "title")), NullFlavor: attr(s, "nullFlavor"), el: s}
	sec.Kind = sectionKind(sec.TemplateIDs, sec.Code)
	for _, en := range children(s, "entry") {
		st := statement(en)
		if st == nil {
			continue
		}
		sec.Entries = append(sec.Entries, d.entry(st))
	}
	d.Sections = append(d.Sections, sec)
	for _, c := range children(s, "component") {
		if sub := child(c, "section"); sub != nil {
			d.readSection(sub)
		}
	}
}

// clinicalStatements are the element names an entry or entryRelationship can
// hold.
var clinicalStatements = map[string]bool{
	"act": true, "observation": true, "substanceAdministration": true, "supply": true, "procedure": true,
	"encounter": true, "organizer": true, "observationMedia": true, "regionOfInterest": true,
}

// statement returns the clinical statement inside an entry, component or
// entryRelationship.
func statement(e *etree.Element) *etree.Element {
	for _, c := range elems(e) {
		if clinicalStatements[c.Tag] {
			return c
		}
	}
	return nil
}

func (d *Document) entry(st *etree.Element) Entry {
	return Entry{
		Path: d.path(st), Element: st.Tag, ClassCode: attr(st, "classCode"), MoodCode: attr(st, "moodCode"),
		Negated: attr(st, "negationInd") == "true", TemplateIDs: d.iis(st, "templateId"), IDs: d.iis(st, "id"),
		Code: d.cd(child(st, "code")), Status: attr(child(st, "statusCode"), "code"),
		Time: interval(child(st, "effectiveTime")), el: st,
	}
}

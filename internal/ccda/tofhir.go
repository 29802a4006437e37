package ccda

import (
	"encoding/base64"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/fhir"
)

// Report tells what ToFHIR mapped and what it did not.
type Report struct {
	Resources map[string]int  `json:"resources"`          // resources produced, by type
	Sections  []SectionReport `json:"sections"`           // every section, in document order
	Skipped   []Skip          `json:"skipped,omitempty"`  // entries (or parts) not mapped, with the reason
	Warnings  []string        `json:"warnings,omitempty"` // Parse warnings and mapping notes
}

// SectionReport is what happened to one section.
type SectionReport struct {
	Path        string   `json:"path"`
	Title       string   `json:"title,omitempty"`
	Code        string   `json:"code,omitempty"`        // section code (LOINC), when coded
	TemplateIDs []string `json:"templateIds,omitempty"` // templateId roots (with :extension when present)
	Kind        Kind     `json:"kind,omitempty"`        // KindNone: the section has no mapping
	Entries     int      `json:"entries"`               // entries found
	Mapped      int      `json:"mapped"`                // resources made from them
}

// Skip is an entry, or part of one, that was not mapped.
type Skip struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// Unmapped returns the sections that have no mapping.
func (r Report) Unmapped() []SectionReport {
	var out []SectionReport
	for _, s := range r.Sections {
		if s.Kind == KindNone {
			out = append(out, s)
		}
	}
	return out
}

// ToFHIR turns the document into FHIR R4 resources for the given sender: a
// Patient, a DocumentReference for the document itself, an Encounter for the
// encompassing encounter, and Condition, AllergyIntolerance,
// MedicationStatement or MedicationRequest (moodCode INT), Observation,
// DiagnosticReport, Immunization, Encounter and Procedure resources from the
// sections. Ids are fhir.StableID values keyed on the identifiers the document
// gives, so sending the same document again yields the same ids.
func (d *Document) ToFHIR(sender string) ([]fhir.Resource, Report) {
	m := &mapper{d: d, sender: sender, byKey: map[string]fhir.Resource{},
		rep: Report{Resources: map[string]int{}, Warnings: append([]string(nil), d.Warnings...)}}
	if d.ID.Valid() {
		m.docKey = []string{d.ID.Root, d.ID.Extension}
	} else {
		m.docKey = []string{"sha1", hex.EncodeToString(d.SHA1)}
	}
	m.patient()
	docRef := m.documentReference()
	if d.Encounter != nil {
		ref := m.headerEncounter()
		ctx, _ := docRef["context"].(map[string]any)
		if ctx == nil {
			ctx = map[string]any{}
			docRef["context"] = ctx
		}
		ctx["encounter"] = []any{map[string]any{"reference": ref}}
	}
	for i := range d.Sections {
		m.section(&d.Sections[i])
	}
	return m.out, m.rep
}

type mapper struct {
	d      *Document
	sender string
	docKey []string
	patRef string
	pat    fhir.Resource
	out    []fhir.Resource
	byKey  map[string]fhir.Resource
	rep    Report
	cur    *SectionReport
}

// id derives a resource id from the first usable identifier, or else from
// the document's identity and the element's path.
func (m *mapper) id(typ string, ids []II, path string) string {
	for _, i := range ids {
		if i.Valid() {
			return fhir.StableID(m.sender, typ, i.Root, i.Extension)
		}
	}
	return fhir.StableID(m.sender, typ, append(append([]string(nil), m.docKey...), path)...)
}

// add appends r and returns its reference. When an earlier resource has the
// same id (the sender gave both entries the same identifier), the two are
// the same fact if none of their identifying fields disagree: r is merged
// into the earlier one. Otherwise the sender reused an identifier for
// different facts, and r gets an id derived from its position instead.
func (m *mapper) add(r fhir.Resource, path string) string {
	key := r.Ref()
	if prev, ok := m.byKey[key]; ok {
		if !fhir.Conflict(prev, r) {
			fhir.Merge(prev, r)
			m.skip(path, "same id as an earlier entry: merged into "+key)
			return key
		}
		r["id"] = fhir.StableID(m.sender, r.Type(), append(append([]string(nil), m.docKey...), path)...)
		m.rep.Warnings = append(m.rep.Warnings, path+": id shared with an earlier, different "+r.Type()+"; identified by its position instead")
		key = r.Ref()
	}
	m.byKey[key] = r
	m.out = append(m.out, r)
	m.rep.Resources[r.Type()]++
	if m.cur != nil {
		m.cur.Mapped++
	}
	return key
}

func (m *mapper) skip(path, reason string) {
	m.rep.Skipped = append(m.rep.Skipped, Skip{Path: path, Reason: reason})
}

func (m *mapper) subject() map[string]any { return map[string]any{"reference": m.patRef} }

func cc(system, code, display string) map[string]any {
	c := map[string]any{"system": system, "code": code}
	put(c, "display", display)
	return map[string]any{"coding": []any{c}}
}

// ---- header ----

func (m *mapper) patient() {
	p := m.d.Patient
	r := fhir.New("Patient", m.id("Patient", p.IDs, p.Path))
	put(r, "identifier", identifiers(p.IDs))
	var names []any
	for _, n := range p.Names {
		names = append(names, humanName(n))
	}
	put(r, "name", names)
	var tels []any
	for _, t := range p.Telecoms {
		if cp := contactPoint(t); cp != nil {
			tels = append(tels, cp)
		}
	}
	put(r, "telecom", tels)
	switch p.Gender.Code {
	case "M":
		r["gender"] = "male"
	case "F":
		r["gender"] = "female"
	case "UN":
		r["gender"] = "other"
	default:
		if p.Gender.NullFlavor != "" {
			r["gender"] = "unknown"
		}
	}
	put(r, "birthDate", date(p.BirthTime))
	if dt := dateTime(p.DeceasedTime); dt != "" {
		r["deceasedDateTime"] = dt
	} else if p.Deceased != nil {
		r["deceasedBoolean"] = *p.Deceased
	}
	var addrs []any
	for _, a := range p.Addresses {
		addrs = append(addrs, address(a))
	}
	put(r, "address", addrs)
	if p.MaritalStatus.Code != "" {
		ms := p.MaritalStatus
		if ms.CodeSystem == "" {
			ms.CodeSystem = "2.16.840.1.113883.5.2"
		}
		put(r, "maritalStatus", concept(ms))
	}
	if p.MultipleBirthOrder > 0 {
		r["multipleBirthInteger"] = p.MultipleBirthOrder
	} else if p.MultipleBirth != nil {
		r["multipleBirthBoolean"] = *p.MultipleBirth
	}
	var comms []any
	for _, l := range p.Languages {
		c := map[string]any{"language": cc("urn:ietf:bcp:47", l.Code, "")}
		if l.Preferred != nil {
			c["preferred"] = *l.Preferred
		}
		comms = append(comms, c)
	}
	put(r, "communication", comms)
	var ext []any
	if e := raceExtension("http://hl7.org/fhir/us/core/StructureDefinition/us-core-race", p.Race, ombRace); e != nil {
		ext = append(ext, e)
	}
	if e := raceExtension("http://hl7.org/fhir/us/core/StructureDefinition/us-core-ethnicity", p.Ethnicity, ombEthnicity); e != nil {
		ext = append(ext, e)
	}
	put(r, "extension", ext)
	if p.Organization != nil && p.Organization.Name != "" {
		r["managingOrganization"] = orgRef(p.Organization)
	}
	m.pat = r
	m.patRef = m.add(r, p.Path)
}

var ombRace = map[string]bool{"1002-5": true, "2028-9": true, "2054-5": true, "2076-8": true, "2106-3": true}
var ombEthnicity = map[string]bool{"2135-2": true, "2186-5": true}

// raceExtension builds a US Core race or ethnicity extension: OMB categories,
// detailed codes, and the required text.
func raceExtension(url string, codes []CD, omb map[string]bool) map[string]any {
	var parts []any
	var texts []string
	for _, c := range codes {
		switch {
		case c.Code != "":
			slot := "detailed"
			if omb[c.Code] {
				slot = "ombCategory"
			}
			cd := c
			cd.CodeSystem = "2.16.840.1.113883.6.238"
			parts = append(parts, map[string]any{"url": slot, "valueCoding": coding(cd)})
			if c.DisplayName != "" {
				texts = append(texts, c.DisplayName)
			}
		case c.NullFlavor == "UNK" || c.NullFlavor == "ASKU":
			parts = append(parts, map[string]any{"url": "ombCategory", "valueCoding": map[string]any{
				"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": c.NullFlavor}})
			texts = append(texts, map[string]string{"UNK": "Unknown", "ASKU": "Asked but unknown"}[c.NullFlavor])
		}
	}
	if len(parts) == 0 {
		return nil
	}
	if len(texts) == 0 {
		texts = []string{"coded"}
	}
	parts = append(parts, map[string]any{"url": "text", "valueString": strings.Join(texts, ", ")})
	return map[string]any{"url": url, "extension": parts}
}

func orgRef(o *Organization) map[string]any {
	ref := map[string]any{}
	for _, i := range o.IDs {
		if id := identifier(i); id != nil {
			ref["identifier"] = id
			break
		}
	}
	put(ref, "display", o.Name)
	return ref
}

var relatesTo = map[string]string{"RPLC": "replaces", "APND": "appends", "XFRM": "transforms"}

func (m *mapper) documentReference() fhir.Resource {
	d := m.d
	r := fhir.New("DocumentReference", fhir.StableID(m.sender, "DocumentReference", m.docKey...))
	if id := identifier(d.ID); id != nil {
		r["masterIdentifier"] = id
	}
	if id := identifier(d.SetID); id != nil {
		r["identifier"] = []any{id}
	}
	r["status"] = "current"
	r["docStatus"] = "final"
	if t := concept(d.Type); t != nil {
		r["type"] = t
	} else {
		r["type"] = map[string]any{"text": "Clinical document"}
	}
	r["category"] = []any{cc("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note", "Clinical Note")}
	r["subject"] = m.subject()
	put(r, "date", instant(d.EffectiveTime))
	var authors []any
	for _, a := range d.Authors {
		ref := map[string]any{}
		for _, i := range a.IDs {
			if id := identifier(i); id != nil {
				ref["identifier"] = id
				break
			}
		}
		disp := displayName(a.Names)
		if disp == "" {
			disp = a.Device
		}
		if disp == "" && a.Organization != nil {
			disp = a.Organization.Name
		}
		put(ref, "display", disp)
		if len(ref) > 0 {
			authors = append(authors, ref)
		}
	}
	put(r, "author", authors)
	if d.Custodian != nil {
		put(r, "custodian", orgRef(d.Custodian))
	}
	var rel []any
	for _, rd := range d.RelatedDocuments {
		code, ok := relatesTo[rd.TypeCode]
		if id := identifier(rd.ID); ok && id != nil {
			rel = append(rel, map[string]any{"code": code, "target": map[string]any{"identifier": id}})
		}
	}
	put(r, "relatesTo", rel)
	put(r, "description", d.Title)
	if c := concept(d.Confidentiality); c != nil {
		r["securityLabel"] = []any{c}
	}
	att := map[string]any{"contentType": "application/hl7-cda+xml", "size": d.Size,
		"hash": base64.StdEncoding.EncodeToString(d.SHA1)}
	put(att, "language", d.Language)
	put(att, "title", d.Title)
	put(att, "creation", dateTime(d.EffectiveTime))
	format := "urn:hl7-org:sdwg:ccda-structuredBody:2.1"
	switch {
	case d.NonXMLBody != nil && d.Profile == ProfileCCDA11:
		format = "urn:hl7-org:sdwg:ccda-nonXMLBody:1.1"
	case d.NonXMLBody != nil:
		format = "urn:hl7-org:sdwg:ccda-nonXMLBody:2.1"
	case d.Profile == ProfileCCDA11:
		format = "urn:hl7-org:sdwg:ccda-structuredBody:1.1"
	case d.Profile == ProfileC32:
		format = "urn:ihe:pcc:xphr:2007"
	}
	content := []any{map[string]any{"attachment": att,
		"format": map[string]any{"system": "http://ihe.net/fhir/ihe.formatcode.fhir/CodeSystem/formatcode", "code": format}}}
	if nx := d.NonXMLBody; nx != nil {
		a := map[string]any{}
		put(a, "contentType", nx.MediaType)
		switch {
		case nx.Reference != "":
			a["url"] = nx.Reference
		case strings.EqualFold(nx.Representation, "B64"):
			put(a, "data", strings.Join(strings.Fields(nx.Content), ""))
		case nx.Content != "":
			a["data"] = base64.StdEncoding.EncodeToString([]byte(nx.Content))
		}
		if len(a) > 0 {
			content = append(content, map[string]any{"attachment": a})
		}
	}
	r["content"] = content
	ctx := map[string]any{}
	var events []any
	for _, se := range d.ServiceEvents {
		if p := period(se.Time); p != nil && ctx["period"] == nil {
			ctx["period"] = p
		}
		if c := concept(se.Code); c != nil {
			events = append(events, c)
		}
	}
	put(ctx, "event", events)
	put(r, "context", ctx)
	m.add(r, "/ClinicalDocument")
	return r
}

func (m *mapper) headerEncounter() string {
	e := m.d.Encounter
	r := fhir.New("Encounter", m.id("Encounter", e.IDs, e.Path))
	put(r, "identifier", identifiers(e.IDs))
	if e.Time.High != "" {
		r["status"] = "finished"
	} else {
		r["status"] = "unknown"
	}
	r["class"] = encounterClass(e.Code)
	put(r, "type", encounterType(e.Code))
	r["subject"] = m.subject()
	put(r, "period", period(e.Time))
	if dd := concept(e.DischargeDisposition); dd != nil {
		r["hospitalization"] = map[string]any{"dischargeDisposition": dd}
	}
	if e.Location != "" {
		r["location"] = []any{map[string]any{"location": map[string]any{"display": e.Location}}}
	}
	if n := displayName(e.Responsible); n != "" {
		r["participant"] = []any{map[string]any{"individual": map[string]any{"display": n}}}
	}
	return m.add(r, e.Path)
}

// encounterType is the code as Encounter.type, unless it is only an ActCode
// class (which goes to Encounter.class).
func encounterType(code CD) []any {
	c := concept(code)
	if c == nil || code.CodeSystem == oidActCode && code.Code != "" && code.OriginalText == "" && len(code.Translations) == 0 {
		return nil
	}
	return []any{c}
}

func encounterClass(code CD) map[string]any {
	if code.CodeSystem == oidActCode && code.Code != "" {
		return coding(code)
	}
	for _, t := range code.Translations {
		if t.CodeSystem == oidActCode {
			return coding(t)
		}
	}
	return map[string]any{"system": "http://terminology.hl7.org/CodeSystem/v3-NullFlavor", "code": "UNK", "display": "unknown"}
}

// ---- sections ----

const tmplComment = "2.16.840.1.113883.10.20.22.4.64"

func (m *mapper) section(s *Section) {
	sr := SectionReport{Path: s.Path, Title: s.Title, Code: s.Code.Code, Kind: s.Kind, Entries: len(s.Entries)}
	for _, t := range s.TemplateIDs {
		v := t.Root
		if t.Extension != "" {
			v += ":" + t.Extension
		}
		sr.TemplateIDs = append(sr.TemplateIDs, v)
	}
	m.rep.Sections = append(m.rep.Sections, sr)
	m.cur = &m.rep.Sections[len(m.rep.Sections)-1]
	defer func() { m.cur = nil }()
	if s.Kind == KindNone {
		return
	}
	for _, e := range s.Entries {
		if hasTemplate(e.TemplateIDs, tmplComment) {
			m.skip(e.Path, "comment activity (narrative only)")
			continue
		}
		m.entry(s.Kind, e)
	}
}

func (m *mapper) entry(k Kind, e Entry) {
	el := e.el
	switch {
	case k == KindProblems && e.Element == "act":
		m.eachObservation(el, "problem concern act holds no problem observation", func(o *etree.Element) {
			m.condition(o, el, "problem-list-item", "")
		})
	case k == KindProblems && e.Element == "observation":
		m.condition(el, nil, "problem-list-item", "")
	case k == KindAllergies && e.Element == "act":
		m.eachObservation(el, "allergy concern act holds no allergy observation", func(o *etree.Element) {
			m.allergy(o, el)
		})
	case k == KindAllergies && e.Element == "observation":
		m.allergy(el, nil)
	case k == KindMedications && e.Element == "substanceAdministration":
		m.medication(el)
	case k == KindResults && e.Element == "organizer":
		m.resultOrganizer(el)
	case (k == KindResults || k == KindVitalSigns || k == KindSocialHistory) && e.Element == "observation":
		m.observation(el, categoryOf(k), Interval{})
	case k == KindVitalSigns && e.Element == "organizer":
		t := interval(child(el, "effectiveTime"))
		n := 0
		for _, c := range children(el, "component") {
			if o := child(c, "observation"); o != nil {
				m.observation(o, "vital-signs", t)
				n++
			}
		}
		if n == 0 {
			m.skip(e.Path, "vital signs organizer holds no observation")
		}
	case k == KindImmunizations && e.Element == "substanceAdministration":
		m.immunization(el)
	case k == KindEncounters && e.Element == "encounter":
		m.encounter(el)
	case k == KindProcedures && (e.Element == "procedure" || e.Element == "observation" || e.Element == "act"):
		m.procedure(el)
	default:
		m.skip(e.Path, "<"+e.Element+"> is not an entry this "+string(k)+" section mapping reads")
	}
}

func categoryOf(k Kind) string {
	switch k {
	case KindVitalSigns:
		return "vital-signs"
	case KindSocialHistory:
		return "social-history"
	}
	return "laboratory"
}

// eachObservation calls f for every observation in el's entryRelationships.
func (m *mapper) eachObservation(el *etree.Element, none string, f func(*etree.Element)) {
	n := 0
	for _, er := range children(el, "entryRelationship") {
		if o := child(er, "observation"); o != nil {
			f(o)
			n++
		}
	}
	if n == 0 {
		m.skip(m.d.path(el), none)
	}
}

// related returns the observations among el's entryRelationships that carry
// one of the template roots or, failing that, the given code.
func related(el *etree.Element, code string, roots ...string) []*etree.Element {
	var out []*etree.Element
	for _, er := range children(el, "entryRelationship") {
		o := child(er, "observation")
		if o == nil {
			continue
		}
		match := false
		for _, t := range children(o, "templateId") {
			for _, r := range roots {
				if attr(t, "root") == r {
					match = true
				}
			}
		}
		if !match && code != "" && attr(child(o, "code"), "code") == code {
			match = true
		}
		if match {
			out = append(out, o)
		}
	}
	return out
}

// authorTime returns the first author/time of el (or of the fallback).
func authorTime(els ...*etree.Element) string {
	for _, el := range els {
		if t := dateTime(attr(walk(el, "author", "time"), "value")); t != "" {
			return t
		}
	}
	return ""
}

// problemTypeCodes are the codes a Problem Observation's code carries to say
// what kind of problem its value is.
var problemTypeCodes = map[string]bool{"55607006": true, "404684003": true, "282291009": true, "64572001": true,
	"248536006": true, "418799008": true, "409586006": true, "75326-9": true, "29308-4": true, "75325-1": true,
	"75324-8": true, "75323-0": true, "75322-8": true, "75321-0": true, "75318-6": true, "75315-2": true,
	"ASSERTION": true, "373930000": true}

var statusValues = map[string]string{"55561003": "active", "73425007": "inactive", "413322009": "resolved"}

func (m *mapper) condition(o, concern *etree.Element, category, encRef string) string {
	d := m.d
	path := m.d.path(o)
	c := d.cd(child(o, "value"))
	if c.IsZero() {
		if code := d.cd(child(o, "code")); !code.IsZero() && !problemTypeCodes[code.Code] {
			c = code
		}
	}
	cpt := concept(c)
	if cpt == nil {
		m.skip(path, "problem observation names no problem (value empty or nullFlavor)")
		return ""
	}
	r := fhir.New("Condition", m.id("Condition", d.iis(o, "id"), path))
	put(r, "identifier", identifiers(d.iis(o, "id")))
	t := interval(child(o, "effectiveTime"))
	status := ""
	for _, so := range related(o, "33999-4", "2.16.840.1.113883.10.20.22.4.6") {
		status = statusValues[attr(child(so, "value"), "code")]
	}
	if status == "" && t.High != "" {
		status = "resolved"
	}
	if status == "" && concern != nil {
		switch attr(child(concern, "statusCode"), "code") {
		case "completed":
			status = "inactive"
		case "suspended":
			status = "inactive"
		}
	}
	if status == "" {
		status = "active"
	}
	r["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-clinical", status, "")
	if attr(o, "negationInd") == "true" {
		r["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/condition-ver-status", "refuted", "")
	}
	disp := map[string]string{"problem-list-item": "Problem List Item", "encounter-diagnosis": "Encounter Diagnosis"}[category]
	r["category"] = []any{cc("http://terminology.hl7.org/CodeSystem/condition-category", category, disp)}
	r["code"] = cpt
	r["subject"] = m.subject()
	if encRef != "" {
		r["encounter"] = map[string]any{"reference": encRef}
	}
	onset := t.Low
	if onset == "" && t.High == "" {
		onset = t.Value
	}
	put(r, "onsetDateTime", dateTime(onset))
	put(r, "abatementDateTime", dateTime(t.High))
	put(r, "recordedDate", authorTime(o, concern))
	return m.add(r, path)
}

// allergyKinds maps the allergy observation's value (the kind of reaction)
// to AllergyIntolerance type and category.
var allergyKinds = map[string][2]string{
	"419199007": {"allergy", ""}, "416098002": {"allergy", "medication"}, "59037007": {"intolerance", "medication"},
	"414285001": {"allergy", "food"}, "235719002": {"intolerance", "food"}, "418471000": {"", "food"},
	"419511003": {"", "medication"}, "418038007": {"", ""}, "420134006": {"", ""}, "426232007": {"allergy", "environment"},
	"232347008": {"allergy", "environment"}, "300910009": {"allergy", "environment"}, "782197009": {"intolerance", ""},
}

// noKnown maps the kind of allergy to the SNOMED CT "no known ... allergy"
// concept used when the observation is negated with no substance.
var noKnown = map[string][2]string{
	"416098002": {"409137002", "No known drug allergy"}, "419511003": {"409137002", "No known drug allergy"},
	"414285001": {"429625007", "No known food allergy"}, "418471000": {"429625007", "No known food allergy"},
	"426232007": {"428607008", "No known environmental allergy"},
}

var severities = map[string]string{"255604002": "mild", "6736007": "moderate", "24484000": "severe",
	"371923003": "moderate", "371924009": "severe", "399166001": "severe", "442452003": "severe"}

func (m *mapper) allergy(o, concern *etree.Element) {
	d := m.d
	path := m.d.path(o)
	kind := attr(child(o, "value"), "code")
	sub := d.cd(walk(o, "participant", "participantRole", "playingEntity", "code"))
	if sub.IsZero() {
		sub = CD{OriginalText: text(walk(o, "participant", "participantRole", "playingEntity", "name"))}
	}
	negated := attr(o, "negationInd") == "true"
	code := concept(sub)
	if negated && code == nil {
		nk, ok := noKnown[kind]
		if !ok {
			nk = [2]string{"716186003", "No known allergy"}
		}
		code = cc("http://snomed.info/sct", nk[0], nk[1])
		negated = false
	}
	if code == nil {
		m.skip(path, "allergy observation names no substance")
		return
	}
	r := fhir.New("AllergyIntolerance", m.id("AllergyIntolerance", d.iis(o, "id"), path))
	put(r, "identifier", identifiers(d.iis(o, "id")))
	t := interval(child(o, "effectiveTime"))
	status := ""
	for _, so := range related(o, "33999-4", "2.16.840.1.113883.10.20.22.4.28") {
		status = statusValues[attr(child(so, "value"), "code")]
	}
	if status == "" && t.High != "" {
		status = "resolved"
	}
	if status == "" && concern != nil && attr(child(concern, "statusCode"), "code") == "completed" {
		status = "inactive"
	}
	if status == "" {
		status = "active"
	}
	r["clinicalStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", status, "")
	if negated {
		r["verificationStatus"] = cc("http://terminology.hl7.org/CodeSystem/allergyintolerance-verification", "refuted", "")
	}
	if k, ok := allergyKinds[kind]; ok {
		put(r, "type", k[0])
		if k[1] != "" {
			r["category"] = []any{k[1]}
		}
	}
	r["code"] = code
	r["patient"] = m.subject()
	onset := t.Low
	if onset == "" {
		onset = t.Value
	}
	put(r, "onsetDateTime", dateTime(onset))
	put(r, "recordedDate", authorTime(o, concern))
	for _, co := range related(o, "82606-5", "2.16.840.1.113883.10.20.22.4.145") {
		switch attr(child(co, "value"), "code") {
		case "CRITL":
			r["criticality"] = "low"
		case "CRITH":
			r["criticality"] = "high"
		case "CRITU":
			r["criticality"] = "unable-to-assess"
		}
	}
	overall := ""
	for _, so := range related(o, "SEV", "2.16.840.1.113883.10.20.22.4.8") {
		overall = severities[attr(child(so, "value"), "code")]
	}
	var reactions []any
	for _, ro := range related(o, "", "2.16.840.1.113883.10.20.22.4.9") {
		man := concept(d.cd(child(ro, "value")))
		if man == nil {
			continue
		}
		rx := map[string]any{"manifestation": []any{man}}
		sev := overall
		for _, so := range related(ro, "SEV", "2.16.840.1.113883.10.20.22.4.8") {
			if s := severities[attr(child(so, "value"), "code")]; s != "" {
				sev = s
			}
		}
		put(rx, "severity", sev)
		rt := interval(child(ro, "effectiveTime"))
		if rt.Low != "" {
			put(rx, "onset", dateTime(rt.Low))
		} else {
			put(rx, "onset", dateTime(rt.Value))
		}
		reactions = append(reactions, rx)
	}
	put(r, "reaction", reactions)
	m.add(r, path)
}

var medStatementStatus = map[string]string{"active": "active", "completed": "completed", "aborted": "stopped",
	"suspended": "on-hold", "held": "on-hold", "cancelled": "not-taken", "nullified": "entered-in-error", "new": "intended"}
var medRequestStatus = map[string]string{"active": "active", "completed": "completed", "aborted": "stopped",
	"suspended": "on-hold", "held": "on-hold", "cancelled": "cancelled", "nullified": "entered-in-error", "new": "draft"}

func (m *mapper) medication(sa *etree.Element) {
	d := m.d
	path := m.d.path(sa)
	mat := walk(sa, "consumable", "manufacturedProduct", "manufacturedMaterial")
	med := concept(d.cd(child(mat, "code")))
	if med == nil {
		if n := text(child(mat, "name")); n != "" {
			med = map[string]any{"text": n}
		}
	}
	if med == nil {
		m.skip(path, "medication activity names no drug")
		return
	}
	mood := attr(sa, "moodCode")
	status := attr(child(sa, "statusCode"), "code")
	ids := d.iis(sa, "id")
	dosage, span := m.dosage(sa)
	var r fhir.Resource
	switch mood {
	case "INT", "RQO", "PRP", "PRMS", "ARQ":
		r = fhir.New("MedicationRequest", m.id("MedicationRequest", ids, path))
		put(r, "identifier", identifiers(ids))
		st := medRequestStatus[status]
		if st == "" {
			st = "unknown"
		}
		r["status"] = st
		intent := "order"
		switch {
		case mood == "PRP":
			intent = "proposal"
		case hasTemplate(d.iis(sa, "templateId"), "2.16.840.1.113883.10.20.22.4.42"):
			intent = "plan"
		}
		r["intent"] = intent
		r["medicationCodeableConcept"] = med
		r["subject"] = m.subject()
		put(r, "authoredOn", authorTime(sa))
		if len(dosage) > 0 {
			if p := period(span); p != nil {
				timing, _ := dosage["timing"].(map[string]any)
				if timing == nil {
					timing = map[string]any{}
					dosage["timing"] = timing
				}
				rep, _ := timing["repeat"].(map[string]any)
				if rep == nil {
					rep = map[string]any{}
					timing["repeat"] = rep
				}
				rep["boundsPeriod"] = p
			}
			r["dosageInstruction"] = []any{dosage}
		} else if p := period(span); p != nil {
			r["dosageInstruction"] = []any{map[string]any{"timing": map[string]any{"repeat": map[string]any{"boundsPeriod": p}}}}
		}
	default:
		r = fhir.New("MedicationStatement", m.id("MedicationStatement", ids, path))
		put(r, "identifier", identifiers(ids))
		st := medStatementStatus[status]
		if st == "" {
			st = "unknown"
		}
		if attr(sa, "negationInd") == "true" {
			st = "not-taken"
		}
		r["status"] = st
		r["medicationCodeableConcept"] = med
		r["subject"] = m.subject()
		setEffective(r, "effective", span)
		put(r, "dateAsserted", authorTime(sa))
		if len(dosage) > 0 {
			r["dosage"] = []any{dosage}
		}
	}
	m.add(r, path)
}

var timingUnits = map[string]string{"s": "s", "min": "min", "h": "h", "hr": "h", "d": "d", "wk": "wk", "mo": "mo", "a": "a"}

// dosage reads the dose, route, timing and instructions of a substance
// administration, and returns its IVL_TS (the span the medication covers).
func (m *mapper) dosage(sa *etree.Element) (map[string]any, Interval) {
	d := m.d
	ds := map[string]any{}
	var span Interval
	var repeat map[string]any
	for _, et := range children(sa, "effectiveTime") {
		switch xsiType(et) {
		case "PIVL_TS":
			p := child(et, "period")
			u := timingUnits[attr(p, "unit")]
			v, ok := decimal(attr(p, "value"))
			if u == "" || !ok {
				continue
			}
			repeat = map[string]any{"period": v, "periodUnit": u, "frequency": 1}
			if attr(et, "institutionSpecified") == "true" && u == "h" {
				if n, err := strconv.Atoi(string(v)); err == nil && n > 0 && 24%n == 0 {
					repeat = map[string]any{"frequency": 24 / n, "period": 1, "periodUnit": "d"}
				}
			}
		case "EIVL_TS":
			if ev := attr(child(et, "event"), "code"); ev != "" {
				repeat = map[string]any{"when": []any{ev}}
			}
		default:
			if span.IsZero() {
				span = interval(et)
			}
		}
	}
	if repeat != nil {
		ds["timing"] = map[string]any{"repeat": repeat}
	}
	put(ds, "text", d.narrative(child(sa, "text")))
	put(ds, "route", concept(d.cd(child(sa, "routeCode"))))
	put(ds, "site", concept(d.cd(child(sa, "approachSiteCode"))))
	if dq := child(sa, "doseQuantity"); dq != nil {
		if q := quantity(attr(dq, "value"), attr(dq, "unit")); q != nil {
			ds["doseAndRate"] = []any{map[string]any{"doseQuantity": q}}
		} else {
			lo, hi := quantity(attr(child(dq, "low"), "value"), attr(child(dq, "low"), "unit")), quantity(attr(child(dq, "high"), "value"), attr(child(dq, "high"), "unit"))
			rng := map[string]any{}
			put(rng, "low", lo)
			put(rng, "high", hi)
			if len(rng) > 0 {
				ds["doseAndRate"] = []any{map[string]any{"doseRange": rng}}
			}
		}
	}
	return ds, span
}

var obsStatus = map[string]string{"completed": "final", "active": "preliminary", "aborted": "cancelled",
	"cancelled": "cancelled", "nullified": "entered-in-error"}

var dataAbsent = map[string]string{"UNK": "unknown", "ASKU": "asked-unknown", "NAV": "temp-unknown",
	"NASK": "not-asked", "MSK": "masked", "NA": "not-applicable", "NI": "unknown", "OTH": "unsupported",
	"NAVU": "unknown", "QS": "unknown", "TRC": "unknown", "NP": "unknown", "NINF": "unknown", "PINF": "unknown"}

const (
	tmplSmoking   = "2.16.840.1.113883.10.20.22.4.78"
	tmplBirthSex  = "2.16.840.1.113883.10.20.22.4.200"
	loincSmoking  = "72166-2"
	loincBirthSex = "76689-9"
)

// observation maps a result, vital sign or social history observation;
// orgTime is the enclosing organizer's time, used when the observation has
// none. It returns the reference, or "" when nothing was mapped.
func (m *mapper) observation(o *etree.Element, category string, orgTime Interval) string {
	d := m.d
	path := m.d.path(o)
	mood := attr(o, "moodCode")
	if mood != "" && mood != "EVN" {
		m.skip(path, "observation in mood "+mood+" (planned or requested) is not mapped")
		return ""
	}
	tids := d.iis(o, "templateId")
	code := d.cd(child(o, "code"))
	if category == "social-history" {
		if hasTemplate(tids, tmplBirthSex) || code.Code == loincBirthSex {
			m.birthSex(o)
			return ""
		}
		if hasTemplate(tids, tmplSmoking, "2.16.840.1.113883.10.22.4.78") && code.Code != loincSmoking {
			code = CD{Code: loincSmoking, CodeSystem: oidLOINC, DisplayName: "Tobacco smoking status"}
		}
	}
	cpt := concept(code)
	if cpt == nil {
		m.skip(path, "observation has no code")
		return ""
	}
	ids := d.iis(o, "id")
	r := fhir.New("Observation", m.id("Observation", ids, path))
	put(r, "identifier", identifiers(ids))
	st := obsStatus[attr(child(o, "statusCode"), "code")]
	if st == "" {
		st = "final"
		if attr(child(o, "statusCode"), "code") != "" {
			st = "unknown"
		}
	}
	r["status"] = st
	r["category"] = []any{cc("http://terminology.hl7.org/CodeSystem/observation-category", category,
		map[string]string{"laboratory": "Laboratory", "vital-signs": "Vital Signs", "social-history": "Social History"}[category])}
	r["code"] = cpt
	r["subject"] = m.subject()
	t := interval(child(o, "effectiveTime"))
	if t.IsZero() {
		t = orgTime
	}
	setEffective(r, "effective", t)
	m.value(r, child(o, "value"), path)
	var interp []any
	for _, ic := range children(o, "interpretationCode") {
		c := d.cd(ic)
		if c.Code != "" && c.CodeSystem == "" {
			c.CodeSystem = "2.16.840.1.113883.5.83"
		}
		if x := concept(c); x != nil {
			interp = append(interp, x)
		}
	}
	put(r, "interpretation", interp)
	var ranges []any
	for _, rr := range children(o, "referenceRange") {
		or := child(rr, "observationRange")
		rg := map[string]any{}
		if v := child(or, "value"); v != nil {
			put(rg, "low", quantity(attr(child(v, "low"), "value"), attr(child(v, "low"), "unit")))
			put(rg, "high", quantity(attr(child(v, "high"), "value"), attr(child(v, "high"), "unit")))
		}
		put(rg, "text", d.narrative(child(or, "text")))
		if len(rg) > 0 {
			ranges = append(ranges, rg)
		}
	}
	put(r, "referenceRange", ranges)
	return m.add(r, path)
}

// value sets Observation.value[x] from an HL7 ANY value by its xsi:type.
func (m *mapper) value(r fhir.Resource, v *etree.Element, path string) {
	if v == nil {
		return
	}
	d := m.d
	if nf := attr(v, "nullFlavor"); nf != "" && attr(v, "value") == "" && attr(v, "code") == "" {
		if c := d.cd(v); c.OriginalText != "" {
			r["valueString"] = c.OriginalText
			return
		}
		reason := dataAbsent[nf]
		if reason == "" {
			reason = "unknown"
		}
		r["dataAbsentReason"] = cc("http://terminology.hl7.org/CodeSystem/data-absent-reason", reason, "")
		return
	}
	typ := xsiType(v)
	if typ == "" {
		switch {
		case attr(v, "code") != "":
			typ = "CD"
		case attr(v, "value") != "":
			typ = "PQ"
		default:
			typ = "ST"
		}
	}
	switch typ {
	case "PQ", "REAL", "MO":
		unit := attr(v, "unit")
		if typ == "MO" {
			unit = ""
		}
		if q := quantity(attr(v, "value"), unit); q != nil {
			if typ == "REAL" {
				delete(q, "unit")
				delete(q, "system")
				delete(q, "code")
			}
			r["valueQuantity"] = q
		} else if s := strings.TrimSpace(attr(v, "value") + " " + unit); s != "" {
			r["valueString"] = s
			m.rep.Warnings = append(m.rep.Warnings, m.d.path(v)+": quantity value is not a number; kept as text")
		}
	case "IVL_PQ":
		rg := map[string]any{}
		put(rg, "low", quantity(attr(child(v, "low"), "value"), attr(child(v, "low"), "unit")))
		put(rg, "high", quantity(attr(child(v, "high"), "value"), attr(child(v, "high"), "unit")))
		if len(rg) > 0 {
			r["valueRange"] = rg
		} else if q := quantity(attr(v, "value"), attr(v, "unit")); q != nil {
			r["valueQuantity"] = q
		}
	case "CD", "CE", "CV", "CO", "CS":
		put(r, "valueCodeableConcept", concept(d.cd(v)))
	case "INT":
		if n, err := strconv.Atoi(attr(v, "value")); err == nil {
			r["valueInteger"] = n
		}
	case "BL":
		switch attr(v, "value") {
		case "true":
			r["valueBoolean"] = true
		case "false":
			r["valueBoolean"] = false
		}
	case "TS":
		put(r, "valueDateTime", dateTime(attr(v, "value")))
	case "RTO", "RTO_PQ_PQ", "RTO_INT_INT", "RTO_QTY_QTY":
		num, den := child(v, "numerator"), child(v, "denominator")
		ratio := map[string]any{}
		put(ratio, "numerator", quantity(attr(num, "value"), attr(num, "unit")))
		put(ratio, "denominator", quantity(attr(den, "value"), attr(den, "unit")))
		if len(ratio) > 0 {
			r["valueRatio"] = ratio
		}
	default: // ST, ED, and anything textual
		put(r, "valueString", d.narrative(v))
	}
}

func (m *mapper) birthSex(o *etree.Element) {
	v := child(o, "value")
	code := attr(v, "code")
	if code == "" && attr(v, "nullFlavor") == "UNK" {
		code = "UNK"
	}
	if code != "M" && code != "F" && code != "UNK" {
		m.skip(m.d.path(o), "birth sex observation has no usable value")
		return
	}
	ext, _ := m.pat["extension"].([]any)
	m.pat["extension"] = append(ext, map[string]any{
		"url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex", "valueCode": code})
	if m.cur != nil {
		m.cur.Mapped++
	}
}

var reportStatus = map[string]string{"completed": "final", "active": "partial", "aborted": "cancelled",
	"cancelled": "cancelled", "nullified": "entered-in-error"}

func (m *mapper) resultOrganizer(org *etree.Element) {
	d := m.d
	path := m.d.path(org)
	t := interval(child(org, "effectiveTime"))
	var results []any
	first := Interval{}
	for _, c := range children(org, "component") {
		o := child(c, "observation")
		if o == nil {
			continue
		}
		if first.IsZero() {
			first = interval(child(o, "effectiveTime"))
		}
		if ref := m.observation(o, "laboratory", t); ref != "" {
			results = append(results, map[string]any{"reference": ref})
		}
	}
	code := concept(d.cd(child(org, "code")))
	if code == nil {
		m.skip(path, "result organizer has no code; its observations are kept without a report")
		return
	}
	ids := d.iis(org, "id")
	r := fhir.New("DiagnosticReport", m.id("DiagnosticReport", ids, path))
	put(r, "identifier", identifiers(ids))
	st := reportStatus[attr(child(org, "statusCode"), "code")]
	if st == "" {
		st = "unknown"
	}
	r["status"] = st
	r["category"] = []any{cc("http://terminology.hl7.org/CodeSystem/v2-0074", "LAB", "Laboratory")}
	r["code"] = code
	r["subject"] = m.subject()
	if t.IsZero() {
		t = first
	}
	setEffective(r, "effective", t)
	put(r, "result", results)
	m.add(r, path)
}

func (m *mapper) immunization(sa *etree.Element) {
	d := m.d
	path := m.d.path(sa)
	if mood := attr(sa, "moodCode"); mood != "" && mood != "EVN" {
		m.skip(path, "immunization in mood "+mood+" (planned) is not mapped")
		return
	}
	mat := walk(sa, "consumable", "manufacturedProduct", "manufacturedMaterial")
	vaccine := concept(d.cd(child(mat, "code")))
	if vaccine == nil {
		if n := text(child(mat, "name")); n != "" {
			vaccine = map[string]any{"text": n}
		}
	}
	if vaccine == nil {
		m.skip(path, "immunization activity names no vaccine")
		return
	}
	ids := d.iis(sa, "id")
	r := fhir.New("Immunization", m.id("Immunization", ids, path))
	put(r, "identifier", identifiers(ids))
	switch {
	case attr(sa, "negationInd") == "true":
		r["status"] = "not-done"
		for _, ro := range related(sa, "", "2.16.840.1.113883.10.20.22.4.53") {
			put(r, "statusReason", concept(d.cd(child(ro, "code"))))
		}
	case attr(child(sa, "statusCode"), "code") == "nullified":
		r["status"] = "entered-in-error"
	default:
		r["status"] = "completed"
	}
	r["vaccineCode"] = vaccine
	r["patient"] = m.subject()
	t := interval(child(sa, "effectiveTime"))
	when := t.Value
	if when == "" {
		when = t.Low
	}
	if dt := dateTime(when); dt != "" {
		r["occurrenceDateTime"] = dt
	} else {
		r["occurrenceString"] = "unknown"
	}
	put(r, "lotNumber", text(child(mat, "lotNumberText")))
	if mo := text(walk(sa, "consumable", "manufacturedProduct", "manufacturerOrganization", "name")); mo != "" {
		r["manufacturer"] = map[string]any{"display": mo}
	}
	put(r, "route", concept(d.cd(child(sa, "routeCode"))))
	put(r, "site", concept(d.cd(child(sa, "approachSiteCode"))))
	if dq := child(sa, "doseQuantity"); dq != nil {
		put(r, "doseQuantity", quantity(attr(dq, "value"), attr(dq, "unit")))
	}
	m.add(r, path)
}

var encounterStatus = map[string]string{"completed": "finished", "active": "in-progress", "aborted": "cancelled",
	"cancelled": "cancelled", "nullified": "entered-in-error"}

func (m *mapper) encounter(el *etree.Element) {
	d := m.d
	path := m.d.path(el)
	if mood := attr(el, "moodCode"); mood != "" && mood != "EVN" {
		m.skip(path, "encounter in mood "+mood+" (planned) is not mapped")
		return
	}
	ids := d.iis(el, "id")
	code := d.cd(child(el, "code"))
	r := fhir.New("Encounter", m.id("Encounter", ids, path))
	put(r, "identifier", identifiers(ids))
	t := interval(child(el, "effectiveTime"))
	st := encounterStatus[attr(child(el, "statusCode"), "code")]
	if st == "" {
		st = "unknown"
		if t.High != "" || t.Value != "" {
			st = "finished"
		}
	}
	r["status"] = st
	r["class"] = encounterClass(code)
	put(r, "type", encounterType(code))
	r["subject"] = m.subject()
	put(r, "period", period(t))
	var parts []any
	for _, pf := range children(el, "performer") {
		ae := child(pf, "assignedEntity")
		ind := map[string]any{}
		for _, i := range d.iis(ae, "id") {
			if id := identifier(i); id != nil {
				ind["identifier"] = id
				break
			}
		}
		put(ind, "display", displayName(d.names(child(ae, "assignedPerson"))))
		if len(ind) > 0 {
			parts = append(parts, map[string]any{"individual": ind})
		}
	}
	put(r, "participant", parts)
	var locs []any
	for _, p := range children(el, "participant") {
		if attr(p, "typeCode") != "LOC" {
			continue
		}
		if n := text(walk(p, "participantRole", "playingEntity", "name")); n != "" {
			locs = append(locs, map[string]any{"location": map[string]any{"display": n}})
		}
	}
	put(r, "location", locs)
	if dd := concept(d.cd(childNS(el, spSDTC, "dischargeDispositionCode"))); dd != nil {
		r["hospitalization"] = map[string]any{"dischargeDisposition": dd}
	}
	var reasons []any
	for _, ro := range related(el, "", "2.16.840.1.113883.10.20.22.4.19") {
		if c := concept(d.cd(child(ro, "value"))); c != nil {
			reasons = append(reasons, c)
		}
	}
	put(r, "reasonCode", reasons)
	ref := m.add(r, path)
	var diags []any
	for _, er := range children(el, "entryRelationship") {
		act := child(er, "act")
		if act == nil || !hasTemplate(d.iis(act, "templateId"), "2.16.840.1.113883.10.20.22.4.80") {
			continue
		}
		for _, er2 := range children(act, "entryRelationship") {
			if o := child(er2, "observation"); o != nil {
				if cref := m.condition(o, act, "encounter-diagnosis", ref); cref != "" {
					diags = append(diags, map[string]any{"condition": map[string]any{"reference": cref}})
				}
			}
		}
	}
	if len(diags) > 0 {
		m.byKey[ref]["diagnosis"] = diags
	}
}

var procedureStatus = map[string]string{"completed": "completed", "active": "in-progress", "aborted": "stopped",
	"cancelled": "not-done", "new": "preparation", "held": "on-hold", "suspended": "on-hold", "nullified": "entered-in-error"}

func (m *mapper) procedure(el *etree.Element) {
	d := m.d
	path := m.d.path(el)
	if mood := attr(el, "moodCode"); mood != "" && mood != "EVN" {
		m.skip(path, "procedure in mood "+mood+" (planned) is not mapped")
		return
	}
	code := concept(d.cd(child(el, "code")))
	if code == nil {
		m.skip(path, "procedure has no code")
		return
	}
	ids := d.iis(el, "id")
	r := fhir.New("Procedure", m.id("Procedure", ids, path))
	put(r, "identifier", identifiers(ids))
	st := procedureStatus[attr(child(el, "statusCode"), "code")]
	if st == "" {
		st = "unknown"
	}
	if attr(el, "negationInd") == "true" {
		st = "not-done"
	}
	r["status"] = st
	r["code"] = code
	r["subject"] = m.subject()
	setEffective(r, "performed", interval(child(el, "effectiveTime")))
	var sites []any
	for _, ts := range children(el, "targetSiteCode") {
		if c := concept(d.cd(ts)); c != nil {
			sites = append(sites, c)
		}
	}
	put(r, "bodySite", sites)
	m.add(r, path)
}

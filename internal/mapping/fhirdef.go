package mapping

import (
	"fmt"
	"sort"
	"strings"
)

// A small, hand-written subset of the FHIR R4 structure definitions: the
// resource types hiegw produces and the data types they use. It serves twice:
// at load time to refuse element paths that do not exist (a typo in a mapping
// file is a located error), and at run time to validate every produced
// resource (cardinality, required elements, primitive formats, required
// value-set bindings).
//
// Each line: "Type: element..." where an element is name[*][!]:type[|type...]
// ("*" repeats, "!" is required, "name[x]" is a choice, "{a,b}" a required
// binding). Backbone elements name their own type, e.g. "Patient.link".
const fhirDefs = `
Element: extension*:Extension
Extension: url!:uri extension*:Extension value[x]:string|code|boolean|integer|decimal|dateTime|date|uri|Coding|CodeableConcept|Quantity|Reference|Identifier|Period|Attachment
Identifier: use:code{usual,official,temp,secondary,old} type:CodeableConcept system:uri value:string period:Period assigner:Reference
HumanName: use:code{usual,official,temp,nickname,anonymous,old,maiden} text:string family:string given*:string prefix*:string suffix*:string period:Period
Address: use:code{home,work,temp,old,billing} type:code{postal,physical,both} text:string line*:string city:string district:string state:string postalCode:string country:string period:Period
ContactPoint: system:code{phone,fax,email,pager,url,sms,other} value:string use:code{home,work,temp,old,mobile} rank:positiveInt period:Period
CodeableConcept: coding*:Coding text:string
Coding: system:uri version:string code:code display:string userSelected:boolean
Reference: reference:string type:uri identifier:Identifier display:string
Period: start:dateTime end:dateTime
Quantity: value:decimal comparator:code{<,<=,>=,>} unit:string system:uri code:code
Range: low:Quantity high:Quantity
Ratio: numerator:Quantity denominator:Quantity
Attachment: contentType:code language:code data:base64Binary url:url size:unsignedInt hash:base64Binary title:string creation:dateTime
Annotation: author[x]:Reference|string time:dateTime text!:markdown
Timing: event*:dateTime repeat:Timing.repeat code:CodeableConcept
Timing.repeat: bounds[x]:Range|Period count:positiveInt countMax:positiveInt duration:decimal durationMax:decimal durationUnit:code{s,min,h,d,wk,mo,a} frequency:positiveInt frequencyMax:positiveInt period:decimal periodMax:decimal periodUnit:code{s,min,h,d,wk,mo,a} dayOfWeek*:code{mon,tue,wed,thu,fri,sat,sun} timeOfDay*:time when*:code offset:unsignedInt
Dosage: sequence:integer text:string timing:Timing asNeeded[x]:boolean|CodeableConcept site:CodeableConcept route:CodeableConcept method:CodeableConcept doseAndRate*:Dosage.doseAndRate
Dosage.doseAndRate: type:CodeableConcept dose[x]:Range|Quantity rate[x]:Ratio|Range|Quantity
Meta: versionId:id lastUpdated:instant source:uri profile*:canonical tag*:Coding

Patient: identifier*:Identifier active:boolean name*:HumanName telecom*:ContactPoint gender:code{male,female,other,unknown} birthDate:date deceased[x]:boolean|dateTime address*:Address maritalStatus:CodeableConcept multipleBirth[x]:boolean|integer contact*:Patient.contact communication*:Patient.communication generalPractitioner*:Reference managingOrganization:Reference link*:Patient.link
Patient.contact: relationship*:CodeableConcept name:HumanName telecom*:ContactPoint address:Address gender:code{male,female,other,unknown} organization:Reference period:Period
Patient.communication: language!:CodeableConcept preferred:boolean
Patient.link: other!:Reference type!:code{replaced-by,replaces,refer,seealso}

Encounter: identifier*:Identifier status!:code{planned,arrived,triaged,in-progress,onleave,finished,cancelled,entered-in-error,unknown} class!:Coding type*:CodeableConcept serviceType:CodeableConcept priority:CodeableConcept subject:Reference participant*:Encounter.participant period:Period reasonCode*:CodeableConcept diagnosis*:Encounter.diagnosis hospitalization:Encounter.hospitalization location*:Encounter.location serviceProvider:Reference
Encounter.diagnosis: condition!:Reference use:CodeableConcept rank:positiveInt
Encounter.participant: type*:CodeableConcept period:Period individual:Reference
Encounter.hospitalization: preAdmissionIdentifier:Identifier admitSource:CodeableConcept reAdmission:CodeableConcept dischargeDisposition:CodeableConcept
Encounter.location: location!:Reference status:code{planned,active,reserved,completed} period:Period

Observation: identifier*:Identifier basedOn*:Reference status!:code{registered,preliminary,final,amended,corrected,cancelled,entered-in-error,unknown} category*:CodeableConcept code!:CodeableConcept subject:Reference encounter:Reference effective[x]:dateTime|Period|instant issued:instant performer*:Reference value[x]:Quantity|CodeableConcept|string|boolean|integer|Range|Ratio|time|dateTime|Period dataAbsentReason:CodeableConcept interpretation*:CodeableConcept note*:Annotation bodySite:CodeableConcept method:CodeableConcept specimen:Reference device:Reference referenceRange*:Observation.referenceRange hasMember*:Reference derivedFrom*:Reference component*:Observation.component
Observation.referenceRange: low:Quantity high:Quantity type:CodeableConcept appliesTo*:CodeableConcept age:Range text:string
Observation.component: code!:CodeableConcept value[x]:Quantity|CodeableConcept|string|boolean|integer|Range|Ratio|time|dateTime|Period interpretation*:CodeableConcept referenceRange*:Observation.referenceRange

DiagnosticReport: identifier*:Identifier basedOn*:Reference status!:code{registered,partial,preliminary,final,amended,corrected,appended,cancelled,entered-in-error,unknown} category*:CodeableConcept code!:CodeableConcept subject:Reference encounter:Reference effective[x]:dateTime|Period issued:instant performer*:Reference resultsInterpreter*:Reference specimen*:Reference result*:Reference conclusion:string conclusionCode*:CodeableConcept presentedForm*:Attachment

MedicationRequest: identifier*:Identifier status!:code{active,on-hold,cancelled,completed,entered-in-error,stopped,draft,unknown} statusReason:CodeableConcept intent!:code{proposal,plan,order,original-order,reflex-order,filler-order,instance-order,option} category*:CodeableConcept priority:code{routine,urgent,asap,stat} medication[x]!:CodeableConcept|Reference subject!:Reference encounter:Reference authoredOn:dateTime requester:Reference reasonCode*:CodeableConcept note*:Annotation dosageInstruction*:Dosage dispenseRequest:MedicationRequest.dispenseRequest substitution:MedicationRequest.substitution
MedicationRequest.dispenseRequest: validityPeriod:Period numberOfRepeatsAllowed:unsignedInt quantity:Quantity expectedSupplyDuration:Quantity
MedicationRequest.substitution: allowed[x]!:boolean|CodeableConcept reason:CodeableConcept

MedicationDispense: identifier*:Identifier partOf*:Reference status!:code{preparation,in-progress,cancelled,on-hold,completed,entered-in-error,stopped,declined,unknown} category:CodeableConcept medication[x]!:CodeableConcept|Reference subject:Reference context:Reference performer*:MedicationDispense.performer location:Reference authorizingPrescription*:Reference type:CodeableConcept quantity:Quantity daysSupply:Quantity whenPrepared:dateTime whenHandedOver:dateTime note*:Annotation dosageInstruction*:Dosage
MedicationDispense.performer: function:CodeableConcept actor!:Reference

MedicationStatement: identifier*:Identifier basedOn*:Reference status!:code{active,completed,entered-in-error,intended,stopped,on-hold,unknown,not-taken} category:CodeableConcept medication[x]!:CodeableConcept|Reference subject!:Reference context:Reference effective[x]:dateTime|Period dateAsserted:dateTime informationSource:Reference reasonCode*:CodeableConcept note*:Annotation dosage*:Dosage

Immunization: identifier*:Identifier status!:code{completed,entered-in-error,not-done} statusReason:CodeableConcept vaccineCode!:CodeableConcept patient!:Reference encounter:Reference occurrence[x]!:dateTime|string recorded:dateTime primarySource:boolean reportOrigin:CodeableConcept location:Reference manufacturer:Reference lotNumber:string expirationDate:date site:CodeableConcept route:CodeableConcept doseQuantity:Quantity performer*:Immunization.performer note*:Annotation reasonCode*:CodeableConcept isSubpotent:boolean programEligibility*:CodeableConcept fundingSource:CodeableConcept
Immunization.performer: function:CodeableConcept actor!:Reference

Condition: identifier*:Identifier clinicalStatus:CodeableConcept verificationStatus:CodeableConcept category*:CodeableConcept severity:CodeableConcept code:CodeableConcept bodySite*:CodeableConcept subject!:Reference encounter:Reference onset[x]:dateTime|Period|Range|string abatement[x]:dateTime|Period|Range|string recordedDate:dateTime recorder:Reference asserter:Reference note*:Annotation

AllergyIntolerance: identifier*:Identifier clinicalStatus:CodeableConcept verificationStatus:CodeableConcept type:code{allergy,intolerance} category*:code{food,medication,environment,biologic} criticality:code{low,high,unable-to-assess} code:CodeableConcept patient!:Reference encounter:Reference onset[x]:dateTime|Period|Range|string recordedDate:dateTime recorder:Reference asserter:Reference lastOccurrence:dateTime note*:Annotation reaction*:AllergyIntolerance.reaction
Procedure: identifier*:Identifier basedOn*:Reference partOf*:Reference status!:code{preparation,in-progress,not-done,on-hold,stopped,completed,entered-in-error,unknown} statusReason:CodeableConcept category:CodeableConcept code:CodeableConcept subject!:Reference encounter:Reference performed[x]:dateTime|Period|string|Range recorder:Reference asserter:Reference location:Reference reasonCode*:CodeableConcept reasonReference*:Reference bodySite*:CodeableConcept outcome:CodeableConcept note*:Annotation

DocumentReference: masterIdentifier:Identifier identifier*:Identifier status!:code{current,superseded,entered-in-error} docStatus:code{preliminary,final,amended,entered-in-error} type:CodeableConcept category*:CodeableConcept subject:Reference date:instant author*:Reference authenticator:Reference custodian:Reference relatesTo*:DocumentReference.relatesTo description:string securityLabel*:CodeableConcept content*!:DocumentReference.content context:DocumentReference.context
DocumentReference.relatesTo: code!:code{replaces,transforms,signs,appends} target!:Reference
DocumentReference.content: attachment!:Attachment format:Coding
DocumentReference.context: encounter*:Reference event*:CodeableConcept period:Period facilityType:CodeableConcept practiceSetting:CodeableConcept sourcePatientInfo:Reference related*:Reference

AllergyIntolerance.reaction: substance:CodeableConcept manifestation*!:CodeableConcept description:string onset:dateTime severity:code{mild,moderate,severe} exposureRoute:CodeableConcept note*:Annotation
`

// Resource types with a definition above.
var resourceTypes = []string{"Patient", "Encounter", "Observation", "DiagnosticReport",
	"MedicationRequest", "MedicationDispense", "MedicationStatement", "Immunization", "Condition", "AllergyIntolerance",
	"Procedure", "DocumentReference"}

// primitives are the FHIR primitive types used above.
var primitives = map[string]bool{
	"boolean": true, "integer": true, "positiveInt": true, "unsignedInt": true, "decimal": true,
	"string": true, "markdown": true, "code": true, "id": true, "uri": true, "url": true, "canonical": true,
	"date": true, "dateTime": true, "instant": true, "time": true, "base64Binary": true,
}

type typeDef struct {
	name     string
	elems    map[string]*elemDef // by JSON name, choices under every concrete name (valueQuantity)
	required []*elemDef
	// few holds elems as a list when there are few of them (Coding,
	// Reference, Period...): the validator finds an element there faster
	// than by hashing its name.
	few []namedElem
}

type namedElem struct {
	name string
	def  *elemDef
}

// maxFew is the most elements a type may have for typeDef.few.
const maxFew = 8

// elem returns the element of JSON name k, nil when there is none.
func (td *typeDef) elem(k string) *elemDef {
	if td.few != nil {
		for i := range td.few {
			if len(td.few[i].name) == len(k) && td.few[i].name == k {
				return td.few[i].def
			}
		}
		return nil
	}
	return td.elems[k]
}

type elemDef struct {
	name     string   // as written: "value[x]" or "gender"
	many     bool     // max cardinality *
	required bool     // min cardinality 1
	types    []string // one, or the choices of a [x] element
	choice   bool
	typeOf   map[string]string // concrete JSON name → type, for choices
	nameOf   map[string]string // type → concrete JSON name, for choices
	// the definitions of complex types, resolved once for the validator:
	// def of types[0], and of each concrete name of a choice
	def     *typeDef
	defOf   map[string]*typeDef
	binding map[string]bool
	// bit is the element's bit in a resource's known-valid mask (see
	// produced.known): one per element of the type, 0 beyond 64.
	bit uint64
}

// concrete returns the JSON name of a choice element for type t.
func (e *elemDef) concrete(t string) string {
	if n, ok := e.nameOf[t]; ok {
		return n
	}
	base := strings.TrimSuffix(e.name, "[x]")
	return base + strings.ToUpper(t[:1]) + t[1:]
}

// presentIn tells whether obj holds the element (for a choice, any of its
// types).
func (e *elemDef) presentIn(obj map[string]any) bool {
	if !e.choice {
		_, ok := obj[e.name]
		return ok
	}
	for _, c := range e.types {
		if _, ok := obj[e.concrete(c)]; ok {
			return true
		}
	}
	return false
}

var fhirTypes = mustParseDefs(fhirDefs)

func mustParseDefs(src string) map[string]*typeDef {
	defs := map[string]*typeDef{}
	for _, line := range strings.Split(src, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		name, rest, ok := strings.Cut(line, ":")
		if !ok {
			panic("fhirdef: bad line " + line)
		}
		td := &typeDef{name: name, elems: map[string]*elemDef{}}
		for _, f := range strings.Fields(rest) {
			en, et, ok := strings.Cut(f, ":")
			if !ok {
				panic("fhirdef: bad element " + f)
			}
			ed := &elemDef{}
			if i := strings.IndexByte(et, '{'); i >= 0 {
				ed.binding = map[string]bool{}
				for _, c := range strings.Split(strings.TrimSuffix(et[i+1:], "}"), ",") {
					ed.binding[c] = true
				}
				et = et[:i]
			}
			for strings.HasSuffix(en, "*") || strings.HasSuffix(en, "!") {
				if strings.HasSuffix(en, "*") {
					ed.many = true
				} else {
					ed.required = true
				}
				en = en[:len(en)-1]
			}
			ed.name = en
			ed.types = strings.Split(et, "|")
			if strings.HasSuffix(en, "[x]") {
				ed.choice = true
				ed.typeOf = map[string]string{}
				ed.nameOf = map[string]string{}
				for _, t := range ed.types {
					td.elems[ed.concrete(t)] = ed
					ed.typeOf[ed.concrete(t)] = t
					ed.nameOf[t] = ed.concrete(t)
				}
			} else {
				td.elems[en] = ed
			}
		}
		defs[name] = td
	}
	// every complex type and resource also has extension; resources have meta
	for n, td := range defs {
		if n != "Extension" {
			td.elems["extension"] = &elemDef{name: "extension", many: true, types: []string{"Extension"}}
		}
		if isResourceType(n) {
			td.elems["meta"] = &elemDef{name: "meta", types: []string{"Meta"}}
		}
	}
	for _, td := range defs {
		seen := map[*elemDef]bool{}
		for _, ed := range td.elems {
			if ed.required && !seen[ed] {
				seen[ed] = true
				td.required = append(td.required, ed)
			}
		}
		sort.Slice(td.required, func(i, j int) bool { return td.required[i].name < td.required[j].name })
		for _, ed := range td.elems {
			for _, t := range ed.types {
				if !primitives[t] && defs[t] == nil {
					panic("fhirdef: unknown type " + t)
				}
			}
		}
	}
	for _, td := range defs {
		// one bit per element (a choice's concrete names share theirs), in
		// name order
		var names []string
		for k, ed := range td.elems {
			if k == ed.name || ed.choice && k == ed.concrete(ed.types[0]) {
				names = append(names, k)
			}
		}
		sort.Strings(names)
		for i, k := range names {
			if i < 64 {
				td.elems[k].bit = 1 << i
			}
		}
		if len(td.elems) <= maxFew {
			for k, ed := range td.elems {
				td.few = append(td.few, namedElem{k, ed})
			}
			sort.Slice(td.few, func(i, j int) bool { return td.few[i].name < td.few[j].name })
		}
		for _, ed := range td.elems {
			ed.def = defs[ed.types[0]]
			if ed.choice && ed.defOf == nil {
				ed.defOf = map[string]*typeDef{}
				for k, t := range ed.typeOf {
					if d := defs[t]; d != nil {
						ed.defOf[k] = d
					}
				}
			}
		}
	}
	return defs
}

func isResourceType(t string) bool {
	for _, r := range resourceTypes {
		if r == t {
			return true
		}
	}
	return false
}

// pathStep is one resolved step of an element path.
type pathStep struct {
	name string   // JSON name
	def  *elemDef // definition
	typ  string   // the type at this step ("" for a choice not yet fixed)
}

// resolveElementPath checks a dotted element path such as "valueQuantity.unit",
// "value[x]" or "hospitalization.admitSource" against the type typ. It returns
// the steps, or the index (in the dotted path) of the first wrong part and
// what was expected.
func resolveElementPath(typ, path string) ([]pathStep, int, error) {
	td := fhirTypes[typ]
	if td == nil {
		return nil, 0, fmt.Errorf("unknown type %s", typ)
	}
	parts := strings.Split(path, ".")
	steps := make([]pathStep, 0, len(parts))
	off := 0
	for i, p := range parts {
		if td == nil {
			return nil, off, fmt.Errorf("%s is a primitive value and has no elements", steps[len(steps)-1].name)
		}
		ed := td.elems[p]
		if ed == nil && strings.HasSuffix(p, "[x]") {
			for _, e := range td.elems {
				if e.name == p {
					ed = e
					break
				}
			}
			if ed != nil {
				if i != len(parts)-1 {
					return nil, off, fmt.Errorf("%s is a choice: name the type (such as %s) to set its parts", p, ed.concrete(ed.types[0]))
				}
				steps = append(steps, pathStep{name: p, def: ed})
				return steps, 0, nil
			}
		}
		if ed == nil {
			return nil, off, fmt.Errorf("%s has no element %q (expected one of: %s)", td.name, p, elementNames(td))
		}
		t := ed.types[0]
		if ed.choice {
			for _, c := range ed.types {
				if ed.concrete(c) == p {
					t = c
				}
			}
		}
		steps = append(steps, pathStep{name: p, def: ed, typ: t})
		td = fhirTypes[t]
		off += len(p) + 1
	}
	return steps, 0, nil
}

func elementNames(td *typeDef) string {
	seen := map[string]bool{}
	var names []string
	for _, e := range td.elems {
		if !seen[e.name] {
			seen[e.name] = true
			names = append(names, e.name)
		}
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

package ccda

import "strings"

// Kind is what a section is mapped as.
type Kind string

// Section kinds ToFHIR maps.
const (
	KindNone          Kind = ""
	KindProblems      Kind = "problems"
	KindAllergies     Kind = "allergies"
	KindMedications   Kind = "medications"
	KindResults       Kind = "results"
	KindVitalSigns    Kind = "vital-signs"
	KindImmunizations Kind = "immunizations"
	KindEncounters    Kind = "encounters"
	KindProcedures    Kind = "procedures"
	KindSocialHistory Kind = "social-history"
)

// sectionTemplates maps C-CDA section templateId roots (R1.1 "entries
// optional" and R2.1 "entries required" alike; extensions do not matter) to
// kinds.
var sectionTemplates = map[string]Kind{
	"2.16.840.1.113883.10.20.22.2.5": KindProblems, "2.16.840.1.113883.10.20.22.2.5.1": KindProblems,
	"2.16.840.1.113883.10.20.22.2.6": KindAllergies, "2.16.840.1.113883.10.20.22.2.6.1": KindAllergies,
	"2.16.840.1.113883.10.20.22.2.1": KindMedications, "2.16.840.1.113883.10.20.22.2.1.1": KindMedications,
	"2.16.840.1.113883.10.20.22.2.3": KindResults, "2.16.840.1.113883.10.20.22.2.3.1": KindResults,
	"2.16.840.1.113883.10.20.22.2.4": KindVitalSigns, "2.16.840.1.113883.10.20.22.2.4.1": KindVitalSigns,
	"2.16.840.1.113883.10.20.22.2.2": KindImmunizations, "2.16.840.1.113883.10.20.22.2.2.1": KindImmunizations,
	"2.16.840.1.113883.10.20.22.2.22": KindEncounters, "2.16.840.1.113883.10.20.22.2.22.1": KindEncounters,
	"2.16.840.1.113883.10.20.22.2.7": KindProcedures, "2.16.840.1.113883.10.20.22.2.7.1": KindProcedures,
	"2.16.840.1.113883.10.20.22.2.17": KindSocialHistory,
}

// sectionCodes maps LOINC section codes to kinds, used only for sections
// that carry no templateId at all (some EHRs leave them out).
var sectionCodes = map[string]Kind{
	"11450-4": KindProblems, "48765-2": KindAllergies, "10160-0": KindMedications, "30954-2": KindResults,
	"8716-3": KindVitalSigns, "11369-6": KindImmunizations, "46240-8": KindEncounters, "47519-4": KindProcedures,
	"29762-2": KindSocialHistory,
}

func sectionKind(tids []II, code CD) Kind {
	for _, t := range tids {
		if k, ok := sectionTemplates[t.Root]; ok {
			return k
		}
	}
	if len(tids) == 0 && code.CodeSystem == oidLOINC {
		return sectionCodes[code.Code]
	}
	return KindNone
}

const (
	oidLOINC   = "2.16.840.1.113883.6.1"
	oidSNOMED  = "2.16.840.1.113883.6.96"
	oidActCode = "2.16.840.1.113883.5.4"
)

// Code systems: OIDs to the URIs FHIR R4 uses.
var codeSystems = map[string]string{
	oidLOINC:                       "http://loinc.org",
	oidSNOMED:                      "http://snomed.info/sct",
	"2.16.840.1.113883.6.88":       "http://www.nlm.nih.gov/research/umls/rxnorm",
	"2.16.840.1.113883.6.90":       "http://hl7.org/fhir/sid/icd-10-cm",
	"2.16.840.1.113883.6.3":        "http://hl7.org/fhir/sid/icd-10",
	"2.16.840.1.113883.6.4":        "http://www.cms.gov/Medicare/Coding/ICD10",
	"2.16.840.1.113883.6.103":      "http://hl7.org/fhir/sid/icd-9-cm",
	"2.16.840.1.113883.6.104":      "http://hl7.org/fhir/sid/icd-9-cm",
	"2.16.840.1.113883.6.2":        "http://hl7.org/fhir/sid/icd-9-cm",
	"2.16.840.1.113883.12.292":     "http://hl7.org/fhir/sid/cvx",
	"2.16.840.1.113883.6.59":       "http://hl7.org/fhir/sid/cvx",
	"2.16.840.1.113883.6.69":       "http://hl7.org/fhir/sid/ndc",
	"2.16.840.1.113883.6.8":        "http://unitsofmeasure.org",
	"2.16.840.1.113883.6.12":       "http://www.ama-assn.org/go/cpt",
	"2.16.840.1.113883.6.285":      "https://www.cms.gov/Medicare/Coding/HCPCSReleaseCodeSets",
	"2.16.840.1.113883.6.13":       "http://ada.org/cdt",
	"2.16.840.1.113883.6.101":      "http://nucc.org/provider-taxonomy",
	"2.16.840.1.113883.6.238":      "urn:oid:2.16.840.1.113883.6.238",
	"2.16.840.1.113883.4.9":        "http://fdasis.nlm.nih.gov",
	"2.16.840.1.113883.3.26.1.1":   "http://ncimeta.nci.nih.gov",
	"2.16.840.1.113883.3.26.1.5":   "http://ncimeta.nci.nih.gov",
	"2.16.840.1.113883.6.259":      "https://www.cdc.gov/nhsn/cdaportal/terminology/codesystem/hsloc.html",
	"2.16.840.1.113883.6.121":      "urn:ietf:bcp:47",
	"2.16.840.1.113883.5.1":        "http://terminology.hl7.org/CodeSystem/v3-AdministrativeGender",
	"2.16.840.1.113883.5.2":        "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus",
	oidActCode:                     "http://terminology.hl7.org/CodeSystem/v3-ActCode",
	"2.16.840.1.113883.5.6":        "http://terminology.hl7.org/CodeSystem/v3-ActClass",
	"2.16.840.1.113883.5.7":        "http://terminology.hl7.org/CodeSystem/v3-ActPriority",
	"2.16.840.1.113883.5.8":        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
	"2.16.840.1.113883.5.14":       "http://terminology.hl7.org/CodeSystem/v3-ActStatus",
	"2.16.840.1.113883.5.25":       "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
	"2.16.840.1.113883.5.60":       "http://terminology.hl7.org/CodeSystem/v3-LanguageAbilityMode",
	"2.16.840.1.113883.5.83":       "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation",
	"2.16.840.1.113883.5.111":      "http://terminology.hl7.org/CodeSystem/v3-RoleCode",
	"2.16.840.1.113883.5.112":      "http://terminology.hl7.org/CodeSystem/v3-RouteOfAdministration",
	"2.16.840.1.113883.5.1008":     "http://terminology.hl7.org/CodeSystem/v3-NullFlavor",
	"2.16.840.1.113883.5.1063":     "http://terminology.hl7.org/CodeSystem/v3-ObservationValue",
	"2.16.840.1.113883.5.1076":     "http://terminology.hl7.org/CodeSystem/v3-ReligiousAffiliation",
	"2.16.840.1.113883.5.1119":     "http://terminology.hl7.org/CodeSystem/v3-AddressUse",
	"2.16.840.1.113883.5.4.1":      "http://terminology.hl7.org/CodeSystem/v3-ActCode",
	"2.16.840.1.113883.5.85":       "http://terminology.hl7.org/CodeSystem/v3-orderableDrugForm",
	"2.16.840.1.113883.3.26.1.1.1": "http://ncimeta.nci.nih.gov",
	"2.16.840.1.113883.12.112":     "http://terminology.hl7.org/CodeSystem/v2-0112",
	"2.16.840.1.113883.12.443":     "http://terminology.hl7.org/CodeSystem/v2-0443",
	"2.16.840.1.113883.12.227":     "http://hl7.org/fhir/sid/mvx",
	"2.16.840.1.113883.6.86":       "http://www.nlm.nih.gov/research/umls",
	"2.16.840.1.113883.6.301.5":    "https://www.nubc.org/CodeSystem/RevenueCodes",
}

// systemURI returns the FHIR system URI of a code system OID: a known URI,
// urn:uuid: for a UUID, urn:oid: otherwise.
func systemURI(oid string) string {
	if oid == "" {
		return ""
	}
	if u, ok := codeSystems[oid]; ok {
		return u
	}
	return idSystem(oid)
}

// Identifier systems FHIR names.
var idSystems = map[string]string{
	"2.16.840.1.113883.4.1": "http://hl7.org/fhir/sid/us-ssn",
	"2.16.840.1.113883.4.6": "http://hl7.org/fhir/sid/us-npi",
}

// idSystem returns the system URI of an identifier root.
func idSystem(root string) string {
	if u, ok := idSystems[root]; ok {
		return u
	}
	if isUUID(root) {
		return "urn:uuid:" + strings.ToLower(root)
	}
	if isOID(root) {
		return "urn:oid:" + root
	}
	return root
}

func isOID(s string) bool {
	if s == "" || s[0] == '.' || s[len(s)-1] == '.' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '.' && (c < '0' || c > '9') || c == '.' && s[i-1] == '.' {
			return false
		}
	}
	return true
}

func isUUID(s string) bool {
	if len(s) != 36 {
		return false
	}
	for i := 0; i < 36; i++ {
		c := s[i]
		switch i {
		case 8, 13, 18, 23:
			if c != '-' {
				return false
			}
		default:
			if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') {
				return false
			}
		}
	}
	return true
}

// ucumFixes turns unit spellings often found in C-CDA into UCUM codes.
var ucumFixes = map[string]string{
	"mmHg": "mm[Hg]", "mm Hg": "mm[Hg]", "in": "[in_i]", "inch": "[in_i]", "inches": "[in_i]",
	"lb": "[lb_av]", "lbs": "[lb_av]", "[lb_i]": "[lb_av]", "degF": "[degF]", "F": "[degF]", "deg F": "[degF]",
	"C": "Cel", "degC": "Cel", "deg C": "Cel", "bpm": "/min", "BPM": "/min", "beats/min": "/min",
	"breaths/min": "/min", "/minute": "/min", "per min": "/min", "kg/m^2": "kg/m2", "KG": "kg", "Kg": "kg",
	"CM": "cm", "ft": "[ft_i]", "oz": "[oz_av]",
}

// ucum returns the UCUM code for a unit as written, and whether it is usable
// as one (no blanks, brackets balanced).
func ucum(unit string) (string, bool) {
	if unit == "" {
		return "1", true
	}
	if u, ok := ucumFixes[unit]; ok {
		return u, true
	}
	if strings.ContainsAny(unit, " \t()") || strings.Count(unit, "[") != strings.Count(unit, "]") {
		return "", false
	}
	return unit, true
}

package hl7

import (
	"fmt"
	"strings"
)

// Group is a node of a message's structure: a named segment group (the root is named after the message
// structure, e.g. "ORU_R01") holding segments and subgroups in message order.
type Group struct {
	Name     string
	Children []Node
}

// Node is a child of a Group: a subgroup, or a segment when Group is nil.
type Node struct {
	Group   *Group
	Segment Segment
}

// Warning is a problem that does not stop a message from being read. Structure reports structural ones (a
// segment out of place, one not part of the structure, a required segment or group missing), wrapping
// ErrStructure; Validate reports a character set that the bytes contradict, wrapping ErrCharset. It is located
// like a ParseError.
type Warning struct{ ParseError }

// Unwrap returns the located ParseError, so that errors.As finds its location and errors.Is its sentinel.
func (w *Warning) Unwrap() error { return &w.ParseError }

// Segments returns the segments of g and its subgroups in message order.
func (g *Group) Segments() []Segment {
	var out []Segment
	for _, c := range g.Children {
		if c.Group != nil {
			out = append(out, c.Group.Segments()...)
		} else {
			out = append(out, c.Segment)
		}
	}
	return out
}

// Groups returns the direct subgroups of g called name.
func (g *Group) Groups(name string) []*Group {
	var out []*Group
	for _, c := range g.Children {
		if c.Group != nil && c.Group.Name == name {
			out = append(out, c.Group)
		}
	}
	return out
}

// Find returns every group called name below g, depth first in message order.
func (g *Group) Find(name string) []*Group {
	var out []*Group
	for _, c := range g.Children {
		if c.Group == nil {
			continue
		}
		if c.Group.Name == name {
			out = append(out, c.Group)
		}
		out = append(out, c.Group.Find(name)...)
	}
	return out
}

// Segment returns the first direct child segment of g called name.
func (g *Group) Segment(name string) (Segment, bool) {
	for _, c := range g.Children {
		if c.Group == nil && c.Segment.Name() == name {
			return c.Segment, true
		}
	}
	return Segment{}, false
}

// elem is one element of a structure definition: a segment or a group.
type elem struct {
	name               string
	group              bool
	optional, repeated bool
	children           []elem
	first              map[string]bool // names that can start the element
}

// Structure definitions, one set per family of HL7 versions. Syntax: [x] optional, {x} repeating, a bracket
// whose first token ends in ':' is a named group. Groups keep the names later versions gave them (v2.3 left
// them unnamed), so a caller finds INSURANCE or PROCEDURE whatever the version.
//
//   - v2.7 and later (defsV27): v2.8, with PRT, ARV, CDO, the PERSON_OBSERVATION group of VXU_V04 and AUT/RF1
//     in INSURANCE.
//   - v2.5 and v2.6 (defsV25): v2.5.1, admitting ARV (v2.6). PRT, added in v2.7, is not part of it.
//   - v2.4 (defsV24): no SFT, UAC, TQ1 or SPECIMEN; ROL after PD1, PV2 and IN1; CTD and FT1 in ORU_R01; NK1
//     before NTE in the ORU_R01 PATIENT group.
//   - before v2.4 (defsV23): v2.3/v2.3.1: as v2.4 without the ROLs outside PROCEDURE, IN3 once, no CTD or FT1.
//
// ORC is optional in VXU_V04 before v2.5. RDE_O11 and RDS_O13 (the pharmacy structures of v2.4 and later) fall
// back to defsV25 for older versions.
//
// The ORDER_DETAIL supplement of RDE/RDS (NTE before RXR) is read leniently in every family: senders leave out
// the NTE.
var defsV27 = map[string]string{
	"ADT_A01": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}] [{AUT}] [{RF1}]}] [ACC] [UB1] [UB2] [PDA]`,
	"ADT_A02": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [PDA]`,
	"ADT_A03": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}] [{AUT}] [{RF1}]}] [ACC] [PDA]`,
	"ADT_A05": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}] [{AUT}] [{RF1}]}] [ACC] [UB1] [UB2]`,
	"ADT_A06": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [MRG] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}] [{AUT}] [{RF1}]}] [ACC] [UB1] [UB2]`,
	"ADT_A09": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] PV1 [PV2] [{ARV}] [{DB1}] [{OBX}] [{DG1}]`,
	"ADT_A12": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] PV1 [PV2] [{ARV}] [{DB1}] [{OBX}] [DG1]`,
	"ADT_A30": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] MRG`,
	"ADT_A39": `MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] [{ARV}] MRG [PV1]}`,
	"ORU_R01": `MSH [{SFT}] [UAC] {PATIENT_RESULT: [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{NK1}] [{ARV}] [{PATIENT_OBSERVATION: OBX [{PRT}]}] [VISIT: PV1 [PV2] [{ARV}] [{PRT}]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{PRT}] [{TIMING_QTY: TQ1 [{TQ2}]}] [CTD] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [{CTI}] [{SPECIMEN: SPM [{OBX}]}]}} [DSC]`,
	"RDE_O11": `MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{ARV}] [PATIENT_VISIT: PV1 [PV2] [{ARV}] [{PRT}]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{PRT}] [{NTE}] {RXR} [{RXC}] [{NTE}]] RXE [{PRT}] [{NTE}] {TIMING_ENCODED: TQ1 [{TQ2}]} {RXR} [{RXC}] [{CDO}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}] [BLG] [{CTI}]}`,
	"RDS_O13": `MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{PRT}] [{NTE}] [{ARV}] [{AL1}] [PATIENT_VISIT: PV1 [PV2] [{ARV}] [{PRT}]]] {ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{PRT}] [{NTE}] {RXR} [{RXC}] [{NTE}]] [ENCODING: RXE [{PRT}] [{NTE}] {TIMING_ENCODED: TQ1 [{TQ2}]} {RXR} [{RXC}]] RXD [{PRT}] [{NTE}] {RXR} [{RXC}] [{CDO}] [{OBSERVATION: OBX [{PRT}] [{NTE}]}] [{FT1}]}`,
	"VXU_V04": `MSH [{SFT}] [UAC] PID [PD1] [{NK1}] [{ARV}] [PATIENT_VISIT: PV1 [PV2] [{ARV}]] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [{PERSON_OBSERVATION: OBX [{PRT}] [{NTE}]}] [{ORDER: ORC [{PRT}] [{TIMING: TQ1 [{TQ2}]}] RXA [{PRT}] [RXR] [{OBSERVATION: OBX [{PRT}] [{NTE}]}]}]`,
	"ACK":     `MSH [{SFT}] [UAC] MSA [{ERR}]`,
}

var defsV25 = map[string]string{
	"ADT_A01": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2] [PDA]`,
	"ADT_A02": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [PDA]`,
	"ADT_A03": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [PDA]`,
	"ADT_A05": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]`,
	"ADT_A06": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] [{ROL}] [MRG] [{NK1}] PV1 [PV2] [{ARV}] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]`,
	"ADT_A09": `MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]`,
	"ADT_A12": `MSH [{SFT}] [UAC] EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [DG1]`,
	"ADT_A30": `MSH [{SFT}] [UAC] EVN PID [PD1] [{ARV}] MRG`,
	"ADT_A39": `MSH [{SFT}] [UAC] EVN {PATIENT: PID [PD1] [{ARV}] MRG [PV1]}`,
	"ORU_R01": `MSH [{SFT}] [UAC] {PATIENT_RESULT: [PATIENT: PID [PD1] [{NTE}] [{NK1}] [{ARV}] [{PATIENT_OBSERVATION: OBX}] [VISIT: PV1 [PV2]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{TIMING_QTY: TQ1 [{TQ2}]}] [CTD] [{OBSERVATION: OBX [{NTE}]}] [{FT1}] [{CTI}] [{SPECIMEN: SPM [{OBX}]}]}} [DSC]`,
	"RDE_O11": `MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{NTE}] [{ARV}] [PATIENT_VISIT: PV1 [PV2]] [{INSURANCE: IN1 [IN2] [IN3]}] [GT1] [{AL1}]] {ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{NTE}] {RXR} [{RXC}] [{NTE}]] RXE [{NTE}] {TIMING_ENCODED: TQ1 [{TQ2}]} {RXR} [{RXC}] [{OBSERVATION: OBX [{NTE}]}] [{FT1}] [BLG] [{CTI}]}`,
	"RDS_O13": `MSH [{SFT}] [UAC] [{NTE}] [PATIENT: PID [PD1] [{NTE}] [{AL1}] [PATIENT_VISIT: PV1 [PV2]]] {ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] [ORDER_DETAIL: RXO [{NTE}] {RXR} [{RXC}] [{NTE}]] [ENCODING: RXE [{NTE}] {TIMING_ENCODED: TQ1 [{TQ2}]} {RXR} [{RXC}]] RXD [{NTE}] {RXR} [{RXC}] [{OBSERVATION: OBX [{NTE}]}] [{FT1}]}`,
	"VXU_V04": `MSH [{SFT}] [UAC] PID [PD1] [{NK1}] [{ARV}] [PATIENT: PV1 [PV2]] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [{ORDER: ORC [{TIMING: TQ1 [{TQ2}]}] RXA [RXR] [{OBSERVATION: OBX [{NTE}]}]}]`,
	"ACK":     `MSH [{SFT}] [UAC] MSA [{ERR}]`,
}

var defsV24 = map[string]string{
	"ADT_A01": `MSH EVN PID [PD1] [{ROL}] [{NK1}] PV1 [PV2] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]`,
	"ADT_A02": `MSH EVN PID [PD1] [{ROL}] PV1 [PV2] [{ROL}] [{DB1}] [{OBX}]`,
	"ADT_A03": `MSH EVN PID [PD1] [{ROL}] PV1 [PV2] [{ROL}] [{DB1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}]`,
	"ADT_A05": `MSH EVN PID [PD1] [{ROL}] [{NK1}] PV1 [PV2] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]`,
	"ADT_A06": `MSH EVN PID [PD1] [{ROL}] [MRG] [{NK1}] PV1 [PV2] [{ROL}] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [{IN3}] [{ROL}]}] [ACC] [UB1] [UB2]`,
	"ADT_A09": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]`,
	"ADT_A12": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [DG1]`,
	"ADT_A30": `MSH EVN PID [PD1] MRG`,
	"ADT_A39": `MSH EVN {PATIENT: PID [PD1] MRG [PV1]}`,
	"ORU_R01": `MSH {PATIENT_RESULT: [PATIENT: PID [PD1] [{NK1}] [{NTE}] [VISIT: PV1 [PV2]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [CTD] [{OBSERVATION: OBX [{NTE}]}] [{FT1}] [{CTI}]}} [DSC]`,
	"VXU_V04": `MSH PID [PD1] [{NK1}] [PATIENT: PV1 [PV2]] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [{ORDER: [ORC] RXA [RXR] [{OBSERVATION: OBX [{NTE}]}]}]`,
	"ACK":     `MSH MSA [ERR]`,
}

var defsV23 = map[string]string{
	"ADT_A01": `MSH EVN PID [PD1] [{NK1}] PV1 [PV2] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [ACC] [UB1] [UB2]`,
	"ADT_A02": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}]`,
	"ADT_A03": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{OBX}]`,
	"ADT_A05": `MSH EVN PID [PD1] [{NK1}] PV1 [PV2] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [ACC] [UB1] [UB2]`,
	"ADT_A06": `MSH EVN PID [PD1] [MRG] [{NK1}] PV1 [PV2] [{DB1}] [{OBX}] [{AL1}] [{DG1}] [DRG] [{PROCEDURE: PR1 [{ROL}]}] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [ACC] [UB1] [UB2]`,
	"ADT_A09": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [{DG1}]`,
	"ADT_A12": `MSH EVN PID [PD1] PV1 [PV2] [{DB1}] [{OBX}] [DG1]`,
	"ADT_A30": `MSH EVN PID [PD1] MRG`,
	"ADT_A39": `MSH EVN {PATIENT: PID [PD1] MRG [PV1]}`,
	"ORU_R01": `MSH {PATIENT_RESULT: [PATIENT: PID [PD1] [{NK1}] [{NTE}] [VISIT: PV1 [PV2]]] {ORDER_OBSERVATION: [ORC] OBR [{NTE}] [{OBSERVATION: OBX [{NTE}]}] [{CTI}]}} [DSC]`,
	"VXU_V04": `MSH PID [PD1] [{NK1}] [PATIENT: PV1 [PV2]] [{GT1}] [{INSURANCE: IN1 [IN2] [IN3]}] [{ORDER: [ORC] RXA [RXR] [{OBSERVATION: OBX [{NTE}]}]}]`,
	"ACK":     `MSH MSA [ERR]`,
}

// structureFamilies are the definition sets, newest first, each with the first version it applies to.
var structureFamilies = []struct {
	since [2]int
	defs  map[string]*elem
}{
	{[2]int{2, 7}, compileDefs(defsV27)},
	{[2]int{2, 5}, compileDefs(defsV25)},
	{[2]int{2, 4}, compileDefs(defsV24)},
	{[2]int{2, 1}, compileDefs(defsV23)},
}

// defaultFamily (v2.5.1) serves messages whose version cannot be read.
const defaultFamily = 1

// structureOf maps a message code and trigger event to a structure when MSH-9.3 is absent.
var structureOf = map[string]string{
	"ADT^A01": "ADT_A01", "ADT^A04": "ADT_A01", "ADT^A08": "ADT_A01", "ADT^A13": "ADT_A01",
	"ADT^A02": "ADT_A02", "ADT^A03": "ADT_A03",
	"ADT^A05": "ADT_A05", "ADT^A14": "ADT_A05", "ADT^A28": "ADT_A05", "ADT^A31": "ADT_A05",
	"ADT^A06": "ADT_A06", "ADT^A07": "ADT_A06",
	"ADT^A09": "ADT_A09", "ADT^A10": "ADT_A09", "ADT^A11": "ADT_A09", "ADT^A12": "ADT_A12",
	"ADT^A30": "ADT_A30", "ADT^A34": "ADT_A30", "ADT^A35": "ADT_A30", "ADT^A36": "ADT_A30",
	"ADT^A46": "ADT_A30", "ADT^A47": "ADT_A30", "ADT^A48": "ADT_A30", "ADT^A49": "ADT_A30",
	"ADT^A39": "ADT_A39", "ADT^A40": "ADT_A39", "ADT^A41": "ADT_A39", "ADT^A42": "ADT_A39",
	"ORU^R01": "ORU_R01", "RDE^O11": "RDE_O11", "RDE^O25": "RDE_O11", "RDS^O13": "RDS_O13",
	"VXU^V04": "VXU_V04",
}

func compileDefs(defs map[string]string) map[string]*elem {
	out := make(map[string]*elem, len(defs))
	for name, def := range defs {
		toks := strings.Fields(strings.NewReplacer("[", " [ ", "]", " ] ", "{", " { ", "}", " } ").Replace(def))
		children, rest := parseDef(toks)
		if len(rest) != 0 {
			panic("hl7: structure " + name + ": unbalanced definition")
		}
		root := &elem{name: name, group: true, children: children}
		setFirst(root)
		out[name] = root
	}
	return out
}

// family returns the index in structureFamilies for a version id such as "2.3.1"; defaultFamily when it
// cannot be read.
func family(v string) int {
	v = strings.TrimSpace(v)
	if len(v) < 3 || v[0] < '0' || v[0] > '9' || v[1] != '.' || v[2] < '0' || v[2] > '9' ||
		(len(v) > 3 && v[3] >= '0' && v[3] <= '9') {
		return defaultFamily
	}
	got := [2]int{int(v[0] - '0'), int(v[2] - '0')}
	for i, f := range structureFamilies {
		if got[0] > f.since[0] || got[0] == f.since[0] && got[1] >= f.since[1] {
			return i
		}
	}
	return defaultFamily
}

// definition returns the definition of structure name for the message's version (MSH-12): from its family, or
// from the nearest newer family that has one.
func (m *Message) definition(name string) *elem {
	for i := family(m.Segment(0).Field(12).Rep(1).Component(1).String()); i >= 0; i-- {
		if d := structureFamilies[i].defs[name]; d != nil {
			return d
		}
	}
	return nil
}

// knownStructure reports whether any family defines name.
func knownStructure(name string) bool {
	for _, f := range structureFamilies {
		if f.defs[name] != nil {
			return true
		}
	}
	return false
}

// parseDef reads elements until a closing bracket or the end; it returns the remaining tokens after the
// closing bracket.
func parseDef(toks []string) ([]elem, []string) {
	var out []elem
	for len(toks) > 0 {
		t := toks[0]
		toks = toks[1:]
		switch t {
		case "]", "}":
			return out, toks
		case "[", "{":
			var inner []elem
			name := ""
			if len(toks) > 0 && strings.HasSuffix(toks[0], ":") {
				name = strings.TrimSuffix(toks[0], ":")
				toks = toks[1:]
			}
			inner, toks = parseDef(toks)
			var e elem
			if name == "" && len(inner) == 1 {
				e = inner[0]
			} else {
				e = elem{name: name, group: true, children: inner}
			}
			if t == "[" {
				e.optional = true
			} else {
				e.repeated = true
			}
			out = append(out, e)
		default:
			out = append(out, elem{name: t})
		}
	}
	return out, toks
}

func setFirst(e *elem) map[string]bool {
	e.first = map[string]bool{}
	if !e.group {
		e.first[e.name] = true
		return e.first
	}
	open := true
	for i := range e.children {
		f := setFirst(&e.children[i])
		if open {
			for k := range f {
				e.first[k] = true
			}
			if !e.children[i].optional {
				open = false
			}
		}
	}
	return e.first
}

func collectNames(e *elem, into map[string]bool) {
	if !e.group {
		into[e.name] = true
	}
	for i := range e.children {
		collectNames(&e.children[i], into)
	}
}

// StructureName returns the message structure Structure will use: MSH-9.3 when it names a known structure,
// otherwise the one for MSH-9.1 and MSH-9.2; "" when none is known.
func (m *Message) StructureName() string {
	h := m.Segment(0)
	msh9 := h.Field(9).Rep(1)
	if s := msh9.Component(3).String(); knownStructure(s) {
		return s
	}
	code := msh9.Component(1).String()
	if code == "ACK" {
		return "ACK"
	}
	return structureOf[code+"^"+msh9.Component(2).String()]
}

// Structure groups the segments by the message structure named by MSH-9.3, or by the message code and trigger
// event: ADT A01-A13, A28, A31, A30/A34, A39/A40, ORU^R01, RDE^O11, RDS^O13, VXU^V04 and ACK, as the message's
// version (MSH-12) defines it (see defsV27 and the families below it). Segments are matched greedily in order; Z-segments are kept silently where they occur, other unknown segments are kept
// with a warning, and a segment out of place or a required segment missing gives a located warning, never a
// failure. For a structure it does not know it returns a flat group of all segments and an error wrapping
// ErrStructure. With Options.Strict the first warning is returned as the error.
func (m *Message) Structure() (*Group, []Warning, error) {
	name := m.StructureName()
	def := m.definition(name)
	if def == nil {
		root := &Group{Name: "UNKNOWN"}
		for i := range m.SegmentCount() {
			root.Children = append(root.Children, Node{Segment: m.Segment(i)})
		}
		h := m.Segment(0).Field(9).Rep(1)
		return root, nil, fmt.Errorf("structure: %w: no structure known for message type %s^%s",
			ErrStructure, safeToken(h.Component(1).String()), safeToken(h.Component(2).String()))
	}
	st := &matcher{m: m, known: map[string]bool{}, occ: make([]int, m.SegmentCount())}
	collectNames(def, st.known)
	counts := map[string]int{}
	for i := range m.SegmentCount() {
		n := m.Segment(i).Name()
		counts[n]++
		st.occ[i] = counts[n]
	}
	root := &Group{Name: name}
	st.match(def, root, 0, true)
	// Resynchronise after a segment out of place: continue with the first top-level element that can start
	// with it, so one misplaced segment gives one warning rather than one per remaining segment.
	for st.pos < m.SegmentCount() {
		st.warn("segment is out of place for " + name)
		before := st.pos
		seg := m.Segment(st.pos).Name()
		for i := range def.children {
			if def.children[i].first[seg] {
				st.match(def, root, i, false)
				break
			}
		}
		if st.pos == before {
			root.Children = append(root.Children, Node{Segment: m.Segment(st.pos)})
			st.pos++
		}
	}
	if m.opts.Strict && len(st.warnings) > 0 {
		pe := st.warnings[0].ParseError
		return root, st.warnings, &pe
	}
	return root, st.warnings, nil
}

// safeToken keeps a message type readable in an error without echoing arbitrary content.
func safeToken(s string) string {
	if len(s) > 8 {
		return "(invalid)"
	}
	for _, c := range []byte(s) {
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return "(invalid)"
		}
	}
	return s
}

type matcher struct {
	m        *Message
	pos      int
	known    map[string]bool
	occ      []int
	warnings []Warning
}

func (st *matcher) warn(detail string) {
	w := Warning{ParseError{Err: ErrStructure, Detail: detail}}
	if st.pos < st.m.SegmentCount() {
		s := st.m.Segment(st.pos)
		w.Segment, w.SegmentIndex, w.Occurrence, w.Line = s.Name(), st.pos+1, st.occ[st.pos], s.Line()
	}
	st.warnings = append(st.warnings, w)
}

// absorb attaches segments the structure does not know to g: Z-segments silently, others with a warning.
func (st *matcher) absorb(g *Group, structName string) {
	for st.pos < st.m.SegmentCount() {
		s := st.m.Segment(st.pos)
		name := s.Name()
		if st.known[name] {
			return
		}
		if name[0] != 'Z' {
			st.warn("segment is not part of " + structName)
		}
		g.Children = append(g.Children, Node{Segment: s})
		st.pos++
	}
}

// match matches the children of def from index from on, appending to g; missing required children are
// reported when reportMissing.
func (st *matcher) match(def *elem, g *Group, from int, reportMissing bool) {
	for i := from; i < len(def.children); i++ {
		child := &def.children[i]
		count := 0
		for {
			st.absorb(g, def.name)
			if st.pos >= st.m.SegmentCount() {
				break
			}
			name := st.m.Segment(st.pos).Name()
			if !child.first[name] {
				break
			}
			if child.group {
				sub := &Group{Name: child.name}
				before := st.pos
				st.match(child, sub, 0, true)
				g.Children = append(g.Children, Node{Group: sub})
				if st.pos == before {
					break
				}
			} else {
				g.Children = append(g.Children, Node{Segment: st.m.Segment(st.pos)})
				st.pos++
			}
			count++
			if !child.repeated {
				break
			}
		}
		if count == 0 && !child.optional && reportMissing {
			what := "segment " + child.name
			if child.group {
				what = "group " + child.name
			}
			st.warn("required " + what + " missing in " + def.name)
		}
	}
}

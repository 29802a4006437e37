package mapping

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
	_ "time/tzdata" // timezones named in mapping files must load on any host

	"go.yaml.in/yaml/v3"

	"github.com/hiegw/hiegw/internal/defect"
)

// Set is a compiled, immutable mapping set: the default mappings, every
// sender's overrides and the code tables. It is safe for concurrent use.
type Set struct {
	version  string
	dir      string
	def      *profile
	senders  map[string]*profile // by lower-cased sender name
	profiles []*profile
	tables   map[string]*codeTable
	paths    map[string]*hpath // every constant path argument, parsed once
	xpaths   map[string]*xpath // every constant C-CDA path argument, parsed once
	ruleFile map[string]string // sender name → the file that defines it
}

// Version returns the content hash of the set's files: record it with every
// message mapped, so a result can be traced to the exact mappings used.
func (s *Set) Version() string { return s.version }

// Senders returns the names of the senders that have their own mappings.
func (s *Set) Senders() []string {
	out := make([]string, 0, len(s.senders))
	for k := range s.senders {
		out = append(out, s.senders[k].name)
	}
	sort.Strings(out)
	return out
}

// profile is the mapping as one sender sees it: its overrides merged onto
// the default.
type profile struct {
	name      string // sender name as written, "" for the default
	file      string
	loc       *time.Location
	messages  []*msgEntry // sender entries first, then the default's
	resources map[string]*resRule
	tables    map[string]tableChain
}

// msgEntry says what a message type produces.
type msgEntry struct {
	patterns  []string // "ADT^A01", "ADT^*", "*"; C-CDA: "CCDA^34133-9", "CCDA^*", "CCDA"
	ccda      bool     // the patterns are C-CDA ones
	event     string
	resources []string
	rule      string // file:line
	// keepAbsent ("absent: keep"): an element the message does not send
	// keeps its stored value, as HL7 v2 reads an empty field in an update;
	// the null "" removes it. Otherwise ("absent: replace", the default)
	// each message's resources replace the stored ones whole.
	keepAbsent bool
}

// Events a message entry may name.
var events = []string{"admit", "discharge", "transfer", "register", "update", "merge", "result",
	"medication", "immunisation", "document", "other"}

// resRule produces resources of one type.
type resRule struct {
	name  string
	typ   string
	typv  any   // typ as an interface value, made once for every resource
	size  int32 // elements of the last resource made (atomic), for newResource
	each  *hpath
	xeach *xpath // a C-CDA rule: one resource per node (each: /ClinicalDocument/...)
	when  *program
	id    []*program
	elems []*elemRule
	pos   string // file:line
	// required: a message for which the rule makes no resource (its each
	// finds no segment or node, its when holds for none) is refused.
	required bool
}

// elemRule fills one element path of a resource (or of a nested object).
type elemRule struct {
	field string // Type.path, for messages
	path  string
	steps []pathStep
	alts  []*alt
	pos   string
}

// alt is one alternative of an element rule; the first one whose condition
// holds and that yields a value wins.
type alt struct {
	each     *hpath
	xeach    *xpath // in a C-CDA rule: the nodes, relative to the current one
	when     *program
	value    *program
	constant any
	constT   *constant // constant, to copy for each use
	hasConst bool
	elems    []*elemRule
	typ      string // concrete type of a choice element
	deflt    any
	defltT   *constant // deflt, to copy for each use
	required bool
	strict   bool
	pos      string
	// constMakes, defltMakes: the FHIR type the const: or default: value
	// is valid as where the rule stores it, "" when the validator would
	// find a problem in it (state.vmakes).
	constMakes, defltMakes string
}

var reMsgPattern = regexp.MustCompile(`^([A-Z0-9]{3}(\^([A-Z0-9]{3}|\*))?|\*|CCDA(\^([0-9A-Za-z][0-9A-Za-z.-]*|\*))?)$`)

// Load reads and compiles a mapping directory: DIR/default/*.yaml (the
// default set, required), DIR/senders/*.yaml (per-sender overrides) and
// DIR/codes/*.csv (code tables). It returns every problem at once, each an
// *Error with file, line and column, joined with errors.Join.
func Load(dir string) (*Set, error) {
	files, err := readTree(dir)
	if err != nil {
		return nil, fmt.Errorf("load mappings: %w", err)
	}
	return compileSet(dir, files)
}

// srcFile is one file of a set.
type srcFile struct {
	name  string // path relative to the set directory, with forward slashes
	data  []byte
	lines []string
}

func (f *srcFile) line(n int) string {
	if n >= 1 && n <= len(f.lines) {
		return f.lines[n-1]
	}
	return ""
}

func (f *srcFile) errAt(n *yaml.Node, format string, args ...any) *Error {
	e := &Error{File: f.name, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		e.Line, e.Column, e.Source = n.Line, n.Column, f.line(n.Line)
	}
	return e
}

func (f *srcFile) pos(n *yaml.Node) string { return fmt.Sprintf("%s:%d", f.name, n.Line) }

func readTree(dir string) ([]*srcFile, error) {
	var files []*srcFile
	if st, err := os.Stat(filepath.Join(dir, "default")); err != nil || !st.IsDir() {
		return nil, fmt.Errorf("%s: no default/ directory", dir)
	}
	for _, sub := range []string{"default", "senders", "codes"} {
		ents, err := os.ReadDir(filepath.Join(dir, sub))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		for _, e := range ents {
			n := e.Name()
			if e.IsDir() || strings.HasPrefix(n, ".") {
				continue
			}
			ext := strings.ToLower(filepath.Ext(n))
			if (sub == "codes") != (ext == ".csv") || (sub != "codes" && ext != ".yaml" && ext != ".yml") {
				continue
			}
			data, err := os.ReadFile(filepath.Join(dir, sub, n))
			if err != nil {
				return nil, err
			}
			files = append(files, newSrcFile(sub+"/"+n, data))
		}
	}
	sort.Slice(files, func(i, j int) bool { return files[i].name < files[j].name })
	return files, nil
}

func newSrcFile(name string, data []byte) *srcFile {
	text := strings.ReplaceAll(string(data), "\r\n", "\n")
	return &srcFile{name: name, data: data, lines: strings.Split(text, "\n")}
}

func hashFiles(files []*srcFile) string {
	h := sha256.New()
	for _, f := range files {
		fmt.Fprintf(h, "%s\x00%d\x00", f.name, len(f.data))
		h.Write(f.data)
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))[:16]
}

// rawFile is a mapping file read but not yet compiled.
type rawFile struct {
	src       *srcFile
	senders   []string
	sendersN  *yaml.Node
	timezone  *yaml.Node
	codes     [][2]*yaml.Node // table name, csv name
	messages  *yaml.Node
	resources [][2]*yaml.Node // name, body
}

var fileKeys = []string{"senders", "timezone", "codes", "messages", "resources"}

func parseFile(f *srcFile, errs *errorList) *rawFile {
	rf := &rawFile{src: f}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(f.data))
	if err := dec.Decode(&doc); err != nil {
		if err.Error() == "EOF" {
			return rf
		}
		errs.add(yamlError(f, err))
		return nil
	}
	if len(doc.Content) == 0 {
		return rf
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		errs.add(f.errAt(root, "expected a mapping with keys %s", strings.Join(fileKeys, ", ")))
		return nil
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		switch k.Value {
		case "senders":
			rf.sendersN = v
			for _, s := range scalarList(f, v, errs, "a sender name or a list of sender names") {
				rf.senders = append(rf.senders, s.Value)
			}
		case "timezone":
			rf.timezone = v
		case "codes":
			if v.Kind != yaml.MappingNode {
				errs.add(f.errAt(v, "expected a mapping of table name to CSV file name under codes/"))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				rf.codes = append(rf.codes, [2]*yaml.Node{v.Content[j], v.Content[j+1]})
			}
		case "messages":
			rf.messages = v
		case "resources":
			if v.Kind != yaml.MappingNode {
				errs.add(f.errAt(v, "expected a mapping of resource rule names to rules"))
				continue
			}
			for j := 0; j+1 < len(v.Content); j += 2 {
				rf.resources = append(rf.resources, [2]*yaml.Node{v.Content[j], v.Content[j+1]})
			}
		default:
			errs.add(f.errAt(k, "unknown key %q (expected one of: %s)", k.Value, strings.Join(fileKeys, ", ")))
		}
	}
	return rf
}

var reYAMLLine = regexp.MustCompile(`line (\d+)(?:, column (\d+))?`)

func yamlError(f *srcFile, err error) *Error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	e := &Error{File: f.name, Msg: "YAML: " + msg}
	if m := reYAMLLine.FindStringSubmatch(msg); m != nil {
		e.Line, _ = strconv.Atoi(m[1])
		e.Column = 1
		if m[2] != "" {
			e.Column, _ = strconv.Atoi(m[2])
		}
		e.Source = f.line(e.Line)
		if e.Column == 1 {
			// point at the first non-blank character of the line
			e.Column += len(e.Source) - len(strings.TrimLeft(e.Source, " \t"))
		}
		e.Msg = "YAML: " + reYAMLLine.ReplaceAllString(msg, "here")
	}
	return e
}

func scalarList(f *srcFile, n *yaml.Node, errs *errorList, what string) []*yaml.Node {
	switch n.Kind {
	case yaml.ScalarNode:
		if n.Tag == "!!null" {
			return nil
		}
		return []*yaml.Node{n}
	case yaml.SequenceNode:
		var out []*yaml.Node
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				errs.add(f.errAt(c, "expected %s", what))
				continue
			}
			out = append(out, c)
		}
		return out
	}
	errs.add(f.errAt(n, "expected %s", what))
	return nil
}

func compileSet(dir string, files []*srcFile) (set *Set, err error) {
	// The gateway compiles a changed set while it runs (file watcher,
	// SIGHUP): a defect of the compiler refuses the set, like an error in
	// it, and the set serving stays.
	// set is still nil then: results are only set by a return.
	defer defect.Catch("internal error in hiegw while compiling the mapping set, not in the files; the set is refused", &err)
	errs := &errorList{}
	s := &Set{version: hashFiles(files), dir: dir, senders: map[string]*profile{},
		tables: map[string]*codeTable{}, paths: map[string]*hpath{}, xpaths: map[string]*xpath{}, ruleFile: map[string]string{}}
	var defFiles, senderFiles []*rawFile
	for _, f := range files {
		switch {
		case strings.HasPrefix(f.name, "codes/"):
			name := strings.TrimSuffix(strings.TrimPrefix(f.name, "codes/"), filepath.Ext(f.name))
			s.tables[name] = parseCodeTable(name, f.name, f.data, errs)
		case strings.HasPrefix(f.name, "default/"):
			if rf := parseFile(f, errs); rf != nil {
				defFiles = append(defFiles, rf)
			}
		case strings.HasPrefix(f.name, "senders/"):
			if rf := parseFile(f, errs); rf != nil {
				senderFiles = append(senderFiles, rf)
			}
		}
	}
	c := newCompiler(s, errs)

	// the default profile
	def := &profile{file: "default/", resources: map[string]*resRule{}, tables: map[string]tableChain{}}
	for name, t := range s.tables {
		def.tables[name] = tableChain{t}
	}
	defNames := map[string]bool{}
	for _, rf := range defFiles {
		for _, r := range rf.resources {
			defNames[r[0].Value] = true
		}
	}
	for _, rf := range defFiles {
		if rf.sendersN != nil {
			errs.add(rf.src.errAt(rf.sendersN, "senders belongs in files under senders/, not in the default set"))
		}
		if len(rf.codes) > 0 {
			errs.add(rf.src.errAt(rf.codes[0][0], "codes overlays belong in files under senders/; default tables are every CSV under codes/"))
		}
		if rf.timezone != nil {
			if def.loc != nil {
				errs.add(rf.src.errAt(rf.timezone, "timezone is already set in another default file"))
			} else {
				def.loc = c.timezone(rf.src, rf.timezone)
			}
		}
		for _, r := range rf.resources {
			name := r[0].Value
			if prev, dup := def.resources[name]; dup {
				errs.add(rf.src.errAt(r[0], "resource rule %q is already defined at %s", name, prev.pos))
				continue
			}
			if r[1].Kind == yaml.ScalarNode && r[1].Tag == "!!null" {
				errs.add(rf.src.errAt(r[1], "expected a resource rule (type, id, elements)"))
				continue
			}
			if rr := c.resource(rf.src, r[0], r[1], nil, defNames); rr != nil {
				def.resources[name] = rr
			}
		}
	}
	if def.loc == nil {
		def.loc = time.UTC
	}
	for _, rf := range defFiles {
		def.messages = append(def.messages, c.messages(rf.src, rf.messages, def.messages)...)
	}
	c.checkMessages(def, defFiles)
	s.def = def
	s.profiles = append(s.profiles, def)

	// sender profiles
	for _, rf := range senderFiles {
		names := rf.senders
		if rf.sendersN == nil {
			base := strings.TrimSuffix(filepath.Base(rf.src.name), filepath.Ext(rf.src.name))
			names = []string{base}
		}
		if len(names) == 0 {
			errs.add(rf.src.errAt(rf.sendersN, "expected at least one sender name"))
			continue
		}
		p := &profile{name: names[0], file: rf.src.name, loc: def.loc, resources: map[string]*resRule{}, tables: map[string]tableChain{}}
		for k, v := range def.tables {
			p.tables[k] = v
		}
		for _, cn := range rf.codes {
			t := s.tables[cn[1].Value]
			switch {
			case t == nil:
				errs.add(rf.src.errAt(cn[1], "no code table codes/%s.csv", cn[1].Value))
			case s.tables[cn[0].Value] == nil:
				errs.add(rf.src.errAt(cn[0], "no shared code table %q to overlay (expected the name of a CSV under codes/)", cn[0].Value))
			default:
				p.tables[cn[0].Value] = append(tableChain{t}, def.tables[cn[0].Value]...)
			}
		}
		if rf.timezone != nil {
			if loc := c.timezone(rf.src, rf.timezone); loc != nil {
				p.loc = loc
			}
		}
		names2 := map[string]bool{}
		for k := range def.resources {
			names2[k] = true
		}
		for _, r := range rf.resources {
			names2[r[0].Value] = true
		}
		for k, v := range def.resources {
			p.resources[k] = v
		}
		for _, r := range rf.resources {
			name := r[0].Value
			if r[1].Kind == yaml.ScalarNode && r[1].Tag == "!!null" {
				if _, ok := p.resources[name]; !ok {
					errs.add(rf.src.errAt(r[0], "no resource rule %q in the default set to remove", name))
				}
				delete(p.resources, name)
				delete(names2, name)
				continue
			}
			if rr := c.resource(rf.src, r[0], r[1], def.resources[name], names2); rr != nil {
				p.resources[name] = rr
			}
		}
		p.messages = append(c.messages(rf.src, rf.messages, nil), def.messages...)
		c.checkMessages(p, []*rawFile{rf})
		for _, n := range names {
			k := strings.ToLower(n)
			if prev, dup := s.ruleFile[k]; dup {
				errs.add(rf.src.errAt(rf.sendersN, "sender %q already has mappings in %s", n, prev))
				continue
			}
			s.ruleFile[k] = rf.src.name
			s.senders[k] = p
		}
		s.profiles = append(s.profiles, p)
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return s, nil
}

func (c *compiler) timezone(f *srcFile, n *yaml.Node) *time.Location {
	if n.Kind != yaml.ScalarNode || n.Value == "" {
		c.errs.add(f.errAt(n, "expected an IANA timezone name such as America/New_York"))
		return nil
	}
	loc, err := time.LoadLocation(n.Value)
	if err != nil {
		c.errs.add(f.errAt(n, "unknown timezone (expected an IANA name such as America/New_York or UTC)"))
		return nil
	}
	return loc
}

var msgKeys = []string{"match", "event", "resources", "absent"}

// messages compiles a messages: list. prior holds entries of the same layer
// already compiled, to refuse the same pattern twice.
func (c *compiler) messages(f *srcFile, n *yaml.Node, prior []*msgEntry) []*msgEntry {
	if n == nil {
		return nil
	}
	if n.Kind != yaml.SequenceNode {
		c.errs.add(f.errAt(n, "expected a list of message entries (match, event, resources)"))
		return nil
	}
	seen := map[string]string{}
	for _, e := range prior {
		for _, p := range e.patterns {
			seen[p] = e.rule
		}
	}
	var out []*msgEntry
	for _, item := range n.Content {
		if item.Kind != yaml.MappingNode {
			c.errs.add(f.errAt(item, "expected a message entry with keys %s", strings.Join(msgKeys, ", ")))
			continue
		}
		e := &msgEntry{rule: f.pos(item)}
		has := map[string]*yaml.Node{}
		for i := 0; i+1 < len(item.Content); i += 2 {
			k, v := item.Content[i], item.Content[i+1]
			has[k.Value] = v
			switch k.Value {
			case "match":
				hl7Pat := false
				for _, p := range scalarList(f, v, c.errs, "a message type such as ADT^A01, ADT^* or *") {
					if !reMsgPattern.MatchString(p.Value) {
						c.errs.add(f.errAt(p, "expected a message type such as ADT^A01, ADT^* or *, or a C-CDA document: CCDA, CCDA^* or CCDA^<LOINC document type>"))
						continue
					}
					isDoc := strings.HasPrefix(p.Value, "CCDA")
					if isDoc && hl7Pat || !isDoc && e.ccda {
						c.errs.add(f.errAt(p, "an entry matches HL7 v2 messages or C-CDA documents, not both"))
						continue
					}
					e.ccda, hl7Pat = isDoc, !isDoc
					if prev, dup := seen[p.Value]; dup {
						c.errs.add(f.errAt(p, "message type %s is already matched by the entry at %s", p.Value, prev))
						continue
					}
					seen[p.Value] = e.rule
					e.patterns = append(e.patterns, p.Value)
				}
			case "event":
				if v.Kind != yaml.ScalarNode || !contains(events, v.Value) {
					c.errs.add(f.errAt(v, "expected an event: %s", strings.Join(events, ", ")))
				}
				e.event = v.Value
			case "resources":
				for _, r := range scalarList(f, v, c.errs, "a list of resource rule names") {
					e.resources = append(e.resources, r.Value)
					c.msgRefs = append(c.msgRefs, msgRef{f, r, e})
				}
			case "absent":
				switch {
				case v.Kind == yaml.ScalarNode && v.Value == "keep":
					e.keepAbsent = true
				case v.Kind == yaml.ScalarNode && v.Value == "replace":
				default:
					c.errs.add(f.errAt(v, `expected keep (a field the message leaves empty keeps the stored value; "" removes it) or replace (the message's resources replace the stored ones whole)`))
				}
			default:
				c.errs.add(f.errAt(k, "unknown key %q (expected one of: %s)", k.Value, strings.Join(msgKeys, ", ")))
			}
		}
		for _, k := range []string{"match", "event"} {
			if has[k] == nil {
				c.errs.add(f.errAt(item, "message entry needs %s", k))
			}
		}
		if e.keepAbsent && e.ccda {
			c.errs.add(f.errAt(has["absent"], "absent: keep applies to HL7 v2 messages, whose empty fields and \"\" differ; a C-CDA document replaces what it maps"))
		}
		out = append(out, e)
	}
	return out
}

type msgRef struct {
	f *srcFile
	n *yaml.Node
	e *msgEntry
}

// checkMessages checks that every resource named by the files' message
// entries exists in the profile.
func (c *compiler) checkMessages(p *profile, files []*rawFile) {
	inFiles := map[*srcFile]bool{}
	for _, rf := range files {
		inFiles[rf.src] = true
	}
	for _, r := range c.msgRefs {
		if !inFiles[r.f] {
			continue
		}
		rr := p.resources[r.n.Value]
		switch {
		case rr == nil:
			c.errs.add(r.f.errAt(r.n, "no resource rule %q (expected one of: %s)", r.n.Value, strings.Join(ruleNames(p.resources), ", ")))
		case r.e.ccda && rr.xeach == nil:
			c.errs.add(r.f.errAt(r.n, "resource rule %q reads HL7 v2 (each: a segment); a C-CDA entry needs rules with each: /ClinicalDocument/...", r.n.Value))
		case !r.e.ccda && rr.xeach != nil:
			c.errs.add(r.f.errAt(r.n, "resource rule %q reads C-CDA documents; an HL7 v2 entry cannot run it", r.n.Value))
		}
	}
}

func ruleNames(m map[string]*resRule) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

var resKeys = []string{"type", "each", "when", "id", "required", "elements"}

// resource compiles a resource rule; base is the default's rule of the same
// name when a sender overrides it. names are the rule names ref() may use.
func (c *compiler) resource(f *srcFile, key, n *yaml.Node, base *resRule, names map[string]bool) *resRule {
	if n.Kind != yaml.MappingNode {
		c.errs.add(f.errAt(n, "expected a resource rule with keys %s", strings.Join(resKeys, ", ")))
		return nil
	}
	r := &resRule{name: key.Value, pos: f.pos(key)}
	if base != nil {
		cp := *base
		r = &cp
		r.elems = append([]*elemRule(nil), base.elems...)
		r.pos = f.pos(key)
	}
	fields := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if !contains(resKeys, k.Value) {
			c.errs.add(f.errAt(k, "unknown key %q (expected one of: %s)", k.Value, strings.Join(resKeys, ", ")))
			continue
		}
		fields[k.Value] = v
	}
	if t := fields["type"]; t != nil {
		if t.Kind != yaml.ScalarNode || !isResourceType(t.Value) {
			c.errs.add(f.errAt(t, "expected a resource type: %s", strings.Join(resourceTypes, ", ")))
			return nil
		}
		if base != nil && base.typ != t.Value {
			c.errs.add(f.errAt(t, "the default rule %q makes %s; a sender may not change its type", key.Value, base.typ))
			return nil
		}
		r.typ = t.Value
	}
	if r.typ == "" {
		c.errs.add(f.errAt(key, "resource rule %q needs a type (%s)", key.Value, strings.Join(resourceTypes, ", ")))
		return nil
	}
	r.typv = r.typ
	c.ccda = base != nil && base.xeach != nil
	defer func() { c.ccda = false }()
	if e := fields["each"]; e != nil {
		if e.Kind == yaml.ScalarNode && strings.HasPrefix(e.Value, "/") {
			if base != nil && base.xeach == nil {
				c.errs.add(f.errAt(e, "the default rule %q reads HL7 v2 messages: each must be a segment such as OBX", key.Value))
				return nil
			}
			r.each, r.xeach = nil, c.docPath(f, e, true)
			c.ccda = true
		} else {
			if base != nil && base.xeach != nil {
				c.errs.add(f.errAt(e, "the default rule %q reads C-CDA documents: each must be a C-CDA path starting with /", key.Value))
				return nil
			}
			r.each = c.eachPath(f, e, true)
		}
	}
	if w := fields["when"]; w != nil {
		r.when = c.compile(f, w, kindBool, names)
	}
	if v := fields["required"]; v != nil {
		b, err := strconv.ParseBool(v.Value)
		if v.Kind != yaml.ScalarNode || err != nil {
			c.errs.add(f.errAt(v, "expected true or false"))
		}
		r.required = b
	}
	if id := fields["id"]; id != nil {
		r.id = nil
		for _, k := range scalarList(f, id, c.errs, "an expression or a list of expressions giving the id's source keys") {
			if p := c.compile(f, k, kindAny, names); p != nil {
				r.id = append(r.id, p)
			}
		}
	}
	if base == nil && len(r.id) == 0 && fields["id"] == nil {
		c.errs.add(f.errAt(key, "resource rule %q needs id: the source keys its id is derived from", key.Value))
	}
	if el := fields["elements"]; el != nil {
		if el.Kind != yaml.MappingNode {
			c.errs.add(f.errAt(el, "expected a mapping of element paths to rules"))
		} else {
			for i := 0; i+1 < len(el.Content); i += 2 {
				k, v := el.Content[i], el.Content[i+1]
				idx := -1
				for j, er := range r.elems {
					if er.path == k.Value {
						idx = j
					}
				}
				if v.Kind == yaml.ScalarNode && v.Tag == "!!null" {
					if idx < 0 {
						c.errs.add(f.errAt(k, "no element rule %q to remove", k.Value))
					} else {
						r.elems = append(r.elems[:idx:idx], r.elems[idx+1:]...)
					}
					continue
				}
				if base == nil && idx >= 0 {
					c.errs.add(f.errAt(k, "element %q appears twice", k.Value))
					continue
				}
				er := c.element(f, r.typ, k, v, names)
				if er == nil {
					continue
				}
				if idx >= 0 {
					r.elems[idx] = er
				} else {
					r.elems = append(r.elems, er)
				}
			}
		}
	}
	return r
}

var altKeys = []string{"value", "const", "elements", "each", "when", "default", "required", "strict", "type"}

// element compiles the rule for one element path of type typ.
func (c *compiler) element(f *srcFile, typ string, key, n *yaml.Node, names map[string]bool) *elemRule {
	steps, off, err := resolveElementPath(typ, key.Value)
	if err != nil {
		e := f.errAt(key, "%v", err)
		e.Column += off
		c.errs.add(e)
		return nil
	}
	for _, st := range steps[:len(steps)-1] {
		if st.def.many {
			c.errs.add(f.errAt(key, "%s repeats: set it as a whole (with elements: or each:) instead of through a dotted path", st.name))
			return nil
		}
	}
	er := &elemRule{field: typ + "." + key.Value, path: key.Value, steps: steps, pos: f.pos(key)}
	last := steps[len(steps)-1]
	var items []*yaml.Node
	if n.Kind == yaml.SequenceNode {
		items = n.Content
		if len(items) == 0 {
			c.errs.add(f.errAt(n, "expected at least one alternative"))
		}
	} else {
		items = []*yaml.Node{n}
	}
	for _, it := range items {
		a := &alt{pos: f.pos(it)}
		switch it.Kind {
		case yaml.ScalarNode:
			a.value = c.compile(f, it, kindAny, names)
		case yaml.MappingNode:
			fields := map[string]*yaml.Node{}
			for i := 0; i+1 < len(it.Content); i += 2 {
				k, v := it.Content[i], it.Content[i+1]
				if !contains(altKeys, k.Value) {
					c.errs.add(f.errAt(k, "unknown key %q (expected one of: %s)", k.Value, strings.Join(altKeys, ", ")))
					continue
				}
				fields[k.Value] = v
			}
			nv := 0
			for _, k := range []string{"value", "const", "elements"} {
				if fields[k] != nil {
					nv++
				}
			}
			if nv != 1 {
				c.errs.add(f.errAt(it, "an element rule needs exactly one of value (an expression), const (a fixed value) or elements (a nested object)"))
				continue
			}
			if t := fields["type"]; t != nil {
				if !last.def.choice || !contains(last.def.types, t.Value) {
					if last.def.choice {
						c.errs.add(f.errAt(t, "expected one of the types of %s: %s", last.name, strings.Join(last.def.types, ", ")))
					} else {
						c.errs.add(f.errAt(t, "type only applies to choice elements such as value[x]"))
					}
					continue
				}
				a.typ = t.Value
			}
			if e := fields["each"]; e != nil {
				if !last.def.many {
					c.errs.add(f.errAt(e, "%s holds one value: each only applies to repeating elements", last.name))
					continue
				}
				if c.ccda {
					a.xeach = c.docPath(f, e, false)
				} else {
					a.each = c.eachPath(f, e, false)
				}
			}
			if w := fields["when"]; w != nil {
				a.when = c.compile(f, w, kindBool, names)
			}
			if v := fields["value"]; v != nil {
				if v.Kind != yaml.ScalarNode {
					c.errs.add(f.errAt(v, "expected an expression (quote it if it starts with [, { or \")"))
					continue
				}
				a.value = c.compile(f, v, kindAny, names)
			}
			if v := fields["const"]; v != nil {
				var x any
				if err := v.Decode(&x); err != nil {
					c.errs.add(f.errAt(v, "const: %v", err))
				}
				a.constant, a.hasConst = normalizeYAML(x), true
				a.constT = newConstant(a.constant)
			}
			if v := fields["default"]; v != nil {
				var x any
				if err := v.Decode(&x); err != nil {
					c.errs.add(f.errAt(v, "default: %v", err))
				}
				a.deflt = normalizeYAML(x)
				a.defltT = newConstant(a.deflt)
			}
			for _, k := range []string{"required", "strict"} {
				if v := fields[k]; v != nil {
					b, err := strconv.ParseBool(v.Value)
					if v.Kind != yaml.ScalarNode || err != nil {
						c.errs.add(f.errAt(v, "expected true or false"))
					}
					if k == "required" {
						a.required = b
					} else {
						a.strict = b
					}
				}
			}
			if el := fields["elements"]; el != nil {
				t := last.typ
				if last.def.choice {
					t = a.typ
					if t == "" {
						c.errs.add(f.errAt(el, "%s is a choice: add type: to say which type the nested elements build", last.name))
						continue
					}
				}
				if fhirTypes[t] == nil {
					c.errs.add(f.errAt(el, "%s is a primitive (%s) and has no nested elements", last.name, t))
					continue
				}
				if el.Kind != yaml.MappingNode {
					c.errs.add(f.errAt(el, "expected a mapping of element paths to rules"))
					continue
				}
				for i := 0; i+1 < len(el.Content); i += 2 {
					if sub := c.element(f, t, el.Content[i], el.Content[i+1], names); sub != nil {
						a.elems = append(a.elems, sub)
					}
				}
			}
		default:
			c.errs.add(f.errAt(it, "expected an expression, a rule (value, when, each, ...) or a list of alternative rules"))
			continue
		}
		if a.hasConst {
			a.constMakes = validAsStored(last, a.typ, a.constant)
		}
		if a.deflt != nil {
			a.defltMakes = validAsStored(last, a.typ, a.deflt)
		}
		er.alts = append(er.alts, a)
	}
	return er
}

// eachPath parses the each: of a resource (a segment) or of an element (a
// segment, or a field whose repetitions are visited).
func (c *compiler) eachPath(f *srcFile, n *yaml.Node, segmentOnly bool) *hpath {
	if n.Kind != yaml.ScalarNode {
		c.errs.add(f.errAt(n, "expected a segment name such as OBX or a field such as PID-3"))
		return nil
	}
	p, off, err := parsePath(n.Value)
	if err != nil {
		e := f.errAt(n, "%v", err)
		e.Column += off + quoteShift(n)
		c.errs.add(e)
		return nil
	}
	switch {
	case segmentOnly && p.field != 0:
		c.errs.add(f.errAt(n, "a resource iterates over segments: expected a segment name such as OBX"))
		return nil
	case p.comp != 0 || p.rep != 0 || p.selC != 0 || p.occ != 0:
		c.errs.add(f.errAt(n, "expected a segment name such as OBX or a field such as PID-3 (every repetition is visited)"))
		return nil
	}
	return p
}

// docPath parses the each: of a C-CDA rule: for a resource an absolute path
// (/ClinicalDocument/...), for an element a path from the current node.
func (c *compiler) docPath(f *srcFile, n *yaml.Node, absolute bool) *xpath {
	if n.Kind != yaml.ScalarNode {
		c.errs.add(f.errAt(n, "expected a C-CDA path such as entry/act/entryRelationship/observation"))
		return nil
	}
	x, off, err := parseXPath(n.Value)
	if err != nil {
		e := f.errAt(n, "%v", err)
		e.Column += off + quoteShift(n)
		c.errs.add(e)
		return nil
	}
	if x.attrs {
		c.errs.add(f.errAt(n, "each visits elements: the path may not end in an attribute"))
		return nil
	}
	if absolute {
		for _, r := range x.alts {
			if !r.abs {
				c.errs.add(f.errAt(n, "a C-CDA resource rule's each starts at the document: /ClinicalDocument/... or //..."))
				return nil
			}
		}
	}
	return x
}

func quoteShift(n *yaml.Node) int {
	if n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0 {
		return 1
	}
	return 0
}

// normalizeYAML turns decoded YAML into JSON-shaped values.
func normalizeYAML(x any) any {
	switch v := x.(type) {
	case map[string]any:
		for k, e := range v {
			v[k] = normalizeYAML(e)
		}
		return v
	case []any:
		for i, e := range v {
			v[i] = normalizeYAML(e)
		}
		return v
	case int:
		return v
	}
	return x
}

package mapping

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/beevik/etree"
	"github.com/hiegw/hiegw/internal/ccda"
)

// xpath is a parsed C-CDA path, a small XPath subset written by analysts:
//
//	/ClinicalDocument/recordTarget/patientRole   from the document root
//	//section[templateId/@root='2.16.840.1.113883.10.20.22.2.5.1']
//	                                             every section, at any depth
//	entry/act/entryRelationship/observation      from the current node
//	code/@code  @moodCode  .  ..                 an attribute, the node, its parent
//	sdtc:raceCode                                an sdtc extension (by namespace URI)
//	component[1]                                 the first match from each node
//	a | b                                        the matches of a, then of b
//
// Predicates: [n]; [path] (exists); [path='v'] and [path!='v'] (not equal:
// no node has the value); 'and', 'or', 'not(...)' and parentheses. Element
// names without a prefix are in the CDA namespace (urn:hl7-org:v3); the only
// prefixes are sdtc: for elements and xsi: for attributes (@xsi:type compares
// its local part, PQ for xsi:type="PQ" or "v3:PQ"). Namespaces are matched by
// URI, never by the prefix the sender used.
type xpath struct {
	text  string
	alts  []*xroute // a | b
	attrs bool      // every alternative ends in an attribute
}

type xroute struct {
	abs       bool
	steps     []xstep
	attr      string // final @attr, "" for none
	attrSpace string
}

type axis uint8

const (
	axChild axis = iota
	axDesc       // descendants (after //)
	axSelf
	axParent
)

type xstep struct {
	axis  axis
	space string
	name  string // "*" any element
	preds []xpred
}

type xpred struct {
	pos  int // [n], 1-based; 0: a condition
	cond *xcond
}

type condOp uint8

const (
	cOr condOp = iota
	cAnd
	cNot
	cExists
	cEq
	cNe
)

type xcond struct {
	op   condOp
	l, r *xcond
	path *xpath
	val  string
}

// parseXPath parses a C-CDA path. On error it returns the byte offset of the
// problem inside s.
func parseXPath(s string) (*xpath, int, error) {
	p := &xparser{s: s}
	x, err := p.union()
	if err != nil {
		return nil, p.i, err
	}
	p.space()
	if p.i < len(s) {
		return nil, p.i, fmt.Errorf("unexpected %q in the C-CDA path", s[p.i:p.i+1])
	}
	x.text = s
	return x, 0, nil
}

type xparser struct {
	s string
	i int
}

func (p *xparser) space() {
	for p.i < len(p.s) && (p.s[p.i] == ' ' || p.s[p.i] == '\t' || p.s[p.i] == '\n') {
		p.i++
	}
}

func (p *xparser) peek(t string) bool { return strings.HasPrefix(p.s[p.i:], t) }

func (p *xparser) union() (*xpath, error) {
	x := &xpath{attrs: true}
	for {
		p.space()
		r, err := p.route()
		if err != nil {
			return nil, err
		}
		x.alts = append(x.alts, r)
		x.attrs = x.attrs && r.attr != ""
		p.space()
		if !p.peek("|") {
			return x, nil
		}
		p.i++
	}
}

func isNameStart(c byte) bool { return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' }
func isNameChar(c byte) bool  { return isNameStart(c) || c >= '0' && c <= '9' || c == '-' }

func (p *xparser) name() string {
	st := p.i
	if p.i < len(p.s) && isNameStart(p.s[p.i]) {
		p.i++
		for p.i < len(p.s) && isNameChar(p.s[p.i]) {
			p.i++
		}
	}
	return p.s[st:p.i]
}

func (p *xparser) route() (*xroute, error) {
	r := &xroute{}
	ax := axChild
	switch {
	case p.peek("//"):
		r.abs, ax = true, axDesc
		p.i += 2
	case p.peek("/"):
		r.abs = true
		p.i++
	}
	for {
		if p.i >= len(p.s) {
			return nil, fmt.Errorf("expected an element name, '.', '..' or '@attribute'")
		}
		switch {
		case p.peek("@"):
			p.i++
			at := p.i
			n := p.name()
			if p.peek(":") {
				if n != "xsi" {
					p.i = at
					return nil, fmt.Errorf("expected xsi: or no prefix on an attribute")
				}
				p.i++
				r.attrSpace = ccda.SpaceXSI
				n = p.name()
			}
			if n == "" {
				return nil, fmt.Errorf("expected an attribute name after '@'")
			}
			r.attr = n
			if p.peek("/") || p.peek("[") {
				return nil, fmt.Errorf("an attribute ends the path")
			}
			return r, nil
		case p.peek(".."):
			p.i += 2
			r.steps = append(r.steps, xstep{axis: axParent})
		case p.peek("."):
			p.i++
			r.steps = append(r.steps, xstep{axis: axSelf})
		default:
			st := xstep{axis: ax, space: ccda.SpaceV3}
			if p.peek("*") {
				p.i++
				st.name = "*"
			} else {
				at := p.i
				n := p.name()
				if n == "" {
					return nil, fmt.Errorf("expected an element name, '.', '..' or '@attribute'")
				}
				if p.peek(":") {
					if n != "sdtc" {
						p.i = at
						return nil, fmt.Errorf("unknown prefix %q: elements take no prefix (CDA) or sdtc:", n)
					}
					p.i++
					st.space = ccda.SpaceSDTC
					n = p.name()
					if n == "" {
						return nil, fmt.Errorf("expected an element name after sdtc:")
					}
				}
				st.name = n
			}
			for p.peek("[") {
				p.i++
				pr, err := p.pred()
				if err != nil {
					return nil, err
				}
				st.preds = append(st.preds, pr)
			}
			r.steps = append(r.steps, st)
		}
		ax = axChild
		switch {
		case p.peek("//"):
			p.i += 2
			ax = axDesc
		case p.peek("/"):
			p.i++
		default:
			return r, nil
		}
	}
}

func (p *xparser) pred() (xpred, error) {
	p.space()
	if p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
		st := p.i
		for p.i < len(p.s) && p.s[p.i] >= '0' && p.s[p.i] <= '9' {
			p.i++
		}
		n, err := strconv.Atoi(p.s[st:p.i])
		if err != nil || n < 1 {
			p.i = st
			return xpred{}, fmt.Errorf("expected a position of 1 or more")
		}
		p.space()
		if !p.peek("]") {
			return xpred{}, fmt.Errorf("expected ']' after the position")
		}
		p.i++
		return xpred{pos: n}, nil
	}
	c, err := p.or()
	if err != nil {
		return xpred{}, err
	}
	p.space()
	if !p.peek("]") {
		return xpred{}, fmt.Errorf("expected ']', 'and' or 'or'")
	}
	p.i++
	return xpred{cond: c}, nil
}

func (p *xparser) keyword(k string) bool {
	p.space()
	if !p.peek(k) {
		return false
	}
	end := p.i + len(k)
	if end < len(p.s) && isNameChar(p.s[end]) {
		return false
	}
	p.i = end
	return true
}

func (p *xparser) or() (*xcond, error) {
	l, err := p.and()
	if err != nil {
		return nil, err
	}
	for p.keyword("or") {
		r, err := p.and()
		if err != nil {
			return nil, err
		}
		l = &xcond{op: cOr, l: l, r: r}
	}
	return l, nil
}

func (p *xparser) and() (*xcond, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	for p.keyword("and") {
		r, err := p.unary()
		if err != nil {
			return nil, err
		}
		l = &xcond{op: cAnd, l: l, r: r}
	}
	return l, nil
}

func (p *xparser) unary() (*xcond, error) {
	p.space()
	if p.peek("not(") {
		p.i += 4
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.peek(")") {
			return nil, fmt.Errorf("expected ')' closing not(")
		}
		p.i++
		return &xcond{op: cNot, l: c}, nil
	}
	if p.peek("(") {
		p.i++
		c, err := p.or()
		if err != nil {
			return nil, err
		}
		p.space()
		if !p.peek(")") {
			return nil, fmt.Errorf("expected ')'")
		}
		p.i++
		return c, nil
	}
	r, err := p.route()
	if err != nil {
		return nil, err
	}
	x := &xpath{alts: []*xroute{r}, attrs: r.attr != ""}
	p.space()
	op := cExists
	switch {
	case p.peek("!="):
		op = cNe
		p.i += 2
	case p.peek("="):
		op = cEq
		p.i++
	default:
		return &xcond{op: cExists, path: x}, nil
	}
	p.space()
	if !p.peek("'") {
		return nil, fmt.Errorf("expected a value in single quotes")
	}
	end := strings.IndexByte(p.s[p.i+1:], '\'')
	if end < 0 {
		return nil, fmt.Errorf("expected ' closing the value")
	}
	v := p.s[p.i+1 : p.i+1+end]
	p.i += end + 2
	return &xcond{op: op, path: x, val: v}, nil
}

func (x *xpath) String() string { return x.text }

// --- evaluation ----------------------------------------------------------------

// nodes returns the elements x selects from ctx (nil: the document node, whose
// only child is the root element), in the order of its alternatives and
// then of the document. For a path ending in an attribute, only elements
// that carry it (not empty) are returned.
func (x *xpath) nodes(root, ctx *etree.Element) []xnode { return x.nodesIn(root, ctx, nil) }

// nodesIn is nodes with all, when not nil, the elements of the document in
// document order (root first, as docElements lists them): a // step from
// the document node then filters that list instead of walking the tree.
func (x *xpath) nodesIn(root, ctx *etree.Element, all []*etree.Element) []xnode {
	var out []xnode
	for _, r := range x.alts {
		out = r.appendNodes(out, root, ctx, all)
	}
	return out
}

// docElements appends every element of the tree under root to out, root
// first, in document order: the order a // step selects them in.
func docElements(out []*etree.Element, root *etree.Element) []*etree.Element {
	if root == nil {
		return out
	}
	out = append(out, root)
	var rec func(*etree.Element)
	rec = func(p *etree.Element) {
		for _, t := range p.Child {
			if c, ok := t.(*etree.Element); ok {
				out = append(out, c)
				rec(c)
			}
		}
	}
	rec(root)
	return out
}

// xnode is a selected element and the route that selected it.
type xnode struct {
	e *etree.Element
	r *xroute
}

// value is xvalueOf the node.
func (n xnode) value() string { return xvalueOf(n.e, n.r) }

func (r *xroute) appendNodes(out []xnode, root, ctx *etree.Element, all []*etree.Element) []xnode {
	cur := []*etree.Element{ctx}
	if r.abs {
		cur[0] = nil
	}
	for _, st := range r.steps {
		var next []*etree.Element
		for _, e := range cur {
			next = st.apply(next, root, e, all)
		}
		if st.axis == axParent || st.axis == axDesc {
			next = dedupe(next)
		}
		cur = next
		if len(cur) == 0 {
			return out
		}
	}
	for _, e := range cur {
		if e == nil {
			e = root // "/" alone: the root element
		}
		if r.attr != "" && attrNS(e, r.attrSpace, r.attr) == "" {
			continue
		}
		out = append(out, xnode{e, r})
	}
	return out
}

func dedupe(es []*etree.Element) []*etree.Element {
	if len(es) < 2 {
		return es
	}
	seen := make(map[*etree.Element]bool, len(es))
	out := es[:0]
	for _, e := range es {
		if !seen[e] {
			seen[e] = true
			out = append(out, e)
		}
	}
	return out
}

func (st *xstep) matches(e *etree.Element) bool {
	return e.Space == st.space && (st.name == "*" || e.Tag == st.name)
}

// apply appends the nodes step st selects from e (nil: the document node);
// all is nil or docElements of root.
func (st *xstep) apply(out []*etree.Element, root, e *etree.Element, all []*etree.Element) []*etree.Element {
	from := len(out)
	switch st.axis {
	case axSelf:
		out = append(out, e)
	case axParent:
		if e != nil && e != root {
			if p := e.Parent(); p != nil {
				out = append(out, p)
			}
		}
	case axChild:
		if e == nil {
			if root != nil && st.matches(root) {
				out = append(out, root)
			}
			break
		}
		for _, t := range e.Child {
			if c, ok := t.(*etree.Element); ok && st.matches(c) {
				out = append(out, c)
			}
		}
	case axDesc:
		var rec func(*etree.Element)
		rec = func(p *etree.Element) {
			for _, t := range p.Child {
				if c, ok := t.(*etree.Element); ok {
					if st.matches(c) {
						out = append(out, c)
					}
					rec(c)
				}
			}
		}
		if e == nil {
			if root == nil {
				break
			}
			if len(all) > 0 && all[0] == root {
				for _, c := range all {
					if st.matches(c) {
						out = append(out, c)
					}
				}
				break
			}
			if st.matches(root) {
				out = append(out, root)
			}
			rec(root)
		} else {
			rec(e)
		}
	}
	for _, pr := range st.preds {
		sel := out[from:]
		kept := sel[:0]
		for i, c := range sel {
			if c == nil {
				continue
			}
			if pr.pos > 0 && i+1 == pr.pos || pr.pos == 0 && pr.cond.eval(root, c) {
				kept = append(kept, c)
			}
		}
		out = out[:from+len(kept)]
	}
	return out
}

func (c *xcond) eval(root, e *etree.Element) bool {
	switch c.op {
	case cOr:
		return c.l.eval(root, e) || c.r.eval(root, e)
	case cAnd:
		return c.l.eval(root, e) && c.r.eval(root, e)
	case cNot:
		return !c.l.eval(root, e)
	case cExists:
		return len(c.path.nodes(root, e)) > 0
	}
	eq := false
	for _, n := range c.path.nodes(root, e) {
		if n.value() == c.val {
			eq = true
			break
		}
	}
	if c.op == cNe {
		return !eq
	}
	return eq
}

// xvalueOf is the value of a selected node: its attribute (xsi:type by its
// local part) when the route ends in one, else its text; "" for an element
// with a nullFlavor.
func xvalueOf(e *etree.Element, r *xroute) string {
	if r.attr != "" {
		v := attrNS(e, r.attrSpace, r.attr)
		if r.attrSpace == ccda.SpaceXSI && r.attr == "type" {
			if i := strings.IndexByte(v, ':'); i >= 0 {
				v = v[i+1:]
			}
		}
		return v
	}
	if ccda.Attr(e, "nullFlavor") != "" {
		return ""
	}
	return ccda.Text(e)
}

// attrNS returns the trimmed value of the attribute key in the canonical
// namespace space ("" for none).
func attrNS(e *etree.Element, space, key string) string {
	if e == nil {
		return ""
	}
	for _, a := range e.Attr {
		if a.Key == key && a.Space == space {
			return strings.TrimSpace(a.Value)
		}
	}
	return ""
}

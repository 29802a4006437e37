package mapping

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/conf"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser"
	"github.com/expr-lang/expr/vm"
	"github.com/hiegw/hiegw/internal/ccda"
	"go.yaml.in/yaml/v3"
)

// Expressions are github.com/expr-lang/expr programs, compiled once and
// type-checked against exprEnv and the functions in funcs.go. They cannot
// reach files, the network or the environment: the only functions are the
// pure ones registered here and expr's own string/list builtins (now() and
// the date builtins are removed, so a mapping gives the same output for the
// same input).

// ctxName is the hidden variable through which functions reach the message.
const ctxName = "__ctx"

// exprEnv is the environment every expression is checked and run against.
type exprEnv struct {
	Ctx context.Context `expr:"__ctx"`
}

// Limits on expressions: a compile-time node budget and a run-time memory
// budget (expr counts allocations of lists, maps and strings it builds).
const (
	maxNodes     = 400
	memoryBudget = 20000
)

type exprKind int

const (
	kindAny exprKind = iota
	kindBool
)

// program is one compiled expression.
type program struct {
	prog *vm.Program
	src  string
	pos  string // file:line
	path *hpath // the first HL7 path it reads, for error locations

	// A program that is one call of our functions with constant arguments,
	// the commonest form, is run directly without the VM.
	direct *fnSpec
	args   []any
	// pruned: the direct call's value is already pruned (a clean function,
	// or a list made by buildEach), so that prune would give it back
	// unchanged.
	pruned bool
	// Other calls of our functions and simple conditions on them are
	// walked as a tree (direct.go).
	tree *tree
	// known: the FHIR type a direct call's value is valid as unless its
	// builder says otherwise (fnSpec.makes); "" for any other program.
	known string
}

// makes is the FHIR type p's value is known to be valid as when the
// builder raised no doubt (state.unsure), "" when nothing is known.
func (p *program) makes() string { return p.known }

type compiler struct {
	set     *Set
	errs    *errorList
	opts    []expr.Option
	msgRefs []msgRef
	pconf   *conf.Config
	ccda    bool // compiling a rule that reads C-CDA documents
}

func newCompiler(s *Set, errs *errorList) *compiler {
	c := &compiler{set: s, errs: errs}
	c.opts = []expr.Option{
		expr.Env(exprEnv{}),
		expr.WithContext(ctxName),
		expr.MaxNodes(maxNodes),
		expr.DisableBuiltin("now"),
		expr.DisableBuiltin("date"),
		expr.DisableBuiltin("duration"),
		expr.DisableBuiltin("timezone"),
	}
	for _, f := range funcs {
		f := f
		c.opts = append(c.opts, expr.Function(f.name, func(params ...any) (any, error) {
			st, ok := params[0].(*state)
			if !ok {
				return nil, errors.New("internal: missing evaluation state")
			}
			return f.impl(st, params[1:])
		}, f.types...))
	}
	return c
}

// compile compiles the expression in scalar node n.
func (c *compiler) compile(f *srcFile, n *yaml.Node, kind exprKind, names map[string]bool) *program {
	if n.Kind != yaml.ScalarNode {
		c.errs.add(f.errAt(n, "expected an expression"))
		return nil
	}
	src := n.Value
	if strings.TrimSpace(src) == "" {
		c.errs.add(f.errAt(n, "empty expression"))
		return nil
	}
	pm := newPosMap(f, n)
	opts := c.opts
	if kind == kindBool {
		opts = append(opts[:len(opts):len(opts)], expr.AsBool())
	}
	prog, err := expr.Compile(src, opts...)
	if err != nil {
		var fe *file.Error
		msg := err.Error()
		off := 0
		if errors.As(err, &fe) {
			msg = fe.Message
			off = offsetOf(src, fe.Line, fe.Column)
		}
		if strings.Contains(msg, "unexpected token EOF") || strings.Contains(msg, "literal not terminated") {
			if at, what := unclosed(src); at >= 0 {
				msg, off = what+" is not closed", at
			}
		}
		c.errs.add(pm.errAt(off, "expression: "+msg))
		return nil
	}
	p := &program{prog: prog, src: src, pos: f.pos(n)}
	c.checkCalls(src, pm, p, names)
	return p
}

// offsetOf turns expr's (1-based line, 0-based column) into a byte offset.
func offsetOf(src string, line, col int) int {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(src[off:], '\n')
		if i < 0 {
			break
		}
		off += i + 1
	}
	// col counts runes
	for n := 0; n < col && off < len(src); n++ {
		_, size := decodeRune(src[off:])
		off += size
	}
	return off
}

func decodeRune(s string) (rune, int) {
	for i, r := range s {
		if i == 0 {
			return r, len(string(r))
		}
	}
	return 0, 1
}

// parseConfig is the configuration the expressions are compiled with, for
// parsing them again to check arguments (so our functions parse as calls,
// not as the builtins they replace).
func (c *compiler) parseConfig() *conf.Config {
	if c.pconf == nil {
		cfg := conf.CreateNew()
		for _, op := range c.opts {
			op(cfg)
		}
		for name := range cfg.Disabled {
			delete(cfg.Builtins, name)
		}
		c.pconf = cfg
	}
	return c.pconf
}

// checkCalls walks the expression and checks the constant arguments of our
// functions: HL7 paths, code table names and resource rule names.
func (c *compiler) checkCalls(src string, pm *posMap, p *program, names map[string]bool) {
	parsed, err := parser.ParseWithConfig(src, c.parseConfig())
	if err != nil {
		return
	}
	v := &callChecker{c: c, pm: pm, p: p, names: names, src: src}
	ast.Walk(&parsed.Node, v)
	if call, ok := parsed.Node.(*ast.CallNode); ok {
		if id, ok := call.Callee.(*ast.IdentifierNode); ok && funcByName[id.Value] != nil {
			args := make([]any, 0, len(call.Arguments))
			for _, a := range call.Arguments {
				if s, ok := a.(*ast.StringNode); ok {
					args = append(args, s.Value)
				}
			}
			if len(args) == len(call.Arguments) {
				p.direct, p.args = funcByName[id.Value], resolvePaths(funcByName[id.Value], args, c.set)
				p.pruned = p.direct.clean
				if p.direct.eachPath && len(p.args) > 0 {
					if hp, ok := p.args[0].(*hpath); ok && hp.repAll {
						p.pruned = true
					}
				}
				if p.direct.clean {
					// the value is stored as the builder made it (no prune)
					p.known = p.direct.makes
				}
				return
			}
		}
	}
	p.tree, _ = buildTree(parsed.Node)
	p.tree.resolvePaths(c.set)
}

// resolvePaths replaces the constant path arguments of a call of f by their
// parsed form, so that a run does not look them up by text.
func resolvePaths(f *fnSpec, args []any, set *Set) []any {
	for i, a := range args {
		s, ok := a.(string)
		if !ok {
			continue
		}
		switch f.argKind(i) {
		case argPath:
			if hp := set.paths[s]; hp != nil {
				args[i] = hp
			}
		case argXPath:
			if xp := set.xpaths[s]; xp != nil {
				args[i] = xp
			}
		}
	}
	return args
}

type callChecker struct {
	c     *compiler
	pm    *posMap
	p     *program
	names map[string]bool
	src   string
}

func (v *callChecker) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.IdentifierNode:
		if n.Value == ctxName {
			v.c.errs.add(v.pm.errAt(runeOffset(v.src, n.Location().From), "expression: "+ctxName+" is reserved"))
		}
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return
		}
		spec := funcByName[id.Value]
		if spec == nil {
			return
		}
		if k := spec.source(); k != srcAny && (k == srcCCDA) != v.c.ccda {
			at := runeOffset(v.src, n.Location().From)
			if v.c.ccda {
				v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s reads HL7 v2 messages; this rule reads C-CDA documents (use the C-CDA functions: xv, cd, ii, ts, ...)", id.Value)))
			} else {
				v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s reads C-CDA documents; this rule reads HL7 v2 messages (a C-CDA rule has each: /ClinicalDocument/...)", id.Value)))
			}
			return
		}
		for i, a := range n.Arguments {
			s, ok := a.(*ast.StringNode)
			if !ok {
				continue
			}
			at := runeOffset(v.src, a.Location().From) + 1 // inside the quote
			switch spec.argKind(i) {
			case argPath:
				hp, off, err := parsePath(s.Value)
				if err != nil {
					v.c.errs.add(v.pm.errAt(at+off, fmt.Sprintf("%s: %v", id.Value, err)))
					continue
				}
				if hp.repAll && !spec.lists {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s reads one value: [*] is for each: and the datatype functions", id.Value)))
					continue
				}
				if hp.field == 0 && !spec.segments {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s needs a field, such as %s-3", id.Value, hp.seg)))
					continue
				}
				v.c.set.paths[s.Value] = hp
				if v.p.path == nil {
					v.p.path = hp
				}
			case argXPath:
				xp, off, err := parseXPath(s.Value)
				if err != nil {
					v.c.errs.add(v.pm.errAt(at+off, fmt.Sprintf("%s: %v", id.Value, err)))
					continue
				}
				v.c.set.xpaths[s.Value] = xp
			case argDoc:
				if _, ok := docFacts[s.Value]; !ok {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s: no document fact %q (expected one of %s)", id.Value, s.Value, docFactNames())))
				}
			case argOID:
				if !ccda.IsOID(s.Value) {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("%s: expected a code system OID such as 2.16.840.1.113883.5.83", id.Value)))
				}
			case argTable:
				if v.c.set.tables[s.Value] == nil {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("no code table %q (expected a CSV under codes/: %s)", s.Value, strings.Join(tableNames(v.c.set), ", "))))
				}
			case argRule:
				if !v.names[s.Value] {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("no resource rule %q", s.Value)))
				}
			case argType:
				if !primitives[s.Value] && fhirTypes[s.Value] == nil {
					v.c.errs.add(v.pm.errAt(at, fmt.Sprintf("unknown FHIR type %q", s.Value)))
				}
			}
		}
	}
}

// runeOffset converts expr's rune offset into a byte offset.
func runeOffset(s string, runes int) int {
	n := 0
	for i := range s {
		if n == runes {
			return i
		}
		n++
	}
	return len(s)
}

func tableNames(s *Set) []string {
	out := make([]string, 0, len(s.tables))
	for k := range s.tables {
		out = append(out, k)
	}
	sortStrings(out)
	return out
}

// posMap maps byte offsets inside a scalar's value back to file positions.
type posMap struct {
	f    *srcFile
	node *yaml.Node
	segs []posSeg
}

type posSeg struct {
	off, n    int // offset in the value and length
	line, col int // file position of off (1-based)
}

func newPosMap(f *srcFile, n *yaml.Node) *posMap {
	pm := &posMap{f: f, node: n}
	v := n.Value
	switch {
	case n.Style&yaml.LiteralStyle != 0:
		// content starts on the next line; lines keep what is indented
		// beyond the block's indentation (that of its first line)
		first := f.line(n.Line + 1)
		indent := len(first) - len(strings.TrimLeft(first, " "))
		off := 0
		for i, l := range strings.Split(v, "\n") {
			pm.segs = append(pm.segs, posSeg{off: off, n: len(l), line: n.Line + 1 + i, col: indent + 1})
			off += len(l) + 1
		}
	case n.Style&(yaml.DoubleQuotedStyle|yaml.SingleQuotedStyle) != 0:
		pm.segs = append(pm.segs, posSeg{off: 0, n: len(v), line: n.Line, col: n.Column + 1})
	default:
		// plain or folded: lines joined by single spaces
		line, col := n.Line, n.Column
		if n.Style&yaml.FoldedStyle != 0 {
			line++
			src := f.line(line)
			col = len(src) - len(strings.TrimLeft(src, " ")) + 1
		}
		off := 0
		for off < len(v) {
			src := f.line(line)
			if col-1 > len(src) {
				break
			}
			part := strings.TrimRight(src[col-1:], " ")
			if k := strings.Index(part, " #"); k >= 0 {
				part = part[:k]
			}
			pm.segs = append(pm.segs, posSeg{off: off, n: len(part), line: line, col: col})
			off += len(part) + 1
			line++
			next := f.line(line)
			col = len(next) - len(strings.TrimLeft(next, " ")) + 1
			if line > len(f.lines) {
				break
			}
		}
	}
	return pm
}

func (pm *posMap) errAt(off int, msg string) *Error {
	line, col := pm.node.Line, pm.node.Column
	for _, s := range pm.segs {
		if off >= s.off && off <= s.off+s.n {
			line, col = s.line, s.col+off-s.off
			break
		}
	}
	return &Error{File: pm.f.name, Line: line, Column: col, Msg: msg, Source: pm.f.line(line)}
}

// unclosed finds the bracket or string that an expression ending too early
// left open: the byte offset where it opens and what it is ("'('", "a
// string"), or -1. The expression library says only "unexpected token
// EOF" or "literal not terminated", at the end.
func unclosed(src string) (int, string) {
	var open []int // offsets of the open brackets
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case '"', '\'', '`':
			j := i + 1
			for j < len(src) && src[j] != c {
				if src[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(src) {
				return i, "a string"
			}
			i = j
		case '(', '[', '{':
			open = append(open, i)
		case ')', ']', '}':
			if len(open) > 0 {
				open = open[:len(open)-1]
			}
		}
	}
	if len(open) == 0 {
		return -1, ""
	}
	at := open[len(open)-1]
	return at, "'" + src[at:at+1] + "'"
}

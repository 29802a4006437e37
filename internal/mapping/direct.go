package mapping

import (
	"errors"
	"reflect"
	"strings"

	"github.com/expr-lang/expr/ast"
)

// Most expressions in mapping files are calls of our functions whose
// arguments are constants or other such calls (first(v("OBR-3.1"),
// v("ORC-3.1"))), or a simple condition on one (v("OBX-2") == "NM",
// v("OBX-2") in ["CE", "CWE"], exists("A") || exists("B")). These are
// turned at load time into a small tree the engine walks itself, without
// expr's VM and its per-run allocations. expr still compiles and
// type-checks every expression, and runs anything the tree cannot express
// exactly; the tree gives the same values the VM would.

type treeOp uint8

const (
	opConst treeOp = iota // a string constant
	opCall                // one of our functions
	opEq                  // left == str
	opNe                  // left != str
	opIn                  // left in strs
	opNotIn               // left not in strs
	opAnd                 // left && right
	opOr                  // left || right
	opNot                 // !left
)

// resultKind is what a tree node yields, as far as the tree needs to know.
type resultKind uint8

const (
	resOther resultKind = iota
	resString
	resBool
)

type tree struct {
	op          treeOp
	fn          *fnSpec
	args        []*tree // arguments of a call
	consts      []any   // the arguments when all are constants
	val         any     // opConst
	str         string  // opEq, opNe
	strs        []string
	left, right *tree
	isStr       bool // yields a string
	first       bool // first(...) of string arguments
	// pureFrom: for first, the index from which every argument is a call
	// of a pure function (fnSpec.pure) with its paths parsed at load time:
	// once a value is found, those need not be evaluated.
	pureFrom int
}

// errTreeType stops a tree walk whose values are not of the expected type;
// the VM then runs the program instead.
var errTreeType = errors.New("internal: unexpected value type")

// buildTree turns a parsed expression into a tree, or nil when the tree
// cannot express it.
func buildTree(n ast.Node) (*tree, resultKind) {
	switch n := n.(type) {
	case *ast.StringNode:
		return &tree{op: opConst, val: n.Value, isStr: true}, resString
	case *ast.CallNode:
		id, ok := n.Callee.(*ast.IdentifierNode)
		if !ok {
			return nil, resOther
		}
		spec := funcByName[id.Value]
		if spec == nil {
			return nil, resOther
		}
		t := &tree{op: opCall, fn: spec, isStr: spec.result == resString}
		allConst, allStr := true, true
		for _, a := range n.Arguments {
			at, ak := buildTree(a)
			if at == nil {
				return nil, resOther
			}
			allConst = allConst && at.op == opConst
			allStr = allStr && ak == resString
			t.args = append(t.args, at)
		}
		t.first = spec.name == "first" && allStr
		if allConst {
			t.consts = make([]any, len(t.args))
			for i, a := range t.args {
				t.consts[i] = a.val
			}
		}
		return t, spec.result
	case *ast.BinaryNode:
		switch n.Operator {
		case "==", "!=":
			l, lk := buildTree(n.Left)
			r, ok := n.Right.(*ast.StringNode)
			if l == nil || lk != resString || !ok {
				return nil, resOther
			}
			op := opEq
			if n.Operator == "!=" {
				op = opNe
			}
			return &tree{op: op, left: l, str: r.Value}, resBool
		case "in":
			l, lk := buildTree(n.Left)
			if l == nil || lk != resString {
				return nil, resOther
			}
			strs, ok := stringArray(n.Right)
			if !ok {
				return nil, resOther
			}
			return &tree{op: opIn, left: l, strs: strs}, resBool
		case "and", "&&", "or", "||":
			l, lk := buildTree(n.Left)
			r, rk := buildTree(n.Right)
			if l == nil || r == nil || lk != resBool || rk != resBool {
				return nil, resOther
			}
			op := opAnd
			if n.Operator == "or" || n.Operator == "||" {
				op = opOr
			}
			return &tree{op: op, left: l, right: r}, resBool
		}
	case *ast.UnaryNode:
		if n.Operator != "not" && n.Operator != "!" {
			return nil, resOther
		}
		l, lk := buildTree(n.Node)
		if l == nil || lk != resBool {
			return nil, resOther
		}
		if l.op == opIn {
			l.op = opNotIn
			return l, resBool
		}
		return &tree{op: opNot, left: l}, resBool
	}
	return nil, resOther
}

func stringArray(n ast.Node) ([]string, bool) {
	arr, ok := n.(*ast.ArrayNode)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(arr.Nodes))
	for _, e := range arr.Nodes {
		s, ok := e.(*ast.StringNode)
		if !ok {
			return nil, false
		}
		out = append(out, s.Value)
	}
	return out, true
}

// resultOf is what every signature of a function returns: a string, a bool
// or anything else.
func resultOf(types []any) resultKind {
	kind := resOther
	for i, t := range types {
		ft := reflect.TypeOf(t)
		for ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if ft.Kind() != reflect.Func || ft.NumOut() != 1 {
			return resOther
		}
		k := resOther
		switch ft.Out(0).Kind() {
		case reflect.String:
			k = resString
		case reflect.Bool:
			k = resBool
		}
		if i > 0 && k != kind {
			return resOther
		}
		kind = k
	}
	return kind
}

// runTreeString is runTree for a tree that yields a string.
func (st *state) runTreeString(p *program) (s string, err error) {
	defer func() {
		if recover() != nil {
			st.args = st.args[:0]
			s, err = st.runVMString(p)
		}
	}()
	s, err = st.evalString(p.tree)
	if err != nil {
		var me *MapError
		var ve *valueError
		if !errors.As(err, &me) && !errors.As(err, &ve) {
			st.args = st.args[:0]
			return st.runVMString(p)
		}
	}
	return s, err
}

func (st *state) runVMString(p *program) (string, error) {
	v, err := st.runVM(p)
	if err != nil {
		return "", err
	}
	return stringOf(v), nil
}

// evalString evaluates a tree that yields a string without boxing it where
// the function allows.
func (st *state) evalString(t *tree) (string, error) {
	switch {
	case t.op == opConst:
		s, _ := t.val.(string)
		return s, nil
	case t.op == opCall && t.fn.str != nil && (t.consts != nil || len(t.args) == 0):
		return t.fn.str(st, t.consts)
	case t.first:
		// as fnFirst: every argument is evaluated, the first that is not
		// blank is the value
		out, found := "", false
		for i, a := range t.args {
			if found && i >= t.pureFrom && !st.trackNull {
				break // the rest can change nothing
			}
			s, err := st.evalString(a)
			if err != nil {
				return "", err
			}
			if !found && strings.TrimSpace(s) != "" {
				out, found = s, true
			}
		}
		return out, nil
	}
	v, err := st.eval(t)
	if err != nil {
		return "", err
	}
	s, ok := v.(string)
	if !ok {
		return "", errTreeType
	}
	return s, nil
}

// runTree evaluates p's tree. Anything unexpected (a value of another type,
// an error that does not name its location, a panic) makes the VM run the
// program instead, so that results and error texts stay those of expr.
func (st *state) runTree(p *program) (v any, err error) {
	defer func() {
		if recover() != nil {
			st.args = st.args[:0]
			v, err = st.runVM(p)
		}
	}()
	v, err = st.eval(p.tree)
	if err != nil {
		var me *MapError
		var ve *valueError
		if !errors.As(err, &me) && !errors.As(err, &ve) {
			st.args = st.args[:0]
			return st.runVM(p)
		}
	}
	return v, err
}

func (st *state) eval(t *tree) (any, error) {
	switch t.op {
	case opConst:
		return t.val, nil
	case opCall:
		if t.first {
			s, err := st.evalString(t)
			if err != nil {
				return nil, err
			}
			return s, nil
		}
		if t.consts != nil || len(t.args) == 0 {
			return t.fn.impl(st, t.consts)
		}
		base := len(st.args)
		for _, a := range t.args {
			v, err := st.eval(a)
			if err != nil {
				st.args = st.args[:base]
				return nil, err
			}
			st.args = append(st.args, v)
		}
		v, err := t.fn.impl(st, st.args[base:])
		clear(st.args[base:])
		st.args = st.args[:base]
		return v, err
	case opEq, opNe, opIn, opNotIn:
		s, err := st.evalString(t.left)
		if err != nil {
			return nil, err
		}
		switch t.op {
		case opEq:
			return s == t.str, nil
		case opNe:
			return s != t.str, nil
		}
		found := false
		for _, x := range t.strs {
			if x == s {
				found = true
				break
			}
		}
		return found == (t.op == opIn), nil
	case opAnd, opOr, opNot:
		v, err := st.eval(t.left)
		if err != nil {
			return nil, err
		}
		b, ok := v.(bool)
		if !ok {
			return nil, errTreeType
		}
		switch {
		case t.op == opNot:
			return !b, nil
		case t.op == opAnd && !b, t.op == opOr && b:
			return b, nil
		}
		v, err = st.eval(t.right)
		if err != nil {
			return nil, err
		}
		if _, ok := v.(bool); !ok {
			return nil, errTreeType
		}
		return v, nil
	}
	return nil, errTreeType
}

// pureCall tells whether t is a call of a pure function whose path
// arguments were all parsed at load time.
func (t *tree) pureCall() bool {
	if t.op != opCall || !t.fn.pure || t.consts == nil {
		return false
	}
	for i, c := range t.consts {
		if t.fn.argKind(i) == argPath {
			if _, ok := c.(*hpath); !ok {
				return false
			}
		}
	}
	return true
}

// resolvePaths applies resolvePaths to every call with constant arguments.
func (t *tree) resolvePaths(paths *Set) {
	if t == nil {
		return
	}
	if t.op == opCall && t.consts != nil {
		t.consts = resolvePaths(t.fn, t.consts, paths)
	}
	for _, a := range t.args {
		a.resolvePaths(paths)
	}
	if t.first {
		t.pureFrom = len(t.args)
		for i := len(t.args) - 1; i >= 0 && t.args[i].pureCall(); i-- {
			t.pureFrom = i
		}
	}
	t.left.resolvePaths(paths)
	t.right.resolvePaths(paths)
}

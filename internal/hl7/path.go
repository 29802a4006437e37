package hl7

import "fmt"

// path is a parsed value path such as "OBX[2]-5[1].1.2".
type path struct {
	seg       string
	occ       int // 1-based; all = -1
	field     int
	rep       int // 1-based; all = -1
	comp, sub int // 0: whole
}

const all = -1

// parsePath reads SEG[occ]-FIELD[rep].COMP.SUB; occurrence and repetition default to 1 and accept "*". It does
// not allocate; on failure it returns a detail text.
func parsePath(p string) (path, string) {
	var r path
	if len(p) < 5 || !validSegmentName([]byte(p[:3])) {
		return r, "must start with a three-character segment name and a field, e.g. PID-5"
	}
	r.seg = p[:3]
	i := 3
	var detail string
	if r.occ, i, detail = bracket(p, i); detail != "" {
		return r, "segment occurrence " + detail
	}
	if i >= len(p) || p[i] != '-' {
		return r, "expected '-' and a field number after the segment name"
	}
	if r.field, i = number(p, i+1); r.field < 1 {
		return r, "field number must be a positive integer"
	}
	if r.rep, i, detail = bracket(p, i); detail != "" {
		return r, "repetition " + detail
	}
	if i < len(p) && p[i] == '.' {
		if r.comp, i = number(p, i+1); r.comp < 1 {
			return r, "component number must be a positive integer"
		}
		if i < len(p) && p[i] == '.' {
			if r.sub, i = number(p, i+1); r.sub < 1 {
				return r, "subcomponent number must be a positive integer"
			}
		}
	}
	if i != len(p) {
		return r, "unexpected characters at the end"
	}
	return r, ""
}

// bracket reads an optional "[n]" or "[*]" at i; absent means 1.
func bracket(p string, i int) (int, int, string) {
	if i >= len(p) || p[i] != '[' {
		return 1, i, ""
	}
	if i+2 < len(p) && p[i+1] == '*' && p[i+2] == ']' {
		return all, i + 3, ""
	}
	n, j := number(p, i+1)
	if n < 1 || j >= len(p) || p[j] != ']' {
		return 0, j, "must be [n] with n >= 1, or [*]"
	}
	return n, j + 1, ""
}

// number reads decimal digits at i; it returns -1 when there are none or the value is unreasonably large.
func number(p string, i int) (int, int) {
	n, j := 0, i
	for j < len(p) && p[j] >= '0' && p[j] <= '9' {
		n = n*10 + int(p[j]-'0')
		if n > 1_000_000 {
			return -1, j
		}
		j++
	}
	if j == i {
		return -1, j
	}
	return n, j
}

// Get returns the first value a path selects, decoded; "" if it is absent or the path is invalid. Paths look
// like PID-5, PID-5.1, PID-5.1.1, PID-3[2].1, OBX[3]-5 and MSH-9.2: the segment occurrence and repetition in
// brackets are 1-based and default to the first ([*] is accepted and means the first here). Without a component
// number the whole repetition is returned, component separators included; with one, that component (its
// subcomponents joined), and with a subcomponent number, that subcomponent.
func (m *Message) Get(p string) string {
	pp, detail := parsePath(p)
	if detail != "" {
		return ""
	}
	occ := 0
	for i := range m.segs {
		if !m.nameIs(i, pp.seg) {
			continue
		}
		occ++
		if pp.occ == all || pp.occ == occ {
			f := Segment{m: m, i: int32(i)}.Field(pp.field)
			return f.value(max(pp.rep, 1), pp.comp, pp.sub)
		}
	}
	return ""
}

// Query returns every value a path selects, decoded, in message order: "OBX[*]-5" gives one value per OBX
// segment (empty ones included), "PID-3[*].1" one per repetition of PID-3 (an empty field has none). A path
// without [*] gives at most one value. It fails only on an invalid path (ErrBadPath).
func (m *Message) Query(p string) ([]string, error) {
	pp, detail := parsePath(p)
	if detail != "" {
		return nil, fmt.Errorf("query %q: %w: %s", p, ErrBadPath, detail)
	}
	var out []string
	occ := 0
	for i := range m.segs {
		if !m.nameIs(i, pp.seg) {
			continue
		}
		occ++
		if pp.occ != all && pp.occ != occ {
			continue
		}
		f := Segment{m: m, i: int32(i)}.Field(pp.field)
		if pp.rep == all {
			for r := 1; r <= f.RepCount(); r++ {
				out = append(out, f.value(r, pp.comp, pp.sub))
			}
		} else {
			out = append(out, f.value(pp.rep, pp.comp, pp.sub))
		}
		if pp.occ != all {
			break
		}
	}
	return out, nil
}

package mapping

import (
	"fmt"
	"strconv"
	"strings"
)

// hpath is a parsed HL7 v2 location as analysts write it:
//
//	SEG            a segment (only in each and exists)
//	SEG-F          a field, e.g. PID-8
//	SEG-F.C.S      a component and subcomponent, e.g. PID-3.4.1
//	SEG[n]-F       the n-th segment of that name in the message, e.g. OBX[2]-5
//	SEG-F[r]       the r-th repetition, e.g. PID-3[2].1
//	SEG-F[*]       every repetition (only in each)
//	SEG-F[C=VAL]   the first repetition whose component C is VAL, e.g. PID-3[5=MR]
type hpath struct {
	text   string
	seg    string
	occ    int // 1-based occurrence of the segment; 0: from the context
	field  int // 0: the segment itself
	rep    int // 1-based; 0: from the context (or the first)
	repAll bool
	selC   int // selector component; 0: no selector
	selV   string
	comp   int
	sub    int
}

// segTag packs a segment name of three bytes into a number that no other
// name has (a name of another length packs to 0), so that segments are
// told apart without comparing strings.
func segTag(name string) uint32 {
	if len(name) != 3 {
		return 0
	}
	return 1<<24 | uint32(name[0])<<16 | uint32(name[1])<<8 | uint32(name[2])
}

// parsePath parses an HL7 path. On error it returns the 0-based offset of the
// problem inside the text and what was expected there.
func parsePath(s string) (*hpath, int, error) {
	p := &hpath{text: s}
	i := 0
	if len(s) < 3 {
		return nil, 0, fmt.Errorf("expected a segment name of three letters or digits, such as PID")
	}
	for ; i < 3; i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9') {
			return nil, i, fmt.Errorf("expected a segment name of three capital letters or digits, such as PID")
		}
	}
	p.seg = s[:3]
	if i < len(s) && s[i] == '[' {
		n, j, err := bracketInt(s, i)
		if err != nil {
			return nil, i, err
		}
		p.occ, i = n, j
	}
	if i == len(s) {
		return p, 0, nil
	}
	if s[i] != '-' {
		return nil, i, fmt.Errorf("expected '-' and a field number after the segment name")
	}
	i++
	n, j := digits(s, i)
	if j == i || n < 1 {
		return nil, i, fmt.Errorf("expected a field number of 1 or more")
	}
	p.field, i = n, j
	if i < len(s) && s[i] == '[' {
		end := strings.IndexByte(s[i:], ']')
		if end < 0 {
			return nil, i, fmt.Errorf("expected ']' closing the repetition")
		}
		inner := s[i+1 : i+end]
		switch {
		case inner == "*":
			p.repAll = true
		case strings.Contains(inner, "="):
			k := strings.IndexByte(inner, '=')
			c, err := strconv.Atoi(inner[:k])
			if err != nil || c < 1 {
				return nil, i + 1, fmt.Errorf("expected a component number before '=' in the repetition selector")
			}
			if k+1 >= len(inner) {
				return nil, i + 1 + k + 1, fmt.Errorf("expected a value after '=' in the repetition selector")
			}
			p.selC, p.selV = c, inner[k+1:]
		default:
			r, err := strconv.Atoi(inner)
			if err != nil || r < 1 {
				return nil, i + 1, fmt.Errorf("expected a repetition number of 1 or more, '*' or COMPONENT=VALUE")
			}
			p.rep = r
		}
		i += end + 1
	}
	for part := 0; i < len(s); part++ {
		if s[i] != '.' || part > 1 {
			return nil, i, fmt.Errorf("expected '.' and a component (then subcomponent) number")
		}
		i++
		n, j := digits(s, i)
		if j == i || n < 1 {
			return nil, i, fmt.Errorf("expected a component number of 1 or more")
		}
		if part == 0 {
			p.comp = n
		} else {
			p.sub = n
		}
		i = j
	}
	return p, 0, nil
}

func bracketInt(s string, i int) (int, int, error) {
	n, j := digits(s, i+1)
	if j == i+1 || n < 1 {
		return 0, i, fmt.Errorf("expected a segment occurrence number of 1 or more inside [ ]")
	}
	if j >= len(s) || s[j] != ']' {
		return 0, j, fmt.Errorf("expected ']'")
	}
	return n, j + 1, nil
}

func digits(s string, i int) (int, int) {
	n, j := 0, i
	for j < len(s) && s[j] >= '0' && s[j] <= '9' && j-i < 6 {
		n = n*10 + int(s[j]-'0')
		j++
	}
	return n, j
}

// String returns the path as written.
func (p *hpath) String() string { return p.text }

// fieldOf returns the same path narrowed to a component (and subcomponent).
func (p *hpath) withComp(c, s int) *hpath {
	q := *p
	if q.comp == 0 {
		q.comp, q.sub = c, s
	} else if q.sub == 0 {
		q.sub = c
	}
	return &q
}

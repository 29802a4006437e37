package mapping

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strings"
)

// codeHeader is the header every code table must start with.
var codeHeader = []string{"source_system", "source_code", "target_system", "target_code", "display"}

// codeEntry is one row of a code table.
type codeEntry struct {
	System  string // target system
	Code    string // target code
	Display string
	// the same as interface values, made once at load time for the
	// objects the rows go into (a string stored in a map[string]any is
	// otherwise copied to the heap each time)
	vSystem, vCode, vDisplay any
	ok                       bool // codingOK(System, Code), worked out at load time
}

func newCodeEntry(system, code, display string) codeEntry {
	return codeEntry{System: system, Code: code, Display: display, vSystem: system, vCode: code, vDisplay: display,
		ok: codingOK(system, code)}
}

// codeTable maps (source system, source code) to a target code. A row with an
// empty source system matches the code from any system.
type codeTable struct {
	name string
	file string
	rows map[[2]string]codeEntry
}

// parseCodeTable reads a CSV code table. Problems are located by line and
// column; reading stops at the first syntax error.
func parseCodeTable(name, file string, data []byte, errs *errorList) *codeTable {
	t := &codeTable{name: name, file: file, rows: map[[2]string]codeEntry{}}
	lines := strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n")
	src := func(line int) string {
		if line >= 1 && line <= len(lines) {
			return lines[line-1]
		}
		return ""
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	r := csv.NewReader(bytes.NewReader(data))
	r.Comment = '#'
	r.FieldsPerRecord = -1
	first := true
	seen := map[[2]string]int{}
	for {
		rec, err := r.Read()
		if err == io.EOF {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				errs.add(&Error{File: file, Line: pe.Line, Column: pe.Column, Msg: "CSV: " + pe.Err.Error(), Source: src(pe.Line)})
			} else {
				errs.add(&Error{File: file, Msg: "CSV: " + err.Error()})
			}
			return t
		}
		line, _ := r.FieldPos(0)
		if first {
			first = false
			if len(rec) != len(codeHeader) || !equalFold(rec, codeHeader) {
				errs.add(&Error{File: file, Line: line, Column: 1, Source: src(line),
					Msg: "expected the header " + strings.Join(codeHeader, ",")})
				return t
			}
			continue
		}
		if len(rec) != len(codeHeader) {
			errs.add(&Error{File: file, Line: line, Column: 1, Source: src(line),
				Msg: fmt.Sprintf("expected %d columns (%s), found %d", len(codeHeader), strings.Join(codeHeader, ","), len(rec))})
			continue
		}
		for i := range rec {
			rec[i] = strings.TrimSpace(rec[i])
		}
		if rec[1] == "" {
			_, col := r.FieldPos(1)
			errs.add(&Error{File: file, Line: line, Column: col, Source: src(line), Msg: "source_code is empty"})
			continue
		}
		if rec[3] == "" {
			_, col := r.FieldPos(3)
			errs.add(&Error{File: file, Line: line, Column: col, Source: src(line), Msg: "target_code is empty"})
			continue
		}
		k := [2]string{rec[0], rec[1]}
		if prev, dup := seen[k]; dup {
			_, col := r.FieldPos(1)
			errs.add(&Error{File: file, Line: line, Column: col, Source: src(line),
				Msg: fmt.Sprintf("source system and code already mapped on line %d", prev)})
			continue
		}
		seen[k] = line
		t.rows[k] = newCodeEntry(rec[2], rec[3], rec[4])
	}
	if first {
		errs.add(&Error{File: file, Line: 1, Column: 1, Msg: "expected the header " + strings.Join(codeHeader, ",")})
	}
	return t
}

func equalFold(a, b []string) bool {
	for i := range a {
		if !strings.EqualFold(strings.TrimSpace(strings.TrimPrefix(a[i], "\ufeff")), b[i]) {
			return false
		}
	}
	return true
}

// tableChain is a code table as one sender sees it: its own overlays first,
// then the shared table.
type tableChain []*codeTable

func (c tableChain) lookup(system, code string) (codeEntry, bool) {
	for _, t := range c {
		if e, ok := t.rows[[2]string{system, code}]; ok {
			return e, true
		}
		if system != "" {
			if e, ok := t.rows[[2]string{"", code}]; ok {
				return e, true
			}
		}
	}
	return codeEntry{}, false
}

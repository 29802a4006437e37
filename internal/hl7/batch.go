package hl7

import (
	"bytes"
	"errors"
	"strconv"
)

// Batch is the result of SplitBatch. Header and trailer segments are raw (without terminator) or nil.
type Batch struct {
	FileHeader, BatchHeader   []byte // FHS, first BHS
	FileTrailer, BatchTrailer []byte // FTS, last BTS
	Batches                   int    // number of BHS segments
	Messages                  [][]byte
}

// SplitBatch splits a file holding FHS/BHS ... BTS/FTS batches, or bare concatenated messages, into messages.
// A message starts at an MSH and runs to the next MSH or batch segment; blank lines between messages are
// skipped, and each message slice (a sub-slice of data) ends after the terminator of its last segment. When
// present, BTS-1 (messages in the batch) and FTS-1 (batches in the file) are checked; a mismatch is an
// ErrBatchCount *ParseError that says what was expected and found. Lines outside any message that are not batch
// segments are reported as ErrBatch. On error the Batch still holds everything that could be split, so the
// caller can decide; several problems are joined with errors.Join.
func SplitBatch(data []byte) (Batch, error) {
	var b Batch
	p := 0
	if bytes.HasPrefix(data, bom) {
		p = len(bom)
	}
	var errs []error
	ls := newLines(data, p)
	cur, curEnd := -1, -1 // current message start and end (after its last terminator)
	var curFS byte
	afterBlank := false
	batchMsgs := 0
	closeMsg := func() {
		if cur >= 0 {
			b.Messages = append(b.Messages, data[cur:curEnd])
			batchMsgs++
		}
		cur, curEnd = -1, -1
	}
	for {
		s, e, ok := ls.next()
		if !ok {
			break
		}
		line := data[s:e]
		if blank(line) {
			afterBlank = true
			continue
		}
		name := ""
		if validSegmentName(line) {
			name = string(line[:3])
		}
		switch name {
		case "MSH":
			closeMsg()
			cur, curEnd = s, ls.p
			if len(line) > 3 {
				curFS = line[3]
			}
		case "FHS", "BHS", "BTS", "FTS":
			closeMsg()
			switch name {
			case "FHS":
				if b.FileHeader != nil {
					errs = append(errs, &ParseError{Segment: name, Line: ls.n, Err: ErrBatch, Detail: "second FHS segment"})
				} else {
					b.FileHeader = line
				}
			case "BHS":
				b.Batches++
				batchMsgs = 0
				if b.BatchHeader == nil {
					b.BatchHeader = line
				}
			case "BTS":
				b.BatchTrailer = line
				if err := checkCount(line, ls.n, batchMsgs, "messages"); err != nil {
					errs = append(errs, err)
				}
			case "FTS":
				b.FileTrailer = line
				if err := checkCount(line, ls.n, b.Batches, "batches"); err != nil {
					errs = append(errs, err)
				}
			}
		default:
			inMsg := cur >= 0 && (!afterBlank || (name != "" && (len(line) == 3 || line[3] == curFS)))
			if inMsg {
				curEnd = ls.p
			} else {
				closeMsg()
				errs = append(errs, &ParseError{Line: ls.n, Err: ErrBatch,
					Detail: "line outside any message is not a batch segment"})
			}
		}
		afterBlank = false
	}
	closeMsg()
	if len(b.Messages) == 0 && b.FileHeader == nil && b.BatchHeader == nil && len(errs) == 0 {
		if onlyTerminators(data[p:]) {
			return b, &ParseError{Err: ErrEmpty}
		}
		return b, &ParseError{Err: ErrNoMSH}
	}
	return b, errors.Join(errs...)
}

// checkCount compares field 1 of a BTS or FTS line with the number found.
func checkCount(line []byte, n, found int, what string) error {
	if len(line) < 4 {
		return nil
	}
	f := line[4:]
	if i := bytes.IndexByte(f, line[3]); i >= 0 {
		f = f[:i]
	}
	f = bytes.TrimSpace(f)
	if len(f) == 0 {
		return nil
	}
	name := string(line[:3])
	want, err := strconv.Atoi(string(f))
	if err != nil || want < 0 {
		return &ParseError{Segment: name, Field: 1, Line: n, Err: ErrBatch, Detail: "count is not a number"}
	}
	if want != found {
		return &ParseError{Segment: name, Field: 1, Line: n, Err: ErrBatchCount,
			Detail: name + "-1 says " + strconv.Itoa(want) + " " + what + ", found " + strconv.Itoa(found)}
	}
	return nil
}

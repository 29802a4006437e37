package hl7

import (
	"errors"
	"strings"
	"testing"
)

func TestSplitBatch(t *testing.T) {
	m1 := "MSH|^~\\&|A|||||ORU^R01|1|P|2.5.1\rPID|1\rOBX|1\r"
	m2 := "MSH|^~\\&|A|||||ORU^R01|2|P|2.5.1\rPID|2\r"
	cases := []struct {
		name    string
		in      string
		want    []string
		err     error
		batches int
	}{
		{"envelope", "FHS|^~\\&|F\rBHS|^~\\&|B\r" + m1 + m2 + "BTS|2\rFTS|1\r", []string{m1, m2}, nil, 1},
		{"bare", m1 + m2, []string{m1, m2}, nil, 0},
		{"blank lines", "\r\n" + m1 + "\r\n\r\n" + m2 + "\n\n", []string{m1, m2 + "\n"}, nil, 0},
		{"LF", strings.ReplaceAll(m1+m2, "\r", "\n"), []string{strings.ReplaceAll(m1, "\r", "\n"), strings.ReplaceAll(m2, "\r", "\n")}, nil, 0},
		{"bad BTS count", "BHS|^~\\&\r" + m1 + "BTS|3\r", []string{m1}, ErrBatchCount, 1},
		{"bad FTS count", "FHS|^~\\&\rBHS|^~\\&\r" + m1 + "BTS|1\rBHS|^~\\&\r" + m2 + "BTS|1\rFTS|1\r", []string{m1, m2}, ErrBatchCount, 2},
		{"two batches", "FHS|^~\\&\rBHS|^~\\&\r" + m1 + "BTS|1\rBHS|^~\\&\r" + m2 + "BTS|1\rFTS|2\r", []string{m1, m2}, nil, 2},
		{"empty batch", "FHS|^~\\&\rBHS|^~\\&\rBTS|0\rFTS|1\r", nil, nil, 1},
		{"junk outside", "hello\r" + m1, []string{m1}, ErrBatch, 0},
		{"empty", "", nil, ErrEmpty, 0},
		{"no MSH", "PID|1\r", nil, ErrBatch, 0},
		{"non-numeric count", "BHS|^~\\&\r" + m1 + "BTS|x\r", []string{m1}, ErrBatch, 1},
	}
	for _, c := range cases {
		b, err := SplitBatch([]byte(c.in))
		if !errors.Is(err, c.err) || (c.err == nil && err != nil) {
			t.Errorf("%s: err %v, want %v", c.name, err, c.err)
		}
		var got []string
		for _, m := range b.Messages {
			got = append(got, string(m))
		}
		if strings.Join(got, "|||") != strings.Join(c.want, "|||") {
			t.Errorf("%s: messages %q, want %q", c.name, got, c.want)
		}
		if b.Batches != c.batches {
			t.Errorf("%s: batches %d, want %d", c.name, b.Batches, c.batches)
		}
	}
	b, err := SplitBatch([]byte("FHS|^~\\&|F\rBHS|^~\\&|B\r" + m1 + "BTS|2\r"))
	if string(b.FileHeader) != "FHS|^~\\&|F" || string(b.BatchHeader) != "BHS|^~\\&|B" || string(b.BatchTrailer) != "BTS|2" {
		t.Errorf("headers: %q %q %q", b.FileHeader, b.BatchHeader, b.BatchTrailer)
	}
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Error() != "hl7: line 6, segment BTS, field 1: batch count mismatch: BTS-1 says 2 messages, found 1" {
		t.Errorf("count error text: %v", err)
	}
	// messages are sub-slices of the input
	in := []byte(m1 + m2)
	b, _ = SplitBatch(in)
	if &b.Messages[0][0] != &in[0] {
		t.Errorf("messages are copies, not sub-slices")
	}
}

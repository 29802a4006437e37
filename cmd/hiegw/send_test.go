package main

import (
	"testing"
	"time"
)

func TestAcceptedFast(t *testing.T) {
	cases := map[string]bool{
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AA|C1":                     true,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|CA|C1\r":                   true,
		"MSH#^~\\&#C#D#A#B#20260101##ACK#X#P#2.5.1\rMSA#AA#C1":                     true,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AE|C1\rERR||PID^1^7|102|E": false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AR|C1":                     false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rMSA|AAX|C1":                    false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\rZZZ|MSA|AA":                    false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1":                                false,
		"MSA|AA|C1": false,
		"":          false,
		"MSH|^~\\&|C|D|A|B|20260101||ACK|X|P|2.5.1\nMSA|AA|C1": false, // left to describeACK
	}
	for reply, want := range cases {
		if got := acceptedFast([]byte(reply)); got != want {
			t.Errorf("acceptedFast(%q) = %v, want %v", reply, got, want)
		}
	}
}

func TestRunPrefix(t *testing.T) {
	now := time.Now()
	a, b := runPrefix(now), runPrefix(now.Add(time.Microsecond))
	if a == b {
		t.Fatalf("runs a microsecond apart share the prefix %q", a)
	}
	if n := len(a) + len("999999999"); n > 20 {
		t.Fatalf("control id of %d characters, MSH-10 allows 20: %q", n, a)
	}
}

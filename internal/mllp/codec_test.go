package mllp

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func frame(s string) string { return "\x0b" + s + "\x1c\r" }

func TestReadFrames(t *testing.T) {
	in := "garbage" + frame("MSH|1") + "\r\n" + frame("MSH|2") + "\x0bMSH|3\x1c" + frame("MSH|4")
	r := NewReader(strings.NewReader(in), 0)
	var got []string
	for {
		f, err := r.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(f))
	}
	want := []string{"MSH|1", "MSH|2", "MSH|3", "MSH|4"}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Fatalf("got %q, want %q", got, want)
	}
	if r.Skipped() != int64(len("garbage")+2) {
		t.Fatalf("skipped %d", r.Skipped())
	}
}

func TestFrameTooLargeKeepsStreamUsable(t *testing.T) {
	big := strings.Repeat("x", 200_000)
	in := frame(big) + frame("MSH|ok")
	r := NewReader(strings.NewReader(in), 1000)
	if _, err := r.ReadFrame(); !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("want ErrFrameTooLarge, got %v", err)
	}
	f, err := r.ReadFrame()
	if err != nil || string(f) != "MSH|ok" {
		t.Fatalf("after oversize frame: %q %v", f, err)
	}
}

func TestMissingEndBlock(t *testing.T) {
	r := NewReader(strings.NewReader("\x0bMSH|cut"), 0)
	if _, err := r.ReadFrame(); !errors.Is(err, ErrMissingEndBlock) {
		t.Fatalf("want ErrMissingEndBlock, got %v", err)
	}
}

func TestWriteFrameRoundTrip(t *testing.T) {
	var b bytes.Buffer
	payload := []byte("MSH|^~\\&|A\rPID|1\r")
	if err := WriteFrame(&b, payload); err != nil {
		t.Fatal(err)
	}
	f, err := NewReader(&b, 0).ReadFrame()
	if err != nil || !bytes.Equal(f, payload) {
		t.Fatalf("round trip: %q %v", f, err)
	}
}

func FuzzReadFrame(f *testing.F) {
	f.Add([]byte(frame("MSH|^~\\&|A|B\rPID|1")))
	f.Add([]byte("xx\x0b\x1c\r\x0b\x0b\x1c"))
	f.Add([]byte("\x0b" + strings.Repeat("a", 300) + "\x1c\r"))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := NewReader(bytes.NewReader(data), 256)
		for i := 0; i < len(data)+1; i++ {
			fr, err := r.ReadFrame()
			if err != nil {
				if errors.Is(err, ErrFrameTooLarge) {
					continue
				}
				return
			}
			if len(fr) > 256 {
				t.Fatalf("frame of %d bytes exceeds limit", len(fr))
			}
			if bytes.IndexByte(fr, EndBlock) >= 0 {
				t.Fatalf("frame contains an end block")
			}
		}
	})
}

package api

import (
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// A client that sends a request and never reads the response is cut off:
// the handler's write fails instead of blocking for good.
func TestStalledReaderIsCut(t *testing.T) {
	wrote := make(chan error, 1)
	body := bytes.Repeat([]byte("x"), 64<<20) // more than the socket buffers hold
	srv := httptest.NewServer(CutStalledReaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, err := w.Write(body)
		wrote <- err
	}), 200*time.Millisecond))
	defer srv.Close()
	c, err := net.Dial("tcp", srv.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-wrote:
		if err == nil {
			t.Fatal("the whole response was written to a client that reads nothing")
		}
	case <-time.After(60 * time.Second):
		t.Fatal("the write to a client that reads nothing still blocks after 60 s")
	}
}

// A client that keeps reading gets a response that takes many times the
// stall to send, after a handler that took longer than the stall to begin.
func TestReadingClientGetsAll(t *testing.T) {
	const stall = time.Second
	body := bytes.Repeat([]byte("y"), 32<<20)
	srv := httptest.NewServer(CutStalledReaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(stall + 200*time.Millisecond)
		_, _ = w.Write(body)
	}), stall))
	defer srv.Close()
	client := srv.Client()
	resp, err := client.Get(srv.URL + "/big")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	buf := make([]byte, 256<<10)
	start := time.Now()
	for {
		m, err := io.ReadFull(resp.Body, buf)
		n += m
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond) // 128 pieces: about 2.6 s of reading
	}
	resp.Body.Close()
	if n != len(body) {
		t.Fatalf("read %d bytes of %d in %v", n, len(body), time.Since(start))
	}
}

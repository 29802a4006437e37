package api

import (
	"net/http"
	"time"
)

// DefaultWriteStall is how long a response may wait on a client that does
// not read before its connection is closed.
const DefaultWriteStall = 30 * time.Second

// CutStalledReaders serves h so that a client that stops reading its
// response is disconnected once a write has waited stall, while a response
// of any length still goes to a client that keeps reading, and a handler
// may take as long as it needs before it writes. (http.Server's
// WriteTimeout bounds the whole exchange instead, and without it a client
// that never reads holds its connection, its goroutine and the response
// built for it for as long as it likes.)
func CutStalledReaders(h http.Handler, stall time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// No deadline while the handler works (net/http clears the
		// connection's write deadline after each response).
		pw := &progressWriter{ResponseWriter: w, rc: http.NewResponseController(w), stall: stall}
		h.ServeHTTP(pw, r)
		pw.extend() // for the flush after the handler returns
	})
}

// progressWriter moves the connection's write deadline forward at each
// write.
type progressWriter struct {
	http.ResponseWriter
	rc    *http.ResponseController
	stall time.Duration
}

func (w *progressWriter) extend() { _ = w.rc.SetWriteDeadline(time.Now().Add(w.stall)) }

func (w *progressWriter) WriteHeader(code int) {
	w.extend()
	w.ResponseWriter.WriteHeader(code)
}

// Write writes p in pieces of 64 KB, each with its own deadline: handlers
// write a whole JSON document at once, which a slow but reading client
// may take longer than stall to receive.
func (w *progressWriter) Write(p []byte) (int, error) {
	const piece = 64 << 10
	if len(p) == 0 {
		w.extend()
		return w.ResponseWriter.Write(p)
	}
	n := 0
	for len(p) > 0 {
		k := min(len(p), piece)
		w.extend()
		m, err := w.ResponseWriter.Write(p[:k])
		n += m
		if err != nil {
			return n, err
		}
		p = p[k:]
	}
	return n, nil
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *progressWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

package gateway

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/store"
)

// apiRoutes are the HTTP API's routes, {id} standing for a fuzzed id.
var apiRoutes = []string{
	"GET /api/v1/messages", "GET /api/v1/messages/{id}", "GET /api/v1/messages/{id}/patient",
	"GET /api/v1/messages/{id}/resources", "GET /api/v1/messages/{id}/routing", "GET /api/v1/messages/{id}/tree",
	"POST /api/v1/messages/reprocess", "GET /api/v1/patients", "GET /api/v1/patients/{id}/everything",
	"GET /api/v1/outbox", "GET /api/v1/stats", "GET /api/v1/audit", "GET /api/v1/appacks", "GET /api/v1/pipeline",
	"GET /api/v1/mappings", "POST /api/v1/mappings/dry-run", "GET /api/v1/console/status",
	"GET /api/v1/mpi/patients/{id}", "GET /api/v1/mpi/records", "GET /api/v1/mpi/records/audit",
	"GET /api/v1/mpi/search", "GET /api/v1/mpi/tasks", "POST /api/v1/mpi/link", "POST /api/v1/mpi/tasks/{id}/decision",
	"POST /api/v1/mpi/undo", "POST /api/v1/mpi/unlink",
}

// FuzzAPI puts any id, query and body to every route of a running gateway's
// HTTP API (as a loopback caller, an operator when no tokens are set).
// Handlers are called directly, without net/http's recovery: a panic fails
// the run. Bad input must be answered 4xx with a body that says what is
// wrong, never 5xx, which tells an operator the gateway is at fault.
func FuzzAPI(f *testing.F) {
	if testing.Short() {
		f.Skip("starts a gateway")
	}
	c := testConfig(f, f.TempDir(), "")
	r := start(f, c)
	f.Cleanup(func() { r.shutdown(f) })
	send(f, r.g.MLLPAddr(), readFile(f, "adt_a01.hl7"))
	var env store.Envelope
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		envs, err := r.g.DB().ListEnvelopes(context.Background(), store.EnvelopeFilter{Limit: 1})
		if err == nil && len(envs) == 1 && envs[0].PatientID != "" {
			env = envs[0]
			break
		}
	}
	if env.PatientID == "" {
		f.Fatal("the sample was not processed")
	}
	for i, route := range apiRoutes {
		id := env.ID
		if strings.Contains(route, "patients/{id}") {
			id = env.PatientID
		}
		f.Add(uint8(i), id, "limit=2&status=processed", []byte(`{"status":"failed","sender":"X"}`))
	}
	f.Add(uint8(15), "", "sender=GOODHEALTH", readFile(f, "adt_a01.hl7"))
	f.Add(uint8(22), "", "", []byte(`{"a":"`+env.PatientID+`","b":"`+env.PatientID+`","reason":"test"}`))
	h := r.g.httpSrv.Handler
	f.Fuzz(func(t *testing.T, route uint8, id, query string, body []byte) {
		method, pattern, _ := strings.Cut(apiRoutes[int(route)%len(apiRoutes)], " ")
		target := strings.ReplaceAll(pattern, "{id}", url.PathEscape(id))
		if query != "" {
			target += "?" + query
		}
		req, err := http.NewRequest(method, target, strings.NewReader(string(body)))
		if err != nil {
			return // not a request a client could send
		}
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Content-Type", "application/json")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		if w.Code >= 500 {
			t.Fatalf("%s %s: %d %.500s", method, target, w.Code, w.Body.String())
		}
		if w.Code >= 400 && strings.TrimSpace(w.Body.String()) == "" {
			t.Fatalf("%s %s: %d without saying why", method, target, w.Code)
		}
	})
}

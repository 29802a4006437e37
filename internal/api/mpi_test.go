package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/hiegw/hiegw/internal/api"
	"github.com/hiegw/hiegw/internal/mpi"
	"github.com/hiegw/hiegw/internal/mpi/sqlstore"
	"github.com/hiegw/hiegw/internal/pipeline"
	"github.com/hiegw/hiegw/internal/route"
	"github.com/hiegw/hiegw/internal/store"
)

type nopRouter struct{}

func (nopRouter) Route(route.Event) ([]store.OutboxEntry, error) { return nil, nil }

// mpiServer mounts the MPI endpoints over an embedded store holding two
// unrelated records; requests carry principal "op-7" when asPrincipal is
// set, else only the X-Hiegw-Actor header.
func mpiServer(t *testing.T, asPrincipal bool) (*httptest.Server, *store.DB) {
	t.Helper()
	ctx := context.Background()
	db := store.TestEmbedded(t)
	ix, err := mpi.New(sqlstore.New(db.SQL()), mpi.DefaultConfig())
	if err != nil {
		t.Fatal(err)
	}
	id := pipeline.NewIdentity(ix, db, nopRouter{})
	for _, r := range []mpi.Record{
		{Authority: "urn:a", MRN: "1", Family: "Hopper", Given: "Grace", BirthDate: "19061209", Sex: "F"},
		{Authority: "urn:b", MRN: "2", Family: "Turing", Given: "Alan", BirthDate: "19120623", Sex: "M"},
	} {
		if _, err := id.Change(ctx, store.AuditEntry{Actor: "test", Action: "seed"}, func(ix *mpi.Index) ([]mpi.Event, error) {
			d, err := ix.Resolve(ctx, r)
			return d.Events, err
		}); err != nil {
			t.Fatal(err)
		}
	}
	mux := http.NewServeMux()
	for p, h := range api.MPIHandlers(id, db) {
		mux.Handle(p, h)
	}
	var h http.Handler = mux
	if asPrincipal {
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mux.ServeHTTP(w, r.WithContext(api.WithPrincipal(r.Context(), api.Principal{Name: "op-7", Role: api.RoleOperator})))
		})
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv, db
}

func do(t *testing.T, srv *httptest.Server, method, path, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("X-Hiegw-Actor", "header-user")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, b.String()
}

func TestMPIRequestErrors(t *testing.T) {
	srv, _ := mpiServer(t, false)
	for _, c := range []struct {
		method, path, body string
		want               int
	}{
		{"GET", "/api/v1/mpi/records", "", http.StatusBadRequest},
		{"GET", "/api/v1/mpi/records?authority=urn:a&identifier=404", "", http.StatusNotFound},
		{"GET", "/api/v1/mpi/records?authority=urn:a&identifier=1", "", http.StatusOK},
		{"GET", "/api/v1/mpi/records/audit?authority=urn:a", "", http.StatusBadRequest},
		{"GET", "/api/v1/mpi/search", "", http.StatusBadRequest},
		{"GET", "/api/v1/mpi/search?family=Hopper&min_score=x", "", http.StatusBadRequest},
		{"GET", "/api/v1/mpi/patients/no-such-id", "", http.StatusNotFound},
		{"POST", "/api/v1/mpi/tasks/no-such-task/decision", `{"match": true}`, http.StatusNotFound},
		{"POST", "/api/v1/mpi/link", `{"a": {"authority": "urn:a"}}`, http.StatusBadRequest},
		{"POST", "/api/v1/mpi/link", `{"a": {"authority": "urn:a", "mrn": "1"}, "b": {"authority": "urn:x", "mrn": "9"}}`, http.StatusNotFound},
		{"POST", "/api/v1/mpi/unlink", `{"key": {"authority": "urn:a", "mrn": "1"}}`, http.StatusConflict},
		{"POST", "/api/v1/mpi/unlink", `{"key": {"authority": "urn:a", "mrn": "1"}, "extra": 1}`, http.StatusBadRequest},
		{"POST", "/api/v1/mpi/undo", `{}`, http.StatusBadRequest},
		{"POST", "/api/v1/mpi/undo", `{"audit_id": "nope"}`, http.StatusNotFound},
	} {
		if got, body := do(t, srv, c.method, c.path, c.body); got != c.want {
			t.Errorf("%s %s %s: status %d, want %d: %s", c.method, c.path, c.body, got, c.want, body)
		}
	}
}

func TestMPILinkAuditsThePrincipal(t *testing.T) {
	for _, c := range []struct {
		name      string
		principal bool
		actor     string
	}{{"principal", true, "op-7"}, {"header fallback", false, "header-user"}} {
		t.Run(c.name, func(t *testing.T) {
			srv, db := mpiServer(t, c.principal)
			status, body := do(t, srv, "POST", "/api/v1/mpi/link",
				`{"a": {"authority": "urn:b", "mrn": "2"}, "b": {"authority": "urn:a", "mrn": "1"}, "reason": "confirmed at the desk"}`)
			if status != http.StatusOK {
				t.Fatalf("link: %d %s", status, body)
			}
			var res struct {
				Events []mpi.Event `json:"events"`
			}
			if err := json.Unmarshal([]byte(body), &res); err != nil || len(res.Events) != 1 || res.Events[0].Type != mpi.EventMerged {
				t.Fatalf("link events: %s (%v)", body, err)
			}
			es, err := db.AuditLog(context.Background(), 10)
			if err != nil {
				t.Fatal(err)
			}
			if len(es) == 0 || es[0].Action != "mpi.link" || es[0].Actor != c.actor || es[0].Outcome != "ok" ||
				!strings.Contains(es[0].Detail, "confirmed at the desk") {
				t.Fatalf("audit entry: %+v", es[0])
			}
			// The index's own trail names the same actor.
			status, body = do(t, srv, "GET", "/api/v1/mpi/records/audit?authority=urn:b&mrn=2", "")
			if status != http.StatusOK || !strings.Contains(body, `"actor": "`+c.actor+`"`) || !strings.Contains(body, `"action": "link"`) {
				t.Fatalf("index audit trail: %d %s", status, body)
			}
		})
	}
}

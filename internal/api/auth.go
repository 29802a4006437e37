package api

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/netip"
	"path"
	"strings"

	"github.com/hiegw/hiegw/internal/store"
)

// Role is what a token may do.
type Role string

// Roles, from the most to the least powerful.
const (
	// RoleOperator may do everything: reprocess, MPI link/unlink/review,
	// replay, and read the audit log.
	RoleOperator Role = "operator"
	// RoleAnalyst may read, dry-run and reload mappings.
	RoleAnalyst Role = "analyst"
	// RoleReadOnly may only read (GET and HEAD).
	RoleReadOnly Role = "read-only"
)

// Token is a bearer token the API accepts, known only by its SHA-256.
type Token struct {
	Name   string // whose token; named in the audit log
	SHA256 string // lower-case hex digest of the token
	Role   Role
}

// Principal is who made a request.
type Principal struct {
	Name string
	Role Role
}

// LocalPrincipal is the name given to loopback callers when no token is
// configured (the single-machine default).
const LocalPrincipal = "local"

// HashToken returns the form a token is configured in: "sha256:" and the hex
// digest. Tokens are long random strings, so one unsalted hash is enough and
// costs nothing per request (a slow hash would let anyone burn CPU).
func HashToken(token string) string {
	h := sha256.Sum256([]byte(token))
	return "sha256:" + hex.EncodeToString(h[:])
}

// NewToken makes a random token (32 bytes, URL-safe base64) and its hash.
func NewToken() (token, hash string, err error) {
	var b [32]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", "", fmt.Errorf("new token: %w", err)
	}
	token = "hiegw_" + base64.RawURLEncoding.EncodeToString(b[:])
	return token, HashToken(token), nil
}

type principalKey struct{}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// PrincipalFrom returns the principal the API authenticated for the request
// whose context ctx is.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok && p.Name != ""
}

// Actor names who made the request for the audit log: the principal's name,
// or "anonymous" on paths served without authentication.
func Actor(ctx context.Context) string {
	if p, ok := PrincipalFrom(ctx); ok {
		return p.Name
	}
	return "anonymous"
}

// RequestAudit fills an audit entry for a request: who (the principal), from
// where (the peer address), what (action and target), and the outcome. Use
// it from handlers mounted through Options.Extra.
func RequestAudit(r *http.Request, action, target, outcome string) store.AuditEntry {
	return store.AuditEntry{Actor: Actor(r.Context()), Action: action, Target: target, Outcome: outcome,
		Peer: peer(r), Detail: r.Method + " " + r.URL.Path}
}

// Allowed tells whether role may call method on path:
//   - read-only: GET and HEAD, except the audit log;
//   - analyst: the same, plus any method under /api/v1/mappings (dry-run,
//     reload);
//   - operator: everything.
func Allowed(role Role, method, path string) bool {
	switch role {
	case RoleOperator:
		return true
	case RoleAnalyst, RoleReadOnly:
	default:
		return false
	}
	if path == "/api/v1/audit" || strings.HasPrefix(path, "/api/v1/audit/") || path == "/api/v1/mpi/records/audit" {
		return false // audit trails name patients and who looked at them or changed them: for operators only
	}
	if method == http.MethodGet || method == http.MethodHead {
		return true
	}
	return role == RoleAnalyst && (path == "/api/v1/mappings" || strings.HasPrefix(path, "/api/v1/mappings/"))
}

// publicPaths are served to anyone: probes, metrics and the console's static
// files hold no patient data (the console sends a token with every API call).
var publicPaths = map[string]bool{"/healthz": true, "/readyz": true, "/metrics": true, "/console": true}

// publicPrefixes are served to anyone as well: the console's static files.
var publicPrefixes = []string{"/console/"}

// authenticator checks the bearer token of every request but the public
// ones, puts the principal in the request's context, and audits refusals.
type authenticator struct {
	tokens func() []Token // the tokens in force
	public []string
	audit  func(ctx context.Context, e store.AuditEntry) error
	next   http.Handler
	onFail func(reason string)
}

// cleanPath is the path the rules judge: cleaned like the mux does, so that
// /console/../api/v1/… is judged as /api/v1/….
func cleanPath(p string) string {
	if p == "" {
		return "/"
	}
	c := path.Clean(p)
	if strings.HasSuffix(p, "/") && c != "/" {
		c += "/"
	}
	return c
}

func (a *authenticator) isPublic(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	p := cleanPath(r.URL.Path)
	if publicPaths[p] {
		return true
	}
	for _, pre := range append(publicPrefixes[:len(publicPrefixes):len(publicPrefixes)], a.public...) {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

func (a *authenticator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if a.isPublic(r) {
		a.next.ServeHTTP(w, r)
		return
	}
	p, reason := a.authenticate(r)
	if reason != "" {
		a.refuse(w, r, "unknown", "api.authenticate", reason, http.StatusUnauthorized)
		return
	}
	if !Allowed(p.Role, r.Method, cleanPath(r.URL.Path)) {
		a.refuse(w, r, p.Name, "api.authorize", fmt.Sprintf("denied: role %s may not %s this path", p.Role, r.Method), http.StatusForbidden)
		return
	}
	a.next.ServeHTTP(w, r.WithContext(WithPrincipal(r.Context(), p)))
}

// authenticate returns the principal or why there is none.
func (a *authenticator) authenticate(r *http.Request) (Principal, string) {
	tokens := a.tokens()
	if len(tokens) == 0 {
		// No tokens: the configuration allows this on a loopback address only;
		// refuse anyone else even so.
		if ap, err := netip.ParseAddr(peer(r)); err == nil && ap.Unmap().IsLoopback() {
			return Principal{Name: LocalPrincipal, Role: RoleOperator}, ""
		}
		return Principal{}, "denied: no tokens are configured and the caller is not local"
	}
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if h == "" {
		return Principal{}, "denied: missing bearer token"
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
		return Principal{}, "denied: authorization is not a bearer token"
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(tok)))
	got := hex.EncodeToString(sum[:])
	var found *Token
	for i := range tokens {
		if subtle.ConstantTimeCompare([]byte(got), []byte(tokens[i].SHA256)) == 1 {
			found = &tokens[i]
		}
	}
	if found == nil {
		return Principal{}, "denied: invalid token"
	}
	return Principal{Name: found.Name, Role: found.Role}, ""
}

func (a *authenticator) refuse(w http.ResponseWriter, r *http.Request, who, action, outcome string, status int) {
	if a.onFail != nil {
		a.onFail(action)
	}
	e := store.AuditEntry{Actor: who, Action: action, Target: r.Method + " " + r.URL.Path, Outcome: outcome, Peer: peer(r)}
	if err := a.audit(r.Context(), e); err != nil {
		writeError(w, http.StatusInternalServerError, "audit log unavailable")
		return
	}
	if status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", `Bearer realm="hiegw"`)
	}
	writeError(w, status, strings.TrimPrefix(outcome, "denied: "))
}

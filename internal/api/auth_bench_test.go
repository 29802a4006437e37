package api

import (
	"net/http"
	"net/http/httptest"
	"testing"
)

// BenchmarkAuthenticate measures the token check on a request that passes
// (ten configured tokens, the match last).
func BenchmarkAuthenticate(b *testing.B) {
	var toks []Token
	var last string
	for i := 0; i < 10; i++ {
		tok, hash, err := NewToken()
		if err != nil {
			b.Fatal(err)
		}
		toks = append(toks, Token{Name: "t", SHA256: hash[len("sha256:"):], Role: RoleReadOnly})
		last = tok
	}
	ok := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	a := &authenticator{tokens: func() []Token { return toks }, next: ok}
	r := httptest.NewRequest("GET", "/api/v1/messages", nil)
	r.Header.Set("Authorization", "Bearer "+last)
	w := httptest.NewRecorder()
	b.ReportAllocs()
	for b.Loop() {
		a.ServeHTTP(w, r)
	}
}

package main

import (
	"fmt"
	"io"

	"github.com/hiegw/hiegw/internal/api"
)

// runToken prints a new API token and the hash that goes in the
// configuration (http.tokens[].hash); the token itself is shown once and
// stored nowhere.
func runToken(stdout io.Writer) error {
	token, hash, err := api.NewToken()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token: %s\nhash:  %s\n\nGive the token to its user; put the hash in the configuration:\n"+
		"http:\n  tokens:\n    - name: NAME\n      role: operator   # or analyst, read-only\n      hash: %s\n", token, hash, hash)
	return nil
}

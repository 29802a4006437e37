package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzConfigFile reads whatever an operator might write as the
// configuration file: no content may make start-up panic, a file that
// cannot be read is refused naming the file, and what reads is validated,
// redacted and warned about without a panic.
func FuzzConfigFile(f *testing.F) {
	for _, p := range []string{"../../deployments/hiegw.example.yaml", "../../deployments/compose/config/hiegw.yaml"} {
		if b, err := os.ReadFile(filepath.FromSlash(p)); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("mllp:\n  addr: 127.0.0.1:2575\n  tls:\n    cert: x\nintake:\n  gather_delay: 300us\n"))
	f.Add([]byte("sftp:\n  addr: 127.0.0.1:2222\n  users:\n    - name: a\n      authorized_keys: k\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		c := Default()
		if err := c.decode("hiegw.yaml", data); err != nil {
			if !strings.Contains(err.Error(), "hiegw.yaml") {
				t.Fatalf("refusal does not name the file: %v", err)
			}
			return
		}
		if err := c.Validate(); err == nil {
			_ = c.Warnings()
		}
		_ = c.Redacted()
	})
}

package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/sftpd"
)

func TestSFTPThrottleDefaultsAndFile(t *testing.T) {
	c := Default()
	if c.SFTP.MaxAuthFailures != 10 || c.SFTP.AuthFailureWindow != Duration(10*time.Minute) || c.SFTP.AuthLockout != Duration(15*time.Minute) {
		t.Fatalf("defaults: %d in %s, lockout %s", c.SFTP.MaxAuthFailures, c.SFTP.AuthFailureWindow, c.SFTP.AuthLockout)
	}
	if maxSFTPAuthFailures != sftpd.MaxAuthFailuresLimit {
		t.Fatalf("config allows %d failures, the listener %d", maxSFTPAuthFailures, sftpd.MaxAuthFailuresLimit)
	}
	dir := t.TempDir()
	f := filepath.Join(dir, "hiegw.yaml")
	os.WriteFile(f, []byte("sftp:\n  max_auth_failures: 5\n  auth_failure_window: 2m\n  auth_lockout: 1h\n"), 0o600)
	c, err := Load([]string{"--config", f}, env(nil), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.SFTP.MaxAuthFailures != 5 || c.SFTP.AuthFailureWindow != Duration(2*time.Minute) || c.SFTP.AuthLockout != Duration(time.Hour) {
		t.Fatalf("from file: %d in %s, lockout %s", c.SFTP.MaxAuthFailures, c.SFTP.AuthFailureWindow, c.SFTP.AuthLockout)
	}
	// 0 turns throttling off; the window and lockout are then not checked.
	os.WriteFile(f, []byte("sftp:\n  max_auth_failures: 0\n  auth_failure_window: 0s\n  auth_lockout: 0s\n"), 0o600)
	if c, err = Load([]string{"--config", f}, env(nil), os.Stderr); err != nil || c.SFTP.MaxAuthFailures != 0 {
		t.Fatalf("throttling off: %v", err)
	}
	os.WriteFile(f, []byte("sftp:\n  auth_lockout: soon\n"), 0o600)
	if _, err = Load([]string{"--config", f}, env(nil), os.Stderr); err == nil || !strings.Contains(err.Error(), "not a duration") {
		t.Fatalf("bad duration: %v", err)
	}
}

func TestSFTPThrottleValidation(t *testing.T) {
	for _, tc := range []struct {
		name string
		mod  func(c *Config)
		want []string // settings named in the error; none when valid
	}{
		{"defaults", func(c *Config) {}, nil},
		{"off", func(c *Config) { c.SFTP.MaxAuthFailures = 0; c.SFTP.AuthLockout = -1 }, nil},
		{"one failure", func(c *Config) { c.SFTP.MaxAuthFailures = 1 }, nil},
		{"at the limit", func(c *Config) { c.SFTP.MaxAuthFailures = maxSFTPAuthFailures }, nil},
		{"negative", func(c *Config) { c.SFTP.MaxAuthFailures = -1 }, []string{"sftp.max_auth_failures"}},
		{"above the limit", func(c *Config) { c.SFTP.MaxAuthFailures = maxSFTPAuthFailures + 1 }, []string{"sftp.max_auth_failures"}},
		{"no window", func(c *Config) { c.SFTP.AuthFailureWindow = 0 }, []string{"sftp.auth_failure_window"}},
		{"negative lockout", func(c *Config) { c.SFTP.AuthLockout = Duration(-time.Minute) }, []string{"sftp.auth_lockout"}},
		{"both below a second", func(c *Config) {
			c.SFTP.AuthFailureWindow, c.SFTP.AuthLockout = Duration(time.Millisecond), Duration(time.Millisecond)
		}, []string{"sftp.auth_failure_window", "sftp.auth_lockout"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := Default()
			tc.mod(c)
			err := c.Validate()
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w+":") {
					t.Errorf("error %q does not name %s", err, w)
				}
			}
		})
	}
}

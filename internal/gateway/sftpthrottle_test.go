package gateway

import (
	"strconv"
	"testing"
	"time"
)

// TestSFTPLoginThrottle: sftp.max_auth_failures reaches the listener (0
// turns throttling off), and connections refused while an address is
// locked out are exported as hiegw_sftp_locked_out_connections_total.
func TestSFTPLoginThrottle(t *testing.T) {
	for _, tc := range []struct {
		max     int
		refused bool
	}{{2, true}, {0, false}} {
		t.Run("max_auth_failures="+strconv.Itoa(tc.max), func(t *testing.T) {
			c := testConfig(t, t.TempDir(), "")
			c.SFTP.MaxAuthFailures = tc.max
			r, addr := startWithSFTP(t, c, "emr1")
			defer r.shutdown(t)
			dial := func(password string) error {
				sc, err := dialSFTP(addr, "emr1", password)
				if err == nil {
					sc.Close()
				}
				return err
			}
			for range 3 {
				if dial("wrong") == nil {
					t.Fatal("a wrong password was accepted")
				}
			}
			err := dial("correct horse")
			if tc.refused != (err != nil) {
				t.Fatalf("login with the right password after 3 failures: %v", err)
			}
			want := "0"
			if tc.refused {
				want = "2" // the third wrong password and the right one, both after the lockout
			}
			if got := metric(t, r.g.HTTPAddr(), "hiegw_sftp_locked_out_connections_total"); got != want {
				t.Fatalf("hiegw_sftp_locked_out_connections_total = %q, want %s", got, want)
			}
			// Without throttling three wrong passwords fail and the right one
			// logs in; with it two wrong ones lock the address.
			wantFail, wantLogin := "3", "1"
			if tc.refused {
				wantFail, wantLogin = "2", "0"
			}
			if got := metric(t, r.g.HTTPAddr(), "hiegw_sftp_auth_failures_total"); got != wantFail {
				t.Fatalf("hiegw_sftp_auth_failures_total = %q, want %s", got, wantFail)
			}
			// The server counts a login once its side of the handshake ends,
			// which may be just after the client's.
			deadline := time.Now().Add(5 * time.Second)
			for got := metric(t, r.g.HTTPAddr(), "hiegw_sftp_logins_total"); got != wantLogin; got = metric(t, r.g.HTTPAddr(), "hiegw_sftp_logins_total") {
				if time.Now().After(deadline) {
					t.Fatalf("hiegw_sftp_logins_total = %q, want %s", got, wantLogin)
				}
				time.Sleep(20 * time.Millisecond)
			}
		})
	}
}

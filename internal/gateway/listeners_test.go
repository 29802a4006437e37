package gateway

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hiegw/hiegw/internal/config"
	"github.com/hiegw/hiegw/internal/store"
	"github.com/pkg/sftp"
	"golang.org/x/crypto/bcrypt"
	"golang.org/x/crypto/ssh"
)

// startWithSFTP starts the gateway with an SFTP listener and the given
// accounts, all with the password "correct horse", and returns it with the
// listener's address.
func startWithSFTP(t *testing.T, c *config.Config, accounts ...string) (*running, string) {
	t.Helper()
	c.SFTP.Addr = "127.0.0.1:0"
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range accounts {
		c.SFTP.Accounts = append(c.SFTP.Accounts, config.SFTPAccount{Name: a, PasswordHash: string(hash)})
	}
	r := start(t, c)
	var addr string
	for deadline := time.Now().Add(10 * time.Second); addr == "" && time.Now().Before(deadline); {
		addr = r.g.SFTPAddr()
		time.Sleep(20 * time.Millisecond)
	}
	if addr == "" {
		r.shutdown(t)
		t.Fatal("sftp listener did not start")
	}
	return r, addr
}

// TestSFTPUploadBecomesEvents: an EMR logs in over SFTP and drops a C-CDA;
// the file is committed, moved to processed/, and its document event reaches
// Kafka. A wrong password is refused and audited.
func TestSFTPUploadBecomesEvents(t *testing.T) {
	dataDir := t.TempDir()
	r, addr := startWithSFTP(t, testConfig(t, dataDir, ""), "emr1")
	defer r.shutdown(t)
	if _, err := dialSFTP(addr, "emr1", "wrong"); err == nil {
		t.Fatal("a wrong password was accepted")
	}
	conn, err := dialSFTP(addr, "emr1", "correct horse")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cl, err := sftp.NewClient(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	doc, err := os.ReadFile(filepath.Join("..", "..", "testdata", "ccda", "sample_ccd.xml"))
	if err != nil {
		t.Fatal(err)
	}
	putFile(t, cl, "/inbox/summary.xml", doc)
	processed := filepath.Join(dataDir, "sftp", "emr1", "processed", "summary.xml")
	for deadline := time.Now().Add(20 * time.Second); ; {
		if got, err := os.ReadFile(processed); err == nil {
			if !bytes.Equal(got, doc) {
				t.Fatal("processed/ holds different bytes")
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the upload never reached processed/")
		}
		time.Sleep(50 * time.Millisecond)
	}
	// The document is one event, and its medication list a medication update
	// for pharmacies (a second event with its own Bundle id).
	evs := readEvents(t, r.g.BrokerAddr(), "hie.events", 2, 30*time.Second)
	var docEv, meds event
	for _, e := range evs {
		if e.headers["hiegw-sender"] == "emr1" {
			switch e.headers["hiegw-event"] {
			case "document":
				docEv = e
			case "medication":
				meds = e
			}
		}
	}
	if docEv.bundle == nil || len(resourcesOf(docEv.bundle, "DocumentReference")) != 1 || len(resourcesOf(docEv.bundle, "Patient")) != 1 {
		t.Fatalf("no document event with a Patient and a DocumentReference from emr1 among %d events", len(evs))
	}
	if meds.bundle == nil || len(resourcesOf(meds.bundle, "MedicationStatement")) == 0 || meds.bundle["id"] == docEv.bundle["id"] ||
		meds.headers["hiegw-envelope"] != docEv.headers["hiegw-envelope"] || meds.key != docEv.key {
		t.Fatalf("no medication event for the document's medications: %v", meds.headers)
	}
	// The failed login is in the audit log (written asynchronously).
	for deadline := time.Now().Add(5 * time.Second); ; {
		entries, err := r.g.DB().AuditLog(context.Background(), 100)
		if err != nil {
			t.Fatal(err)
		}
		var audited bool
		for _, e := range entries {
			if e.Action == "sftp.login" && e.Target == "emr1" && strings.HasPrefix(e.Outcome, "refused") {
				audited = true
			}
		}
		if audited {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the failed SFTP login was not audited")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestRetentionPurges: past the retentions, a processed message's body and
// its published event (PHI both) go; the message log row and the record
// stay.
func TestRetentionPurges(t *testing.T) {
	r := start(t, testConfig(t, t.TempDir(), ""))
	defer r.shutdown(t)
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "oru_r01.hl7")); ack.Get("MSA-1") != "AA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
	db := r.g.DB()
	var id string
	for deadline := time.Now().Add(20 * time.Second); id == ""; {
		envs, err := db.ListEnvelopes(context.Background(), store.EnvelopeFilter{Status: "processed"})
		if err != nil {
			t.Fatal(err)
		}
		if len(envs) == 1 {
			id = envs[0].ID
		} else if time.Now().After(deadline) {
			t.Fatal("the message was not processed")
		} else {
			time.Sleep(20 * time.Millisecond)
		}
	}
	waitFor(t, "the event published", func() bool {
		c, err := db.OutboxCounts(context.Background())
		return err == nil && len(c) == 1 && c[0].Sent == 1
	})
	r.g.retainOnce(context.Background(), time.Hour, time.Nanosecond, time.Nanosecond)
	if c, err := db.OutboxCounts(context.Background()); err != nil || len(c) != 0 {
		t.Fatalf("outbox after the purge: %+v, %v", c, err)
	}
	e, err := db.GetEnvelope(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.Raw) != 0 || len(e.ACK) == 0 || e.Status != "processed" {
		t.Fatalf("after the purge: raw %d bytes, ack %d bytes, status %s", len(e.Raw), len(e.ACK), e.Status)
	}
	if rs, err := db.PatientResources(context.Background(), e.PatientID, 0, 100); err != nil || len(rs) == 0 {
		t.Fatalf("the record went with the body: %d resources, %v", len(rs), err)
	}
	entries, _ := db.AuditLog(context.Background(), 50)
	audited := map[string]bool{}
	for _, a := range entries {
		audited[a.Action] = true
	}
	if !audited["store.purge_raw"] || !audited["store.purge_outbox"] {
		t.Fatalf("the purges were not audited: %v", audited)
	}
}

// TestDefaultsStart: the configuration a new user starts with (no file, no
// flags but free ports) must start; SFTP without accounts stays off.
func TestDefaultsStart(t *testing.T) {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.MLLP.Addr, c.HTTP.Addr, c.Broker.Addr, c.SFTP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0"
	c.Mappings.Dir = filepath.Join("..", "..", "mappings")
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r := start(t, c)
	defer r.shutdown(t)
	if r.g.SFTPAddr() != "" {
		t.Fatal("an SFTP listener without accounts")
	}
	if ack := send(t, r.g.MLLPAddr(), readFile(t, "adt_a01.hl7")); ack.Get("MSA-1") != "CA" {
		t.Fatalf("ACK %q", ack.Raw())
	}
}

// TestPprof checks that runtime profiles are off unless debug.pprof_addr
// is set, and then served on their own listener, not on the API's.
func TestPprof(t *testing.T) {
	c := config.Default()
	c.DataDir = t.TempDir()
	c.MLLP.Addr, c.HTTP.Addr, c.Broker.Addr, c.SFTP.Addr = "127.0.0.1:0", "127.0.0.1:0", "127.0.0.1:0", ""
	c.Mappings.Dir = filepath.Join("..", "..", "mappings")
	r := start(t, c)
	if r.g.PprofAddr() != "" {
		t.Fatalf("profiles served at %s without debug.pprof_addr", r.g.PprofAddr())
	}
	r.shutdown(t)

	c.Debug.PprofAddr = "127.0.0.1:0"
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	r = start(t, c)
	defer r.shutdown(t)
	get := func(url string) (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("http://" + r.g.PprofAddr() + "/debug/pprof/goroutine?debug=1"); code != 200 || !strings.Contains(body, "goroutine profile:") {
		t.Fatalf("pprof listener: %d %.200s", code, body)
	}
	if code, _ := get("http://" + r.g.HTTPAddr() + "/debug/pprof/"); code == 200 {
		t.Fatal("the API port serves profiles too")
	}
}

// dialSFTP logs in to the gateway's SFTP listener with a password.
func dialSFTP(addr, user, password string) (*ssh.Client, error) {
	return ssh.Dial("tcp", addr, &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.Password(password)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second})
}

// putFile uploads data to path over cl.
func putFile(t *testing.T, cl *sftp.Client, path string, data []byte) {
	t.Helper()
	f, err := cl.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestGatherDelaySetting: intake.gather_delay reaches intake as is, and 0s
// turns gathering off (intake's own zero would mean its default).
func TestGatherDelaySetting(t *testing.T) {
	if d := gatherDelay(0); d >= 0 {
		t.Fatalf("0s gives %v, want a negative delay (off)", d)
	}
	if d := gatherDelay(config.Duration(300 * time.Microsecond)); d != 300*time.Microsecond {
		t.Fatalf("300us gives %v", d)
	}
}

// TestSFTPAccountsReloaded: an EMR account added to the configuration logs
// in after a reload (SIGHUP), one removed no longer does, and the change is
// audited; the listener keeps running.
func TestSFTPAccountsReloaded(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	r, addr := startWithSFTP(t, c, "emr1")
	defer r.shutdown(t)
	if _, err := dialSFTP(addr, "emr2", "correct horse"); err == nil {
		t.Fatal("emr2 logged in before it was configured")
	}
	next := *c
	next.SFTP.Accounts = []config.SFTPAccount{{Name: "emr2", PasswordHash: c.SFTP.Accounts[0].PasswordHash}}
	r.g.SetConfigSource(func() (*config.Config, error) { return &next, nil })
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
	conn, err := dialSFTP(addr, "emr2", "correct horse")
	if err != nil {
		t.Fatalf("emr2 after the reload: %v", err)
	}
	conn.Close()
	if _, err := dialSFTP(addr, "emr1", "correct horse"); err == nil {
		t.Fatal("removed emr1 still logs in")
	}
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "sftp.accounts_reload" && e.Outcome == "ok" && e.Detail == "added [emr2], removed [emr1], credentials changed []"
	})
	// A configuration with no account left is refused; emr2 stays.
	none := next
	none.SFTP.Accounts = nil
	r.g.SetConfigSource(func() (*config.Config, error) { return &none, nil })
	if err := r.g.Reload(); err == nil {
		t.Fatal("a reload leaving no SFTP account was taken")
	}
	if conn, err := dialSFTP(addr, "emr2", "correct horse"); err != nil {
		t.Fatalf("emr2 after the refused reload: %v", err)
	} else {
		conn.Close()
	}
}

// TestSFTPStartedByReload: a gateway started with sftp.addr but no account
// (its SFTP listener off) starts the listener when the configuration read
// again has the first account, without a restart.
func TestSFTPStartedByReload(t *testing.T) {
	c := testConfig(t, t.TempDir(), "")
	c.SFTP.Addr = "127.0.0.1:0"
	r := start(t, c)
	defer r.shutdown(t)
	if addr := r.g.SFTPAddr(); addr != "" {
		t.Fatalf("an SFTP listener without accounts on %s", addr)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	next := *c
	next.SFTP.Accounts = []config.SFTPAccount{{Name: "emr1", PasswordHash: string(hash)}}
	r.g.SetConfigSource(func() (*config.Config, error) { return &next, nil })
	// Until Run is serving, a reload leaves the listener to the next start.
	waitFor(t, "the SFTP listener started by a reload", func() bool {
		if err := r.g.Reload(); err != nil {
			t.Fatal(err)
		}
		return r.g.SFTPAddr() != ""
	})
	conn, err := dialSFTP(r.g.SFTPAddr(), "emr1", "correct horse")
	if err != nil {
		t.Fatalf("emr1 on the listener the reload started: %v", err)
	}
	conn.Close()
	waitAudit(t, r.g.DB(), func(e store.AuditEntry) bool {
		return e.Action == "sftp.accounts_reload" && e.Outcome == "ok" && e.Detail == "listener started; added [emr1]"
	})
	// Read again, the same accounts change nothing more.
	if err := r.g.Reload(); err != nil {
		t.Fatal(err)
	}
}

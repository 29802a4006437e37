//go:build interop

package sftpd

// Interoperability with Debian's OpenSSH sftp client. Run with
//
//	go test -tags interop -run Interop ./internal/sftpd/
//
// It needs /usr/bin/sftp (apt-get install openssh-client).

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestInteropOpenSSH(t *testing.T) {
	sftpBin, err := exec.LookPath("sftp")
	if err != nil {
		t.Skip("OpenSSH sftp client not on PATH; install it with apt-get install openssh-client to run this test")
	}
	work := t.TempDir()

	// The client's key, in OpenSSH format, mode 0600 as ssh insists.
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(priv, "interop")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(work, "id_ed25519")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		t.Fatal(err)
	}

	h := newHarness(t, func(c *Config) {
		c.Accounts = append(c.Accounts, Account{Name: "emr1", AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	})
	port := h.addr[strings.LastIndex(h.addr, ":")+1:]

	small := sample(t)
	large := small
	if files := corpusFiles(t, "ccda"); len(files) > 0 {
		// the largest C-CDA of the corpus: many write packets
		var best []byte
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			if len(b) > len(best) {
				best = b
			}
		}
		large = best
	}
	smallPath := filepath.Join(work, "small.hl7")
	largePath := filepath.Join(work, "large.xml")
	if err := os.WriteFile(smallPath, small, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(largePath, large, 0o644); err != nil {
		t.Fatal(err)
	}

	run := func(batch string) (string, error) {
		bf := filepath.Join(work, "batch")
		if err := os.WriteFile(bf, []byte(batch), 0o644); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(sftpBin, "-b", bf, "-i", keyPath, "-P", port,
			"-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "BatchMode=yes",
			"-o", "IdentitiesOnly=yes", "-o", "LogLevel=ERROR", "emr1@127.0.0.1")
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	out, err := run(fmt.Sprintf(`pwd
put %s plain.hl7
put %s big.xml.part
rename big.xml.part big.xml
put -p %s kept-times.hl7
ls -l /processed
get /processed/big.xml %s
`, smallPath, largePath, smallPath, filepath.Join(work, "back.xml")))
	if err != nil {
		t.Fatalf("sftp batch failed: %v\n%s\nserver log:\n%s", err, out, h.logs.String())
	}
	if !strings.Contains(out, "/inbox") {
		t.Errorf("pwd did not print /inbox:\n%s", out)
	}

	for name, want := range map[string][]byte{"plain.hl7": small, "big.xml": large, "kept-times.hl7": small} {
		if got := h.readFile("emr1", folderProcessed, name); !bytes.Equal(got, want) {
			t.Errorf("processed/%s differs from the upload", name)
		}
	}
	envs := h.in.bySender("emr1")
	if len(envs) != 3 {
		t.Fatalf("%d envelopes, want 3", len(envs))
	}
	for _, e := range envs {
		if e.Filename == "big.xml" && !bytes.Equal(e.Raw, large) {
			t.Error("big.xml: envelope bytes differ")
		}
		if strings.HasSuffix(e.Filename, ".part") {
			t.Errorf("%s handed over under its temporary name", e.Filename)
		}
	}
	back, err := os.ReadFile(filepath.Join(work, "back.xml"))
	if err != nil || !bytes.Equal(back, large) {
		t.Errorf("get of a processed file returned different bytes (%v)", err)
	}
	if left := h.files("emr1", folderInbox); len(left) != 0 {
		t.Errorf("inbox not empty: %v", left)
	}

	// Refusals end an OpenSSH batch with an error and change nothing.
	for _, cmd := range []string{
		"put " + smallPath + " /processed/x.hl7",
		"put " + smallPath + " ../alice/inbox/x.hl7",
		"mkdir sub",
		"symlink plain.hl7 link.hl7",
		"get /etc/passwd " + filepath.Join(work, "passwd"),
	} {
		if out, err := run(cmd + "\n"); err == nil {
			t.Errorf("%q succeeded:\n%s", cmd, out)
		}
	}
	if len(h.in.bySender("emr1")) != 3 || len(h.in.bySender("alice")) != 0 {
		t.Error("a refused command reached intake")
	}
	if _, err := os.Stat(filepath.Join(work, "passwd")); err == nil {
		t.Error("/etc/passwd was downloaded")
	}
	h.senderWorks("alice")
}

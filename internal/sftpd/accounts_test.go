package sftpd

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/crypto/ssh"
)

// SetAccounts while serving: an added account logs in and uploads at once,
// a removed one no longer logs in while its open session still uploads,
// an account whose key changed logs in with the new key only, and a set
// with an error changes nothing.
func TestSetAccounts(t *testing.T) {
	h := newHarness(t, nil)
	bobSession := h.sftp("bob") // open before bob is removed
	h.keys["erin"] = newSigner(t)
	newAlice := newSigner(t)
	oldAlice := h.keys["alice"]
	accts := []Account{
		{Name: "alice", AuthorizedKeys: []ssh.PublicKey{newAlice.PublicKey()}},
		h.cfg.Accounts[2], h.cfg.Accounts[3], // carol, dave as they were
		{Name: "erin", AuthorizedKeys: []ssh.PublicKey{h.keys["erin"].PublicKey()}},
	}
	// A broken set first: nothing changes.
	if _, err := h.srv.SetAccounts(append(accts[:len(accts):len(accts)], Account{Name: "erin"})); err == nil {
		t.Fatal("a set with a duplicate name was taken")
	}
	if _, err := h.dial("erin"); err == nil {
		t.Fatal("erin logged in after a refused set")
	}
	ch, err := h.srv.SetAccounts(accts)
	if err != nil {
		t.Fatal(err)
	}
	if want := (AccountChanges{Added: []string{"erin"}, Removed: []string{"bob"}, Changed: []string{"alice"}}); !reflect.DeepEqual(ch, want) {
		t.Fatalf("changes %+v, want %+v", ch, want)
	}
	h.senderWorks("erin")
	if _, err := h.dial("bob"); err == nil {
		t.Fatal("removed bob logged in")
	}
	if err := put(bobSession, "late.hl7", sample(t)); err != nil {
		t.Fatalf("bob's session open before the removal: %v", err)
	}
	if _, err := h.dial("alice", ssh.PublicKeys(oldAlice)); err == nil {
		t.Fatal("alice logged in with her old key")
	}
	h.keys["alice"] = newAlice
	h.senderWorks("alice")
	if c, err := h.dial("carol", ssh.Password(carolPassword)); err != nil {
		t.Fatalf("unchanged carol: %v", err)
	} else {
		c.Close()
	}
}

// An account removed and added again is the account it was (one folder
// handle, one lock for its pickups shared by the sessions opened before the
// removal and after), logging in with its new credentials; one whose
// folder was moved away meanwhile gets a new folder.
func TestAccountAddedAgain(t *testing.T) {
	h := newHarness(t, nil)
	old := h.sftp("bob") // open through the removal and the return
	first := h.srv.account("bob")
	without := []Account{h.cfg.Accounts[0], h.cfg.Accounts[2], h.cfg.Accounts[3]}
	if _, err := h.srv.SetAccounts(without); err != nil {
		t.Fatal(err)
	}
	newBob := newSigner(t)
	back := append(without[:len(without):len(without)], Account{Name: "bob", AuthorizedKeys: []ssh.PublicKey{newBob.PublicKey()}})
	ch, err := h.srv.SetAccounts(back)
	if err != nil {
		t.Fatal(err)
	}
	if want := (AccountChanges{Added: []string{"bob"}}); !reflect.DeepEqual(ch, want) {
		t.Fatalf("changes %+v, want %+v", ch, want)
	}
	if h.srv.account("bob") != first {
		t.Fatal("bob added again got a second account for the same folder")
	}
	h.keys["bob"] = newBob
	h.senderWorks("bob")
	if err := put(old, "from-the-old-session.hl7", sample(t)); err != nil {
		t.Fatalf("bob's session open before the removal: %v", err)
	}

	// Moved away while removed: a new account and folder.
	if _, err := h.srv.SetAccounts(without); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(h.cfg.Root, "bob"), filepath.Join(h.cfg.Root, "bob-archived")); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.SetAccounts(back); err != nil {
		t.Fatal(err)
	}
	second := h.srv.account("bob")
	if second == first {
		t.Fatal("bob added again after his folder was moved away kept the moved folder")
	}
	h.senderWorks("bob")
	// And once more: the new folder's account, not a third.
	if _, err := h.srv.SetAccounts(without); err != nil {
		t.Fatal(err)
	}
	if _, err := h.srv.SetAccounts(back); err != nil {
		t.Fatal(err)
	}
	if h.srv.account("bob") != second {
		t.Fatal("bob added a third time got another account")
	}
}

package sftpd

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unicode/utf8"
)

// Folders of an account, as the sender sees them under "/".
const (
	folderInbox     = "inbox"
	folderProcessed = "processed"
	folderFailed    = "failed"
)

var folders = []string{folderInbox, folderProcessed, folderFailed}

// account is a sender's credentials and its jailed folder.
type account struct {
	name string
	// creds can be replaced while the server runs (Server.SetAccounts);
	// sessions logged in keep going.
	creds atomic.Pointer[credentials]

	// root is the account folder; every file operation goes through it, so
	// no path or symlink can lead outside.
	root *os.Root

	// mu serialises moving complete files into inbox/, renames inside it and
	// pickups, so that a file is handed to intake once at a time and in
	// order per sender.
	mu sync.Mutex

	openMu  sync.Mutex
	writing map[string][]*upload // inbox names currently open for writing
	staging map[string]bool      // staging names currently open for writing
}

// credentials are what an account logs in with.
type credentials struct {
	keys     map[string]struct{} // wire encodings of authorised public keys
	password *passwordHash       // nil: no password login
	source   string              // the configured hash and keys, to tell a change
}

func newAccount(a Account) (*account, error) {
	if !accountName.MatchString(a.Name) {
		return nil, errors.New("Name: want 1-64 letters, digits, '.', '_' or '-', not starting with '.', '_' or '-'")
	}
	c, err := newCredentials(a)
	if err != nil {
		return nil, err
	}
	acct := &account{
		name:    a.Name,
		writing: make(map[string][]*upload),
		staging: make(map[string]bool),
	}
	acct.creds.Store(c)
	return acct, nil
}

func newCredentials(a Account) (*credentials, error) {
	c := &credentials{keys: make(map[string]struct{}, len(a.AuthorizedKeys)), source: a.PasswordHash}
	for i, k := range a.AuthorizedKeys {
		if k == nil {
			return nil, fmt.Errorf("AuthorizedKeys[%d]: nil key", i)
		}
		c.keys[string(k.Marshal())] = struct{}{}
		c.source += "\n" + string(k.Marshal())
	}
	if a.PasswordHash != "" {
		h, err := parsePasswordHash(a.PasswordHash)
		if err != nil {
			return nil, fmt.Errorf("PasswordHash: %w", err)
		}
		c.password = h
	}
	if len(c.keys) == 0 && c.password == nil {
		return nil, errors.New("neither AuthorizedKeys nor PasswordHash is set")
	}
	return c, nil
}

// open creates the account's folders under dir and opens the jail.
// sameFolder reports whether dir is still the folder a opened, with its
// folders made again if they were deleted (an account removed and added
// again whose folder was moved away gets a new account instead).
func (a *account) sameFolder(dir string) bool {
	if a.root == nil {
		return false
	}
	held, err := a.root.Stat(".")
	if err != nil {
		return false
	}
	now, err := os.Stat(dir)
	if err != nil || !os.SameFile(held, now) {
		return false
	}
	for _, f := range append(folders[:len(folders):len(folders)], stagingDir) {
		if err := a.root.MkdirAll(f, 0o750); err != nil {
			return false
		}
	}
	return true
}

func (a *account) open(dir string) error {
	for _, f := range append(folders[:len(folders):len(folders)], stagingDir) {
		if err := os.MkdirAll(dir+string(os.PathSeparator)+f, 0o750); err != nil {
			return fmt.Errorf("create folders: %w", err)
		}
	}
	r, err := os.OpenRoot(dir)
	if err != nil {
		return fmt.Errorf("open folder: %w", err)
	}
	a.root = r
	return nil
}

func (a *account) addWriter(u *upload) {
	a.openMu.Lock()
	defer a.openMu.Unlock()
	a.addWriterLocked(u)
}

func (a *account) addWriterLocked(u *upload) {
	a.writing[u.name] = append(a.writing[u.name], u)
	if u.staged != "" {
		a.staging[u.staged] = true
	}
}

func (a *account) removeWriter(u *upload) {
	a.openMu.Lock()
	defer a.openMu.Unlock()
	list := a.writing[u.name]
	for i, v := range list {
		if v == u {
			list = append(list[:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(a.writing, u.name)
	} else {
		a.writing[u.name] = list
	}
	if u.staged != "" {
		delete(a.staging, u.staged)
	}
}

// isWriting reports whether inbox/name is open for writing, either in place
// (temporary names) or staged (final names).
func (a *account) isWriting(name string) bool {
	a.openMu.Lock()
	defer a.openMu.Unlock()
	return len(a.writing[name]) > 0
}

// stagedFor returns the staging file of an open upload with the given name,
// so that a client can stat a file it is still writing.
func (a *account) stagedFor(name string) string {
	a.openMu.Lock()
	defer a.openMu.Unlock()
	for _, u := range a.writing[name] {
		if u.staged != "" {
			return u.staged
		}
	}
	return ""
}

func (a *account) isStagingOpen(name string) bool {
	a.openMu.Lock()
	defer a.openMu.Unlock()
	return a.staging[name]
}

// exists reports whether rel exists in the account folder (a dangling
// symlink counts as existing).
func (a *account) exists(rel string) (bool, error) {
	_, err := a.root.Lstat(rel)
	if err == nil {
		return true, nil
	}
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	return false, err
}

// freeName returns name, or name with a "-N" suffix before its extension,
// such that folder/result does not exist; for failed/ the matching
// RESULT.error.txt must not exist either.
func (a *account) freeName(folder, name string) (string, error) {
	ext := path.Ext(name)
	stem := strings.TrimSuffix(name, ext)
	if stem == "" { // ".hl7": treat the whole name as the stem
		stem, ext = name, ""
	}
	for i := 0; i < 10000; i++ {
		cand := name
		if i > 0 {
			cand = stem + "-" + strconv.Itoa(i) + ext
		}
		taken, err := a.exists(folder + "/" + cand)
		if err != nil {
			return "", err
		}
		if !taken && folder == folderFailed {
			if taken, err = a.exists(folder + "/" + cand + errorSuffix); err != nil {
				return "", err
			}
		}
		if !taken {
			return cand, nil
		}
	}
	return "", fmt.Errorf("no free name in %s", folder)
}

const errorSuffix = ".error.txt"

// isTemporary reports whether name marks an upload in progress: a leading
// dot, or the suffix .part, .tmp or .filepart (WinSCP). Such files are never
// picked up until renamed.
func isTemporary(name string) bool {
	if strings.HasPrefix(name, ".") {
		return true
	}
	l := strings.ToLower(name)
	return strings.HasSuffix(l, ".part") || strings.HasSuffix(l, ".tmp") || strings.HasSuffix(l, ".filepart")
}

// validName reports whether name can be a file name in an account folder:
// one path element of valid UTF-8 without control characters.
func validName(name string) bool {
	if name == "" || name == "." || name == ".." || len(name) > 255 || !utf8.ValidString(name) {
		return false
	}
	for _, r := range name {
		if r < 0x20 || r == 0x7f || r == '/' || r == '\\' {
			return false
		}
	}
	return true
}
